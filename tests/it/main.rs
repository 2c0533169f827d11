//! Integration tests: the adapters and whole cutovers against moto, the local
//! AWS emulator (a real implementation of the wire protocol), with simulated
//! traffic from `deploy/local/fixture.py`.
//!
//! Every test starts its own moto server on 127.0.0.1, so tests run in
//! parallel without sharing state. moto must be installed by
//! `deploy/local/install-moto.sh`; without it these tests fail loudly.

#![allow(
    unsafe_code,
    reason = "tests signal the cutover binary with kill(2), which std does not wrap"
)]

mod adapters;
mod aws_errors;
mod backtest;
mod budget;
mod daemon;
mod daemon_contract;
mod e2e;
#[path = "../support/fault_proxy/mod.rs"]
mod fault_proxy;
mod help;
mod humans;
mod judge_e2e;
mod machines;
mod notify;
mod openapi;
mod packaging;
mod plans;
mod proxy;
mod report;
mod rescue;
mod retention;
mod safety;
mod shared;
mod store;
mod terminal;
mod util;
