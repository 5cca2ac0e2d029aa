//! Faults: injecting each one under a journal entry written first, undoing it, restoring
//! whatever a journal still holds (`--restore`), and forgetting what cannot be undone
//! (`--restore --forget`).

use std::io::IsTerminal;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::file::{self, Action, Fault};
use super::journal::{Entry, EntryState, JournalError, JournalFile, Undo};
use super::network::{self, NetworkFault};
use super::render::describe;
use super::report::Restored;
use super::{ADMIN_TOKEN_ENV, Ctx, confirm};
use crate::backends::docker::{DockerClient, DockerError, ServiceContainer};
use crate::exit::{CommandError, CommandResult, Outcome};

/// A Docker call may take the stop's grace period and a little more, never longer: a hung
/// engine cannot hold a fault past its cap unnoticed.
pub(super) fn docker_timeout(stop_grace_seconds: i32) -> Duration {
    Duration::from_secs(u64::try_from(stop_grace_seconds).unwrap_or(0) + 15)
}

/// Why a fault could not be injected or undone; the drill reports it as a failure line.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// The journal could not record the change: nothing is changed unrecorded.
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// The store, the helper container or the fault itself said no.
    #[error("{0}")]
    Failed(String),
}

impl From<String> for FaultError {
    fn from(message: String) -> FaultError {
        FaultError::Failed(message)
    }
}

impl From<&str> for FaultError {
    fn from(message: &str) -> FaultError {
        FaultError::Failed(message.to_string())
    }
}

/// Journals, then applies, one fault. Returns its journal entry id.
pub(super) async fn inject(ctx: &Ctx, journal: &Mutex<JournalFile>, fault: &Fault) -> Result<usize, FaultError> {
    if fault.action == Action::PaymentFault {
        return inject_payment_fault(ctx, journal, fault).await;
    }
    let docker = ctx.docker.as_ref().ok_or("Docker is needed for this fault")?;
    let c = checked_container(ctx, docker, fault).await?;
    let networks: Vec<(String, Vec<String>)> = c
        .networks
        .iter()
        .filter(|(name, _)| fault.network.as_ref().is_none_or(|n| n == *name))
        .map(|(n, a)| (n.clone(), a.clone()))
        .collect();
    if fault.action == Action::Disconnect && networks.is_empty() {
        return Err(format!(
            "{} is not on network {:?} (it is on {:?})",
            c.name,
            fault.network,
            c.networks.keys().collect::<Vec<_>>()
        )
        .into());
    }
    let undo = match fault.action {
        Action::Stop | Action::Kill => Undo::Start,
        Action::Pause => Undo::Unpause,
        Action::Restart => Undo::EnsureRunning,
        Action::Disconnect => Undo::Reconnect {
            networks: networks.clone(),
        },
        _ => Undo::ClearNetwork {
            image: ctx.network_helper_image.clone(),
        },
    };
    let id = held(journal).before(Entry {
        id: 0,
        at_ms: 0,
        action: fault.action.name().into(),
        service: c.service.clone(),
        container_id: c.id.clone(),
        container_name: c.name.clone(),
        undo,
        state: EntryState::Applying,
        undo_error: None,
    })?;
    let grace = ctx.drill.safety.stop_grace_seconds;
    match fault.action {
        Action::Stop => docker.stop(&c, grace).await?,
        Action::Pause => docker.pause(&c).await?,
        Action::Kill => docker.kill(&c, fault.signal.as_deref().unwrap_or("SIGKILL")).await?,
        Action::Restart => docker.restart(&c, grace).await?,
        Action::Disconnect => {
            let mut result = Ok(());
            for (network, _) in &networks {
                result = result.and(docker.disconnect(&c, network).await);
            }
            result?
        }
        _ => apply_network_fault(ctx, docker, journal, id, &c, fault).await?,
    }
    held(journal).mark(id, EntryState::Applied, None)?;
    Ok(id)
}

