//! The checks behind a verdict: each records a [`Finding`] with its numbers, and a clause in
//! words, into the [`Assessment`] being assembled for one window.
//!
//! A clause names the recent numbers first (`5xx 6.00% (60/1000)`), then, when they differ,
//! everything judged so far (`cutover 0.38% (80/21000)`), the comparison, and the test with its
//! statistic: `(mSPRT e = 0.020 < 1/α = 700)`, or once rejected the anytime-valid p-value and
//! confidence bound.

use super::baseline::Baseline;
use super::sequential::sign::SignTest;
use super::sequential::{Score, Tests};
use super::stats::binomial_sf;
use super::words::{count, e_value, hms, ms, num, pct, pp, ratio_of, times};
use super::{Assessment, Criteria, Direction, Evidence, Finding, Status, Window};

/// What every check reads.
pub(super) struct Ctx<'a> {
    pub c: &'a Criteria,
    pub live: &'a str,
    pub tests: &'a Tests,
    /// Everything judged so far, this window included.
    pub total: &'a Evidence,
    /// The recent window, this window included.
    pub recent: &'a Evidence,
    /// The cutover has `min_requests` requests of the new colour: the sequential tests may fail it.
    pub enough: bool,
    pub stood_down: Option<u64>,
    pub baseline: Option<&'a Baseline>,
}

impl Finding {
    fn new(check: &str, status: Status, value: f64, threshold: f64) -> Finding {
        Finding {
            check: check.into(),
            status,
            value,
            threshold,
            live: None,
            p_value: None,
            statistic: None,
            test: None,
            log_e_value: None,
            log_threshold: None,
            bound: None,
        }
    }

    /// With a sequential test's numbers.
    fn scored(mut self, test: &str, s: &Score) -> Finding {
        let (e, t) = s.nearest();
        self.test = Some(test.into());
        self.log_e_value = Some(e);
        self.log_threshold = Some(t);
        self.p_value = Some(s.p_value);
        self
    }
}

/// `mSPRT e = 0.52 < 1/α = 700` (or the onset detector's, when it is nearer its threshold), or
/// once rejected `mSPRT rejects: anytime p = 2.1e−9 ≤ α = 0.0029`.
fn test_words(name: &str, s: &Score, alpha: f64) -> String {
    if s.rejected {
        return format!(
            "{name} rejects: anytime p = {} ≤ α = {}",
            e_value(s.p_value.max(f64::MIN_POSITIVE).ln()),
            e_value(alpha.ln())
        );
    }
    let (e, t) = s.nearest();
    let onset = s.onset.is_some_and(|o| o == (e, t));
    format!(
        "{name}{} e = {} < {} = {}",
        if onset { " onset" } else { "" },
        e_value(e),
        if onset { "T/α" } else { "1/α" },
        e_value(t)
    )
}

/// `> 1.00%` when the test has rejected, `≤ 1.00%` when the estimate is within the limit, and
/// `> 1.00%, not significant` when it is over it without proof.
fn compared(value: f64, limit: f64, rejected: bool, show: impl Fn(f64) -> String) -> String {
    if rejected {
        format!("> {}", show(limit))
    } else if value > limit {
        format!("> {}, not significant", show(limit))
    } else {
        format!("≤ {}", show(limit))
    }
}

fn rate(e: f64, n: f64) -> f64 {
    e / n.max(1.0)
}

/// The fast path on the recent window: true when it fired (and was recorded).
pub(super) fn fast_path(ctx: &Ctx, a: &mut Assessment) -> bool {
    let c = ctx.c;
    let Some(critical) = c.critical_error_rate else {
        return false;
    };
    let (n, l) = (&ctx.recent.new, &ctx.recent.live);
    let r = rate(n.errors, n.requests);
    if n.requests < c.critical_min_requests as f64 || r < critical {
        return false;
    }
    // Both colours at the critical rate, and the new one not shown worse: an outage they share.
    let shared = l.requests >= c.critical_min_requests as f64
        && rate(l.errors, l.requests) >= critical
        && !ctx.tests.vs_live.rejected();
    a.critical = !shared;
    a.record(
        "critical error rate",
        Finding {
            live: l.error_rate(),
            test: Some("fast_path".into()),
            ..Finding::new(
                "critical_error_rate",
                if shared { Status::Shared } else { Status::Fail },
                r,
                critical,
            )
        },
    );
    a.clauses.push(format!(
        "critical error rate: 5xx {} ({}/{}) ≥ {}{}",
        pct(r),
        count(n.errors),
        count(n.requests),
        pct(critical),
        if l.requests > 0.0 {
            format!(
                ", {} {} ({}/{})",
                ctx.live,
                pct(rate(l.errors, l.requests)),
                count(l.errors),
                count(l.requests)
            )
        } else {
            String::new()
        }
    ));
    true
}

