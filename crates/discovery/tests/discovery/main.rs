//! Discovery against the real apiserver: kube-rs over TLS on loopback, the
//! embedded store in a temporary directory.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use switchboard_discovery::{ServiceKey, ServiceTable};
use tokio::sync::watch;

type Cluster = switchboard_testkit::InProcess;

async fn start() -> Cluster {
    Cluster::start().await.expect("an in-process apiserver")
}

/// Waits until `check` holds for the latest table, or fails after 10 s.
async fn until(
    rx: &mut watch::Receiver<Arc<ServiceTable>>,
    what: &str,
    check: impl Fn(&ServiceTable) -> bool,
) -> Arc<ServiceTable> {
    let waited = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|t| check(t)))
        .await
        .map(|r| r.map(|t| Arc::clone(&t)));
    match waited {
        Ok(Ok(t)) => t,
        Ok(Err(_)) => panic!("discovery stopped while waiting for {what}"),
        Err(_) => panic!(
            "timed out waiting for {what}; last table: {:?}",
            rx.borrow()
        ),
    }
}

#[tokio::test]
async fn the_table_follows_services_and_slices() {
    let cluster = start().await;
    let mut discovery = switchboard_discovery::spawn(cluster.client.clone());
    let rx = &mut discovery.table;
    let t = until(rx, "the initial sync", |t| t.synced).await;
    assert!(
        t.get("default", "kubernetes").is_some(),
        "the apiserver's own Service is listed"
    );

    let services: Api<Service> = Api::namespaced(cluster.client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(cluster.client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    }))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
    let t = until(rx, "web with a ClusterIP", |t| {
        t.get("default", "web")
            .is_some_and(|s| !s.cluster_ips.is_empty())
    })
    .await;
    assert!(t.changed.contains(&ServiceKey::new("default", "web")));
    let generation = t.generation;

    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "web-manual", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["127.244.0.1"], "conditions": {"ready": true}, "nodeName": "n1"},
            {"addresses": ["127.244.0.2"], "conditions": {"ready": false, "serving": true, "terminating": true}}
        ]
    }))
    .unwrap();
    slices.create(&PostParams::default(), &slice).await.unwrap();
    let t = until(rx, "web's two endpoints", |t| {
        t.get("default", "web")
            .is_some_and(|s| s.endpoints.len() == 2)
    })
    .await;
    assert!(t.generation > generation);
    let web = t.get("default", "web").unwrap();
    let port = &web.ports[0];
    assert_eq!(web.endpoints[0].port_for(port), Some(8080));
    assert_eq!(web.endpoints[0].node_name.as_deref(), Some("n1"));
    assert!(web.endpoints[0].ready);
    assert!(!web.endpoints[1].ready && web.endpoints[1].serving && web.endpoints[1].terminating);
    let kubernetes = Arc::clone(t.get("default", "kubernetes").unwrap());

    slices
        .delete("web-manual", &DeleteParams::default())
        .await
        .unwrap();
    let t = until(rx, "web's endpoints gone", |t| {
        t.get("default", "web")
            .is_some_and(|s| s.endpoints.is_empty())
    })
    .await;
    assert!(
        Arc::ptr_eq(&kubernetes, t.get("default", "kubernetes").unwrap()),
        "an unchanged service keeps its Arc"
    );

    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    until(rx, "web gone", |t| t.get("default", "web").is_none()).await;
    assert!(!discovery.task.is_finished());
}
