//! `recordctl doctor`: one look at everything recordctl would use — the target, Prometheus
//! (and whether it scrapes the app), Loki, Jaeger (and whether the app's services reported),
//! Alertmanager, Grafana, Docker and the compose project's containers — with a fix per
//! failure. Grafana is only linked to (reports open traces and log lines in it), so a Grafana
//! that does not answer is a warning, not a failure.

pub mod args;

pub use args::DoctorArgs;

use std::time::Duration;

use serde::Serialize;

use crate::backends::docker::DockerClient;
use crate::backends::jaeger::JaegerClient;
use crate::backends::loki::LokiClient;
use crate::backends::prometheus::PrometheusClient;
use crate::exit::{CommandResult, Outcome, UsageError};
use crate::output::Delivery;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    pub component: String,
    pub check: String,
    pub status: Status,
    pub detail: String,
    /// How to fix it, when it is not ok.
    pub fix: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DoctorReport {
    /// The JSON document's version: a field is only ever added within one.
    pub schema_version: u32,
    pub rows: Vec<Row>,
    /// Something required failed.
    pub failed: bool,
}

fn row(component: &str, check: &str, status: Status, detail: impl Into<String>, fix: &str) -> Row {
    Row {
        component: component.into(),
        check: check.into(),
        status,
        detail: detail.into(),
        fix: if status == Status::Ok {
            String::new()
        } else {
            fix.into()
        },
    }
}

/// The app services a compose project of recordstore has.
const APP_SERVICES: &[&str] = &["api", "worker", "db"];

/// The checks `--skip` may name.
pub const CHECKS: &[&str] = &[
    "target",
    "prometheus",
    "loki",
    "jaeger",
    "alertmanager",
    "grafana",
    "docker",
];

/// What doctor will look at, from its flags alone: the backend URLs and the checks left out
/// (a name that is no check is a usage error, not a silently ignored typo). No network.
#[derive(Debug)]
pub struct DoctorPlan {
    pub urls: crate::config::BackendUrls,
    pub skip: Vec<&'static str>,
}

impl DoctorPlan {
    /// `Err` is the message for a usage error (exit 2).
    pub fn from_args(args: &DoctorArgs) -> Result<DoctorPlan, UsageError> {
        let urls = crate::config::resolve(&args.stack).map_err(|e| e.to_string())?;
        let mut skip = Vec::new();
        for name in &args.skip {
            let check = CHECKS
                .iter()
                .find(|c| c.eq_ignore_ascii_case(name.trim()))
                .ok_or_else(|| format!("--skip {name:?}: not a check; the checks are {}", CHECKS.join(", ")))?;
            skip.push(*check);
        }
        Ok(DoctorPlan { urls, skip })
    }
}

pub async fn run(args: DoctorArgs) -> CommandResult {
    let plan = DoctorPlan::from_args(&args)?;
    let urls = plan.urls.clone();
    let skip = |name: &str| plan.skip.contains(&name);
    let http = crate::backends::client_with_timeout(Duration::from_secs(5));
    let mut rows = Vec::new();
    let target = args.target.trim_end_matches('/');
    if !skip("target") {
        rows.extend(target_rows(&http, target).await);
    }
    if !skip("prometheus") {
        rows.extend(prometheus_rows(&http, &urls.prometheus).await);
    }
    if !skip("loki") {
        rows.push(match LokiClient::new(&urls.loki).ready().await {
            Ok(()) => row("Loki", "ready", Status::Ok, format!("{}/ready", urls.loki), ""),
            Err(e) => row(
                "Loki",
                "ready",
                Status::Fail,
                e.to_string(),
                "docker compose up -d loki alloy (or --loki URL / RECORDCTL_LOKI_URL)",
            ),
        });
    }
    if !skip("jaeger") {
        rows.push(match JaegerClient::new(&urls.jaeger).services().await {
            Err(e) => row(
                "Jaeger",
                "services",
                Status::Fail,
                e.to_string(),
                "docker compose up -d jaeger (or --jaeger URL / RECORDCTL_JAEGER_URL)",
            ),
            Ok(services) => {
                let missing: Vec<&str> = ["recordstore-api", "recordstore-worker"]
                    .into_iter()
                    .filter(|s| !services.iter().any(|have| have == s))
                    .collect();
                if missing.is_empty() {
                    row("Jaeger", "services", Status::Ok, services.join(", "), "")
                } else {
                    row(
                        "Jaeger",
                        "services",
                        Status::Warn,
                        format!("no spans yet from {} (has: {})", missing.join(", "), services.join(", ")),
                        "send traffic (recordctl journey --target …); check the app's OTEL_EXPORTER_OTLP_ENDPOINT points at jaeger:4318",
                    )
                }
            }
        });
    }
    if !skip("alertmanager") {
        let am = crate::backends::alertmanager::AlertmanagerClient::new(&urls.alertmanager);
        let url = format!("{}/-/ready", am.base());
        rows.push(match am.ready().await {
            Ok(()) => row("Alertmanager", "ready", Status::Ok, url, ""),
            Err(e @ crate::backends::BackendError::Unreachable { .. }) => row(
                "Alertmanager",
                "ready",
                Status::Fail,
                e.to_string(),
                "docker compose up -d alertmanager (or --alertmanager URL / RECORDCTL_ALERTMANAGER_URL)",
            ),
            Err(e) => row(
                "Alertmanager",
                "ready",
                Status::Fail,
                e.to_string(),
                "docker compose logs alertmanager",
            ),
        });
    }
    if !skip("grafana") {
        rows.push(grafana_row(&http, &urls.grafana).await);
    }
    if !skip("docker") {
        rows.extend(docker_rows(args.project.as_deref()).await);
    }
    let report = DoctorReport {
        schema_version: 1,
        failed: rows.iter().any(|r| r.status == Status::Fail),
        rows,
    };
    let mut delivery = Delivery::default();
    delivery.show(&render(&report), &report, args.json.as_deref());
    delivery.conclude(if report.failed {
        Outcome::Unreachable
    } else {
        Outcome::Passed
    })
}

