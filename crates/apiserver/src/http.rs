//! The HTTP face of the apiserver: Kubernetes REST paths and verbs, API
//! discovery, watch streams, bearer-token authentication, health and
//! metrics endpoints.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri, header};
use serde_json::{Value, json};
use switchboard_api::ResourceType;
use switchboard_api::fields::FieldSelector;
use switchboard_api::labels::Selector;
use tokio_stream::wrappers::ReceiverStream;

use crate::cache::{CacheEvent, Cached, EventType, StartError};
use crate::error::{ApiError, ApiResult};
use crate::metrics::{LatencyLabels, Metrics, RequestLabels};
use crate::registry::{DeleteOptions, Part, Patch, Registry, list_body};
use crate::subresource;

/// Shared state of every request.
pub struct AppState {
    /// The objects.
    pub registry: Arc<Registry>,
    /// The bearer token clients must present.
    pub token: String,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The address clients reach the apiserver at, for discovery.
    pub advertise: String,
}

/// The router of the whole API.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

fn json_response(code: StatusCode, body: impl Into<Body>) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.into(),
    )
        .into_response()
}

fn value_response(code: StatusCode, value: &Value) -> Response {
    // A serde_json::Value always serializes.
    json_response(
        code,
        serde_json::to_vec(value).expect("a JSON value serializes"),
    )
}

/// Compares tokens in time independent of where they differ.
fn token_matches(presented: &[u8], expected: &[u8]) -> bool {
    presented.len() == expected.len()
        && presented
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn authorized(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| token_matches(t.trim().as_bytes(), token.as_bytes()))
}

/// What a request addresses, parsed from its path.
#[derive(Debug)]
struct Target {
    rt: &'static ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    part: Sub,
}

/// The part of an object a path addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    /// The object itself.
    Main,
    /// `/status`.
    Status,
    /// `/scale` of a Deployment or ReplicaSet.
    Scale,
    /// A pod's `/binding`.
    Binding,
    /// A pod's `/log`.
    Log,
}

impl Sub {
    fn name(self) -> Option<&'static str> {
        match self {
            Sub::Main => None,
            Sub::Status => Some("status"),
            Sub::Scale => Some("scale"),
            Sub::Binding => Some("binding"),
            Sub::Log => Some("log"),
        }
    }
}

fn parse_target(path: &str) -> Option<Result<Target, ApiError>> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let resolve = |plural: &str| {
        ResourceType::from_path(group, version, plural).ok_or_else(|| {
            ApiError::not_found_path(&format!(
                "the server could not find the requested resource ({plural})"
            ))
        })
    };
    let sub = |s: &str| match s {
        "status" => Ok(Sub::Status),
        "scale" => Ok(Sub::Scale),
        "binding" => Ok(Sub::Binding),
        "log" => Ok(Sub::Log),
        other => Err(ApiError::not_found_path(&format!(
            "the server could not find the requested resource (subresource {other})"
        ))),
    };
    let target = (|| {
        Ok(match rest {
            [] => {
                return Err(ApiError::not_found_path(
                    "the server could not find the requested resource",
                ));
            }
            ["namespaces", ns, plural, tail @ ..]
                if ResourceType::from_path(group, version, plural)
                    .is_some_and(|r| r.namespaced) =>
            {
                let rt = resolve(plural)?;
                match tail {
                    [] => Target {
                        rt,
                        namespace: Some((*ns).into()),
                        name: None,
                        part: Sub::Main,
                    },
                    [name] => Target {
                        rt,
                        namespace: Some((*ns).into()),
                        name: Some((*name).into()),
                        part: Sub::Main,
                    },
                    [name, s] => Target {
                        rt,
                        namespace: Some((*ns).into()),
                        name: Some((*name).into()),
                        part: sub(s)?,
                    },
                    _ => {
                        return Err(ApiError::not_found_path(
                            "the server could not find the requested resource",
                        ));
                    }
                }
            }
            [plural] => Target {
                rt: resolve(plural)?,
                namespace: None,
                name: None,
                part: Sub::Main,
            },
            // A cluster-scoped object, optionally with a subresource.
            [plural, name, tail @ ..] if tail.len() <= 1 => {
                let rt = resolve(plural)?;
                if rt.namespaced {
                    return Err(ApiError::not_found_path(
                        "the server could not find the requested resource",
                    ));
                }
                Target {
                    rt,
                    namespace: None,
                    name: Some((*name).into()),
                    part: match tail {
                        [s] => sub(s)?,
                        _ => Sub::Main,
                    },
                }
            }
            _ => {
                return Err(ApiError::not_found_path(
                    "the server could not find the requested resource",
                ));
            }
        })
    })();
    Some(target)
}

