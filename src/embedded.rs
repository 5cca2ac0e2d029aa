//! The embedded target: recordstore started in-process on 127.0.0.1:0 with a throwaway
//! SQLite database and its worker, so commands work with nothing else running.

use std::path::PathBuf;
use std::time::Duration;

use recordstore::{Application, Config, Role, RunningApp};

pub struct EmbeddedTarget {
    app: RunningApp,
    dir: PathBuf,
}

impl EmbeddedTarget {
    /// Starts the store; with `capture`, its spans and log lines are kept in memory.
    pub async fn start_with(capture: bool) -> Result<EmbeddedTarget, String> {
        let dir = std::env::temp_dir().join(format!(
            "recordctl-embedded-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut config = Config::embedded(format!("sqlite://{}", dir.join("store.db").display()));
        config.telemetry.capture = capture;
        let app = Application::build(config, Role::ApiAndWorker, Duration::from_secs(10))
            .await
            .map_err(|e| e.to_string())?;
        Ok(EmbeddedTarget {
            app: app.spawn().await,
            dir,
        })
    }

    /// For load tests: many requests, so spans and log lines are not kept.
    pub async fn start() -> Result<EmbeddedTarget, String> {
        EmbeddedTarget::start_with(false).await
    }

    pub fn captured(&self) -> &std::sync::Arc<recordstore::telemetry::Captured> {
        self.app.captured()
    }

    pub fn base_url(&self) -> String {
        self.app.base_url()
    }

    pub async fn stop(self) {
        let _ = self.app.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
