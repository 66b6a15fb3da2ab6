//! Probe results as the kubelet's prober worker keeps them
//! (`pkg/kubelet/prober/worker.go`): a result changes only after
//! `successThreshold` consecutive successes or `failureThreshold`
//! consecutive failures. Pure; the probing itself is in `prober`.

use std::time::Duration;

use k8s_openapi::api::core::v1::Probe;

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `readinessProbe`: whether the container receives traffic.
    Readiness,
    /// `livenessProbe`: failing restarts the container.
    Liveness,
    /// `startupProbe`: holds the other two until it passes; failing restarts.
    Startup,
}

impl Kind {
    /// The word the kubelet uses in Events (`Readiness probe failed: ...`).
    pub fn title(self) -> &'static str {
        match self {
            Kind::Readiness => "Readiness",
            Kind::Liveness => "Liveness",
            Kind::Startup => "Startup",
        }
    }
}

/// The timing fields of a probe with the Kubernetes defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// `initialDelaySeconds` (0).
    pub initial_delay: Duration,
    /// `periodSeconds` (10, at least 1).
    pub period: Duration,
    /// `timeoutSeconds` (1, at least 1).
    pub timeout: Duration,
    /// `successThreshold` (1; liveness and startup must use 1).
    pub success_threshold: u32,
    /// `failureThreshold` (3).
    pub failure_threshold: u32,
}

impl Timing {
    /// The timing of `probe`.
    pub fn of(probe: &Probe) -> Timing {
        let secs = |v: Option<i32>, default: i32, min: i32| {
            Duration::from_secs(v.unwrap_or(default).max(min) as u64)
        };
        let count = |v: Option<i32>, default: i32| v.unwrap_or(default).max(1) as u32;
        Timing {
            initial_delay: secs(probe.initial_delay_seconds, 0, 0),
            period: secs(probe.period_seconds, 10, 1),
            timeout: secs(probe.timeout_seconds, 1, 1),
            success_threshold: count(probe.success_threshold, 1),
            failure_threshold: count(probe.failure_threshold, 3),
        }
    }
}

/// The result of one probe of one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Passing.
    Success,
    /// Failing.
    Failure,
}

/// The result a probe holds between its thresholds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    kind: Kind,
    success_threshold: u32,
    failure_threshold: u32,
    result: Option<Verdict>,
    last: Option<Verdict>,
    run: u32,
}

impl Tracker {
    /// A tracker at container start, with the kubelet's initial results:
    /// readiness failing (not ready), liveness passing, startup unknown (so
    /// reaching its failure threshold is a change that restarts).
    pub fn new(kind: Kind, timing: &Timing) -> Tracker {
        Tracker {
            kind,
            success_threshold: match kind {
                Kind::Readiness => timing.success_threshold,
                // The API requires 1 for these two.
                Kind::Liveness | Kind::Startup => 1,
            },
            failure_threshold: timing.failure_threshold,
            result: match kind {
                Kind::Liveness => Some(Verdict::Success),
                Kind::Readiness => Some(Verdict::Failure),
                Kind::Startup => None,
            },
            last: None,
            run: 0,
        }
    }

    /// The result now, `None` while unknown.
    pub fn result(&self) -> Option<Verdict> {
        self.result
    }

    /// Whether the result is a success.
    pub fn passing(&self) -> bool {
        self.result == Some(Verdict::Success)
    }

    /// Which probe this tracks.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Records one probe; returns the new result when it changed.
    pub fn record(&mut self, verdict: Verdict) -> Option<Verdict> {
        if self.last == Some(verdict) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(verdict);
            self.run = 1;
        }
        let threshold = match verdict {
            Verdict::Success => self.success_threshold,
            Verdict::Failure => self.failure_threshold,
        };
        if self.run < threshold || self.result == Some(verdict) {
            return None;
        }
        self.result = Some(verdict);
        if verdict == Verdict::Failure && self.kind != Kind::Readiness {
            // The container is about to be restarted; the worker starts
            // counting afresh (kubelet: `resultRun = 0` after a kill).
            self.run = 0;
            self.last = None;
        }
        Some(verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict::{Failure, Success};

    fn timing(success: u32, failure: u32) -> Timing {
        Timing {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    #[test]
    fn defaults_are_kubernetes_defaults() {
        let t = Timing::of(&Probe::default());
        assert_eq!(t, {
            let mut d = timing(1, 3);
            d.period = Duration::from_secs(10);
            d
        });
        let t = Timing::of(&Probe {
            period_seconds: Some(0),
            timeout_seconds: Some(-1),
            failure_threshold: Some(0),
            ..Probe::default()
        });
        assert_eq!(t.period, Duration::from_secs(1));
        assert_eq!(t.timeout, Duration::from_secs(1));
        assert_eq!(t.failure_threshold, 1);
    }

    #[test]
    fn readiness_needs_consecutive_successes_and_failures() {
        let mut r = Tracker::new(Kind::Readiness, &timing(2, 3));
        assert_eq!(
            r.result(),
            Some(Failure),
            "not ready before the first probe"
        );
        assert_eq!(r.record(Success), None);
        assert_eq!(r.record(Failure), None, "the run is broken");
        assert_eq!(r.record(Success), None);
        assert_eq!(r.record(Success), Some(Success));
        assert_eq!(r.record(Success), None, "no change, no report");
        assert_eq!(r.record(Failure), None);
        assert_eq!(r.record(Failure), None);
        assert_eq!(r.record(Failure), Some(Failure));
        assert_eq!(r.record(Failure), None);
        assert_eq!(r.record(Success), None);
        assert_eq!(r.record(Success), Some(Success));
    }

    #[test]
    fn liveness_starts_alive_and_fails_after_the_threshold() {
        let mut l = Tracker::new(Kind::Liveness, &timing(5, 2));
        assert_eq!(l.result(), Some(Success));
        assert_eq!(l.record(Success), None);
        assert_eq!(l.record(Failure), None);
        assert_eq!(l.record(Failure), Some(Failure));
        // After the kill the count starts over.
        assert_eq!(l.record(Failure), None);
        assert_eq!(l.record(Success), Some(Success), "success threshold is 1");
    }

    #[test]
    fn startup_passes_on_first_success() {
        let mut s = Tracker::new(Kind::Startup, &timing(1, 30));
        assert_eq!(s.result(), None);
        for _ in 0..29 {
            assert_eq!(s.record(Failure), None);
        }
        assert_eq!(s.record(Success), Some(Success));
        let mut s = Tracker::new(Kind::Startup, &timing(1, 2));
        assert_eq!(s.record(Failure), None);
        assert_eq!(
            s.record(Failure),
            Some(Failure),
            "unknown → failed restarts"
        );
    }
}