/// The Kubernetes verb of a request, for metrics and dispatch.
fn verb(method: &Method, target: &Target, query: &HashMap<String, String>) -> &'static str {
    let watching = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    match (method.as_str(), target.name.is_some()) {
        ("GET", false) if watching => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", false) => "create",
        // Only subresources (a pod's binding) are created under a name.
        ("POST", true) if target.part != Sub::Main => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unsupported",
    }
}

async fn handle(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    match path {
        "/healthz" | "/livez" | "/readyz" => return (StatusCode::OK, "ok").into_response(),
        "/version" => return value_response(StatusCode::OK, &version()),
        _ => {}
    }
    if !authorized(&headers, &state.token) {
        return ApiError::unauthorized().into_response();
    }
    match path.trim_end_matches('/') {
        "/metrics" => {
            state.metrics.revision.set(state.registry.cache.revision());
            return (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )],
                state.metrics.encode(),
            )
                .into_response();
        }
        "/api" => return value_response(StatusCode::OK, &api_versions(&state.advertise)),
        "/apis" => return value_response(StatusCode::OK, &api_group_list()),
        _ => {}
    }
    if let Some(doc) = discovery_document(path.trim_end_matches('/')) {
        return value_response(StatusCode::OK, &doc);
    }
    let target = match parse_target(path) {
        Some(Ok(t)) => t,
        Some(Err(e)) => return e.into_response(),
        None => {
            return ApiError::not_found_path("the server could not find the requested resource")
                .into_response();
        }
    };
    let query: HashMap<String, String> = uri
        .query()
        .map(|q| serde_urlencoded::from_str(q).unwrap_or_default())
        .unwrap_or_default();
    let verb = verb(&method, &target, &query);
    let resource = match target.part.name() {
        None => target.rt.plural.to_string(),
        Some(sub) => format!("{}/{sub}", target.rt.plural),
    };
    let started = Instant::now();
    let response = dispatch(&state, verb, &target, &query, &headers, body)
        .await
        .unwrap_or_else(|e| e.into_response());
    state
        .metrics
        .latency
        .get_or_create(&LatencyLabels {
            verb: verb.into(),
            resource: resource.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            verb: verb.into(),
            resource,
            code: response.status().as_u16().to_string(),
        })
        .inc();
    response
}

fn parse_body(headers: &HeaderMap, body: &[u8]) -> ApiResult<Value> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if content_type.contains("protobuf") {
        return Err(ApiError::unsupported_media_type(content_type));
    }
    serde_json::from_slice(body)
        .or_else(|json_err| {
            if content_type.contains("yaml") {
                serde_yaml::from_slice::<Value>(body).map_err(|e| e.to_string())
            } else {
                Err(json_err.to_string())
            }
        })
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

