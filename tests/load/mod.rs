//! `recordctl load-test` end to end: the real binary against small axum servers on
//! 127.0.0.1:0 whose own counters and clocks are the reference.

mod servers;
use crate::support;

use std::sync::atomic::Ordering;

use recordctl::load::report::LoadReport;
use servers::{Server, TestServer};

struct Run {
    code: i32,
    report: Option<LoadReport>,
    stdout: String,
    stderr: String,
}

async fn recordctl(args: &[&str]) -> Run {
    let dir = std::env::temp_dir().join(format!("recordctl-load-test-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("report.json");
    let out = tokio::process::Command::from(support::recordctl())
        .arg("load-test")
        .args(args)
        .arg("--json")
        .arg(&json)
        .arg("--no-progress")
        .output()
        .await
        .expect("run recordctl");
    let report = std::fs::read_to_string(&json)
        .ok()
        .map(|text| serde_json::from_str(&text).expect("the JSON report deserializes"));
    let _ = std::fs::remove_dir_all(&dir);
    Run {
        code: out.status.code().unwrap_or(-1),
        report,
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

fn scenario_file(text: &str) -> tempfile_like::TempFile {
    tempfile_like::TempFile::new(text)
}

mod tempfile_like {
    pub struct TempFile(pub std::path::PathBuf);

    impl TempFile {
        pub fn new(text: &str) -> TempFile {
            let path = std::env::temp_dir().join(format!("recordctl-scenario-{:016x}.toml", rand::random::<u64>()));
            std::fs::write(&path, text).unwrap();
            TempFile(path)
        }

        pub fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

const ONE_REQUEST: &str = r#"
name = "one"
[[transaction]]
name = "hit"
[[transaction.request]]
name = "hit"
path = "/hit"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_mode_counts_exactly_what_the_server_counted() {
    let _turn = support::alone();
    let server = TestServer::start(Server::Counting).await;
    let run = recordctl(&[
        "--target",
        &server.url("/hit"),
        "--connections",
        "8",
        "--duration",
        "2s",
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.report.unwrap();
    assert_eq!(report.model, "plain");
    assert!(report.requests > 100, "{report:?}");
    assert_eq!(
        report.requests,
        server.hits.load(Ordering::SeqCst),
        "reported requests equal the server's count"
    );
    assert_eq!(report.errors, 0);
    assert_eq!(report.status_codes.get("200"), Some(&report.requests));
    assert_eq!(report.per_request[0].name, "GET /hit");
    let ids = server.correlation_ids.lock().unwrap();
    assert_eq!(
        ids.len() as u64,
        report.requests,
        "every request carries a distinct correlation id"
    );
    assert!(
        ids.iter().all(|id| id.starts_with(&report.run_id)),
        "ids are run id + sequence"
    );
    assert_eq!(
        server.traceparents.load(Ordering::SeqCst),
        report.requests,
        "every request carries a traceparent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_model_sends_200_per_second_for_5_seconds_spread_over_the_run() {
    let _turn = support::alone();
    let server = TestServer::start(Server::Counting).await;
    let scenario = scenario_file(ONE_REQUEST);
    let run = recordctl(&[
        "--target",
        &server.url(""),
        "--scenario",
        scenario.path(),
        "--rate",
        "200/s",
        "--duration",
        "5s",
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.report.unwrap();
    let schedule = report.schedule.clone().expect("open model reports its schedule");
    assert_eq!(schedule.intended, 1000, "{schedule:?}");
    assert_eq!(schedule.dropped, 0);
    // 256 slots for 200 quick answers a second: no arrival had to wait, and the peak queue
    // says so (it read 1, counting an arrival that found a free slot as queued).
    assert_eq!(schedule.peak_queue, 0, "{schedule:?}");
    let served = server.hits.load(Ordering::SeqCst);
    assert_eq!(report.requests, served, "reported requests equal the server's count");
    assert_eq!(served, 1000, "every arrival of the schedule was sent");
    // The run cannot have been shorter than its schedule, so the rate cannot exceed it.
    assert!(report.throughput_rps <= 201.0, "rate {}", report.throughput_rps);
    // Arrivals are spread over the run, not sent in a burst: every second got some. (How
    // evenly, on a quiet machine, is measured by bench/load-compare.sh, not asserted here.)
    let per_second = server.per_second();
    assert!(per_second.iter().take(5).all(|n| *n > 0), "{per_second:?}");
}

/// Regression: `--stage 10s:200/s` (a ramp from 0) started one transaction. Every shape of
/// schedule sends the integral of its rate, as counted by the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stage_shape_sends_the_integral_of_its_rate() {
    let _turn = support::alone();
    let scenario = scenario_file(ONE_REQUEST);
    for (flags, expected) in [
        (&["--stage", "2s:200/s"][..], 200),
        (&["--rate", "200/s", "--stage", "2s:0/s"][..], 200),
        (&["--rate", "100/s", "--stage", "2s:300/s"][..], 400),
        (&["--stage", "1s:100/s", "--stage", "1s:100/s"][..], 150),
    ] {
        let server = TestServer::start(Server::Counting).await;
        let target = server.url("");
        let mut args = vec!["--target", &target, "--scenario", scenario.path()];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--threshold", "rps>10"]);
        let run = recordctl(&args).await;
        assert_eq!(run.code, 0, "{flags:?}: {}", run.stderr);
        let report = run.report.unwrap();
        let schedule = report.schedule.clone().unwrap();
        let served = server.hits.load(Ordering::SeqCst);
        assert!(
            served.abs_diff(expected) <= 1,
            "{flags:?}: the server saw {served}, the schedule promises {expected}"
        );
        assert_eq!((schedule.intended, report.requests), (served, served), "{flags:?}");
    }
}

/// Arrivals the queue cannot hold are errors, never latencies, and the queue never holds more
/// than `--max-queue`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_arrivals_are_errors_without_latency_and_the_queue_bound_is_exact() {
    let _turn = support::alone();
    let server = TestServer::start(Server::Fixed20ms).await;
    let scenario = scenario_file(ONE_REQUEST);
    let run = recordctl(&[
        "--target",
        &server.url(""),
        "--scenario",
        scenario.path(),
        "--rate",
        "500/s",
        "--duration",
        "1s",
        "--max-in-flight",
        "1",
        "--max-queue",
        "3",
        "--threshold",
        "p50<1ms",
    ])
    .await;
    assert_eq!(run.code, 1, "the threshold fails: {}", run.stderr);
    let report = run.report.unwrap();
    let schedule = report.schedule.clone().unwrap();
    assert!(schedule.dropped > 300, "{schedule:?}");
    assert!(schedule.peak_queue <= 3, "{schedule:?}");
    assert_eq!(schedule.started + schedule.dropped, schedule.intended, "{schedule:?}");
    let served = server.hits.load(Ordering::SeqCst);
    assert_eq!(report.requests, served, "only what was sent counts as a request");
    assert_eq!(report.error_kinds.get("dropped"), Some(&schedule.dropped));
    assert_eq!(report.errors, schedule.dropped);
    // Every latency is a real answer of a 20 ms server, none the 1 µs of an unsent arrival.
    assert_eq!(report.latency.count, served);
    assert!(report.latency.min_us >= 20_000, "{:?}", report.latency);
    let expected_rate = schedule.dropped as f64 / (served + schedule.dropped) as f64;
    assert!(
        (report.error_rate - expected_rate).abs() < 1e-9,
        "{}",
        report.error_rate
    );
}

/// Plain mode on a schedule: the open model's arrivals over the raw connections, exactly
/// as many as the schedule holds, counted by the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_mode_on_a_schedule_sends_exactly_the_arrivals_of_its_rate() {
    let _turn = support::alone();
    let server = TestServer::start(Server::Counting).await;
    let run = recordctl(&[
        "--target",
        &server.url("/hit"),
        "--connections",
        "4",
        "--rate",
        "500/s",
        "--duration",
        "2s",
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.report.unwrap();
    assert_eq!(report.model, "plain");
    let schedule = report.schedule.clone().expect("a schedule report");
    assert_eq!(schedule.intended, 1000, "{schedule:?}");
    assert_eq!((schedule.started, schedule.dropped), (1000, 0), "{schedule:?}");
    assert_eq!(schedule.max_in_flight, 4);
    let served = server.hits.load(Ordering::SeqCst);
    assert_eq!((report.requests, served), (1000, 1000), "reported = served = scheduled");
    assert_eq!(report.errors, 0);
    assert_eq!(report.service_time.count, 1000, "service time measured from the send");
    assert!(report.latency.p50_us >= report.service_time.p50_us, "{report:?}");
    assert!(report.throughput_rps <= 501.0, "rate {}", report.throughput_rps);
    let per_second = server.per_second();
    assert!(per_second.iter().take(2).all(|n| *n > 0), "{per_second:?}");
    let ids = server.correlation_ids.lock().unwrap();
    assert_eq!(ids.len(), 1000, "every request carries a distinct correlation id");
    assert!(run.stdout.contains("schedule:"), "{}", run.stdout);
}

/// `--tick`: the same arrivals, sent in groups, in plain mode on a schedule and in the
/// scenario engine's open model; the report says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_sends_the_same_arrivals_in_groups_and_the_report_says_so() {
    let _turn = support::alone();
    let server = TestServer::start(Server::Counting).await;
    let scenario = scenario_file(ONE_REQUEST);
    let plain = ["--connections", "4"];
    let open = ["--scenario", scenario.path()];
    let html = std::env::temp_dir().join(format!("recordctl-tick-{:016x}.html", rand::random::<u64>()));
    let html_path = html.to_str().unwrap();
    for (model, flags) in [("plain", &plain), ("open", &open)] {
        let before = server.hits.load(Ordering::SeqCst);
        let url = if model == "plain" {
            server.url("/hit")
        } else {
            server.url("")
        };
        let mut args = vec![
            "--target",
            &url,
            "--rate",
            "400/s",
            "--duration",
            "1s",
            "--tick",
            "10ms",
            "--html",
            html_path,
        ];
        args.extend_from_slice(flags);
        let run = recordctl(&args).await;
        assert_eq!(run.code, 0, "{model}: {}", run.stderr);
        let report = run.report.unwrap();
        assert_eq!(report.model, model);
        let schedule = report.schedule.clone().expect("a schedule report");
        assert_eq!(
            (schedule.intended, schedule.started),
            (400, 400),
            "{model}: {schedule:?}"
        );
        assert_eq!(schedule.tick_us, Some(10_000), "{model}");
        assert_eq!(server.hits.load(Ordering::SeqCst) - before, 400, "{model}: served");
        assert!(run.stdout.contains("in groups every 10"), "{model}: {}", run.stdout);
        let page = std::fs::read_to_string(&html).unwrap();
        let schedule_line = page
            .split("<p class=\"schedule\">")
            .nth(1)
            .expect("the schedule in the HTML report");
        assert!(
            schedule_line.starts_with("schedule: target 400.0 transactions/s in groups every 10"),
            "{model}: {schedule_line}"
        );
    }
    let _ = std::fs::remove_file(&html);
}

/// No `--tick`: from 2,000 arrivals/s the arrivals go in groups of 500us, below that each at
/// its own instant, in both open engines; every arrival is sent either way and the report
/// says which the rate chose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_tick_groups_arrivals_only_from_2000_a_second_and_says_so() {
    let _turn = support::alone();
    let server = TestServer::start(Server::Counting).await;
    let scenario = scenario_file(ONE_REQUEST);
    let plain = ["--connections", "8"];
    let open = ["--scenario", scenario.path()];
    for (model, flags) in [("plain", &plain), ("open", &open)] {
        let url = if model == "plain" {
            server.url("/hit")
        } else {
            server.url("")
        };
        for (rate, due, tick) in [("2000/s", 2000, Some(500)), ("1000/s", 1000, None)] {
            let before = server.hits.load(Ordering::SeqCst);
            let mut args = vec!["--target", &url, "--rate", rate, "--duration", "1s"];
            args.extend_from_slice(flags);
            let run = recordctl(&args).await;
            assert_eq!(run.code, 0, "{model} {rate}: {}", run.stderr);
            let schedule = run.report.unwrap().schedule.expect("a schedule report");
            assert_eq!(
                (schedule.intended, schedule.started),
                (due, due),
                "{model} {rate}: {schedule:?}"
            );
            assert_eq!(
                server.hits.load(Ordering::SeqCst) - before,
                due,
                "{model} {rate}: served"
            );
            assert_eq!(schedule.tick_us, tick, "{model} {rate}");
            assert!(schedule.tick_auto, "{model} {rate}");
            assert_eq!(
                run.stdout.contains("in groups every 500µs (--tick auto at this rate"),
                tick.is_some(),
                "{model} {rate}: {}",
                run.stdout
            );
        }
    }
}

/// Plain mode on a schedule, one connection to a 20 ms server at 500/s: arrivals wait for the
/// connection (late, in corrected latency, not in service time) and past the queue bound are
/// dropped, as errors without a latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_mode_on_a_schedule_bounds_its_queue_and_charges_waiting_to_corrected_latency() {
    let _turn = support::alone();
    let server = TestServer::start(Server::Fixed20ms).await;
    let run = recordctl(&[
        "--target",
        &server.url("/hit"),
        "--connections",
        "1",
        "--rate",
        "500/s",
        "--duration",
        "1s",
        "--max-queue",
        "3",
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.report.unwrap();
    let schedule = report.schedule.clone().unwrap();
    assert_eq!(schedule.intended, 500, "{schedule:?}");
    assert!(schedule.dropped > 400, "{schedule:?}");
    assert!(schedule.peak_queue <= 3, "{schedule:?}");
    assert_eq!(schedule.started + schedule.dropped, schedule.intended, "{schedule:?}");
    assert!(schedule.late > 0, "{schedule:?}");
    let served = server.hits.load(Ordering::SeqCst);
    assert_eq!(report.requests, served, "only what was sent counts as a request");
    assert_eq!(report.error_kinds.get("dropped"), Some(&schedule.dropped));
    assert_eq!(report.latency.count, served);
    assert!(report.service_time.min_us >= 20_000, "{:?}", report.service_time);
    assert!(
        report.latency.p99_us >= 40_000 && report.service_time.p99_us < report.latency.p99_us,
        "waiting shows in corrected latency only: {:?} vs {:?}",
        report.latency,
        report.service_time
    );
}

/// A run that measured nothing proves nothing: its thresholds fail and say why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_measured_no_requests_fails_its_thresholds() {
    let _turn = support::alone();
    let server = TestServer::start(Server::Counting).await;
    let scenario = scenario_file(ONE_REQUEST);
    // A zero rate for the whole run: nothing is due.
    let run = recordctl(&[
        "--target",
        &server.url(""),
        "--scenario",
        scenario.path(),
        "--stage",
        "1s:0/s",
        "--threshold",
        "p95<300ms",
        "--threshold",
        "rps>10",
    ])
    .await;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("no requests measured"), "{}", run.stdout);
    assert_eq!(server.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalling_server_shows_in_corrected_latency_but_not_in_service_time() {
    let _turn = support::alone();
    let server = TestServer::start(Server::Stalling).await;
    let scenario = scenario_file(ONE_REQUEST);
    let run = recordctl(&[
        "--target",
        &server.url(""),
        "--scenario",
        scenario.path(),
        "--rate",
        "200/s",
        "--duration",
        "5s",
        "--max-in-flight",
        "2",
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.report.unwrap();
    assert!(
        report.latency.p99_us >= 900_000,
        "corrected p99 {}µs",
        report.latency.p99_us
    );
    assert!(
        report.service_time.p99_us < 100_000,
        "service-time p99 {}µs",
        report.service_time.p99_us
    );
    let schedule = report.schedule.unwrap();
    assert!(schedule.late > 100, "arrivals during the stalls started late");
    // Late because the target stalled, not because the generator did: nearly all of them
    // were handed out on time (a busy test machine may hold the generator up for a few).
    assert!(schedule.generator_late * 20 < schedule.late, "{schedule:?}");
    // The warning is there exactly when the generator's own share passes 1 %.
    assert_eq!(
        run.stdout.contains("generator fell behind"),
        schedule.generator_fell_behind(),
        "{schedule:?}\n{}",
        run.stdout
    );
}

/// A rate this machine's generator cannot hand out on time is reported as the generator's
/// delay, in the table and in the verdict, not silently charged to the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_the_generator_cannot_keep_is_said_to_be_the_generators_delay() {
    let _turn = support::alone();
    let server = TestServer::start(Server::Counting).await;
    let scenario = scenario_file(ONE_REQUEST);
    let run = recordctl(&[
        "--target",
        &server.url(""),
        "--scenario",
        scenario.path(),
        "--rate",
        "500000/s",
        "--duration",
        "1s",
    ])
    .await;
    let report = run.report.expect("a report");
    let schedule = report.schedule.clone().unwrap();
    assert!(schedule.generator_fell_behind(), "{schedule:?}");
    assert!(
        run.stdout.contains("WARNING: the generator fell behind"),
        "{}",
        run.stdout
    );
    assert!(
        report.verdict().contains("the generator fell behind its schedule"),
        "{}",
        report.verdict()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_20ms_server_never_reads_faster_than_20ms_in_plain_mode() {
    let _turn = support::alone();
    let server = TestServer::start(Server::Fixed20ms).await;
    let run = recordctl(&[
        "--target",
        &server.url("/hit"),
        "--connections",
        "2",
        "--duration",
        "2s",
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.report.unwrap();
    assert_eq!(report.requests, server.hits.load(Ordering::SeqCst));
    // A server that waits 20 ms cannot answer sooner: no latency may read less (a unit or
    // clock mistake would). How close to 20 ms it reads is a benchmark's business.
    assert!(
        report.latency.min_us >= 20_000,
        "plain mode min {}µs",
        report.latency.min_us
    );
    assert!(
        report.latency.p50_us < 200_000,
        "plain mode p50 {}µs",
        report.latency.p50_us
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_model_never_reads_a_fixed_20ms_server_faster_than_20ms() {
    let _turn = support::alone();
    // The open model goes through reqwest and an arrival clock: a little more overhead
    // than plain mode, all of it the tool's and so counted, never hidden.
    let server = TestServer::start(Server::Fixed20ms).await;
    let scenario = scenario_file(ONE_REQUEST);
    let run = recordctl(&[
        "--target",
        &server.url(""),
        "--scenario",
        scenario.path(),
        "--rate",
        "50/s",
        "--duration",
        "3s",
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.report.unwrap();
    assert_eq!(report.requests, 150);
    // Latency from the intended send time includes the service time, never less; neither
    // can be under the server's 20 ms.
    assert!(report.service_time.min_us >= 20_000, "{:?}", report.service_time);
    assert!(report.latency.p50_us >= report.service_time.p50_us);
    assert!(
        report.latency.p50_us < 200_000,
        "open model p50 {}µs",
        report.latency.p50_us
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_decide_the_exit_code_and_say_by_how_much() {
    let _turn = support::alone();
    let server = TestServer::start(Server::Counting).await;
    let url = server.url("/hit");
    let pass = recordctl(&[
        "--target",
        &url,
        "--connections",
        "2",
        "--duration",
        "1s",
        "--threshold",
        "p99<5s",
        "--threshold",
        "error_rate<1%",
    ])
    .await;
    assert_eq!(pass.code, 0, "{}", pass.stderr);
    assert!(pass.report.unwrap().thresholds.iter().all(|t| t.passed));
    assert!(pass.stdout.contains("PASSED: 2 threshold(s)"), "{}", pass.stdout);
    let fail = recordctl(&[
        "--target",
        &url,
        "--connections",
        "2",
        "--duration",
        "1s",
        "--threshold",
        "p50<1us",
        "--threshold",
        "rps>1",
    ])
    .await;
    assert_eq!(fail.code, 1, "{}", fail.stderr);
    let report = fail.report.unwrap();
    let verdict = report.thresholds.iter().find(|t| t.threshold == "p50<1us").unwrap();
    assert!(
        !verdict.passed && verdict.detail.contains("misses 1µs by"),
        "{verdict:?}"
    );
    assert!(fail.stdout.contains("FAILED: p50<1us"), "{}", fail.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_values_flow_from_one_response_into_the_next_request() {
    let _turn = support::alone();
    let server = TestServer::start(Server::Shop).await;
    let scenario = scenario_file(
        r#"
name = "flow"
[[transaction]]
name = "buy"
[[transaction.request]]
name = "list"
path = "/items"
extract = { item_id = "items.0.id", label = "items.0.label" }
[[transaction.request]]
name = "view"
path = "/items/{item_id}"
headers = { "x-label" = "{label}" }
[[transaction.request]]
name = "order"
method = "POST"
path = "/orders"
body = { item = "{item_id}", note = "for {label}" }
expect_status = [201]
"#,
    );
    let run = recordctl(&[
        "--target",
        &server.url(""),
        "--scenario",
        scenario.path(),
        "--users",
        "2",
        "--iterations",
        "3",
        "--think-time",
        "0ms",
    ])
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let report = run.report.unwrap();
    assert_eq!(report.model, "closed");
    assert_eq!(report.requests, 18, "2 users × 3 iterations × 3 requests: {report:?}");
    assert_eq!(report.errors, 0, "{:?}", report.failed);
    let seen = server.seen.lock().unwrap();
    assert_eq!(
        seen.iter().filter(|s| *s == "view 42 label=blue").count(),
        6,
        "{seen:?}"
    );
    assert_eq!(
        seen.iter()
            .filter(|s| *s == "order {\"item\":42,\"note\":\"for blue\"}")
            .count(),
        6,
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_scenarios_exit_2_with_file_line_and_column() {
    let _turn = support::alone();
    let scenario = scenario_file("name = \"bad\"\n[[transaction]]\nname = \"t\"\nwieght = 2\n");
    let run = recordctl(&["--target", "http://127.0.0.1:9", "--scenario", scenario.path()]).await;
    assert_eq!(run.code, 2);
    let expected = format!("{}:4:1: unknown field `wieght`", scenario.path());
    assert!(run.stderr.contains(&expected), "{}", run.stderr);
    assert!(run.report.is_none(), "nothing ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_exits_3_before_the_clock_starts() {
    let _turn = support::alone();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = recordctl(&[
        "--target",
        &format!("http://127.0.0.1:{port}/"),
        "--connections",
        "2",
        "--duration",
        "30s",
    ])
    .await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("cannot reach the target at http://127.0.0.1:{port}/")),
        "{}",
        run.stderr
    );
    assert!(run.report.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_is_the_default_target() {
    let _turn = support::alone();
    let run = recordctl(&["--scenario", "smoke"]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let report = run.report.unwrap();
    assert_eq!(report.target, "embedded recordstore");
    assert_eq!(report.requests, 2 * 5 * 3, "smoke: 2 users × 5 iterations × 3 requests");
    assert_eq!(report.errors, 0, "{:?}", report.failed);
    assert!(report.thresholds.iter().all(|t| t.passed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_and_hdr_outputs_are_written_and_hdr_logs_merge() {
    let _turn = support::alone();
    let server = TestServer::start(Server::Counting).await;
    let dir = std::env::temp_dir().join(format!("recordctl-outputs-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let (html, hlog) = (dir.join("r.html"), dir.join("r.hlog"));
    let run = recordctl(&[
        "--target",
        &server.url("/hit"),
        "--connections",
        "2",
        "--duration",
        "1s",
        "--html",
        html.to_str().unwrap(),
        "--hdr-out",
        hlog.to_str().unwrap(),
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.report.unwrap();
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains(&report.run_id) && page.matches("<svg").count() == 3,
        "three inline charts"
    );
    assert!(
        !page.contains("<script") && !page.contains("<link") && !page.contains("src=\"http"),
        "self-contained"
    );
    // Every chart has x ticks; the percentile chart labels them as percentiles.
    let figures: Vec<&str> = page.split("<figure>").skip(1).collect();
    assert_eq!(figures.len(), 3);
    for figure in &figures {
        assert!(figure.contains("class=\"xtick\""), "a chart without x ticks: {figure}");
    }
    assert_eq!(figures[2].matches("class=\"xtick\"").count(), 6, "p50 … max");
    assert!(page.contains(">p99.9<") && page.contains(">max<"), "percentile ticks");
    // max is a dashed envelope drawn before (beneath) p99, which stays visible.
    let latency = &page[page.find("Latency over time").unwrap()..page.find("Throughput and errors").unwrap()];
    let max_at = latency
        .find("stroke=\"#999999\" stroke-width=\"1.5\" stroke-dasharray")
        .expect("max dashed");
    let p99_at = latency
        .find("stroke=\"#d62728\" stroke-width=\"2\"")
        .expect("p99 solid");
    assert!(max_at < p99_at, "max is drawn beneath p99");
    // The status-code breakdown the terminal report has.
    assert!(page.contains("Status codes and errors"), "status-code table");
    let served = report.status_codes["200"];
    assert!(
        page.contains(&format!("<td>status 200</td><td>{served}</td><td>100.00%</td>")),
        "{page}"
    );
    let merged = tokio::process::Command::from(support::recordctl())
        .args([
            "report",
            "merge",
            hlog.to_str().unwrap(),
            hlog.to_str().unwrap(),
            "--json",
            "-",
        ])
        .output()
        .await
        .unwrap();
    assert!(merged.status.success(), "{}", String::from_utf8_lossy(&merged.stderr));
    let doc: recordctl::load::merge::MergedReport = serde_json::from_slice(&merged.stdout).unwrap();
    let all = doc.histograms.iter().find(|h| h.name == "all").unwrap();
    assert_eq!(
        all.latency.count,
        2 * report.requests,
        "two copies of the run merge into twice its count"
    );
    assert_eq!(all.latency.p50_us, report.latency.p50_us);
    let bad = tokio::process::Command::from(support::recordctl())
        .args(["report", "merge", html.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(dir);
}

/// `--out prometheus-rw=URL` against a real Prometheus's remote-write receiver: samples arrive
/// every second while the run goes, labelled with the run, and the last ones equal the report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generator_metrics_stream_to_a_real_prometheus_by_remote_write_and_end_equal_to_the_report() {
    if !support::Prometheus::available() {
        return;
    }
    let _turn = support::alone();
    let prometheus = support::Prometheus::start(
        "  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:1']\n",
        &[],
        "",
    );
    let server = TestServer::start(Server::Counting).await;
    let scenario = scenario_file(ONE_REQUEST);
    let out = format!("prometheus-rw={}/api/v1/write", prometheus.url);
    let run = recordctl(&[
        "--target",
        &server.url(""),
        "--scenario",
        scenario.path(),
        "--rate",
        "50/s",
        "--duration",
        "5s",
        "--run-id",
        "rw-it",
        "--out",
        &out,
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.report.unwrap();
    assert_eq!(report.requests, 250, "{}", run.stderr);
    let prom = prometheus.client();
    let value = |q: String| {
        let prom = &prom;
        async move {
            let samples = prom.instant(&q).await.unwrap_or_else(|e| panic!("{q}: {e}"));
            assert_eq!(samples.len(), 1, "{q}: {samples:?}");
            samples[0].value
        }
    };
    let run_labels = r#"run_id="rw-it",model="open",shard="""#;
    assert_eq!(
        value(format!("recordctl_requests_total{{{run_labels}}}")).await,
        report.requests as f64,
        "the last sample is the report's count"
    );
    // Samples arrived while the run went, once a second, not only at the end.
    let during = value(format!("count_over_time(recordctl_requests_total{{{run_labels}}}[5m])")).await;
    assert!(during >= 5.0, "{during} samples of requests_total");
    let rising = value(format!("min_over_time(recordctl_requests_total{{{run_labels}}}[5m])")).await;
    assert!(
        rising < report.requests as f64,
        "the first samples came before the end: {rising}"
    );
    let seconds = value(format!(
        "count_over_time(recordctl_request_duration_seconds{{{run_labels},quantile=\"0.99\"}}[5m])"
    ))
    .await;
    assert!(seconds >= 3.0, "{seconds} per-second p99 samples");
    assert_eq!(
        value(format!(
            "recordctl_run_duration_seconds{{{run_labels},quantile=\"0.5\"}}"
        ))
        .await,
        report.latency.p50_us as f64 / 1e6
    );
    assert_eq!(
        value(format!("recordctl_arrivals_dropped_total{{{run_labels}}}")).await,
        report.schedule.as_ref().unwrap().dropped as f64
    );
    assert_eq!(value(format!("recordctl_run_finished{{{run_labels}}}")).await, 1.0);
    let scenario_label = prom
        .instant(&format!("recordctl_requests_total{{{run_labels}}}"))
        .await
        .unwrap()[0]
        .labels
        .get("scenario")
        .cloned();
    assert_eq!(scenario_label.as_deref(), report.scenario.as_deref());
    // The "load test" dashboard's generator panels show this run.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(support::repo("observability/grafana/dashboards/load-test.json")).unwrap(),
    )
    .unwrap();
    let mut shown = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            if !expr.contains("recordctl_") || expr.contains("recordstore_") || expr.contains("kind=\"dropped\"") {
                continue;
            }
            let expr = expr.replace("$run_id", "rw-it").replace("$__rate_interval", "1m");
            let samples = prom.instant(&expr).await.unwrap_or_else(|e| panic!("{expr}: {e}"));
            assert!(!samples.is_empty(), "{}: {expr} shows nothing", panel["title"]);
            shown += 1;
        }
    }
    assert!(shown >= 8, "{shown} generator queries checked");

    // A receiver that is not there: the run still reports, then exits 3 naming the URL.
    let port = support::free_port();
    let unreachable = recordctl(&[
        "--target",
        &server.url(""),
        "--scenario",
        scenario.path(),
        "--rate",
        "20/s",
        "--duration",
        "2s",
        "--out",
        &format!("prometheus-rw=http://127.0.0.1:{port}/api/v1/write"),
    ])
    .await;
    assert_eq!(unreachable.code, 3, "{}", unreachable.stderr);
    assert!(unreachable.report.is_some(), "the report is still written");
    assert!(
        unreachable
            .stderr
            .contains(&format!("remote write to http://127.0.0.1:{port}/api/v1/write")),
        "{}",
        unreachable.stderr
    );
    for bad in [
        "influxdb=http://x",
        "prometheus-rw=ftp://x/y",
        "prometheus-rw=not a url",
    ] {
        let run = recordctl(&[
            "--target",
            &server.url(""),
            "--rate",
            "1/s",
            "--duration",
            "1s",
            "--out",
            bad,
        ])
        .await;
        assert_eq!(run.code, 2, "{bad}: {}", run.stderr);
        assert!(run.stderr.contains("--out"), "{bad}: {}", run.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_is_pushed_to_a_real_pushgateway() {
    let _turn = support::alone();
    let Some(gateway) = servers::Pushgateway::start() else {
        return;
    };
    let server = TestServer::start(Server::Counting).await;
    let run = recordctl(&[
        "--target",
        &server.url("/hit"),
        "--connections",
        "2",
        "--duration",
        "1s",
        "--push-gateway",
        &gateway.url(),
        "--threshold",
        "p99<5s",
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.report.unwrap();
    let metrics = reqwest::get(format!("{}/metrics", gateway.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("recordctl_load_test_requests{") && l.contains(&format!("run_id=\"{}\"", report.run_id))
        })
        .unwrap_or_else(|| panic!("no pushed requests metric in:\n{metrics}"));
    assert!(line.ends_with(&format!(" {}", report.requests)), "{line}");
    assert!(metrics.contains("recordctl_load_test_threshold_passed{"), "{metrics}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = recordctl(&[
        "--target",
        &server.url("/hit"),
        "--connections",
        "1",
        "--duration",
        "1s",
        "--push-gateway",
        &format!("http://127.0.0.1:{port}"),
    ])
    .await;
    assert_eq!(unreachable.code, 3, "an unreachable Pushgateway is exit 3");
    assert!(
        unreachable.stderr.contains("cannot push to the Pushgateway"),
        "{}",
        unreachable.stderr
    );
}

/// Starts recordctl, waits until the server has seen `after` requests, sends SIGINT, and
/// returns the run; panics if it does not stop within 15 s.
async fn interrupted_run(args: &[&str], server: &TestServer, after: u64) -> Run {
    let dir = std::env::temp_dir().join(format!("recordctl-interrupt-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("report.json");
    let child = tokio::process::Command::from(support::recordctl())
        .arg("load-test")
        .args(args)
        .arg("--json")
        .arg(&json)
        .arg("--no-progress")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while server.hits.load(Ordering::SeqCst) < after {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never reached {after} requests"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGINT) };
    let out = tokio::time::timeout(std::time::Duration::from_secs(15), child.wait_with_output())
        .await
        .expect("recordctl stops within 15 s of Ctrl-C")
        .unwrap();
    let report = std::fs::read_to_string(&json)
        .ok()
        .map(|t| serde_json::from_str(&t).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
    Run {
        code: out.status.code().unwrap_or(-1),
        report,
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_every_model_with_a_partial_report_and_exit_130() {
    let _turn = support::alone();
    let scenario = scenario_file(ONE_REQUEST);
    for model in [
        vec!["--connections", "4"],
        vec!["--rate", "100/s"],
        vec!["--users", "3", "--think-time", "5ms"],
    ] {
        let server = TestServer::start(Server::Counting).await;
        let mut args = vec!["--duration", "60s"];
        let url = if model[0] == "--connections" {
            server.url("/hit")
        } else {
            server.url("")
        };
        args.extend(["--target", &url]);
        if model[0] != "--connections" {
            args.extend(["--scenario", scenario.path()]);
        }
        args.extend(model.iter().copied());
        let run = interrupted_run(&args, &server, 50).await;
        assert_eq!(run.code, 130, "{model:?}: {}", run.stderr);
        assert!(
            run.stdout.contains("INTERRUPTED: partial results"),
            "{model:?}: {}",
            run.stdout
        );
        let report = run
            .report
            .unwrap_or_else(|| panic!("{model:?}: no partial report; {}", run.stderr));
        assert!(report.interrupted);
        assert!(report.requests >= 50, "{model:?}: {}", report.requests);
        assert!(
            report.duration_s < 30.0,
            "{model:?} stopped early: {}",
            report.duration_s
        );
        assert_eq!(
            report.requests,
            server.hits.load(Ordering::SeqCst),
            "{model:?}: every request the server saw is in the report"
        );
    }
}

/// Three shards of one open-model load, run at once as separate processes against one
/// target, send together exactly what one run would: every arrival once, each correlation
/// id once, and their merged histograms count every request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_send_together_exactly_one_runs_load_and_merge_losslessly() {
    let _turn = support::alone();
    let server = TestServer::start(Server::Counting).await;
    let scenario = scenario_file(ONE_REQUEST);
    let dir = std::env::temp_dir().join(format!("recordctl-shards-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let target = server.url("");
    let mut set = tokio::task::JoinSet::new();
    for k in 1..=3 {
        let hlog = dir.join(format!("s{k}.hlog"));
        let shard = format!("{k}/3");
        let (target, scenario) = (target.clone(), scenario.path().to_string());
        set.spawn(async move {
            let args = [
                "--target",
                &target,
                "--scenario",
                &scenario,
                "--rate",
                "150/s",
                "--duration",
                "2s",
                "--shard",
                &shard,
                "--run-id",
                "sharded",
                "--hdr-out",
                hlog.to_str().unwrap(),
            ];
            (k, recordctl(&args).await, hlog)
        });
    }
    let mut runs: Vec<_> = set.join_all().await;
    runs.sort_by_key(|(k, _, _)| *k);
    let runs: Vec<_> = runs.into_iter().map(|(_, run, hlog)| (run, hlog)).collect();
    let mut intended = 0;
    let mut hlogs = Vec::new();
    for (k, (run, hlog)) in runs.into_iter().enumerate() {
        assert_eq!(run.code, 0, "shard {}: {}", k + 1, run.stderr);
        let report = run.report.unwrap();
        assert_eq!(report.shard.as_deref(), Some(format!("{}/3", k + 1).as_str()));
        assert_eq!(report.run_id, format!("sharded-s{}", k + 1));
        let schedule = report.schedule.unwrap();
        assert_eq!(schedule.intended, 100, "shard {}: {schedule:?}", k + 1);
        intended += schedule.intended;
        hlogs.push(hlog.to_str().unwrap().to_string());
    }
    let served = server.hits.load(Ordering::SeqCst);
    assert_eq!((intended, served), (300, 300), "150/s for 2 s, once, across the shards");
    assert_eq!(
        server.correlation_ids.lock().unwrap().len(),
        300,
        "no correlation id twice"
    );
    let mut args = vec!["report".to_string(), "merge".to_string()];
    args.extend(hlogs);
    args.extend(["--json".to_string(), "-".to_string()]);
    let merged = tokio::process::Command::from(support::recordctl())
        .args(&args)
        .output()
        .await
        .unwrap();
    assert!(merged.status.success(), "{}", String::from_utf8_lossy(&merged.stderr));
    let doc: recordctl::load::merge::MergedReport = serde_json::from_slice(&merged.stdout).unwrap();
    let all = doc.histograms.iter().find(|h| h.name == "all").unwrap();
    assert_eq!(
        all.latency.count, 300,
        "the merged report counts every request of every shard"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// The same three shards as containers on the Docker engine (the local Debian base running
/// this build's recordctl, host network) against one target: the merged count is the sum of
/// the shards', and the target saw each request once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_in_containers_send_one_runs_load() {
    if !support::docker::engine() {
        return;
    }
    support::docker::local_images();
    let _turn = support::alone();
    let server = TestServer::start(Server::Counting).await;
    let scenario = scenario_file(ONE_REQUEST);
    let dir = std::env::temp_dir().join(format!("recordctl-shardbox-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(scenario.path(), dir.join("one.toml")).unwrap();
    let binary = env!("CARGO_BIN_EXE_recordctl");
    let target = server.url("");
    let mut set = tokio::task::JoinSet::new();
    for k in 1..=3 {
        let (dir, target) = (dir.clone(), target.clone());
        set.spawn(async move {
            let out = tokio::process::Command::new("docker")
                .args(["run", "--rm", "--network", "host", "--label", "recordctl.test=shards"])
                .arg("-v")
                .arg(format!("{binary}:/usr/local/bin/recordctl:ro"))
                .arg("-v")
                .arg(format!("{}:/work", dir.display()))
                .args([support::docker::BASE_IMAGE, "recordctl", "load-test", "--no-progress"])
                .args(["--target", &target, "--scenario", "/work/one.toml", "--rate", "150/s"])
                .args(["--duration", "2s", "--run-id", "boxed"])
                .args(["--shard", &format!("{k}/3")])
                .args([
                    "--hdr-out",
                    &format!("/work/s{k}.hlog"),
                    "--json",
                    &format!("/work/s{k}.json"),
                ])
                .output()
                .await
                .unwrap();
            (k, out)
        });
    }
    for (k, out) in set.join_all().await {
        assert!(
            out.status.success(),
            "shard {k}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut shard_sum = 0;
    for k in 1..=3 {
        let report: LoadReport =
            serde_json::from_str(&std::fs::read_to_string(dir.join(format!("s{k}.json"))).unwrap()).unwrap();
        shard_sum += report.requests;
    }
    let hlogs: Vec<String> = (1..=3)
        .map(|k| dir.join(format!("s{k}.hlog")).display().to_string())
        .collect();
    let merged = tokio::process::Command::new(binary)
        .args(["report", "merge"])
        .args(&hlogs)
        .args(["--json", "-"])
        .output()
        .await
        .unwrap();
    assert!(merged.status.success(), "{}", String::from_utf8_lossy(&merged.stderr));
    let doc: recordctl::load::merge::MergedReport = serde_json::from_slice(&merged.stdout).unwrap();
    let all = doc.histograms.iter().find(|h| h.name == "all").unwrap();
    assert_eq!(all.latency.count, shard_sum, "merged = the shards' sum");
    assert_eq!((shard_sum, server.hits.load(Ordering::SeqCst)), (300, 300));
    let _ = std::fs::remove_dir_all(dir);
}

/// The HTML report as a person sees it: headless Chromium renders it (a screenshot is kept in
/// a temp dir), logs no console message, and its three charts are there with lines drawn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_renders_in_a_real_browser_with_its_charts_drawn() {
    let _turn = support::alone();
    let server = TestServer::start(Server::Counting).await;
    let scenario = scenario_file(ONE_REQUEST);
    let dir = std::env::temp_dir().join(format!("recordctl-browser-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let html = dir.join("report.html");
    let run = recordctl(&[
        "--target",
        &server.url(""),
        "--scenario",
        scenario.path(),
        "--rate",
        "100/s",
        "--duration",
        "3s",
        "--html",
        html.to_str().unwrap(),
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let Some(page) = support::browser::render(&html) else {
        return;
    };
    assert_eq!(page.dom.matches("<svg").count(), 3, "three charts in the rendered page");
    let drawn = page.lines_drawn();
    assert!(drawn >= 6, "lines drawn in the charts: {drawn}");
}
