//! The safety net (issue 8): drift, crashes at exact journal points, AWS faults from the
//! fault-injecting proxy between the binary and moto, restores that must not wait for a read,
//! blind bakes, and the exit codes of a rollback. Each test is named after what broke.
//!
//! Its files: `drift` (weights changed by hand), `crashes` (runs killed at exact journal points),
//! `faults` (the fault mix and throttled reads during rollbacks), `restores` (what a restore
//! writes and its exit codes), `blind` (bakes without readable metrics, the verify gate) and
//! `exposure` (what hooks and the daemon expose: the token, the environment, the listener).

mod blind;
mod crashes;
mod drift;
mod exposure;
mod faults;
mod restores;

use serde_json::Value;

use crate::e2e::steps_with_deploy;
use crate::util::*;

/// Long enough that a test decides what happens during the bake, not the clock.
fn long_steps() -> String {
    steps_with_deploy(QUICK_STEPS).replace("bake = \"3s\"", "bake = \"10m\"")
}

fn set_profile(wd: &Workdir, profile: Value) {
    std::fs::write(wd.path().join("profile.json"), profile.to_string()).unwrap();
}
