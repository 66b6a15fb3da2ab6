//! The Deployment controller's decisions, as a pure function of the
//! Deployment, the ReplicaSets of its namespace, how many pods each still
//! has, and the time: [`plan_deployment`] says which ReplicaSet to create,
//! how to scale the others, which old ones to delete, and the status.
//!
//! Follows Kubernetes' `DeploymentController` (`rolling.go`, `recreate.go`,
//! `sync.go`, `util/deployment_util.go`):
//!
//! - A ReplicaSet per pod template, named `<deployment>-<hash>` where the
//!   hash ([`template_hash`]) is FNV-1a (32 bit) of the template and the
//!   collision count, rendered with Kubernetes' `SafeEncodeString`; the
//!   hash is the `pod-template-hash` label of its selector and template.
//!   The *new* ReplicaSet is the oldest owned one whose template equals the
//!   Deployment's, the hash label aside.
//! - RollingUpdate: scale the new ReplicaSet up while the total stays
//!   within `replicas + maxSurge`; scale old ones down (unhealthy replicas
//!   first, oldest sets first) while the available pods stay at least
//!   `replicas - maxUnavailable`. One step per sync: the next step waits
//!   for the ReplicaSets' statuses to move.
//! - Recreate: scale every old ReplicaSet to zero, wait until their pods
//!   are gone, then create/scale the new one.
//! - Revisions: the new ReplicaSet's `deployment.kubernetes.io/revision` is
//!   one more than the highest old one; once the rollout is complete, old
//!   ReplicaSets at zero beyond `revisionHistoryLimit` are deleted.
//! - Status: counts summed from the ReplicaSets' statuses, conditions
//!   `Available` and `Progressing` with Kubernetes' reasons and messages.
//!
//! One deliberate difference: an old ReplicaSet's available pods are
//! counted as at most its `spec.replicas`. Right after a scale-down its
//! status still shows the pods it is about to delete, and counting those
//! would let the next sync scale down again before the pods are gone,
//! dropping below `maxUnavailable`.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec, ReplicaSetStatus,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use crate::ownership::{self, Claim, Claimant};
use crate::replicaset;

/// Label (on a ReplicaSet, its selector, its template and so its pods)
/// holding the template hash.
pub const HASH_LABEL: &str = "pod-template-hash";
/// Annotation with a ReplicaSet's (and the Deployment's) revision.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// Annotation with the Deployment's replicas when the ReplicaSet was scaled.
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
/// Annotation with replicas + maxSurge when the ReplicaSet was scaled.
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
/// `spec.revisionHistoryLimit` when unset.
pub const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;
/// `spec.progressDeadlineSeconds` when unset.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;
/// `apiVersion` of the owner references on a Deployment's ReplicaSets.
pub const API_VERSION: &str = "apps/v1";
/// `kind` of the owner references on a Deployment's ReplicaSets.
pub const KIND: &str = "Deployment";

/// Annotations of a Deployment that are not copied to its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    "deployment.kubernetes.io/revision-history",
    DESIRED_REPLICAS_ANNOTATION,
    MAX_REPLICAS_ANNOTATION,
    "deprecated.deployment.rollback.to",
];

/// Why a Deployment cannot be synced (validation normally prevents these).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The selector is unusable.
    #[error(transparent)]
    Selector(#[from] replicaset::Error),
    /// `maxSurge` or `maxUnavailable` is neither an int nor `N%`.
    #[error("invalid {field} {value:?}: must be an integer or a percentage")]
    InvalidIntOrPercent {
        /// `maxSurge` or `maxUnavailable`.
        field: &'static str,
        /// The value given.
        value: String,
    },
    /// `maxSurge` and `maxUnavailable` are both zero: no rollout could
    /// ever make progress.
    #[error("maxSurge and maxUnavailable may not both be 0")]
    NoProgressPossible,
}

/// The resolved update strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Kill every old pod, then start the new ones.
    Recreate,
    /// Replace pods gradually.
    RollingUpdate {
        /// Pods above `replicas` allowed during the update.
        max_surge: i32,
        /// Pods below `replicas` allowed to be unavailable.
        max_unavailable: i32,
    },
}

