//! The objects every cluster has from the start: the `default`,
//! `kube-system` and `kube-public` namespaces, and the `kubernetes` Service
//! in `default` with its Endpoints and EndpointSlice pointing at this
//! apiserver (the Kubernetes apiserver's endpoint reconciler does the same).

use std::net::{Ipv4Addr, SocketAddr};

use serde_json::{Value, json};
use switchboard_api::ResourceType;

use crate::error::ApiResult;
use crate::registry::{Part, Registry, SYSTEM_NAMESPACES};
use crate::strategy::kubernetes_service;

fn rt(name: &str) -> &'static ResourceType {
    ResourceType::lookup(name).expect("bootstrap types are in the registry")
}

/// Creates `obj` if absent, or makes the stored one match it.
async fn ensure(
    registry: &Registry,
    rt: &'static ResourceType,
    ns: Option<&str>,
    name: &str,
    obj: Value,
) -> ApiResult<()> {
    match registry.get(rt, ns, name).await {
        Ok(_) => registry
            .replace(rt, ns, name, Part::Main, obj)
            .await
            .map(|_| ()),
        Err(e) if e.code() == 404 => registry.create(rt, ns, obj).await.map(|_| ()),
        Err(e) => Err(e),
    }
}

/// Makes the initial objects exist and point at `advertise`.
pub async fn run(
    registry: &Registry,
    kubernetes_ip: Ipv4Addr,
    advertise: SocketAddr,
) -> ApiResult<()> {
    let namespaces = rt("namespaces");
    for ns in SYSTEM_NAMESPACES {
        if let Err(e) = registry.get(namespaces, None, ns).await {
            if e.code() != 404 {
                return Err(e);
            }
            registry
                .create(
                    namespaces,
                    None,
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                )
                .await?;
        }
    }
    let port = advertise.port();
    ensure(
        registry,
        rt("services"),
        Some("default"),
        "kubernetes",
        kubernetes_service(kubernetes_ip, port),
    )
    .await?;
    let ip = advertise.ip().to_string();
    let endpoints = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": ip}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]
    });
    ensure(
        registry,
        rt("endpoints"),
        Some("default"),
        "kubernetes",
        endpoints,
    )
    .await?;
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {
                "kubernetes.io/service-name": "kubernetes",
                "endpointslice.kubernetes.io/managed-by": "switchboard-apiserver"
            }
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": true, "serving": true, "terminating": false}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}]
    });
    ensure(
        registry,
        rt("endpointslices"),
        Some("default"),
        "kubernetes",
        slice,
    )
    .await
}
