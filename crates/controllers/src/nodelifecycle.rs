//! The node lifecycle controller's decisions, as pure functions: whether a
//! node's agent has stopped heart-beating ([`decide`]), and what a pod on a
//! node that is no longer ready reports ([`pod_not_ready`]).
//!
//! As Kubernetes' node lifecycle controller (`monitorNodeHealth`,
//! `tryUpdateNodeHealth`, `MarkPodsNotReady`): when the `Ready` condition's
//! `lastHeartbeatTime` is older than the grace period (40 s by default), the
//! node's `Ready` and pressure conditions turn `Unknown` (reason
//! `NodeStatusUnknown`, "Kubelet stopped posting node status."); a node
//! that never reported gets `NodeStatusNeverUpdated` once the grace period
//! has passed since it was created. When a node goes from ready to not
//! ready, the `Ready` condition of each of its pods turns `False`, so their
//! endpoints stop receiving traffic. Unlike Kubernetes, the age is judged
//! by the heartbeat's own time rather than when the controller saw it
//! change: agent and controller share a clock (one host, or NTP), and a
//! restarted controller then notices a dead agent at once.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Node, NodeCondition, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Kubernetes' `--node-monitor-grace-period` default.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(40);

/// Conditions set to `Unknown` with `Ready` (Kubernetes
/// `nodeConditionTypes`), when the node reports them.
const PRESSURE_CONDITIONS: &[&str] = &["MemoryPressure", "DiskPressure", "PIDPressure"];

/// What to do about one node.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The heartbeat is recent enough; look again after this long.
    Fresh {
        /// When the grace period would run out.
        recheck_after: Duration,
    },
    /// The agent is silent: write these conditions (the node's full list).
    MarkUnknown {
        /// The node's conditions with `Ready` (and pressure) `Unknown`.
        conditions: Vec<NodeCondition>,
    },
    /// Already `Unknown`: nothing to write until the agent reports again.
    AlreadyUnknown,
}

/// Whether the node's `Ready` condition is `True`.
pub fn is_ready(node: &Node) -> bool {
    ready_condition(node).is_some_and(|c| c.status == "True")
}

fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// See the module docs.
pub fn decide(node: &Node, now: Timestamp, grace: Duration) -> Decision {
    let grace = SignedDuration::try_from(grace).unwrap_or(SignedDuration::MAX);
    let created = node.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let ready = ready_condition(node);
    if ready.is_some_and(|c| c.status == "Unknown") {
        return Decision::AlreadyUnknown;
    }
    let last = match ready {
        Some(c) => c
            .last_heartbeat_time
            .as_ref()
            .or(c.last_transition_time.as_ref())
            .map(|t| t.0)
            .or(created),
        None => created,
    };
    let Some(last) = last else {
        // Nothing to judge by (only hand-made objects lack every time).
        return Decision::Fresh {
            recheck_after: grace.unsigned_abs(),
        };
    };
    let expires = last.checked_add(grace).unwrap_or(Timestamp::MAX);
    if expires >= now {
        let left = expires.duration_since(now).unsigned_abs();
        // Strictly older than the grace: one moment past the expiry.
        return Decision::Fresh {
            recheck_after: left + Duration::from_millis(10),
        };
    }
    let (reason, message) = if ready.is_some() {
        ("NodeStatusUnknown", "Kubelet stopped posting node status.")
    } else {
        (
            "NodeStatusNeverUpdated",
            "Kubelet never posted node status.",
        )
    };
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    if ready.is_none() {
        conditions.push(NodeCondition {
            type_: "Ready".to_owned(),
            ..Default::default()
        });
    }
    for c in conditions.iter_mut() {
        if (c.type_ == "Ready" || PRESSURE_CONDITIONS.contains(&c.type_.as_str()))
            && c.status != "Unknown"
        {
            c.status = "Unknown".to_owned();
            c.reason = Some(reason.to_owned());
            c.message = Some(message.to_owned());
            c.last_transition_time = Some(Time(now));
        }
    }
    Decision::MarkUnknown { conditions }
}