impl Strategy {
    /// The Deployment's strategy with `maxSurge`/`maxUnavailable` resolved
    /// against its replicas (defaults 25% each; surge rounds up,
    /// unavailable down; when both resolve to zero, unavailable is 1, as
    /// Kubernetes' `ResolveFenceposts`).
    pub fn of(d: &Deployment) -> Result<Strategy, Error> {
        let spec = d.spec.as_ref();
        let strategy = spec.and_then(|s| s.strategy.as_ref());
        if strategy.and_then(|s| s.type_.as_deref()) == Some("Recreate") {
            return Ok(Strategy::Recreate);
        }
        let desired = spec.and_then(|s| s.replicas).unwrap_or(1);
        let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
        let quarter = IntOrString::String("25%".to_owned());
        let surge = rolling
            .and_then(|r| r.max_surge.as_ref())
            .unwrap_or(&quarter);
        let unavailable = rolling
            .and_then(|r| r.max_unavailable.as_ref())
            .unwrap_or(&quarter);
        if is_zero(surge) && is_zero(unavailable) {
            return Err(Error::NoProgressPossible);
        }
        let max_surge = scaled_value(surge, desired, true, "maxSurge")?;
        let mut max_unavailable = scaled_value(unavailable, desired, false, "maxUnavailable")?;
        if max_surge == 0 && max_unavailable == 0 {
            max_unavailable = 1;
        }
        Ok(Strategy::RollingUpdate {
            max_surge,
            max_unavailable,
        })
    }

    /// Kubernetes `MaxSurge`.
    pub fn max_surge(self) -> i32 {
        match self {
            Strategy::Recreate => 0,
            Strategy::RollingUpdate { max_surge, .. } => max_surge,
        }
    }

    /// Kubernetes `MaxUnavailable`: at most the replicas.
    pub fn max_unavailable(self, desired: i32) -> i32 {
        match self {
            Strategy::Recreate => 0,
            Strategy::RollingUpdate { .. } if desired == 0 => 0,
            Strategy::RollingUpdate {
                max_unavailable, ..
            } => max_unavailable.min(desired),
        }
    }
}

fn is_zero(v: &IntOrString) -> bool {
    match v {
        IntOrString::Int(n) => *n == 0,
        IntOrString::String(s) => s.trim_end_matches('%').parse::<i64>() == Ok(0),
    }
}

/// Kubernetes `GetScaledValueFromIntOrPercent`: an int as is, `N%` of
/// `total` rounded up or down.
pub fn scaled_value(
    v: &IntOrString,
    total: i32,
    round_up: bool,
    field: &'static str,
) -> Result<i32, Error> {
    let invalid = || Error::InvalidIntOrPercent {
        field,
        value: match v {
            IntOrString::Int(n) => n.to_string(),
            IntOrString::String(s) => s.clone(),
        },
    };
    match v {
        IntOrString::Int(n) if *n >= 0 => Ok(*n),
        IntOrString::Int(_) => Err(invalid()),
        IntOrString::String(s) => {
            let percent: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .filter(|p| *p >= 0)
                .ok_or_else(invalid)?;
            let scaled = percent * i64::from(total.max(0));
            let value = if round_up {
                (scaled + 99) / 100
            } else {
                scaled / 100
            };
            Ok(i32::try_from(value).unwrap_or(i32::MAX))
        }
    }
}

/// FNV-1a, 32 bit (Go's `hash/fnv.New32a`).
fn fnv32a(bytes: &[u8], mut hash: u32) -> u32 {
    for b in bytes {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(16_777_619);
    }
    hash
}

const FNV32_OFFSET: u32 = 2_166_136_261;

/// Kubernetes `rand.SafeEncodeString`: each character mapped onto an
/// alphabet without vowels (no words) and without look-alikes.
fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.chars()
        .map(|c| char::from(ALPHANUMS[(c as usize) % ALPHANUMS.len()]))
        .collect()
}

/// The `pod-template-hash` of a template (Kubernetes `ComputeHash`): FNV-1a
/// of the template, then of the collision count as 8 little-endian bytes,
/// the decimal value safe-encoded. Kubernetes hashes Go's printed form of
/// the object; this hashes its JSON serialization, which is as stable (the
/// fields in declaration order, maps sorted) but gives different values.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    // Serializing plain data into memory cannot fail.
    let json = serde_json::to_vec(template).unwrap_or_default();
    let mut hash = fnv32a(&json, FNV32_OFFSET);
    if let Some(count) = collision_count {
        let mut bytes = [0u8; 8];
        // Go writes the uint32 conversion into the first four bytes.
        bytes[..4].copy_from_slice(&(count as u32).to_le_bytes());
        hash = fnv32a(&bytes, hash);
    }
    safe_encode(&hash.to_string())
}

