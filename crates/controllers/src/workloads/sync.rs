//! The workers: one sync function per controller, each reading the caches,
//! running its pure planner and writing the plan.

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions,
};
use serde_json::{Value, json};
use switchboard_api::ResourceType;

use super::events::reference;
use super::expect::{Seen, Want};
use super::{Item, Key, Metrics, Shared, lock};
use crate::controller::is_not_found;
use crate::gc::{self, Owner, Verdict};
use crate::queue::WorkQueue;
use crate::{deployment, nodelifecycle, ownership, replicaset, scheduler};

/// Event sources, as Kubernetes' controllers name themselves.
const RS_COMPONENT: &str = "replicaset-controller";
const DEPLOYMENT_COMPONENT: &str = "deployment-controller";
const SCHEDULER_COMPONENT: &str = "default-scheduler";
const NODE_COMPONENT: &str = "node-controller";

/// What a sync asks of its queue: nothing, or another look after a while.
type Outcome = Result<Option<Duration>, kube::Error>;

/// A worker: take keys from `queue`, sync them, requeue as the sync asks,
/// retry failures with backoff.
pub(super) async fn work<K, F, Fut>(
    queue: &Arc<WorkQueue<K>>,
    metrics: &Metrics,
    controller: &'static str,
    sync: F,
) where
    K: Clone + Eq + Hash + Send + Debug + 'static,
    F: Fn(K) -> Fut,
    Fut: Future<Output = Outcome>,
{
    loop {
        let key = queue.next().await;
        let result = sync(key.clone()).await;
        queue.done(&key);
        let label = match result {
            Ok(None) => {
                queue.forget(&key);
                "success"
            }
            Ok(Some(wait)) => {
                queue.forget(&key);
                queue.add_after(key, wait);
                "requeued"
            }
            Err(e) => {
                let conflict = matches!(&e, kube::Error::Api(s) if s.code == 409);
                if conflict {
                    tracing::debug!(controller, ?key, error = %e, "sync lost a write race; retrying");
                } else {
                    tracing::warn!(controller, ?key, error = %e, "sync failed; retrying");
                }
                queue.add_with_backoff(key);
                "error"
            }
        };
        metrics
            .syncs
            .get_or_create(&[("controller", controller), ("result", label)])
            .inc();
    }
}

