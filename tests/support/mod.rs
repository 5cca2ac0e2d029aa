//! What the integration tests share: a real Prometheus on a free port, the local Docker
//! engine with images built from Debian's packages, temp dirs, polling with deadlines, the
//! command runner.

pub mod browser;
pub mod docker;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Prints a SKIPPED line where it is seen: straight to stderr, past libtest's capture, with
/// the name of the test that skips.
pub fn skipped(line: &str) {
    use std::io::Write;
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let _ = writeln!(std::io::stderr(), "{line} [{test}]");
}

pub fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// `true` when `present`; otherwise fails in CI (where `.ci/run` installs everything) and
/// prints one SKIPPED line elsewhere.
pub fn required(present: bool, what: &str, install: &str) -> bool {
    if present {
        return true;
    }
    assert!(!in_ci(), "{what} is required in CI ({install})");
    skipped(&format!("SKIPPED: {what} not available ({install})"));
    false
}

/// How the tests share this machine's two cores. A test whose numbers depend on having the
/// CPU (the load engine's timing) runs [`alone`]; a test that loads the machine (a compose
/// project, a Prometheus, the whole stack) holds a [`shared`] turn. Shared turns go first, so a
/// test holding two never waits on itself; a thread running alone may take shared turns too.
struct Turns {
    shared: usize,
    alone: Option<std::thread::ThreadId>,
}

static TURNS: (std::sync::Mutex<Turns>, std::sync::Condvar) = (
    std::sync::Mutex::new(Turns { shared: 0, alone: None }),
    std::sync::Condvar::new(),
);

fn turns() -> std::sync::MutexGuard<'static, Turns> {
    TURNS.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A turn on the machine, given back when dropped.
pub struct Turn {
    alone: bool,
    counted: bool,
}

/// A shared turn, for a test that loads the machine; see [`Turns`].
pub fn shared() -> Turn {
    let me = std::thread::current().id();
    let mut t = turns();
    if t.alone == Some(me) {
        return Turn {
            alone: false,
            counted: false,
        };
    }
    while t.alone.is_some() {
        t = TURNS.1.wait(t).unwrap_or_else(|poisoned| poisoned.into_inner());
    }
    t.shared += 1;
    Turn {
        alone: false,
        counted: true,
    }
}

/// The machine to itself, for a test whose numbers depend on it; see [`Turns`].
pub fn alone() -> Turn {
    let me = std::thread::current().id();
    let mut t = turns();
    while t.alone.is_some() || t.shared > 0 {
        t = TURNS.1.wait(t).unwrap_or_else(|poisoned| poisoned.into_inner());
    }
    t.alone = Some(me);
    Turn {
        alone: true,
        counted: true,
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if !self.counted {
            return;
        }
        let mut t = turns();
        if self.alone {
            t.alone = None;
        } else {
            t.shared -= 1;
        }
        drop(t);
        TURNS.1.notify_all();
    }
}

