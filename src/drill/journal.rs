//! The drill journal (`.recordctl/drill-journal.json`): before each change, an entry saying
//! what will be changed and how to undo it; after the undo, the entry is marked undone. After
//! a SIGKILL, `recordctl drill --restore` undoes whatever the journal says is still changed.
//! Written to a temp file and renamed, so a crash never leaves half a journal. The journal is
//! held under an exclusive lock (`<journal>.lock`, with the owner's pid and drill) for as long
//! as a drill or a restore uses it: a second drill, or a `--restore` while the owner lives, is
//! refused and told who holds it. The lock dies with its process, so a SIGKILLed drill leaves
//! its journal free for `--restore`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const DEFAULT_PATH: &str = ".recordctl/drill-journal.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Journal {
    pub drill: String,
    pub project: String,
    pub pid: u32,
    pub started_at_ms: i64,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub id: usize,
    pub at_ms: i64,
    /// stop, pause, kill, restart, disconnect, payment-fault, network-delay, network-loss,
    /// network-bandwidth.
    pub action: String,
    pub service: String,
    /// The container, by id and name (empty for payment-fault).
    pub container_id: String,
    pub container_name: String,
    /// What undoes it.
    pub undo: Undo,
    pub state: EntryState,
    /// What went wrong undoing it, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Undo {
    /// Start the container (after stop or kill).
    Start,
    /// Unpause the container.
    Unpause,
    /// Make sure the container is running (after restart).
    EnsureRunning,
    /// Connect the container to each network again with its aliases.
    Reconnect { networks: Vec<(String, Vec<String>)> },
    /// DELETE `url` with the admin token.
    ClearPaymentFault { url: String, token_env: String },
    /// Remove every network fault from the container's network namespace, with a helper
    /// container of this image.
    ClearNetwork { image: String },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum EntryState {
    /// Written before the action: it may or may not have happened.
    Applying,
    Applied,
    Undone,
}

impl Entry {
    pub fn needs_undo(&self) -> bool {
        self.state != EntryState::Undone
    }
}

pub struct JournalFile {
    path: PathBuf,
    pub journal: Journal,
    _lock: JournalLock,
}

/// Why a journal could not be taken, read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a drill journal: {source}", path.display())]
    NotAJournal { path: PathBuf, source: serde_json::Error },
    /// Another drill (or restore) holds the journal.
    #[error("{} is in use by {holder}: wait for it to finish (it undoes its own changes), or stop it with Ctrl-C", path.display())]
    InUse { path: PathBuf, holder: String },
    /// A killed drill left changes that must be restored first.
    #[error("{} holds changes of drill {drill:?} (pid {pid}) that were never undone; run `recordctl drill --restore` first", path.display())]
    NotUndone { path: PathBuf, drill: String, pid: u32 },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> JournalError {
    let path = path.to_path_buf();
    move |source| JournalError::Io { what, path, source }
}

/// The exclusive hold on a journal; released when dropped or when its process dies.
pub struct JournalLock {
    _file: std::fs::File,
}

