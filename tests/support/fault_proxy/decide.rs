//! Which fault a request gets: the proxy's seeded random rolls, the outage in force, and
//! the rules tried in their order (delay first, then reset, 5xx, coded error, throttle).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::faults::{OutageKind, Rule};
use super::lock;
use super::proxy::Shared;

impl Shared {
    /// A uniform number in `[0, 1)` (SplitMix64).
    fn roll(&self) -> f64 {
        let mut z = self.rng.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn fires(&self, probability: f64) -> bool {
        probability >= 1.0 || (probability > 0.0 && self.roll() < probability)
    }

    /// The outage in force, with its end (`None`: no outage).
    pub(super) fn outage(&self) -> Option<(OutageKind, Instant)> {
        let active = lock(&self.active);
        let outage = active.faults.outage?;
        // A duration too long to add means "for ever": a year will do.
        let until = active
            .since
            .checked_add(outage.duration)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600));
        (Instant::now() < until).then_some((outage.kind, until))
    }

    pub(super) fn decide(&self, operation: Option<&str>) -> Decision {
        let (faults, since) = {
            let active = lock(&self.active);
            (active.faults.clone(), active.since)
        };
        let now = Instant::now();
        let applies = |r: &Rule| r.in_force(since, now) && r.matches(operation);
        let delay = faults
            .delay
            .iter()
            .find(|d| applies(&d.rule) && self.fires(d.rule.probability))
            .map(|d| d.fixed + d.jitter.mul_f64(self.roll()));
        let fault = if faults.reset.iter().any(|r| applies(r) && self.fires(r.probability)) {
            Some(Fault::Reset)
        } else if let Some(s) = faults
            .server_error
            .iter()
            .find(|s| applies(&s.rule) && self.fires(s.rule.probability))
        {
            Some(Fault::ServerError(s.status))
        } else if let Some(e) = faults
            .error
            .iter()
            .find(|e| applies(&e.rule) && self.fires(e.rule.probability))
        {
            Some(Fault::Coded(e.status, e.code.clone()))
        } else if faults.throttle.iter().any(|r| applies(r) && self.fires(r.probability)) {
            Some(Fault::Throttle)
        } else {
            None
        };
        Decision { delay, fault }
    }

    pub(super) fn request_id(&self) -> String {
        let a = (self.roll() * (1u64 << 53) as f64) as u64;
        let b = (self.roll() * (1u64 << 53) as f64) as u64;
        format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            a >> 21,
            (a >> 5) & 0xffff,
            b & 0xfff,
            (b >> 12) & 0xfff,
            (b >> 24) & 0xffff_ffff_ffff
        )
    }
}

pub(super) struct Decision {
    pub(super) delay: Option<Duration>,
    pub(super) fault: Option<Fault>,
}

pub(super) enum Fault {
    Reset,
    ServerError(u16),
    Coded(u16, String),
    Throttle,
}