/// The recordctl binary of this build, as a command, with nothing of the caller's
/// environment that would point it elsewhere (`RECORDCTL_*`, `COMPOSE_PROJECT_NAME`).
pub fn recordctl() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_recordctl"));
    for (var, _) in std::env::vars_os() {
        if var.to_str().is_some_and(|v| v.starts_with("RECORDCTL_")) {
            command.env_remove(&var);
        }
    }
    command.env_remove("COMPOSE_PROJECT_NAME");
    command
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("{prefix}-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn join(&self, path: &str) -> PathBuf {
        self.0.join(path)
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The store in-process on a free port with a SQLite database in `dir`, its config adjusted by
/// `configure` first.
pub async fn store(
    dir: impl AsRef<Path>,
    role: recordstore::Role,
    configure: impl FnOnce(&mut recordstore::Config),
) -> recordstore::RunningApp {
    let db = dir.as_ref().join("s.db");
    let mut config = recordstore::Config::embedded(format!("sqlite://{}", db.display()));
    configure(&mut config);
    recordstore::Application::build(config, role, Duration::from_secs(5))
        .await
        .unwrap()
        .spawn()
        .await
}

/// Polls `check` until it returns `Some`, or panics naming `what` after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// [`eventually`] for blocking tests: checks every second until `check` answers, failing
/// after `limit`.
pub fn poll<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Blocks until `GET path` on the loopback `port` answers 200 (30 s at most).
pub fn wait_ready(port: u16, path: &str, what: &str) {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
            let mut head = [0u8; 12];
            s.read_exact(&mut head)?;
            Ok(head)
        });
        if answer.is_ok_and(|head| head.ends_with(b" 200")) {
            return;
        }
        assert!(Instant::now() < deadline, "{what} on port {port} not ready within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Debian's Prometheus on a free loopback port with a generated config, killed on drop.
pub struct Prometheus {
    _turn: Turn,
    child: Child,
    pub url: String,
    /// Its config and data, removed when it is dropped.
    _dir: TempDir,
}

impl Prometheus {
    pub const BINARY: &str = "/usr/bin/prometheus";

    pub fn available() -> bool {
        required(
            Path::new(Self::BINARY).exists(),
            "Prometheus",
            "apt-get install prometheus",
        )
    }

    /// Starts Prometheus (exemplar storage on, the remote-write receiver at /api/v1/write)
    /// with 1 s scrape and evaluation intervals. `scrape_configs` is the YAML
    /// list under `scrape_configs:` (indented by two spaces); `rules` are copied in with their
    /// group intervals shortened to 1 s. Extra lines (e.g. `alerting:`) go in `extra`.
    pub fn start(scrape_configs: &str, rules: &[PathBuf], extra: &str) -> Prometheus {
        let dir = TempDir::new("recordctl-prometheus");
        let mut rule_files = String::new();
        for (i, rule) in rules.iter().enumerate() {
            let text = std::fs::read_to_string(rule)
                .unwrap_or_else(|e| panic!("{}: {e}", rule.display()))
                .replace("interval: 15s", "interval: 1s");
            let path = dir.join(&format!("rules-{i}.yml"));
            std::fs::write(&path, text).unwrap();
            rule_files.push_str(&format!("  - {}\n", path.display()));
        }
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n{}{extra}\nscrape_configs:\n{scrape_configs}\n",
            if rule_files.is_empty() {
                String::new()
            } else {
                format!("rule_files:\n{rule_files}")
            }
        );
        std::fs::write(dir.join("prometheus.yml"), &config).unwrap();
        let port = free_port();
        let child = Command::new(Self::BINARY)
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--enable-feature=exemplar-storage")
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        wait_ready(port, "/-/ready", "Prometheus");
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
            _turn: shared(),
        }
    }

    pub fn client(&self) -> recordctl::backends::prometheus::PrometheusClient {
        recordctl::backends::prometheus::PrometheusClient::new(&self.url).unwrap()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's Pushgateway on a free loopback port, killed on drop.
pub struct Pushgateway {
    child: std::process::Child,
    port: u16,
}

impl Pushgateway {
    /// `None` (after a SKIPPED line) when it is not installed outside CI; in CI a failure.
    pub fn start() -> Option<Pushgateway> {
        let binary = ["/usr/bin/prometheus-pushgateway", "/usr/bin/pushgateway"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        let Some(binary) = binary else {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("prometheus-pushgateway is required in CI");
            }
            skipped("SKIPPED: Pushgateway test (apt-get install prometheus-pushgateway)");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(binary)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the pushgateway");
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the pushgateway did not listen on {port} within 15 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Pushgateway { child, port })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's Alertmanager with the project's configuration on a free loopback port (no
/// cluster), killed on drop.
pub struct Alertmanager {
    child: Child,
    pub port: u16,
    _dir: TempDir,
}

impl Alertmanager {
    pub const BINARY: &str = "/usr/bin/prometheus-alertmanager";

    pub fn available() -> bool {
        required(
            Path::new(Self::BINARY).exists(),
            "Alertmanager",
            "apt-get install prometheus-alertmanager",
        )
    }

    pub fn start() -> Alertmanager {
        let dir = TempDir::new("recordctl-alertmanager");
        let port = free_port();
        let child = Command::new(Self::BINARY)
            .arg(format!(
                "--config.file={}",
                repo("observability/alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", dir.0.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start alertmanager");
        Alertmanager { child, port, _dir: dir }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real blackbox_exporter (Debian's package) on a free loopback port.
pub struct Blackbox {
    child: Child,
    pub url: String,
    pub port: u16,
}

impl Blackbox {
    pub const BINARY: &str = "/usr/bin/prometheus-blackbox-exporter";

    pub fn available() -> bool {
        required(
            Path::new(Self::BINARY).exists(),
            "blackbox_exporter",
            "apt-get install prometheus-blackbox-exporter",
        )
    }

    /// Starts it with `config` and waits until it answers `/-/healthy`.
    pub async fn start(config: &Path) -> Blackbox {
        let port = free_port();
        let child = Command::new(Self::BINARY)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start blackbox_exporter");
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        eventually("blackbox_exporter to start", Duration::from_secs(20), || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                client
                    .get(format!("{url}/-/healthy"))
                    .send()
                    .await
                    .ok()?
                    .status()
                    .is_success()
                    .then_some(())
            }
        })
        .await;
        Blackbox { child, url, port }
    }

    /// The stack's `blackbox-api` scrape job (observability/prometheus.yml): the api's health
    /// endpoints at `base` probed with `http_2xx` through this exporter.
    pub fn api_job(&self, base: &str) -> String {
        format!(
            "  - job_name: blackbox-api\n    metrics_path: /probe\n    params:\n      module: [http_2xx]\n    \
static_configs:\n      - targets: ['{base}/health/ready', '{base}/health/live']\n    relabel_configs:\n      \
- source_labels: [__address__]\n        target_label: __param_target\n      - source_labels: [__param_target]\n        \
target_label: instance\n      - target_label: __address__\n        replacement: 127.0.0.1:{}\n",
            self.port
        )
    }
}

impl Drop for Blackbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