impl JournalLock {
    /// Takes the lock of the journal at `path` for `owner` (what the lock file will say).
    pub fn acquire(path: &Path, owner: &str) -> Result<JournalLock, JournalError> {
        use std::io::Write;
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        }
        let lock_path = path.with_extension("json.lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io("open", &lock_path))?;
        match file.try_lock() {
            Ok(()) => {
                let _ = file.set_len(0);
                let _ = writeln!(file, "{owner} (pid {})", std::process::id());
                Ok(JournalLock { _file: file })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&lock_path).unwrap_or_default();
                Err(JournalError::InUse {
                    path: path.to_path_buf(),
                    holder: holder.trim().to_string(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => Err(io("lock", &lock_path)(e)),
        }
    }
}

impl JournalFile {
    /// Starts a new journal for a drill. Refuses when the file still has changes not undone
    /// (a drill was killed): those must be restored first.
    pub fn create(path: &Path, drill: &str, project: &str) -> Result<JournalFile, JournalError> {
        let lock = JournalLock::acquire(path, &format!("drill {drill:?}"))?;
        if let Some(old) = read(path)?
            && old.entries.iter().any(Entry::needs_undo)
        {
            return Err(JournalError::NotUndone {
                path: path.to_path_buf(),
                drill: old.drill,
                pid: old.pid,
            });
        }
        let file = JournalFile {
            path: path.to_path_buf(),
            _lock: lock,
            journal: Journal {
                drill: drill.to_string(),
                project: project.to_string(),
                pid: std::process::id(),
                started_at_ms: now_ms(),
                entries: Vec::new(),
            },
        };
        file.save()?;
        Ok(file)
    }

    /// The journal at `path` for a restore, locked; `None` when there is none.
    pub fn open(path: &Path) -> Result<Option<JournalFile>, JournalError> {
        if read(path)?.is_none() {
            return Ok(None);
        }
        let lock = JournalLock::acquire(path, "drill --restore")?;
        Ok(read(path)?.map(|journal| JournalFile {
            path: path.to_path_buf(),
            journal,
            _lock: lock,
        }))
    }

    /// Records an action about to happen; returns its entry id.
    pub fn before(&mut self, mut entry: Entry) -> Result<usize, JournalError> {
        entry.id = self.journal.entries.len();
        entry.at_ms = now_ms();
        entry.state = EntryState::Applying;
        let id = entry.id;
        self.journal.entries.push(entry);
        self.save()?;
        Ok(id)
    }

    pub fn mark(&mut self, id: usize, state: EntryState, undo_error: Option<String>) -> Result<(), JournalError> {
        if let Some(entry) = self.journal.entries.get_mut(id) {
            entry.state = state;
            entry.undo_error = undo_error;
        }
        self.save()
    }

    pub fn pending(&self) -> Vec<Entry> {
        self.journal
            .entries
            .iter()
            .filter(|e| e.needs_undo())
            .cloned()
            .collect()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn save(&self) -> Result<(), JournalError> {
        if let Some(dir) = self.path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        }
        let tmp = self.path.with_extension(format!("json.{}.tmp", std::process::id()));
        let text = serde_json::to_string_pretty(&self.journal).expect("journal serializes");
        std::fs::write(&tmp, text + "\n").map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, &self.path).map_err(io("write", &self.path))
    }
}

fn read(path: &Path) -> Result<Option<Journal>, JournalError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| JournalError::NotAJournal {
                path: path.to_path_buf(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", path)(e)),
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            id: 0,
            at_ms: 0,
            action: "stop".into(),
            service: "db".into(),
            container_id: "abc".into(),
            container_name: "p-db-1".into(),
            undo: Undo::Reconnect {
                networks: vec![("net".into(), vec!["db".into()])],
            },
            state: EntryState::Applied,
            undo_error: None,
        }
    }

    #[test]
    fn a_journal_with_changes_not_undone_blocks_the_next_drill_until_restored() {
        let dir = std::env::temp_dir().join(format!("journal-{:x}", rand::random::<u64>()));
        let path = dir.join("j.json");
        let mut journal = JournalFile::create(&path, "db-outage", "p").unwrap();
        let id = journal.before(entry()).unwrap();
        // While the drill holds it, neither a restore nor another drill may use it.
        let pid = std::process::id();
        let held = format!("in use by drill \"db-outage\" (pid {pid})");
        assert!(matches!(JournalFile::open(&path), Err(JournalError::InUse { .. })));
        let in_use = JournalFile::create(&path, "other", "p").err().unwrap();
        assert!(in_use.to_string().contains(&held), "{in_use}");
        drop(journal); // as when the drill dies: its lock goes with it
        let reread = JournalFile::open(&path).unwrap().unwrap();
        assert_eq!(reread.journal.entries[0].state, EntryState::Applying);
        assert_eq!(reread.pending().len(), 1);
        drop(reread);
        let err = JournalFile::create(&path, "other", "p").err().unwrap();
        assert!(matches!(&err, JournalError::NotUndone { pid, .. } if *pid == std::process::id()));
        assert!(err.to_string().contains("--restore"), "{err}");
        let mut restoring = JournalFile::open(&path).unwrap().unwrap();
        restoring.mark(id, EntryState::Undone, None).unwrap();
        drop(restoring);
        drop(JournalFile::create(&path, "other", "p").unwrap());
        std::fs::write(&path, "{ nope").unwrap();
        let err = JournalFile::open(&path).err().unwrap();
        assert!(matches!(err, JournalError::NotAJournal { .. }), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
