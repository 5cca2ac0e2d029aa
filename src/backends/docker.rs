//! The Docker engine, through bollard: find a compose project's containers by service name and
//! change their state (stop/start, pause/unpause, kill, restart, network disconnect/connect).
//! Every method that changes something refuses containers outside the project it was given.

use std::collections::{BTreeMap, HashMap};

use bollard::Docker;
use bollard::models::{EndpointSettings, NetworkConnectRequest, NetworkDisconnectRequest};
use bollard::query_parameters::{
    KillContainerOptions, ListContainersOptions, RestartContainerOptions, StartContainerOptions, StopContainerOptions,
};
use serde::{Deserialize, Serialize};

pub const PROJECT_LABEL: &str = "com.docker.compose.project";
pub const SERVICE_LABEL: &str = "com.docker.compose.service";
/// The project a helper container works for (not compose's label: compose must not count
/// it as one of the project's containers).
pub const HELPER_PROJECT_LABEL: &str = "org.recordctl.project";

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(
        "cannot reach the Docker engine ({reason}); is it running, and may this user use /var/run/docker.sock? (DOCKER_HOST overrides)"
    )]
    Unreachable { reason: String },
    #[error(
        "no container of service {service:?} in compose project {project:?} (running: {found}); is the stack up? (docker compose up -d)"
    )]
    ServiceNotFound {
        project: String,
        service: String,
        found: String,
    },
    #[error("refused: container {container} belongs to project {actual:?}, not {expected:?}")]
    OutsideProject {
        container: String,
        expected: String,
        actual: String,
    },
    /// An image the engine has not got and could not pull, or could not make a container of.
    #[error("image {image}: {reason}")]
    Image { image: String, reason: String },
    #[error("Docker: {action} {container}: {reason}")]
    Action {
        action: String,
        container: String,
        reason: String,
    },
}

/// One container of a compose project, as a drill sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceContainer {
    pub id: String,
    pub name: String,
    pub project: String,
    pub service: String,
    /// created, running, paused, restarting, exited, dead.
    pub state: String,
    /// healthy, unhealthy, starting, or none when the image has no healthcheck.
    pub health: String,
    /// Network name → the aliases the container has on it.
    pub networks: BTreeMap<String, Vec<String>>,
}

/// How long one Docker call may take unless told otherwise.
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Clone)]
pub struct DockerClient {
    docker: Docker,
}

impl DockerClient {
    /// Connects (DOCKER_HOST or the local socket) and agrees on an API version with the engine.
    /// Every call gives up after [`CALL_TIMEOUT`].
    pub async fn connect() -> Result<DockerClient, DockerError> {
        Self::connect_bounded(CALL_TIMEOUT).await
    }

    /// As [`DockerClient::connect`], every call bounded by `timeout` (a stop's grace period
    /// must fit in it).
    pub async fn connect_bounded(timeout: std::time::Duration) -> Result<DockerClient, DockerError> {
        let unreachable = |e: bollard::errors::Error| DockerError::Unreachable { reason: e.to_string() };
        let docker = Docker::connect_with_defaults()
            .map_err(unreachable)?
            .with_timeout(timeout);
        let docker = docker.negotiate_version().await.map_err(unreachable)?;
        docker.ping().await.map_err(unreachable)?;
        Ok(DockerClient { docker })
    }

    pub async fn server_version(&self) -> Result<String, DockerError> {
        let version = self
            .docker
            .version()
            .await
            .map_err(|e| DockerError::Unreachable { reason: e.to_string() })?;
        Ok(version.version.unwrap_or_default())
    }

    /// Compose projects that have containers here, with their service names.
    pub async fn projects(&self) -> Result<BTreeMap<String, Vec<String>>, DockerError> {
        let mut projects: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for c in self.list(&[PROJECT_LABEL.to_string()]).await? {
            let entry = projects.entry(c.project).or_default();
            if !entry.contains(&c.service) {
                entry.push(c.service);
            }
        }
        Ok(projects)
    }

    /// Every container (running or not) of `project`.
    pub async fn project(&self, project: &str) -> Result<Vec<ServiceContainer>, DockerError> {
        self.list(&[format!("{PROJECT_LABEL}={project}")]).await
    }

