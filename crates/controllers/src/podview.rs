//! What the controllers need of a Pod, reduced from the typed object as it
//! arrives from the watch: a typed Pod with a Deployment's template costs
//! kilobytes, this view a few hundred bytes. It holds the endpoints
//! controllers' [`PodInfo`] and adds what the workload controllers
//! (ReplicaSets, the scheduler, node lifecycle, the garbage collector) read;
//! one watch makes one view per pod, which both controllers' caches share
//! ([`crate::podfeed`]).

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use switchboard_api::intern::intern;
use switchboard_api::labels::LabelSet;

use crate::podutil::PodInfo;

/// Annotation that orders pods for scale-down (lower cost goes first).
pub const DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

/// `status.phase`, with the order Kubernetes ranks pods by when choosing
/// which to delete (pending before unknown before running).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// `Pending`, or no phase reported yet.
    Pending,
    /// `Unknown`.
    Unknown,
    /// `Running`.
    Running,
    /// `Succeeded`: terminal.
    Succeeded,
    /// `Failed`: terminal.
    Failed,
}

impl Phase {
    fn parse(phase: Option<&str>) -> Phase {
        match phase {
            Some("Running") => Phase::Running,
            Some("Succeeded") => Phase::Succeeded,
            Some("Failed") => Phase::Failed,
            Some("Unknown") => Phase::Unknown,
            _ => Phase::Pending,
        }
    }

    /// `Succeeded` or `Failed`: the pod's containers will not run again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

/// A pod condition's status, reason and message (`PodScheduled` here).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConditionView {
    /// `True`, `False` or `Unknown`.
    pub status: Arc<str>,
    /// `reason`.
    pub reason: Option<Box<str>>,
    /// `message`.
    pub message: Option<Box<str>>,
}

/// See the module docs. Two views compare equal when no controller would
/// decide differently between them. The fields of [`PodInfo`] (namespace,
/// name, uid, labels, node name, IPs, ...) are reached through `Deref`.
#[derive(Debug, Clone, PartialEq)]
pub struct PodView {
    /// What the endpoints controllers need.
    pub info: PodInfo,
    /// `metadata.resourceVersion`, the precondition of ownership patches.
    pub resource_version: Box<str>,
    /// `metadata.ownerReferences`.
    pub owners: Box<[OwnerReference]>,
    /// `metadata.creationTimestamp`.
    pub created: Option<Timestamp>,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// `controller.kubernetes.io/pod-deletion-cost` (0 when absent or not
    /// an int32, as Kubernetes treats it).
    pub deletion_cost: i32,
    /// `spec.schedulerName`, when set.
    pub scheduler_name: Option<Arc<str>>,
    /// `spec.nodeSelector`.
    pub node_selector: LabelSet,
    /// `spec.tolerations`.
    pub tolerations: Box<[Toleration]>,
    /// `spec.schedulingGates` is not empty: the scheduler waits.
    pub scheduling_gated: bool,
    /// `status.phase`.
    pub phase: Phase,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// When the `Ready` condition last changed, if it is `True`.
    pub ready_since: Option<Timestamp>,
    /// Highest restart count of its containers.
    pub restarts: i32,
    /// The `PodScheduled` condition, if any.
    pub scheduled: Option<ConditionView>,
}

fn boxed(s: Option<&String>) -> Option<Box<str>> {
    s.map(String::as_str)
        .filter(|s| !s.is_empty())
        .map(Box::from)
}

/// For strings most pods share (node and scheduler names).
fn interned(s: Option<&String>) -> Option<Arc<str>> {
    s.map(String::as_str).filter(|s| !s.is_empty()).map(intern)
}

