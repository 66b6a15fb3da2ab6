//! The scheduler's decision, as a pure function: [`choose_node`] picks, for
//! a pod, the feasible node with the fewest pods, or says why none fits in
//! the words of Kubernetes' scheduler (`0/3 nodes are available: 1 node(s)
//! didn't match Pod's node affinity/selector, 2 node(s) were
//! unschedulable.`).
//!
//! Filters, in the order of Kubernetes' default plugins, each node failing
//! on the first that rejects it: `NodeUnschedulable` (`spec.unschedulable`
//! unless tolerated), `TaintToleration` (`NoSchedule` and `NoExecute`
//! taints), `NodeAffinity` (`spec.nodeSelector` only). A node whose `Ready`
//! condition is not `True` is treated as carrying the taint Kubernetes' node
//! lifecycle controller would put on it (`node.kubernetes.io/not-ready`, or
//! `node.kubernetes.io/unreachable` when `Unknown`), so only pods that
//! tolerate it land there. Scoring is least-pods, ties broken by name so the
//! choice is deterministic.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Node, Taint, Toleration};
use switchboard_api::labels::Labels as _;

use crate::podview::PodView;

/// The scheduler name pods get when they name none.
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";
/// Taint of a node that is not ready.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Taint of a node whose agent stopped reporting.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// Taint of a cordoned node.
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// No node fits: the message for the pod's `PodScheduled` condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Unschedulable {
    /// Kubernetes' wording, e.g. `0/1 nodes are available: 1 node(s) didn't
    /// match Pod's node affinity/selector.`
    pub message: String,
}

/// Whether the scheduler named `scheduler` should place this pod: not
/// bound, not gated, not finished or being deleted, and addressed to it.
pub fn wants_scheduling(pod: &PodView, scheduler: &str) -> bool {
    pod.node_name.is_none()
        && !pod.scheduling_gated
        && pod.is_active()
        && pod.scheduler_name.as_deref().unwrap_or(DEFAULT_SCHEDULER) == scheduler
}

/// See the module docs. `pod_counts` are the non-terminal pods bound to
/// each node by name.
pub fn choose_node<N: Borrow<Node>>(
    pod: &PodView,
    nodes: &[N],
    pod_counts: &HashMap<String, usize>,
) -> Result<String, Unschedulable> {
    if nodes.is_empty() {
        return Err(Unschedulable {
            message: "no nodes available to schedule pods".to_owned(),
        });
    }
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut best: Option<(usize, &str)> = None;
    for node in nodes.iter().map(Borrow::borrow) {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        match misfit(pod, node) {
            Some(reason) => *reasons.entry(reason).or_default() += 1,
            None => {
                let count = pod_counts.get(name).copied().unwrap_or(0);
                if best.is_none_or(|b| (count, name) < b) {
                    best = Some((count, name));
                }
            }
        }
    }
    if let Some((_, name)) = best {
        return Ok(name.to_owned());
    }
    let mut parts: Vec<String> = reasons
        .iter()
        .map(|(reason, n)| format!("{n} {reason}"))
        .collect();
    parts.sort();
    Err(Unschedulable {
        message: format!(
            "0/{} nodes are available: {}.",
            nodes.len(),
            parts.join(", ")
        ),
    })
}

/// Why `node` cannot take `pod`, in Kubernetes' words; `None` when it can.
fn misfit(pod: &PodView, node: &Node) -> Option<String> {
    let spec = node.spec.as_ref();
    if spec.and_then(|s| s.unschedulable) == Some(true) {
        let cordon = Taint {
            key: TAINT_UNSCHEDULABLE.to_owned(),
            effect: "NoSchedule".to_owned(),
            ..Default::default()
        };
        if !tolerated(&pod.tolerations, &cordon) {
            return Some("node(s) were unschedulable".to_owned());
        }
    }
    let implicit = readiness_taint(node);
    let taints = spec
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
        .iter()
        .chain(implicit.iter());
    for taint in taints {
        if matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute")
            && !tolerated(&pod.tolerations, taint)
        {
            return Some(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint.key,
                taint.value.as_deref().unwrap_or_default()
            ));
        }
    }
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let selected = pod
        .node_selector
        .iter()
        .all(|(k, v)| labels.label(k) == Some(v));
    if !selected {
        return Some("node(s) didn't match Pod's node affinity/selector".to_owned());
    }
    None
}

/// The taint a node that is not ready would carry in Kubernetes (unless it
/// already carries it).
fn readiness_taint(node: &Node) -> Option<Taint> {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str());
    let key = match ready {
        Some("True") => return None,
        Some("Unknown") => TAINT_UNREACHABLE,
        _ => TAINT_NOT_READY,
    };
    let present = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| ts.iter().any(|t| t.key == key && t.effect == "NoSchedule"));
    (!present).then(|| Taint {
        key: key.to_owned(),
        effect: "NoSchedule".to_owned(),
        ..Default::default()
    })
}

