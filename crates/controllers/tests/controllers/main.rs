//! The workload controllers against the real apiserver (kube-rs over TLS on
//! loopback, the embedded store in a temporary directory). There is no node
//! agent here: the tests create the Node and set pod readiness through the
//! status subresource, as an agent would.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use switchboard_testkit::wait_for;

struct Cluster {
    _api: switchboard_testkit::InProcess,
    _controllers: tokio::task::JoinHandle<()>,
    client: kube::Client,
}

async fn start(node_grace: Duration) -> Cluster {
    let api = switchboard_testkit::InProcess::start()
        .await
        .expect("an in-process apiserver");
    let client = api.client.clone();
    let controllers = switchboard_controllers::Config {
        workloads: Some(switchboard_controllers::workloads::Config {
            node_grace,
            ..Default::default()
        }),
        ..Default::default()
    };
    let c = client.clone();
    let handle = tokio::spawn(async move {
        if let Err(e) = switchboard_controllers::run(c, controllers).await {
            panic!("the controllers stopped: {e}");
        }
    });
    Cluster {
        _api: api,
        _controllers: handle,
        client,
    }
}

const WAIT: Duration = Duration::from_secs(20);

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// A Node with a fresh Ready heartbeat, as an agent registers it.
async fn node(client: &kube::Client, name: &str, labels: serde_json::Value) {
    let nodes: Api<Node> = Api::all(client.clone());
    let n: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
    }))
    .expect("a valid Node");
    nodes
        .create(&PostParams::default(), &n)
        .await
        .expect("the Node is created");
    heartbeat(client, name).await;
}

async fn heartbeat(client: &kube::Client, name: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let status = json!({"status": {"conditions": [{
        "type": "Ready", "status": "True", "reason": "KubeletReady",
        "message": "agent is posting ready status",
        "lastHeartbeatTime": now(), "lastTransitionTime": now(),
    }]}});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .expect("the Node status is written");
}

/// Marks a pod Running and Ready, as its agent would.
async fn make_ready(pods: &Api<Pod>, name: &str, ip: &str) {
    let status = json!({"status": {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "True", "lastTransitionTime": now()},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now()},
        ],
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .expect("the pod status is written");
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn web_deployment(version: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "web",
                        "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
                        "args": ["serve-hostname"],
                        "env": [{"name": "VERSION", "value": version}],
                    }],
                },
            },
        },
    }))
    .expect("a valid Deployment")
}

