//! The judge's simulation benchmark: seeded cutovers of a simulated service through the judge
//! before issue 10 and the product's judge of today, side by side, in one table.
//!
//! ```sh
//! cargo run --release --example judge_sim [-- --runs 10000 --threads 2 --seed 1]
//! cargo run --release --example judge_sim -- --runs 1000 --only p99   # some rows, for a quick look
//! ```
//!
//! * **The new judge is the product's [`cutover::judge::Judge`]**, driven exactly as
//!   `engine/bake.rs` drives it: the baseline from verify's read (`Baseline::from_windows` over
//!   the quarter hour before the first shift, refused if `Baseline::failing`), one judge for the
//!   whole cutover, and each bake ending after its duration of counted periods, never on a failing
//!   streak, and not while the judge's recent window is gathering (up to twice its length).
//! * **The judge before issue 10** is a faithful re-implementation of its decision rule
//!   (`current.rs`), with that commit's bake rules: a fresh judge at every bake.
//! * The service (`world.rs`): 1-second periods, Poisson requests, binomial 5xx (live 0.1 %),
//!   a per-period p99 of 50 ms live with shared and per-colour AR(1) noise and sampling noise.
//! * The plan: shift 50 % bake 10 min, shift 100 % bake 5 min, observe 5 min; max_error_rate 1 %,
//!   max_error_rate_increase +0.5 pp, min_requests 100, failures_to_rollback 2, max_latency
//!   200 ms, max_latency_ratio 1.5, confidence 0.99; period, settle and poll_interval 1 s.
//! * Each run stops at its rollback (time: the end of the deciding period, seconds from the first
//!   shift) or at the end of the plan; median and p95 are over **all** runs, a run without
//!   rollback counting as never. The two judges get independent streams (their bake clocks
//!   differ), seeded from (seed, scenario, run, judge): results do not depend on the threads.

mod current;
mod dist;
mod rng;
mod world;

use std::collections::BTreeMap;
use std::time::Instant;

use cutover::judge::{Baseline, Criteria, Judge, Mode, NoData, OnShared, Status};

use current::CurrentJudge;
use rng::seed_of;
use world::{Scenario, World};

/// Seconds of history verify reads before the first shift (a quarter hour of 1-second periods).
const BASELINE: u64 = 900;

/// (share of the new colour, bake in counted seconds)
const STEPS: [(f64, u64); 3] = [(0.5, 600), (1.0, 300), (1.0, 300)];

fn criteria() -> Criteria {
    Criteria {
        max_error_rate: 0.01,
        max_latency: Some(0.2),
        min_requests: 100,
        failures_to_rollback: 2,
        on_no_data: NoData::Hold,
        confidence: 0.99,
        max_error_rate_increase: 0.005,
        max_latency_ratio: Some(1.5),
        on_shared_failure: OnShared::Hold,
        critical_error_rate: None,
        critical_min_requests: 10,
        metrics: vec![],
        mode: Mode::Auto,
    }
}

fn old_criteria() -> current::Criteria {
    let c = criteria();
    current::Criteria {
        max_error_rate: c.max_error_rate,
        max_latency: c.max_latency,
        min_requests: c.min_requests,
        failures_to_rollback: c.failures_to_rollback,
        confidence: c.confidence,
        max_error_rate_increase: c.max_error_rate_increase,
        max_latency_ratio: c.max_latency_ratio,
    }
}

/// How a run ended.
#[derive(Debug, Clone, Default)]
struct Run {
    /// Seconds from the first shift to the end of the period that rolled back.
    rollback_at: Option<u64>,
    /// The checks that failed the verdict that rolled back (the new judge).
    decided_by: Vec<String>,
    /// Verify refused to start (the live colour failing before the start).
    not_started: bool,
}

/// Most periods a run may take: twice the plan, twice over (bakes extend to at most twice).
fn cap() -> u64 {
    4 * STEPS.iter().map(|s| s.1).sum::<u64>()
}

