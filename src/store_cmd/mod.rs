//! `recordctl store`: the embedded recordstore in the foreground, for practising against.

pub mod args;

pub use args::StoreArgs;

use std::time::Duration;

use recordstore::{Application, Config, Role};
use tokio_util::sync::CancellationToken;

use crate::exit::{CommandError, CommandResult, Outcome};

pub async fn run(args: StoreArgs, interrupt: CancellationToken) -> CommandResult {
    let dir = std::env::temp_dir().join(format!("recordctl-store-{}", std::process::id()));
    let database = args
        .database
        .unwrap_or_else(|| format!("sqlite://{}", dir.join("store.db").display()));
    if database.starts_with("sqlite:") && std::fs::create_dir_all(&dir).is_err() {
        return Err(CommandError::Unreachable(format!("cannot create {}", dir.display())));
    }
    let mut config = Config::embedded(&database);
    config.listen = args.listen;
    config.telemetry.log_to_stdout = true;
    let app = Application::build(config, Role::ApiAndWorker, Duration::from_secs(10))
        .await
        .map_err(|e| CommandError::Unreachable(e.to_string()))?;
    eprintln!(
        "recordstore listening on http://{} (database {database}); Ctrl-C stops it",
        app.local_addr()
    );
    let result = app.run_until(interrupt).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
        .map(|()| Outcome::Passed)
        .map_err(|e| CommandError::Unreachable(format!("server error: {e}")))
}