/// How unlikely the live colour's recent counts must be at `max_error_rate` for it to count as
/// over the line now (a shared failure): an outage (30 % of 100) is far below it, a live colour
/// at the line (2 of 100 against 1 %: 0.26) far above.
const LIVE_PROOF: f64 = 1e-3;

/// The error-rate checks: against `max_error_rate`, against the live colour, and against the
/// baseline at 100 %. Returns when the absolute check stands down, the first time a shared
/// failure is recognised.
pub(super) fn assess_errors(ctx: &Ctx, a: &mut Assessment) -> Option<u64> {
    let (c, t) = (ctx.c, ctx.tests);
    let (rn, rl) = (&ctx.recent.new, &ctx.recent.live);
    let (tn, tl) = (&ctx.total.new, &ctx.total.live);
    let mut clause = format!(
        "5xx {} ({}/{})",
        pct(rate(rn.errors, rn.requests)),
        count(rn.errors),
        count(rn.requests)
    );
    if ctx.total.windows != ctx.recent.windows {
        clause.push_str(&format!(
            ", cutover {} ({}/{})",
            pct(rate(tn.errors, tn.requests)),
            count(tn.errors),
            count(tn.requests)
        ));
    }

    // Against the threshold, over everything judged so far.
    let s = t.error_rate.score();
    let total_rate = rate(tn.errors, tn.requests);
    // The live colour fails the same threshold, with proof, and is still serving: its own test
    // over the cutover rejected (at the new colour's α, so that an outage both colours saw is
    // recognised when the new colour's test rejects on it), its onset detector is over its
    // threshold now, or its recent counts alone are significant. The tests spend no α: they can
    // only stop a rollback. A point estimate is no proof: 2 errors in 100 of a live colour on a
    // 1 % line made a release over the line pass as a shared failure. And a live colour with no
    // traffic (at 100 %) shares nothing, whatever it did before.
    let live_proven_over = rl.requests >= c.min_requests as f64
        && binomial_sf(rl.errors.round() as u64, rl.requests.round() as u64, c.max_error_rate) <= LIVE_PROOF;
    let live_over_now =
        rl.requests > 0.0 && (t.live_error_rate.rejected() || t.live_error_rate.over_now() || live_proven_over);
    let vs_live_rejected = t.vs_live.rejected();
    let shared_now = ctx.enough && s.rejected && live_over_now && !vs_live_rejected;
    let latch = (shared_now && ctx.stood_down.is_none()).then_some(ctx.recent.end);
    let stood_down = ctx.stood_down.or(latch);
    let status = match ctx.stood_down {
        // Recognised now: the absolute check stands down from here on.
        None if latch.is_some() => Status::Shared,
        // Stood down: still a shared failure while both colours are over the threshold now.
        Some(_) => {
            let new_over = rate(rn.errors, rn.requests) > c.max_error_rate;
            let live_over = rl.requests > 0.0 && rate(rl.errors, rl.requests) > c.max_error_rate;
            if new_over && live_over && !vs_live_rejected {
                Status::Shared
            } else {
                Status::Ok
            }
        }
        None if ctx.enough && s.rejected => Status::Fail,
        None => Status::Ok,
    };
    let bound = s.rejected.then(|| t.error_rate.lower_bound());
    a.record(
        "error rate too high",
        Finding {
            live: (tl.requests > 0.0).then(|| rate(tl.errors, tl.requests)),
            bound,
            ..Finding::new("error_rate", status, total_rate, c.max_error_rate).scored("sequential", &s)
        },
    );
    clause.push_str(&format!(
        " {} ({}",
        compared(total_rate, c.max_error_rate, s.rejected, pct),
        test_words("mSPRT", &s, t.error_rate.alpha())
    ));
    if let Some(b) = bound {
        clause.push_str(&format!(", rate ≥ {}", pct(b)));
    }
    clause.push(')');
    if let Some(since) = stood_down {
        clause.push_str(&format!(" stood down since {}: a shared failure", hms(since)));
    }

    // Against the live colour, over the periods both served.
    let (e, n, f, m) = t.vs_live.counts();
    let vs = t.vs_live.score();
    if n > 0 && m > 0 {
        let (new, live) = (e as f64 / n as f64, f as f64 / m as f64);
        let diff = new - live;
        let bound = vs.rejected.then(|| t.vs_live.lower_bound());
        let ratio = t.ratio.estimate();
        a.record(
            "error rate too high vs live",
            Finding {
                live: Some(live),
                statistic: ratio.filter(|r| r.is_finite()),
                bound,
                ..Finding::new(
                    "error_rate_vs_live",
                    if ctx.enough && vs.rejected {
                        Status::Fail
                    } else {
                        Status::Ok
                    },
                    diff,
                    c.max_error_rate_increase,
                )
                .scored("sequential", &vs)
            },
        );
        if rl.requests > 0.0 || vs.rejected {
            clause.push_str(&format!(
                ", vs {} {} ({}/{})",
                ctx.live,
                pct(rate(rl.errors, rl.requests)),
                count(rl.errors),
                count(rl.requests)
            ));
            if ctx.total.windows != ctx.recent.windows {
                clause.push_str(&format!(", cutover {} ({f}/{m})", pct(live)));
            }
            clause.push_str(&format!(
                ": {} {} ({}",
                pp(diff),
                compared(diff, c.max_error_rate_increase, vs.rejected, pp),
                test_words("δ-mSPRT", &vs, t.vs_live.alpha())
            ));
            if let Some(b) = bound {
                clause.push_str(&format!(", increase ≥ {}", pp(b)));
            }
            if let Some(r) = ratio.filter(|r| e > 0 && r.is_finite()) {
                clause.push_str(&format!("; {} the rate", times(r)));
            }
            clause.push(')');
        }
    }
    if rl.requests <= 0.0 && !vs.rejected {
        clause.push_str(&format!(", no {} traffic to compare", ctx.live));
    }

    // Against the baseline, on the periods with (almost) no live traffic (at 100 %).
    if let (Some(bt), Some(b)) = (&t.vs_baseline, ctx.baseline)
        && bt.test().trials() > 0
    {
        let bs = bt.score();
        let (s_, n_) = (bt.test().successes(), bt.test().trials());
        let new = s_ as f64 / n_ as f64;
        let bound = bs.rejected.then(|| bt.test().lower_bound());
        a.record(
            "error rate too high vs baseline",
            Finding {
                live: Some(b.error_rate()),
                bound,
                ..Finding::new(
                    "error_rate_vs_baseline",
                    if ctx.enough && bs.rejected {
                        Status::Fail
                    } else {
                        Status::Ok
                    },
                    new,
                    bt.limit(),
                )
                .scored("sequential", &bs)
            },
        );
        clause.push_str(&format!(
            "; without {} traffic {} ({s_}/{n_}) vs baseline {} ({}/{}) ≤ {} {} = {} {} ({}",
            ctx.live,
            pct(new),
            pct(b.error_rate()),
            count(b.errors),
            count(b.requests),
            pct(bt.upper()),
            pp(c.max_error_rate_increase),
            pct(bt.limit()),
            compared(new, bt.limit(), bs.rejected, pct),
            test_words("mSPRT", &bs, bt.alpha()),
        ));
        if let Some(b) = bound {
            clause.push_str(&format!(", rate ≥ {}", pct(b)));
        }
        clause.push(')');
    }
    a.clauses.push(clause);
    latch
}

