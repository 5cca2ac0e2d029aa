//! `recordctl drill` on this machine's real Docker engine, with images built from Debian's
//! packages: each Docker action does what it says and is undone; containers outside the
//! project are refused; Ctrl-C mid-drill and SIGKILL + `--restore` put everything back; and
//! the full db-outage, db-freeze, worker-crash and api-restart drills against a containerised store, with
//! a real Prometheus evaluating the project's alert rules, measure detection and recovery and
//! lose no order.

use crate::support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use recordctl::backends::docker::{DockerClient, DockerError};
use serde_json::Value;
use support::docker::{self, Project};
use support::{TempDir, repo};

fn recordctl() -> Command {
    support::recordctl()
}

fn state(container: &str) -> String {
    docker::docker(&["inspect", "-f", "{{.State.Status}}", container])
}

fn wait_state(container: &str, wanted: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let now = state(container);
        if now == wanted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{container} is {now}, not {wanted}, after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A project with one idle container per service (the local Debian base running sleep).
fn idle_project(prefix: &str, services: &[&str]) -> Project {
    docker::local_images();
    let project = Project::new(prefix);
    for service in services {
        project.run(service, docker::BASE_IMAGE, &["--init"], &["sleep", "infinity"]);
    }
    project
}

/// A target for drills that need one but do not test the store: the embedded store.
async fn embedded_target(dir: &TempDir) -> recordstore::RunningApp {
    support::store(&dir, recordstore::Role::ApiAndWorker, |_| {}).await
}

/// An idle project, the embedded store as the drill's target, a drill file and a journal.
struct DrillRun {
    project: Project,
    dir: TempDir,
    app: recordstore::RunningApp,
    drill: std::path::PathBuf,
    journal: std::path::PathBuf,
}

impl DrillRun {
    /// `None` (after the SKIPPED line) without a Docker engine.
    async fn new(prefix: &str, services: &[&str], drill_toml: &str) -> Option<DrillRun> {
        if !docker::engine() {
            return None;
        }
        let project = idle_project(prefix, services);
        let dir = TempDir::new(&format!("recordctl-{prefix}"));
        let app = embedded_target(&dir).await;
        let (drill, journal) = (dir.join("drill.toml"), dir.join("j.json"));
        std::fs::write(&drill, drill_toml).unwrap();
        Some(DrillRun {
            project,
            dir,
            app,
            drill,
            journal,
        })
    }

    /// `recordctl drill FILE --yes --project P --target T --journal J` plus `extra`.
    fn command(&self, extra: &[&str]) -> Command {
        let mut command = recordctl();
        command
            .args([
                "drill",
                self.drill.to_str().unwrap(),
                "--yes",
                "--project",
                &self.project.name,
            ])
            .args([
                "--target",
                &self.app.base_url(),
                "--journal",
                self.journal.to_str().unwrap(),
            ])
            .args(extra);
        command
    }

    async fn finish(self) {
        self.app.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_docker_action_does_what_it_says_and_its_undo_puts_it_back() {
    if !docker::engine() {
        return;
    }
    let project = idle_project("rsact", &["a"]);
    let client = DockerClient::connect().await.unwrap();
    let a = client.service(&project.name, "a").await.unwrap();
    assert_eq!(a.state, "running");
    assert_eq!(a.service, "a");
    assert!(a.networks[&project.network].contains(&"a".to_string()), "{a:?}");

    client.stop(&a, 1).await.unwrap();
    assert_eq!(state(&a.name), "exited");
    client.start(&a).await.unwrap();
    assert_eq!(state(&a.name), "running");
    client.start(&a).await.expect("starting a running container is a no-op");

    client.pause(&a).await.unwrap();
    assert_eq!(state(&a.name), "paused");
    client.unpause(&a).await.unwrap();
    assert_eq!(state(&a.name), "running");
    client
        .unpause(&a)
        .await
        .expect("unpausing a running container is a no-op");

    client.kill(&a, "SIGKILL").await.unwrap();
    wait_state(&a.name, "exited", Duration::from_secs(10));
    assert_eq!(
        docker::docker(&["inspect", "-f", "{{.State.ExitCode}}", &a.name]),
        "137",
        "killed by SIGKILL"
    );
    client.start(&a).await.unwrap();

    let before = docker::docker(&["inspect", "-f", "{{.State.StartedAt}}", &a.name]);
    client.restart(&a, 1).await.unwrap();
    assert_eq!(state(&a.name), "running");
    assert_ne!(
        docker::docker(&["inspect", "-f", "{{.State.StartedAt}}", &a.name]),
        before
    );

    client.disconnect(&a, &project.network).await.unwrap();
    let now = client.inspect(&project.name, &a.id).await.unwrap();
    assert!(now.networks.is_empty(), "{now:?}");
    client
        .connect_network(&a, &project.network, &["a".to_string()])
        .await
        .unwrap();
    let now = client.inspect(&project.name, &a.id).await.unwrap();
    assert!(
        now.networks[&project.network].contains(&"a".to_string()),
        "alias restored: {now:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_outside_the_project_or_the_drill_are_refused_and_untouched() {
    if !docker::engine() {
        return;
    }
    let ours = idle_project("rsours", &["a"]);
    let theirs = idle_project("rstheirs", &["db"]);
    let client = DockerClient::connect().await.unwrap();
    let their_db = client.service(&theirs.name, "db").await.unwrap();
    // The client refuses a container of another project, even by id.
    match client.inspect(&ours.name, &their_db.id).await {
        Err(DockerError::OutsideProject { actual, .. }) => assert_eq!(actual, theirs.name),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A drill on our project naming `db` (which only the other project has) stops before
    // touching anything.
    let dir = TempDir::new("recordctl-refuse");
    let app = embedded_target(&dir).await;
    let drill = dir.join("stop-db.toml");
    std::fs::write(
        &drill,
        "name = \"stop-db\"\nservices = [\"db\"]\n[[fault]]\naction = \"stop\"\nservice = \"db\"\nduration = \"5s\"\n",
    )
    .unwrap();
    let out = recordctl()
        .args(["drill", drill.to_str().unwrap(), "--yes", "--project", &ours.name])
        .args([
            "--target",
            &app.base_url(),
            "--journal",
            dir.join("j.json").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no container of service \"db\""), "{stderr}");
    assert_eq!(state(&their_db.name), "running", "the other project's db was touched");
    // And a fault on a service the drill does not list is a malformed drill (exit 2).
    std::fs::write(
        &drill,
        "name = \"x\"\nservices = [\"a\"]\n[[fault]]\naction = \"stop\"\nservice = \"db\"\nduration = \"5s\"\n",
    )
    .unwrap();
    let out = recordctl()
        .args(["drill", drill.to_str().unwrap(), "--yes", "--project", &theirs.name])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stop-db.toml:5:"));
    assert_eq!(state(&their_db.name), "running");
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_prints_the_plan_and_changes_nothing() {
    if !docker::engine() {
        return;
    }
    let project = idle_project("rsdry", &["a"]);
    let dir = TempDir::new("recordctl-dry");
    let drill = dir.join("pause-a.toml");
    std::fs::write(
        &drill,
        "name = \"pause-a\"\nservices = [\"a\"]\n[[fault]]\naction = \"pause\"\nservice = \"a\"\nduration = \"30s\"\n",
    )
    .unwrap();
    let out = recordctl()
        .args([
            "drill",
            drill.to_str().unwrap(),
            "--dry-run",
            "--project",
            &project.name,
        ])
        .args(["--journal", dir.join("j.json").to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains(&format!("pause a on {}", project.container("a"))),
        "{stdout}"
    );
    assert!(stdout.contains("undo: unpause it"), "{stdout}");
    assert!(stdout.contains("nothing was changed"), "{stdout}");
    assert_eq!(state(&project.container("a")), "running");
    assert!(!dir.join("j.json").exists(), "a dry run writes no journal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_action_run_through_a_drill_is_undone_by_the_drill() {
    let mut text = String::from("name = \"all\"\nservices = [\"a\", \"b\"]\n");
    for (action, service) in [
        ("stop", "a"),
        ("pause", "b"),
        ("kill", "a"),
        ("restart", "b"),
        ("disconnect", "a"),
    ] {
        text.push_str(&format!(
            "[[fault]]\naction = \"{action}\"\nservice = \"{service}\"\nduration = \"1s\"\n"
        ));
    }
    let Some(run) = DrillRun::new("rsall", &["a", "b"], &text).await else {
        return;
    };
    let (project, journal_path) = (&run.project, &run.journal);
    let out = run.command(&["--json", "-"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let injected = timeline_events(&report, "fault injected").len();
    assert_eq!(injected, 5, "{report:#}");
    for service in ["a", "b"] {
        assert_eq!(state(&project.container(service)), "running", "{service}: {stderr}");
    }
    let networks = docker::docker(&[
        "inspect",
        "-f",
        "{{json .NetworkSettings.Networks}}",
        &project.container("a"),
    ]);
    assert!(networks.contains(&project.network), "a reconnected: {networks}");
    let entries = journal(journal_path)["entries"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 5);
    assert!(entries.iter().all(|e| e["state"] == "undone"), "{entries:?}");
    run.finish().await;
}

/// Runs a payment-fault drill (no Docker) against the store at `base`, with the admin token
/// when given; returns the exit code, the JSON report and the JUnit text.
async fn payment_drill(dir: &TempDir, base: &str, token: Option<&str>) -> (Option<i32>, Value, String) {
    let drill = dir.join("pay.toml");
    std::fs::write(
        &drill,
        "name = \"pay\"\nservices = [\"api\"]\n\
[[steady_state.probe]]\nname = \"ready\"\npath = \"/health/ready\"\n\
[traffic]\nscenario = \"purchase\"\nrate = 8\n\
[[fault]]\naction = \"payment-fault\"\nservice = \"api\"\nlatency_ms = 200\nerror_rate = 0.5\nduration = \"3s\"\n\
[recovery]\ndeadline = \"30s\"\norders_deadline = \"60s\"\n",
    )
    .unwrap();
    let journal_path = dir.join("j.json");
    let junit_path = dir.join("pay.xml");
    let mut args: Vec<String> = vec!["drill".into(), drill.to_str().unwrap().into(), "--yes".into()];
    if let Some(token) = token {
        args.extend(["--admin-token".into(), token.into()]);
    }
    args.extend([
        "--target".into(),
        base.into(),
        "--journal".into(),
        journal_path.to_str().unwrap().into(),
        "--json".into(),
        "-".into(),
        "--junit".into(),
        junit_path.to_str().unwrap().into(),
        "--html".into(),
        dir.join("pay.html").to_str().unwrap().into(),
    ]);
    let out = tokio::task::spawn_blocking(move || {
        recordctl()
            .env_remove("RECORDSTORE_ADMIN_TOKEN")
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let junit = std::fs::read_to_string(&junit_path).unwrap_or_default();
    (out.status.code(), report, junit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_fault_drill_needs_no_docker_clears_the_fault_and_keeps_every_order() {
    let dir = TempDir::new("recordctl-pay");
    let app = support::store(&dir, recordstore::Role::ApiAndWorker, |config| {
        config.admin_token = Some("drill-token".into());
    })
    .await;
    let base = app.base_url();
    let journal_path = dir.join("j.json");
    let (code, report, junit) = payment_drill(&dir, &base, Some("drill-token")).await;
    assert_eq!(code, Some(0), "{report:#}");
    let ledger = &report["ledger"];
    assert!(ledger["acknowledged"].as_u64().unwrap() > 0, "{report:#}");
    assert_eq!(ledger["lost"], serde_json::json!([]));
    assert_eq!(ledger["unfinished"], serde_json::json!([]));
    // Money and stock, from the store's own audit: every net cent belongs to a completed order.
    let audit = &ledger["audit"];
    assert_eq!(audit["source"], "admin audit", "{audit}");
    assert_eq!(audit["violations"], serde_json::json!([]), "{audit}");
    assert!(audit["money"]["charges"].as_i64().unwrap() > 0, "{audit}");
    assert_eq!(
        audit["money"]["net_cents"], audit["money"]["completed_cents"],
        "{audit}"
    );
    assert_eq!(
        audit["stock"]["initial"].as_i64().unwrap(),
        audit["stock"]["on_hand"].as_i64().unwrap() + audit["stock"]["held"].as_i64().unwrap(),
        "{audit}"
    );
    assert!(
        junit.contains("no failed order holds a net charge (admin audit)"),
        "{junit}"
    );
    assert!(junit.contains("failures=\"0\""), "{junit}");
    let faults: Value = reqwest::Client::new()
        .get(format!("{base}/admin/faults"))
        .bearer_auth("drill-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(faults["payment_latency_ms"], 0, "the fault was cleared: {faults}");
    assert_eq!(faults["payment_failure_rate"], 0.0);
    assert_eq!(journal(&journal_path)["entries"][0]["state"], "undone");
    // The postmortem page: both charts drawn, the fault window shaded, the ledger shown.
    if let Some(page) = support::browser::render(&dir.join("pay.html")) {
        assert_eq!(page.dom.matches("<svg").count(), 2, "two charts");
        assert!(page.lines_drawn() >= 4, "lines drawn: {}", page.lines_drawn());
        assert!(page.dom.contains("class=\"band\""), "the fault window is shaded");
        assert!(page.dom.contains(">fault</text>"), "and labelled");
        assert!(page.dom.contains("<h2>Ledger</h2>"), "the ledger");
        assert!(page.dom.contains("PASSED"), "the verdict");
        assert!(
            !page.dom.contains("(unsent arrival)"),
            "an arrival the drill's stop left unsent is not a failed request of the store's"
        );
    }
    app.shutdown().await.unwrap();
}

/// The money-and-stock checks can fail: while the drill runs, a completed order's unit is put
/// back on the shelf behind the store's back (the review's bug). With the token the store's
/// audit names the order and the product and the drill fails; without it, the order's public
/// view gives it away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_fails_a_drill_whose_store_breaks_a_stock_promise() {
    let dir = TempDir::new("recordctl-broken");
    let app = support::store(&dir, recordstore::Role::ApiAndWorker, |config| {
        config.admin_token = Some("drill-token".into());
    })
    .await;
    let base = app.base_url();
    for token in [Some("drill-token"), None] {
        // Breaks the first order this drill completes.
        let pool = app.store().pool().clone();
        let before: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM orders")
            .fetch_one(&pool)
            .await
            .unwrap();
        let breaker = tokio::spawn(async move {
            support::eventually("a completed order to break", Duration::from_secs(30), || async {
                let broken = sqlx::query(
                    "UPDATE orders SET stock_reserved = 0 WHERE id = \
                     (SELECT MIN(id) FROM orders WHERE status = 'completed' AND id > $1)",
                )
                .bind(before)
                .execute(&pool)
                .await
                .ok()?
                .rows_affected();
                (broken == 1).then_some(())
            })
            .await;
        });
        let (code, report, junit) = payment_drill(&dir, &base, token).await;
        assert!(breaker.is_finished(), "an order was broken during the drill");
        assert_ne!(code, Some(0), "{report:#}");
        if token.is_some() {
            assert_eq!(
                (code, &report["verdict"]),
                (Some(1), &Value::from("failed")),
                "{report:#}"
            );
        }
        let failures = report["failures"].to_string();
        assert!(
            failures.contains("broken promise: every completed order holds its stock"),
            "{failures}"
        );
        let violations = report["ledger"]["audit"]["violations"].to_string();
        assert!(violations.contains("completed_without_stock"), "{violations}");
        assert!(
            junit.contains("every completed order holds its stock") && !junit.contains("failures=\"0\""),
            "{junit}"
        );
        if token.is_some() {
            assert!(violations.contains("stock_not_conserved"), "{violations}");
        } else {
            // Without the token the payment fault cannot be injected either (the drill errs),
            // but the ledger still checks every order the drill made through the public API.
            assert_eq!(report["ledger"]["audit"]["source"], "public API");
        }
    }
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_steady_state_does_not_hold_beforehand_nothing_is_touched() {
    let drill = "name = \"pre\"\nservices = [\"a\"]\n\
[[steady_state.probe]]\nname = \"a page that is not there\"\npath = \"/no-such-page\"\n\
[[fault]]\naction = \"stop\"\nservice = \"a\"\nduration = \"5s\"\n";
    let Some(run) = DrillRun::new("rspre", &["a"], drill).await else {
        return;
    };
    let (project, dir) = (&run.project, &run.dir);
    let junit = dir.join("pre.xml");
    let out = run.command(&["--junit", junit.to_str().unwrap()]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("PREFLIGHT-FAILED"), "{stdout}");
    assert!(stdout.contains("a page that is not there"), "{stdout}");
    assert_eq!(state(&project.container("a")), "running");
    assert!(!dir.join("j.json").exists(), "no journal: nothing was changed");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("steady state before the drill") && xml.contains("<failure"),
        "{xml}"
    );
    run.finish().await;
}

/// Regression: an expected alert already firing before the fault counted as detected, with a
/// negative time to detect. Now the preflight names it and the drill touches nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expected_alert_already_firing_fails_the_preflight_and_touches_nothing() {
    if !support::Prometheus::available() {
        return;
    }
    let drill = "name = \"loud\"\nservices = [\"a\"]\n\
[[fault]]\naction = \"stop\"\nservice = \"a\"\nduration = \"5s\"\n\
[[expect_alert]]\nname = \"AlwaysOn\"\nwithin = \"30s\"\n";
    let Some(run) = DrillRun::new("rsloud", &["a"], drill).await else {
        return;
    };
    let rules = run.dir.join("always.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: always\n    rules:\n      - alert: AlwaysOn\n        expr: vector(1)\n",
    )
    .unwrap();
    let prometheus = support::Prometheus::start("", &[rules], "");
    let prom = prometheus.client();
    support::eventually("AlwaysOn to fire", Duration::from_secs(30), || async {
        let alerts = prom.alerts().await.ok()?;
        alerts.iter().any(|a| a.state == "firing").then_some(())
    })
    .await;
    let out = run.command(&["--prometheus", &prometheus.url]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("PREFLIGHT-FAILED"), "{stdout}");
    assert!(stdout.contains("AlwaysOn is already firing"), "{stdout}");
    assert_eq!(state(&run.project.container("a")), "running", "nothing was stopped");
    assert!(!run.journal.exists(), "no journal: nothing was changed");
    run.finish().await;
}

fn journal(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_in_the_middle_of_a_drill_restores_every_container() {
    interrupted_drill_restores_everything(libc::SIGINT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_in_the_middle_of_a_drill_restores_every_container() {
    interrupted_drill_restores_everything(libc::SIGTERM).await;
}

async fn interrupted_drill_restores_everything(signal: i32) {
    // Stop b for 1 s (undone), then pause a for a minute: interrupted while a is paused.
    let drill = "name = \"two\"\nservices = [\"a\", \"b\"]\n\
[[fault]]\naction = \"stop\"\nservice = \"b\"\nduration = \"1s\"\n\
[[fault]]\naction = \"pause\"\nservice = \"a\"\nduration = \"60s\"\n";
    let Some(run) = DrillRun::new("rsint", &["a", "b"], drill).await else {
        return;
    };
    let (project, journal_path) = (&run.project, &run.journal);
    let child = run
        .command(&[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_state(&project.container("a"), "paused", Duration::from_secs(30));
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert_eq!(state(&project.container("a")), "running", "{stderr}");
    assert_eq!(state(&project.container("b")), "running", "{stderr}");
    let entries = journal(journal_path)["entries"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|e| e["state"] == "undone"), "{entries:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("INTERRUPTED"));
    run.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sigkill_drill_restore_undoes_what_the_journal_says() {
    let drill = "name = \"d\"\nservices = [\"a\", \"b\"]\n\
[[fault]]\naction = \"disconnect\"\nservice = \"b\"\nduration = \"60s\"\n";
    let Some(setup) = DrillRun::new("rskill", &["a", "b"], drill).await else {
        return;
    };
    let (project, journal_path) = (&setup.project, &setup.journal);
    let run = |extra: &[&str]| setup.command(extra);
    let mut child = run(&[]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let b = project.container("b");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !docker::docker(&["inspect", "-f", "{{json .NetworkSettings.Networks}}", &b]).starts_with("{}") {
        assert!(Instant::now() < deadline, "b was never disconnected");
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap(); // SIGKILL: no chance to undo
    child.wait().unwrap();
    let pending = journal(journal_path);
    assert_eq!(pending["entries"][0]["state"], "applied", "{pending}");
    assert_eq!(pending["entries"][0]["undo"]["kind"], "reconnect", "{pending}");

    // A new drill refuses to start over changes never undone.
    let out = run(&[]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("recordctl drill --restore"));

    let out = recordctl()
        .args(["drill", "--restore", "--journal", journal_path.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("restored  disconnect b"), "{stdout}");
    let networks = docker::docker(&["inspect", "-f", "{{json .NetworkSettings.Networks}}", &b]);
    let networks: Value = serde_json::from_str(&networks).unwrap();
    let aliases = networks[&project.network]["Aliases"].as_array().unwrap();
    assert!(
        aliases.iter().any(|a| a == "b"),
        "reconnected with its alias: {networks}"
    );
    assert_eq!(journal(journal_path)["entries"][0]["state"], "undone");
    // Restoring again finds nothing to do.
    let out = recordctl()
        .args(["drill", "--restore", "--journal", journal_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to restore"));
    setup.finish().await;
}

/// The store in containers with a real Alertmanager (the project's routing), a real
/// blackbox_exporter probing the api's health endpoints, and a real Prometheus (the project's
/// rules at 1 s) scraping the api, the probes and, when `split`, a worker of its own: the
/// parts a drill measures with.
struct Stack {
    project: Project,
    api: String,
    prometheus: support::Prometheus,
    alertmanager: support::Alertmanager,
    _blackbox: support::Blackbox,
    /// With `Stack::start_traced`: the spans the api exported.
    spans: Option<SpanSink>,
}

/// One span the api exported: its name, start and end (Unix ns).
#[derive(Debug, Clone)]
struct SinkSpan {
    name: String,
    start_ns: u64,
    end_ns: u64,
}

/// An OTLP/HTTP receiver on the project network's gateway address, so the containers reach
/// it: keeps every span the app exports.
#[derive(Clone)]
struct SpanSink {
    spans: std::sync::Arc<std::sync::Mutex<Vec<SinkSpan>>>,
    endpoint: String,
}

impl SpanSink {
    async fn start(project: &Project) -> SpanSink {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use prost::Message;
        let gateway = docker::docker(&[
            "network",
            "inspect",
            "-f",
            "{{(index .IPAM.Config 0).Gateway}}",
            &project.network,
        ]);
        let listener = tokio::net::TcpListener::bind((gateway.as_str(), 0)).await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let spans = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let kept = kept.clone();
                async move {
                    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                        return axum::http::StatusCode::BAD_REQUEST;
                    };
                    let mut kept = kept.lock().unwrap();
                    for span in request
                        .resource_spans
                        .into_iter()
                        .flat_map(|r| r.scope_spans)
                        .flat_map(|s| s.spans)
                    {
                        kept.push(SinkSpan {
                            name: span.name,
                            start_ns: span.start_time_unix_nano,
                            end_ns: span.end_time_unix_nano,
                        });
                    }
                    axum::http::StatusCode::OK
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        SpanSink { spans, endpoint }
    }
}

impl Stack {
    /// `None` (after the SKIPPED line) without a Docker engine, Prometheus or Alertmanager.
    async fn start(prefix: &str, split: bool) -> Option<Stack> {
        Stack::start_with(prefix, split, false).await
    }

    /// As [`Stack::start`] (the api and worker together), the api exporting its spans to a
    /// [`SpanSink`].
    async fn start_traced(prefix: &str) -> Option<Stack> {
        Stack::start_with(prefix, false, true).await
    }

    async fn start_with(prefix: &str, split: bool, traced: bool) -> Option<Stack> {
        if !docker::engine()
            || !support::Prometheus::available()
            || !support::Alertmanager::available()
            || !support::Blackbox::available()
        {
            return None;
        }
        docker::local_images();
        let project = Project::new(prefix);
        let spans = if traced {
            Some(SpanSink::start(&project).await)
        } else {
            None
        };
        let otlp = spans
            .as_ref()
            .map(|s| format!("OTEL_EXPORTER_OTLP_ENDPOINT={}", s.endpoint));
        let mut api_env = vec!["LOG_LEVEL=warn", STACK_TOKEN_ENV];
        api_env.extend(otlp.as_deref());
        let (api, worker) = if split {
            let (api, worker) = project.start_split_store(&api_env, &[]);
            (api, Some(worker))
        } else {
            (project.start_store(&api_env), None)
        };
        let mut scrape = format!("  - job_name: recordstore-api\n    static_configs:\n      - targets: ['{api}']\n");
        if let Some(worker) = &worker {
            scrape.push_str(&format!(
                "  - job_name: recordstore-worker\n    static_configs:\n      - targets: ['{worker}']\n"
            ));
        }
        let blackbox = support::Blackbox::start(&repo("observability/blackbox.yml")).await;
        scrape.push_str(&blackbox.api_job(&format!("http://{api}")));
        let alertmanager = support::Alertmanager::start();
        let prometheus = support::Prometheus::start(
            &scrape,
            &[
                repo("observability/rules/slo.yml"),
                repo("observability/rules/causes.yml"),
            ],
            &format!(
                "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{}']\n",
                alertmanager.port
            ),
        );
        let prom = prometheus.client();
        // The api, its two health probes and maybe the worker.
        let scraped = if split { 4.0 } else { 3.0 };
        support::eventually("the store scraped and probed", Duration::from_secs(30), || async {
            let db_up = prom.instant("min(recordstore_db_up)").await.ok()?;
            let up = prom.instant("sum(up)").await.ok()?;
            let probed = prom.instant("min(probe_success{job=\"blackbox-api\"})").await.ok()?;
            (db_up.first()?.value == 1.0 && up.first()?.value == scraped && probed.first()?.value == 1.0).then_some(())
        })
        .await;
        Some(Stack {
            project,
            api,
            prometheus,
            alertmanager,
            _blackbox: blackbox,
            spans,
        })
    }

    /// Runs a built-in drill with `--yes` against the stack; checks the exit code is 0, prints
    /// the table, validates the JUnit file; returns the JSON report and the JUnit text.
    fn drill(&self, name: &str) -> (Value, String) {
        self.drill_with(name, &[])
    }

    /// As [`Stack::drill`], with `extra` arguments.
    fn drill_with(&self, name: &str, extra: &[&str]) -> (Value, String) {
        let dir = TempDir::new("recordctl-drill");
        let report_path = dir.join("report.json");
        let junit_path = dir.join("drill.xml");
        let out = recordctl()
            .args(["drill", name, "--yes", "--project", &self.project.name])
            .args(["--target", &format!("http://{}", self.api)])
            .args(["--prometheus", &self.prometheus.url])
            .args(["--alertmanager", &self.alertmanager.url()])
            .args(["--admin-token", STACK_TOKEN])
            .args(["--journal", dir.join("j.json").to_str().unwrap()])
            .args(extra)
            .args([
                "--json",
                report_path.to_str().unwrap(),
                "--junit",
                junit_path.to_str().unwrap(),
            ])
            .current_dir(repo(""))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("{stdout}");
        assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
        let report: Value = serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
        assert_eq!(report["verdict"], "passed", "{report:#}");
        let junit = std::fs::read_to_string(&junit_path).unwrap();
        assert!(junit.contains("failures=\"0\""), "{junit}");
        if Command::new("xmllint").arg("--version").output().is_ok() {
            let out = Command::new("xmllint")
                .args(["--noout", "--schema", repo("tests/probe/junit.xsd").to_str().unwrap()])
                .arg(&junit_path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "drill JUnit invalid: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        (report, junit)
    }
}

/// The containerised store's admin token, which the stack's drills are given.
const STACK_TOKEN: &str = "stack-drill-token";
const STACK_TOKEN_ENV: &str = "RECORDSTORE_ADMIN_TOKEN=stack-drill-token";

/// The ledger kept every promise: no acknowledged order lost, unfinished or duplicated, no
/// refused checkout with an order, every checkout looked up; at least `min_acked` acknowledged;
/// and the store's audit of money and stock is clean.
fn assert_ledger_kept(report: &Value, min_acked: u64) {
    let ledger = &report["ledger"];
    let audit = &ledger["audit"];
    assert_eq!(audit["source"], "admin audit", "{audit}");
    assert_eq!(audit["violations"], serde_json::json!([]), "{audit}");
    assert_eq!(
        audit["money"]["net_cents"], audit["money"]["completed_cents"],
        "{audit}"
    );
    assert_eq!(
        audit["stock"]["initial"].as_i64().unwrap(),
        audit["stock"]["on_hand"].as_i64().unwrap() + audit["stock"]["held"].as_i64().unwrap(),
        "{audit}"
    );
    assert!(ledger["acknowledged"].as_u64().unwrap() >= min_acked, "{ledger}");
    for empty in [
        "lost",
        "duplicated",
        "unfinished",
        "refused_but_ordered",
        "unverifiable",
    ] {
        assert_eq!(ledger[empty], serde_json::json!([]), "{empty}: {ledger}");
    }
    assert_eq!(
        ledger["completed"].as_u64().unwrap() + ledger["failed"].as_u64().unwrap(),
        ledger["acknowledged"].as_u64().unwrap(),
        "{ledger}"
    );
    assert_eq!(
        ledger["unanswered_ordered"].as_u64().unwrap() + ledger["unanswered_not_ordered"].as_u64().unwrap(),
        ledger["unanswered"].as_u64().unwrap(),
        "{ledger}"
    );
}

/// The timeline's events of `kind`, in order.
fn timeline_events<'a>(report: &'a Value, kind: &str) -> Vec<&'a Value> {
    report["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .collect()
}

/// The timeline holds each of `kinds`.
fn assert_timeline(report: &Value, kinds: &[&str]) {
    let seen: Vec<&str> = report["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for kind in kinds {
        assert!(seen.contains(kind), "timeline lacks {kind}: {seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_outage_against_the_containerised_store_detects_recovers_and_loses_no_order() {
    let Some(stack) = Stack::start("rsdrill", false).await else {
        return;
    };
    let dir = TempDir::new("recordctl-outage-html");
    let html = dir.join("db-outage.html");
    let (report, junit) = stack.drill_with(
        "db-outage",
        &[
            "--html",
            html.to_str().unwrap(),
            "--jaeger",
            "http://jaeger.example:16686",
            "--grafana",
            "http://grafana.example:3000",
        ],
    );
    let detect = report["time_to_detect_s"].as_f64().expect("a time to detect");
    // DatabaseDown has `for: 30s`: it cannot fire sooner, and the drill expects it within 90 s.
    assert!((30.0..=90.0).contains(&detect), "time to detect {detect}");
    let recover = report["time_to_recover_s"].as_f64().expect("a time to recover");
    assert!(recover > 0.0 && recover < 120.0, "time to recover {recover}");
    // 5 checkouts/s; 5 s of baseline alone make ~25 while the database is up.
    assert_ledger_kept(&report, 5);
    // The outage was real: checkouts were refused while the database was down, and none of
    // them made an order.
    assert!(report["traffic"]["errors"].as_u64().unwrap() > 0, "{report:#}");
    assert!(report["ledger"]["refused"].as_u64().unwrap() > 0, "{report:#}");
    assert_timeline(
        &report,
        &[
            "fault injected",
            "first error",
            "alert pending",
            "alert firing",
            "fault reverted",
            "recovered",
        ],
    );
    assert!(
        report["alerts"][0]["alertmanager_after_s"].as_f64().is_some(),
        "Alertmanager received DatabaseDown: {report:#}"
    );
    assert_eq!(
        state(&stack.project.container("db")),
        "running",
        "the database was put back"
    );
    assert!(junit.contains("alert DatabaseDown Firing within 90 s"), "{junit}");
    // The postmortem page: the alert's pending and firing bands, detect and recover marked,
    // and the first failed request linked to its trace and its lines.
    let first = &report["traffic"]["first_failed"];
    let id = first["correlation_id"]
        .as_str()
        .expect("a failed request during the outage");
    assert!(first["t_s"].as_f64().unwrap() >= 5.0, "after the baseline: {first}");
    if let Some(page) = support::browser::render(&html) {
        for text in [
            ">DatabaseDown pending</text>",
            ">DatabaseDown firing</text>",
            ">fault</text>",
            "detected +",
            "recovered +",
        ] {
            assert!(page.dom.contains(text), "{text} in the page");
        }
        assert!(page.lines_drawn() >= 5, "lines drawn: {}", page.lines_drawn());
        assert!(page.dom.contains(id), "the first failed request's id");
        let trace_link = page.dom.split("id=\"trace-link\" href=\"").nth(1).unwrap_or("");
        assert!(
            trace_link.starts_with("http://jaeger.example:16686/search?"),
            "{trace_link:.200}"
        );
        assert!(trace_link.contains(id), "{trace_link:.300}");
        let logs_link = page.dom.split("id=\"logs-link\" href=\"").nth(1).unwrap_or("");
        assert!(
            logs_link.starts_with("http://grafana.example:3000/explore?"),
            "{logs_link:.200}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_crash_is_detected_and_every_order_taken_meanwhile_completes_after_the_restart() {
    let Some(stack) = Stack::start("rscrash", true).await else {
        return;
    };
    let (report, junit) = stack.drill("worker-crash");
    let detect = report["time_to_detect_s"].as_f64().expect("a time to detect");
    // WorkerDown has `for: 1m`; the drill expects it within 2 minutes.
    assert!((60.0..=120.0).contains(&detect), "time to detect {detect}");
    assert!(report["time_to_recover_s"].as_f64().is_some(), "{report:#}");
    // Checkouts go on while the worker is dead (the api takes them; the jobs wait), and the
    // orders acknowledged meanwhile complete once it is back. 10 transactions/s, a quarter of
    // them purchases: the 5 s baseline and the recovery make ~25 acknowledged orders at most,
    // so 40 or more means checkouts were acknowledged during the minute without a worker.
    assert_ledger_kept(&report, 40);
    assert_timeline(
        &report,
        &[
            "fault injected",
            "alert pending",
            "alert firing",
            "fault reverted",
            "recovered",
        ],
    );
    assert_eq!(
        state(&stack.project.container("worker")),
        "running",
        "the worker was started again"
    );
    assert!(junit.contains("alert WorkerDown"), "{junit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_freeze_is_detected_and_checkouts_that_hung_are_accounted_for() {
    let Some(stack) = Stack::start("rsfreeze", false).await else {
        return;
    };
    let (report, junit) = stack.drill("db-freeze");
    let detect = report["time_to_detect_s"].as_f64().expect("a time to detect");
    // DatabaseDown has `for: 30s`; the drill expects it within 90 s.
    assert!((30.0..=90.0).contains(&detect), "time to detect {detect}");
    assert!(report["time_to_recover_s"].as_f64().is_some(), "{report:#}");
    assert_ledger_kept(&report, 5);
    // A frozen database fails nothing outright: checkouts hang until the store or the
    // traffic gives up, and each one that did is either refused or unanswered, and looked up.
    let ledger = &report["ledger"];
    let not_acked = ledger["refused"].as_u64().unwrap() + ledger["unanswered"].as_u64().unwrap();
    assert!(not_acked > 0, "{ledger}");
    assert_timeline(
        &report,
        &[
            "fault injected",
            "first error",
            "alert firing",
            "fault reverted",
            "recovered",
        ],
    );
    assert_eq!(
        state(&stack.project.container("db")),
        "running",
        "the database was thawed"
    );
    assert!(junit.contains("alert DatabaseDown"), "{junit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_restart_under_load_recovers_without_a_page_or_a_lost_order() {
    let Some(stack) = Stack::start("rsrestart", true).await else {
        return;
    };
    let (report, _junit) = stack.drill("api-restart");
    let recover = report["time_to_recover_s"].as_f64().expect("a time to recover");
    assert!(recover < 60.0, "time to recover {recover}");
    // Graceful shutdown finishes the requests in flight; checkouts that met the closed port
    // are unanswered and, having never reached the store, made no order.
    assert_ledger_kept(&report, 5);
    assert_eq!(report["ledger"]["unanswered_ordered"], 0, "{report:#}");
    assert_timeline(&report, &["fault injected", "recovered"]);
    // No page: nothing fired (a probe or two may fail while the api restarts, so ApiDown may
    // go pending, but it needs 30 s down to fire).
    let fired = timeline_events(&report, "alert firing");
    assert!(fired.is_empty(), "a restart is no outage: {fired:?}");
    assert_eq!(state(&stack.project.container("api")), "running");
}

/// One instant query's single value, or `None`.
async fn prom_value(stack: &Stack, promql: &str) -> Option<f64> {
    let answer = stack.prometheus.client().instant(promql).await.ok()?;
    Some(answer.first()?.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_payment_past_the_job_lease_keeps_every_lease_and_a_clean_audit() {
    let Some(stack) = Stack::start("rsslow", true).await else {
        return;
    };
    let (report, _junit) = stack.drill("slow-payment");
    // 5 checkouts/s for the 5 s baseline alone.
    assert_ledger_kept(&report, 5);
    assert!(
        report["ledger"]["audit"]["money"]["charges"].as_i64().unwrap() > 0,
        "{report:#}"
    );
    // Jobs outlived the 30 s lease they claimed and still completed, because their workers
    // renewed it: none was taken over mid-payment.
    let worker = "job=\"recordstore-worker\"";
    let slow = format!(
        "sum(recordstore_job_duration_seconds_count{{{worker},result=\"completed\"}}) \
         - sum(recordstore_job_duration_seconds_bucket{{{worker},result=\"completed\",le=\"30\"}})"
    );
    let lost = format!("sum(recordstore_job_leases_lost_total{{{worker}}})");
    let (slow, lost) = support::eventually(
        "the worker scraped after the drill",
        Duration::from_secs(30),
        || async {
            let slow = prom_value(&stack, &slow).await?;
            let lost = prom_value(&stack, &lost).await?;
            (slow > 0.0).then_some((slow, lost))
        },
    )
    .await;
    assert!(slow >= 1.0, "completed jobs longer than the lease: {slow}");
    assert_eq!(lost, 0.0, "no lease was lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_frozen_past_the_job_lease_loses_nothing_and_keeps_a_clean_audit() {
    let Some(stack) = Stack::start("rsfrzlong", true).await else {
        return;
    };
    let (report, junit) = stack.drill("db-freeze-long");
    assert_ledger_kept(&report, 5);
    let detect = report["time_to_detect_s"].as_f64().expect("a time to detect");
    assert!((30.0..=90.0).contains(&detect), "time to detect {detect}");
    assert!(report["time_to_recover_s"].as_f64().is_some(), "{report:#}");
    assert_eq!(
        state(&stack.project.container("db")),
        "running",
        "the database was thawed"
    );
    assert!(
        junit.contains("no failed order holds a net charge (admin audit)"),
        "{junit}"
    );
}

/// The worker's container is SIGKILLed while payments are in flight and started again: the
/// jobs it held are taken over once their leases run out, and the store's audit (run inside
/// the api's container with `recordstore audit`, and through the admin API) is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_payment_and_started_again_leaves_a_clean_audit() {
    if !docker::engine() {
        return;
    }
    docker::local_images();
    let project = Project::new("rskill");
    let (api, _worker) = project.start_split_store(&[STACK_TOKEN_ENV], &["RECORDSTORE_JOB_LEASE_MS=3000"]);
    let base = format!("http://{api}");
    let http = reqwest::Client::new();
    let faults = http
        .post(format!("{base}/admin/faults"))
        .bearer_auth(STACK_TOKEN)
        .json(&serde_json::json!({ "payment_latency_ms": 2000 }))
        .send()
        .await
        .unwrap();
    assert_eq!(faults.status(), 200);
    let mut orders = Vec::new();
    for _ in 0..6 {
        let accepted: Value = http
            .post(format!("{base}/checkout"))
            .json(&serde_json::json!({ "product_id": 1, "quantity": 1 }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        orders.push(accepted["order_id"].as_i64().expect("an order id"));
    }
    let order_status = |id: i64| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let order: Value = http
                .get(format!("{base}/orders/{id}"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            order["status"].as_str().map(str::to_string)
        }
    };
    support::eventually("a payment in flight", Duration::from_secs(30), || async {
        (order_status(orders[0]).await.as_deref() == Some("processing")).then_some(())
    })
    .await;
    let worker = project.container("worker");
    docker::docker(&["kill", "-s", "KILL", &worker]);
    wait_state(&worker, "exited", Duration::from_secs(30));
    docker::docker(&["start", &worker]);
    project.wait_healthy("worker", Duration::from_secs(60));
    for id in &orders {
        support::eventually(&format!("order {id} final"), Duration::from_secs(90), || async {
            matches!(order_status(*id).await.as_deref(), Some("completed" | "failed")).then_some(())
        })
        .await;
    }
    let out = docker::run(&["exec", &project.container("api"), "recordstore", "audit"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let audit: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(audit["clean"], true, "{audit:#}");
    assert_eq!(
        audit["money"]["net_cents"], audit["money"]["completed_cents"],
        "{audit:#}"
    );
    assert_eq!(audit["orders"]["completed"], 6, "{audit:#}");
    let over_http: Value = http
        .get(format!("{base}/admin/audit"))
        .bearer_auth(STACK_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(over_http["violations"], serde_json::json!([]), "{over_http:#}");
}

/// Regression: the journal had no lock, so two drills overwrote each other's entries and a
/// `--restore` undid a running drill's faults. Both are refused, naming the running drill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_drill_and_a_restore_are_refused_while_a_drill_runs() {
    let drill = "name = \"holder\"\nservices = [\"a\"]\n\
[[fault]]\naction = \"stop\"\nservice = \"a\"\nduration = \"6s\"\n";
    let Some(setup) = DrillRun::new("rslock", &["a"], drill).await else {
        return;
    };
    let a = setup.project.container("a");
    let mut first = setup
        .command(&[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_state(&a, "exited", Duration::from_secs(30));
    let second = setup.command(&[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("in use by drill \"holder\" (pid {})", first.id())),
        "{stderr}"
    );
    let restore = recordctl()
        .args(["drill", "--restore", "--journal", setup.journal.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&restore.stderr);
    assert_eq!(restore.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("in use by drill \"holder\""), "{stderr}");
    assert_eq!(state(&a), "exited", "the running drill's fault was left alone");
    assert!(
        first.wait().unwrap().success(),
        "the first drill finished and undid its fault"
    );
    assert_eq!(state(&a), "running");
    assert!(journal(&setup.journal)["entries"].as_array().unwrap().len() == 1);
    setup.finish().await;
}

/// A journal entry whose container compose recreated is undone on the service's current
/// container; one whose service has no container any more is reported, and `--restore
/// --forget --yes` drops it so later drills may run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_whose_containers_are_gone_are_resolved_by_service_or_forgotten() {
    let drill = "name = \"gone\"\nservices = [\"a\"]\n\
[[fault]]\naction = \"pause\"\nservice = \"a\"\nduration = \"60s\"\n";
    let Some(setup) = DrillRun::new("rsgone", &["a"], drill).await else {
        return;
    };
    let a = setup.project.container("a");
    let journal_arg = setup.journal.to_str().unwrap().to_string();
    let restore = |extra: &[&str]| {
        recordctl()
            .args(["drill", "--restore", "--journal", &journal_arg])
            .args(extra)
            .output()
            .unwrap()
    };
    let kill_mid_fault = || {
        let mut child = setup
            .command(&[])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_state(&a, "paused", Duration::from_secs(30));
        child.kill().unwrap();
        child.wait().unwrap();
    };

    // Recreated by compose: a new container for the same service, the old one gone.
    kill_mid_fault();
    docker::docker(&["rm", "-f", &a]);
    setup
        .project
        .run("a", docker::BASE_IMAGE, &["--init"], &["sleep", "infinity"]);
    let out = restore(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("restored  pause a"), "{stdout}");

    // Removed for good: reported with the way out, then forgotten.
    kill_mid_fault();
    docker::docker(&["rm", "-f", &a]);
    let out = restore(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("has no container") && stdout.contains("--forget"),
        "{stdout}"
    );
    let out = restore(&["--forget"]);
    assert_eq!(out.status.code(), Some(2), "no terminal and no --yes: asks for --yes");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
    let out = restore(&["--forget", "--yes"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("forgot 1 entries"), "{stdout}");
    let out = restore(&[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to restore"));
    setup.finish().await;
}

/// Polls `check` (a Docker command) until it says yes or `limit` passes; says whether it did.
fn seen_within(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// The network state of a container's namespace: its OUTPUT rules and queueing disciplines.
fn net_state(container: &str) -> String {
    let rules = docker::in_netns(container, &["iptables", "-w", "5", "-S", "OUTPUT"]);
    let qdiscs = docker::in_netns(container, &["tc", "qdisc", "show"]);
    format!("{rules}\n{qdiscs}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_loss_and_bandwidth_change_only_the_target_namespace_and_are_cleared() {
    let text = "name = \"net\"\nservices = [\"a\"]\n\
        [[fault]]\naction = \"network-loss\"\nservice = \"a\"\nloss_percent = 25\nduration = \"8s\"\n\
        [[fault]]\naction = \"network-bandwidth\"\nservice = \"a\"\nbandwidth_kbit = 800\nduration = \"8s\"\n";
    let Some(run) = DrillRun::new("rsnet", &["a", "b"], text).await else {
        return;
    };
    let (a, b) = (run.project.container("a"), run.project.container("b"));
    let report_path = run.dir.join("report.json");
    let child = run
        .command(&["--network-helper-image", docker::network_helper_image()])
        .args(["--json", report_path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let loss_seen = seen_within(Duration::from_secs(30), || {
        let now = net_state(&a);
        now.contains("--probability 0.25") && now.contains("recordctl-drill") && now.contains("-j DROP")
    });
    assert!(loss_seen, "the loss rule never appeared in a: {}", net_state(&a));
    assert!(
        !net_state(&b).contains("recordctl-drill"),
        "b untouched: {}",
        net_state(&b)
    );
    let rate_seen = seen_within(Duration::from_secs(30), || {
        let now = net_state(&a);
        now.contains("qdisc tbf") && now.contains("rate 800Kbit") && !now.contains("recordctl-drill")
    });
    assert!(
        rate_seen,
        "the bandwidth limit never replaced the loss rule in a: {}",
        net_state(&a)
    );
    assert!(!net_state(&b).contains("tbf"), "b untouched: {}", net_state(&b));
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let after = net_state(&a);
    assert!(
        !after.contains("recordctl-drill") && !after.contains("tbf"),
        "a cleared: {after}"
    );
    assert_eq!(docker::network_helpers(&run.project.name), "", "no helper left behind");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    let details: Vec<&str> = timeline_events(&report, "fault reverted")
        .iter()
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert_eq!(
        details,
        ["drop 25% of the packets a sends", "limit what a sends to 800 kbit/s"],
        "{report:#}"
    );
    let entries = journal(&run.journal)["entries"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 2, "{entries:?}");
    for e in &entries {
        assert_eq!(e["state"], "undone", "{e}");
        assert_eq!(e["undo"]["kind"], "clear-network", "{e}");
        assert_eq!(e["undo"]["image"], docker::network_helper_image(), "{e}");
    }
    run.finish().await;
}

/// A network delay: with tc netem where the kernel has it, else held in user space by the
/// helper's `recordctl network-delay-queue` (this project's VM kernels have no sch_netem);
/// either way cleared after, and no helper left. A helper image without recordctl, on such
/// a kernel, is refused with both ways out named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_delay_is_applied_and_cleared_with_netem_or_in_user_space() {
    let text = "name = \"slow\"\nservices = [\"a\"]\n\
        [[fault]]\naction = \"network-delay\"\nservice = \"a\"\ndelay = \"200ms\"\njitter = \"20ms\"\nduration = \"8s\"\n";
    let Some(run) = DrillRun::new("rsdelay", &["a"], text).await else {
        return;
    };
    let a = run.project.container("a");
    let has_netem = docker::kernel_has_netem();
    let child = run
        .command(&["--network-helper-image", docker::network_helper_image(), "--json", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = seen_within(Duration::from_secs(30), || {
        let now = net_state(&a);
        if has_netem {
            now.contains("qdisc netem") && now.contains("delay 200ms")
        } else {
            now.contains("NFQUEUE")
                && now.contains("recordctl-drill")
                && docker::network_helpers(&run.project.name).contains(" Up ")
        }
    });
    assert!(seen, "no delay in a: {}", net_state(&a));
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    if !has_netem {
        assert!(
            stderr.contains("no sch_netem; delaying a's packets in user space"),
            "{stderr}"
        );
    }
    let after = net_state(&a);
    assert!(
        !after.contains("netem") && !after.contains("recordctl-drill"),
        "a cleared: {after}"
    );
    assert_eq!(docker::network_helpers(&run.project.name), "", "no helper left behind");
    let entries = journal(&run.journal)["entries"].as_array().unwrap().clone();
    assert!(entries.iter().all(|e| e["state"] == "undone"), "{entries:?}");

    if !has_netem {
        // The plain nettools image has tc and iptables but no recordctl.
        let out = run
            .command(&["--network-helper-image", docker::NETTOOLS_IMAGE, "--json", "-"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let failures = report["failures"].to_string();
        assert!(
            failures.contains("no sch_netem")
                && failures.contains("no `recordctl`")
                && failures.contains("--network-helper-image"),
            "{failures}"
        );
        assert!(
            !net_state(&a).contains("recordctl-drill"),
            "a untouched: {}",
            net_state(&a)
        );
        assert_eq!(docker::network_helpers(&run.project.name), "", "no helper left behind");
    }
    run.finish().await;
}

/// After a SIGKILL mid-fault, `--restore` clears the network fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sigkill_restore_clears_a_network_fault() {
    let text = "name = \"lossy\"\nservices = [\"a\"]\n\
        [[fault]]\naction = \"network-loss\"\nservice = \"a\"\nloss_percent = 50\nduration = \"2m\"\n";
    let Some(run) = DrillRun::new("rsnetkill", &["a"], text).await else {
        return;
    };
    let a = run.project.container("a");
    let mut child = run
        .command(&["--network-helper-image", docker::network_helper_image()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let seen = seen_within(Duration::from_secs(30), || net_state(&a).contains("recordctl-drill"));
    assert!(seen, "no loss rule in a: {}", net_state(&a));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(net_state(&a).contains("recordctl-drill"), "a SIGKILL undoes nothing");
    let out = recordctl()
        .args(["drill", "--restore", "--journal", run.journal.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("restored  network-loss a"), "{stdout}");
    assert!(
        !net_state(&a).contains("recordctl-drill"),
        "a cleared: {}",
        net_state(&a)
    );
    assert_eq!(docker::network_helpers(&run.project.name), "", "no helper left behind");
    run.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_packet_loss_slows_the_store_but_keeps_every_order_and_leaves_no_rule_behind() {
    let Some(stack) = Stack::start("rsloss", false).await else {
        return;
    };
    let (report, _junit) = stack.drill_with(
        "api-packet-loss",
        &["--network-helper-image", docker::network_helper_image()],
    );
    assert_timeline(
        &report,
        &["fault injected", "fault reverted", "recovered", "ledger checked"],
    );
    assert_ledger_kept(&report, 100);
    let injected = timeline_events(&report, "fault injected")[0];
    assert_eq!(injected["detail"], "drop 20% of the packets api sends", "{injected}");
    // Packets were dropped: the kernel counted them against the drill's rule while it held.
    let api = stack.project.container("api");
    let after = net_state(&api);
    assert!(!after.contains("recordctl-drill"), "api cleared: {after}");
    assert_eq!(
        docker::network_helpers(&stack.project.name),
        "",
        "no helper left behind"
    );
    let probe = &report["probe_latency"];
    assert!(probe["fault_samples"].as_u64().unwrap() >= 20, "{probe}");
}

/// db-latency: 300 ms on everything the database sends. The readiness probe makes one round
/// trip to the database, so its latency must rise by the delay (within 10%), and the
/// checkout latency SLO must page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_latency_adds_its_delay_to_each_database_round_trip_and_pages_the_latency_slo() {
    let Some(stack) = Stack::start_traced("rsdblat").await else {
        return;
    };
    // The database's own round trip, measured from outside: a TCP connect to it waits for its
    // SYN-ACK, which the fault delays.
    let db = stack.project.container("db");
    let ip = docker::docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &db,
    ]);
    let addr: std::net::SocketAddr = format!("{ip}:5432").parse().unwrap();
    let connect_ms = || {
        let sent = Instant::now();
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .ok()
            .map(|_| sent.elapsed().as_secs_f64() * 1000.0)
    };
    let baseline: Vec<f64> = (0..20).filter_map(|_| connect_ms()).collect();
    let started = Instant::now();
    let done = std::sync::atomic::AtomicBool::new(false);
    let (report, samples) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut samples = Vec::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                if let Some(ms) = connect_ms() {
                    samples.push((started.elapsed().as_secs_f64(), ms));
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            samples
        });
        let (report, _junit) = stack.drill_with(
            "db-latency",
            &["--network-helper-image", docker::network_helper_image()],
        );
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        (report, sampler.join().unwrap())
    });
    assert_ledger_kept(&report, 20);
    let alert = &report["alerts"][0];
    assert_eq!(alert["name"], "CheckoutLatencyBudgetBurnFast", "{report:#}");
    assert_eq!(alert["met"], true, "{alert}");
    // Samples well inside the fault window (the drill's clock starts a little after ours).
    let at = |kind: &str| {
        timeline_events(&report, kind)
            .first()
            .and_then(|e| e["t_s"].as_f64())
            .unwrap_or_else(|| panic!("no {kind} in the timeline"))
    };
    let (from, to) = (at("fault injected") + 2.0, at("fault reverted") - 1.0);
    let during: Vec<f64> = samples
        .iter()
        .filter(|(t, _)| (from..=to).contains(t))
        .map(|(_, ms)| *ms)
        .collect();
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    assert!(
        during.len() >= 50 && baseline.len() >= 10,
        "{} and {} samples",
        during.len(),
        baseline.len()
    );
    let extra = median(&during) - median(&baseline);
    eprintln!(
        "database round trip: {:.2} ms before, {:.2} ms during the fault (+{extra:.1} ms, {} samples); readiness probe {}",
        median(&baseline),
        median(&during),
        during.len(),
        report["probe_latency"]
    );
    assert!(
        (270.0..=330.0).contains(&extra),
        "the database's round trip rose by {extra:.1} ms, not 300 ms ± 10%"
    );
    // The store's own database spans show it: each statement's span (one round trip) is at
    // least the delay longer inside the fault window than before it.
    let at_ms = |kind: &str| {
        timeline_events(&report, kind)
            .first()
            .and_then(|e| e["at_ms"].as_i64())
            .unwrap() as u64
            * 1_000_000
    };
    let (fault_ns, revert_ns) = (at_ms("fault injected"), at_ms("fault reverted"));
    let db_span = |s: &&SinkSpan| ["SELECT ", "INSERT ", "UPDATE "].iter().any(|p| s.name.starts_with(p));
    let spans = stack.spans.as_ref().unwrap().spans.lock().unwrap().clone();
    let span_ms = |from: u64, to: u64| -> Vec<f64> {
        spans
            .iter()
            .filter(db_span)
            .filter(|s| s.start_ns >= from && s.end_ns <= to)
            .map(|s| (s.end_ns - s.start_ns) as f64 / 1e6)
            .collect()
    };
    let before = span_ms(0, fault_ns);
    let inside = span_ms(fault_ns + 2_000_000_000, revert_ns);
    assert!(
        before.len() >= 5 && inside.len() >= 20,
        "{} and {} database spans",
        before.len(),
        inside.len()
    );
    eprintln!(
        "database spans: p50 {:.2} ms before the fault, {:.2} ms inside it ({} and {} spans)",
        median(&before),
        median(&inside),
        before.len(),
        inside.len()
    );
    assert!(median(&before) < 50.0, "{before:?}");
    assert!(median(&inside) - median(&before) >= 270.0, "{inside:?}");
    // The store's readiness probe (one round trip to the database) is slower by at least the
    // delay.
    let probe_extra = report["probe_latency"]["extra_ms"].as_f64().unwrap_or(0.0);
    assert!(probe_extra >= 270.0, "{}", report["probe_latency"]);
    // A slow database is not a down one: readiness (one round trip on connections of its own)
    // answers inside its 1 s budget, so neither DatabaseDown nor ApiDown pages.
    let fault_ticks = report["seconds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["phase"] == "fault")
        .count();
    let answered = report["probe_latency"]["fault_samples"].as_u64().unwrap_or(0) as usize;
    assert!(
        fault_ticks >= 30 && answered * 10 >= fault_ticks * 9,
        "{answered} of {fault_ticks} readiness probes answered during the fault"
    );
    let fired: Vec<&Value> = timeline_events(&report, "alert firing")
        .iter()
        .map(|e| &e["detail"])
        .collect();
    assert!(
        !fired.iter().any(|d| *d == "DatabaseDown" || *d == "ApiDown"),
        "a slow database paged as a down one: {fired:?}"
    );
    assert!(!net_state(&db).contains("netem"), "db cleared: {}", net_state(&db));
    assert!(
        !net_state(&db).contains("recordctl-drill"),
        "db cleared: {}",
        net_state(&db)
    );
    let after: Vec<f64> = (0..10).filter_map(|_| connect_ms()).collect();
    assert!(median(&after) < 100.0, "the delay is gone: {after:?}");
    assert_eq!(
        docker::network_helpers(&stack.project.name),
        "",
        "no helper left behind"
    );
}