/// The template as comparable JSON: the hash label removed, and empty
/// maps, lists and nulls dropped (Kubernetes' semantic equality treats
/// empty and absent alike).
fn comparable(template: Option<&PodTemplateSpec>) -> Value {
    let mut t = template.cloned().unwrap_or_default();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(HASH_LABEL);
    }
    let mut v = serde_json::to_value(&t).unwrap_or(Value::Null);
    prune(&mut v);
    v
}

fn prune(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for child in map.values_mut() {
                prune(child);
            }
            map.retain(|_, child| !is_empty(child));
        }
        Value::Array(items) => items.iter_mut().for_each(prune),
        _ => {}
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Kubernetes `EqualIgnoreHash`.
pub fn equal_ignore_hash(a: Option<&PodTemplateSpec>, b: Option<&PodTemplateSpec>) -> bool {
    comparable(a) == comparable(b)
}

/// A change to an existing ReplicaSet, written as one merge patch with its
/// resourceVersion as the precondition.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReplicaSetWrite {
    /// The ReplicaSet's name.
    pub name: String,
    /// The resourceVersion the decision was made on.
    pub resource_version: String,
    /// New `spec.replicas`.
    pub replicas: Option<i32>,
    /// New `spec.minReadySeconds`.
    pub min_ready_seconds: Option<i32>,
    /// Annotations to set.
    pub annotations: BTreeMap<String, String>,
}

/// What one sync of a Deployment writes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// Orphan ReplicaSets to adopt, by name.
    pub adopt: Vec<String>,
    /// Owned ReplicaSets that stopped matching, by name.
    pub release: Vec<String>,
    /// The new ReplicaSet to create.
    pub create: Option<ReplicaSet>,
    /// Changes to existing ReplicaSets, in order.
    pub update: Vec<ReplicaSetWrite>,
    /// Old ReplicaSets beyond the revision history, by name.
    pub delete: Vec<String>,
    /// The Deployment's `deployment.kubernetes.io/revision`, when it must
    /// change.
    pub revision: Option<String>,
    /// The status the Deployment should report.
    pub status: DeploymentStatus,
    /// Sync again after this long even without events (the progress
    /// deadline, or a name collision to retry with a new hash).
    pub requeue_after: Option<Duration>,
}

/// A ReplicaSet as the planner tracks it.
#[derive(Debug, Clone, Default)]
struct Set {
    name: String,
    resource_version: Option<String>,
    /// `spec.replicas`, as planned so far.
    replicas: i32,
    /// `status.availableReplicas`, never above `replicas`.
    available: i32,
    status: ReplicaSetStatus,
    generation: i64,
    deleting: bool,
    created: Option<Timestamp>,
    revision: i64,
    /// Non-terminal pods it still has, terminating ones included.
    pods: usize,
}

impl Set {
    fn new(rs: &ReplicaSet, pods: &HashMap<String, usize>) -> Set {
        let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = rs.status.clone().unwrap_or_default();
        Set {
            name: rs.metadata.name.clone().unwrap_or_default(),
            resource_version: rs.metadata.resource_version.clone(),
            replicas,
            available: status.available_replicas.unwrap_or(0).min(replicas),
            status,
            generation: rs.metadata.generation.unwrap_or(0),
            deleting: rs.metadata.deletion_timestamp.is_some(),
            created: rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
            revision: revision_of(rs),
            pods: rs
                .metadata
                .uid
                .as_deref()
                .and_then(|uid| pods.get(uid))
                .copied()
                .unwrap_or(0),
        }
    }
}

fn revision_of(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION_ANNOTATION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The plan being built, with the ReplicaSets as planned so far.
struct Planner<'a> {
    d: &'a Deployment,
    desired: i32,
    strategy: Strategy,
    new: Option<Set>,
    /// Old ReplicaSets, oldest first.
    old: Vec<Set>,
    plan: Plan,
}

