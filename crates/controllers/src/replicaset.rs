//! The ReplicaSet controller's decisions, as a pure function of the
//! ReplicaSet, the pods of its namespace and the time: [`plan_replicaset`]
//! says how many pods to create from the template, which to delete, which
//! orphans to adopt and which pods to release, and the status to report.
//! The runtime ([`crate::workloads`]) writes the plan.
//!
//! Follows Kubernetes' `ReplicaSetController.syncReplicaSet`: pods are
//! claimed through owner references ([`crate::ownership::claim`]); pods
//! being deleted or finished do not count; surplus pods are deleted in the
//! order of `controller.ActivePodsWithRanks` (see [`deletion_order`]).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use switchboard_api::labels::{Labels as _, Selector};

use crate::ownership::{self, Claim, Claimant};
use crate::podview::PodView;

/// Most pods created or deleted in one sync (Kubernetes `BurstReplicas`).
pub const BURST_REPLICAS: usize = 500;

/// `apiVersion` of the owner references on a ReplicaSet's pods.
pub const API_VERSION: &str = "apps/v1";
/// `kind` of the owner references on a ReplicaSet's pods.
pub const KIND: &str = "ReplicaSet";

/// Why a ReplicaSet cannot be synced (validation normally prevents these).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// `spec.selector` is not a valid label selector.
    #[error("invalid selector: {reason}")]
    InvalidSelector {
        /// The parse error.
        reason: String,
    },
    /// `spec.selector` is empty; it would select every pod.
    #[error("empty selector: it would select every pod in the namespace")]
    EmptySelector,
}

/// What one sync of a ReplicaSet writes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// Pods to create from the template.
    pub create: usize,
    /// Pods to delete, by name, most deletable first.
    pub delete: Vec<String>,
    /// Orphans to adopt, by name.
    pub adopt: Vec<String>,
    /// Owned pods that stopped matching, by name.
    pub release: Vec<String>,
    /// The status the ReplicaSet should report.
    pub status: ReplicaSetStatus,
    /// Sync again after this long even without events: a ready pod becomes
    /// available once its `minReadySeconds` have passed.
    pub requeue_after: Option<Duration>,
}

