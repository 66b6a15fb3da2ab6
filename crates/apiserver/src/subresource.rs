//! The subresources beyond `/status`: `/scale` of the replicated workloads,
//! a pod's `/binding` (what a scheduler posts) and a pod's `/log`, which the
//! apiserver fetches from the node agent running the pod, as the Kubernetes
//! apiserver does from the kubelet.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::{StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use switchboard_api::ResourceType;
use switchboard_api::labels::Selector;

use crate::error::{ApiError, ApiResult};
use crate::object::meta_str;
use crate::registry::{Part, Registry};

/// How long the apiserver waits to reach a node agent for logs.
const AGENT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The `autoscaling/v1` `Scale` of a Deployment or ReplicaSet.
pub fn scale_of(obj: &Value) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or_default();
    let pick = |field: &str| meta.get(field).cloned().unwrap_or(Value::Null);
    let selector = obj
        .pointer("/spec/selector")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .and_then(|ls| Selector::from_label_selector(&ls).ok())
        .map(|s| s.to_string())
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": pick("name"),
            "namespace": pick("namespace"),
            "uid": pick("uid"),
            "resourceVersion": pick("resourceVersion"),
            "creationTimestamp": pick("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

/// Writes a new scale: `change` turns the current `Scale` into the
/// requested one, whose `spec.replicas` is then written to the object. A
/// `metadata.resourceVersion` in the request must match the object's.
pub async fn write_scale(
    registry: &Registry,
    rt: &'static ResourceType,
    ns: Option<&str>,
    name: &str,
    change: impl Fn(&Value) -> ApiResult<Value>,
) -> ApiResult<Value> {
    let written = registry
        .update_with(rt, ns, name, Part::Main, |current| {
            let requested = change(&scale_of(current))?;
            if let Some(rv) = meta_str(&requested, "resourceVersion")
                && !rv.is_empty()
                && Some(rv) != meta_str(current, "resourceVersion")
            {
                return Err(ApiError::conflict(rt, name));
            }
            let replicas = match requested.pointer("/spec/replicas") {
                None | Some(Value::Null) => 0,
                Some(v) => v
                    .as_i64()
                    .filter(|n| i32::try_from(*n).is_ok())
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "Scale.spec.replicas must be an integer, got {v}"
                        ))
                    })?,
            };
            let mut next = current.clone();
            if let Some(spec) = next.get_mut("spec").and_then(Value::as_object_mut) {
                spec.insert("replicas".into(), json!(replicas));
            }
            Ok(next)
        })
        .await?;
    Ok(scale_of(&written))
}