impl Planner<'_> {
    fn scale_old(&mut self, i: usize, replicas: i32) {
        let set = &mut self.old[i];
        set.replicas = replicas;
        set.available = set.available.min(replicas);
        let (name, rv) = (set.name.clone(), set.resource_version.clone());
        let annotations = self.replicas_annotations();
        self.write(&name, rv, |w| {
            w.replicas = Some(replicas);
            w.annotations.extend(annotations);
        });
    }

    fn scale_new(&mut self, replicas: i32) {
        let annotations = self.replicas_annotations();
        let Some(set) = self.new.as_mut() else {
            return;
        };
        set.replicas = replicas;
        set.available = set.available.min(replicas);
        if let Some(created) = self.plan.create.as_mut() {
            if let Some(spec) = created.spec.as_mut() {
                spec.replicas = Some(replicas);
            }
            return;
        }
        let (name, rv) = (set.name.clone(), set.resource_version.clone());
        self.write(&name, rv, |w| {
            w.replicas = Some(replicas);
            w.annotations.extend(annotations);
        });
    }

    fn write(&mut self, name: &str, rv: Option<String>, f: impl FnOnce(&mut ReplicaSetWrite)) {
        let at = match self.plan.update.iter().position(|w| w.name == name) {
            Some(at) => at,
            None => {
                self.plan.update.push(ReplicaSetWrite {
                    name: name.to_owned(),
                    resource_version: rv.unwrap_or_default(),
                    ..Default::default()
                });
                self.plan.update.len() - 1
            }
        };
        f(&mut self.plan.update[at]);
    }

    fn replicas_annotations(&self) -> [(String, String); 2] {
        [
            (
                DESIRED_REPLICAS_ANNOTATION.to_owned(),
                self.desired.to_string(),
            ),
            (
                MAX_REPLICAS_ANNOTATION.to_owned(),
                (self.desired.saturating_add(self.strategy.max_surge())).to_string(),
            ),
        ]
    }

    fn total_replicas(&self) -> i32 {
        self.old.iter().map(|s| s.replicas).sum::<i32>()
            + self.new.as_ref().map_or(0, |s| s.replicas)
    }

    fn total_available(&self) -> i32 {
        self.old.iter().map(|s| s.available).sum::<i32>()
            + self.new.as_ref().map_or(0, |s| s.available)
    }

    /// Kubernetes `NewRSNewReplicas`.
    fn new_replicas(&self) -> i32 {
        let current_new = self.new.as_ref().map_or(0, |s| s.replicas);
        match self.strategy {
            Strategy::Recreate => self.desired,
            Strategy::RollingUpdate { max_surge, .. } => {
                let max_total = self.desired.saturating_add(max_surge);
                let current = self.total_replicas();
                if current >= max_total {
                    return current_new;
                }
                let up = (max_total - current).min(self.desired - current_new).max(0);
                current_new + up
            }
        }
    }

    /// Kubernetes `reconcileNewReplicaSet`; true when it scaled.
    fn reconcile_new(&mut self) -> bool {
        let Some(current) = self.new.as_ref().map(|s| s.replicas) else {
            return false;
        };
        if current == self.desired {
            return false;
        }
        if current > self.desired {
            self.scale_new(self.desired);
            return true;
        }
        let target = self.new_replicas();
        if target == current {
            return false;
        }
        self.scale_new(target);
        true
    }

    /// Kubernetes `reconcileOldReplicaSets`; true when it scaled.
    fn reconcile_old(&mut self) -> bool {
        let old_pods: i32 = self.old.iter().map(|s| s.replicas).sum();
        if old_pods == 0 {
            return false;
        }
        let all_pods = self.total_replicas();
        let min_available = self.desired - self.strategy.max_unavailable(self.desired);
        let new_unavailable = self.new.as_ref().map_or(0, |s| s.replicas - s.available);
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return false;
        }
        // Unhealthy replicas first: removing them costs no availability.
        let mut cleaned = 0;
        for i in 0..self.old.len() {
            if cleaned >= max_scaled_down {
                break;
            }
            let set = &self.old[i];
            if set.replicas == 0 || set.available == set.replicas {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(set.replicas - set.available);
            self.scale_old(i, set.replicas - down);
            cleaned += down;
        }
        // Then healthy ones, as far as availability allows.
        let available = self.total_available();
        let mut scaled = 0;
        if available > min_available {
            let budget = (available - min_available).min(max_scaled_down - cleaned);
            for i in 0..self.old.len() {
                if scaled >= budget {
                    break;
                }
                let set = &self.old[i];
                if set.replicas == 0 {
                    continue;
                }
                let down = set.replicas.min(budget - scaled);
                self.scale_old(i, set.replicas - down);
                scaled += down;
            }
        }
        cleaned + scaled > 0
    }

    fn rolling(&mut self) {
        if self.reconcile_new() {
            return;
        }
        if self.reconcile_old() {
            return;
        }
        self.cleanup_if_complete();
    }

    fn recreate(&mut self) {
        let mut scaled = false;
        for i in 0..self.old.len() {
            if self.old[i].replicas != 0 {
                self.scale_old(i, 0);
                scaled = true;
            }
        }
        if scaled {
            return;
        }
        // Old pods must be gone, terminating ones included: Recreate
        // promises the versions never run side by side.
        if self.old.iter().any(|s| s.pods > 0) {
            return;
        }
        if self
            .new
            .as_ref()
            .is_some_and(|s| s.replicas != self.desired)
        {
            self.scale_new(self.desired);
            return;
        }
        self.cleanup_if_complete();
    }

    /// Kubernetes `cleanupDeployment`, once the stored status says the
    /// rollout is complete.
    fn cleanup_if_complete(&mut self) {
        let stored = self.d.status.clone().unwrap_or_default();
        if !complete(self.d, &stored) {
            return;
        }
        let limit = self
            .d
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT);
        let mut alive: Vec<&Set> = self.old.iter().filter(|s| !s.deleting).collect();
        let surplus = alive
            .len()
            .saturating_sub(usize::try_from(limit).unwrap_or(0));
        alive.sort_by(|a, b| {
            a.revision
                .cmp(&b.revision)
                .then(a.created.cmp(&b.created))
                .then(a.name.cmp(&b.name))
        });
        let delete: Vec<String> = alive
            .into_iter()
            .take(surplus)
            .filter(|s| {
                s.replicas == 0
                    && s.status.replicas == 0
                    && s.generation <= s.status.observed_generation.unwrap_or(0)
            })
            .map(|s| s.name.clone())
            .collect();
        self.plan.delete = delete;
    }
}

