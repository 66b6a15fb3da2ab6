//! An in-memory stand-in for the apiserver, for unit tests of the client
//! commands: enough of the REST semantics (get, create, replace with a
//! resourceVersion check, delete, list) and of the `Status` errors.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    revision: u64,
}

/// A client whose requests the fake answers.
pub fn client() -> kube::Client {
    let state = Arc::new(Mutex::new(State::default()));
    let service = tower::service_fn(move |req: Request<Body>| {
        let state = state.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let (code, value) = handle(
                &state,
                parts.method.as_str(),
                parts.uri.path(),
                parts.uri.query().unwrap_or(""),
                &bytes,
            );
            let body = Body::from(serde_json::to_vec(&value).unwrap_or_default());
            let mut response = Response::new(body);
            *response.status_mut() = code;
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    kube::Client::new(service, "default")
}

fn status(code: StatusCode, reason: &str, message: String) -> (StatusCode, Value) {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "code": code.as_u16(), "reason": reason, "message": message});
    (code, body)
}

fn handle(
    state: &Mutex<State>,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> (StatusCode, Value) {
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    // /api/v1/namespaces/NS/PLURAL[/NAME] or /api/v1/PLURAL[/NAME]
    let (collection, name) = match segments.as_slice() {
        ["api", "v1", "namespaces", ns, plural] => (format!("{plural}/{ns}/"), None),
        ["api", "v1", "namespaces", ns, plural, name] => (format!("{plural}/{ns}/"), Some(*name)),
        ["api", "v1", plural] => (format!("{plural}/"), None),
        ["api", "v1", plural, name] => (format!("{plural}/"), Some(*name)),
        _ => return status(StatusCode::NOT_FOUND, "NotFound", format!("no path {path}")),
    };
    let plural = collection.split('/').next().unwrap_or_default().to_string();
    let not_found = |name: &str| {
        status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{plural} \"{name}\" not found"),
        )
    };
    match (method, name) {
        ("GET", Some(name)) => match st.objects.get(&format!("{collection}{name}")) {
            Some(o) => (StatusCode::OK, o.clone()),
            None => not_found(name),
        },
        ("GET", None) => {
            let selector = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("labelSelector="))
                .map(|s| s.replace("%3D", "="));
            let items: Vec<Value> = st
                .objects
                .iter()
                .filter(|(k, _)| k.starts_with(&collection))
                .map(|(_, v)| v.clone())
                .filter(|v| {
                    selector.as_ref().is_none_or(|sel| {
                        sel.split(',').all(|kv| {
                            let (k, want) = kv.split_once('=').unwrap_or((kv, ""));
                            v.pointer(&format!("/metadata/labels/{k}"))
                                .and_then(Value::as_str)
                                == Some(want)
                        })
                    })
                })
                .collect();
            (
                StatusCode::OK,
                json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}),
            )
        }
        ("POST", None) | ("PUT", Some(_)) => {
            let Ok(mut obj) = serde_json::from_slice::<Value>(body) else {
                return status(StatusCode::BAD_REQUEST, "BadRequest", "bad body".into());
            };
            let name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if obj.pointer("/spec/ports/0/port") == Some(&json!(0)) {
                return status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    format!(
                        "Service \"{name}\" is invalid: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"
                    ),
                );
            }
            let key = format!("{collection}{name}");
            let existing = st.objects.get(&key).cloned();
            match (method, &existing) {
                ("POST", Some(_)) => {
                    return status(
                        StatusCode::CONFLICT,
                        "AlreadyExists",
                        format!("{plural} \"{name}\" already exists"),
                    );
                }
                ("PUT", None) => return not_found(&name),
                ("PUT", Some(old))
                    if old["metadata"]["resourceVersion"] != obj["metadata"]["resourceVersion"] =>
                {
                    return status(
                        StatusCode::CONFLICT,
                        "Conflict",
                        "the object has been modified".into(),
                    );
                }
                _ => {}
            }
            st.revision += 1;
            let meta = &mut obj["metadata"];
            meta["resourceVersion"] = json!(st.revision.to_string());
            meta["creationTimestamp"] = existing
                .as_ref()
                .map(|o| o["metadata"]["creationTimestamp"].clone())
                .unwrap_or(json!("2026-01-01T00:00:00Z"));
            // The server keeps what it allocated when a replace leaves it out.
            if plural == "services" && obj.pointer("/spec/clusterIP").is_none() {
                let ip = existing
                    .as_ref()
                    .and_then(|o| o.pointer("/spec/clusterIP").cloned())
                    .unwrap_or(json!(format!("127.96.0.{}", st.revision + 10)));
                obj["spec"]["clusterIP"] = ip;
            }
            st.objects.insert(key, obj.clone());
            let code = if method == "POST" {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (code, obj)
        }
        ("DELETE", Some(name)) => match st.objects.remove(&format!("{collection}{name}")) {
            Some(o) => (StatusCode::OK, o),
            None => not_found(name),
        },
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            method.into(),
        ),
    }
}

/// Global flags with only `-n` set.
pub fn global(namespace: Option<&str>) -> crate::GlobalArgs {
    crate::GlobalArgs {
        kubeconfig: None,
        namespace: namespace.map(String::from),
        log_level: None,
        log_format: crate::LogFormat::Text,
    }
}

/// A fake holding the objects of `examples/web.yaml` in `default`.
pub async fn seeded() -> kube::Client {
    let client = client();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/web.yaml");
    let docs = crate::manifest::read_all(&[path.into()]).unwrap_or_default();
    let report = super::apply::apply_all(&client, &global(None), &docs).await;
    assert!(!report.failed, "{:?}", report.lines);
    client
}