/// Grafana's `GET /api/health` (`{"database": "ok", "version": …}`); not answering is a warning.
async fn grafana_row(http: &reqwest::Client, base: &str) -> Row {
    let url = format!("{}/api/health", base.trim_end_matches('/'));
    let fix = "docker compose up -d grafana (or --grafana URL / RECORDCTL_GRAFANA_URL); recordctl works without it, its reports only link to it";
    match crate::backends::get_json::<serde_json::Value>(http, "Grafana", &url, &[]).await {
        Ok(health) if health["database"] == "ok" => {
            let version = health["version"].as_str().unwrap_or("?");
            row(
                "Grafana",
                "health",
                Status::Ok,
                format!("{url} (version {version})"),
                "",
            )
        }
        Ok(health) => row(
            "Grafana",
            "health",
            Status::Warn,
            format!("{url}: database {}", health["database"]),
            "docker compose logs grafana",
        ),
        Err(e) => row("Grafana", "health", Status::Warn, e.to_string(), fix),
    }
}

async fn target_rows(http: &reqwest::Client, target: &str) -> Vec<Row> {
    const START: &str =
        "start the store: docker compose up -d (or recordctl store --listen 127.0.0.1:8000), or pass --target URL";
    let mut rows = Vec::new();
    for (check, path, fix) in [
        ("live", "/health/live", START),
        (
            "ready",
            "/health/ready",
            "the store is up but not ready (its database?): docker compose ps db; docker compose logs api",
        ),
    ] {
        let url = format!("{target}{path}");
        rows.push(match http.get(&url).send().await {
            Ok(r) if r.status().is_success() => row("target", check, Status::Ok, url, ""),
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                row(
                    "target",
                    check,
                    Status::Fail,
                    format!(
                        "{url} answered {status}: {}",
                        body.chars().take(160).collect::<String>()
                    ),
                    fix,
                )
            }
            Err(e) => row(
                "target",
                check,
                Status::Fail,
                format!("cannot reach {url}: {}", crate::backends::error_chain(&e)),
                // Nothing answers: whichever check it is, the store needs starting.
                START,
            ),
        });
    }
    rows
}

async fn prometheus_rows(http: &reqwest::Client, base: &str) -> Vec<Row> {
    let base = base.trim_end_matches('/');
    let url = format!("{base}/-/ready");
    let ready = match http.get(&url).send().await {
        Ok(r) if r.status().is_success() => row("Prometheus", "ready", Status::Ok, url, ""),
        Ok(r) => row(
            "Prometheus",
            "ready",
            Status::Fail,
            format!("{url} answered {}", r.status()),
            "docker compose logs prometheus",
        ),
        Err(e) => row(
            "Prometheus",
            "ready",
            Status::Fail,
            format!("cannot reach {url}: {}", crate::backends::error_chain(&e)),
            "docker compose up -d prometheus (or --prometheus URL / RECORDCTL_PROMETHEUS_URL)",
        ),
    };
    if ready.status == Status::Fail {
        return vec![ready];
    }
    let targets = match PrometheusClient::new(base) {
        Ok(client) => client.targets().await,
        Err(e) => Err(e),
    };
    let scrape = match targets {
        Err(e) => row(
            "Prometheus",
            "app targets up",
            Status::Fail,
            e.to_string(),
            "check Prometheus's logs",
        ),
        Ok(targets) => {
            let job = |t: &crate::backends::prometheus::Target| t.labels.get("job").cloned().unwrap_or_default();
            let app: Vec<_> = targets.iter().filter(|t| job(t).starts_with("recordstore")).collect();
            let down: Vec<String> = app
                .iter()
                .filter(|t| t.health != "up")
                .map(|t| format!("{} {} ({})", job(t), t.scrape_url, t.health))
                .collect();
            if app.is_empty() {
                row(
                    "Prometheus",
                    "app targets up",
                    Status::Fail,
                    "no recordstore-* scrape jobs",
                    "load observability/prometheus.yml (jobs recordstore-api, recordstore-worker)",
                )
            } else if down.is_empty() {
                row(
                    "Prometheus",
                    "app targets up",
                    Status::Ok,
                    format!("{} targets up", app.len()),
                    "",
                )
            } else {
                row(
                    "Prometheus",
                    "app targets up",
                    Status::Fail,
                    format!("down: {}", down.join("; ")),
                    "the app is not reachable from Prometheus: docker compose ps; see http://localhost:9090/targets",
                )
            }
        }
    };
    vec![ready, scrape]
}