/// Kubernetes `DeploymentComplete`.
fn complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    status.updated_replicas.unwrap_or(0) == desired
        && status.replicas.unwrap_or(0) == desired
        && status.available_replicas.unwrap_or(0) == desired
        && status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// See the module docs. `replicasets` are those of the Deployment's
/// namespace; `pods` counts, per ReplicaSet uid, its pods that have not
/// finished (terminating ones included).
pub fn plan_deployment<R: Borrow<ReplicaSet>>(
    d: &Deployment,
    replicasets: &[R],
    pods: &HashMap<String, usize>,
    now: Timestamp,
) -> Result<Plan, Error> {
    let spec = d.spec.clone().unwrap_or_default();
    let selector = replicaset::selector_of(&spec.selector)?;
    let strategy = Strategy::of(d)?;
    let desired = spec.replicas.unwrap_or(1);
    let name = d.metadata.name.as_deref().unwrap_or_default();
    let namespace = d.metadata.namespace.as_deref().unwrap_or_default();
    let uid = d.metadata.uid.as_deref().unwrap_or_default();
    let deleting = d.metadata.deletion_timestamp.is_some();
    let claimant = Claimant {
        uid,
        namespace,
        deleting,
        selector: &selector,
    };
    let mut plan = Plan::default();
    let mut owned: Vec<&ReplicaSet> = Vec::new();
    for rs in replicasets.iter().map(Borrow::borrow) {
        let meta = &rs.metadata;
        let labels = meta.labels.clone().unwrap_or_default();
        let rs_name = meta.name.clone().unwrap_or_default();
        match ownership::claim(
            &claimant,
            meta.namespace.as_deref().unwrap_or_default(),
            &labels,
            meta.owner_references.as_deref().unwrap_or(&[]),
            meta.deletion_timestamp.is_some(),
        ) {
            Claim::Owned => owned.push(rs),
            Claim::Adopt => {
                plan.adopt.push(rs_name);
                owned.push(rs);
            }
            Claim::Release => plan.release.push(rs_name),
            Claim::Ignore => {}
        }
    }
    owned.sort_by(|a, b| {
        let created = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
        created(a)
            .cmp(&created(b))
            .then(a.metadata.name.cmp(&b.metadata.name))
    });

    let stored_status = d.status.clone().unwrap_or_default();
    let mut collision_count = stored_status.collision_count;
    let hash = template_hash(&spec.template, collision_count);
    let new_name = format!("{name}-{hash}");
    let is_new = |rs: &ReplicaSet| {
        equal_ignore_hash(
            rs.spec.as_ref().and_then(|s| s.template.as_ref()),
            Some(&spec.template),
        )
    };
    let new_at = owned.iter().position(|rs| is_new(rs)).or_else(|| {
        // The name and hash are ours: the templates differ only in
        // defaults the apiserver filled in differently.
        owned.iter().position(|rs| {
            rs.metadata.name.as_deref() == Some(new_name.as_str())
                && rs
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(HASH_LABEL))
                    .map(String::as_str)
                    == Some(hash.as_str())
        })
    });
    let new_rs = new_at.map(|i| owned.remove(i));
    let mut planner = Planner {
        d,
        desired,
        strategy,
        new: new_rs.map(|rs| Set::new(rs, pods)),
        old: owned.iter().map(|rs| Set::new(rs, pods)).collect(),
        plan,
    };
    let max_old_revision = planner.old.iter().map(|s| s.revision).max().unwrap_or(0);
    let new_revision = (max_old_revision + 1).to_string();
    let mut conditions = stored_status.conditions.clone().unwrap_or_default();
    let has_deadline = spec.progress_deadline_seconds != Some(i32::MAX);
    let paused = spec.paused == Some(true);

    // The new ReplicaSet's revision, annotations and minReadySeconds.
    if !deleting && let Some((set, rs)) = planner.new.clone().zip(new_rs) {
        let mut annotations = copied_annotations(d);
        let current = rs.metadata.annotations.clone().unwrap_or_default();
        annotations.retain(|k, v| current.get(k) != Some(v));
        if set.revision < max_old_revision + 1 {
            annotations.insert(REVISION_ANNOTATION.to_owned(), new_revision.clone());
        }
        let min_ready = rs.spec.as_ref().and_then(|s| s.min_ready_seconds);
        let wrong_min_ready = min_ready.unwrap_or(0) != spec.min_ready_seconds.unwrap_or(0);
        if !annotations.is_empty() || wrong_min_ready {
            planner.write(&set.name, set.resource_version.clone(), |w| {
                w.annotations.extend(annotations);
                if wrong_min_ready {
                    w.min_ready_seconds = Some(spec.min_ready_seconds.unwrap_or(0));
                }
            });
        }
        if has_deadline && !conditions.iter().any(|c| c.type_ == "Progressing") {
            set_condition(
                &mut conditions,
                condition(
                    "Progressing",
                    "True",
                    "FoundNewReplicaSet",
                    format!("Found new replica set {:?}", set.name),
                    now,
                ),
            );
        }
    }

    if !deleting && !paused {
        let create_now = planner.new.is_none()
            && match strategy {
                Strategy::RollingUpdate { .. } => true,
                Strategy::Recreate => planner.old.iter().all(|s| s.replicas == 0 && s.pods == 0),
            };
        if create_now {
            if replicasets
                .iter()
                .any(|rs| rs.borrow().metadata.name.as_deref() == Some(new_name.as_str()))
            {
                // Someone else's ReplicaSet has our name: hash again with a
                // higher collision count (Kubernetes does this on
                // AlreadyExists).
                collision_count = Some(collision_count.unwrap_or(0).saturating_add(1));
                planner.plan.requeue_after = Some(Duration::ZERO);
            } else {
                let created = new_replicaset(d, &hash, &new_revision, &planner);
                planner.plan.create = Some(created);
                if has_deadline {
                    set_condition(
                        &mut conditions,
                        condition(
                            "Progressing",
                            "True",
                            "NewReplicaSetCreated",
                            format!("Created new replica set {new_name:?}"),
                            now,
                        ),
                    );
                }
            }
        }
        if let Some(created) = planner.plan.create.as_ref() {
            // Plan on with the created set, as Kubernetes does in the same
            // sync; its name and spec are final, its status empty.
            let replicas = created.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            planner.new = Some(Set {
                name: new_name.clone(),
                replicas,
                created: Some(now),
                revision: max_old_revision + 1,
                ..Set::default()
            });
        }
        match strategy {
            Strategy::RollingUpdate { .. } => planner.rolling(),
            Strategy::Recreate => planner.recreate(),
        }
    } else if paused && !deleting {
        // Kubernetes' `sync` while paused: scale, never roll.
        let only_new = planner.old.iter().all(|s| s.replicas == 0);
        if only_new && planner.new.as_ref().is_some_and(|s| s.replicas != desired) {
            planner.scale_new(desired);
        }
        planner.cleanup_if_complete();
    }

    // The Deployment's own revision follows its new ReplicaSet.
    let current_revision = d
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION_ANNOTATION))
        .cloned();
    let new_set_revision = if planner.plan.create.is_some() {
        Some(new_revision.clone())
    } else {
        planner.new.as_ref().map(|s| {
            if s.revision < max_old_revision + 1 {
                new_revision.clone()
            } else {
                s.revision.to_string()
            }
        })
    };
    if !deleting && new_set_revision.is_some() && new_set_revision != current_revision {
        planner.plan.revision = new_set_revision;
    }

    let status = status_of(
        &planner,
        d,
        &stored_status,
        conditions,
        collision_count,
        has_deadline,
        paused,
        now,
    );
    planner.plan.requeue_after = planner
        .plan
        .requeue_after
        .or_else(|| progress_requeue(d, &status, has_deadline, now));
    planner.plan.status = status;
    Ok(planner.plan)
}

