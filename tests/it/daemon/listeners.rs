//! Beyond one plain listener: concurrent cutovers on separate listeners, and TLS with the given
//! certificate.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use cutover::color::Color;
use serde_json::json;

use crate::util::*;

use super::{Serve, TOKEN, TapMkdir, api, plans, wait_until};

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_cutovers_on_separate_listeners() {
    let moto = Moto::start();
    let a = fixture(&moto, &["--name", "alpha"]);
    let b = fixture(&moto, &["--name", "beta"]);
    let wd = Workdir::new();
    let _sa = Sim::start(&a, &wd.path().join("a").tap_mkdir(), profile_healthy());
    let _sb = Sim::start(&b, &wd.path().join("b").tap_mkdir(), profile_healthy());
    let dir = plans(&wd, "alpha", &a, QUICK_STEPS);
    plans(&wd, "beta", &b, QUICK_STEPS);
    let s = Serve::start(&wd, &moto.endpoint, &dir);
    let (ca, va) = api(&s, "POST", "/v1/cutovers", Some(json!({"plan": "alpha"}))).await;
    let (cb, vb) = api(&s, "POST", "/v1/cutovers", Some(json!({"plan": "beta"}))).await;
    assert_eq!((ca, cb), (201, 201), "{va} {vb}");
    for v in [va, vb] {
        let id = v["id"].as_str().unwrap().to_string();
        let v = wait_until(&s, &id, Duration::from_secs(60), "finished", |v| {
            v["outcome"].is_string()
        })
        .await;
        assert_eq!(v["outcome"], "promoted", "{v}");
    }
    assert_eq!(weights(&a).await.holder(), Some(Color::Green));
    assert_eq!(weights(&b).await.holder(), Some(Color::Green));
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_serves_https_with_the_given_certificate() {
    let moto = Moto::start();
    let world = fixture(&moto, &[]);
    let wd = Workdir::new();
    let dir = plans(&wd, "web", &world, QUICK_STEPS);
    let (cert, key) = (wd.path().join("cert.pem"), wd.path().join("key.pem"));
    // A test CA and a server certificate for 127.0.0.1 signed by it.
    let script = r#"set -e
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=cutover-test-ca
openssl req -newkey rsa:2048 -nodes -keyout key.pem -out leaf.csr -subj /CN=localhost
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > leaf.ext
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem -days 1 -extfile leaf.ext
"#;
    let out = std::process::Command::new("sh")
        .args(["-c", script])
        .current_dir(wd.path())
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "openssl (Debian package openssl) made no certificate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cmd = wd.cutover(
        &moto.endpoint,
        &["serve", "--listen", "127.0.0.1:0", "--plans", dir.to_str().unwrap()],
    );
    cmd.args(["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    cmd.env("CUTOVER_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let s = Serve {
        url: line.trim().strip_prefix("listening on ").unwrap().to_string(),
        child,
    };
    assert!(s.url.starts_with("https://"), "{}", s.url);
    let ca = reqwest::Certificate::from_pem(&std::fs::read(wd.path().join("ca.pem")).unwrap()).unwrap();
    let client = reqwest::Client::builder().tls_certs_only([ca]).build().unwrap();
    let resp = client.get(format!("{}/health", s.url)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let resp = client.get(format!("{}/v1/cutovers", s.url)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = client
        .get(format!("{}/v1/cutovers", s.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // Plain HTTP to the TLS port gets no answer.
    assert!(
        reqwest::get(format!("{}/health", s.url.replace("https://", "http://")))
            .await
            .is_err()
    );
}