fn parse_patch(headers: &HeaderMap, body: &[u8]) -> ApiResult<Patch> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    let value = parse_body(headers, body)?;
    match media {
        "application/merge-patch+json" => Ok(Patch::Merge(value)),
        "application/strategic-merge-patch+json" => Ok(Patch::Strategic(value)),
        "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(Patch::Apply(value)),
        "application/json-patch+json" => serde_json::from_value(value)
            .map(Patch::Json)
            .map_err(|e| ApiError::bad_request(format!("the JSON patch is invalid: {e}"))),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

async fn dispatch(
    state: &AppState,
    verb: &str,
    target: &Target,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let registry = &state.registry;
    let rt = target.rt;
    let ns = target.namespace.as_deref();
    if query.get("dryRun").is_some_and(|d| !d.is_empty()) {
        return Err(ApiError::bad_request(
            "dryRun is not supported by Switchboard",
        ));
    }
    let name = target.name.as_deref().unwrap_or("");
    let part = match target.part {
        Sub::Main => Part::Main,
        Sub::Status if rt.has_status => Part::Status,
        Sub::Scale if rt.has_scale() => return scale(state, verb, target, headers, body).await,
        Sub::Binding if rt.kind == "Pod" => {
            if verb != "create" {
                return Err(ApiError::method_not_allowed(rt, "binding except by POST"));
            }
            let binding = parse_body(headers, &body)?;
            let status = subresource::bind(registry, ns, name, &binding).await?;
            return Ok(value_response(StatusCode::CREATED, &status));
        }
        Sub::Log if rt.kind == "Pod" => {
            if verb != "get" {
                return Err(ApiError::method_not_allowed(rt, "log except by GET"));
            }
            return subresource::logs(registry, ns, name, query).await;
        }
        other => {
            return Err(ApiError::not_found_path(&format!(
                "{} has no {} subresource",
                rt.plural,
                other.name().unwrap_or("")
            )));
        }
    };
    match verb {
        "get" => Ok(value_response(
            StatusCode::OK,
            &registry.get(rt, ns, name).await?,
        )),
        "list" => list(state, target, query).await,
        "watch" => watch(state, target, query).await,
        "create" => {
            if rt.namespaced && ns.is_none() {
                return Err(ApiError::method_not_allowed(
                    rt,
                    "create across all namespaces",
                ));
            }
            let obj = registry.create(rt, ns, parse_body(headers, &body)?).await?;
            Ok(value_response(StatusCode::CREATED, &obj))
        }
        "update" => {
            let obj = registry
                .replace(rt, ns, name, part, parse_body(headers, &body)?)
                .await?;
            Ok(value_response(StatusCode::OK, &obj))
        }
        "patch" => {
            let obj = registry
                .patch(rt, ns, name, part, parse_patch(headers, &body)?)
                .await?;
            Ok(value_response(StatusCode::OK, &obj))
        }
        "delete" => {
            let options = delete_options(query, &body)?;
            let obj = registry.delete(rt, ns, name, &options).await?;
            Ok(value_response(StatusCode::OK, &obj))
        }
        "deletecollection" => {
            let options = delete_options(query, &body)?;
            let filter = Filter::new(rt, ns, query)?;
            let prefix = prefix_of(rt, ns);
            let mut deleted = Vec::new();
            for obj in registry
                .cache
                .of(rt)
                .list(&prefix, None)
                .into_iter()
                .filter(|o| filter.matches(o))
            {
                match registry
                    .delete(rt, obj.namespace.as_deref(), obj.name(), &options)
                    .await
                {
                    Ok(v) => deleted.push(v),
                    Err(e) if e.code() == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            let list = json!({
                "kind": format!("{}List", rt.kind),
                "apiVersion": rt.api_version(),
                "metadata": {"resourceVersion": registry.cache.revision().to_string()},
                "items": deleted,
            });
            Ok(value_response(StatusCode::OK, &list))
        }
        other => Err(ApiError::method_not_allowed(rt, other)),
    }
}

/// `GET`, `PUT` and `PATCH` of `/scale`.
async fn scale(
    state: &AppState,
    verb: &str,
    target: &Target,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let registry = &state.registry;
    let (rt, ns) = (target.rt, target.namespace.as_deref());
    let name = target.name.as_deref().unwrap_or("");
    let scale = match verb {
        "get" => subresource::scale_of(&registry.get(rt, ns, name).await?),
        "update" => {
            let requested = parse_body(headers, &body)?;
            subresource::write_scale(registry, rt, ns, name, |_| Ok(requested.clone())).await?
        }
        "patch" => {
            let patch = parse_patch(headers, &body)?;
            subresource::write_scale(registry, rt, ns, name, |current| {
                let mut doc = current.clone();
                match &patch {
                    Patch::Merge(p) => json_patch::merge(&mut doc, p),
                    Patch::Strategic(p) | Patch::Apply(p) => {
                        switchboard_api::smp::apply(&mut doc, p).map_err(|e| {
                            ApiError::bad_request(format!(
                                "the strategic merge patch could not be applied: {e}"
                            ))
                        })?
                    }
                    Patch::Json(p) => json_patch::patch(&mut doc, p).map_err(|e| {
                        ApiError::bad_request(format!("the JSON patch could not be applied: {e}"))
                    })?,
                }
                Ok(doc)
            })
            .await?
        }
        other => {
            return Err(ApiError::method_not_allowed(
                rt,
                &format!("{other} of scale"),
            ));
        }
    };
    Ok(value_response(StatusCode::OK, &scale))
}

fn delete_options(query: &HashMap<String, String>, body: &[u8]) -> ApiResult<DeleteOptions> {
    let mut options = DeleteOptions::default();
    if !body.iter().all(u8::is_ascii_whitespace) {
        let parsed: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the DeleteOptions body is not valid JSON: {e}"))
        })?;
        options.grace_period_seconds = parsed.get("gracePeriodSeconds").and_then(Value::as_i64);
        options.uid = parsed
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string);
        options.resource_version = parsed
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    if let Some(grace) = query.get("gracePeriodSeconds") {
        options.grace_period_seconds = Some(grace.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "gracePeriodSeconds must be an integer, got {grace:?}"
            ))
        })?);
    }
    Ok(options)
}