/// Kubernetes `Toleration.ToleratesTaint`.
fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| {
        let effect_ok = t
            .effect
            .as_deref()
            .is_none_or(|e| e.is_empty() || e == taint.effect);
        let key_ok = t
            .key
            .as_deref()
            .is_none_or(|k| k.is_empty() || k == taint.key);
        let value_ok = match t.operator.as_deref() {
            Some("Exists") => true,
            // `Equal` is the default operator.
            _ => {
                t.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default()
            }
        };
        // An empty key with `Exists` tolerates everything.
        effect_ok && key_ok && value_ok
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus, Pod, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str, ready: &str, labels: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn pod(selector: &[(&str, &str)], tolerations: Vec<Toleration>) -> PodView {
        PodView::from(&Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_selector: (!selector.is_empty()).then(|| {
                    selector
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect()
                }),
                tolerations: Some(tolerations),
                ..Default::default()
            }),
            status: None,
        })
    }

    fn counts(pairs: &[(&str, usize)]) -> HashMap<String, usize> {
        pairs.iter().map(|(n, c)| ((*n).to_owned(), *c)).collect()
    }

    #[test]
    fn the_least_loaded_ready_node_wins_ties_by_name() {
        let nodes = [
            node("b", "True", &[]),
            node("a", "True", &[]),
            node("c", "True", &[]),
        ];
        let p = pod(&[], vec![]);
        assert_eq!(
            choose_node(&p, &nodes, &counts(&[("a", 2), ("b", 1), ("c", 1)])),
            Ok("b".into())
        );
        assert_eq!(choose_node(&p, &nodes, &HashMap::new()), Ok("a".into()));
    }

    #[test]
    fn not_ready_cordoned_and_tainted_nodes_are_skipped() {
        let mut cordoned = node("cordoned", "True", &[]);
        cordoned.spec = Some(NodeSpec {
            unschedulable: Some(true),
            ..Default::default()
        });
        let mut tainted = node("tainted", "True", &[]);
        tainted.spec = Some(NodeSpec {
            taints: Some(vec![Taint {
                key: TAINT_NOT_READY.into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let nodes = [
            node("down", "Unknown", &[]),
            node("starting", "False", &[]),
            cordoned,
            tainted,
            node("ok", "True", &[]),
        ];
        let p = pod(&[], vec![]);
        assert_eq!(
            choose_node(&p, &nodes, &counts(&[("ok", 100)])),
            Ok("ok".into())
        );
        let err = choose_node(&p, &nodes[..4], &HashMap::new()).expect_err("no node fits");
        assert_eq!(
            err.message,
            "0/4 nodes are available: \
             1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, \
             1 node(s) were unschedulable, \
             2 node(s) had untolerated taint {node.kubernetes.io/not-ready: }."
        );
    }

    #[test]
    fn node_selector_must_match_with_kubernetes_message() {
        let nodes = [node("n1", "True", &[("disk", "hdd")])];
        let p = pod(&[("disk", "ssd")], vec![]);
        assert_eq!(
            choose_node(&p, &nodes, &HashMap::new()),
            Err(Unschedulable {
                message:
                    "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
                        .into()
            })
        );
        let p = pod(&[("disk", "hdd")], vec![]);
        assert_eq!(choose_node(&p, &nodes, &HashMap::new()), Ok("n1".into()));
        assert_eq!(
            choose_node::<Node>(&p, &[], &HashMap::new()).map_err(|e| e.message),
            Err("no nodes available to schedule pods".into())
        );
    }

    #[test]
    fn tolerations_admit_tainted_and_not_ready_nodes() {
        let nodes = [node("down", "False", &[])];
        let tolerant = pod(
            &[],
            vec![Toleration {
                key: Some(TAINT_NOT_READY.into()),
                operator: Some("Exists".into()),
                effect: Some("NoSchedule".into()),
                ..Default::default()
            }],
        );
        assert_eq!(
            choose_node(&tolerant, &nodes, &HashMap::new()),
            Ok("down".into())
        );
        let everything = pod(
            &[],
            vec![Toleration {
                operator: Some("Exists".into()),
                ..Default::default()
            }],
        );
        assert_eq!(
            choose_node(&everything, &nodes, &HashMap::new()),
            Ok("down".into())
        );
    }

    #[test]
    fn only_unbound_active_pods_for_this_scheduler_are_taken() {
        let mut p = pod(&[], vec![]);
        assert!(wants_scheduling(&p, DEFAULT_SCHEDULER));
        p.scheduler_name = Some("other".into());
        assert!(!wants_scheduling(&p, DEFAULT_SCHEDULER));
        p.scheduler_name = None;
        p.node_name = Some("n".into());
        assert!(!wants_scheduling(&p, DEFAULT_SCHEDULER));
        p.node_name = None;
        p.deleting = true;
        assert!(!wants_scheduling(&p, DEFAULT_SCHEDULER));
        p.deleting = false;
        p.scheduling_gated = true;
        assert!(!wants_scheduling(&p, DEFAULT_SCHEDULER));
    }
}