/// The store's own fault switch (`POST /admin/faults`), journaled first.
async fn inject_payment_fault(ctx: &Ctx, journal: &Mutex<JournalFile>, fault: &Fault) -> Result<usize, FaultError> {
    let url = format!("{}/admin/faults", ctx.target);
    let id = held(journal).before(Entry {
        id: 0,
        at_ms: 0,
        action: fault.action.name().into(),
        service: fault.service.clone(),
        container_id: String::new(),
        container_name: String::new(),
        undo: Undo::ClearPaymentFault {
            url: url.clone(),
            token_env: ADMIN_TOKEN_ENV.into(),
        },
        state: EntryState::Applying,
        undo_error: None,
    })?;
    let mut request = ctx.http.post(&url).json(&serde_json::json!({
        "payment_latency_ms": fault.latency_ms.unwrap_or(0),
        "payment_failure_rate": fault.error_rate.unwrap_or(0.0),
    }));
    if let Some(token) = &ctx.admin_token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| format!("POST {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!(
            "POST {url} answered {} (is {ADMIN_TOKEN_ENV} / --admin-token set to the store's admin token?)",
            response.status()
        )
        .into());
    }
    held(journal).mark(id, EntryState::Applied, None)?;
    Ok(id)
}

/// The fault's container, inspected again: it must still be this project's and a service the
/// drill names.
async fn checked_container(ctx: &Ctx, docker: &DockerClient, fault: &Fault) -> Result<ServiceContainer, FaultError> {
    let found = ctx
        .containers
        .get(&fault.service)
        .ok_or_else(|| format!("no container for service {}", fault.service))?;
    let c = docker.inspect(&ctx.project, &found.id).await?;
    if !ctx.drill.services.contains(&c.service) {
        return Err(format!(
            "refused: {} is service {:?}, not one this drill names ({:?})",
            c.name, c.service, ctx.drill.services
        )
        .into());
    }
    Ok(c)
}

/// A delay, loss or bandwidth limit on everything `c` sends, from a helper container in its
/// network namespace; on a kernel without sch_netem, a delay held in user space. A fault that
/// did not apply is taken back (and its entry marked undone) before the error is told.
async fn apply_network_fault(
    ctx: &Ctx,
    docker: &DockerClient,
    journal: &Mutex<JournalFile>,
    id: usize,
    c: &ServiceContainer,
    fault: &Fault,
) -> Result<(), FaultError> {
    let net = NetworkFault::of(fault).ok_or("not a network fault")?;
    if c.state != "running" {
        return Err(format!(
            "{} is {}, not running: a network fault needs its network namespace",
            c.name, c.state
        )
        .into());
    }
    let image = &ctx.network_helper_image;
    let mut applied = docker
        .run_network_helper(c, image, network::HELPER_LABEL, &net.apply_script())
        .await
        .map(drop);
    // A kernel without sch_netem: the delay is held in user space instead, by
    // `recordctl network-delay-queue` in a helper that stays up for the fault.
    if let (Err(e), NetworkFault::Delay { delay, jitter }) = (&applied, &net)
        && network::lacks_netem(&e.to_string())
    {
        eprintln!(
            "recordctl drill: the Docker host's kernel has no sch_netem; delaying {}'s packets in user space (nfqueue) instead",
            c.service
        );
        applied = docker
            .start_network_helper(
                c,
                image,
                network::HELPER_LABEL,
                network::delay_queue_command(*delay, *jitter),
                network::DELAY_QUEUE_READY,
                Duration::from_secs(15),
            )
            .await;
    }
    if let Err(e) = applied {
        // Whatever part of it ran is taken back before the error is told.
        let _ = docker.stop_labelled(&ctx.project, network::HELPER_LABEL).await;
        let _ = docker
            .run_network_helper(c, image, network::HELPER_LABEL, &network::clear_script())
            .await;
        held(journal).mark(id, EntryState::Undone, Some("not applied".into()))?;
        return Err(format!("{}: {}", describe(fault), net.explain_failure(&e.to_string())).into());
    }
    Ok(())
}

pub(super) async fn undo_entry(ctx: &Ctx, journal: &Mutex<JournalFile>, id: usize) -> Result<(), FaultError> {
    let entry = held(journal).journal.entries[id].clone();
    let result = undo(
        ctx.docker.as_ref(),
        &ctx.http,
        &ctx.project,
        &entry,
        ctx.admin_token.as_deref(),
    )
    .await;
    let state = if result.is_ok() {
        EntryState::Undone
    } else {
        entry.state
    };
    held(journal).mark(id, state, result.as_ref().err().map(ToString::to_string))?;
    result
}