/// Annotations a Deployment passes on to its new ReplicaSet.
fn copied_annotations(d: &Deployment) -> BTreeMap<String, String> {
    let mut out = d.metadata.annotations.clone().unwrap_or_default();
    out.retain(|k, _| !NOT_COPIED.contains(&k.as_str()));
    out
}

/// The new ReplicaSet (Kubernetes `getNewReplicaSet`).
fn new_replicaset(d: &Deployment, hash: &str, revision: &str, planner: &Planner<'_>) -> ReplicaSet {
    let spec = d.spec.clone().unwrap_or_default();
    let mut template = spec.template.clone();
    let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(HASH_LABEL.to_owned(), hash.to_owned());
    let labels = meta.labels.clone();
    let mut selector: LabelSelector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(HASH_LABEL.to_owned(), hash.to_owned());
    let name = d.metadata.name.as_deref().unwrap_or_default();
    let mut annotations = copied_annotations(d);
    annotations.insert(REVISION_ANNOTATION.to_owned(), revision.to_owned());
    annotations.extend(planner.replicas_annotations());
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{name}-{hash}")),
            namespace: d.metadata.namespace.clone(),
            labels,
            annotations: Some(annotations),
            owner_references: Some(vec![ownership::controller_ref(
                API_VERSION,
                KIND,
                name,
                d.metadata.uid.as_deref().unwrap_or_default(),
            )]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(planner.new_replicas()),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    }
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Kubernetes `SetDeploymentCondition`: no change when status and reason
/// are the same; the transition time kept when only the reason changes.
fn set_condition(conditions: &mut Vec<DeploymentCondition>, mut c: DeploymentCondition) {
    if let Some(current) = conditions.iter().find(|x| x.type_ == c.type_) {
        if current.status == c.status && current.reason == c.reason {
            return;
        }
        if current.status == c.status {
            c.last_transition_time = current.last_transition_time.clone();
        }
    }
    conditions.retain(|x| x.type_ != c.type_);
    conditions.push(c);
}

fn nonzero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

/// Kubernetes `calculateStatus` and `syncRolloutStatus`.
#[allow(clippy::too_many_arguments)]
fn status_of(
    planner: &Planner<'_>,
    d: &Deployment,
    stored: &DeploymentStatus,
    mut conditions: Vec<DeploymentCondition>,
    collision_count: Option<i32>,
    has_deadline: bool,
    paused: bool,
    now: Timestamp,
) -> DeploymentStatus {
    let desired = planner.desired;
    let (mut replicas, mut ready, mut available) = (0, 0, 0);
    for s in planner.old.iter().chain(planner.new.iter()) {
        replicas += s.status.replicas;
        ready += s.status.ready_replicas.unwrap_or(0);
        available += s.status.available_replicas.unwrap_or(0);
    }
    let updated = planner.new.as_ref().map_or(0, |s| s.status.replicas);
    let unavailable = (planner.total_replicas() - available).max(0);
    let min_available = desired - planner.strategy.max_unavailable(desired);
    if available >= min_available {
        set_condition(
            &mut conditions,
            condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".to_owned(),
                now,
            ),
        );
    } else {
        set_condition(
            &mut conditions,
            condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".to_owned(),
                now,
            ),
        );
    }
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: nonzero(replicas),
        updated_replicas: nonzero(updated),
        ready_replicas: nonzero(ready),
        available_replicas: nonzero(available),
        unavailable_replicas: nonzero(unavailable),
        collision_count,
        conditions: None,
        terminating_replicas: None,
    };
    let paused_condition = conditions
        .iter()
        .any(|c| c.type_ == "Progressing" && c.reason.as_deref() == Some("DeploymentPaused"));
    if paused {
        if !paused_condition {
            set_condition(
                &mut conditions,
                condition(
                    "Progressing",
                    "Unknown",
                    "DeploymentPaused",
                    "Deployment is paused".to_owned(),
                    now,
                ),
            );
        }
    } else if paused_condition {
        set_condition(
            &mut conditions,
            condition(
                "Progressing",
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed".to_owned(),
                now,
            ),
        );
    }
    if !has_deadline {
        conditions.retain(|c| c.type_ != "Progressing");
    }
    let new_name = planner
        .new
        .as_ref()
        .map(|s| s.name.clone())
        .unwrap_or_default();
    let progressing = conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .cloned();
    let is_complete_already = status.replicas == status.updated_replicas
        && progressing.as_ref().and_then(|c| c.reason.as_deref()) == Some("NewReplicaSetAvailable");
    if has_deadline && !paused && !is_complete_already {
        let old_replicas =
            |s: &DeploymentStatus| s.replicas.unwrap_or(0) - s.updated_replicas.unwrap_or(0);
        if complete(d, &status) {
            set_condition(
                &mut conditions,
                condition(
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    format!("ReplicaSet {new_name:?} has successfully progressed."),
                    now,
                ),
            );
        } else if status.updated_replicas.unwrap_or(0) > stored.updated_replicas.unwrap_or(0)
            || old_replicas(&status) < old_replicas(stored)
            || status.ready_replicas.unwrap_or(0) > stored.ready_replicas.unwrap_or(0)
            || status.available_replicas.unwrap_or(0) > stored.available_replicas.unwrap_or(0)
        {
            // Progress moves lastUpdateTime even with the same reason.
            let mut c = condition(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                format!("ReplicaSet {new_name:?} is progressing."),
                now,
            );
            if let Some(current) = progressing.as_ref().filter(|c| c.status == "True") {
                c.last_transition_time = current.last_transition_time.clone();
            }
            conditions.retain(|x| x.type_ != "Progressing");
            conditions.push(c);
        } else if timed_out(d, progressing.as_ref(), now) {
            set_condition(
                &mut conditions,
                condition(
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    format!("ReplicaSet {new_name:?} has timed out progressing."),
                    now,
                ),
            );
        }
    }
    status.conditions = (!conditions.is_empty()).then_some(conditions);
    status
}