impl From<&Pod> for PodView {
    fn from(pod: &Pod) -> PodView {
        let meta = &pod.metadata;
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let conditions = status.and_then(|s| s.conditions.as_deref()).unwrap_or(&[]);
        let ready = conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .filter(|c| c.status == "True");
        let scheduled = conditions
            .iter()
            .find(|c| c.type_ == "PodScheduled")
            .map(|c| ConditionView {
                status: intern(&c.status),
                reason: boxed(c.reason.as_ref()),
                message: boxed(c.message.as_ref()),
            });
        let restarts = status
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .map(|c| c.restart_count)
            .max()
            .unwrap_or(0);
        PodView {
            info: PodInfo::from(pod),
            resource_version: Box::from(meta.resource_version.as_deref().unwrap_or_default()),
            owners: meta.owner_references.clone().unwrap_or_default().into(),
            created: meta.creation_timestamp.as_ref().map(|t| t.0),
            deleting: meta.deletion_timestamp.is_some(),
            deletion_cost: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(DELETION_COST_ANNOTATION))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            scheduler_name: spec.and_then(|s| interned(s.scheduler_name.as_ref())),
            node_selector: spec
                .and_then(|s| s.node_selector.as_ref())
                .map(LabelSet::from)
                .unwrap_or_default(),
            tolerations: spec
                .and_then(|s| s.tolerations.clone())
                .unwrap_or_default()
                .into(),
            scheduling_gated: spec
                .and_then(|s| s.scheduling_gates.as_ref())
                .is_some_and(|g| !g.is_empty()),
            phase: Phase::parse(status.and_then(|s| s.phase.as_deref())),
            ready: ready.is_some(),
            ready_since: ready
                .and_then(|c| c.last_transition_time.as_ref())
                .map(|t| t.0),
            restarts,
            scheduled,
        }
    }
}

impl AsRef<PodView> for PodView {
    fn as_ref(&self) -> &PodView {
        self
    }
}

impl std::ops::Deref for PodView {
    type Target = PodInfo;

    fn deref(&self) -> &PodInfo {
        &self.info
    }
}

impl std::ops::DerefMut for PodView {
    fn deref_mut(&mut self) -> &mut PodInfo {
        &mut self.info
    }
}

/// The endpoints controllers' reconcilers take anything that gives a
/// [`PodInfo`]; the shared cache hands them its views.
impl AsRef<PodInfo> for Arc<PodView> {
    fn as_ref(&self) -> &PodInfo {
        &self.info
    }
}

impl PodView {
    /// Counts toward a controller's replicas: not being deleted and not
    /// finished (Kubernetes `controller.IsPodActive`).
    pub fn is_active(&self) -> bool {
        !self.deleting && !self.phase.is_terminal()
    }

    /// The owner reference marked `controller: true`, if any.
    pub fn controller(&self) -> Option<&OwnerReference> {
        crate::ownership::controller_of(&self.owners)
    }

    /// Ready for at least `min_ready_seconds` at `now` (Kubernetes
    /// `podutil.IsPodAvailable`: the Ready transition time plus the delay
    /// must be strictly before `now`; a missing transition time counts as
    /// long ago).
    pub fn is_available(&self, min_ready_seconds: i32, now: Timestamp) -> bool {
        if !self.ready {
            return false;
        }
        if min_ready_seconds <= 0 {
            return true;
        }
        match self.ready_since {
            None => true,
            Some(since) => available_at(since, min_ready_seconds) < now,
        }
    }

    /// When a ready but not yet available pod becomes available.
    pub fn available_at(&self, min_ready_seconds: i32) -> Option<Timestamp> {
        if !self.ready || min_ready_seconds <= 0 {
            return None;
        }
        self.ready_since
            .map(|since| available_at(since, min_ready_seconds))
    }
}

fn available_at(since: Timestamp, min_ready_seconds: i32) -> Timestamp {
    since
        .checked_add(jiff::SignedDuration::from_secs(i64::from(
            min_ready_seconds,
        )))
        .unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ready_pod(since: &str) -> PodView {
        PodView::from(&Pod {
            spec: Some(PodSpec::default()),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(since.parse().expect("a timestamp"))),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn availability_waits_min_ready_seconds_strictly() {
        let pod = ready_pod("2026-01-01T00:00:00Z");
        let at = |s: &str| s.parse::<Timestamp>().expect("a timestamp");
        assert!(pod.is_available(0, at("2026-01-01T00:00:00Z")));
        assert!(!pod.is_available(10, at("2026-01-01T00:00:10Z")));
        assert!(pod.is_available(10, at("2026-01-01T00:00:11Z")));
        assert_eq!(pod.available_at(10), Some(at("2026-01-01T00:00:10Z")));
        assert_eq!(pod.phase, Phase::Running);
        assert!(pod.is_active());
    }
}
