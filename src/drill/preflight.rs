//! The drill's preflight, read-only: Docker, the compose project and its containers, the
//! plan shown to the user, Prometheus and the target — and the context every phase reads.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::args::DrillArgs;
use super::faults::docker_timeout;
use super::file::Drill;
use super::journal::now_ms;
use super::plan::DrillPlan;
use super::render;
use super::report::Event;
use crate::backends::alertmanager::AlertmanagerClient;
use crate::backends::docker::{DockerClient, ServiceContainer};
use crate::backends::prometheus::PrometheusClient;
use crate::exit::CommandError;

/// What the preflight found: the context to run in, or — on a dry run — the plan alone.
pub(super) enum Prepared {
    Run(Box<Ctx>, String),
    DryRun(String),
}

/// Connects to what the plan needs and shows nothing yet; returns the context and the plan
/// text. A dry run stops after the plan text, whatever could not be reached (said on stderr).
pub(super) async fn prepare(
    plan: DrillPlan,
    args: &DrillArgs,
    interrupt: CancellationToken,
) -> Result<Prepared, CommandError> {
    let DrillPlan {
        drill,
        file,
        target,
        urls,
        needs_docker,
        needs_prometheus,
    } = plan;
    let dry = |e: &dyn std::fmt::Display| eprintln!("recordctl drill: (dry run) {e}");
    let docker = if needs_docker {
        match DockerClient::connect_bounded(docker_timeout(drill.safety.stop_grace_seconds)).await {
            Ok(docker) => Some(docker),
            Err(e) if args.dry_run => {
                dry(&e);
                None
            }
            Err(e) => return Err(CommandError::Unreachable(e.to_string())),
        }
    } else {
        None
    };
    let project = match (&docker, &args.project) {
        (_, Some(project)) => project.clone(),
        (Some(docker), None) => match discover_project(docker, &drill).await {
            Ok(project) => project,
            Err(e) if args.dry_run => {
                dry(&e);
                "(unresolved)".to_string()
            }
            Err(e) => return Err(e),
        },
        (None, None) => "recordstore".to_string(),
    };
    let mut containers = BTreeMap::new();
    if let Some(docker) = &docker {
        for fault in drill.faults.iter().filter(|f| f.action.uses_docker()) {
            match docker.service(&project, &fault.service).await {
                Ok(c) => {
                    containers.insert(fault.service.clone(), c);
                }
                Err(e) if args.dry_run => dry(&e),
                Err(e) => return Err(CommandError::Refused(e.to_string())),
            }
        }
    }
    let plan_text = render::plan_text(&drill, &file, &project, &target, &containers, &urls.prometheus);
    if args.dry_run {
        return Ok(Prepared::DryRun(plan_text));
    }
    let prom = if needs_prometheus {
        let client = PrometheusClient::new(&urls.prometheus).map_err(|e| CommandError::Usage(e.to_string()))?;
        client
            .instant("vector(1)")
            .await
            .map_err(|e| CommandError::Unreachable(e.to_string()))?;
        Some(client)
    } else {
        None
    };
    let http = crate::backends::client_with_timeout(Duration::from_secs(5));
    if let Err(e) = http.get(format!("{target}/health/live")).send().await {
        return Err(CommandError::Unreachable(crate::backends::target_unreachable(
            &target,
            &crate::backends::error_chain(&e),
        )));
    }
    let ctx = Ctx {
        drill,
        file,
        project,
        target,
        prom,
        alertmanager: Some(AlertmanagerClient::new(&urls.alertmanager)),
        urls,
        docker,
        containers,
        http,
        admin_token: args.admin_token.clone(),
        network_helper_image: args.network_helper_image.clone(),
        interrupt,
        started: Instant::now(),
        started_ms: now_ms(),
    };
    Ok(Prepared::Run(Box::new(ctx), plan_text))
}

/// The compose project holding every service the drill names, when exactly one does.
pub(super) async fn discover_project(docker: &DockerClient, drill: &Drill) -> Result<String, CommandError> {
    let projects = docker
        .projects()
        .await
        .map_err(|e| CommandError::Refused(e.to_string()))?;
    let wanted: Vec<&String> = drill
        .faults
        .iter()
        .filter(|f| f.action.uses_docker())
        .map(|f| &f.service)
        .collect();
    let matching: Vec<&String> = projects
        .iter()
        .filter(|(_, services)| wanted.iter().all(|w| services.contains(w)))
        .map(|(name, _)| name)
        .collect();
    match matching.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(CommandError::Refused(format!(
            "no compose project here has the services {wanted:?} (projects: {}); start the stack (docker compose up -d) or pass --project",
            if projects.is_empty() {
                "none".to_string()
            } else {
                projects.keys().cloned().collect::<Vec<_>>().join(", ")
            }
        ))),
        many => Err(CommandError::Refused(format!(
            "several compose projects have the services {wanted:?}: {}; choose one with --project",
            many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Everything a drill's phases read: the drill, where it runs, the clients, the clock.
pub(super) struct Ctx {
    pub(super) drill: Drill,
    pub(super) file: String,
    pub(super) project: String,
    pub(super) target: String,
    pub(super) prom: Option<PrometheusClient>,
    pub(super) alertmanager: Option<AlertmanagerClient>,
    pub(super) urls: crate::config::BackendUrls,
    pub(super) docker: Option<DockerClient>,
    pub(super) containers: BTreeMap<String, ServiceContainer>,
    pub(super) http: reqwest::Client,
    pub(super) admin_token: Option<String>,
    pub(super) network_helper_image: String,
    pub(super) interrupt: CancellationToken,
    pub(super) started: Instant,
    pub(super) started_ms: i64,
}

impl Ctx {
    pub(super) fn t(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub(super) fn event(&self, events: &mut Vec<Event>, kind: &str, detail: impl Into<String>) {
        let detail = detail.into();
        eprintln!(
            "[{:>6.1}s] {kind}{}",
            self.t(),
            if detail.is_empty() {
                String::new()
            } else {
                format!(": {detail}")
            }
        );
        events.push(Event {
            t_s: self.t(),
            at_ms: now_ms(),
            kind: kind.to_string(),
            detail,
        });
    }
}