/// Latency: the `max_latency` line on a complete recent window, and the sign test of the ratio to
/// the live colour over everything judged so far.
pub(super) fn assess_latency(ctx: &Ctx, complete: bool, a: &mut Assessment) {
    let c = ctx.c;
    let (n, l) = (&ctx.recent.new, &ctx.recent.live);
    let sign = ctx.tests.latency_vs_live.as_ref();
    let Some(lat) = n.latency else {
        if c.max_latency.is_some() || c.max_latency_ratio.is_some() {
            a.clauses.push("latency no data".into());
        }
        // A rejection is final: a window without latency still fails on it (else its Pass reset
        // the streak, and latency missing every other window never rolled back).
        if let Some(t) = sign.filter(|t| t.rejected()) {
            record_sign(ctx, t, a);
        }
        return;
    };
    let ratio_rejected = sign.is_some_and(|t| t.rejected());
    let live_lat = l.latency.filter(|&x| x > 0.0 && l.requests > 0.0);
    let mut clause = format!("latency {}", ms(lat));
    if let Some(max) = c.max_latency {
        if complete {
            let over = lat > max;
            let shared = over && !ratio_rejected && live_lat.is_some_and(|ll| ll > max);
            a.record(
                "latency too high",
                Finding {
                    live: live_lat,
                    test: Some("line".into()),
                    ..Finding::new(
                        "latency",
                        match (over, shared) {
                            (false, _) => Status::Ok,
                            (true, true) => Status::Shared,
                            (true, false) => Status::Fail,
                        },
                        lat,
                        max,
                    )
                },
            );
            clause.push_str(&format!(" {} {}", if over { ">" } else { "≤" }, ms(max)));
        } else {
            clause.push_str(&format!(
                " (line {} judged at {} requests, {} so far)",
                ms(max),
                c.min_requests,
                count(n.requests)
            ));
        }
    }
    if let Some(ll) = live_lat {
        let r = ratio_of(lat, ll);
        clause.push_str(&format!(", vs {} {} {}", ctx.live, ms(ll), times(r)));
        if let Some(t) = sign {
            clause.push_str(&format!(" {}", compared(r, t.limit(), t.rejected(), times)));
        }
    }
    if let Some(t) = sign {
        let s = t.score();
        let (periods, over) = t.periods();
        record_sign(ctx, t, a);
        if live_lat.is_none() {
            clause.push_str(&format!(", no {} latency to compare", ctx.live));
        }
        if periods > 0 {
            let votes = if t.block() > 1 {
                let (v, vo) = t.votes();
                format!(", {vo}/{v} votes of {}", t.block())
            } else {
                String::new()
            };
            let typical = match t.typical() {
                Some(x) if periods > 1 => format!(", {} typical", times(x)),
                _ => String::new(),
            };
            clause.push_str(&format!(
                " ({over}/{periods} periods over{votes}{typical}; {})",
                test_words("sign test", &s, t.alpha())
            ));
        }
    }
    a.clauses.push(clause);
}