/// The status of a pod on a node that stopped being ready, or `None` when
/// it has no `Ready` condition or it is already `False` (Kubernetes
/// `MarkPodsNotReady`, which only flips an existing condition).
pub fn pod_not_ready(status: Option<&PodStatus>, now: Timestamp) -> Option<PodStatus> {
    let mut status = status?.clone();
    let ready: &mut PodCondition = status
        .conditions
        .as_mut()?
        .iter_mut()
        .find(|c| c.type_ == "Ready")?;
    if ready.status == "False" {
        return None;
    }
    ready.status = "False".to_owned();
    ready.last_transition_time = Some(Time(now));
    Some(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("a valid timestamp literal")
    }

    fn node(conditions: Option<Vec<NodeCondition>>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                creation_timestamp: Some(Time(ts("2026-01-01T00:00:00Z"))),
                ..Default::default()
            },
            spec: None,
            status: Some(NodeStatus {
                conditions,
                ..Default::default()
            }),
        }
    }

    fn cond(type_: &str, status: &str, heartbeat: &str) -> NodeCondition {
        NodeCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some("KubeletReady".into()),
            last_heartbeat_time: Some(Time(ts(heartbeat))),
            last_transition_time: Some(Time(ts("2026-01-01T00:00:00Z"))),
            message: None,
        }
    }

    #[test]
    fn a_fresh_heartbeat_is_rechecked_when_the_grace_ends() {
        let n = node(Some(vec![cond("Ready", "True", "2026-01-01T00:01:00Z")]));
        assert!(is_ready(&n));
        let d = decide(&n, ts("2026-01-01T00:01:30Z"), DEFAULT_GRACE);
        assert_eq!(
            d,
            Decision::Fresh {
                recheck_after: Duration::from_millis(10_010)
            }
        );
    }

    #[test]
    fn a_stale_heartbeat_turns_ready_and_pressure_unknown() {
        let n = node(Some(vec![
            cond("Ready", "True", "2026-01-01T00:01:00Z"),
            cond("MemoryPressure", "False", "2026-01-01T00:01:00Z"),
            cond("NetworkUnavailable", "False", "2026-01-01T00:01:00Z"),
        ]));
        let now = ts("2026-01-01T00:01:41Z");
        let Decision::MarkUnknown { conditions } = decide(&n, now, DEFAULT_GRACE) else {
            panic!("the node is stale");
        };
        let ready = &conditions[0];
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(
            ready.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        assert_eq!(
            ready.last_heartbeat_time,
            Some(Time(ts("2026-01-01T00:01:00Z"))),
            "the heartbeat time is the agent's"
        );
        assert_eq!(ready.last_transition_time, Some(Time(now)));
        assert_eq!(conditions[1].status, "Unknown");
        assert_eq!(conditions[2].status, "False", "other conditions stay");
        let mut marked = n.clone();
        if let Some(s) = marked.status.as_mut() {
            s.conditions = Some(conditions);
        }
        assert_eq!(
            decide(&marked, now, DEFAULT_GRACE),
            Decision::AlreadyUnknown
        );
        assert!(!is_ready(&marked));
    }

    #[test]
    fn a_node_that_never_reported_goes_unknown_after_the_grace() {
        let n = node(None);
        assert!(matches!(
            decide(&n, ts("2026-01-01T00:00:30Z"), DEFAULT_GRACE),
            Decision::Fresh { .. }
        ));
        let Decision::MarkUnknown { conditions } =
            decide(&n, ts("2026-01-01T00:00:41Z"), DEFAULT_GRACE)
        else {
            panic!("the node never reported");
        };
        assert_eq!(conditions.len(), 1);
        assert_eq!(
            conditions[0].reason.as_deref(),
            Some("NodeStatusNeverUpdated")
        );
    }

    #[test]
    fn pods_turn_not_ready_once() {
        let status = PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let now = ts("2026-01-01T00:00:00Z");
        let flipped = pod_not_ready(Some(&status), now).expect("a change");
        let ready = &flipped.conditions.as_ref().expect("conditions")[0];
        assert_eq!(ready.status, "False");
        assert_eq!(ready.last_transition_time, Some(Time(now)));
        assert_eq!(pod_not_ready(Some(&flipped), now), None);
        assert_eq!(pod_not_ready(Some(&PodStatus::default()), now), None);
    }
}
