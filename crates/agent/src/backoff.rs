//! The kubelet's crash back-off for restarting containers
//! (`pkg/kubelet/kuberuntime` with `flowcontrol.Backoff`): the first restart
//! is immediate, then 10 s, doubling up to 300 s; a container that ran for
//! 10 minutes before it exited starts over.

use std::time::Duration;

/// The first non-zero delay.
pub const INITIAL: Duration = Duration::from_secs(10);
/// The longest delay.
pub const MAX: Duration = Duration::from_secs(300);
/// A container that ran at least this long resets its back-off.
pub const RESET_AFTER: Duration = Duration::from_secs(600);

/// The back-off of one container; pure, the caller owns the clock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backoff {
    /// The delay the last exit got, `None` before the first restart.
    last: Option<Duration>,
}

impl Backoff {
    /// The container exited after running `ran_for`: how long to wait
    /// before starting it again.
    pub fn next(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= RESET_AFTER {
            self.last = None;
        }
        let delay = match self.last {
            None => Duration::ZERO,
            Some(d) if d.is_zero() => INITIAL,
            Some(d) => (d * 2).min(MAX),
        };
        self.last = Some(delay);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn immediate_then_doubling_to_the_cap() {
        let mut b = Backoff::default();
        let delays: Vec<u64> = (0..9)
            .map(|_| b.next(Duration::from_secs(1)).as_secs())
            .collect();
        assert_eq!(delays, [0, 10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn ten_minutes_of_running_resets() {
        let mut b = Backoff::default();
        for _ in 0..5 {
            b.next(Duration::from_secs(1));
        }
        assert_eq!(b.next(Duration::from_secs(599)), Duration::from_secs(160));
        assert_eq!(b.next(RESET_AFTER), Duration::ZERO);
        assert_eq!(b.next(Duration::ZERO), INITIAL);
    }

    /// The delays drive real timers: with paused time a restart loop sees
    /// exactly the kubelet's schedule.
    #[tokio::test(start_paused = true)]
    async fn restart_schedule_in_paused_time() {
        let start = tokio::time::Instant::now();
        let mut b = Backoff::default();
        let mut restarts = Vec::new();
        for _ in 0..5 {
            // Each instance runs 1 s, then crashes.
            tokio::time::sleep(Duration::from_secs(1)).await;
            tokio::time::sleep(b.next(Duration::from_secs(1))).await;
            restarts.push(start.elapsed().as_secs());
        }
        // Crash at 1 → restart at 1; at 2 → 12; at 13 → 33; at 34 → 74; at 75 → 155.
        assert_eq!(restarts, [1, 12, 33, 74, 155]);
    }
}
