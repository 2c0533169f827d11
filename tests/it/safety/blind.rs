//! Blind bakes and the verify gate: metrics unreadable at verify or mid-bake, a live colour
//! without datapoints, the HTTP verify check.

use std::time::Duration;

use cutover::color::{Color, Split};

use crate::e2e::{Background, journal_text, wait_for_event};
use crate::fault_proxy::{FaultProxy, Faults, Rule};
use crate::util::*;

use super::long_steps;

/// Regression (issue 8.6): a metrics read that always fails (access denied) held the bake at
/// 50/50 for ever. Verify reads exactly the bake's queries before anything changes: an error
/// there means not started, with a one-line reason.
#[tokio::test(flavor = "multi_thread")]
async fn unreadable_metrics_at_verify_mean_not_started() {
    let moto = Moto::start();
    let proxy = FaultProxy::start_in_thread(&moto.endpoint);
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let plan = wd.write_plan(&plan(&world, "", QUICK_STEPS));
    proxy.set(Faults::none().error(403, "AccessDenied", Rule::always().only(["GetMetricData"])));
    let out = run(wd.cutover(
        proxy.endpoint(),
        &["run", "--config", plan.to_str().unwrap(), "--output", "json"],
    ));
    assert_eq!(out.status.code(), Some(5));
    let reason = json(&out)["reason"].as_str().unwrap().to_string();
    assert!(
        reason.contains("cannot read the judged metrics") && reason.contains("AccessDenied"),
        "{reason}"
    );
    assert!(!reason.contains('\n') && reason.len() < 300, "not one line: {reason}");
    assert_eq!(
        proxy.snapshot().op("GetMetricData").requests,
        1,
        "retried an error that retrying cannot fix"
    );
    assert_eq!(weights(&world).await.holder(), Some(Color::Blue), "nothing changed");
}

/// Issue 8.6: the same error in the middle of a bake rolls back at once as `stalled`, rather
/// than holding traffic split while warning every poll.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_unreadable_mid_bake_roll_back_as_stalled() {
    let moto = Moto::start();
    let proxy = FaultProxy::start_in_thread(&moto.endpoint);
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let plan = wd.write_plan(&plan(&world, "", &long_steps()));
    let bg = Background::start(&wd, proxy.endpoint(), &plan);
    wait_for_event(&wd.state(), "bake_started", Duration::from_secs(30));
    proxy.set(Faults::none().error(403, "AccessDenied", Rule::always().only(["GetMetricData"])));
    let (code, s) = bg.wait(Duration::from_secs(60));
    assert_eq!(code, 3, "{s}");
    let reason = s["reason"].as_str().unwrap();
    assert!(
        reason.contains("retrying cannot fix") && reason.contains("AccessDenied"),
        "{reason}"
    );
    assert!(journal_text(&wd.state()).contains("\"trigger\":\"stalled\""));
    assert_eq!(weights(&world).await, Split::all_on(Color::Blue));
}

/// Issue 8.6: a live colour without a single datapoint while it holds all traffic (a wrong
/// namespace) is named in a warning at verify, with the namespace and dimensions.
#[tokio::test(flavor = "multi_thread")]
async fn a_live_colour_without_datapoints_is_warned_about() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    let text = plan(&world, "", QUICK_STEPS).replace("namespace = \"Cutover/Test\"", "namespace = \"Cutover/Typo\"");
    let plan = wd.write_plan(&text);
    let bg = Background::start(&wd, &world.endpoint, &plan);
    wait_for_event(&wd.state(), "bake_started", Duration::from_secs(30));
    unsafe { libc::kill(bg.child.id() as i32, libc::SIGTERM) };
    let log_path = bg.log.clone();
    let (code, _) = bg.wait(Duration::from_secs(30));
    assert_eq!(code, 4);
    let log = std::fs::read_to_string(log_path).unwrap();
    assert!(
        log.contains("no request count for it")
            && log.contains("Cutover/Typo")
            && log.contains("TargetGroup=targetgroup/"),
        "{log}"
    );
}

/// A one-shot HTTP server answering every GET with `status`.
fn http_server(status: u16) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 2048];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    format!("http://{addr}/health")
}

/// Issue 8.11: the HTTP verify check, against a real HTTP server: the expected status passes,
/// another one stops the cutover before anything changed.
#[tokio::test(flavor = "multi_thread")]
async fn the_http_verify_check_gates_the_start() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let _sim = Sim::start(&world, wd.path(), profile_healthy());
    for (status, expected) in [(503, 5), (200, 0)] {
        let url = http_server(status);
        let steps = QUICK_STEPS.replace(
            "checks = [{ command = [\"true\"] }]",
            &format!("checks = [{{ http = \"{url}\", expect_status = 200 }}]"),
        );
        let plan = wd.write_plan(&plan(&world, "", &steps));
        let out = run(wd.cutover(
            &world.endpoint,
            &["run", "--config", plan.to_str().unwrap(), "--output", "json"],
        ));
        assert_eq!(out.status.code(), Some(expected), "{}", json(&out));
        if expected == 5 {
            assert!(
                json(&out)["reason"]
                    .as_str()
                    .unwrap()
                    .contains("HTTP 503, expected 200")
            );
            assert_eq!(weights(&world).await.holder(), Some(Color::Blue));
        }
    }
}
