//! The local Docker engine for tests: images built from Debian's packages by
//! `scripts/local-images.sh` (cached per machine), and small compose-labelled projects of
//! containers on their own network, removed when the test ends.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const APP_IMAGE: &str = "recordstore:local";
pub const POSTGRES_IMAGE: &str = "recordstore-local/postgres:15";
pub const BASE_IMAGE: &str = "recordstore-local/debian:bookworm";
/// The local base plus iproute2 and iptables: the drill's network-fault helper, and idle
/// containers whose network state a test inspects.
pub const NETTOOLS_IMAGE: &str = "recordstore-local/nettools:bookworm";
/// Debian's Prometheus, Alertmanager, blackbox exporter, Pushgateway and postgres exporter,
/// and the fixtures standing in for Loki, Jaeger and the log shipper (docker/compose.local.yaml).
pub const STACK_IMAGE: &str = "recordstore-local/stack:bookworm";

/// Whether the Docker tests can run: the engine answers and the local images are built or
/// can be (debootstrap). When not, prints a SKIPPED line for the calling test; in CI, where
/// `.ci/run` sets everything up, fails instead.
pub fn engine() -> bool {
    static ENGINE: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = ENGINE.get_or_init(|| {
        let info = Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .output()
            .map_err(|e| format!("no Docker engine (docker: {e})"))?;
        if !info.status.success() {
            return Err(format!(
                "no Docker engine (docker info: {})",
                String::from_utf8_lossy(&info.stderr).trim()
            ));
        }
        let built = run(&["image", "inspect", POSTGRES_IMAGE, BASE_IMAGE, NETTOOLS_IMAGE]).status.success();
        let buildable = Command::new("debootstrap").arg("--version").output().is_ok();
        if built || buildable {
            Ok(())
        } else {
            Err("the local images are not built and debootstrap is missing (apt-get install debootstrap, or scripts/test)".into())
        }
    });
    match ready {
        Ok(()) => true,
        Err(why) => {
            assert!(!super::in_ci(), "Docker tests are required in CI: {why}");
            super::skipped(&format!("SKIPPED: Docker test: {why}"));
            false
        }
    }
}

pub fn run(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().expect("run docker")
}

/// Runs docker and returns its trimmed stdout; panics with its stderr on failure.
pub fn docker(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The `recordstore` binary of this checkout. `cargo test --workspace` has built it already
/// (the app's tests need it); it is rebuilt only when older than the app's sources, as after
/// `cargo test --test drill` alone.
pub fn recordstore_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| workspace_binary("recordstore", "app/src"))
        .clone()
}

/// The `recordstore-fixtures` binary (the stand-ins for Loki, Jaeger and the log shipper),
/// built when missing or older than its sources.
pub fn fixtures_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| workspace_binary("recordstore-fixtures", "fixtures/src"))
        .clone()
}

/// The debug binary `name` of the workspace package `name`, rebuilt when older than
/// `sources` or Cargo.lock.
fn workspace_binary(name: &str, sources: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::repo("target"));
    let binary = target.join("debug").join(name);
    let built = std::fs::metadata(&binary).and_then(|m| m.modified()).ok();
    let newest_source = newest(&super::repo(sources)).max(newest(&super::repo("Cargo.lock")));
    if built.is_some_and(|b| newest_source.is_some_and(|s| b >= s)) {
        return binary;
    }
    let mut cargo = Command::new(env!("CARGO"));
    // The same profile settings as the build running the tests (scripts/test sets them).
    if let Some(config) = std::env::var_os("RECORDCTL_TEST_CARGO_CONFIG") {
        cargo.arg("--config").arg(config);
    }
    let out = cargo
        .args(["build", "-q", "-p", name, "--bin", name])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "cargo build -p {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    binary
}

/// The newest modification time of a file or of anything under a directory.
fn newest(path: &std::path::Path) -> Option<std::time::SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.is_file() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(|e| newest(&e.ok()?.path()))
        .max()
}

/// Builds (once per machine for the bases, once per test process for the app) the images.
pub fn local_images() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let binary = recordstore_binary();
        let started = Instant::now();
        let out = Command::new(super::repo("scripts/local-images.sh"))
            .arg("--app")
            .arg(&binary)
            .output()
            .expect("run scripts/local-images.sh");
        assert!(
            out.status.success(),
            "scripts/local-images.sh failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("local images ready in {:.1} s", started.elapsed().as_secs_f64());
    });
}