/// Undoes one journal entry; safe to repeat (an undo that finds nothing to do succeeds).
pub(super) async fn undo(
    docker: Option<&DockerClient>,
    http: &reqwest::Client,
    project: &str,
    entry: &Entry,
    admin_token: Option<&str>,
) -> Result<(), FaultError> {
    if let Undo::ClearPaymentFault { url, token_env } = &entry.undo {
        let mut request = http.delete(url);
        // The token the drill was given, else the environment (`--restore` in a new shell).
        if let Some(token) = admin_token
            .map(str::to_string)
            .or_else(|| std::env::var(token_env).ok())
        {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| format!("DELETE {url}: {e}"))?;
        return if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("DELETE {url} answered {}", response.status()).into())
        };
    }
    let docker = docker.ok_or("Docker is needed to undo this change")?;
    let c = match docker.inspect(project, &entry.container_id).await {
        Ok(c) => c,
        // Compose removed or recreated the container: undo on the service's container now.
        Err(gone) => docker.service(project, &entry.service).await.map_err(|_| {
            format!(
                "container {} is gone ({gone}) and service {:?} has no container in project {project:?}; \
                 nothing is left to undo on: `recordctl drill --restore --forget` drops this entry",
                entry.container_name, entry.service
            )
        })?,
    };
    match &entry.undo {
        Undo::Start | Undo::EnsureRunning => {
            if c.state == "paused" {
                docker.unpause(&c).await.map_err(|e| e.to_string())?;
            } else if c.state != "running" {
                docker.start(&c).await.map_err(|e| e.to_string())?;
            }
        }
        Undo::Unpause => {
            if c.state == "paused" {
                docker.unpause(&c).await.map_err(|e| e.to_string())?;
            }
        }
        Undo::Reconnect { networks } => {
            for (network, aliases) in networks {
                if !c.networks.contains_key(network) {
                    // Docker adds the container's short id (12 hex digits) as an alias itself.
                    // Only that is left out: a service alias such as `b` may well be a prefix
                    // of an id that starts with b.
                    let aliases: Vec<String> = aliases.iter().filter(|a| !is_short_id_of(a, &c.id)).cloned().collect();
                    docker
                        .connect_network(&c, network, &aliases)
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        Undo::ClearNetwork { image } => {
            // A user-space delayer first (SIGTERM: it removes its rules and lets every packet
            // it holds go), then whatever rule or queueing discipline is left.
            docker
                .stop_labelled(project, network::HELPER_LABEL)
                .await
                .map_err(|e| e.to_string())?;
            if c.state == "running" || c.state == "paused" {
                docker
                    .run_network_helper(&c, image, network::HELPER_LABEL, &network::clear_script())
                    .await
                    .map_err(|e| e.to_string())?;
            }
            // A stopped container's network namespace is gone, and its faults with it.
        }
        Undo::ClearPaymentFault { .. } => unreachable!("handled above"),
    }
    Ok(())
}

/// Undoes every journal entry not yet undone, newest first.
pub(super) async fn restore(
    docker: Option<&DockerClient>,
    http: &reqwest::Client,
    project: &str,
    journal: &Mutex<JournalFile>,
    admin_token: Option<&str>,
) -> Vec<Restored> {
    let pending = held(journal).pending();
    let mut out = Vec::new();
    // Network helpers a killed drill left behind.
    if let Some(docker) = docker
        && pending.iter().any(|e| matches!(e.undo, Undo::ClearNetwork { .. }))
    {
        match docker.stop_labelled(project, network::HELPER_LABEL).await {
            Ok(0) => {}
            Ok(n) => eprintln!("recordctl drill: removed {n} network helper containers left behind"),
            Err(e) => out.push(Restored {
                what: "remove network helper containers".into(),
                ok: false,
                error: e.to_string(),
            }),
        }
    }
    for entry in pending.iter().rev() {
        let what = format!("{} {} ({})", entry.action, entry.service, entry.container_name);
        let result = undo(docker, http, project, entry, admin_token).await;
        let state = if result.is_ok() {
            EntryState::Undone
        } else {
            entry.state
        };
        let _ = held(journal).mark(entry.id, state, result.as_ref().err().map(ToString::to_string));
        if result.is_ok() {
            eprintln!("recordctl drill: restored: {what}");
        }
        out.push(Restored {
            what,
            ok: result.is_ok(),
            error: result.err().map(|e| e.to_string()).unwrap_or_default(),
        });
    }
    out
}

/// `recordctl drill --restore`: undo what a killed drill left changed.
/// `drill --restore --forget`: marks every change the journal still holds as dealt with,
/// after the user confirms (or with `--yes`), so later drills may run.
pub(super) fn forget_command(path: &std::path::Path, yes: bool) -> CommandResult {
    let mut journal = match JournalFile::open(path) {
        Ok(Some(journal)) => journal,
        Ok(None) => {
            println!("nothing to forget: no journal at {}", path.display());
            return Ok(Outcome::Passed);
        }
        Err(e) => return Err(CommandError::Refused(format!("--restore --forget: {e}"))),
    };
    let pending = journal.pending();
    if pending.is_empty() {
        println!("nothing to forget: every change in {} was undone", path.display());
        return Ok(Outcome::Passed);
    }
    for e in &pending {
        println!(
            "would forget: {} {} ({}){}",
            e.action,
            e.service,
            e.container_name,
            e.undo_error
                .as_deref()
                .map(|err| format!(": {err}"))
                .unwrap_or_default()
        );
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(CommandError::Usage(
                "--restore --forget: add --yes to drop these entries without undoing them".into(),
            ));
        }
        if !confirm(&format!("Drop these {} entries without undoing them?", pending.len())) {
            return Err(CommandError::Refused("nothing forgotten".into()));
        }
    }
    for e in &pending {
        let note = Some("forgotten by drill --restore --forget, not undone".to_string());
        journal
            .mark(e.id, EntryState::Undone, note)
            .map_err(|err| CommandError::Refused(format!("--restore --forget: {err}")))?;
    }
    println!("forgot {} entries; later drills may run", pending.len());
    Ok(Outcome::Passed)
}

pub(super) async fn restore_command(path: &std::path::Path, admin_token: Option<&str>) -> CommandResult {
    let journal = match JournalFile::open(path) {
        Ok(Some(journal)) => journal,
        Ok(None) => {
            println!("nothing to restore: no journal at {}", path.display());
            return Ok(Outcome::Passed);
        }
        Err(e) => return Err(CommandError::Refused(format!("--restore: {e}"))),
    };
    let pending = journal.pending();
    if pending.is_empty() {
        println!("nothing to restore: every change in {} was undone", path.display());
        return Ok(Outcome::Passed);
    }
    let project = journal.journal.project.clone();
    let needs_docker = pending
        .iter()
        .any(|e| !matches!(e.undo, Undo::ClearPaymentFault { .. }));
    let docker = if needs_docker {
        let docker = DockerClient::connect_bounded(docker_timeout(file::MAX_STOP_GRACE_SECONDS)).await;
        Some(docker.map_err(|e| CommandError::Unreachable(format!("--restore: {e}")))?)
    } else {
        None
    };
    let http = crate::backends::client_with_timeout(Duration::from_secs(10));
    let journal = Mutex::new(journal);
    let restored = restore(docker.as_ref(), &http, &project, &journal, admin_token).await;
    let mut failed = false;
    for r in &restored {
        if r.ok {
            println!("restored  {}", r.what);
        } else {
            failed = true;
            println!("FAILED    {}: {}", r.what, r.error);
        }
    }
    Ok(Outcome::checks(!failed))
}

/// Whether `alias` is the short id Docker gives a container as an alias on every network.
fn is_short_id_of(alias: &str, id: &str) -> bool {
    alias.len() == 12 && id.starts_with(alias)
}

/// The journal, even when a drill task panicked while holding it: the restore that follows a
/// panic must still read and mark every entry.
fn held(journal: &Mutex<JournalFile>) -> MutexGuard<'_, JournalFile> {
    journal.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_short_id_is_left_out_of_the_aliases_a_reconnect_restores() {
        let id = "b007c913b44b5f0e9a4c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a";
        assert!(is_short_id_of("b007c913b44b", id));
        // The service's own alias, though a prefix of this id, is kept.
        assert!(!is_short_id_of("b", id));
        assert!(!is_short_id_of("b007", id));
        assert!(!is_short_id_of("a007c913b44b", id));
    }

    /// A drill task that panicked while holding the journal must not stop the restore.
    #[test]
    fn a_journal_poisoned_by_a_panic_can_still_be_restored_from() {
        let dir = std::env::temp_dir().join(format!("journal-poison-{:x}", rand::random::<u64>()));
        let journal = Mutex::new(JournalFile::create(&dir.join("j.json"), "d", "p").unwrap());
        let poisoned = std::thread::scope(|s| {
            s.spawn(|| {
                let _guard = journal.lock().unwrap();
                panic!("the drill task dies holding the journal");
            })
            .join()
            .is_err()
        });
        assert!(poisoned && journal.is_poisoned());
        assert!(held(&journal).pending().is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }
}