/// The sign test's finding: a Fail once it has rejected (on a window with enough requests).
fn record_sign(ctx: &Ctx, t: &SignTest, a: &mut Assessment) {
    let Some(typical) = t.typical() else {
        return;
    };
    let s = t.score();
    a.record(
        "latency too high vs live",
        Finding {
            statistic: Some(typical),
            ..Finding::new(
                "latency_vs_live",
                if ctx.enough && s.rejected {
                    Status::Fail
                } else {
                    Status::Ok
                },
                typical,
                t.limit(),
            )
            .scored("sign", &s)
        },
    );
}

/// `[[rollback.metrics]]`, judged per window (they are not counts that add up).
pub(super) fn assess_metrics(c: &Criteria, live_name: &str, w: &Window, a: &mut Assessment) {
    for (i, m) in c.metrics.iter().enumerate() {
        let s = w.metrics.get(i).copied().unwrap_or_default();
        let Some(v) = s.new else {
            a.clauses.push(format!("{} no data", m.name));
            continue;
        };
        let crosses = |x: f64| match m.direction {
            Direction::Above => x > m.threshold,
            Direction::Below => x < m.threshold,
        };
        let live = s.live.filter(|_| m.compare_with_live);
        // How much worse the new colour is than the live one, as a factor ≥ 1 when worse.
        let ratio = live.map(|l| match m.direction {
            Direction::Above => ratio_of(v, l),
            Direction::Below => ratio_of(l, v),
        });
        let ratio_fail = matches!((ratio, m.max_ratio), (Some(r), Some(max)) if r > max);
        let crossed = crosses(v);
        let shared = crossed && !ratio_fail && live.is_some_and(crosses);
        let status = if ratio_fail || (crossed && !shared) {
            Status::Fail
        } else if shared {
            Status::Shared
        } else {
            Status::Ok
        };
        let word = match m.direction {
            Direction::Above => "too high",
            Direction::Below => "too low",
        };
        a.record(
            &format!("{} {word}", m.name),
            Finding {
                live,
                statistic: ratio.filter(|r| r.is_finite()),
                test: Some("line".into()),
                ..Finding::new(&format!("metric:{}", m.name), status, v, m.threshold)
            },
        );
        let bad = match m.direction {
            Direction::Above => (">", "≤"),
            Direction::Below => ("<", "≥"),
        };
        let mut clause = format!(
            "{} {} {} {}",
            m.name,
            num(v),
            if crossed { bad.0 } else { bad.1 },
            num(m.threshold)
        );
        if let Some(l) = live {
            clause.push_str(&format!(", vs {live_name} {}", num(l)));
            if let (Some(r), Some(max)) = (ratio, m.max_ratio) {
                clause.push_str(&format!(" ×{r:.2} {} ×{max:.2}", if ratio_fail { ">" } else { "≤" }));
            }
        } else if m.compare_with_live {
            clause.push_str(&format!(", {live_name} no data"));
        }
        a.clauses.push(clause);
    }
}
