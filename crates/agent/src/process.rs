//! Container processes: each in its own process group, stdout and stderr
//! going straight to the log file (so a process outlives the agent and its
//! output still lands), signalled as a group, and recognised after an agent
//! restart by pid and `/proc` start time.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// The exit of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Exited with a code, or killed by a signal (code 128 + signal, as a
    /// container runtime reports it).
    Code(i32),
    /// A process the agent adopted: not its child, so its status is lost.
    Unknown,
}

impl Exit {
    /// From a child's wait status.
    pub fn from_status(status: std::process::ExitStatus) -> Exit {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(sig)) => Exit::Code(128 + sig),
            (None, None) => Exit::Unknown,
        }
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct Spec<'a> {
    /// argv; the first is looked up in the environment's `PATH`.
    pub argv: &'a [String],
    /// The whole environment.
    pub env: &'a std::collections::BTreeMap<String, String>,
    /// The working directory, if any.
    pub working_dir: Option<&'a str>,
    /// Where stdout and stderr go (appended).
    pub log: &'a Path,
}

/// Starts a process in a new process group. The returned child is not
/// killed on drop: a crashing agent leaves it for the next one to adopt.
pub fn start(spec: &Spec<'_>) -> std::io::Result<tokio::process::Child> {
    let Some((program, args)) = spec.argv.split_first() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "no command",
        ));
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(spec.log)?;
    let program = resolve(program, spec.env.get("PATH").map(String::as_str))?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(spec.env)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(false);
    if let Some(dir) = spec.working_dir.filter(|d| !d.is_empty()) {
        if !Path::new(dir).is_dir() {
            // runc's words, which `kubectl describe` users know.
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "chdir to cwd (\"{dir}\") set in config.json failed: no such file or directory"
                ),
            ));
        }
        cmd.current_dir(dir);
    }
    // Its own group, so a signal reaches everything it forks
    // (`sh -c` children included) and no terminal signal reaches it.
    std::os::unix::process::CommandExt::process_group(cmd.as_std_mut(), 0);
    cmd.spawn()
}

/// Finds `program` in `path` as `execvp` would, so a missing command is
/// reported in the container runtime's words.
fn resolve(program: &str, path: Option<&str>) -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = Path::new(program);
        return if executable(p) {
            Ok(p.to_owned())
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("exec: \"{program}\": stat {program}: no such file or directory"),
            ))
        };
    }
    for dir in path.unwrap_or("").split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(program);
        if executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("exec: \"{program}\": executable file not found in $PATH"),
    ))
}

/// Sends `signal` to the process group `pgid`; a group already gone is fine.
pub fn signal_group(pgid: i32, signal: Signal) {
    if pgid <= 1 {
        // Never pid 0/1 or -1: that would signal the agent's own group or everything.
        return;
    }
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pgid, %signal, error = %e, "cannot signal a process group"),
    }
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot),
/// or `None` if the process is gone or a zombie.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// Parses a `/proc/<pid>/stat` line: the command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`.
fn parse_stat(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // Field 3 is the state.
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // Fields 4..=21 come next; field 22 is the 19th after the state.
    fields.nth(18)?.parse().ok()
}

/// Whether a process of the group `pgid` is still running: the group
/// leader or any member (a shell's children outlive it).
pub fn group_alive(pgid: i32) -> bool {
    pgid > 1 && killpg(Pid::from_raw(pgid), None::<Signal>).is_ok() && {
        // killpg(0) also succeeds for a zombie leader with no members left;
        // /proc tells them apart.
        start_time(pgid).is_some() || members(pgid)
    }
}

/// Whether any live process other than a zombie belongs to group `pgid`.
fn members(pgid: i32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .any(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = &s[s.rfind(')')? + 1..];
                    let mut f = rest.split_whitespace();
                    let state = f.next()?;
                    // Fields 4 (ppid) and 5 (pgrp).
                    let pgrp: i32 = f.nth(1)?.parse().ok()?;
                    Some(pgrp == pgid && state != "Z")
                })
                .unwrap_or(false)
        })
}

/// Polls until the group `pgid` is gone (for an adopted process, which the
/// agent cannot wait on).
pub async fn wait_gone(pgid: i32) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !group_alive(pgid) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_names() {
        let line = "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        assert_eq!(parse_stat(line), Some(987654));
        let zombie = "1234 (x) Z 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 0 0";
        assert_eq!(parse_stat(zombie), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_start_time_is_readable() {
        let me = std::process::id() as i32;
        assert!(start_time(me).is_some());
        assert_eq!(start_time(me), start_time(me));
    }

    #[test]
    fn missing_commands_read_like_the_runtime() {
        let err = resolve("no-such-command-xyz", Some("/usr/bin:/bin"))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("exec: \"no-such-command-xyz\": executable file not found in $PATH")
        );
        assert!(resolve("sh", Some("/usr/bin:/bin")).is_ok());
        assert!(resolve("/nonexistent/x", None).is_err());
    }

    #[tokio::test]
    async fn a_group_is_signalled_whole() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("c.log");
        let argv: Vec<String> = ["sh", "-c", "sleep 100 & sleep 100 & wait"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let env = [("PATH".to_string(), crate::config::DEFAULT_PATH.to_string())]
            .into_iter()
            .collect();
        let mut child = start(&Spec {
            argv: &argv,
            env: &env,
            working_dir: None,
            log: &log,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let pid = child
            .id()
            .map(|p| p as i32)
            .unwrap_or_else(|| panic!("a pid"));
        assert!(group_alive(pid));
        signal_group(pid, Signal::SIGKILL);
        let status = child.wait().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Exit::from_status(status), Exit::Code(137));
        tokio::time::timeout(Duration::from_secs(10), wait_gone(pid))
            .await
            .unwrap_or_else(|_| panic!("the sleeps died with the group"));
    }
}