/// The key prefix of a collection: the type's, or one namespace's within it.
fn prefix_of(rt: &ResourceType, ns: Option<&str>) -> String {
    match ns {
        Some(ns) if rt.namespaced => format!("{}{}/", rt.key_prefix(), ns),
        _ => rt.key_prefix(),
    }
}

/// The label and field selectors of a list or watch.
struct Filter {
    rt: &'static ResourceType,
    namespace: Option<String>,
    labels: Option<Selector>,
    fields: Option<FieldSelector>,
}

impl Filter {
    fn new(
        rt: &'static ResourceType,
        ns: Option<&str>,
        query: &HashMap<String, String>,
    ) -> ApiResult<Filter> {
        let labels =
            match query.get("labelSelector").filter(|s| !s.is_empty()) {
                Some(s) => Some(Selector::parse(s).map_err(|e| {
                    ApiError::bad_request(format!("unable to parse requirement: {e}"))
                })?),
                None => None,
            };
        let fields = match query.get("fieldSelector").filter(|s| !s.is_empty()) {
            Some(s) => {
                let selector =
                    FieldSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?;
                selector
                    .validate_for(rt.kind)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                Some(selector)
            }
            None => None,
        };
        Ok(Filter {
            rt,
            namespace: ns.filter(|_| rt.namespaced).map(str::to_string),
            labels,
            fields,
        })
    }

