//! The stack's Prometheus and Alertmanager configuration, checked by the real tools:
//! promtool (config, rules, rule unit tests), amtool, and a real Prometheus evaluating every
//! rule against the real app.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support;

/// The app's own test PostgreSQL (initdb into a temp dir, on a free port); this binary uses
/// only part of it.
#[allow(dead_code)]
#[path = "../../app/tests/api/postgres.rs"]
mod postgres;

use support::repo;

/// Runs a tool; `None` (after a SKIPPED line) when it is not installed outside CI.
fn run(tool: &str, args: &[&str]) -> Option<std::process::Output> {
    match Command::new(tool).args(args).output() {
        Ok(out) => Some(out),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => panic!("{tool} is required in CI"),
        Err(_) => {
            crate::support::skipped(&format!("SKIPPED: {tool} checks ({tool} not installed)"));
            None
        }
    }
}

fn assert_success(what: &str, out: std::process::Output) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_accepts_the_config_and_rules_and_every_rule_unit_test_passes() {
    let config = repo("observability/prometheus.yml");
    let Some(out) = run("promtool", &["check", "config", config.to_str().unwrap()]) else {
        return;
    };
    assert_success("promtool check config", out);
    // Every rule file and every rule test there is, so a new file cannot be left out.
    let files = |dir: &str| -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(repo(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
    };
    let rule_files = files("observability/rules");
    assert!(rule_files.len() >= 5, "{rule_files:?}");
    for rules in &rule_files {
        let name = rules.file_name().unwrap().to_string_lossy().to_string();
        let loaded = std::fs::read_to_string(&config)
            .unwrap()
            .contains(&format!("- rules/{name}"));
        assert!(loaded, "prometheus.yml does not load {name}");
        let out = run("promtool", &["check", "rules", rules.to_str().unwrap()]).unwrap();
        assert_success(&format!("promtool check rules {name}"), out);
    }
    let test_files = files("observability/tests");
    assert!(test_files.len() >= 4, "{test_files:?}");
    for tests in &test_files {
        let tests = tests.to_str().unwrap();
        let out = run("promtool", &["test", "rules", tests]).unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert_success(&format!("promtool test rules {tests}"), out);
        assert!(text.contains("SUCCESS"), "{text}");
    }
}

/// The alerts of a rule file, each checked to have a promtool test in `tests` and a runbook.
fn alerts_with_tests_and_runbooks(rules: &str, tests: &str) -> Vec<String> {
    let rules = std::fs::read_to_string(repo(rules)).unwrap();
    let tests = std::fs::read_to_string(repo(tests)).unwrap();
    let alerts: Vec<String> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(str::to_string)
        .collect();
    for alert in &alerts {
        assert!(
            tests.contains(&format!("alertname: {alert}")),
            "no promtool test for {alert}"
        );
    }
    assert_eq!(
        rules.matches("runbook:").count(),
        alerts.len(),
        "every alert carries a runbook note"
    );
    alerts
}

#[test]
fn every_meta_monitoring_alert_has_a_unit_test_and_a_runbook() {
    let alerts = alerts_with_tests_and_runbooks("observability/rules/meta.yml", "observability/tests/meta_test.yml");
    assert_eq!(
        alerts,
        [
            "Watchdog",
            "PrometheusRuleFailures",
            "AlertmanagerNotificationsFailing",
            "ScrapeTargetDown",
            "LogIngestionStalled",
            "TraceIngestionStalled"
        ]
    );
    let database = alerts_with_tests_and_runbooks(
        "observability/rules/database.yml",
        "observability/tests/database_test.yml",
    );
    assert_eq!(
        database,
        [
            "PostgresConnectionsNearLimit",
            "PostgresLongTransaction",
            "PostgresDeadlocks"
        ]
    );
    let containers = alerts_with_tests_and_runbooks(
        "observability/rules/containers.yml",
        "observability/tests/containers_test.yml",
    );
    assert_eq!(containers, ["ContainerMemoryNearLimit", "ContainerOOMKilled"]);
    // The compose Prometheus loads them and scrapes what they read.
    let config = std::fs::read_to_string(repo("observability/prometheus.yml")).unwrap();
    assert!(config.contains("- rules/meta.yml"), "{config}");
    for job in [
        "job_name: cadvisor",
        "job_name: loki",
        "job_name: jaeger",
        "job_name: alertmanager",
        "job_name: prometheus",
    ] {
        assert!(config.contains(job), "{job} not scraped");
    }
    // Alertmanager sends the Watchdog to its own receiver, every minute.
    let am: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(repo("observability/alertmanager.yml")).unwrap()).unwrap();
    let route = &am["route"]["routes"][0];
    assert_eq!(route["matchers"][0].as_str(), Some("alertname=\"Watchdog\""));
    assert_eq!(route["receiver"].as_str(), Some("watchdog"));
    assert_eq!(route["repeat_interval"].as_str(), Some("1m"));
}

