//! `recordctl probe` compared with the real blackbox_exporter over the same cases, `smoke` as a
//! CI gate (JUnit validated against a schema), and `doctor` naming what is missing.

use crate::support;

use recordstore_fixtures as fixtures;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use recordctl::probe::ProbeResult;
use recordctl::probe::spec::{HttpSpec, ProbeSpec, TcpSpec};
use support::{TempDir, free_port, repo, required};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn recordctl() -> Command {
    support::recordctl()
}

/// 200, 404, 500, a redirect, bodies that match or not, a slow answer and one that hangs.
async fn test_server() -> String {
    let app = Router::new()
        .route("/ok", get(|| async { "hello" }))
        .route("/missing", get(|| async { (StatusCode::NOT_FOUND, "no such thing") }))
        .route("/error", get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }))
        .route("/redirect", get(|| async { Redirect::to("/ok") }))
        .route("/body", get(|| async { r#"{"status":"ready"}"# }))
        .route("/body-other", get(|| async { r#"{"status":"starting"}"# }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                "slow".into_response()
            }),
        )
        .route(
            "/hang",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                "late"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// A TLS server with a self-signed certificate for localhost, made by openssl here.
async fn tls_server(dir: &TempDir) -> (u16, i64) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .args([
            "-days",
            "30",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ])
        .args(["-keyout", key.to_str().unwrap(), "-out", cert.to_str().unwrap()])
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let end = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-enddate",
            "-dateopt",
            "iso_8601",
            "-in",
            cert.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let end = String::from_utf8_lossy(&end.stdout)
        .trim()
        .trim_start_matches("notAfter=")
        .to_string();
    let not_after = parse_iso(&end);
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(&cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut seen = Vec::new();
                let mut buf = [0u8; 1024];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecure")
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, not_after)
}

/// `2026-12-21 10:00:00Z` → Unix seconds.
fn parse_iso(s: &str) -> i64 {
    let out = Command::new("date").args(["-u", "-d", s, "+%s"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("date {s:?}"))
}

const BLACKBOX_MODULES: &str = r#"modules:
  http_2xx: { prober: http, timeout: 2s, http: { preferred_ip_protocol: ip4 } }
  http_body:
    prober: http
    timeout: 2s
    http: { preferred_ip_protocol: ip4, fail_if_body_not_matches_regexp: ['"status":"ready"'] }
  http_timeout: { prober: http, timeout: 1s, http: { preferred_ip_protocol: ip4 } }
  http_insecure: { prober: http, timeout: 2s, http: { preferred_ip_protocol: ip4, tls_config: { insecure_skip_verify: true } } }
  tcp_connect: { prober: tcp, timeout: 2s, tcp: { preferred_ip_protocol: ip4 } }
"#;

/// blackbox_exporter with the modules the comparison uses.
async fn blackbox(dir: &TempDir) -> support::Blackbox {
    std::fs::write(dir.join("blackbox.yml"), BLACKBOX_MODULES).unwrap();
    support::Blackbox::start(&dir.join("blackbox.yml")).await
}

/// blackbox_exporter's answer for one probe: metric (with phase label folded in) → value.
async fn blackbox_probe(blackbox: &support::Blackbox, module: &str, target: &str) -> BTreeMap<String, f64> {
    let text = reqwest::Client::new()
        .get(format!("{}/probe", blackbox.url))
        .query(&[("module", module), ("target", target)])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn http_spec(url: &str, timeout: Duration) -> HttpSpec {
    HttpSpec {
        name: url.to_string(),
        url: url.to_string(),
        method: "GET".into(),
        headers: Vec::new(),
        expect_status: Vec::new(),
        max_latency: None,
        body_regex: Vec::new(),
        body_not_regex: Vec::new(),
        header_regex: Vec::new(),
        follow_redirects: true,
        insecure: false,
        timeout,
    }
}

/// Rounds per case in the comparison with blackbox_exporter.
const ROUNDS: usize = 3;

/// One round: our result and blackbox_exporter's metrics.
type Round = (ProbeResult, BTreeMap<String, f64>);

/// The stated tolerance: the fastest rounds of the two tools agree within 150 ms or 25%.
fn close(ours: f64, theirs: f64) -> bool {
    (ours - theirs).abs() <= 0.15_f64.max(theirs * 0.25)
}

/// What the test server dictates about a case's duration, for both tools: the slow route
/// answers after 400 ms, the hanging one never, so that probe must end at its own 1 s timeout.
/// Only these bounds are asserted; how close the two tools' timings are depends on how loaded
/// the machine is, so the table prints them side by side instead.
fn duration_bounds(case: &str) -> (f64, f64) {
    match case {
        "slow" => (0.39, f64::INFINITY),
        // Ends at the 1 s timeout; the upper bound only says the timeout was honoured.
        "timeout" => (0.99, 2.0),
        _ => (0.0, f64::INFINITY),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_verdicts_match_the_real_blackbox_exporter_case_by_case() {
    let _alone = support::alone(); // the comparison with blackbox_exporter times both
    if !support::Blackbox::available()
        || !required(
            Command::new("openssl").arg("version").output().is_ok(),
            "openssl",
            "apt-get install openssl",
        )
    {
        return;
    }
    let base = test_server().await;
    let dir = TempDir::new("recordctl-tls");
    let (tls_port, cert_not_after) = tls_server(&dir).await;
    let refused = format!("127.0.0.1:{}", free_port());
    let blackbox = blackbox(&dir).await;
    let timeout = Duration::from_secs(2);
    let body_ready = regex::Regex::new(r#""status":"ready""#).unwrap();
    let with = |url: String, f: &dyn Fn(&mut HttpSpec)| {
        let mut spec = http_spec(&url, timeout);
        f(&mut spec);
        ProbeSpec::Http(spec)
    };
    let cases: Vec<(&str, &str, String, ProbeSpec)> = vec![
        (
            "200",
            "http_2xx",
            format!("{base}/ok"),
            with(format!("{base}/ok"), &|_| {}),
        ),
        (
            "404",
            "http_2xx",
            format!("{base}/missing"),
            with(format!("{base}/missing"), &|_| {}),
        ),
        (
            "500",
            "http_2xx",
            format!("{base}/error"),
            with(format!("{base}/error"), &|_| {}),
        ),
        (
            "redirect",
            "http_2xx",
            format!("{base}/redirect"),
            with(format!("{base}/redirect"), &|_| {}),
        ),
        (
            "body match",
            "http_body",
            format!("{base}/body"),
            with(format!("{base}/body"), &|s| s.body_regex = vec![body_ready.clone()]),
        ),
        (
            "body mismatch",
            "http_body",
            format!("{base}/body-other"),
            with(format!("{base}/body-other"), &|s| {
                s.body_regex = vec![body_ready.clone()]
            }),
        ),
        (
            "connection refused",
            "http_2xx",
            format!("http://{refused}/"),
            with(format!("http://{refused}/"), &|_| {}),
        ),
        (
            "timeout",
            "http_timeout",
            format!("{base}/hang"),
            with(format!("{base}/hang"), &|s| s.timeout = Duration::from_secs(1)),
        ),
        (
            "slow",
            "http_2xx",
            format!("{base}/slow"),
            with(format!("{base}/slow"), &|_| {}),
        ),
        (
            "self-signed TLS, verified",
            "http_2xx",
            format!("https://localhost:{tls_port}/"),
            with(format!("https://localhost:{tls_port}/"), &|_| {}),
        ),
        (
            "self-signed TLS, insecure",
            "http_insecure",
            format!("https://localhost:{tls_port}/"),
            with(format!("https://localhost:{tls_port}/"), &|s| s.insecure = true),
        ),
    ];
    let mut mismatches = Vec::new();
    let mut table = String::new();
    for (case, module, target, spec) in &cases {
        // Each case runs ROUNDS times, the tools taking turns; verdicts must agree every
        // round, and the fastest round of each tool is compared, so that a moment of load
        // on a 2-core machine does not decide the comparison.
        let mut rounds = Vec::new();
        for _ in 0..ROUNDS {
            let theirs = blackbox_probe(&blackbox, module, target).await;
            let ours: ProbeResult = recordctl::probe::conn::run(spec).await;
            rounds.push((ours, theirs));
        }
        let fastest = |f: &dyn Fn(&Round) -> f64| rounds.iter().map(f).fold(f64::INFINITY, f64::min);
        let our_duration = fastest(&|(ours, _)| ours.duration_s);
        let their_duration = fastest(&|(_, theirs)| theirs["probe_duration_seconds"]);
        let (ours, theirs) = rounds.last().unwrap();
        let their_success = theirs["probe_success"];
        let their_status = theirs.get("probe_http_status_code").copied().unwrap_or(0.0);
        table.push_str(&format!(
            "{case:<28} ours success={} status={} {our_duration:.3}s | blackbox success={} status={} {their_duration:.3}s\n",
            u8::from(ours.success),
            ours.status_code,
            their_success,
            their_status,
        ));
        for (ours, theirs) in &rounds {
            let their_success = theirs["probe_success"];
            let their_status = theirs.get("probe_http_status_code").copied().unwrap_or(0.0);
            if f64::from(u8::from(ours.success)) != their_success {
                mismatches.push(format!(
                    "{case}: probe_success ours {} blackbox {their_success} ({:?})",
                    ours.success, ours.failure
                ));
            }
            if f64::from(ours.status_code) != their_status {
                mismatches.push(format!(
                    "{case}: status ours {} blackbox {their_status}",
                    ours.status_code
                ));
            }
            let (low, high) = duration_bounds(case);
            for (tool, duration) in [
                ("ours", ours.duration_s),
                ("blackbox", theirs["probe_duration_seconds"]),
            ] {
                if !(low..=high).contains(&duration) {
                    mismatches.push(format!("{case}: {tool} took {duration:.3}s, outside [{low}, {high}]s"));
                }
            }
        }
        if !close(our_duration, their_duration) {
            mismatches.push(format!(
                "{case}: fastest of {ROUNDS} ours {our_duration:.3}s blackbox {their_duration:.3}s"
            ));
        }
        if let Some(redirects) = theirs.get("probe_http_redirects") {
            assert_eq!(f64::from(ours.redirects), *redirects, "{case}: redirects");
        }
        if let Some(regex) = theirs.get("probe_failed_due_to_regex") {
            assert_eq!(
                f64::from(u8::from(ours.failed_due_to_regex)),
                *regex,
                "{case}: failed_due_to_regex"
            );
        }
        if *case == "slow" {
            let their_processing = theirs["probe_http_duration_seconds{phase=\"processing\"}"];
            assert!(
                ours.phases.processing >= 0.38 && their_processing >= 0.38,
                "{case}: {ours:?} {theirs:?}"
            );
        }
        if *case == "self-signed TLS, insecure" {
            assert_eq!(ours.cert_expiry_unix, Some(cert_not_after), "our expiry vs openssl");
            assert_eq!(
                theirs["probe_ssl_earliest_cert_expiry"], cert_not_after as f64,
                "blackbox's expiry"
            );
            assert!(ours.phases.tls > 0.0 && theirs["probe_http_duration_seconds{phase=\"tls\"}"] > 0.0);
            assert!(ours.tls);
        }
    }
    // TCP: a listening port and a refused one.
    let addr = base.trim_start_matches("http://").to_string();
    for (case, target, want) in [("tcp open", addr.clone(), 1.0), ("tcp refused", refused.clone(), 0.0)] {
        let theirs = blackbox_probe(&blackbox, "tcp_connect", &target).await;
        let ours = recordctl::probe::conn::run(&ProbeSpec::Tcp(TcpSpec {
            name: case.into(),
            address: target.clone(),
            send: None,
            expect: None,
            timeout,
        }))
        .await;
        assert_eq!(theirs["probe_success"], want, "{case}: blackbox");
        assert_eq!(
            f64::from(u8::from(ours.success)),
            want,
            "{case}: ours {:?}",
            ours.failure
        );
    }
    eprintln!("{table}");
    assert!(
        mismatches.is_empty(),
        "disagreements with blackbox_exporter:\n{}\n{table}",
        mismatches.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_command_speaks_blackbox_metric_names_and_exits_1_on_failure() {
    let _turn = support::shared();
    let base = test_server().await;
    let out = recordctl()
        .args([
            "probe",
            &format!("{base}/ok"),
            "--expect-status",
            "200",
            "--max-latency",
            "2s",
        ])
        .args(["--format", "prometheus"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for name in [
        "probe_success{",
        "probe_duration_seconds{",
        "probe_http_duration_seconds{",
        "phase=\"processing\"",
        "probe_http_status_code{",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("probe_http_status_code{") && l.ends_with(" 200"))
    );
    let out = recordctl()
        .args(["probe", &format!("{base}/missing"), "--json", "-"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["results"][0]["status_code"], 404);
    assert!(
        report["results"][0]["failure"]
            .as_str()
            .unwrap()
            .contains("expected 2xx")
    );
    // Bad input: exit 2, named.
    let out = recordctl().args(["probe", "ftp://x/"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("neither an http(s) URL nor a path"));
    let out = recordctl()
        .args(["probe", &format!("{base}/ok"), "--body-regex", "("])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--body-regex"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_probing_reports_availability_and_percentiles_over_the_window() {
    let _turn = support::shared();
    let base = test_server().await;
    let dir = TempDir::new("recordctl-probes");
    let file = dir.join("probes.toml");
    std::fs::write(
        &file,
        "[[probe]]\nname = \"ok\"\nurl = \"/ok\"\n\n[[probe]]\nname = \"broken\"\nurl = \"/error\"\n",
    )
    .unwrap();
    let out = recordctl()
        .args(["probe", "--file", file.to_str().unwrap(), "--target", &base])
        .args(["--every", "200ms", "--for", "1s", "--json", "-"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the broken probe is below 100% availability"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let window = report["window"].as_array().unwrap();
    assert_eq!(window[0]["name"], "ok");
    let checks = window[0]["checks"].as_u64().unwrap();
    assert!((4..=6).contains(&checks), "5 rounds in 1 s at 200 ms, got {checks}");
    assert_eq!(window[0]["availability"], 100.0);
    assert_eq!(window[1]["availability"], 0.0);
    assert!(window[0]["p99_ms"].as_f64().unwrap() > 0.0);
    assert!(window[1]["last_failure"].as_str().unwrap().contains("500"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_can_be_reported_tcp_can_send_and_expect_and_results_reach_a_pushgateway() {
    let _turn = support::shared();
    let base = test_server().await;
    // Not following: the 303 itself is the answer.
    let out = recordctl()
        .args([
            "probe",
            &format!("{base}/redirect"),
            "--no-follow-redirects",
            "--expect-status",
            "303",
            "--json",
            "-",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["results"][0]["status_code"], 303);
    assert_eq!(report["results"][0]["redirects"], 0);

    // TCP with send and expect, against a line echo server.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                if let Ok(n) = socket.read(&mut buf).await {
                    let _ = socket
                        .write_all(format!("+PONG {}", String::from_utf8_lossy(&buf[..n])).as_bytes())
                        .await;
                }
            });
        }
    });
    let tcp = move |expect: &str| {
        recordctl()
            .args([
                "probe",
                &format!("tcp://{addr}"),
                "--send",
                "PING\n",
                "--expect",
                expect,
                "--timeout",
                "2s",
            ])
            .output()
            .unwrap()
    };
    let out = tokio::task::spawn_blocking(move || (tcp("^\\+PONG"), tcp("^-ERR")))
        .await
        .unwrap();
    assert!(out.0.status.success(), "{}", String::from_utf8_lossy(&out.0.stdout));
    assert_eq!(
        out.1.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.1.stdout)
    );

    let Some(gateway) = support::Pushgateway::start() else {
        return;
    };
    let out = recordctl()
        .args(["probe", &format!("{base}/ok"), "--push-gateway", &gateway.url()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let metrics = reqwest::get(format!("{}/metrics", gateway.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("probe_success{") && l.contains("job=\"recordctl_probe\""))
        .unwrap_or_else(|| panic!("no probe_success pushed:\n{metrics}"));
    assert!(line.ends_with(" 1"), "{line}");
}

fn validate_junit(path: &Path) {
    if !required(
        Command::new("xmllint").arg("--version").output().is_ok(),
        "xmllint",
        "apt-get install libxml2-utils",
    ) {
        return;
    }
    let out = Command::new("xmllint")
        .args(["--noout", "--schema", repo("tests/probe/junit.xsd").to_str().unwrap()])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} is not valid JUnit XML: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn smoke_passes_on_the_embedded_store_with_a_valid_junit_report() {
    let dir = TempDir::new("recordctl-smoke");
    let junit = dir.join("smoke.xml");
    let out = recordctl()
        .args([
            "smoke",
            "--junit",
            junit.to_str().unwrap(),
            "--json",
            dir.join("s.json").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    validate_junit(&junit);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("failures=\"0\""), "{xml}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("s.json")).unwrap()).unwrap();
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for wanted in [
        "live",
        "ready",
        "journey: browse, view, checkout, order completed",
        "journey telemetry: trace, log lines, metrics",
        "probe ready",
    ] {
        assert!(names.contains(&wanted), "{wanted} not checked: {names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_fails_precisely_when_the_worker_is_stopped_or_the_target_is_down() {
    let _turn = support::shared();
    let dir = TempDir::new("recordctl-smoke-fail");
    // The API without its worker: orders are accepted and never processed.
    let app = support::store(&dir, recordstore::Role::Api, |_| {}).await;
    let junit = dir.join("no-worker.xml");
    let out = tokio::task::spawn_blocking({
        let (base, junit) = (app.base_url(), junit.clone());
        move || {
            recordctl()
                .args([
                    "smoke",
                    "--target",
                    &base,
                    "--wait",
                    "2s",
                    "--junit",
                    junit.to_str().unwrap(),
                ])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    validate_junit(&junit);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("failures=\"1\""), "{xml}");
    let failure = xml
        .lines()
        .find(|l| l.contains("<failure"))
        .unwrap_or_else(|| panic!("{xml}"));
    assert!(failure.contains("expected order completed within 2s"), "{failure}");
    assert!(
        failure.contains("not finished after 2s") && failure.contains("is the worker running?"),
        "{failure}"
    );
    app.shutdown().await.unwrap();

    let down = format!("http://127.0.0.1:{}", free_port());
    let junit = dir.join("down.xml");
    let out = recordctl()
        .args(["smoke", "--target", &down, "--junit", junit.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    validate_junit(&junit);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains(&format!("expected GET {down}/health/live answers 200; got no answer")),
        "{xml}"
    );
}

fn doctor_rows(out: &std::process::Output) -> Vec<serde_json::Value> {
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    report["rows"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_each_missing_backend_with_a_fix_and_exits_3() {
    let _turn = support::shared();
    let dead = |_: ()| format!("http://127.0.0.1:{}", free_port());
    let out = recordctl()
        .args(["doctor", "--json", "-"])
        .args(["--target", &dead(()), "--prometheus", &dead(()), "--loki", &dead(())])
        .args([
            "--jaeger",
            &dead(()),
            "--alertmanager",
            &dead(()),
            "--grafana",
            &dead(()),
        ])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let rows = doctor_rows(&out);
    // Grafana is only linked to: not answering is a warning that says so, with the fix.
    let grafana = rows
        .iter()
        .find(|r| r["component"] == "Grafana")
        .expect("a Grafana row");
    assert_eq!(grafana["status"], "warn", "{grafana}");
    assert!(
        grafana["detail"]
            .as_str()
            .unwrap()
            .starts_with("cannot reach Grafana at http://127.0.0.1:"),
        "{grafana}"
    );
    assert!(
        grafana["fix"]
            .as_str()
            .unwrap()
            .contains("docker compose up -d grafana"),
        "{grafana}"
    );
    for (component, check) in [
        ("target", "live"),
        ("target", "ready"),
        ("Prometheus", "ready"),
        ("Loki", "ready"),
        ("Jaeger", "services"),
        ("Alertmanager", "ready"),
        ("Docker", "engine"),
    ] {
        let row = rows
            .iter()
            .find(|r| r["component"] == component && r["check"] == check)
            .unwrap_or_else(|| panic!("no {component} {check} row: {rows:?}"));
        assert_eq!(row["status"], "fail", "{row}");
        assert!(!row["fix"].as_str().unwrap().is_empty(), "{row} has no fix");
        if component == "target" {
            // Nothing answers: the fix is to start the store, not to look at its database.
            assert!(row["fix"].as_str().unwrap().starts_with("start the store"), "{row}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_is_all_ok_against_a_healthy_stack() {
    let _turn = support::shared();
    if !support::Prometheus::available() || !support::Alertmanager::available() {
        return;
    }
    let (jaeger, jaeger_url) = fixtures::JaegerFixture::start().await;
    let (_loki, loki_url) = fixtures::LokiFixture::start().await;
    let dir = TempDir::new("recordctl-doctor");
    let app = support::store(&dir, recordstore::Role::ApiAndWorker, |config| {
        config.telemetry.otlp_endpoint = Some(jaeger_url.clone());
    })
    .await;
    let client = reqwest::Client::new();
    client
        .post(format!("{}/checkout", app.base_url()))
        .json(&serde_json::json!({ "product_id": 1, "quantity": 1 }))
        .send()
        .await
        .unwrap();
    let prometheus = support::Prometheus::start(
        &format!(
            "  - job_name: recordstore-api\n    static_configs:\n      - targets: ['{}']\n",
            app.addr()
        ),
        &[],
        "",
    );
    let alertmanager = support::Alertmanager::start();
    // Wait for the worker's span to reach Jaeger and for the first scrape.
    let prom = prometheus.client();
    support::eventually(
        "spans of both services and a scrape",
        Duration::from_secs(30),
        || async {
            let up = prom.instant("up{job=\"recordstore-api\"}").await.ok()?;
            (jaeger.span_count() >= 2 && up.first()?.value == 1.0).then_some(())
        },
    )
    .await;
    let am = alertmanager.url();
    let grafana = fixtures::grafana::start().await;
    let args: Vec<String> = [
        "doctor",
        "--json",
        "-",
        "--skip",
        "docker",
        "--target",
        &app.base_url(),
        "--prometheus",
        &prometheus.url,
        "--loki",
        &loki_url,
        "--jaeger",
        &jaeger_url,
        "--alertmanager",
        &am,
        "--grafana",
        &grafana,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = support::eventually("doctor to pass (Alertmanager ready)", Duration::from_secs(20), || {
        let args = args.clone();
        async move {
            let out = tokio::task::spawn_blocking(move || recordctl().args(&args).output().unwrap())
                .await
                .ok()?;
            (out.status.code() == Some(0)).then_some(out)
        }
    })
    .await;
    let rows = doctor_rows(&out);
    assert_eq!(rows.len(), 8, "{rows:?}");
    assert!(rows.iter().all(|r| r["status"] == "ok"), "{rows:#?}");
    drop(alertmanager);
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_the_compose_projects_containers_and_their_state() {
    let _turn = support::shared();
    if !support::docker::engine() {
        return;
    }
    support::docker::local_images();
    let project = support::docker::Project::new("rsdoc");
    for service in ["api", "worker", "db"] {
        project.run(
            service,
            support::docker::BASE_IMAGE,
            &["--init"],
            &["sleep", "infinity"],
        );
    }
    support::docker::docker(&["pause", &project.container("worker")]);
    let out = recordctl()
        .args(["doctor", "--json", "-", "--project", &project.name])
        .args(["--skip", "target,prometheus,loki,jaeger,alertmanager,grafana"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let rows = doctor_rows(&out);
    let status = |service: &str| {
        rows.iter()
            .find(|r| r["check"] == format!("{}/{service}", project.name))
            .unwrap_or_else(|| panic!("no row for {service}: {rows:?}"))["status"]
            .clone()
    };
    assert_eq!(rows[0]["status"], "ok", "engine: {rows:?}");
    assert_eq!(status("api"), "ok");
    assert_eq!(status("db"), "ok");
    assert_eq!(status("worker"), "fail", "a paused worker is not ok");
    support::docker::docker(&["unpause", &project.container("worker")]);
}

/// A server that answers each request for a path with a canned byte string, and records
/// every request head it was sent.
async fn canned_server(answers: Vec<(&'static str, Vec<u8>)>) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let answers = Arc::new(answers);
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (answers, log) = (answers.clone(), log.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.is_ok_and(|n| n == 1) {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                log.lock().unwrap().push(head);
                if let Some((_, answer)) = answers.iter().find(|(p, _)| *p == path) {
                    let _ = stream.write_all(answer).await;
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    (base, seen)
}

/// HTTP answers the probe once misread or crashed on: each now gets the verdict RFC 9112 gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_reads_interim_conflicting_hostile_and_huge_answers_rightly() {
    let _turn = support::shared();
    let huge = {
        let mut a = b"HTTP/1.1 200 OK\r\nContent-Length: 9000000\r\n\r\n".to_vec();
        a.extend(std::iter::repeat_n(b'x', 9_000_000));
        a
    };
    let (base, _) = canned_server(vec![
        (
            "/hints",
            b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                .to_vec(),
        ),
        (
            "/conflict",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\nok\r\n0\r\n\r\n".to_vec(),
        ),
        (
            "/hostile",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc".to_vec(),
        ),
        ("/huge", huge),
    ])
    .await;
    let probe = |path: &str, regex: Option<&str>| {
        let mut spec = http_spec(&format!("{base}{path}"), Duration::from_secs(10));
        spec.body_regex = regex.map(|r| regex::Regex::new(r).unwrap()).into_iter().collect();
        async move { recordctl::probe::conn::http(&spec).await }
    };
    let hints = probe("/hints", Some("^ok$")).await;
    assert!(hints.success, "a 103 is not the answer: {hints:?}");
    assert_eq!(hints.status_code, 200);
    let conflict = probe("/conflict", None).await;
    assert!(!conflict.success);
    assert!(conflict.failure.unwrap().contains("RFC 9112"));
    let hostile = probe("/hostile", None).await;
    assert!(!hostile.success, "{hostile:?}");
    assert!(hostile.failure.unwrap().contains("cut off"));
    let huge = probe("/huge", Some("y")).await;
    assert!(huge.body_truncated && huge.body_length == 8 << 20, "{huge:?}");
    assert!(huge.failure.unwrap().contains("truncated at 8388608 bytes"));
}

/// A redirect to another origin must not carry the user's credentials (as curl does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_another_origin_drops_the_credentials() {
    let _turn = support::shared();
    let (other, other_seen) = canned_server(vec![(
        "/landing",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(),
    )])
    .await;
    let redirect = format!("HTTP/1.1 302 Found\r\nLocation: {other}/landing\r\nContent-Length: 0\r\n\r\n").into_bytes();
    let (first, first_seen) = canned_server(vec![("/start", redirect)]).await;
    let mut spec = http_spec(&format!("{first}/start"), Duration::from_secs(10));
    spec.headers = vec![
        ("Authorization".into(), "Bearer s3cret".into()),
        ("X-Trace".into(), "kept".into()),
    ];
    let result = recordctl::probe::conn::http(&spec).await;
    assert!(result.success, "{result:?}");
    assert_eq!(result.redirects, 1);
    let first_head = first_seen.lock().unwrap().join("");
    let other_head = other_seen.lock().unwrap().join("");
    assert!(first_head.contains("Authorization: Bearer s3cret"), "{first_head}");
    assert!(
        !other_head.contains("s3cret"),
        "the token reached another origin: {other_head}"
    );
    assert!(other_head.contains("X-Trace: kept"), "{other_head}");
}
