//! apps/v1 workloads and the pod subresources a scheduler and `logs` use:
//! Deployment defaulting and validation, `/scale`, `pods/binding` and
//! `pods/log` relayed from a node agent.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::{code, start};

fn deployment(name: &str, labels: serde_json::Value) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "c", "image": "agnhost"}]}}}}))
    .expect("a valid Deployment literal")
}

#[tokio::test]
async fn deployments_are_defaulted_validated_and_scaled() {
    let cluster = start().await;
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
    let made = api
        .create(
            &PostParams::default(),
            &deployment("web", json!({"app": "web"})),
        )
        .await
        .expect("a valid deployment is created");
    let spec = made.spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.revision_history_limit, Some(10));
    assert_eq!(made.metadata.generation, Some(1));

    // The selector must match the template; nothing is stored otherwise.
    let err = api
        .create(
            &PostParams::default(),
            &deployment("bad", json!({"app": "other"})),
        )
        .await;
    match err {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422);
            assert!(
                status
                    .message
                    .contains("`selector` does not match template `labels`"),
                "{}",
                status.message
            );
        }
        other => panic!("expected 422, got {other:?}"),
    }
    assert_eq!(code(api.get("bad").await), 404);

    // Scale through the subresource, as kubectl scale does.
    let scale = api.get_scale("web").await.expect("the scale reads");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(1));
    let scaled = api
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .expect("the scale patches");
    assert_eq!(scaled.spec.and_then(|s| s.replicas), Some(5));
    let after = api.get("web").await.expect("the deployment reads");
    assert_eq!(after.spec.and_then(|s| s.replicas), Some(5));
    assert_eq!(
        after.metadata.generation,
        Some(2),
        "a spec change bumps the generation"
    );

    // The selector is immutable.
    let mut changed = api.get("web").await.expect("read");
    let spec = changed.spec.as_mut().expect("spec");
    spec.selector.match_labels = Some([("app".to_string(), "x".to_string())].into());
    spec.template.metadata.as_mut().expect("meta").labels =
        Some([("app".to_string(), "x".to_string())].into());
    assert_eq!(
        code(api.replace("web", &PostParams::default(), &changed).await),
        422
    );
}

#[tokio::test]
async fn pods_are_bound_once_and_logs_need_a_node_agent() {
    let cluster = start().await;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}}))
    .expect("a valid Pod literal");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("created");

    // Logs of an unscheduled pod: a clear 400, as Kubernetes.
    let err = pods.logs("p", &Default::default()).await;
    match err {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 400);
            assert_eq!(status.message, "pod p does not have a host assigned");
        }
        other => panic!("expected 400, got {other:?}"),
    }

    let binding = |node: &str| {
        json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": "p"}, "target": {"kind": "Node", "name": node}})
    };
    let _: serde_json::Value = pods
        .create_subresource("binding", "p", &PostParams::default(), &binding("n1"))
        .await
        .expect("the first binding succeeds");
    let bound = pods.get("p").await.expect("read");
    assert_eq!(
        bound.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some("n1")
    );
    let scheduled = bound
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "PodScheduled")
        .map(|c| c.status);
    assert_eq!(scheduled.as_deref(), Some("True"));
    let again: Result<serde_json::Value, _> = pods
        .create_subresource("binding", "p", &PostParams::default(), &binding("n2"))
        .await;
    assert_eq!(code(again), 409);

    // A node whose agent is unreachable: the error names the node.
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1"}})).expect("Node");
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("node created");
    let unused = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = unused.local_addr().expect("addr").port();
    drop(unused);
    nodes
        .patch_status(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}})),
        )
        .await
        .expect("node status");
    match pods.logs("p", &Default::default()).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 500);
            assert!(
                status.message.contains("cannot reach the agent of node n1"),
                "{}",
                status.message
            );
        }
        other => panic!("expected 500, got {other:?}"),
    }
}