#[test]
fn every_cause_alert_has_a_unit_test_and_a_runbook() {
    let alerts =
        alerts_with_tests_and_runbooks("observability/rules/causes.yml", "observability/tests/causes_test.yml");
    assert_eq!(
        alerts,
        [
            "ApiDown",
            "DatabaseDown",
            "WorkerDown",
            "JobBacklog",
            "PaymentGatewayCircuitOpen",
            "HighErrorRate",
            "HighLatency"
        ]
    );
}

#[test]
fn amtool_accepts_the_alertmanager_config() {
    let config = repo("observability/alertmanager.yml");
    let Some(out) = run("amtool", &["check-config", config.to_str().unwrap()]) else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_success("amtool check-config", out);
    assert!(text.contains("3 inhibit rules"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_evaluates_every_rule_against_the_real_app_without_error() {
    if !support::Prometheus::available() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("recordctl-rules-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let app = support::store(&dir, recordstore::Role::ApiAndWorker, |_| {}).await;
    // Some traffic, so the rules have series to work on.
    let client = reqwest::Client::new();
    for _ in 0..5 {
        client
            .post(format!("{}/checkout", app.base_url()))
            .json(&serde_json::json!({ "product_id": 1, "quantity": 1 }))
            .send()
            .await
            .unwrap();
        client.get(format!("{}/products", app.base_url())).send().await.unwrap();
    }
    // The project's rule files (their evaluation intervals shortened to 1 s).
    let prometheus = support::Prometheus::start(
        &format!(
            "  - job_name: recordstore-api\n    static_configs:\n      - targets: ['{}']\n",
            app.addr()
        ),
        &[
            repo("observability/rules/slo.yml"),
            repo("observability/rules/causes.yml"),
            repo("observability/rules/meta.yml"),
        ],
        "",
    );
    let prom = prometheus.client();
    let deadline = Instant::now() + Duration::from_secs(30);
    let rules = loop {
        if let Ok(rules) = prom.rules().await
            && rules.len() == 36
            && rules.iter().all(|r| r.health != "unknown")
        {
            break rules;
        }
        assert!(Instant::now() < deadline, "rules were not all evaluated within 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let bad: Vec<_> = rules.iter().filter(|r| r.health != "ok").collect();
    assert!(bad.is_empty(), "rules that failed to evaluate: {bad:?}");
    // And the alerts that concern the app stay quiet on a healthy store.
    let firing = prom.alerts().await.unwrap();
    assert!(
        firing.iter().all(|a| a.labels["alertname"] != "DatabaseDown"),
        "{firing:?}"
    );
    // The dead man's switch is on.
    assert!(firing.iter().any(|a| a.labels["alertname"] == "Watchdog"), "{firing:?}");
    drop(prometheus);
    app.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

/// During a database outage only DatabaseDown pages: ApiDown (whose probe of /health/ready
/// turns 503) and the symptoms are inhibited by it, a dead worker is not.
#[test]
fn database_down_inhibits_api_down_and_the_symptoms_but_not_other_causes() {
    let config: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(repo("observability/alertmanager.yml")).unwrap()).unwrap();
    let rule = config["inhibit_rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|r| r["source_matchers"][0].as_str() == Some("alertname=\"DatabaseDown\""))
        .expect("an inhibit rule sourced by DatabaseDown");
    let matcher = rule["target_matchers"][0].as_str().unwrap();
    let pattern = matcher.strip_prefix("alertname=~").unwrap().trim_matches('"');
    // Alertmanager anchors its regular expressions.
    let re = regex::Regex::new(&format!("^(?:{pattern})$")).unwrap();
    for inhibited in [
        "ApiDown",
        "HighErrorRate",
        "HighLatency",
        "JobBacklog",
        "CheckoutErrorBudgetBurnFast",
    ] {
        assert!(
            re.is_match(inhibited),
            "{inhibited} should be inhibited by DatabaseDown"
        );
    }
    for paging in ["DatabaseDown", "WorkerDown", "PaymentGatewayCircuitOpen"] {
        assert!(!re.is_match(paging), "{paging} must still page");
    }
}

/// The app logs lower-case levels (`info`, `warn`, `error`): a panel filtering on upper-case
/// ones would always be empty.
#[test]
fn dashboards_filter_log_levels_as_the_app_writes_them() {
    for entry in std::fs::read_dir(repo("observability/grafana/dashboards")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for level in ["ERROR", "WARN", "INFO", "DEBUG"] {
            assert!(
                !text.contains(&format!("level=~\\\"{level}")) && !text.contains(&format!("|{level}")),
                "{} filters on the upper-case level {level}",
                path.display()
            );
        }
    }
}

/// The database alerts and panels read what the real postgres_exporter (Debian's) exports from
/// a real PostgreSQL: a transaction held open shows in `pg_stat_activity_max_tx_duration`, and
/// every rule of `database.yml` evaluates on a real Prometheus without error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_rules_read_what_the_real_postgres_exporter_exports() {
    const EXPORTER: &str = "/usr/bin/prometheus-postgres-exporter";
    if !support::required(
        std::path::Path::new(EXPORTER).exists(),
        "postgres_exporter",
        "apt-get install prometheus-postgres-exporter",
    ) || !support::Prometheus::available()
    {
        return;
    }
    let Some(pg) = postgres::shared() else {
        return;
    };
    // A transaction left open, as a stuck client would.
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut held = sqlx::AnyConnection::connect(&pg.url("postgres")).await.unwrap();
    sqlx::query("BEGIN").execute(&mut held).await.unwrap();
    sqlx::query("SELECT txid_current()").execute(&mut held).await.unwrap();

    let port = support::free_port();
    let mut exporter = Command::new(EXPORTER)
        .env("DATA_SOURCE_NAME", format!("{}?sslmode=disable", pg.url("postgres")))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    support::wait_ready(port, "/metrics", "postgres_exporter");
    let prometheus = support::Prometheus::start(
        &format!("  - job_name: postgres\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"),
        &[repo("observability/rules/database.yml")],
        "",
    );
    let prom = prometheus.client();
    let value = |q: &'static str| {
        let prom = &prom;
        async move { prom.instant(q).await.ok()?.first().map(|s| s.value) }
    };
    support::eventually(
        "the exporter scraped with a transaction open",
        Duration::from_secs(30),
        || async {
            let up = value("pg_up").await?;
            let held_s = value(r#"max(pg_stat_activity_max_tx_duration{state="idle in transaction"})"#).await?;
            (up == 1.0 && held_s >= 1.0).then_some(())
        },
    )
    .await;
    // Every series the rules and the golden-signals panels read exists.
    for q in [
        "sum(pg_stat_activity_count)",
        "max(pg_settings_max_connections)",
        "sum(pg_stat_database_deadlocks)",
        "sum(pg_locks_count)",
    ] {
        assert!(value(q).await.is_some(), "{q} has no sample");
    }
    let used = value("sum(pg_stat_activity_count) / max(pg_settings_max_connections)")
        .await
        .unwrap();
    assert!(used > 0.0 && used < 0.8, "{used}");
    let rules = support::eventually("the database rules evaluated", Duration::from_secs(30), || async {
        let rules = prom.rules().await.ok()?;
        (rules.len() == 3 && rules.iter().all(|r| r.health != "unknown")).then_some(rules)
    })
    .await;
    assert!(rules.iter().all(|r| r.health == "ok"), "{rules:?}");
    drop(held);
    let _ = exporter.kill();
    let _ = exporter.wait();
}

/// Seconds in a PromQL duration such as `5m` or `1h30m`.
fn duration_seconds(text: &str) -> Option<u64> {
    let (mut total, mut number) = (0u64, String::new());
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let scale = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return None,
        };
        total += number.parse::<u64>().ok()? * scale;
        number.clear();
    }
    number.is_empty().then_some(total)
}

/// Prometheus 3 changed two things rules and dashboards can trip on. Range selectors are
/// left-open (a sample exactly at the start no longer counts): every range here spans at
/// least four scrape intervals, so it loses at most one of many samples and no `rate` goes
/// empty. And classic histograms' `le` and summaries' `quantile` values are normalised to
/// floats on ingestion (`le="1"` becomes `le="1.0"`): every such matcher is written in that
/// form, so it matches under Prometheus 2 and 3 alike.
#[test]
fn rules_and_dashboards_mean_the_same_under_prometheus_3s_range_and_label_semantics() {
    let config = std::fs::read_to_string(repo("observability/prometheus.yml")).unwrap();
    let scrape = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("scrape_interval:"))
        .and_then(|v| duration_seconds(v.trim()))
        .expect("a global scrape_interval");
    let ranges = regex::Regex::new(r"\[([0-9smhdw]+)(?::[0-9smhdw]*)?\]").unwrap();
    let matchers = regex::Regex::new(r#"\b(le|quantile)\s*=~?\s*\\?"([^"\\]*)\\?""#).unwrap();
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(repo("observability/rules"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.extend(
        std::fs::read_dir(repo("observability/grafana/dashboards"))
            .unwrap()
            .map(|e| e.unwrap().path()),
    );
    let (mut ranges_seen, mut matchers_seen) = (0, 0);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for c in ranges.captures_iter(&text) {
            let seconds = duration_seconds(&c[1]).unwrap_or_else(|| panic!("{}: range {}", file.display(), &c[0]));
            assert!(
                seconds >= 4 * scrape,
                "{}: range {} spans fewer than four {scrape} s scrapes",
                file.display(),
                &c[0]
            );
            ranges_seen += 1;
        }
        for c in matchers.captures_iter(&text) {
            let value = &c[2];
            let normalised = value.parse::<f64>().is_ok_and(|v| {
                let text = if v.fract() == 0.0 {
                    format!("{v:.1}")
                } else {
                    format!("{v}")
                };
                text == value
            });
            assert!(
                normalised || value == "+Inf",
                "{}: {}=\"{value}\" is not how Prometheus 3 writes it",
                file.display(),
                &c[1]
            );
            matchers_seen += 1;
        }
    }
    assert!(
        ranges_seen > 20 && matchers_seen >= 4,
        "{ranges_seen} ranges, {matchers_seen} matchers"
    );
}