/// The image docker/compose.local.yaml runs for the observability services: this machine's
/// Debian-packaged Prometheus tools and the recordstore-fixtures stand-ins (built once per
/// test process), after the other local images.
pub fn stack_image() -> &'static str {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        local_images();
        let out = Command::new(super::repo("scripts/local-images.sh"))
            .arg("--stack")
            .arg(fixtures_binary())
            .output()
            .expect("run scripts/local-images.sh");
        assert!(
            out.status.success(),
            "scripts/local-images.sh --stack failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    STACK_IMAGE
}

/// The drill's network helper for the tests: the nettools image plus this checkout's
/// `recordctl` (for delays on kernels without netem), built once per test binary.
pub fn network_helper_image() -> &'static str {
    const IMAGE: &str = "recordctl-local/nethelper:test";
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        local_images();
        let ctx = super::TempDir::new("recordctl-nethelper");
        let binary = ctx.join("recordctl");
        let out = Command::new("objcopy")
            .arg("--strip-debug")
            .arg(env!("CARGO_BIN_EXE_recordctl"))
            .arg(&binary)
            .output()
            .expect("objcopy (binutils)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::write(
            ctx.join("Dockerfile"),
            format!("FROM {NETTOOLS_IMAGE}\nCOPY recordctl /usr/local/bin/recordctl\n"),
        )
        .unwrap();
        docker(&["build", "-q", "-t", IMAGE, ctx.join("").to_str().unwrap()]);
    });
    IMAGE
}

/// Whether the Docker host's kernel has the netem queueing discipline (network-delay needs
/// it; some VM kernels are built without it).
pub fn kernel_has_netem() -> bool {
    run(&[
        "run",
        "--rm",
        "--cap-add",
        "NET_ADMIN",
        "--network",
        "none",
        NETTOOLS_IMAGE,
        "tc",
        "qdisc",
        "add",
        "dev",
        "lo",
        "root",
        "netem",
        "delay",
        "1ms",
    ])
    .status
    .success()
}

/// The drill's network helper containers of `project` still present, as `docker ps -a` lines.
pub fn network_helpers(project: &str) -> String {
    let project = format!("label=org.recordctl.project={project}");
    docker(&[
        "ps",
        "-a",
        "--filter",
        "label=org.recordctl.network-helper",
        "--filter",
        &project,
        "--format",
        "{{.Names}} {{.Status}}",
    ])
}

/// Runs `command` in `container`'s network namespace from a throwaway nettools container.
pub fn in_netns(container: &str, command: &[&str]) -> String {
    let mut args = vec!["run", "--rm", "--cap-add", "NET_ADMIN"];
    let netns = format!("container:{container}");
    args.extend(["--network", &netns, NETTOOLS_IMAGE]);
    args.extend(command);
    docker(&args)
}

/// A compose-labelled project of containers on its own network; everything it made is
/// removed on drop.
pub struct Project {
    pub name: String,
    pub network: String,
    _turn: super::Turn,
}

impl Project {
    pub fn new(prefix: &str) -> Project {
        let turn = super::shared();
        let name = format!("{prefix}{:08x}", rand::random::<u32>());
        let network = format!("{name}_default");
        docker(&[
            "network",
            "create",
            "--label",
            &format!("recordctl.test={name}"),
            &network,
        ]);
        Project {
            name,
            network,
            _turn: turn,
        }
    }

    pub fn container(&self, service: &str) -> String {
        format!("{}-{service}-1", self.name)
    }

    /// `docker run -d` one service of the project, labelled as Compose labels it.
    pub fn run(&self, service: &str, image: &str, options: &[&str], command: &[&str]) -> String {
        let name = self.container(service);
        let labels = [
            format!("com.docker.compose.project={}", self.name),
            format!("com.docker.compose.service={service}"),
            format!("org.recordstore.service={service}"),
            format!("recordctl.test={}", self.name),
        ];
        let mut args: Vec<String> = vec![
            "run".into(),
            "-d".into(),
            "--name".into(),
            name.clone(),
            "--network".into(),
            self.network.clone(),
            "--network-alias".into(),
            service.into(),
        ];
        for label in &labels {
            args.push("--label".into());
            args.push(label.clone());
        }
        args.extend(options.iter().map(|s| s.to_string()));
        args.push(image.into());
        args.extend(command.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&args);
        name
    }

