//! What the agent must remember across its own restarts: the processes it
//! started and the pod IPs it handed out, in `state.json`, written
//! atomically (temporary file, fsync, rename) on every change.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// One process the agent started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// The pod's uid.
    pub pod_uid: String,
    /// The container.
    pub container: String,
    /// Its pid, also its process group.
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat`: with the pid, names the process
    /// even after pids wrap.
    pub start_time: u64,
    /// When it started (RFC 3339), for the container status.
    pub started_at: String,
    /// The container's restart count when it started.
    pub restart_count: i32,
}

/// The file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Processes by `<pod uid>/<container>`.
    #[serde(default)]
    pub processes: BTreeMap<String, Process>,
    /// Pod IPs by pod uid.
    #[serde(default)]
    pub pod_ips: BTreeMap<String, Ipv4Addr>,
}

/// The key of a process in [`State::processes`].
pub fn key(pod_uid: &str, container: &str) -> String {
    format!("{pod_uid}/{container}")
}

/// The state file and its content in memory.
#[derive(Debug)]
pub struct File {
    path: PathBuf,
    state: Mutex<State>,
}

/// A state file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[error("state file {path}: {source}")]
pub struct Error {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

impl File {
    /// Loads `path`; a missing file is an empty state, an unreadable one
    /// is an error (better to stop than to lose track of processes).
    pub fn load(path: &Path) -> Result<File, Error> {
        let err = |source| Error {
            path: path.to_owned(),
            source,
        };
        let state = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(err(e)),
        };
        Ok(File {
            path: path.to_owned(),
            state: Mutex::new(state),
        })
    }

    /// A copy of the content.
    pub fn snapshot(&self) -> State {
        self.lock().clone()
    }

    /// Changes the content and writes it out if `f` changed it.
    pub fn update(&self, f: impl FnOnce(&mut State)) {
        let mut state = self.lock();
        let before = state.clone();
        f(&mut state);
        if *state != before
            && let Err(e) = write_atomically(&self.path, &state)
        {
            // The processes keep running; only a restart would lose track.
            tracing::error!(path = %self.path.display(), error = %e, "cannot write the agent state");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock left a consistent value (updates
        // are whole-value writes), so the poison carries no meaning.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn write_atomically(path: &Path, state: &State) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_writes_only_changes() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("state.json");
        let file = File::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(file.snapshot(), State::default());
        file.update(|_| {});
        assert!(!path.exists(), "no change, no write");
        file.update(|s| {
            s.pod_ips.insert("u".into(), Ipv4Addr::new(127, 244, 0, 2));
            s.processes.insert(
                key("u", "c"),
                Process {
                    pod_uid: "u".into(),
                    container: "c".into(),
                    pid: 42,
                    start_time: 7,
                    started_at: "2026-01-01T00:00:00Z".into(),
                    restart_count: 1,
                },
            );
        });
        let again = File::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.snapshot(), file.snapshot());
        std::fs::write(&path, b"{not json").unwrap_or_else(|e| panic!("{e}"));
        assert!(File::load(&path).is_err());
    }
}