fn code_of(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// A merge patch that sets `status` to exactly `status`: fields it lacks
/// are nulled (a merge patch keeps what it does not mention).
fn status_patch<T: serde::Serialize>(status: &T, fields: &[&str]) -> Value {
    let mut v = serde_json::to_value(status).unwrap_or_else(|_| json!({}));
    if let Some(map) = v.as_object_mut() {
        for f in fields {
            map.entry(*f).or_insert(Value::Null);
        }
    }
    json!({ "status": v })
}

const RS_STATUS_FIELDS: &[&str] = &[
    "replicas",
    "fullyLabeledReplicas",
    "readyReplicas",
    "availableReplicas",
    "observedGeneration",
    "conditions",
    "terminatingReplicas",
];

const DEPLOYMENT_STATUS_FIELDS: &[&str] = &[
    "observedGeneration",
    "replicas",
    "updatedReplicas",
    "readyReplicas",
    "availableReplicas",
    "unavailableReplicas",
    "terminatingReplicas",
    "conditions",
    "collisionCount",
];

/// The owner references of an object, replaced under its resourceVersion.
fn owners_patch(resource_version: &str, owners: &[OwnerReference]) -> Patch<Value> {
    Patch::Merge(json!({
        "metadata": { "resourceVersion": resource_version, "ownerReferences": owners }
    }))
}

impl Shared {
    // ---- ReplicaSets

    pub(super) async fn sync_replicaset(&self, key: Key) -> Outcome {
        let ns = key.namespace.as_str();
        let seen = |name: &str| {
            self.pods.get(ns, name).map(|p| Seen {
                resource_version: p.resource_version.to_string(),
                deleting: p.deleting,
            })
        };
        if let Some(wait) = self.pod_expectations.pending(&key, seen) {
            return Ok(Some(wait));
        }
        let Some(rs) = self.replicasets.get(&key.object_ref()) else {
            self.pod_expectations.forget(&key);
            return Ok(None);
        };
        let pods = self.pods.in_namespace(ns);
        let plan = match replicaset::plan_replicaset(&rs, &pods, Timestamp::now()) {
            Ok(plan) => plan,
            Err(e) => {
                tracing::warn!(namespace = ns, replicaset = %key.name, error = %e, "ReplicaSet not synced");
                return Ok(None);
            }
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let uid = rs.metadata.uid.clone().unwrap_or_default();
        let ours =
            ownership::controller_ref(replicaset::API_VERSION, replicaset::KIND, &key.name, &uid);
        let pp = PatchParams::default();
        for name in &plan.adopt {
            let Some(pod) = self.pods.get(ns, name) else {
                continue;
            };
            let owners = ownership::with_owner(&pod.owners, ours.clone());
            api.patch(name, &pp, &owners_patch(&pod.resource_version, &owners))
                .await?;
            self.metrics.write("Pod", "adopt");
        }
        for name in &plan.release {
            let Some(pod) = self.pods.get(ns, name) else {
                continue;
            };
            let owners = ownership::without_owner(&pod.owners, &uid);
            match api
                .patch(name, &pp, &owners_patch(&pod.resource_version, &owners))
                .await
            {
                Ok(_) => self.metrics.write("Pod", "release"),
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e),
            }
        }

        // Creates in growing batches (Kubernetes' slow start): a template
        // the apiserver rejects costs one request, not hundreds.
        let template = replicaset::pod_from_template(&rs);
        let post = PostParams::default();
        let rs_ref = reference(
            replicaset::API_VERSION,
            replicaset::KIND,
            Some(ns),
            &rs.metadata,
        );
        let (mut remaining, mut batch) = (plan.create, 1usize);
        while remaining > 0 {
            let n = batch.min(remaining);
            let made =
                futures::future::join_all((0..n).map(|_| api.create(&post, &template))).await;
            let mut failed = None;
            for result in made {
                match result {
                    Ok(pod) => {
                        self.metrics.write("Pod", "create");
                        if let Some(name) = pod.metadata.name.as_deref() {
                            self.pod_expectations.expect(&key, name, Want::Present);
                            self.events.normal(
                                RS_COMPONENT,
                                rs_ref.clone(),
                                "SuccessfulCreate",
                                format!("Created pod: {name}"),
                            );
                        }
                    }
                    Err(e) => {
                        self.events.warning(
                            RS_COMPONENT,
                            rs_ref.clone(),
                            "FailedCreate",
                            format!("Error creating: {e}"),
                        );
                        failed = Some(e);
                    }
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
            remaining -= n;
            batch = batch.saturating_mul(2);
        }
        // Graceful deletes: the pods turn terminating (their endpoints too)
        // and the agent stops them within their grace period.
        for name in &plan.delete {
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => {
                    self.metrics.write("Pod", "delete");
                    self.pod_expectations.expect(&key, name, Want::Deleting);
                    self.events.normal(
                        RS_COMPONENT,
                        rs_ref.clone(),
                        "SuccessfulDelete",
                        format!("Deleted pod: {name}"),
                    );
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e),
            }
        }

        if rs.status.as_ref() != Some(&plan.status) {
            let rs_api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), ns);
            let patch = Patch::Merge(status_patch(&plan.status, RS_STATUS_FIELDS));
            match rs_api.patch_status(&key.name, &pp, &patch).await {
                Ok(_) => self.metrics.write("ReplicaSet", "status"),
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(plan.requeue_after)
    }

    // ---- Deployments

    pub(super) async fn sync_deployment(&self, key: Key) -> Outcome {
        let ns = key.namespace.as_str();
        let seen = |name: &str| {
            self.replicasets
                .get(&kube::runtime::reflector::ObjectRef::new(name).within(ns))
                .map(|rs| Seen {
                    resource_version: rs.metadata.resource_version.clone().unwrap_or_default(),
                    deleting: rs.metadata.deletion_timestamp.is_some(),
                })
        };
        if let Some(wait) = self.rs_expectations.pending(&key, seen) {
            return Ok(Some(wait));
        }
        let Some(d) = self.deployments.get(&key.object_ref()) else {
            self.rs_expectations.forget(&key);
            return Ok(None);
        };
        let sets: Vec<Arc<ReplicaSet>> = self
            .replicasets
            .state()
            .into_iter()
            .filter(|rs| rs.metadata.namespace.as_deref() == Some(ns))
            .collect();
        let mut pods: HashMap<String, usize> = HashMap::new();
        for rs in &sets {
            if let Some(uid) = rs.metadata.uid.as_deref() {
                let n = self
                    .pods
                    .owned_by(uid)
                    .iter()
                    .filter(|p| !p.phase.is_terminal())
                    .count();
                pods.insert(uid.to_owned(), n);
            }
        }
        let plan = match deployment::plan_deployment(&d, &sets, &pods, Timestamp::now()) {
            Ok(plan) => plan,
            Err(e) => {
                tracing::warn!(namespace = ns, deployment = %key.name, error = %e, "Deployment not synced");
                return Ok(None);
            }
        };
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), ns);
        let pp = PatchParams::default();
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let ours =
            ownership::controller_ref(deployment::API_VERSION, deployment::KIND, &key.name, &uid);
        let find = |name: &str| {
            sets.iter()
                .find(|rs| rs.metadata.name.as_deref() == Some(name))
        };
        let d_ref = reference(
            deployment::API_VERSION,
            deployment::KIND,
            Some(ns),
            &d.metadata,
        );
        for name in &plan.adopt {
            let Some(rs) = find(name) else { continue };
            let owners = rs.metadata.owner_references.clone().unwrap_or_default();
            let owners = ownership::with_owner(&owners, ours.clone());
            let rv = rs.metadata.resource_version.clone().unwrap_or_default();
            let made = api.patch(name, &pp, &owners_patch(&rv, &owners)).await?;
            self.metrics.write("ReplicaSet", "adopt");
            self.expect_version(&key, &made.metadata);
        }
        for name in &plan.release {
            let Some(rs) = find(name) else { continue };
            let owners = rs.metadata.owner_references.clone().unwrap_or_default();
            let owners = ownership::without_owner(&owners, &uid);
            let rv = rs.metadata.resource_version.clone().unwrap_or_default();
            let made = api.patch(name, &pp, &owners_patch(&rv, &owners)).await?;
            self.metrics.write("ReplicaSet", "release");
            self.expect_version(&key, &made.metadata);
        }
        if let Some(rs) = &plan.create {
            let name = rs.metadata.name.clone().unwrap_or_default();
            match api.create(&PostParams::default(), rs).await {
                Ok(made) => {
                    self.metrics.write("ReplicaSet", "create");
                    self.expect_version(&key, &made.metadata);
                    let to = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                    self.events.normal(
                        DEPLOYMENT_COMPONENT,
                        d_ref.clone(),
                        "ScalingReplicaSet",
                        format!("Scaled up replica set {name} from 0 to {to}"),
                    );
                }
                // Created by an earlier sync whose event has not arrived:
                // wait for the cache rather than decide without it.
                Err(e) if code_of(&e) == Some(409) => {
                    self.rs_expectations.expect(&key, &name, Want::Present);
                    return Ok(Some(Duration::ZERO));
                }
                Err(e) => return Err(e),
            }
        }
        for w in &plan.update {
            let mut spec = serde_json::Map::new();
            if let Some(n) = w.replicas {
                spec.insert("replicas".into(), json!(n));
            }
            if let Some(m) = w.min_ready_seconds {
                spec.insert("minReadySeconds".into(), json!(m));
            }
            let mut patch = json!({ "metadata": { "resourceVersion": w.resource_version } });
            if !w.annotations.is_empty() {
                patch["metadata"]["annotations"] = json!(w.annotations);
            }
            if !spec.is_empty() {
                patch["spec"] = Value::Object(spec);
            }
            let made = api.patch(&w.name, &pp, &Patch::Merge(patch)).await?;
            self.metrics.write("ReplicaSet", "update");
            self.expect_version(&key, &made.metadata);
            let from = find(&w.name)
                .and_then(|rs| rs.spec.as_ref())
                .and_then(|s| s.replicas)
                .unwrap_or(0);
            if let Some(to) = w.replicas.filter(|to| *to != from) {
                let way = if to > from { "up" } else { "down" };
                self.events.normal(
                    DEPLOYMENT_COMPONENT,
                    d_ref.clone(),
                    "ScalingReplicaSet",
                    format!("Scaled {way} replica set {} from {from} to {to}", w.name),
                );
            }
        }
        for name in &plan.delete {
            let Some(rs) = find(name) else { continue };
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: rs.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::background()
            };
            match api.delete(name, &dp).await {
                Ok(_) => {
                    self.metrics.write("ReplicaSet", "delete");
                    self.rs_expectations.expect(&key, name, Want::Deleting);
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e),
            }
        }
        let d_api: Api<Deployment> = Api::namespaced(self.client.clone(), ns);
        if let Some(revision) = &plan.revision {
            let patch = json!({
                "metadata": { "annotations": { deployment::REVISION_ANNOTATION: revision } }
            });
            match d_api.patch(&key.name, &pp, &Patch::Merge(patch)).await {
                Ok(_) => self.metrics.write("Deployment", "update"),
                Err(e) if is_not_found(&e) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        if d.status.as_ref() != Some(&plan.status) {
            let patch = Patch::Merge(status_patch(&plan.status, DEPLOYMENT_STATUS_FIELDS));
            match d_api.patch_status(&key.name, &pp, &patch).await {
                Ok(_) => self.metrics.write("Deployment", "status"),
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(plan.requeue_after)
    }

    fn expect_version(&self, key: &Key, meta: &ObjectMeta) {
        if let (Some(name), Some(rv)) = (meta.name.as_deref(), meta.resource_version.as_deref()) {
            self.rs_expectations
                .expect(key, name, Want::Version(rv.to_owned()));
        }
    }

    // ---- the scheduler

    pub(super) async fn schedule(&self, key: Key) -> Outcome {
        let Some(pod) = self.pods.get(&key.namespace, &key.name) else {
            lock(&self.unschedulable).remove(&key);
            return Ok(None);
        };
        if !scheduler::wants_scheduling(&pod, &self.scheduler_name)
            || lock(&self.assumed).contains_key(&key)
        {
            return Ok(None);
        }
        let nodes: Vec<Arc<Node>> = self.nodes.state();
        let mut counts = self.pods.node_counts();
        for node in lock(&self.assumed).values() {
            *counts.entry(node.clone()).or_default() += 1;
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        let pod_ref = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some(key.namespace.clone()),
            name: Some(key.name.clone()),
            uid: Some(pod.uid.to_string()),
            ..Default::default()
        };
        match scheduler::choose_node(&pod, &nodes, &counts) {
            Ok(node) => {
                let binding = Binding {
                    metadata: ObjectMeta {
                        name: Some(key.name.clone()),
                        namespace: Some(key.namespace.clone()),
                        uid: Some(pod.uid.to_string()),
                        ..Default::default()
                    },
                    target: ObjectReference {
                        api_version: Some("v1".into()),
                        kind: Some("Node".into()),
                        name: Some(node.clone()),
                        ..Default::default()
                    },
                };
                let bound: Result<Value, _> = api
                    .create_subresource("binding", &key.name, &PostParams::default(), &binding)
                    .await;
                match bound {
                    Ok(_) => {
                        self.metrics.write("Pod", "bind");
                        self.metrics
                            .schedule_attempts
                            .get_or_create(&[("result", "scheduled")])
                            .inc();
                        tracing::debug!(namespace = %key.namespace, pod = %key.name, node, "bound");
                        self.events.normal(
                            SCHEDULER_COMPONENT,
                            pod_ref,
                            "Scheduled",
                            format!(
                                "Successfully assigned {}/{} to {node}",
                                key.namespace, key.name
                            ),
                        );
                        lock(&self.unschedulable).remove(&key);
                        // Unless the cache already shows the binding.
                        if self
                            .pods
                            .get(&key.namespace, &key.name)
                            .is_some_and(|p| p.node_name.is_none())
                        {
                            lock(&self.assumed).insert(key, node);
                        }
                        Ok(None)
                    }
                    // Bound meanwhile (409) or gone (404): nothing to do.
                    Err(e) if matches!(code_of(&e), Some(404 | 409)) => Ok(None),
                    Err(e) => {
                        self.metrics
                            .schedule_attempts
                            .get_or_create(&[("result", "error")])
                            .inc();
                        Err(e)
                    }
                }
            }
            Err(unfit) => {
                lock(&self.unschedulable).insert(key.clone());
                self.metrics
                    .schedule_attempts
                    .get_or_create(&[("result", "unschedulable")])
                    .inc();
                let current = pod.scheduled.as_ref();
                let same = current.is_some_and(|c| {
                    &*c.status == "False"
                        && c.reason.as_deref() == Some("Unschedulable")
                        && c.message.as_deref() == Some(unfit.message.as_str())
                });
                if same {
                    return Ok(None);
                }
                self.events.warning(
                    SCHEDULER_COMPONENT,
                    pod_ref,
                    "FailedScheduling",
                    unfit.message.clone(),
                );
                let condition = PodCondition {
                    type_: "PodScheduled".into(),
                    status: "False".into(),
                    reason: Some("Unschedulable".into()),
                    message: Some(unfit.message.clone()),
                    last_transition_time: Some(Time(Timestamp::now())),
                    ..Default::default()
                };
                match self.set_pod_condition(&api, &key.name, condition).await {
                    Ok(()) => Ok(None),
                    Err(e) if is_not_found(&e) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Sets one condition of a pod's status, read-modify-write under its
    /// resourceVersion (a merge patch would replace the whole list).
    async fn set_pod_condition(
        &self,
        api: &Api<Pod>,
        name: &str,
        mut condition: PodCondition,
    ) -> Result<(), kube::Error> {
        let mut pod = api.get(name).await?;
        let status = pod.status.get_or_insert_with(Default::default);
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
            Some(c) => {
                if c.status == condition.status {
                    condition.last_transition_time = c.last_transition_time.clone();
                }
                *c = condition;
            }
            None => conditions.push(condition),
        }
        api.replace_status(name, &PostParams::default(), &pod)
            .await?;
        self.metrics.write("Pod", "status");
        Ok(())
    }

    // ---- node lifecycle

    pub(super) async fn sync_node(&self, name: String) -> Outcome {
        let Some(cached) = self
            .nodes
            .get(&kube::runtime::reflector::ObjectRef::new(&name))
        else {
            lock(&self.node_ready).remove(&name);
            return Ok(None);
        };
        let was_ready = lock(&self.node_ready)
            .get(&name)
            .copied()
            .unwrap_or_else(|| nodelifecycle::is_ready(&cached));
        let api: Api<Node> = Api::all(self.client.clone());
        let mut requeue = None;
        let mut ready_now = nodelifecycle::is_ready(&cached);
        match nodelifecycle::decide(&cached, Timestamp::now(), self.node_grace) {
            nodelifecycle::Decision::Fresh { recheck_after } => requeue = Some(recheck_after),
            nodelifecycle::Decision::AlreadyUnknown => {}
            nodelifecycle::Decision::MarkUnknown { .. } => {
                // Decide again on the stored node: the agent may have just
                // reported.
                let mut node = match api.get_status(&name).await {
                    Ok(node) => node,
                    Err(e) if is_not_found(&e) => return Ok(None),
                    Err(e) => return Err(e),
                };
                match nodelifecycle::decide(&node, Timestamp::now(), self.node_grace) {
                    nodelifecycle::Decision::MarkUnknown { conditions } => {
                        node.status.get_or_insert_with(Default::default).conditions =
                            Some(conditions);
                        api.replace_status(&name, &PostParams::default(), &node)
                            .await?;
                        self.metrics.write("Node", "status");
                        tracing::info!(node = %name, "node stopped heart-beating; Ready is Unknown");
                        self.events.normal(
                            NODE_COMPONENT,
                            reference("v1", "Node", None, &node.metadata),
                            "NodeNotReady",
                            format!("Node {name} status is now: NodeNotReady"),
                        );
                        ready_now = false;
                    }
                    nodelifecycle::Decision::Fresh { recheck_after } => {
                        requeue = Some(recheck_after);
                        ready_now = nodelifecycle::is_ready(&node);
                    }
                    nodelifecycle::Decision::AlreadyUnknown => ready_now = false,
                }
            }
        }
        lock(&self.node_ready).insert(name.clone(), ready_now);
        let must_mark = (was_ready && !ready_now) || lock(&self.nodes_to_mark).contains(&name);
        if must_mark && !ready_now {
            lock(&self.nodes_to_mark).insert(name.clone());
            self.mark_pods_not_ready(&name).await?;
            lock(&self.nodes_to_mark).remove(&name);
        } else if ready_now {
            lock(&self.nodes_to_mark).remove(&name);
        }
        Ok(requeue)
    }

    /// Kubernetes `MarkPodsNotReady`: the `Ready` condition of every pod on
    /// the node turns `False`.
    async fn mark_pods_not_ready(&self, node: &str) -> Result<(), kube::Error> {
        let on_node: Vec<_> = self
            .pods
            .all()
            .into_iter()
            .filter(|p| p.node_name.as_deref() == Some(node) && p.ready)
            .collect();
        for pod in on_node {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
            let mut current = match api.get(&pod.name).await {
                Ok(p) => p,
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(e),
            };
            let Some(status) =
                nodelifecycle::pod_not_ready(current.status.as_ref(), Timestamp::now())
            else {
                continue;
            };
            current.status = Some(status);
            match api
                .replace_status(&pod.name, &PostParams::default(), &current)
                .await
            {
                Ok(_) => {
                    self.metrics.write("Pod", "status");
                    tracing::info!(namespace = %pod.namespace, pod = %pod.name, node, "node not ready; pod marked not ready");
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    // ---- the garbage collector

    pub(super) async fn collect(&self, (item, key): (Item, Key)) -> Outcome {
        match item {
            Item::Pod | Item::ReplicaSet => self.collect_dependent(item, &key).await,
            Item::OrphaningDeployment | Item::OrphaningReplicaSet => self.orphan(item, &key).await,
        }
    }

    async fn collect_dependent(&self, item: Item, key: &Key) -> Outcome {
        let (owners, uid) = match item {
            Item::Pod => {
                let Some(pod) = self.pods.get(&key.namespace, &key.name) else {
                    return Ok(None);
                };
                if pod.deleting {
                    return Ok(None);
                }
                (pod.owners.to_vec(), pod.uid.to_string())
            }
            _ => {
                let Some(rs) = self.replicasets.get(&key.object_ref()) else {
                    return Ok(None);
                };
                if rs.metadata.deletion_timestamp.is_some() {
                    return Ok(None);
                }
                (
                    rs.metadata.owner_references.clone().unwrap_or_default(),
                    rs.metadata.uid.clone().unwrap_or_default(),
                )
            }
        };
        match self.owners_verdict(&key.namespace, &owners).await {
            Verdict::Keep => return Ok(None),
            Verdict::Retry => return Ok(Some(Duration::from_secs(5))),
            Verdict::Delete => {}
        }
        // The cache may lag (say, the references were just removed by
        // orphaning): decide again on the stored object, and delete only
        // that version of it.
        let live = match item {
            Item::Pod => Api::<Pod>::namespaced(self.client.clone(), &key.namespace)
                .get_metadata_opt(&key.name)
                .await?
                .map(|m| m.metadata),
            _ => Api::<ReplicaSet>::namespaced(self.client.clone(), &key.namespace)
                .get_metadata_opt(&key.name)
                .await?
                .map(|m| m.metadata),
        };
        let Some(live) = live.filter(|m| m.uid.as_deref() == Some(uid.as_str())) else {
            return Ok(None);
        };
        if live.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let live_owners = live.owner_references.clone().unwrap_or_default();
        if live_owners != owners
            && self.owners_verdict(&key.namespace, &live_owners).await != Verdict::Delete
        {
            return Ok(None);
        }
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid),
                resource_version: live.resource_version.clone(),
            }),
            ..DeleteParams::background()
        };
        let result = match item {
            Item::Pod => Api::<Pod>::namespaced(self.client.clone(), &key.namespace)
                .delete(&key.name, &dp)
                .await
                .map(|_| "Pod"),
            _ => Api::<ReplicaSet>::namespaced(self.client.clone(), &key.namespace)
                .delete(&key.name, &dp)
                .await
                .map(|_| "ReplicaSet"),
        };
        match result {
            Ok(kind) => {
                self.metrics.write(kind, "collect");
                tracing::debug!(namespace = %key.namespace, name = %key.name, kind, "owners gone; deleted");
                Ok(None)
            }
            Err(e) if is_not_found(&e) => Ok(None),
            // Changed since it was read (409): look again.
            Err(e) => Err(e),
        }
    }

    /// [`gc::verdict`] over the owners' current states.
    async fn owners_verdict(&self, namespace: &str, owners: &[OwnerReference]) -> Verdict {
        let mut states = Vec::with_capacity(owners.len());
        for o in owners {
            states.push(self.owner_state(namespace, o).await);
        }
        let mut states = states.into_iter();
        gc::verdict(owners, |_| states.next().unwrap_or(Owner::Unknown))
    }

    /// Whether the owner a reference names exists: the cache answers for
    /// the kinds it holds when it has the owner; otherwise (it may lag, or
    /// the kind is not cached) the apiserver does. Kinds the apiserver does
    /// not serve count as present: never delete what cannot be checked.
    async fn owner_state(&self, namespace: &str, o: &OwnerReference) -> Owner {
        let cached = match (o.api_version.as_str(), o.kind.as_str()) {
            ("apps/v1", "Deployment") => self
                .deployments
                .get(&kube::runtime::reflector::ObjectRef::new(&o.name).within(namespace))
                .and_then(|d| d.metadata.uid.clone()),
            ("apps/v1", "ReplicaSet") => self
                .replicasets
                .get(&kube::runtime::reflector::ObjectRef::new(&o.name).within(namespace))
                .and_then(|rs| rs.metadata.uid.clone()),
            _ => None,
        };
        if cached.as_deref() == Some(o.uid.as_str()) {
            return Owner::Present;
        }
        let Some(rt) = ResourceType::from_kind(&o.api_version, &o.kind) else {
            tracing::debug!(api_version = %o.api_version, kind = %o.kind, "owner kind not served; kept");
            return Owner::Present;
        };
        let ar = ApiResource {
            group: rt.group.to_owned(),
            version: rt.version.to_owned(),
            api_version: rt.api_version(),
            kind: rt.kind.to_owned(),
            plural: rt.plural.to_owned(),
        };
        let api: Api<DynamicObject> = if rt.namespaced {
            Api::namespaced_with(self.client.clone(), namespace, &ar)
        } else {
            Api::all_with(self.client.clone(), &ar)
        };
        match api.get_opt(&o.name).await {
            Ok(Some(obj)) if obj.metadata.uid.as_deref() == Some(o.uid.as_str()) => Owner::Present,
            Ok(_) => Owner::Absent,
            Err(e) => {
                tracing::debug!(error = %e, owner = %o.name, "owner lookup failed");
                Owner::Unknown
            }
        }
    }

    /// An owner being deleted with the `orphan` finalizer: drop the
    /// references to it from its dependents, then the finalizer.
    async fn orphan(&self, item: Item, key: &Key) -> Outcome {
        let pp = PatchParams::default();
        let ns = key.namespace.as_str();
        let (meta, kind) = match item {
            Item::OrphaningDeployment => match self.deployments.get(&key.object_ref()) {
                Some(d) => (d.metadata.clone(), deployment::KIND),
                None => return Ok(None),
            },
            _ => match self.replicasets.get(&key.object_ref()) {
                Some(rs) => (rs.metadata.clone(), replicaset::KIND),
                None => return Ok(None),
            },
        };
        if !gc::orphaning(&meta) {
            return Ok(None);
        }
        let uid = meta.uid.clone().unwrap_or_default();
        if kind == deployment::KIND {
            let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), ns);
            for rs in self.replicasets.state() {
                let owners = rs.metadata.owner_references.clone().unwrap_or_default();
                if rs.metadata.namespace.as_deref() != Some(ns)
                    || !owners.iter().any(|o| o.uid == uid)
                {
                    continue;
                }
                let rv = rs.metadata.resource_version.clone().unwrap_or_default();
                let name = rs.metadata.name.clone().unwrap_or_default();
                let left = ownership::without_owner(&owners, &uid);
                match api.patch(&name, &pp, &owners_patch(&rv, &left)).await {
                    Ok(_) => self.metrics.write("ReplicaSet", "orphan"),
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(e),
                }
            }
        } else {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
            for pod in self.pods.owned_by(&uid) {
                let left = ownership::without_owner(&pod.owners, &uid);
                match api
                    .patch(&pod.name, &pp, &owners_patch(&pod.resource_version, &left))
                    .await
                {
                    Ok(_) => self.metrics.write("Pod", "orphan"),
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let finalizers: Vec<String> = meta
            .finalizers
            .unwrap_or_default()
            .into_iter()
            .filter(|f| f != gc::ORPHAN_FINALIZER)
            .collect();
        let patch = Patch::Merge(json!({
            "metadata": {
                "resourceVersion": meta.resource_version,
                "finalizers": finalizers,
            }
        }));
        let removed = if kind == deployment::KIND {
            Api::<Deployment>::namespaced(self.client.clone(), ns)
                .patch(&key.name, &pp, &patch)
                .await
                .map(|_| ())
        } else {
            Api::<ReplicaSet>::namespaced(self.client.clone(), ns)
                .patch(&key.name, &pp, &patch)
                .await
                .map(|_| ())
        };
        match removed {
            Ok(()) => Ok(None),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
