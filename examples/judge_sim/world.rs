//! The simulated service: requests, 5xx and a per-period latency statistic of both colours, as
//! the product's [`Window`]s of 1-second periods.
//!
//! * Traffic: the service receives 2R requests a second in total, so that at 50 % each colour
//!   serves R ("R requests a second per colour"); at 100 % the new colour serves 2R. Each
//!   period's request counts are Poisson.
//! * Errors: Binomial(requests, rate) per colour, independent.
//! * Latency (the p99 CloudWatch reports for the period): the colour's true p99 times
//!   exp(sₜ + oₜ + z/√n), sₜ an AR(1) process both colours share (load, a shared dependency: sd
//!   0.10, lag-1 correlation 0.9), oₜ each colour's own AR(1) process (sd 0.05, correlation 0.7),
//!   z/√n the sampling noise of a percentile of n requests. None when a colour had no requests.
//! * Before the first shift the live colour serves all 2R a second: verify's baseline.

use cutover::judge::{Sample, Window};

use super::dist::{binomial, poisson};
use super::rng::Rng;

/// One simulated service and release.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scenario {
    /// R: requests a second per colour at 50 %.
    pub rps_per_colour: f64,
    pub live_error_rate: f64,
    pub new_error_rate: f64,
    /// Seconds.
    pub live_p99: f64,
    pub new_p99: f64,
}

const SHARED_SD: f64 = 0.10;
const SHARED_RHO: f64 = 0.9;
const OWN_SD: f64 = 0.05;
const OWN_RHO: f64 = 0.7;

/// A running simulation of one cutover.
pub struct World {
    rng: Rng,
    s: Scenario,
    shared: f64,
    own: [f64; 2],
}

impl World {
    pub fn new(seed: u64, s: Scenario) -> World {
        let mut rng = Rng::seed(seed);
        // The AR(1) processes start in their stationary distributions.
        let shared = SHARED_SD * rng.normal();
        let own = [OWN_SD * rng.normal(), OWN_SD * rng.normal()];
        World { rng, s, shared, own }
    }

    /// The period starting at `t` with the new colour at `share` of the traffic.
    pub fn period(&mut self, t: u64, share: f64) -> Window {
        let total = 2.0 * self.s.rps_per_colour;
        let n = poisson(&mut self.rng, total * share);
        let m = poisson(&mut self.rng, total * (1.0 - share));
        let e = binomial(&mut self.rng, n, self.s.new_error_rate);
        let f = binomial(&mut self.rng, m, self.s.live_error_rate);
        let step = |x: f64, rho: f64, sd: f64, z: f64| rho * x + (1.0 - rho * rho).sqrt() * sd * z;
        let (z0, z1, z2) = (self.rng.normal(), self.rng.normal(), self.rng.normal());
        self.shared = step(self.shared, SHARED_RHO, SHARED_SD, z0);
        self.own[0] = step(self.own[0], OWN_RHO, OWN_SD, z1);
        self.own[1] = step(self.own[1], OWN_RHO, OWN_SD, z2);
        let shared = self.shared;
        let mut latency = |requests: u64, p99: f64, own: f64| {
            (requests > 0).then(|| p99 * (shared + own + self.rng.normal() / (requests as f64).sqrt()).exp())
        };
        let ln = latency(n, self.s.new_p99, self.own[0]);
        let ll = latency(m, self.s.live_p99, self.own[1]);
        Window {
            start: t,
            end: t + 1,
            new: Sample {
                requests: n as f64,
                errors: e as f64,
                latency: ln,
            },
            live: Sample {
                requests: m as f64,
                errors: f as f64,
                latency: ll,
            },
            metrics: vec![],
        }
    }
}