    fn matches(&self, obj: &Cached) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| obj.namespace.as_deref() == Some(ns))
            && self.labels.as_ref().is_none_or(|s| s.matches(&obj.labels))
            && self
                .fields
                .as_ref()
                .is_none_or(|s| s.matches(&|f| obj.field(self.rt, f).map(str::to_string)))
    }

    /// The watch line for an event as this filter sees it: an object that
    /// starts or stops matching shows up as ADDED or DELETED.
    fn render(&self, event: &CacheEvent) -> Option<Bytes> {
        let now = self.matches(&event.obj);
        let before = event.prev.as_deref().is_some_and(|p| self.matches(p));
        let kind = match event.kind {
            EventType::Added if now => EventType::Added,
            EventType::Modified if now && before => EventType::Modified,
            EventType::Modified if now => EventType::Added,
            EventType::Modified if before => EventType::Deleted,
            EventType::Deleted if now || before => EventType::Deleted,
            _ => return None,
        };
        Some(watch_line(kind.as_str(), &event.obj.json.to_vec()))
    }
}

fn watch_line(kind: &str, object: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object.len() + 32);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

fn bookmark_line(rt: &ResourceType, rv: i64, initial_events_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_events_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let object = json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": meta});
    watch_line(
        "BOOKMARK",
        &serde_json::to_vec(&object).expect("a JSON value serializes"),
    )
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: i64,
    start: String,
}

/// Waits until the cache reflects the revision a request must see.
async fn wait_for_revision(state: &AppState, query: &HashMap<String, String>) -> ApiResult<()> {
    let cache = &state.registry.cache;
    match query
        .get("resourceVersion")
        .map(String::as_str)
        .unwrap_or("")
    {
        // "0": any state will do; serve what the cache has.
        "0" => Ok(()),
        // Unset: the most recent state, as a consistent read from the store would give.
        "" => {
            let rv = state.registry.store.revision().await?;
            if cache.wait_for(rv, Duration::from_secs(5)).await {
                Ok(())
            } else {
                Err(ApiError::timeout(
                    "the watch cache did not catch up with the store in time",
                ))
            }
        }
        n => {
            let rv: i64 = n.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid resourceVersion {n:?}: not a number"))
            })?;
            if cache.wait_for(rv, Duration::from_secs(3)).await {
                Ok(())
            } else {
                Err(ApiError::timeout(format!(
                    "Too large resource version: {rv}, current: {}",
                    cache.revision()
                )))
            }
        }
    }
}

async fn list(
    state: &AppState,
    target: &Target,
    query: &HashMap<String, String>,
) -> ApiResult<Response> {
    let rt = target.rt;
    let filter = Filter::new(rt, target.namespace.as_deref(), query)?;
    let limit = match query.get("limit") {
        Some(l) => l.parse::<usize>().map_err(|_| {
            ApiError::bad_request(format!("limit must be a non-negative integer, got {l:?}"))
        })?,
        None => 0,
    };
    let token = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(c) => Some(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(c)
                .ok()
                .and_then(|b| serde_json::from_slice::<ContinueToken>(&b).ok())
                .ok_or_else(|| ApiError::bad_request("continue key is not valid"))?,
        ),
        None => None,
    };
    if token.is_none() {
        wait_for_revision(state, query).await?;
    }
    let cache = state.registry.cache.of(rt);
    // Read the revision before the objects: the objects are then at least as
    // new as the revision the list reports.
    let rv = token
        .as_ref()
        .map(|t| t.rv)
        .unwrap_or_else(|| state.registry.cache.revision());
    let prefix = prefix_of(rt, target.namespace.as_deref());
    let mut items: Vec<Arc<Cached>> = cache
        .list(&prefix, token.as_ref().map(|t| t.start.as_str()))
        .into_iter()
        .filter(|o| filter.matches(o))
        .collect();
    let mut next = None;
    if limit > 0 && items.len() > limit {
        items.truncate(limit);
        let last = items.last().map(|o| o.key.to_string()).unwrap_or_default();
        let token =
            serde_json::to_vec(&ContinueToken { rv, start: last }).expect("a token serializes");
        next = Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token));
    }
    let chunks = list_body(rt, items, rv, next.as_deref());
    let stream = futures::stream::iter(chunks.map(Ok::<_, Infallible>));
    Ok(json_response(StatusCode::OK, Body::from_stream(stream)))
}

