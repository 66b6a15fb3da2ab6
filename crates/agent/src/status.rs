//! The pod phase from its container states, as the kubelet's `getPhase`
//! computes it, and Go's duration text for back-off messages. Pure.

use std::time::Duration;

/// What the phase looks at in one container's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// No status yet.
    Unknown,
    /// Waiting; `restarting` when it has a last termination state (back-off).
    Waiting {
        /// Whether it ran before.
        restarting: bool,
    },
    /// Running.
    Running,
    /// Terminated with this exit code.
    Terminated {
        /// The exit code.
        exit_code: i32,
    },
}

/// `Pending`, `Running`, `Succeeded` or `Failed`. `terminal` is a pod
/// whose containers will not be restarted whatever its policy (it is being
/// deleted and they are stopped).
pub fn phase(restart_policy: &str, containers: &[Observed], terminal: bool) -> &'static str {
    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    for c in containers {
        match c {
            Observed::Unknown => unknown += 1,
            Observed::Running => running += 1,
            Observed::Terminated { exit_code } => {
                stopped += 1;
                if *exit_code == 0 {
                    succeeded += 1;
                }
            }
            Observed::Waiting { restarting: true } => stopped += 1,
            Observed::Waiting { restarting: false } => waiting += 1,
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 && unknown == 0 {
        return "Running";
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        if terminal {
            return if stopped == succeeded {
                "Succeeded"
            } else {
                "Failed"
            };
        }
        return match restart_policy {
            "Never" | "OnFailure" if stopped == succeeded => "Succeeded",
            "Never" => "Failed",
            // Always, or OnFailure with a failure: restarting.
            _ => "Running",
        };
    }
    "Pending"
}

/// A duration as Go's `time.Duration.String` writes whole seconds
/// (`10s`, `1m20s`, `5m0s`).
pub fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, m, sec) => format!("{h}h{m}m{sec}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Observed::*;

    #[test]
    fn kubelet_phases() {
        let t0 = Terminated { exit_code: 0 };
        let t1 = Terminated { exit_code: 1 };
        let back_off = Waiting { restarting: true };
        let creating = Waiting { restarting: false };
        for policy in ["Always", "OnFailure", "Never"] {
            assert_eq!(phase(policy, &[creating], false), "Pending");
            assert_eq!(phase(policy, &[Running, creating], false), "Pending");
            assert_eq!(phase(policy, &[Running, t0], false), "Running");
            assert_eq!(phase(policy, &[Unknown], false), "Pending");
            assert_eq!(phase(policy, &[t0, t1], true), "Failed");
            assert_eq!(phase(policy, &[t0], true), "Succeeded");
            assert_eq!(phase(policy, &[back_off], true), "Failed");
        }
        assert_eq!(phase("Always", &[t0], false), "Running");
        assert_eq!(phase("Always", &[back_off], false), "Running");
        assert_eq!(phase("OnFailure", &[t0, t0], false), "Succeeded");
        assert_eq!(phase("OnFailure", &[t0, back_off], false), "Running");
        assert_eq!(phase("Never", &[t0, t1], false), "Failed");
        assert_eq!(phase("Never", &[t0], false), "Succeeded");
    }

    #[test]
    fn go_durations() {
        let s = |n| go_duration(Duration::from_secs(n));
        assert_eq!(s(10), "10s");
        assert_eq!(s(80), "1m20s");
        assert_eq!(s(300), "5m0s");
        assert_eq!(s(3600), "1h0m0s");
    }
}