/// One cutover through the product's judge, as `engine/bake.rs` drives it.
fn run_new(seed: u64, s: &Scenario) -> Run {
    let mut world = World::new(seed, *s);
    let c = criteria();
    // Verify: the live colour's quarter hour at full traffic.
    let history: Vec<_> = (0..BASELINE).map(|t| world.period(t, 0.0)).collect();
    let mut judge = Judge::new(c.clone()).named("blue");
    if let Some(b) = Baseline::from_windows(&history, &c) {
        if !b.failing(&c, "blue").is_empty() {
            return Run {
                not_started: true,
                ..Run::default()
            };
        }
        judge.set_baseline(b);
    }
    let mut t = 0;
    for (share, bake) in STEPS {
        // A bake starts from the judge's streak and recent window as the last bake left them.
        let mut baked = 0;
        loop {
            if t >= cap() {
                return Run::default();
            }
            let v = judge.judge(&world.period(BASELINE + t, share));
            t += 1;
            if v.counts_toward_bake {
                baked += 1;
            }
            let (streak, pending) = (v.failures, v.evidence_pending);
            if v.rollback {
                return Run {
                    rollback_at: Some(t),
                    decided_by: v
                        .findings
                        .iter()
                        .filter(|f| f.status == Status::Fail)
                        .map(|f| f.check.clone())
                        .collect(),
                    not_started: false,
                };
            }
            let gathering = pending && baked < 2 * bake;
            if baked >= bake && streak == 0 && !gathering {
                break;
            }
        }
    }
    Run::default()
}

/// One cutover through the judge before issue 10, with that commit's bake rules.
fn run_old(seed: u64, s: &Scenario) -> Run {
    let mut world = World::new(seed, *s);
    // The same stream layout as the new judge's (it read 15 periods, and used none).
    for t in 0..BASELINE {
        world.period(t, 0.0);
    }
    let mut t = 0;
    for (share, bake) in STEPS {
        let mut judge = CurrentJudge::new(old_criteria());
        let mut baked = 0;
        loop {
            if t >= cap() {
                return Run::default();
            }
            let v = judge.judge(&world.period(BASELINE + t, share));
            t += 1;
            if v.rollback {
                return Run {
                    rollback_at: Some(t),
                    ..Run::default()
                };
            }
            if v.counts_toward_bake {
                baked += 1;
            }
            let gathering = v.evidence_pending && baked < 2 * bake;
            if baked >= bake && v.failures == 0 && !gathering {
                break;
            }
        }
    }
    Run::default()
}

/// The rollbacks of many runs.
struct Summary {
    runs: usize,
    rollbacks: usize,
    not_started: usize,
    median: Option<u64>,
    p95: Option<u64>,
    decided_by: BTreeMap<String, usize>,
}

