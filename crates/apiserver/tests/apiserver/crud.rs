//! Create, get, list, update with optimistic concurrency, patch, delete.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::{code, start};

fn config_map(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": {"k": "v"}
    }))
    .unwrap()
}

#[tokio::test]
async fn default_namespaces_and_kubernetes_service_exist() {
    let c = start().await;
    let namespaces: Api<Namespace> = Api::all(c.client.clone());
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    for ns in ["default", "kube-system", "kube-public"] {
        assert!(
            names.contains(&ns.to_string()),
            "{ns} missing from {names:?}"
        );
    }
    let services: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(c.client.clone(), "default");
    let kubernetes = services.get("kubernetes").await.unwrap();
    let spec = kubernetes.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("127.96.0.1"));
    let target = spec.ports.unwrap()[0].target_port.clone().unwrap();
    assert_eq!(
        target,
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i32::from(
            c.server.local_addr().port()
        ))
    );
    // Across all namespaces, as the conformance test "should find a service from listing all namespaces" does.
    let all: Api<k8s_openapi::api::core::v1::Service> = Api::all(c.client.clone());
    assert!(
        all.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|s| s.metadata.name.as_deref() == Some("kubernetes"))
    );
}

#[tokio::test]
async fn create_get_update_conflict_patch_delete() {
    let c = start().await;
    let api: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let created = api
        .create(
            &PostParams::default(),
            &config_map("one", json!({"app": "a"})),
        )
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(
        meta.uid.is_some() && meta.creation_timestamp.is_some() && meta.resource_version.is_some()
    );
    assert_eq!(
        code(
            api.create(&PostParams::default(), &config_map("one", json!({})))
                .await
        ),
        409
    );

    // An update from a stale copy loses: 409 Conflict.
    let mut first = created.clone();
    first.data = Some([("k".to_string(), "first".to_string())].into());
    let updated = api
        .replace("one", &PostParams::default(), &first)
        .await
        .unwrap();
    assert_ne!(
        updated.metadata.resource_version,
        created.metadata.resource_version
    );
    let mut stale = created.clone();
    stale.data = Some([("k".to_string(), "stale".to_string())].into());
    assert_eq!(
        code(api.replace("one", &PostParams::default(), &stale).await),
        409
    );
    assert_eq!(api.get("one").await.unwrap().data.unwrap()["k"], "first");

    // Merge patch and JSON patch.
    let patched = api
        .patch(
            "one",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "x"}}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.unwrap()["tier"], "x");
    let ops: json_patch_ops::Ops =
        serde_json::from_value(json!([{"op": "replace", "path": "/data/k", "value": "patched"}]))
            .unwrap();
    let patched = api
        .patch("one", &PatchParams::default(), &Patch::<()>::Json(ops))
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["k"], "patched");

    api.delete("one", &DeleteParams::default()).await.unwrap();
    assert_eq!(code(api.get("one").await), 404);
    assert_eq!(code(api.delete("one", &DeleteParams::default()).await), 404);
}

/// The json-patch types kube-rs takes (workspace code uses a newer json-patch).
mod json_patch_ops {
    pub type Ops = json_patch_for_kube::Patch;
}

#[tokio::test]
async fn generate_name_label_selectors_and_pagination() {
    let c = start().await;
    let api: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    for i in 0..7 {
        let mut cm = config_map(
            "",
            json!({"app": if i % 2 == 0 { "even" } else { "odd" }, "n": i.to_string()}),
        );
        cm.metadata.name = None;
        cm.metadata.generate_name = Some("gen-".into());
        let made = api.create(&PostParams::default(), &cm).await.unwrap();
        let name = made.metadata.name.unwrap();
        assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
    }
    let evens = api
        .list(&ListParams::default().labels("app=even"))
        .await
        .unwrap();
    assert_eq!(evens.items.len(), 4);
    let set = api
        .list(&ListParams::default().labels("app in (odd),n notin (1)"))
        .await
        .unwrap();
    assert_eq!(set.items.len(), 2);
    let by_name = api
        .list(&ListParams::default().fields(&format!(
            "metadata.name={}",
            evens.items[0].metadata.name.clone().unwrap()
        )))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);
    assert_eq!(
        code(
            api.list(&ListParams::default().fields("spec.bogus=1"))
                .await
        ),
        400
    );

    let mut seen = Vec::new();
    let mut params = ListParams::default().limit(3);
    loop {
        let page = api.list(&params).await.unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(page.items.into_iter().filter_map(|c| c.metadata.name));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(seen.len(), 7);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "pages come in key order without overlap");

    let deleted = api
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("app=odd"),
        )
        .await
        .unwrap();
    assert!(deleted.is_left());
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        4
    );
}

#[tokio::test]
async fn a_pod_on_a_node_stays_until_its_grace_ends_or_the_agent_confirms() {
    let c = start().await;
    let api: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"nodeName": "node-a", "terminationGracePeriodSeconds": 60, "containers": [{"name": "c", "image": "x"}]}
    }))
    .unwrap();
    api.create(&PostParams::default(), &pod).await.unwrap();
    api.delete("p", &DeleteParams::default()).await.unwrap();
    let terminating = api.get("p").await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(60));
    // The node agent confirms with a zero grace period.
    api.delete(
        "p",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(code(api.get("p").await), 404);

    // An unscheduled pod goes at once.
    let mut unscheduled = pod.clone();
    unscheduled.spec.as_mut().unwrap().node_name = None;
    api.create(&PostParams::default(), &unscheduled)
        .await
        .unwrap();
    api.delete("p", &DeleteParams::default()).await.unwrap();
    assert_eq!(code(api.get("p").await), 404);

    // A short grace ends by itself.
    let mut short = pod.clone();
    short
        .spec
        .as_mut()
        .unwrap()
        .termination_grace_period_seconds = Some(1);
    api.create(&PostParams::default(), &short).await.unwrap();
    api.delete("p", &DeleteParams::default()).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while api.get_opt("p").await.unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the pod outlived its grace period"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn finalizers_hold_an_object_until_removed() {
    let c = start().await;
    let api: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let mut cm = config_map("held", json!({}));
    cm.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    api.create(&PostParams::default(), &cm).await.unwrap();
    api.delete("held", &DeleteParams::default()).await.unwrap();
    assert!(
        api.get("held")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(code(api.get("held").await), 404);
}

#[tokio::test]
async fn namespaces_guard_their_content() {
    let c = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "nowhere");
    assert_eq!(
        code(
            cms.create(&PostParams::default(), &config_map("x", json!({})))
                .await
        ),
        404
    );
    let namespaces: Api<Namespace> = Api::all(c.client.clone());
    assert_eq!(
        code(namespaces.delete("default", &DeleteParams::default()).await),
        403
    );
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "scratch"}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "scratch");
    cms.create(&PostParams::default(), &config_map("x", json!({})))
        .await
        .unwrap();
    namespaces
        .delete("scratch", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(code(namespaces.get("scratch").await), 404);
    assert_eq!(code(cms.get("x").await), 404);
}

#[tokio::test]
async fn requests_without_the_token_get_401_with_a_status() {
    let c = start().await;
    let mut config = kube::Config::new(
        format!("https://{}", c.server.local_addr())
            .parse()
            .unwrap(),
    );
    config.accept_invalid_certs = true;
    let anonymous = kube::Client::try_from(config).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(anonymous, "default");
    match api.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 401);
            assert_eq!(status.reason, "Unauthorized");
        }
        other => panic!("expected 401, got {other:?}"),
    }
}
