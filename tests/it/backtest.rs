//! `cutover backtest` against moto: recorded histories published with timestamps in the
//! past, replayed by the real binary.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use aws_smithy_types::DateTime;
use cutover::config::target_group_dimension;

use crate::util::*;

/// One colour's second (or minute) of history: `(t, requests, errors)`.
type Point = (u64, f64, f64);

/// Publishes a recorded series the way ALB does: no datapoint for zero counts.
async fn publish(endpoint: &str, lb: &str, tg_arn: &str, points: &[Point], resolution: i32) {
    let cw = aws_sdk_cloudwatch::Client::new(&sdk(endpoint).await);
    let dims = [
        ("LoadBalancer", lb.to_string()),
        ("TargetGroup", target_group_dimension(tg_arn)),
    ]
    .map(|(n, v)| Dimension::builder().name(n).value(v).build());
    let mut data = Vec::new();
    for &(t, requests, errors) in points {
        for (name, v) in [("RequestCount", requests), ("HTTPCode_Target_5XX_Count", errors)] {
            if v > 0.0 {
                data.push(
                    MetricDatum::builder()
                        .metric_name(name)
                        .set_dimensions(Some(dims.to_vec()))
                        .timestamp(DateTime::from_secs(t as i64))
                        .value(v)
                        .unit(StandardUnit::Count)
                        .storage_resolution(resolution)
                        .build(),
                );
            }
        }
    }
    for chunk in data.chunks(500) {
        cw.put_metric_data()
            .namespace("Cutover/Test")
            .set_metric_data(Some(chunk.to_vec()))
            .send()
            .await
            .unwrap();
    }
}

/// A custom metric value per minute, for one colour.
async fn publish_custom(endpoint: &str, tg_arn: &str, name: &str, points: &[(u64, f64)]) {
    let cw = aws_sdk_cloudwatch::Client::new(&sdk(endpoint).await);
    let data: Vec<MetricDatum> = points
        .iter()
        .map(|&(t, v)| {
            MetricDatum::builder()
                .metric_name(name)
                .dimensions(
                    Dimension::builder()
                        .name("TargetGroup")
                        .value(target_group_dimension(tg_arn))
                        .build(),
                )
                .timestamp(DateTime::from_secs(t as i64))
                .value(v)
                .build()
        })
        .collect();
    cw.put_metric_data()
        .namespace("Cutover/Test")
        .set_metric_data(Some(data))
        .send()
        .await
        .unwrap();
}

fn rfc3339(t: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(t)).to_string()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn backtest(wd: &Workdir, endpoint: &str, plan: &std::path::Path, from: &str, to: &str) -> (i32, String) {
    let out = run(wd.cutover(
        endpoint,
        &[
            "backtest",
            "--config",
            plan.to_str().unwrap(),
            "--new",
            "green",
            "--from",
            from,
            "--to",
            to,
        ],
    ));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("--- stdout:\n{stdout}");
    (out.status.code().unwrap_or(-1), stdout)
}

