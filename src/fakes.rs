//! In-memory fakes of the adapters, for unit tests of the engine.
//!
//! They implement the project's own traits ([`Traffic`], [`Metrics`], [`Hooks`]),
//! never an AWS API: the wire protocol is tested against moto.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::color::{Color, Split};
use crate::hooks::{HookError, HookOk, Hooks};
use crate::judge::{Sample, Window};
use crate::metrics::{Alarms, Metrics, MetricsError};
use crate::traffic::{Traffic, TrafficError};

/// A load balancer in memory. Every write lands; `healthy` is per colour. The next
/// `failing_reads` reads (weights and health, and the read of a read-then-write) fail with a
/// retryable throttling error, as a throttled Describe does.
#[derive(Debug, Clone)]
pub struct FakeTraffic {
    pub split: Arc<Mutex<Split>>,
    pub healthy: Arc<Mutex<(u32, u32)>>,
    pub writes: Arc<Mutex<Vec<Split>>>,
    pub failing_reads: Arc<std::sync::atomic::AtomicU32>,
    /// Writes that went out without a read first (`write_known`).
    pub blind_writes: Arc<std::sync::atomic::AtomicU32>,
}

impl FakeTraffic {
    pub fn new(split: Split) -> FakeTraffic {
        FakeTraffic {
            split: Arc::new(Mutex::new(split)),
            healthy: Arc::new(Mutex::new((2, 2))),
            writes: Arc::new(Mutex::new(vec![])),
            failing_reads: Default::default(),
            blind_writes: Default::default(),
        }
    }
    /// A read: fails while `failing_reads` is above zero.
    fn describe(&self) -> Result<(), TrafficError> {
        use std::sync::atomic::Ordering;
        let left = self.failing_reads.load(Ordering::SeqCst);
        if left > 0 {
            self.failing_reads.store(left - 1, Ordering::SeqCst);
            return Err(TrafficError::Aws(crate::aws::AwsError {
                operation: "DescribeListeners",
                code: Some("Throttling".into()),
                message: "Rate exceeded".into(),
                retryable: true,
                answered: true,
            }));
        }
        Ok(())
    }
    pub fn current(&self) -> Split {
        *self.split.lock().unwrap()
    }
}

impl Traffic for FakeTraffic {
    async fn read(&self) -> Result<Split, TrafficError> {
        self.describe()?;
        Ok(self.current())
    }
    async fn write(&self, split: Split) -> Result<(), TrafficError> {
        self.describe()?;
        self.writes.lock().unwrap().push(split);
        *self.split.lock().unwrap() = split;
        Ok(())
    }
    async fn write_known(
        &self,
        split: Split,
        _known: Option<&crate::traffic::ActionSnapshot>,
    ) -> Result<(), TrafficError> {
        self.blind_writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.writes.lock().unwrap().push(split);
        *self.split.lock().unwrap() = split;
        Ok(())
    }
    fn snapshot(&self) -> Option<crate::traffic::ActionSnapshot> {
        None
    }
    async fn healthy_targets(&self, color: Color) -> Result<u32, TrafficError> {
        self.describe()?;
        let h = *self.healthy.lock().unwrap();
        Ok(match color {
            Color::Blue => h.0,
            Color::Green => h.1,
        })
    }
}

/// CloudWatch in memory: every period shows `new` for the new colour and `live` for the live one.
#[derive(Debug, Clone)]
pub struct FakeMetrics {
    pub new: Arc<Mutex<Sample>>,
    pub live: Arc<Mutex<Sample>>,
    pub alarms: Arc<Mutex<Alarms>>,
    pub period: u64,
}

impl FakeMetrics {
    pub fn healthy(period: u64) -> FakeMetrics {
        FakeMetrics {
            new: Arc::new(Mutex::new(Sample {
                requests: 1000.0,
                errors: 0.0,
                latency: Some(0.05),
            })),
            live: Arc::new(Mutex::new(Sample::default())),
            alarms: Arc::new(Mutex::new(Alarms::default())),
            period,
        }
    }
    pub fn set(&self, s: Sample) {
        *self.new.lock().unwrap() = s;
    }
    pub fn set_live(&self, s: Sample) {
        *self.live.lock().unwrap() = s;
    }
}

impl Metrics for FakeMetrics {
    async fn windows(&self, from: u64, to: u64) -> Result<Vec<Window>, MetricsError> {
        let s = *self.new.lock().unwrap();
        let live = *self.live.lock().unwrap();
        Ok((from..to)
            .step_by(self.period as usize)
            .map(|t| Window {
                start: t,
                end: t + self.period,
                new: s,
                live,
                metrics: vec![],
            })
            .collect())
    }
    async fn alarms(&self) -> Result<Alarms, MetricsError> {
        Ok(self.alarms.lock().unwrap().clone())
    }
}

/// Hooks that record each call (`argv` joined by spaces) and fail the ones in `failing`.
#[derive(Debug, Default, Clone)]
pub struct FakeHooks {
    pub calls: Arc<Mutex<Vec<String>>>,
    pub failing: Arc<Mutex<HashSet<String>>>,
    /// How long each command takes (on tokio's clock).
    pub delay: Duration,
}

impl FakeHooks {
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl Hooks for FakeHooks {
    async fn command(
        &self,
        argv: &[String],
        _env: &[(String, String)],
        _timeout: Duration,
    ) -> Result<HookOk, HookError> {
        let line = argv.join(" ");
        self.calls.lock().unwrap().push(line.clone());
        tokio::time::sleep(self.delay).await;
        if self.failing.lock().unwrap().contains(&line) {
            return Err(HookError::Failed {
                program: argv[0].clone(),
                status: "exited with 1".into(),
                tail: vec![],
            });
        }
        Ok(HookOk {
            elapsed: self.delay,
            detail: "exit 0".into(),
        })
    }
    async fn http(&self, url: &str, _expect_status: u16, _timeout: Duration) -> Result<HookOk, HookError> {
        self.calls.lock().unwrap().push(format!("GET {url}"));
        if self.failing.lock().unwrap().contains(&format!("GET {url}")) {
            return Err(HookError::Http {
                url: url.into(),
                message: "HTTP 503, expected 200".into(),
            });
        }
        Ok(HookOk {
            elapsed: Duration::ZERO,
            detail: "HTTP 200".into(),
        })
    }
}
