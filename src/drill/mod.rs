//! `recordctl drill`: break the system on purpose while traffic runs, measure detection and
//! recovery from Prometheus and Alertmanager, prove no acknowledged order was lost, and put
//! every change back — on success, failure, error, Ctrl-C, SIGTERM or panic; after a SIGKILL,
//! `recordctl drill --restore` does it from the journal.

pub mod args;
pub mod audit;
pub(crate) mod faults;
pub mod file;
pub mod html;
pub mod journal;
mod ledger;
pub mod netqueue;
pub mod network;
mod observe;
mod phases;
pub mod plan;
mod preflight;
pub mod render;
pub mod report;
pub mod traffic;
pub mod verdict;

pub use args::DrillArgs;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::exit::{CommandError, CommandResult, Outcome};
use crate::output::Delivery;
use faults::{forget_command, restore, restore_command};
use journal::JournalFile;
use observe::{expected_alerts_quiet, steady_state};
use preflight::{Ctx, Prepared, prepare};
use report::{Check, DrillReport};

/// Environment variable holding the store's admin token (payment faults).
pub const ADMIN_TOKEN_ENV: &str = "RECORDSTORE_ADMIN_TOKEN";

pub async fn run(args: DrillArgs, interrupt: CancellationToken) -> CommandResult {
    let journal_path = PathBuf::from(&args.journal);
    if args.restore && args.forget {
        return forget_command(&journal_path, args.yes);
    }
    if args.restore {
        return restore_command(&journal_path, args.admin_token.as_deref()).await;
    }
    if args.list {
        for (name, text) in file::BUILTIN {
            let description = file::parse(text, name).map(|d| d.description).unwrap_or_default();
            println!("{name:<18} {description}");
        }
        return Ok(Outcome::Passed);
    }
    let plan = plan::DrillPlan::from_args(&args)?;
    let (ctx, plan_text) = match prepare(plan, &args, interrupt.clone()).await? {
        Prepared::DryRun(plan_text) => {
            print!("{plan_text}");
            println!("dry run: nothing was changed");
            return Ok(Outcome::Passed);
        }
        Prepared::Run(ctx, plan_text) => (Arc::from(ctx), plan_text),
    };
    eprint!("{plan_text}");
    if !args.yes && std::io::stdin().is_terminal() && !confirm("Break these containers now?") {
        return Err(CommandError::Refused("not confirmed; nothing was changed".into()));
    }
    // The steady state must hold before anything is touched, and no alert the drill expects
    // may be active yet (it could not show that the fault was detected).
    let mut preflight = steady_state(&ctx).await;
    preflight.extend(expected_alerts_quiet(&ctx).await);
    if preflight.iter().any(|c| !c.ok) {
        let report = DrillReport::preflight_failed(&ctx.drill.name, &ctx.file, &ctx.project, &ctx.target, preflight);
        return deliver(&report, &args, Outcome::ChecksFailed);
    }
    let journal = JournalFile::create(&journal_path, &ctx.drill.name, &ctx.project)
        .map_err(|e| CommandError::Refused(e.to_string()))?;
    let report = supervise(ctx, Arc::new(Mutex::new(journal)), preflight).await;
    let outcome = if interrupt.is_cancelled() {
        Outcome::Interrupted
    } else {
        Outcome::checks(report.passed)
    };
    deliver(&report, &args, outcome)
}

/// Runs the phases in their own task so that whatever happens to them — an error, a panic,
/// an interrupt — every change in the journal is undone after; the undo's failures join the
/// report's.
async fn supervise(ctx: Arc<Ctx>, journal: Arc<Mutex<JournalFile>>, preflight: Vec<Check>) -> DrillReport {
    let outcome = tokio::spawn(phases::execute(ctx.clone(), journal.clone(), preflight)).await;
    let restored = restore(
        ctx.docker.as_ref(),
        &ctx.http,
        &ctx.project,
        &journal,
        ctx.admin_token.as_deref(),
    )
    .await;
    let mut report = match outcome {
        Ok(report) => report,
        Err(join_error) => {
            let mut report =
                DrillReport::preflight_failed(&ctx.drill.name, &ctx.file, &ctx.project, &ctx.target, Vec::new());
            report.verdict = "error".into();
            report
                .failures
                .push(format!("the drill stopped with an internal error: {join_error}"));
            report
        }
    };
    for r in &restored {
        if !r.ok {
            report.failures.push(format!("could not undo {}: {}", r.what, r.error));
        }
    }
    report.restored = restored;
    if ctx.interrupt.is_cancelled() {
        report.verdict = "interrupted".into();
    }
    report.passed = report.failures.is_empty() && report.verdict == "passed";
    report
}

/// The report on the terminal and in every file asked for; see [`crate::output`].
fn deliver(report: &DrillReport, args: &DrillArgs, outcome: Outcome) -> CommandResult {
    let mut delivery = Delivery::default();
    delivery.show(&render::render_table(report), report, args.json.as_deref());
    delivery.file("JUnit", args.junit.as_deref(), || render::junit(report));
    delivery.file("HTML", args.html.as_deref(), || html::render(report));
    delivery.conclude(outcome)
}

pub(super) fn confirm(question: &str) -> bool {
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok() && matches!(answer.trim(), "y" | "Y" | "yes")
}