    /// The container of `service` in `project` (the first, when scaled).
    pub async fn service(&self, project: &str, service: &str) -> Result<ServiceContainer, DockerError> {
        let all = self.project(project).await?;
        let found = all
            .iter()
            .map(|c| format!("{} ({})", c.service, c.state))
            .collect::<Vec<_>>()
            .join(", ");
        let mut matching: Vec<ServiceContainer> = all.into_iter().filter(|c| c.service == service).collect();
        matching.sort_by(|a, b| a.name.cmp(&b.name));
        let first = matching
            .into_iter()
            .next()
            .ok_or_else(|| DockerError::ServiceNotFound {
                project: project.to_string(),
                service: service.to_string(),
                found: if found.is_empty() { "nothing".into() } else { found },
            })?;
        // The list omits network aliases; inspect has everything.
        self.inspect(project, &first.id).await
    }

    /// The container `id` as it is now, checked to still belong to `project`.
    pub async fn inspect(&self, project: &str, id: &str) -> Result<ServiceContainer, DockerError> {
        let info = self
            .docker
            .inspect_container(id, None::<bollard::query_parameters::InspectContainerOptions>)
            .await
            .map_err(|e| action_error("inspect", id, e))?;
        let labels = info.config.as_ref().and_then(|c| c.labels.clone()).unwrap_or_default();
        let state = info.state.as_ref();
        let container = ServiceContainer {
            id: info.id.clone().unwrap_or_default(),
            name: info
                .name
                .clone()
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            project: labels.get(PROJECT_LABEL).cloned().unwrap_or_default(),
            service: labels.get(SERVICE_LABEL).cloned().unwrap_or_default(),
            state: state.and_then(|s| s.status).map(|s| s.to_string()).unwrap_or_default(),
            health: state
                .and_then(|s| s.health.as_ref())
                .and_then(|h| h.status)
                .map(|s| s.to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "none".into()),
            networks: info
                .network_settings
                .and_then(|n| n.networks)
                .unwrap_or_default()
                .into_iter()
                .map(|(name, endpoint)| (name, endpoint.aliases.unwrap_or_default()))
                .collect(),
        };
        if container.project != project {
            return Err(DockerError::OutsideProject {
                container: container.name,
                expected: project.to_string(),
                actual: container.project,
            });
        }
        Ok(container)
    }

