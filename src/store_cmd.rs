//! `recordctl store`: the embedded recordstore in the foreground, for practising against.

use std::time::Duration;

use recordstore::{Application, Config, Role};
use tokio_util::sync::CancellationToken;

use crate::cli::StoreArgs;
use crate::exit;

pub async fn run(args: StoreArgs, interrupt: CancellationToken) -> u8 {
    let dir = std::env::temp_dir().join(format!("recordctl-store-{}", std::process::id()));
    let database = args
        .database
        .unwrap_or_else(|| format!("sqlite://{}", dir.join("store.db").display()));
    if database.starts_with("sqlite:") && std::fs::create_dir_all(&dir).is_err() {
        eprintln!("recordctl: cannot create {}", dir.display());
        return exit::UNREACHABLE;
    }
    let mut config = Config::embedded(&database);
    config.listen = args.listen;
    config.telemetry.log_to_stdout = true;
    let app = match Application::build(config, Role::ApiAndWorker, Duration::from_secs(10)).await {
        Ok(app) => app,
        Err(err) => {
            eprintln!("recordctl: {err}");
            return exit::UNREACHABLE;
        }
    };
    eprintln!(
        "recordstore listening on http://{} (database {database}); Ctrl-C stops it",
        app.local_addr()
    );
    let result = app.run_until(interrupt).await;
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(()) => exit::OK,
        Err(err) => {
            eprintln!("recordctl: server error: {err}");
            exit::UNREACHABLE
        }
    }
}