/// Binds a pod to a node (`POST pods/NAME/binding`): sets `spec.nodeName`
/// once, and the `PodScheduled` condition. A pod already bound is a 409, as
/// in Kubernetes.
pub async fn bind(
    registry: &Registry,
    ns: Option<&str>,
    name: &str,
    body: &Value,
) -> ApiResult<Value> {
    let pods = ResourceType::lookup("pods").expect("pods are in the registry");
    let node = body
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("a Binding needs target.name: the node to bind to"))?
        .to_string();
    if let Some(kind) = body.pointer("/target/kind").and_then(Value::as_str)
        && !kind.is_empty()
        && kind != "Node"
    {
        return Err(ApiError::bad_request(format!(
            "a pod can only be bound to a Node, not a {kind}"
        )));
    }
    registry
        .update_with(pods, ns, name, Part::Main, |current| {
            match current.pointer("/spec/nodeName").and_then(Value::as_str) {
                Some(bound) if !bound.is_empty() => Err(ApiError::conflict_with(
                    pods,
                    name,
                    &format!("pod {name} is already assigned to node \"{bound}\""),
                )),
                _ => {
                    let mut next = current.clone();
                    if let Some(spec) = next.get_mut("spec").and_then(Value::as_object_mut) {
                        spec.insert("nodeName".into(), Value::String(node.clone()));
                    }
                    Ok(next)
                }
            }
        })
        .await?;
    let now = crate::object::rfc3339(jiff::Timestamp::now().as_second());
    registry
        .update_with(pods, ns, name, Part::Status, |current| {
            let mut next = current.clone();
            let status = next
                .as_object_mut()
                .map(|o| o.entry("status").or_insert_with(|| json!({})));
            if let Some(status) = status.and_then(Value::as_object_mut) {
                let conditions = status
                    .entry("conditions")
                    .or_insert_with(|| json!([]));
                if let Some(list) = conditions.as_array_mut() {
                    list.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
                    list.push(json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": now}));
                }
            }
            Ok(next)
        })
        .await?;
    Ok(
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}

/// `GET pods/NAME/log`: finds the pod's container and node, and streams the
/// log from the node agent's `/containerLogs/...` endpoint.
pub async fn logs(
    registry: &Registry,
    ns: Option<&str>,
    name: &str,
    query: &HashMap<String, String>,
) -> ApiResult<Response> {
    let pods = ResourceType::lookup("pods").expect("pods are in the registry");
    let nodes = ResourceType::lookup("nodes").expect("nodes are in the registry");
    let pod = registry.get(pods, ns, name).await?;
    let containers: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    let container = match query.get("container").filter(|c| !c.is_empty()) {
        Some(c) if containers.contains(&c.as_str()) => c.clone(),
        Some(c) => {
            return Err(ApiError::bad_request(format!(
                "container {c} is not valid for pod {name}"
            )));
        }
        None => match containers.as_slice() {
            [only] => (*only).to_string(),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    containers.join(" ")
                )));
            }
        },
    };
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!("pod {name} does not have a host assigned"))
        })?;
    let node = registry.get(nodes, None, node_name).await?;
    let addresses = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let address = addresses
        .iter()
        .find(|a| a.get("type").and_then(Value::as_str) == Some("InternalIP"))
        .or_else(|| addresses.first())
        .and_then(|a| a.get("address").and_then(Value::as_str))
        .ok_or_else(|| ApiError::bad_request(format!("node {node_name} has no address")))?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .filter(|p| (1..=65535).contains(p))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "node {node_name} reports no agent endpoint (status.daemonEndpoints.kubeletEndpoint.Port)"
            ))
        })?;
    let host = match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
        _ => format!("{address}:{port}"),
    };
    let forwarded: Vec<(&str, &str)> = query
        .iter()
        .filter(|(k, _)| {
            matches!(
                k.as_str(),
                "follow" | "tailLines" | "previous" | "timestamps" | "sinceSeconds" | "limitBytes"
            )
        })
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let qs = serde_urlencoded::to_string(&forwarded).unwrap_or_default();
    let ns = ns.unwrap_or("default");
    let path = format!("/containerLogs/{ns}/{name}/{container}?{qs}");

    let unreachable = |e: &dyn std::fmt::Display| {
        ApiError::internal(format!(
            "cannot reach the agent of node {node_name} at {host} for the logs of pod {name}: {e}"
        ))
    };
    let stream = tokio::time::timeout(AGENT_CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&host))
        .await
        .map_err(|_| unreachable(&"timed out"))?
        .map_err(|e| unreachable(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(async move {
        // The connection ends when the body is done or the client goes.
        let _ = conn.await;
    });
    let request = http::Request::get(&path)
        .header(header::HOST, &host)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| ApiError::internal(format!("cannot build the log request: {e}")))?;
    let upstream = sender
        .send_request(request)
        .await
        .map_err(|e| unreachable(&e))?;
    let status = upstream.status();
    if status == StatusCode::NOT_FOUND {
        return Err(ApiError::bad_request(format!(
            "container {container} in pod {name} has no logs yet"
        )));
    }
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::new(upstream.into_body()))
        .map_err(|e| ApiError::internal(format!("cannot relay the logs: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_reflects_spec_status_and_selector() {
        let deploy = json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u", "resourceVersion": "7"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "tier": "fe"}}},
            "status": {"replicas": 2},
        });
        let scale = scale_of(&deploy);
        assert_eq!(scale["spec"]["replicas"], 3);
        assert_eq!(scale["status"]["replicas"], 2);
        assert_eq!(scale["status"]["selector"], "app=web,tier=fe");
        assert_eq!(scale["metadata"]["resourceVersion"], "7");
        assert_eq!(scale["apiVersion"], "autoscaling/v1");
    }
}