fn deadline_of(d: &Deployment) -> i64 {
    i64::from(
        d.spec
            .as_ref()
            .and_then(|s| s.progress_deadline_seconds)
            .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS),
    )
}

/// Kubernetes `DeploymentTimedOut`.
fn timed_out(d: &Deployment, progressing: Option<&DeploymentCondition>, now: Timestamp) -> bool {
    let Some(c) = progressing else {
        return false;
    };
    match c.reason.as_deref() {
        Some("NewReplicaSetAvailable") => false,
        Some("ProgressDeadlineExceeded") => true,
        _ => c.last_update_time.as_ref().is_some_and(|t| {
            t.0.checked_add(jiff::SignedDuration::from_secs(deadline_of(d)))
                .is_ok_and(|deadline| deadline < now)
        }),
    }
}

/// Kubernetes `requeueStuckDeployment`: look again when the progress
/// deadline passes.
fn progress_requeue(
    d: &Deployment,
    status: &DeploymentStatus,
    has_deadline: bool,
    now: Timestamp,
) -> Option<Duration> {
    if !has_deadline || complete(d, status) {
        return None;
    }
    let c = status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Progressing")?;
    if c.reason.as_deref() == Some("ProgressDeadlineExceeded") || c.status != "True" {
        return None;
    }
    let from = c.last_update_time.as_ref()?.0;
    let deadline = from
        .checked_add(jiff::SignedDuration::from_secs(deadline_of(d)))
        .ok()?;
    let wait = deadline.duration_since(now);
    Some(if wait.is_negative() {
        Duration::ZERO
    } else {
        wait.unsigned_abs() + Duration::from_secs(1)
    })
}

#[cfg(test)]
mod tests;