async fn web_pods(pods: &Api<Pod>) -> Vec<Pod> {
    pods.list(&ListParams::default().labels("app=web"))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

fn name_of<K: kube::Resource>(o: &K) -> String {
    o.meta().name.clone().unwrap_or_default()
}

fn hash_of(pod: &Pod) -> Option<String> {
    pod.metadata
        .labels
        .as_ref()?
        .get("pod-template-hash")
        .cloned()
}

async fn has_event(events: &Api<Event>, kind: &str, reason: &str) -> Option<()> {
    let list = events.list(&ListParams::default()).await.ok()?;
    list.items
        .iter()
        .any(|e| {
            e.reason.as_deref() == Some(reason) && e.involved_object.kind.as_deref() == Some(kind)
        })
        .then_some(())
}

/// Ready endpoints of the `web` Service (what the proxy routes to).
async fn ready_endpoints(slices: &Api<EndpointSlice>) -> usize {
    let lp = ListParams::default().labels("kubernetes.io/service-name=web");
    slices
        .list(&lp)
        .await
        .map(|l| {
            l.items
                .iter()
                .flat_map(|s| s.endpoints.iter())
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                .count()
        })
        .unwrap_or(0)
}

/// Serving pods: ready and not being deleted (what endpoints route to).
fn serving(pods: &[Pod]) -> usize {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
        .count()
}

/// The new ReplicaSet's hash once the rollout away from `hash1` is done.
async fn rolled_over(
    replicasets: &Api<ReplicaSet>,
    deployments: &Api<Deployment>,
    hash1: &str,
) -> Option<String> {
    let old_name = format!("web-{hash1}");
    let sets = replicasets.list(&ListParams::default()).await.ok()?.items;
    let old = sets.iter().find(|rs| name_of(*rs) == old_name)?;
    let new = sets.iter().find(|rs| name_of(*rs) != old_name)?;
    let st = deployments.get("web").await.ok()?.status?;
    let done = old.spec.as_ref()?.replicas == Some(0)
        && new.status.as_ref()?.available_replicas == Some(3)
        && st.updated_replicas == Some(3)
        && st.available_replicas == Some(3)
        && st.conditions.iter().flatten().any(|c| {
            c.type_ == "Progressing" && c.reason.as_deref() == Some("NewReplicaSetAvailable")
        });
    done.then(|| {
        new.metadata
            .labels
            .as_ref()?
            .get("pod-template-hash")
            .cloned()
    })
    .flatten()
}

#[tokio::test]
async fn a_deployment_rolls_out_rolls_over_and_is_collected() {
    let cluster = start(Duration::from_secs(300)).await;
    let client = &cluster.client;
    node(
        client,
        "node-1",
        json!({"kubernetes.io/hostname": "node-1"}),
    )
    .await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 9376}]},
    }))
    .expect("a valid Service");
    services
        .create(&PostParams::default(), &svc)
        .await
        .expect("the Service is created");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    deployments
        .create(&PostParams::default(), &web_deployment("1"))
        .await
        .expect("the Deployment is created");

    // One ReplicaSet, three pods, all bound to the node.
    let first = wait_for(WAIT, "three bound pods", || async {
        let ps = web_pods(&pods).await;
        let bound = ps
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("node-1"))
            .count();
        (ps.len() == 3 && bound == 3).then_some(ps)
    })
    .await
    .expect("the pods are created and scheduled");
    let rs_list = replicasets
        .list(&ListParams::default())
        .await
        .expect("ReplicaSets list");
    assert_eq!(rs_list.items.len(), 1);
    let rs1 = &rs_list.items[0];
    let hash1 = rs1
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("pod-template-hash"))
        .cloned()
        .expect("the ReplicaSet has the hash label");
    assert_eq!(name_of(rs1), format!("web-{hash1}"));
    assert!(
        first
            .iter()
            .all(|p| hash_of(p).as_deref() == Some(hash1.as_str()))
    );
    assert!(
        first
            .iter()
            .all(|p| name_of(p).starts_with(&format!("web-{hash1}-")))
    );

    for (i, p) in first.iter().enumerate() {
        make_ready(&pods, &name_of(p), &format!("127.244.0.{}", i + 1)).await;
    }
    wait_for(WAIT, "availableReplicas 3", || async {
        let d = deployments.get("web").await.ok()?;
        let st = d.status?;
        let available = st.conditions.iter().flatten().any(|c| {
            c.type_ == "Available"
                && c.status == "True"
                && c.reason.as_deref() == Some("MinimumReplicasAvailable")
        });
        (st.available_replicas == Some(3) && available && st.updated_replicas == Some(3))
            .then_some(())
    })
    .await
    .expect("the Deployment becomes available");
    let d = deployments.get("web").await.expect("the Deployment");
    assert_eq!(
        d.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("deployment.kubernetes.io/revision"))
            .map(String::as_str),
        Some("1")
    );

    // Roll over: change the template; make new pods ready as they come.
    let patch = json!({"spec": {"template": {"spec": {"containers": [{
        "name": "web",
        "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
        "args": ["serve-hostname"],
        "env": [{"name": "VERSION", "value": "2"}],
    }]}}}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .expect("the template changes");
    wait_for(WAIT, "three ready endpoints", || async {
        (ready_endpoints(&slices).await == 3).then_some(())
    })
    .await
    .expect("the endpoints follow the pods");
    let mut lowest = usize::MAX;
    let mut lowest_endpoints = usize::MAX;
    let mut most = 0;
    let mut next_ip = 10;
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let hash2 = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for the rollout; pods: {:?}",
            web_pods(&pods)
                .await
                .iter()
                .map(name_of)
                .collect::<Vec<_>>()
        );
        let ps = web_pods(&pods).await;
        lowest = lowest.min(serving(&ps));
        lowest_endpoints = lowest_endpoints.min(ready_endpoints(&slices).await);
        let alive = ps
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .count();
        most = most.max(alive);
        for p in &ps {
            let new = hash_of(p).is_some_and(|h| h != hash1);
            let bound = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
            if new && bound && !is_ready(p) && p.metadata.deletion_timestamp.is_none() {
                next_ip += 1;
                make_ready(&pods, &name_of(p), &format!("127.244.0.{next_ip}")).await;
            }
        }
        if let Some(hash) = rolled_over(&replicasets, &deployments, &hash1).await {
            break hash;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_ne!(hash2, hash1);
    assert_eq!(lowest, 3, "three pods served throughout the rollout");
    assert_eq!(
        lowest_endpoints, 3,
        "the Service kept three ready endpoints throughout the rollout"
    );
    assert!(most <= 4, "at most one surge pod, saw {most}");
    let d = deployments.get("web").await.expect("the Deployment");
    assert_eq!(
        d.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("deployment.kubernetes.io/revision"))
            .map(String::as_str),
        Some("2")
    );

    let sets = replicasets
        .list(&ListParams::default())
        .await
        .expect("ReplicaSets list");
    assert_eq!(sets.items.len(), 2, "one old, one new ReplicaSet");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    for (kind, reason) in [
        ("Deployment", "ScalingReplicaSet"),
        ("ReplicaSet", "SuccessfulCreate"),
        ("ReplicaSet", "SuccessfulDelete"),
        ("Pod", "Scheduled"),
    ] {
        wait_for(WAIT, reason, || has_event(&events, kind, reason))
            .await
            .expect("the controllers record Events");
    }

    // Scale down through /scale: surplus pods are deleted gracefully.
    deployments
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .expect("the Deployment scales");
    wait_for(WAIT, "two pods left serving", || async {
        let ps = web_pods(&pods).await;
        let alive = ps
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .count();
        let st = deployments.get("web").await.ok()?.status?;
        (alive == 2 && serving(&ps) == 2 && st.available_replicas == Some(2)).then_some(())
    })
    .await
    .expect("the Deployment scales down to two");

    // Deleting the Deployment collects its ReplicaSets, then their pods.
    deployments
        .delete("web", &DeleteParams::background())
        .await
        .expect("the Deployment is deleted");
    wait_for(WAIT, "the ReplicaSets and pods to go", || async {
        let sets = replicasets.list(&ListParams::default()).await.ok()?.items;
        let ps = web_pods(&pods).await;
        (sets.is_empty() && ps.is_empty()).then_some(())
    })
    .await
    .expect("the garbage collector deletes the dependents");
}