/// Last week's incident, in minutes: green's 5xx rose from 0.1 % to 6 % at minute 20. That is
/// under the plan's absolute 5 % beyond doubt, but far above blue's 0.1 %, so the comparison
/// catches it: the second failing minute (21) is the rollback, live two minutes (settle) after it ended.
#[tokio::test(flavor = "multi_thread")]
async fn backtest_names_the_first_rollback_of_a_recorded_incident() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let lb = alb_config(&world).load_balancer_dimension();
    let t0 = (now() - 3 * 3600) / 60 * 60;
    let minutes = 30;
    let green: Vec<Point> = (0..minutes)
        .map(|m| (t0 + m * 60, 1000.0, if m < 20 { 1.0 } else { 60.0 }))
        .collect();
    let blue: Vec<Point> = (0..minutes).map(|m| (t0 + m * 60, 1200.0, 1.0)).collect();
    publish(&world.endpoint, &lb, &world.green, &green, 60).await;
    publish(&world.endpoint, &lb, &world.blue, &blue, 60).await;
    // A custom metric, compared with the live colour by substituting the TargetGroup dimension.
    let queue: Vec<(u64, f64)> = (0..minutes).map(|m| (t0 + m * 60, 4.0)).collect();
    publish_custom(&world.endpoint, &world.green, "QueueAge", &queue).await;
    publish_custom(&world.endpoint, &world.blue, "QueueAge", &queue).await;

    let wd = Workdir::new();
    let text = plan(
        &world,
        r#"
[[rollback.metrics]]
namespace = "Cutover/Test"
name = "QueueAge"
dimensions = { TargetGroup = "{target_group}" }
statistic = "Maximum"
threshold = 30
direction = "above"
compare_with_live = true
"#,
        QUICK_STEPS,
    )
    .replace("period = \"1s\"", "period = \"60s\"")
    .replace("settle = \"1s\"", "settle = \"120s\"");
    let plan = wd.write_plan(&text);
    let before = weights(&world).await;

    let (code, out) = backtest(&wd, &world.endpoint, &plan, &rfc3339(t0), &rfc3339(t0 + minutes * 60));
    assert_eq!(code, 3, "{out}");
    let windows: Vec<&str> = out.lines().filter(|l| l.split(' ').nth(1) == Some("green")).collect();
    assert_eq!(windows.len(), minutes as usize, "{out}");
    assert!(
        windows[0].starts_with(&format!("{} green pass: 5xx 0.10% (1/1000)", rfc3339(t0))),
        "{out}"
    );
    assert!(windows[0].contains("QueueAge 4 ≤ 30, vs blue 4"), "{out}");
    assert!(
        windows[20].contains("green fail: error rate too high vs live: 5xx 6.00% (60/1000)"),
        "{out}"
    );
    assert!(windows[21].contains("fail 2/2 → rollback  ◀ first rollback"), "{out}");
    assert!(
        out.contains(&format!("would have rolled back at {}", rfc3339(t0 + 22 * 60 + 120))),
        "{out}"
    );
    // It wrote nothing: the listener is as it was, and there is no journal.
    assert_eq!(weights(&world).await, before);
    assert!(!wd.state().join("cutovers").exists());

    // The quiet 20 minutes before the incident would not have rolled back.
    let (code, out) = backtest(&wd, &world.endpoint, &plan, &rfc3339(t0), &rfc3339(t0 + 20 * 60));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("would not have rolled back; 20 periods: 20 pass"), "{out}");

    // Usage errors exit 2.
    let (code, _) = backtest(&wd, &world.endpoint, &plan, "last tuesday", "now");
    assert_eq!(code, 2);
}

/// A long history at 1-second resolution is read whole, in pages of at most 1440 periods per
/// GetMetricData call, not truncated to the newest page: the incident is in the last page.
#[tokio::test(flavor = "multi_thread")]
async fn backtest_pages_through_a_long_one_second_history() {
    let moto = Moto::start();
    let world = World {
        endpoint: moto.endpoint.clone(),
        listener_arn:
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/it/0123456789abcdef/fedcba9876543210"
                .into(),
        rule_arn: None,
        blue: "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/it-blue/0000000000000001".into(),
        green: "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/it-green/0000000000000002".into(),
        stopped_instance: None,
    };
    let lb = alb_config(&world).load_balancer_dimension();
    let seconds = 1600u64;
    let t0 = now() - 3600;
    let green: Vec<Point> = (0..seconds)
        .map(|s| (t0 + s, 25.0, if s < 1550 { 0.0 } else { 25.0 }))
        .collect();
    let blue: Vec<Point> = (0..seconds).map(|s| (t0 + s, 25.0, 0.0)).collect();
    publish(&world.endpoint, &lb, &world.green, &green, 1).await;
    publish(&world.endpoint, &lb, &world.blue, &blue, 1).await;

    let wd = Workdir::new();
    let plan = wd.write_plan(&plan(&world, "", QUICK_STEPS));
    let (code, out) = backtest(&wd, &world.endpoint, &plan, &rfc3339(t0), &rfc3339(t0 + seconds));
    assert_eq!(code, 3, "{}", out.lines().rev().take(5).collect::<Vec<_>>().join("\n"));
    let windows: Vec<&str> = out.lines().filter(|l| l.split(' ').nth(1) == Some("green")).collect();
    assert_eq!(windows.len(), seconds as usize);
    assert!(windows[0].starts_with(&rfc3339(t0)));
    assert_eq!(out.matches(" green pass: ").count(), 1550);
    assert!(
        out.contains(&format!("would have rolled back at {}", rfc3339(t0 + 1552 + 1))),
        "{}",
        out.lines().rev().take(3).collect::<Vec<_>>().join("\n")
    );
}