async fn docker_rows(project: Option<&str>) -> Vec<Row> {
    let docker = match DockerClient::connect().await {
        Ok(docker) => docker,
        Err(e) => {
            return vec![row(
                "Docker",
                "engine",
                Status::Fail,
                e.to_string(),
                "start the Docker engine (drills need it), or --skip docker",
            )];
        }
    };
    let version = docker.server_version().await.unwrap_or_default();
    let mut rows = vec![row("Docker", "engine", Status::Ok, format!("version {version}"), "")];
    let project = match project {
        Some(project) => project.to_string(),
        None => match docker.projects().await {
            Ok(projects) => {
                let found: Vec<String> = projects
                    .iter()
                    .filter(|(_, services)| APP_SERVICES.iter().all(|s| services.iter().any(|have| have == s)))
                    .map(|(name, _)| name.clone())
                    .collect();
                match found.as_slice() {
                    [one] => one.clone(),
                    [] => {
                        rows.push(row(
                            "Docker",
                            "compose project",
                            Status::Fail,
                            "no compose project with services api, worker and db",
                            "docker compose up -d (in the recordctl checkout)",
                        ));
                        return rows;
                    }
                    many => {
                        rows.push(row(
                            "Docker",
                            "compose project",
                            Status::Fail,
                            format!("several projects: {}", many.join(", ")),
                            "choose one with --project",
                        ));
                        return rows;
                    }
                }
            }
            Err(e) => {
                rows.push(row("Docker", "compose project", Status::Fail, e.to_string(), ""));
                return rows;
            }
        },
    };
    match docker.project(&project).await {
        Ok(containers) if containers.is_empty() => rows.push(row(
            "Docker",
            "compose project",
            Status::Fail,
            format!("project {project} has no containers"),
            "docker compose up -d",
        )),
        Ok(mut containers) => {
            containers.sort_by(|a, b| a.service.cmp(&b.service));
            for c in containers {
                let status = match (c.state.as_str(), c.health.as_str()) {
                    ("running", "healthy" | "none") => Status::Ok,
                    ("running", "starting") => Status::Warn,
                    _ => Status::Fail,
                };
                rows.push(row(
                    "Docker",
                    &format!("{project}/{}", c.service),
                    status,
                    format!("{} {} (health: {})", c.name, c.state, c.health),
                    &format!(
                        "docker compose logs {0}; docker compose up -d {0} (after a drill: recordctl drill --restore)",
                        c.service
                    ),
                ));
            }
        }
        Err(e) => rows.push(row("Docker", "compose project", Status::Fail, e.to_string(), "")),
    }
    rows
}

pub fn render(report: &DoctorReport) -> String {
    let mut table = crate::output::table();
    table.set_header(["component", "check", "status", "detail", "fix"]);
    for r in &report.rows {
        table.add_row([
            r.component.clone(),
            r.check.clone(),
            match r.status {
                Status::Ok => "ok".into(),
                Status::Warn => "warn".into(),
                Status::Fail => "FAIL".into(),
            },
            r.detail.clone(),
            r.fix.clone(),
        ]);
    }
    format!("{table}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> DoctorArgs {
        let words: Vec<&str> = std::iter::once("doctor").chain(extra.iter().copied()).collect();
        match crate::cli::parse_for_test(&words) {
            crate::cli::Command::Doctor(args) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn skip_names_checks_in_any_case_and_refuses_what_is_no_check() {
        let plan = DoctorPlan::from_args(&args(&["--skip", "Docker,grafana", "--skip", "loki"])).unwrap();
        assert_eq!(plan.skip, ["docker", "grafana", "loki"]);
        let e = DoctorPlan::from_args(&args(&["--skip", "grafan"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--skip \"grafan\": not a check; the checks are target,"),
            "{e}"
        );
        let plan = DoctorPlan::from_args(&args(&["--grafana", "http://g:3000"])).unwrap();
        assert_eq!(plan.urls.grafana, "http://g:3000");
        assert!(plan.skip.is_empty());
    }
}