impl Summary {
    fn of(runs: &[Run]) -> Summary {
        let mut times: Vec<u64> = runs.iter().map(|r| r.rollback_at.unwrap_or(u64::MAX)).collect();
        times.sort_unstable();
        let q = |p: f64| {
            let i = ((p * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1;
            (times[i] != u64::MAX).then_some(times[i])
        };
        let mut decided_by = BTreeMap::new();
        for r in runs {
            for c in &r.decided_by {
                *decided_by.entry(c.clone()).or_default() += 1;
            }
        }
        Summary {
            runs: runs.len(),
            rollbacks: runs.iter().filter(|r| r.rollback_at.is_some()).count(),
            not_started: runs.iter().filter(|r| r.not_started).count(),
            median: q(0.5),
            p95: q(0.95),
            decided_by,
        }
    }

    fn rate(&self) -> String {
        format!("{:.2} %", 100.0 * self.rollbacks as f64 / self.runs.max(1) as f64)
    }
}

/// `runs` cutovers of scenario `index` through both judges on `threads` threads: (before, now).
fn simulate(index: u64, s: &Scenario, runs: usize, seed: u64, threads: usize) -> (Summary, Summary) {
    let results: Vec<(Run, Run)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|w| {
                scope.spawn(move || {
                    (w..runs)
                        .step_by(threads)
                        .map(|i| {
                            let i = i as u64;
                            (
                                run_old(seed_of(&[seed, index, i, 0]), s),
                                run_new(seed_of(&[seed, index, i, 1]), s),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("a worker")).collect()
    });
    let (old, new): (Vec<Run>, Vec<Run>) = results.into_iter().unzip();
    (Summary::of(&old), Summary::of(&new))
}

/// A regression and what the plan says should happen to it.
struct Regression {
    name: &'static str,
    error_factor: f64,
    latency_factor: f64,
    expect: &'static str,
}

const REGRESSIONS: [Regression; 7] = [
    Regression {
        name: "none",
        error_factor: 1.0,
        latency_factor: 1.0,
        expect: "no",
    },
    Regression {
        name: "5xx ×1.5",
        error_factor: 1.5,
        latency_factor: 1.0,
        expect: "no: +0.05 pp < δ",
    },
    Regression {
        name: "5xx ×2",
        error_factor: 2.0,
        latency_factor: 1.0,
        expect: "no: +0.1 pp < δ",
    },
    Regression {
        name: "5xx ×5",
        error_factor: 5.0,
        latency_factor: 1.0,
        expect: "no: +0.4 pp < δ",
    },
    Regression {
        name: "5xx ×10",
        error_factor: 10.0,
        latency_factor: 1.0,
        expect: "yes: +0.9 pp > δ",
    },
    Regression {
        name: "p99 +50 %",
        error_factor: 1.0,
        latency_factor: 1.5,
        expect: "no: ×1.5 = the limit",
    },
    Regression {
        name: "p99 +200 %",
        error_factor: 1.0,
        latency_factor: 3.0,
        expect: "yes: ×3 > ×1.5",
    },
];

const TRAFFIC: [f64; 4] = [1.0, 10.0, 100.0, 1000.0];

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

fn time(t: Option<u64>) -> String {
    t.map_or_else(|| "never".into(), |t| format!("{t} s"))
}

/// The machine's load average (1, 5, 15 minutes), for the record.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn decided_by(s: &Summary) -> String {
    let names = [
        ("error_rate_vs_live", "vs live"),
        ("error_rate_vs_baseline", "vs baseline"),
        ("error_rate", "max rate"),
        ("latency_vs_live", "latency ratio"),
        ("latency", "max latency"),
        ("critical_error_rate", "fast path"),
    ];
    let parts: Vec<String> = names
        .iter()
        .filter_map(|(check, label)| s.decided_by.get(*check).map(|n| format!("{label} {n}")))
        .collect();
    let mut out = if parts.is_empty() {
        "–".to_string()
    } else {
        parts.join(", ")
    };
    if s.not_started > 0 {
        out.push_str(&format!("; not started {}", s.not_started));
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runs = arg(&args, "--runs", 10_000) as usize;
    let threads = (arg(&args, "--threads", threads as u64) as usize).max(1);
    let seed = arg(&args, "--seed", 1);
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_default();
    let started = Instant::now();
    let load_before = load();
    println!(
        "{runs} seeded runs per row and judge (seed {seed}, {threads} threads). Plan: 50 % bake 10 min, 100 % bake \
         5 min, observe 5 min, 1-second periods; live 5xx 0.1 %, live p99 50 ms; max_error_rate 1 %, \
         max_error_rate_increase +0.5 pp, min_requests 100, failures_to_rollback 2, max_latency 200 ms, \
         max_latency_ratio 1.5, confidence 0.99."
    );
    println!(
        "Times are seconds from the first shift to the end of the deciding period; median and p95 over all runs \
         (a run without rollback counts as never)."
    );
    println!();
    println!(
        "| req/s per colour | regression | should roll back? | before: rolled back | median | p95 \
         | now: rolled back | median | p95 | now: decided by |"
    );
    println!("| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    let mut index = 0;
    for &rps in &TRAFFIC {
        for r in &REGRESSIONS {
            if !r.name.contains(only.as_str()) {
                index += 1;
                continue;
            }
            let s = Scenario {
                rps_per_colour: rps,
                live_error_rate: 0.001,
                new_error_rate: 0.001 * r.error_factor,
                live_p99: 0.05,
                new_p99: 0.05 * r.latency_factor,
            };
            let (old, new) = simulate(index, &s, runs, seed, threads);
            index += 1;
            println!(
                "| {rps} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.name,
                r.expect,
                old.rate(),
                time(old.median),
                time(old.p95),
                new.rate(),
                time(new.median),
                time(new.p95),
                decided_by(&new),
            );
        }
    }
    println!();
    println!(
        "elapsed {:.0} s; load average {load_before} at the start, {} at the end",
        started.elapsed().as_secs_f64(),
        load()
    );
}