/// Decrements the open-watch gauge when a watch ends, however it ends.
struct WatchGuard(Arc<Metrics>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.watches.dec();
    }
}

async fn watch(
    state: &AppState,
    target: &Target,
    query: &HashMap<String, String>,
) -> ApiResult<Response> {
    let rt = target.rt;
    let filter = Filter::new(rt, target.namespace.as_deref(), query)?;
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true" || b == "1");
    let initial_events = query
        .get("sendInitialEvents")
        .is_some_and(|b| b == "true" || b == "1");
    let timeout = match query.get("timeoutSeconds") {
        Some(t) => Duration::from_secs(t.parse().map_err(|_| {
            ApiError::bad_request(format!("timeoutSeconds must be an integer, got {t:?}"))
        })?),
        // Kubernetes picks a random timeout between 30 and 60 minutes so
        // watches from one client do not all restart together.
        None => Duration::from_secs(1800 + rand::random_range(0..1800)),
    };
    let rv_param = query
        .get("resourceVersion")
        .map(String::as_str)
        .unwrap_or("");
    let start = match rv_param {
        "" | "0" => None,
        n => {
            let rv: i64 = n.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid resourceVersion {n:?}: not a number"))
            })?;
            if !state
                .registry
                .cache
                .wait_for(rv, Duration::from_secs(3))
                .await
            {
                return Err(ApiError::timeout(format!(
                    "Too large resource version: {rv}, current: {}",
                    state.registry.cache.revision()
                )));
            }
            Some(rv)
        }
    };
    if start.is_none() && rv_param.is_empty() {
        wait_for_revision(state, query).await?;
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(256);
    let cache = state.registry.cache.clone();
    let type_cache = cache.of(rt).clone();
    let metrics = state.metrics.clone();
    metrics.watches.inc();
    let guard = WatchGuard(metrics);
    match type_cache.subscribe(start) {
        Err(StartError::TooOld { oldest }) => {
            let status = ApiError::gone(format!(
                "too old resource version: {} ({oldest})",
                start.unwrap_or(0)
            ));
            let line = watch_line("ERROR", &status.to_json());
            let _ = tx.try_send(Ok(line));
            drop(guard);
        }
        Ok(mut sub) => {
            tokio::spawn(async move {
                let _guard = guard;
                let deadline = tokio::time::sleep(timeout);
                tokio::pin!(deadline);
                let mut last_rv = start.unwrap_or(0);
                for event in std::mem::take(&mut sub.backlog) {
                    last_rv = last_rv.max(event.rv());
                    if let Some(line) = filter.render(&event)
                        && tx.send(Ok(line)).await.is_err()
                    {
                        return;
                    }
                }
                if start.is_none() {
                    last_rv = last_rv.max(cache.revision());
                }
                if initial_events
                    && bookmarks
                    && tx.send(Ok(bookmark_line(rt, last_rv, true))).await.is_err()
                {
                    return;
                }
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                tick.reset();
                loop {
                    tokio::select! {
                        event = sub.next(&type_cache) => {
                            // None: the cache is gone, or this watcher fell
                            // behind the whole history; its client resumes.
                            let Some(event) = event else { return };
                            last_rv = last_rv.max(event.rv());
                            if let Some(line) = filter.render(&event)
                                && tx.send(Ok(line)).await.is_err()
                            {
                                return;
                            }
                        }
                        _ = tick.tick(), if bookmarks => {
                            // Read the revision, then check nothing is queued:
                            // every event up to it has then been sent.
                            let rv = cache.revision();
                            if sub.is_idle() && rv > last_rv {
                                last_rv = rv;
                                if tx.send(Ok(bookmark_line(rt, rv, false))).await.is_err() {
                                    return;
                                }
                            }
                        }
                        _ = &mut deadline => return,
                        _ = tx.closed() => return,
                    }
                }
            });
        }
    }
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache, private"),
        ],
        Body::from_stream(ReceiverStream::new(rx)),
    )
        .into_response())
}

fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": concat!("v1.33.0-switchboard.", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
    })
}

fn api_versions(advertise: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": advertise}],
    })
}

fn groups() -> Vec<(&'static str, &'static str)> {
    let mut groups: Vec<(&str, &str)> = switchboard_api::RESOURCES
        .iter()
        .filter(|r| !r.group.is_empty())
        .map(|r| (r.group, r.version))
        .collect();
    groups.dedup();
    groups.sort();
    groups.dedup();
    groups
}

fn group_doc(group: &str, version: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
}

fn api_group_list() -> Value {
    let groups: Vec<Value> = groups().into_iter().map(|(g, v)| group_doc(g, v)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// `/api/v1`, `/apis/<group>` and `/apis/<group>/<version>`.
fn discovery_document(path: &str) -> Option<Value> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version) = match segments.as_slice() {
        ["api", version] => ("", *version),
        ["apis", group] => {
            let (g, v) = groups().into_iter().find(|(g, _)| g == group)?;
            let mut doc = group_doc(g, v);
            doc["kind"] = json!("APIGroup");
            doc["apiVersion"] = json!("v1");
            return Some(doc);
        }
        ["apis", group, version] => (*group, *version),
        _ => return None,
    };
    let types: Vec<&ResourceType> = switchboard_api::RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if types.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for rt in types {
        resources.push(json!({
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": VERBS,
            "shortNames": rt.short_names,
        }));
        let mut subs: Vec<(&str, &str, &[&str])> = Vec::new();
        if rt.has_status {
            subs.push(("status", rt.kind, &["get", "patch", "update"]));
        }
        if rt.has_scale() {
            subs.push(("scale", "Scale", &["get", "patch", "update"]));
        }
        if rt.kind == "Pod" {
            subs.push(("binding", "Binding", &["create"]));
            subs.push(("log", "Pod", &["get"]));
        }
        for (sub, kind, verbs) in subs {
            let mut doc = json!({
                "name": format!("{}/{sub}", rt.plural),
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": kind,
                "verbs": verbs,
            });
            if sub == "scale" {
                doc["group"] = json!("autoscaling");
                doc["version"] = json!("v1");
            }
            resources.push(doc);
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_to_targets() {
        let t = parse_target("/api/v1/namespaces/default/services/web/status")
            .unwrap()
            .unwrap();
        assert_eq!(
            (t.rt.kind, t.namespace.as_deref(), t.name.as_deref(), t.part),
            ("Service", Some("default"), Some("web"), Sub::Status)
        );
        let t = parse_target("/api/v1/namespaces/kube-system")
            .unwrap()
            .unwrap();
        assert_eq!(
            (t.rt.kind, t.name.as_deref()),
            ("Namespace", Some("kube-system"))
        );
        let t = parse_target("/api/v1/services").unwrap().unwrap();
        assert_eq!((t.rt.kind, t.namespace, t.name), ("Service", None, None));
        let t = parse_target("/apis/discovery.k8s.io/v1/namespaces/x/endpointslices")
            .unwrap()
            .unwrap();
        assert_eq!(
            (t.rt.kind, t.namespace.as_deref()),
            ("EndpointSlice", Some("x"))
        );
        assert_eq!(
            parse_target("/api/v1/widgets").unwrap().unwrap_err().code(),
            404
        );
        assert_eq!(
            parse_target("/api/v1/services/web")
                .unwrap()
                .unwrap_err()
                .code(),
            404
        );
        assert!(parse_target("/healthz").is_none());
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(token_matches(b"abc", b"abc"));
        assert!(!token_matches(b"abd", b"abc"));
        assert!(!token_matches(b"ab", b"abc"));
    }
}