#[tokio::test]
async fn a_pod_no_node_fits_is_unschedulable_until_one_does() {
    let cluster = start(Duration::from_secs(300)).await;
    let client = &cluster.client;
    node(client, "node-1", json!({"disk": "hdd"})).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "picky"},
        "spec": {
            "nodeSelector": {"disk": "ssd"},
            "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "1000"]}],
        },
    }))
    .expect("a valid Pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("the pod is created");
    let condition = wait_for(WAIT, "PodScheduled=False", || async {
        let p = pods.get("picky").await.ok()?;
        p.status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
    })
    .await
    .expect("the scheduler reports the pod unschedulable");
    assert_eq!(condition.reason.as_deref(), Some("Unschedulable"));
    assert_eq!(
        condition.message.as_deref(),
        Some("0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.")
    );
    let p = pods.get("picky").await.expect("the pod");
    assert_eq!(p.spec.and_then(|s| s.node_name), None);
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    wait_for(WAIT, "FailedScheduling", || {
        has_event(&events, "Pod", "FailedScheduling")
    })
    .await
    .expect("the scheduler records an Event");

    // A node that fits appears: the pod is bound to it.
    node(client, "node-2", json!({"disk": "ssd"})).await;
    wait_for(WAIT, "the pod bound to node-2", || async {
        let p = pods.get("picky").await.ok()?;
        (p.spec?.node_name.as_deref() == Some("node-2")).then_some(())
    })
    .await
    .expect("the pod is scheduled once a node fits");
}