/// The selector of a ReplicaSet (or Deployment) `spec.selector`.
pub(crate) fn selector_of(
    ls: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> Result<Selector, Error> {
    let selector = Selector::from_label_selector(ls).map_err(|e| Error::InvalidSelector {
        reason: e.to_string(),
    })?;
    if selector.is_empty() {
        return Err(Error::EmptySelector);
    }
    Ok(selector)
}

/// See the module docs. `pods` are the pods of the ReplicaSet's namespace
/// (others are ignored); `now` decides availability under
/// `minReadySeconds`.
pub fn plan_replicaset<P: AsRef<PodView>>(
    rs: &ReplicaSet,
    pods: &[P],
    now: Timestamp,
) -> Result<Plan, Error> {
    let spec = rs.spec.as_ref();
    let selector = selector_of(&spec.map(|s| s.selector.clone()).unwrap_or_default())?;
    let uid = rs.metadata.uid.as_deref().unwrap_or_default();
    let namespace = rs.metadata.namespace.as_deref().unwrap_or_default();
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let claimant = Claimant {
        uid,
        namespace,
        deleting,
        selector: &selector,
    };
    let mut plan = Plan::default();
    let mut claimed: Vec<&PodView> = Vec::new();
    for pod in pods.iter().map(AsRef::as_ref) {
        match ownership::claim(
            &claimant,
            &pod.namespace,
            &pod.labels,
            &pod.owners,
            pod.deleting,
        ) {
            Claim::Owned => claimed.push(pod),
            Claim::Adopt => {
                plan.adopt.push(pod.name.to_string());
                claimed.push(pod);
            }
            Claim::Release => plan.release.push(pod.name.to_string()),
            Claim::Ignore => {}
        }
    }
    let active: Vec<&PodView> = claimed.into_iter().filter(|p| p.is_active()).collect();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    plan.status = status_of(rs, &active, min_ready, now);
    plan.requeue_after = active
        .iter()
        .filter(|p| !p.is_available(min_ready, now))
        .filter_map(|p| p.available_at(min_ready))
        .min()
        .map(|at| {
            // Availability is "strictly after", so look a moment later.
            let wait = at.duration_since(now).unsigned_abs();
            wait + Duration::from_millis(10)
        });

    // A ReplicaSet being deleted only reports; the garbage collector
    // removes its pods.
    if deleting {
        return Ok(plan);
    }
    let want = usize::try_from(spec.and_then(|s| s.replicas).unwrap_or(1)).unwrap_or(0);
    match active.len().cmp(&want) {
        Ordering::Less => plan.create = (want - active.len()).min(BURST_REPLICAS),
        Ordering::Greater => {
            let surplus = (active.len() - want).min(BURST_REPLICAS);
            plan.delete = deletion_order(&active)
                .into_iter()
                .take(surplus)
                .map(|p| p.name.to_string())
                .collect();
        }
        Ordering::Equal => {}
    }
    Ok(plan)
}

/// The status Kubernetes' `calculateStatus` reports for the active pods.
fn status_of(
    rs: &ReplicaSet,
    active: &[&PodView],
    min_ready_seconds: i32,
    now: Timestamp,
) -> ReplicaSetStatus {
    let template_labels = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let count = |f: &dyn Fn(&PodView) -> bool| -> Option<i32> {
        let n = active.iter().filter(|p| f(p)).count();
        nonzero(n)
    };
    ReplicaSetStatus {
        replicas: i32::try_from(active.len()).unwrap_or(i32::MAX),
        fully_labeled_replicas: count(&|p| {
            template_labels
                .iter()
                .all(|(k, v)| p.labels.label(k) == Some(v.as_str()))
        }),
        ready_replicas: count(&|p| p.ready),
        available_replicas: count(&|p| p.is_available(min_ready_seconds, now)),
        observed_generation: rs.metadata.generation,
        // Kept from the current status: failure conditions are the
        // runtime's to set.
        conditions: rs.status.as_ref().and_then(|s| s.conditions.clone()),
        terminating_replicas: None,
    }
}

/// Kubernetes omits zero counts (`omitempty`).
fn nonzero(n: usize) -> Option<i32> {
    (n > 0).then(|| i32::try_from(n).unwrap_or(i32::MAX))
}

/// The pods in the order Kubernetes deletes them on scale-down
/// (`ActivePodsWithRanks.Less`, ranked by pods of the same set on the same
/// node): unscheduled before scheduled; pending before unknown before
/// running; not ready before ready; lower `pod-deletion-cost` first; pods
/// doubled up on a node before lonely ones; ready for less time before
/// longer; more restarts before fewer; newer before older. The name breaks
/// the remaining ties, so the order is deterministic.
pub fn deletion_order<'a>(pods: &[&'a PodView]) -> Vec<&'a PodView> {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for p in pods {
        if let Some(node) = p.node_name.as_deref() {
            *per_node.entry(node).or_default() += 1;
        }
    }
    let rank = |p: &PodView| {
        p.node_name
            .as_deref()
            .and_then(|n| per_node.get(n).copied())
            .unwrap_or(0)
    };
    let mut out = pods.to_vec();
    out.sort_by(|a, b| {
        // Each line: `Less` means `a` goes first.
        a.node_name
            .is_some()
            .cmp(&b.node_name.is_some())
            .then(a.phase.cmp(&b.phase))
            .then(a.ready.cmp(&b.ready))
            .then(a.deletion_cost.cmp(&b.deletion_cost))
            .then(rank(b).cmp(&rank(a)))
            .then_with(|| {
                if a.ready && b.ready {
                    newer_or_unknown_first(a.ready_since, b.ready_since)
                } else {
                    Ordering::Equal
                }
            })
            .then(b.restarts.cmp(&a.restarts))
            .then_with(|| newer_or_unknown_first(a.created, b.created))
            .then_with(|| a.name.cmp(&b.name))
    });
    out
}

/// Kubernetes `afterOrZero`: an unknown time first, then the later one.
fn newer_or_unknown_first(a: Option<Timestamp>, b: Option<Timestamp>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => b.cmp(&a),
    }
}

/// A pod for the ReplicaSet, from its template (Kubernetes
/// `GetPodFromTemplate`): the template's labels, annotations, finalizers
/// and spec, `generateName` `<replicaset>-`, and the controller reference.
pub fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = rs.spec.as_ref().and_then(|s| s.template.clone());
    let (meta, spec) = template
        .map(|t| (t.metadata.unwrap_or_default(), t.spec))
        .unwrap_or_default();
    let name = rs.metadata.name.as_deref().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: rs.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![ownership::controller_ref(
                API_VERSION,
                KIND,
                name,
                rs.metadata.uid.as_deref().unwrap_or_default(),
            )]),
            ..Default::default()
        },
        spec,
        status: None,
    }
}

#[cfg(test)]
mod tests;
