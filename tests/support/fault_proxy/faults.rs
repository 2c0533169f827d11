//! The fault configuration: [`Rule`] (probability, operations, window), the faults it is
//! attached to, and [`Faults`], the set in force that `FaultHandle::set` replaces.

use std::time::{Duration, Instant};

/// When a fault applies: with which probability, to which operations, for how long.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// Chance in `[0, 1]` that a matching request gets the fault; 1 = every one.
    pub probability: f64,
    /// Operation names (`DescribeListeners`, `PutItem`, …) the rule is restricted
    /// to; empty = every request, including ones whose operation is unknown.
    pub operations: Vec<String>,
    /// How long after [`FaultHandle::set`] the rule stays in force; `None` = until
    /// the next `set` or `clear`.
    pub window: Option<Duration>,
}

impl Rule {
    /// A rule that fires with `probability` on every operation, until changed.
    pub fn p(probability: f64) -> Rule {
        Rule {
            probability,
            operations: Vec::new(),
            window: None,
        }
    }

    /// A rule that fires on every matching request (probability 1).
    pub fn always() -> Rule {
        Rule::p(1.0)
    }

    /// Restricts the rule to the named operations.
    pub fn only<I, S>(mut self, operations: I) -> Rule
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.operations = operations.into_iter().map(Into::into).collect();
        self
    }

    /// Keeps the rule in force only for `window` after [`FaultHandle::set`].
    pub fn lasting(mut self, window: Duration) -> Rule {
        self.window = Some(window);
        self
    }

    pub(super) fn matches(&self, operation: Option<&str>) -> bool {
        self.operations.is_empty() || operation.is_some_and(|op| self.operations.iter().any(|o| o == op))
    }

    pub(super) fn in_force(&self, since: Instant, now: Instant) -> bool {
        self.window.is_none_or(|w| now.saturating_duration_since(since) < w)
    }
}

/// An HTTP 5xx answer with an AWS-shaped body.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerError {
    /// 500 (`InternalFailure` / `InternalServerError`) or 503 (`ServiceUnavailable`);
    /// any other 5xx is sent with the 500 body.
    pub status: u16,
    pub rule: Rule,
}

/// Any AWS error, by status and code (`AccessDenied` 403, `ValidationError` 400…): errors
/// that retrying cannot fix. The message says the proxy injected it.
#[derive(Clone, Debug, PartialEq)]
pub struct CodedError {
    pub status: u16,
    pub code: String,
    pub rule: Rule,
}

/// A pause before the request goes on (to moto, or to another fault).
#[derive(Clone, Debug, PartialEq)]
pub struct Delay {
    pub fixed: Duration,
    /// Up to this much more, uniformly at random.
    pub jitter: Duration,
    pub rule: Rule,
}

/// How the endpoint is gone during an [`Outage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutageKind {
    /// The listening socket is closed: new connections are refused (RST to the
    /// SYN); a request on an already open connection is answered with a reset.
    /// The same port is bound again when the outage ends.
    Refuse,
    /// Connections are accepted and reset at once; so are requests on open ones.
    Reset,
    /// Nothing answers: new connections wait in the listen backlog unaccepted, and
    /// requests on open connections hang until the outage ends, then go on to
    /// moto (as if the network came back). The SDK sees its own timeouts.
    Blackhole,
}

/// The endpoint is gone for `duration` after [`FaultHandle::set`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outage {
    pub kind: OutageKind,
    pub duration: Duration,
}

/// The faults in force. `Faults::default()` (or [`Faults::none`]) injects nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// HTTP 400 throttling errors.
    pub throttle: Vec<Rule>,
    /// HTTP 5xx errors.
    pub server_error: Vec<ServerError>,
    /// Errors with a given status and code (tried before throttling).
    pub error: Vec<CodedError>,
    /// TCP resets before any response byte.
    pub reset: Vec<Rule>,
    /// Added latency; the first delay rule that fires applies.
    pub delay: Vec<Delay>,
    /// The whole endpoint gone for a while.
    pub outage: Option<Outage>,
    /// Seeds the proxy's random numbers when set, so a sequential test sees the
    /// same faults on every run.
    pub seed: Option<u64>,
}

impl Faults {
    /// No faults.
    pub fn none() -> Faults {
        Faults::default()
    }

    pub fn throttle(mut self, rule: Rule) -> Faults {
        self.throttle.push(rule);
        self
    }

    pub fn server_error(mut self, status: u16, rule: Rule) -> Faults {
        self.server_error.push(ServerError { status, rule });
        self
    }

    /// An error with `status` and `code`, as the service would send it.
    pub fn error(mut self, status: u16, code: &str, rule: Rule) -> Faults {
        self.error.push(CodedError {
            status,
            code: code.to_string(),
            rule,
        });
        self
    }

    pub fn reset(mut self, rule: Rule) -> Faults {
        self.reset.push(rule);
        self
    }

    pub fn delay(mut self, fixed: Duration, jitter: Duration, rule: Rule) -> Faults {
        self.delay.push(Delay { fixed, jitter, rule });
        self
    }

    pub fn outage(mut self, kind: OutageKind, duration: Duration) -> Faults {
        self.outage = Some(Outage { kind, duration });
        self
    }

    pub fn seed(mut self, seed: u64) -> Faults {
        self.seed = Some(seed);
        self
    }

    pub(super) fn validate(&self) {
        let rules = self
            .throttle
            .iter()
            .chain(self.reset.iter())
            .chain(self.server_error.iter().map(|s| &s.rule))
            .chain(self.error.iter().map(|e| &e.rule))
            .chain(self.delay.iter().map(|d| &d.rule));
        for rule in rules {
            assert!(
                (0.0..=1.0).contains(&rule.probability),
                "fault_proxy: probability {} is not in [0, 1]",
                rule.probability
            );
        }
        for s in &self.server_error {
            assert!(
                (500..600).contains(&s.status),
                "fault_proxy: status {} is not a 5xx",
                s.status
            );
        }
    }
}
