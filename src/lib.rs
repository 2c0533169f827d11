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
//! * [`budget`]: the process's AWS API budget (token buckets, the urgent lane) and the
//!   coalescing of many cutovers' reads into shared calls;
//! * [`journal`]: the state directory, intent logs and locks;
//! * [`hooks`]: the user's commands and HTTP checks;
//! * [`live_log`]: journal events rendered as the live log;
//! * [`engine`]: drives a saga through the adapters;
//! * [`state`]: one cutover's state as people and tools see it, folded from its journal;
//! * [`backtest`]: the criteria replayed over CloudWatch history (`cutover backtest`);
//! * [`report`]: a cutover's report (HTML with its timeline, JSON, Markdown), from its journal alone;
//! * [`notify`]: Slack, PagerDuty and webhook notifications, derived from the journal;
//! * [`daemon`]: `cutover serve`, the control API, many cutovers at once, and its clients;
//! * [`cli`]: the `cutover` command line.

// The daemon's rescue loop awaits an engine's whole future (drive → restore in the budget's
// urgent lane → the shared readers): its layout nests deeper than rustc's default of 128.
#![recursion_limit = "256"]
#![allow(
    rustdoc::private_intra_doc_links,
    reason = "the module docs are the code map for the next engineer: they link the private files \
              they describe, and `cargo doc --document-private-items` (as `.ci/run` builds them) resolves those links"
)]

pub mod aws;
pub mod backtest;
pub mod budget;
pub mod cli;
pub mod color;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod hooks;
pub mod journal;
pub mod judge;
pub mod live_log;
pub mod metrics;
pub mod notify;
pub mod report;
pub mod saga;
pub mod state;
pub mod traffic;

#[cfg(test)]
mod fakes;

/// The error convention: a cause is printed in its error's message, never also exposed as
/// `source()` (or `{:#}` prints it twice).
#[cfg(test)]
mod error_convention {
    use std::error::Error;

    fn io() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::NotADirectory, "Not a directory (os error 20)")
    }

    #[test]
    fn every_error_prints_its_cause_once() {
        let journal = || crate::journal::JournalError::Io {
            path: "state/cutovers".into(),
            cause: io(),
        };
        let aws = crate::aws::AwsError {
            operation: "DescribeListeners",
            code: Some("Throttling".into()),
            message: "Rate exceeded".into(),
            retryable: true,
            answered: true,
        };
        let errors: Vec<Box<dyn Error + Send + Sync>> = vec![
            Box::new(journal()),
            Box::new(crate::engine::EngineError::Journal(journal())),
            Box::new(crate::engine::start::NotStarted::Journal(journal())),
            Box::new(crate::traffic::TrafficError::Aws(aws.clone())),
            Box::new(crate::metrics::MetricsError::Aws(aws)),
        ];
        for e in errors {
            assert!(e.source().is_none(), "{e} exposes its cause as source() too");
            let text = format!("{:#}", anyhow::Error::from_boxed(e));
            let cause = if text.contains("os error") {
                "os error 20"
            } else {
                "Rate exceeded"
            };
            assert_eq!(text.matches(cause).count(), 1, "{text}");
        }
    }
}
