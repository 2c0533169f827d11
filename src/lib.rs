//! cutover: blue/green cutovers of AWS Application Load Balancer traffic,
//! judged from CloudWatch, rolled back by themselves when the numbers go bad.
//!
//! The modules, in the order a cutover uses them (see ARCHITECTURE.md):
//!
//! * [`color`]: the two colours and the split of traffic between them (no IO);
//! * [`config`]: plan files → a validated [`config::Plan`];
//! * [`saga`]: the state machine rebuilt from the journal (no IO);
//! * [`judge`]: verdicts on metric windows (no IO, no clock);
//! * [`traffic`]: the ALB (the only module that talks to ELBv2);
//! * [`metrics`]: CloudWatch (the only module that talks to CloudWatch);
//! * [`aws`]: SDK configuration and error classification shared by those two;
//! * [`journal`]: the state directory, intent logs and locks;
//! * [`hooks`]: the user's commands and HTTP checks;
//! * [`live_log`]: journal events rendered as the live log;
//! * [`engine`]: drives a saga through the adapters;
//! * [`backtest`]: the criteria replayed over CloudWatch history (`cutover backtest`);
//! * [`daemon`]: `cutover serve`, the control API and many cutovers at once;
//! * [`client`]: the daemon's command-line clients;
//! * [`cli`]: the `cutover` command line.

pub mod aws;
pub mod backtest;
pub mod cli;
pub mod client;
pub mod color;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod hooks;
pub mod journal;
pub mod judge;
pub mod live_log;
pub mod metrics;
pub mod saga;
pub mod traffic;

#[cfg(test)]
mod fakes;
