//! Service defaulting, validation and allocation through the API.

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

use crate::start_with;

fn svc(value: serde_json::Value) -> Service {
    serde_json::from_value(value).unwrap()
}

fn invalid(result: kube::Result<Service>) -> String {
    match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert_eq!(status.reason, "Invalid");
            status.message
        }
        other => panic!("expected 422 Invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn services_are_defaulted_and_given_addresses() {
    let c = start_with(|_| {}).await;
    let api: Api<Service> = Api::namespaced(c.client.clone(), "default");
    let made = api
        .create(&PostParams::default(), &svc(json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})))
        .await
        .unwrap();
    let spec = made.spec.unwrap();
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(spec.session_affinity.as_deref(), Some("None"));
    assert_eq!(spec.internal_traffic_policy.as_deref(), Some("Cluster"));
    let ip: std::net::Ipv4Addr = spec.cluster_ip.unwrap().parse().unwrap();
    assert!(
        "127.96.0.0/16"
            .parse::<ipnet::Ipv4Net>()
            .unwrap()
            .contains(&ip)
    );
    assert_ne!(
        ip.octets()[3..],
        [10],
        "the DNS address is never handed out dynamically"
    );
    let port = &spec.ports.unwrap()[0];
    assert_eq!(port.protocol.as_deref(), Some("TCP"));
    assert_eq!(
        port.target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(80))
    );

    let lb = api
        .create(&PostParams::default(), &svc(json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}})))
        .await
        .unwrap();
    let node_port = lb.spec.as_ref().unwrap().ports.as_ref().unwrap()[0]
        .node_port
        .unwrap();
    assert!((30000..=32767).contains(&node_port));
    assert_eq!(
        lb.spec.unwrap().external_traffic_policy.as_deref(),
        Some("Cluster")
    );
    let ingress = lb.status.unwrap().load_balancer.unwrap().ingress.unwrap();
    assert!(ingress[0].ip.as_deref().unwrap().starts_with("127.240.0."));

    let headless = api
        .create(&PostParams::default(), &svc(json!({"metadata": {"name": "db"}, "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}})))
        .await
        .unwrap();
    assert_eq!(headless.spec.unwrap().cluster_ip.as_deref(), Some("None"));
}

#[tokio::test]
async fn taken_and_out_of_range_node_ports_use_kubernetes_texts() {
    let c = start_with(|_| {}).await;
    let api: Api<Service> = Api::namespaced(c.client.clone(), "default");
    let np = |name: &str, port: i32| {
        svc(
            json!({"metadata": {"name": name}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": port}]}}),
        )
    };
    api.create(&PostParams::default(), &np("a", 30080))
        .await
        .unwrap();
    let message = invalid(api.create(&PostParams::default(), &np("b", 30080)).await);
    assert!(
        message.contains(
            "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
        ),
        "{message}"
    );
    let message = invalid(api.create(&PostParams::default(), &np("c", 80)).await);
    assert!(
        message.contains(
            "provided port is not in the valid range. The range of valid ports is 30000-32767"
        ),
        "{message}"
    );
    // Deleting frees the port for the next service.
    api.delete("a", &DeleteParams::default()).await.unwrap();
    api.create(&PostParams::default(), &np("b", 30080))
        .await
        .unwrap();
}

#[tokio::test]
async fn requested_cluster_ips_are_honoured_once() {
    let c = start_with(|_| {}).await;
    let api: Api<Service> = Api::namespaced(c.client.clone(), "default");
    let fixed = |name: &str| {
        svc(
            json!({"metadata": {"name": name}, "spec": {"clusterIP": "127.96.5.5", "ports": [{"port": 80}]}}),
        )
    };
    let made = api
        .create(&PostParams::default(), &fixed("one"))
        .await
        .unwrap();
    assert_eq!(made.spec.unwrap().cluster_ip.as_deref(), Some("127.96.5.5"));
    let message = invalid(api.create(&PostParams::default(), &fixed("two")).await);
    assert!(
        message.contains("provided IP is already allocated"),
        "{message}"
    );
    // Nothing was half-written.
    assert!(api.get_opt("two").await.unwrap().is_none());
}

#[tokio::test]
async fn invalid_services_get_422_with_a_cause_per_field() {
    let c = start_with(|_| {}).await;
    let api: Api<Service> = Api::namespaced(c.client.clone(), "default");
    let bad = svc(json!({
        "metadata": {"name": "Bad_Name"},
        "spec": {"ports": [{"port": 0}, {"port": 70000, "protocol": "ICMP"}], "sessionAffinity": "ClientIP",
                 "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 90000}}}
    }));
    match api.create(&PostParams::default(), &bad).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422);
            let message = status.message;
            for needle in [
                "metadata.name",
                "spec.ports[0].port",
                "spec.ports[1].protocol",
                "timeoutSeconds",
            ] {
                assert!(message.contains(needle), "{needle} missing from {message}");
            }
        }
        other => panic!("expected 422, got {other:?}"),
    }
    // The raw Status carries details.causes naming each field.
    let request = http::Request::post("/api/v1/namespaces/default/services")
        .header("content-type", "application/json")
        .body(
            serde_json::to_vec(
                &json!({"metadata": {"name": "x"}, "spec": {"type": "ExternalName"}}),
            )
            .unwrap(),
        )
        .unwrap();
    let status: serde_json::Value = match c.client.request_text(request).await {
        Err(kube::Error::Api(s)) => serde_json::to_value(&s).unwrap(),
        Ok(text) => serde_json::from_str(&text).unwrap(),
        Err(other) => panic!("{other:?}"),
    };
    let text = status.to_string();
    assert!(text.contains("spec.externalName"), "{text}");
}

#[tokio::test]
async fn cluster_ip_is_immutable_but_kept_when_omitted() {
    let c = start_with(|_| {}).await;
    let api: Api<Service> = Api::namespaced(c.client.clone(), "default");
    let made = api
        .create(
            &PostParams::default(),
            &svc(json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}})),
        )
        .await
        .unwrap();
    let ip = made.spec.as_ref().unwrap().cluster_ip.clone();
    // Re-applying the original manifest (no clusterIP) keeps the address.
    let mut again = svc(json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 81}]}}));
    again.metadata.resource_version = made.metadata.resource_version.clone();
    let updated = api
        .replace("web", &PostParams::default(), &again)
        .await
        .unwrap();
    assert_eq!(updated.spec.as_ref().unwrap().cluster_ip, ip);
    let mut moved = updated.clone();
    moved.spec.as_mut().unwrap().cluster_ip = Some("127.96.9.9".into());
    moved.spec.as_mut().unwrap().cluster_ips = Some(vec!["127.96.9.9".into()]);
    let message = invalid(api.replace("web", &PostParams::default(), &moved).await);
    assert!(
        message.contains("may not change once set") || message.contains("field is immutable"),
        "{message}"
    );

    // To ExternalName and back: the address is released and a new one given.
    let mut external = updated.clone();
    let spec = external.spec.as_mut().unwrap();
    spec.type_ = Some("ExternalName".into());
    spec.external_name = Some("example.com".into());
    let external = api
        .replace("web", &PostParams::default(), &external)
        .await
        .unwrap();
    assert_eq!(external.spec.as_ref().unwrap().cluster_ip, None);
    let mut back = external.clone();
    let spec = back.spec.as_mut().unwrap();
    spec.type_ = Some("ClusterIP".into());
    spec.external_name = None;
    let back = api
        .replace("web", &PostParams::default(), &back)
        .await
        .unwrap();
    assert!(back.spec.unwrap().cluster_ip.is_some());
}
