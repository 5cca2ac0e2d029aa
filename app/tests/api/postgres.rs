//! A private PostgreSQL server for tests: `initdb` into a temp dir, started on a free
//! loopback port as a child process that dies with the test binary. When the server
//! binaries are missing, tests skip with a loud line — except under `CI=true`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

pub struct PgServer {
    port: u16,
    data_dir: PathBuf,
    bin: PathBuf,
    user: Option<(u32, u32)>,
    keeper: Mutex<Sender<KeeperCommand>>,
}

enum KeeperCommand {
    Start(Sender<Result<(), String>>),
    Stop(Sender<()>),
}

/// The shared server for this test binary, or `None` (after saying why) when PostgreSQL
/// is not installed and we are not in CI.
pub fn shared() -> Option<&'static PgServer> {
    static SHARED: OnceLock<Result<PgServer, String>> = OnceLock::new();
    match SHARED.get_or_init(PgServer::start_new) {
        Ok(server) => Some(server),
        Err(why) => skip_or_fail(why),
    }
}

pub fn skip_or_fail(why: &str) -> Option<&'static PgServer> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("PostgreSQL is required in CI but unavailable: {why}");
    }
    crate::helpers::skipped(&format!("SKIPPED: PostgreSQL tests: {why}"));
    None
}

fn find_bin_dir() -> Result<PathBuf, String> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| "no /usr/lib/postgresql (apt-get install postgresql)".to_string())?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("postgres").exists() && p.join("initdb").exists())
        .collect();
    dirs.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str()?.parse::<u32>().ok())
    });
    dirs.pop()
        .ok_or_else(|| "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin".to_string())
}

/// Root cannot run PostgreSQL: run as the `postgres` user the Debian package creates.
fn run_as() -> Result<Option<(u32, u32)>, String> {
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = std::ffi::CString::new("postgres").unwrap();
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err("running as root and there is no 'postgres' user to run the server as".into());
    }
    Ok(Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) }))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PgServer {
    pub fn start_new() -> Result<PgServer, String> {
        let bin = find_bin_dir()?;
        let user = run_as()?;
        remove_stale_dirs();
        let root = std::env::temp_dir().join(format!("recordstore-test-pg-{}-{}", std::process::id(), free_port()));
        let data_dir = root.join("data");
        std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&root, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args(["-D"])
            .arg(&data_dir)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"]);
        initdb.stdout(Stdio::null()).stderr(Stdio::piped());
        if let Some((uid, gid)) = user {
            initdb.uid(uid).gid(gid);
        }
        let out = initdb.output().map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!("initdb failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let port = free_port();
        let keeper = spawn_keeper(bin.clone(), data_dir.clone(), root.clone(), port, user);
        let server = PgServer {
            port,
            data_dir,
            bin,
            user,
            keeper: Mutex::new(keeper),
        };
        server.start()?;
        Ok(server)
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn start(&self) -> Result<(), String> {
        let (tx, rx) = channel();
        self.keeper
            .lock()
            .unwrap()
            .send(KeeperCommand::Start(tx))
            .map_err(|e| e.to_string())?;
        rx.recv().map_err(|e| e.to_string())??;
        self.wait_ready(Duration::from_secs(30))
    }

    /// Fast shutdown: clients are disconnected, the port stops answering.
    pub fn stop(&self) {
        let (tx, rx) = channel();
        if self.keeper.lock().unwrap().send(KeeperCommand::Stop(tx)).is_ok() {
            let _ = rx.recv();
        }
    }

    fn wait_ready(&self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            let ok = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "postgres on port {} not ready after {limit:?} (data {})",
                    self.port,
                    self.data_dir.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A fresh, empty database on this server; returns its URL.
    pub async fn create_database(&self) -> String {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let name = format!("test_{:016x}", rand::random::<u64>());
        let mut conn = sqlx::AnyConnection::connect(&self.url("postgres"))
            .await
            .expect("connect to test postgres");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create database");
        let _ = self.user;
        self.url(&name)
    }
}

/// Owns the server process from a thread that lives as long as the test binary (or this
/// server): the child gets SIGQUIT when that thread ends, so no server outlives the tests.
fn spawn_keeper(
    bin: PathBuf,
    data: PathBuf,
    root: PathBuf,
    port: u16,
    user: Option<(u32, u32)>,
) -> Sender<KeeperCommand> {
    let (tx, rx) = channel::<KeeperCommand>();
    std::thread::spawn(move || {
        let mut child: Option<Child> = None;
        while let Ok(command) = rx.recv() {
            match command {
                KeeperCommand::Start(reply) => {
                    if child.is_none() {
                        let spawned = spawn_postgres(&bin, &data, &root, port, user);
                        let _ = reply.send(spawned.as_ref().map(|_| ()).map_err(Clone::clone));
                        child = spawned.ok();
                    } else {
                        let _ = reply.send(Ok(()));
                    }
                }
                KeeperCommand::Stop(reply) => {
                    if let Some(mut c) = child.take() {
                        unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
                        let _ = c.wait();
                    }
                    let _ = reply.send(());
                }
            }
        }
        if let Some(mut c) = child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGQUIT) };
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&root);
    });
    tx
}

fn spawn_postgres(bin: &Path, data: &Path, root: &Path, port: u16, user: Option<(u32, u32)>) -> Result<Child, String> {
    let mut cmd = Command::new(bin.join("postgres"));
    cmd.arg("-D").arg(data).args(["-p", &port.to_string(), "-k"]).arg(root);
    for setting in [
        "listen_addresses=127.0.0.1",
        "fsync=off",
        "synchronous_commit=off",
        "full_page_writes=off",
        "max_connections=300",
        "log_min_messages=fatal",
    ] {
        cmd.args(["-c", setting]);
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT);
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| format!("cannot start postgres: {e}"))
}

/// Removes data dirs left by earlier test binaries (their keeper could not clean up at exit).
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(rest) = name.strip_prefix("recordstore-test-pg-") else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