    /// The host port (on 127.0.0.1) published for `port` of a service started with
    /// `-p 127.0.0.1:host:port` or `-p 127.0.0.1::port`.
    pub fn host_port(&self, service: &str, port: u16) -> u16 {
        let mapping = docker(&["port", &self.container(service), &format!("{port}/tcp")]);
        mapping
            .lines()
            .find_map(|l| l.rsplit(':').next()?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no published port for {service}:{port}: {mapping:?}"))
    }

    /// The store: `db` (PostgreSQL) and `api` (`recordstore serve`, with its worker) from the
    /// local images, both healthy. Returns the api's `127.0.0.1:port`.
    pub fn start_store(&self, api_env: &[&str]) -> String {
        self.start_db();
        self.start_app("api", 8000, api_env, &["serve"])
    }

    /// The store as compose runs it: `db`, `api` (`serve --no-worker`) and `worker` apart, all
    /// healthy; `worker_env` adds to the worker's environment. Returns the api's and the
    /// worker's `127.0.0.1:port`.
    pub fn start_split_store(&self, api_env: &[&str], worker_env: &[&str]) -> (String, String) {
        self.start_db();
        let api = self.start_app("api", 8000, api_env, &["serve", "--no-worker"]);
        let mut env = vec!["RECORDSTORE_LISTEN=0.0.0.0:8001", "LOG_LEVEL=warn"];
        env.extend(worker_env);
        let worker = self.start_app("worker", 8001, &env, &["worker"]);
        (api, worker)
    }

    fn start_db(&self) {
        let db_env = [
            "POSTGRES_USER=recordstore",
            "POSTGRES_PASSWORD=pw",
            "POSTGRES_DB=recordstore",
        ];
        let options: Vec<&str> = db_env.iter().flat_map(|e| ["-e", *e]).collect();
        self.run("db", POSTGRES_IMAGE, &options, &[]);
        self.wait_healthy("db", Duration::from_secs(60));
    }

    /// One service of the app image, waited for until healthy by the image's own
    /// HEALTHCHECK (`recordstore healthcheck`); returns its published `127.0.0.1:port`. The
    /// host port is fixed when the container is made: an ephemeral one would change when a
    /// drill starts the container again, and Prometheus would lose it.
    fn start_app(&self, service: &str, port: u16, env: &[&str], command: &[&str]) -> String {
        let publish = format!("127.0.0.1:{}:{port}", super::free_port());
        let mut options = vec![
            "-e",
            "DATABASE_URL=postgres://recordstore:pw@db:5432/recordstore",
            "-p",
            &publish,
        ];
        options.extend(env.iter().flat_map(|e| ["-e", *e]));
        self.run(service, APP_IMAGE, &options, command);
        self.wait_healthy(service, Duration::from_secs(60));
        format!("127.0.0.1:{}", self.host_port(service, port))
    }

    pub fn wait_healthy(&self, service: &str, limit: Duration) {
        let name = self.container(service);
        let deadline = Instant::now() + limit;
        loop {
            let state = docker(&["inspect", "-f", "{{.State.Status}} {{.State.Health.Status}}", &name]);
            if state == "running healthy" {
                return;
            }
            if state.starts_with("exited") || state.starts_with("dead") {
                let logs = run(&["logs", "--tail", "30", &name]);
                panic!(
                    "{name} stopped before it was healthy ({state}):\n{}{}",
                    String::from_utf8_lossy(&logs.stdout),
                    String::from_utf8_lossy(&logs.stderr)
                );
            }
            assert!(
                Instant::now() < deadline,
                "{name} not healthy within {limit:?}: {state}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let ids = run(&["ps", "-aq", "--filter", &format!("label=recordctl.test={}", self.name)]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = run(&["rm", "-f", "-v", id]);
        }
        let _ = run(&["network", "rm", &self.network]);
    }
}
