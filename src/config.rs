//! recordctl.toml: defaults for the stack's backend URLs, below flags and environment.

use serde::Deserialize;

use crate::tomlfile::{FileError, from_toml};

/// Where the stack's backends answer: flag, then environment, then `[backends]` in
/// recordctl.toml (or --config), then the compose ports.
#[derive(Debug, Clone, clap::Args)]
pub struct StackArgs {
    /// Prometheus base URL [default: http://localhost:9090].
    #[arg(long = "prometheus", env = "RECORDCTL_PROMETHEUS_URL")]
    pub prometheus: Option<String>,
    /// Loki base URL [default: http://localhost:3100].
    #[arg(long = "loki", env = "RECORDCTL_LOKI_URL")]
    pub loki: Option<String>,
    /// Jaeger query base URL [default: http://localhost:16686].
    #[arg(long = "jaeger", env = "RECORDCTL_JAEGER_URL")]
    pub jaeger: Option<String>,
    /// Alertmanager base URL [default: http://localhost:9093].
    #[arg(long = "alertmanager", env = "RECORDCTL_ALERTMANAGER_URL")]
    pub alertmanager: Option<String>,
    /// Grafana base URL, for links in reports [default: http://localhost:3000].
    #[arg(long = "grafana", env = "RECORDCTL_GRAFANA_URL")]
    pub grafana: Option<String>,
    /// A recordctl.toml with a [backends] table (default: ./recordctl.toml when present).
    #[arg(long = "config", env = "RECORDCTL_CONFIG", value_name = "FILE")]
    pub config: Option<String>,
}

pub const DEFAULT_PROMETHEUS: &str = "http://localhost:9090";
pub const DEFAULT_LOKI: &str = "http://localhost:3100";
pub const DEFAULT_JAEGER: &str = "http://localhost:16686";
pub const DEFAULT_ALERTMANAGER: &str = "http://localhost:9093";
pub const DEFAULT_GRAFANA: &str = "http://localhost:3000";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    backends: Backends,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Backends {
    prometheus: Option<String>,
    loki: Option<String>,
    jaeger: Option<String>,
    alertmanager: Option<String>,
    grafana: Option<String>,
}

/// The resolved backend URLs.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendUrls {
    pub prometheus: String,
    pub loki: String,
    pub jaeger: String,
    pub alertmanager: String,
    /// For links in reports (Explore on the Loki data source).
    pub grafana: String,
}

/// Flag or environment (already in `args`), else the file, else the compose default. A
/// file named by --config must exist; ./recordctl.toml is read only when present.
pub fn resolve(args: &StackArgs) -> Result<BackendUrls, FileError> {
    let (path, required) = match &args.config {
        Some(path) => (path.clone(), true),
        None => ("recordctl.toml".to_string(), false),
    };
    let file = match std::fs::read_to_string(&path) {
        Ok(text) => from_toml::<File>(&text, &path)?,
        Err(e) if required => {
            return Err(FileError {
                file: path,
                line: None,
                column: None,
                message: format!("cannot read it: {e}"),
            });
        }
        Err(_) => File::default(),
    };
    Ok(BackendUrls {
        prometheus: args
            .prometheus
            .clone()
            .or(file.backends.prometheus)
            .unwrap_or_else(|| DEFAULT_PROMETHEUS.into()),
        loki: args
            .loki
            .clone()
            .or(file.backends.loki)
            .unwrap_or_else(|| DEFAULT_LOKI.into()),
        jaeger: args
            .jaeger
            .clone()
            .or(file.backends.jaeger)
            .unwrap_or_else(|| DEFAULT_JAEGER.into()),
        alertmanager: args
            .alertmanager
            .clone()
            .or(file.backends.alertmanager)
            .unwrap_or_else(|| DEFAULT_ALERTMANAGER.into()),
        grafana: args
            .grafana
            .clone()
            .or(file.backends.grafana)
            .unwrap_or_else(|| DEFAULT_GRAFANA.into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(config: Option<&str>, loki: Option<&str>) -> StackArgs {
        StackArgs {
            prometheus: None,
            loki: loki.map(str::to_string),
            jaeger: None,
            alertmanager: None,
            config: config.map(str::to_string),
            grafana: None,
        }
    }

    #[test]
    fn flags_beat_the_file_which_beats_the_defaults() {
        let path = std::env::temp_dir().join(format!("recordctl-{:x}.toml", rand::random::<u64>()));
        std::fs::write(
            &path,
            "[backends]\nloki = \"http://loki:3100\"\njaeger = \"http://jaeger:16686\"\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let urls = resolve(&args(Some(p), Some("http://flag:1"))).unwrap();
        assert_eq!(urls.loki, "http://flag:1");
        assert_eq!(urls.jaeger, "http://jaeger:16686");
        assert_eq!(urls.prometheus, DEFAULT_PROMETHEUS);
        std::fs::write(&path, "[backends]\nlokki = \"x\"\n").unwrap();
        let err = resolve(&args(Some(p), None)).unwrap_err();
        assert_eq!((err.line, err.column), (Some(2), Some(1)), "{err}");
        assert!(
            err.to_string().starts_with(&format!("{p}:2:1: unknown field `lokki`")),
            "{err}"
        );
        let _ = std::fs::remove_file(&path);
        assert!(
            resolve(&args(Some("/no/such/recordctl.toml"), None))
                .unwrap_err()
                .to_string()
                .contains("cannot read")
        );
    }
}
