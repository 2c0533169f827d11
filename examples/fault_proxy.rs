//! The fault proxy as a program, for benchmarks by hand:
//!
//! ```text
//! cargo run --example fault_proxy -- http://127.0.0.1:5000 [--throttle P] [--server-error P]
//!     [--reset P] [--delay-ms MS] [--jitter-ms MS] [--only Op1,Op2] [--every SECS]
//! ```
//!
//! Prints the endpoint to give the SDK (`AWS_ENDPOINT_URL`), then the counters
//! every `--every` seconds (default 5), and once more on Ctrl-C.

#[path = "../tests/support/fault_proxy/mod.rs"]
mod fault_proxy;

use std::time::Duration;

use fault_proxy::{FaultProxy, Faults, Rule};

fn usage() -> ! {
    eprintln!(
        "usage: fault_proxy UPSTREAM [--throttle P] [--server-error P] [--reset P] \
         [--delay-ms MS] [--jitter-ms MS] [--only Op1,Op2] [--every SECS]"
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let upstream = args.next().filter(|a| !a.starts_with('-')).unwrap_or_else(|| usage());
    let (mut throttle, mut server_error, mut reset) = (0.0, 0.0, 0.0);
    let (mut delay, mut jitter, mut every) = (0u64, 0u64, 5u64);
    let mut only: Vec<String> = Vec::new();
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        let num = || value.parse::<f64>().unwrap_or_else(|_| usage());
        match flag.as_str() {
            "--throttle" => throttle = num(),
            "--server-error" => server_error = num(),
            "--reset" => reset = num(),
            "--delay-ms" => delay = num() as u64,
            "--jitter-ms" => jitter = num() as u64,
            "--every" => every = num().max(1.0) as u64,
            "--only" => only = value.split(',').map(str::to_string).collect(),
            _ => usage(),
        }
    }
    let rule = |p: f64| Rule::p(p).only(only.clone());
    let mut faults = Faults::none();
    if throttle > 0.0 {
        faults = faults.throttle(rule(throttle));
    }
    if server_error > 0.0 {
        faults = faults.server_error(503, rule(server_error));
    }
    if reset > 0.0 {
        faults = faults.reset(rule(reset));
    }
    if delay > 0 || jitter > 0 {
        faults = faults.delay(Duration::from_millis(delay), Duration::from_millis(jitter), rule(1.0));
    }

    let proxy = FaultProxy::start(&upstream).await;
    proxy.set(faults);
    println!("{}", proxy.endpoint());
    let mut tick = tokio::time::interval(Duration::from_secs(every));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => eprint!("{}", proxy.snapshot()),
            _ = tokio::signal::ctrl_c() => {
                eprint!("{}", proxy.snapshot());
                return;
            }
        }
    }
}