#[tokio::test]
async fn a_silent_node_turns_unknown_and_its_pods_not_ready() {
    let cluster = start(Duration::from_secs(2)).await;
    let client = &cluster.client;
    node(client, "node-1", json!({})).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p1"},
        "spec": {
            "nodeName": "node-1",
            "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "1000"]}],
        },
    }))
    .expect("a valid Pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("the pod is created");
    make_ready(&pods, "p1", "127.244.0.9").await;

    let nodes: Api<Node> = Api::all(client.clone());
    let ready = wait_for(WAIT, "Ready=Unknown", || async {
        let n = nodes.get("node-1").await.ok()?;
        n.status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "Ready" && c.status == "Unknown")
    })
    .await
    .expect("the node lifecycle controller notices the silence");
    assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
    assert_eq!(
        ready.message.as_deref(),
        Some("Kubelet stopped posting node status.")
    );
    wait_for(WAIT, "the pod not ready", || async {
        let p = pods.get("p1").await.ok()?;
        (!is_ready(&p)).then_some(())
    })
    .await
    .expect("the pods of the node are marked not ready");

    // The agent comes back: the node is ready again (the pod is its
    // agent's to report).
    heartbeat(client, "node-1").await;
    let n = nodes.get("node-1").await.expect("the node");
    assert!(
        n.status
            .and_then(|s| s.conditions)
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    );
}

#[tokio::test]
async fn a_hundred_replicas_are_created_once_and_spread() {
    let cluster = start(Duration::from_secs(300)).await;
    let client = &cluster.client;
    node(client, "node-1", json!({})).await;
    node(client, "node-2", json!({})).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut d = web_deployment("1");
    if let Some(spec) = d.spec.as_mut() {
        spec.replicas = Some(100);
    }
    let started = std::time::Instant::now();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .expect("the Deployment is created");
    let ps = wait_for(WAIT, "100 bound pods", || async {
        let ps = web_pods(&pods).await;
        let bound = ps
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
            .count();
        (bound == 100).then_some(ps)
    })
    .await
    .expect("every pod is created and scheduled");
    eprintln!("100 pods created and bound in {:?}", started.elapsed());
    assert_eq!(ps.len(), 100, "no pod created twice");
    let on_first = ps
        .iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("node-1"))
        .count();
    assert_eq!(on_first, 50, "least-pods spreads evenly");
    // Nothing more comes. An absence can only be observed over a while;
    // a duplicate create would show within milliseconds.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(web_pods(&pods).await.len(), 100);
}

#[tokio::test]
async fn an_owner_deleted_with_the_orphan_finalizer_leaves_its_pods() {
    let cluster = start(Duration::from_secs(300)).await;
    let client = &cluster.client;
    node(client, "node-1", json!({})).await;
    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // What `propagationPolicy: Orphan` makes of an owner in Kubernetes.
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "keep", "finalizers": ["orphan"]},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "keep"}},
            "template": {
                "metadata": {"labels": {"app": "keep"}},
                "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "1000"]}]},
            },
        },
    }))
    .expect("a valid ReplicaSet");
    replicasets
        .create(&PostParams::default(), &rs)
        .await
        .expect("the ReplicaSet is created");
    let lp = ListParams::default().labels("app=keep");
    wait_for(WAIT, "two pods", || async {
        (pods.list(&lp).await.ok()?.items.len() == 2).then_some(())
    })
    .await
    .expect("the ReplicaSet creates its pods");
    replicasets
        .delete("keep", &DeleteParams::orphan())
        .await
        .expect("the ReplicaSet is deleted");
    wait_for(WAIT, "the ReplicaSet gone", || async {
        replicasets
            .get_opt("keep")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await
    .expect("the finalizer is removed once the pods are orphaned");
    let left = pods.list(&lp).await.expect("pods list").items;
    assert_eq!(left.len(), 2, "the pods stay");
    assert!(
        left.iter().all(|p| p
            .metadata
            .owner_references
            .as_ref()
            .is_none_or(|o| o.is_empty())
            && p.metadata.deletion_timestamp.is_none()),
        "and have no owner left"
    );
}