    async fn list(&self, label_filters: &[String]) -> Result<Vec<ServiceContainer>, DockerError> {
        let filters: HashMap<String, Vec<String>> = [("label".to_string(), label_filters.to_vec())].into();
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let summaries = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| DockerError::Unreachable { reason: e.to_string() })?;
        Ok(summaries
            .into_iter()
            .map(|s| {
                let labels = s.labels.unwrap_or_default();
                let status = s.status.unwrap_or_default();
                ServiceContainer {
                    id: s.id.unwrap_or_default(),
                    name: s
                        .names
                        .and_then(|n| n.into_iter().next())
                        .unwrap_or_default()
                        .trim_start_matches('/')
                        .to_string(),
                    project: labels.get(PROJECT_LABEL).cloned().unwrap_or_default(),
                    service: labels.get(SERVICE_LABEL).cloned().unwrap_or_default(),
                    state: s.state.map(|s| s.to_string()).unwrap_or_default(),
                    health: if status.contains("(healthy)") {
                        "healthy".into()
                    } else if status.contains("(unhealthy)") {
                        "unhealthy".into()
                    } else if status.contains("health: starting") {
                        "starting".into()
                    } else {
                        "none".into()
                    },
                    networks: s
                        .network_settings
                        .and_then(|n| n.networks)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(name, endpoint)| (name, endpoint.aliases.unwrap_or_default()))
                        .collect(),
                }
            })
            .collect())
    }

    pub async fn stop(&self, c: &ServiceContainer, grace_s: i32) -> Result<(), DockerError> {
        let options = StopContainerOptions {
            t: Some(grace_s),
            ..Default::default()
        };
        self.docker
            .stop_container(&c.id, Some(options))
            .await
            .or_else(already("stop", c))
    }

    pub async fn start(&self, c: &ServiceContainer) -> Result<(), DockerError> {
        self.docker
            .start_container(&c.id, None::<StartContainerOptions>)
            .await
            .or_else(already("start", c))
    }

    pub async fn pause(&self, c: &ServiceContainer) -> Result<(), DockerError> {
        self.docker.pause_container(&c.id).await.or_else(already("pause", c))
    }

    pub async fn unpause(&self, c: &ServiceContainer) -> Result<(), DockerError> {
        self.docker
            .unpause_container(&c.id)
            .await
            .or_else(already("unpause", c))
    }

    pub async fn kill(&self, c: &ServiceContainer, signal: &str) -> Result<(), DockerError> {
        let options = KillContainerOptions {
            signal: signal.to_string(),
        };
        self.docker
            .kill_container(&c.id, Some(options))
            .await
            .map_err(|e| action_error("kill", &c.name, e))
    }

    pub async fn restart(&self, c: &ServiceContainer, grace_s: i32) -> Result<(), DockerError> {
        let options = RestartContainerOptions {
            t: Some(grace_s),
            ..Default::default()
        };
        self.docker
            .restart_container(&c.id, Some(options))
            .await
            .map_err(|e| action_error("restart", &c.name, e))
    }

    pub async fn disconnect(&self, c: &ServiceContainer, network: &str) -> Result<(), DockerError> {
        let request = NetworkDisconnectRequest {
            container: Some(c.id.clone()),
            force: Some(true),
        };
        self.docker
            .disconnect_network(network, request)
            .await
            .or_else(already("disconnect", c))
    }

    /// Runs `script` with `sh -c` in a short-lived helper container of `image` that shares
    /// `c`'s network namespace and has `NET_ADMIN`, and returns what it printed. The helper is
    /// removed whatever happens; a script that fails is an error carrying its output. The
    /// image is pulled when it is not on this engine yet.
    pub async fn run_network_helper(
        &self,
        c: &ServiceContainer,
        image: &str,
        label: &str,
        script: &str,
    ) -> Result<String, DockerError> {
        use bollard::query_parameters::WaitContainerOptions;
        use futures_util::StreamExt;

        let fail = |reason: String| DockerError::Action {
            action: "network helper for".into(),
            container: c.name.clone(),
            reason,
        };
        let command = vec!["sh".to_string(), "-c".to_string(), script.to_string()];
        let (id, name) = self
            .create_network_helper(c, image, label, command)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let run = async {
            self.docker
                .start_container(&id, None::<StartContainerOptions>)
                .await
                .map_err(|e| format!("cannot start the helper: {e}"))?;
            let mut wait = self.docker.wait_container(&id, None::<WaitContainerOptions>);
            let code = match wait.next().await {
                Some(Ok(answer)) => answer.status_code,
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
                Some(Err(e)) => return Err(format!("waiting for the helper: {e}")),
                None => return Err("the engine did not say how the helper ended".into()),
            };
            let output = self.output_of(&id).await;
            if code == 0 {
                Ok(output)
            } else {
                Err(format!("exit status {code}: {}", output.trim()))
            }
        };
        let result = run.await;
        let removed = self.remove_forced(&id).await;
        let output = result.map_err(fail)?;
        removed.map_err(|e| fail(format!("the helper {name} could not be removed: {e}")))?;
        Ok(output)
    }

    /// Starts `command` in a long-lived helper container of `image` in `c`'s network namespace
    /// with `NET_ADMIN`, and waits until it prints `ready` (within `within`). A helper that ends
    /// first, or stays silent, is removed and its output returned as the error.
    pub async fn start_network_helper(
        &self,
        c: &ServiceContainer,
        image: &str,
        label: &str,
        command: Vec<String>,
        ready: &str,
        within: std::time::Duration,
    ) -> Result<(), DockerError> {
        let fail = |reason: String| DockerError::Action {
            action: "network helper for".into(),
            container: c.name.clone(),
            reason,
        };
        let (id, _) = self
            .create_network_helper(c, image, label, command)
            .await
            .map_err(|e| fail(e.to_string()))?;
        if let Err(e) = self.docker.start_container(&id, None::<StartContainerOptions>).await {
            let _ = self.remove_forced(&id).await;
            return Err(fail(format!("cannot start the helper: {e}")));
        }
        let deadline = std::time::Instant::now() + within;
        loop {
            let output = self.output_of(&id).await;
            if output.contains(ready) {
                return Ok(());
            }
            let running = self
                .docker
                .inspect_container(&id, None::<bollard::query_parameters::InspectContainerOptions>)
                .await
                .ok()
                .and_then(|i| i.state)
                .and_then(|s| s.running)
                .unwrap_or(false);
            if !running || std::time::Instant::now() >= deadline {
                let output = self.output_of(&id).await;
                let _ = self.remove_forced(&id).await;
                return Err(fail(if running {
                    format!("the helper did not get ready within {within:?}: {}", output.trim())
                } else {
                    format!("the helper ended: {}", output.trim())
                }));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// What a container printed (stdout and stderr), as far as the engine gives it.
    async fn output_of(&self, id: &str) -> String {
        use bollard::query_parameters::LogsOptions;
        use futures_util::StreamExt;
        let mut output = String::new();
        let mut logs = self.docker.logs(
            id,
            Some(LogsOptions {
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
        );
        while let Some(Ok(chunk)) = logs.next().await {
            output.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        output
    }

    /// Creates (does not start) a helper container; returns its id and name.
    async fn create_network_helper(
        &self,
        c: &ServiceContainer,
        image: &str,
        label: &str,
        command: Vec<String>,
    ) -> Result<(String, String), DockerError> {
        use bollard::models::{ContainerCreateBody, HostConfig};
        use bollard::query_parameters::CreateContainerOptions;

        self.ensure_image(image).await?;
        let name = format!("recordctl-net-{}-{:08x}", c.name, rand::random::<u32>());
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            entrypoint: Some(command[..1].to_vec()),
            cmd: Some(command[1..].to_vec()),
            labels: Some(HashMap::from([
                (label.to_string(), c.id.clone()),
                (HELPER_PROJECT_LABEL.to_string(), c.project.clone()),
            ])),
            host_config: Some(HostConfig {
                network_mode: Some(format!("container:{}", c.id)),
                cap_add: Some(vec!["NET_ADMIN".into()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| DockerError::Image {
                image: image.to_string(),
                reason: format!("cannot create a helper from it: {e}"),
            })?;
        Ok((created.id, name))
    }

    /// Stops (SIGTERM, then SIGKILL after 5 s) and removes every container with `label` in
    /// `project`: the helpers a drill started, or a killed drill left behind. Returns how many.
    pub async fn stop_labelled(&self, project: &str, label: &str) -> Result<usize, DockerError> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![label.to_string(), format!("{HELPER_PROJECT_LABEL}={project}")],
            )])),
            ..Default::default()
        };
        let found = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| DockerError::Unreachable { reason: e.to_string() })?;
        let mut removed = 0;
        for c in found {
            if let Some(id) = c.id {
                let stop = StopContainerOptions {
                    t: Some(5),
                    ..Default::default()
                };
                let _ = self.docker.stop_container(&id, Some(stop)).await;
                self.remove_forced(&id)
                    .await
                    .map_err(|e| action_error("remove helper", &id, e))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    async fn remove_forced(&self, id: &str) -> Result<(), bollard::errors::Error> {
        let options = bollard::query_parameters::RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        match self.docker.remove_container(id, Some(options)).await {
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            other => other,
        }
    }

    /// Pulls `image` unless the engine has it.
    async fn ensure_image(&self, image: &str) -> Result<(), DockerError> {
        use futures_util::StreamExt;
        if self.docker.inspect_image(image).await.is_ok() {
            return Ok(());
        }
        let options = bollard::query_parameters::CreateImageOptions {
            from_image: Some(image.to_string()),
            ..Default::default()
        };
        let mut pull = self.docker.create_image(Some(options), None, None);
        while let Some(step) = pull.next().await {
            step.map_err(|e| DockerError::Image {
                image: image.to_string(),
                reason: format!(
                    "not on this engine and could not be pulled ({e}); pull it (docker pull {image}) \
                     or name one with sh, ip, tc and iptables (--network-helper-image)"
                ),
            })?;
        }
        Ok(())
    }

    /// Connects `c` to `network` again with the aliases it had (compose's service name among
    /// them, so the others find it by name).
    pub async fn connect_network(
        &self,
        c: &ServiceContainer,
        network: &str,
        aliases: &[String],
    ) -> Result<(), DockerError> {
        let request = NetworkConnectRequest {
            container: Some(c.id.clone()),
            endpoint_config: Some(EndpointSettings {
                aliases: Some(aliases.to_vec()),
                ..Default::default()
            }),
        };
        self.docker
            .connect_network(network, request)
            .await
            .or_else(already("connect", c))
    }
}

fn action_error(action: &str, container: &str, e: bollard::errors::Error) -> DockerError {
    DockerError::Action {
        action: action.to_string(),
        container: container.to_string(),
        reason: e.to_string(),
    }
}

/// The engine answers 304 (or 409/403 for some actions) when the container is already in the
/// wanted state; an undo that finds nothing to do has done its job.
fn already(
    action: &'static str,
    c: &ServiceContainer,
) -> impl FnOnce(bollard::errors::Error) -> Result<(), DockerError> {
    let name = c.name.clone();
    move |e| match &e {
        bollard::errors::Error::DockerResponseServerError { status_code: 304, .. } => Ok(()),
        bollard::errors::Error::DockerResponseServerError { message, .. }
            if message.contains("is not paused")
                || message.contains("is already paused")
                || message.contains("already exists in network")
                || message.contains("is not connected to") =>
        {
            Ok(())
        }
        _ => Err(action_error(action, &name, e)),
    }
}
