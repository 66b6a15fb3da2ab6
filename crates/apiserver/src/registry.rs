//! Object semantics shared by every resource type: create with generated
//! names and metadata, optimistic-concurrency updates, patches, graceful and
//! finalizer-aware deletion, and the `/status` subresource. Kind-specific
//! defaulting, validation and allocation live in [`crate::strategy`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use switchboard_api::ResourceType;
use switchboard_store::{KeyValue, Store};

use crate::cache::{Cached, WatchCache};
use crate::error::{ApiError, ApiResult};
use crate::object::{self, meta_mut, meta_str};
use crate::strategy::Allocators;

/// Namespaces that exist from the start and may not be deleted.
pub const SYSTEM_NAMESPACES: [&str; 3] = ["default", "kube-system", "kube-public"];

/// How many times an update retries after losing a compare-and-swap race to
/// another writer, when the caller did not pin a resourceVersion. Every lost
/// race means another write won, so the loop makes progress; the bound only
/// guards against a pathological hot key.
const MAX_RETRIES: usize = 1000;

/// Which part of an object a write addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The object itself: `status` is kept from the stored object for types
    /// with a status subresource.
    Main,
    /// The `/status` subresource: only `status` changes.
    Status,
}

/// A patch, by content type.
#[derive(Debug, Clone)]
pub enum Patch {
    /// `application/merge-patch+json` (RFC 7386).
    Merge(Value),
    /// `application/json-patch+json` (RFC 6902).
    Json(json_patch::Patch),
    /// `application/strategic-merge-patch+json`: lists with a Kubernetes
    /// merge key (containers by name, ...) merge element-wise
    /// ([`switchboard_api::smp`]).
    Strategic(Value),
    /// `application/apply-patch+yaml` (server-side apply), applied as a
    /// strategic merge patch that creates the object if it does not exist
    /// (no field ownership).
    Apply(Value),
}

/// Options of a delete.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// Grace period for pods; `Some(0)` deletes at once.
    pub grace_period_seconds: Option<i64>,
    /// Delete only if the object still has this uid.
    pub uid: Option<String>,
    /// Delete only if the object is still at this resourceVersion.
    pub resource_version: Option<String>,
}

/// The registry of every object, over the store and the watch cache.
pub struct Registry {
    /// The store, the source of truth.
    pub store: Arc<dyn Store>,
    /// The watch cache, for lists and watches.
    pub cache: Arc<WatchCache>,
    /// Service allocations.
    pub allocators: Allocators,
}

fn random_suffix() -> String {
    // The alphabet Kubernetes uses for generated names: no vowels (no words)
    // and no look-alike characters.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn decode(kv: &KeyValue) -> ApiResult<Value> {
    object::from_stored(&kv.value, kv.mod_revision)
        .ok_or_else(|| ApiError::internal(format!("stored object {} is not valid JSON", kv.key)))
}

/// The grace period a pod deletion uses: the request's, else the pod's own
/// `terminationGracePeriodSeconds`, else 30 s.
fn pod_grace(pod: &Value, requested: Option<i64>) -> i64 {
    requested
        .or_else(|| {
            pod.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30)
        .max(0)
}

/// Whether a pod must wait for its node agent before it disappears: it was
/// placed on a node and has not finished (Kubernetes deletes unscheduled and
/// terminal pods at once).
fn pod_needs_grace(pod: &Value) -> bool {
    let scheduled = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    scheduled && phase != "Succeeded" && phase != "Failed"
}

fn has_finalizers(obj: &Value) -> bool {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

impl Registry {
    /// Reads one object from the store (a consistent read).
    pub async fn get(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> ApiResult<Value> {
        match self.store.get(&rt.key(ns, name)).await? {
            Some(kv) => decode(&kv),
            None => Err(ApiError::not_found(rt, name)),
        }
    }

    /// Creates an object from a request body.
    pub async fn create(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        body: Value,
    ) -> ApiResult<Value> {
        let mut obj = self.prepare_body(rt, ns, body)?;
        let meta = meta_mut(&mut obj);
        let name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let name = if name.is_empty() {
            match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => {
                    // Kubernetes cuts the prefix so the name stays within 63 characters.
                    let cut: String = prefix.chars().take(58).collect();
                    format!("{cut}{}", random_suffix())
                }
                _ => String::new(),
            }
        } else {
            name
        };
        meta.insert("name".into(), Value::String(name.clone()));
        meta.insert(
            "uid".into(),
            Value::String(uuid::Uuid::new_v4().to_string()),
        );
        meta.insert(
            "creationTimestamp".into(),
            Value::String(object::now_rfc3339()),
        );
        meta.insert("generation".into(), json!(1));
        for field in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(field);
        }
        if rt.namespaced {
            self.check_namespace_open(rt, ns.unwrap_or("default"), &name)
                .await?;
        }

        let claims = crate::strategy::prepare_create(rt, &mut obj, &self.allocators)?;
        let key = rt.key(ns, &name);
        match self.store.create(&key, object::to_stored(&obj)).await {
            Ok(kv) => {
                object::set_resource_version(&mut obj, kv.mod_revision);
                Ok(obj)
            }
            Err(err) => {
                self.allocators.release(&claims);
                Err(match err {
                    switchboard_store::Error::AlreadyExists { .. } => {
                        ApiError::already_exists(rt, &name)
                    }
                    other => other.into(),
                })
            }
        }
    }

    async fn check_namespace_open(&self, rt: &ResourceType, ns: &str, name: &str) -> ApiResult<()> {
        let ns_rt = ResourceType::lookup("namespaces").expect("namespaces are in the registry");
        match self.store.get(&ns_rt.key(None, ns)).await? {
            None => Err(ApiError::not_found(ns_rt, ns)),
            Some(kv) => {
                let ns_obj = decode(&kv)?;
                if meta_str(&ns_obj, "deletionTimestamp").is_some() {
                    Err(ApiError::forbidden(
                        rt,
                        name,
                        format!(
                            "unable to create new content in namespace {ns} because it is being terminated"
                        ),
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Checks a request body's kind, apiVersion and namespace against the
    /// request path and fills in what is missing.
    fn prepare_body(&self, rt: &ResourceType, ns: Option<&str>, body: Value) -> ApiResult<Value> {
        let Value::Object(mut map) = body else {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        };
        let api_version = rt.api_version();
        match map.get("apiVersion").and_then(Value::as_str) {
            Some(v) if v != api_version => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({v}) does not match the expected API version ({api_version})"
                )));
            }
            _ => {}
        }
        match map.get("kind").and_then(Value::as_str) {
            Some(k) if k != rt.kind => {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    rt.kind
                )));
            }
            _ => {}
        }
        map.insert("apiVersion".into(), Value::String(api_version));
        map.insert("kind".into(), Value::String(rt.kind.into()));
        let mut obj = Value::Object(map);
        let meta = meta_mut(&mut obj);
        if rt.namespaced {
            let path_ns = ns.unwrap_or("default");
            match meta.get("namespace").and_then(Value::as_str) {
                Some(body_ns) if !body_ns.is_empty() && body_ns != path_ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    meta.insert("namespace".into(), Value::String(path_ns.into()));
                }
            }
        } else {
            meta.remove("namespace");
        }
        Ok(obj)
    }

    /// Replaces an object (PUT). A `metadata.resourceVersion` in the body must
    /// match the stored one (409 Conflict otherwise); without one the update is
    /// unconditional.
    pub async fn replace(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        part: Part,
        body: Value,
    ) -> ApiResult<Value> {
        let body = self.prepare_body(rt, ns, body)?;
        match meta_str(&body, "name") {
            Some(n) if n != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
            _ => {}
        }
        let pinned = meta_str(&body, "resourceVersion")
            .filter(|rv| !rv.is_empty())
            .map(str::to_string);
        self.update_with(rt, ns, name, part, |current| {
            if let Some(rv) = &pinned
                && meta_str(current, "resourceVersion") != Some(rv.as_str())
            {
                return Err(ApiError::conflict(rt, name));
            }
            Ok(body.clone())
        })
        .await
    }

    /// Patches an object.
    pub async fn patch(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        part: Part,
        patch: Patch,
    ) -> ApiResult<Value> {
        if let Patch::Apply(body) = &patch
            && part == Part::Main
            && self.store.get(&rt.key(ns, name)).await?.is_none()
        {
            let mut body = body.clone();
            meta_mut(&mut body).insert("name".into(), Value::String(name.into()));
            return self.create(rt, ns, body).await;
        }
        self.update_with(rt, ns, name, part, |current| {
            let mut doc = current.clone();
            match &patch {
                Patch::Merge(p) => json_patch::merge(&mut doc, p),
                Patch::Strategic(p) | Patch::Apply(p) => switchboard_api::smp::apply(&mut doc, p)
                    .map_err(|e| {
                    ApiError::bad_request(format!(
                        "the strategic merge patch could not be applied: {e}"
                    ))
                })?,
                Patch::Json(p) => json_patch::patch(&mut doc, p).map_err(|e| {
                    ApiError::bad_request(format!("the JSON patch could not be applied: {e}"))
                })?,
            }
            if let Some(rv) = meta_str(&doc, "resourceVersion")
                && Some(rv) != meta_str(current, "resourceVersion")
            {
                return Err(ApiError::conflict(rt, name));
            }
            Ok(doc)
        })
        .await
    }

    /// The shared read-modify-write loop of updates and patches: `change`
    /// turns the current object into the requested one; the result is merged
    /// with what the request may not change, checked, and written with a
    /// compare-and-swap, retrying when another writer got there first.
    pub(crate) async fn update_with(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        part: Part,
        change: impl Fn(&Value) -> ApiResult<Value>,
    ) -> ApiResult<Value> {
        let key = rt.key(ns, name);
        for _ in 0..MAX_RETRIES {
            let Some(kv) = self.store.get(&key).await? else {
                return Err(ApiError::not_found(rt, name));
            };
            let current = decode(&kv)?;
            let requested = change(&current)?;
            let mut next = merge_update(rt, &current, requested, part);
            let claims =
                crate::strategy::prepare_update(rt, &mut next, &current, part, &self.allocators)?;

            // A no-op update writes nothing and keeps the resourceVersion, as
            // Kubernetes does; controllers rely on this to stay quiet.
            if object::to_stored(&next) == object::to_stored(&current) {
                self.allocators.release(&claims);
                return Ok(current);
            }
            // The last finalizer removed from an object being deleted: it goes.
            let finalized = meta_str(&next, "deletionTimestamp").is_some()
                && !has_finalizers(&next)
                && !(rt.kind == "Pod" && deletion_pending(&next));
            let result = if finalized {
                self.store
                    .delete(&key, Some(kv.mod_revision))
                    .await
                    .map(|deleted| {
                        self.released(rt, &next);
                        let mut next = next.clone();
                        object::set_resource_version(&mut next, deleted.mod_revision);
                        next
                    })
            } else {
                self.store
                    .update(&key, object::to_stored(&next), kv.mod_revision)
                    .await
                    .map(|written| {
                        object::set_resource_version(&mut next, written.mod_revision);
                        next
                    })
            };
            match result {
                Ok(next) => {
                    self.allocators.release_replaced(&current, &next);
                    return Ok(next);
                }
                Err(switchboard_store::Error::Conflict { .. }) => {
                    // Lost a race: roll back and try again on the new state.
                    self.allocators.release(&claims);
                    continue;
                }
                Err(switchboard_store::Error::NotFound { .. }) => {
                    self.allocators.release(&claims);
                    return Err(ApiError::not_found(rt, name));
                }
                Err(other) => {
                    self.allocators.release(&claims);
                    return Err(other.into());
                }
            }
        }
        Err(ApiError::conflict(rt, name))
    }

    /// Deletes an object, honouring pod grace periods and finalizers: such an
    /// object gets a `deletionTimestamp` and stays until they are done.
    pub async fn delete(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        options: &DeleteOptions,
    ) -> ApiResult<Value> {
        if rt.kind == "Namespace" {
            return self.delete_namespace(name).await;
        }
        let key = rt.key(ns, name);
        for _ in 0..MAX_RETRIES {
            let Some(kv) = self.store.get(&key).await? else {
                return Err(ApiError::not_found(rt, name));
            };
            let current = decode(&kv)?;
            check_preconditions(rt, name, &current, options)?;

            let now = jiff::Timestamp::now().as_second();
            let graceful = rt.kind == "Pod" && pod_needs_grace(&current);
            let grace = if graceful {
                pod_grace(&current, options.grace_period_seconds)
            } else {
                0
            };
            let finalizers = has_finalizers(&current);
            if grace > 0 || finalizers {
                // Mark for deletion; a shorter grace may replace a longer one.
                let deadline = now + grace;
                let existing = meta_str(&current, "deletionTimestamp")
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                    .map(|t| t.as_second());
                if existing.is_some_and(|e| e <= deadline) {
                    return Ok(current);
                }
                let mut next = current.clone();
                let meta = meta_mut(&mut next);
                meta.insert(
                    "deletionTimestamp".into(),
                    Value::String(object::rfc3339(deadline)),
                );
                meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
                match self
                    .store
                    .update(&key, object::to_stored(&next), kv.mod_revision)
                    .await
                {
                    Ok(written) => {
                        object::set_resource_version(&mut next, written.mod_revision);
                        return Ok(next);
                    }
                    Err(switchboard_store::Error::Conflict { .. }) => continue,
                    Err(switchboard_store::Error::NotFound { .. }) => {
                        return Err(ApiError::not_found(rt, name));
                    }
                    Err(other) => return Err(other.into()),
                }
            }
            match self.store.delete(&key, Some(kv.mod_revision)).await {
                Ok(deleted) => {
                    self.released(rt, &current);
                    let mut gone = current;
                    object::set_resource_version(&mut gone, deleted.mod_revision);
                    return Ok(gone);
                }
                Err(switchboard_store::Error::Conflict { .. }) => continue,
                Err(switchboard_store::Error::NotFound { .. }) => {
                    return Err(ApiError::not_found(rt, name));
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(ApiError::conflict(rt, name))
    }

    /// Returns what a deleted object held to the allocators.
    fn released(&self, rt: &ResourceType, obj: &Value) {
        if rt.kind == "Service" {
            self.allocators.release_replaced(obj, &Value::Null);
        }
    }

    /// Deletes a namespace: it turns `Terminating`, everything in it is
    /// deleted, then the namespace itself goes.
    async fn delete_namespace(&self, name: &str) -> ApiResult<Value> {
        let ns_rt = ResourceType::lookup("namespaces").expect("namespaces are in the registry");
        if SYSTEM_NAMESPACES.contains(&name) {
            return Err(ApiError::forbidden(
                ns_rt,
                name,
                "this namespace may not be deleted",
            ));
        }
        let key = ns_rt.key(None, name);
        // Mark the namespace Terminating first, so nothing new is created in it
        // while its content goes. Written directly: `merge_update` protects
        // deletionTimestamp and status from ordinary updates.
        let marked = loop {
            let Some(kv) = self.store.get(&key).await? else {
                return Err(ApiError::not_found(ns_rt, name));
            };
            let mut next = decode(&kv)?;
            if meta_str(&next, "deletionTimestamp").is_none() {
                meta_mut(&mut next).insert(
                    "deletionTimestamp".into(),
                    Value::String(object::now_rfc3339()),
                );
            }
            if let Some(map) = next.as_object_mut() {
                map.insert("status".into(), json!({"phase": "Terminating"}));
            }
            match self
                .store
                .update(&key, object::to_stored(&next), kv.mod_revision)
                .await
            {
                Ok(written) => {
                    object::set_resource_version(&mut next, written.mod_revision);
                    break next;
                }
                Err(switchboard_store::Error::Conflict { .. }) => continue,
                Err(switchboard_store::Error::NotFound { .. }) => {
                    return Err(ApiError::not_found(ns_rt, name));
                }
                Err(other) => return Err(other.into()),
            }
        };
        for rt in switchboard_api::RESOURCES.iter().filter(|r| r.namespaced) {
            let prefix = format!("{}{}/", rt.key_prefix(), name);
            // A store list, not the cache: it includes writes the cache has not seen yet.
            if let Ok(list) = self.store.list(&prefix).await {
                for kv in list.kvs {
                    if let Ok(deleted) = self.store.delete(&kv.key, None).await
                        && let Some(v) = object::from_stored(&deleted.value, deleted.mod_revision)
                    {
                        self.released(rt, &v);
                    }
                }
            }
        }
        match self.store.delete(&key, None).await {
            Ok(_) | Err(switchboard_store::Error::NotFound { .. }) => Ok(marked),
            Err(other) => Err(other.into()),
        }
    }

    /// Deletes pods whose grace period has ended and that no finalizer holds
    /// (their node agent did not confirm in time). Runs until the process ends.
    pub async fn reap_pods(self: Arc<Self>) {
        let pods = ResourceType::lookup("pods").expect("pods are in the registry");
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = jiff::Timestamp::now().as_second();
            let due: Vec<Arc<Cached>> = self
                .cache
                .of(pods)
                .list(&pods.key_prefix(), None)
                .into_iter()
                .filter(|p| p.deletion.is_some_and(|t| t <= now))
                .collect();
            for pod in due {
                let Some(kv) = self.store.get(&pod.key).await.ok().flatten() else {
                    continue;
                };
                let Ok(current) = decode(&kv) else { continue };
                if has_finalizers(&current) || deletion_pending(&current) {
                    continue;
                }
                if let Err(err) = self.store.delete(&pod.key, Some(kv.mod_revision)).await {
                    tracing::debug!(key = %pod.key, %err, "reaping pod deferred");
                }
            }
        }
    }
}

/// Whether a pod's deletion deadline is still in the future.
fn deletion_pending(obj: &Value) -> bool {
    meta_str(obj, "deletionTimestamp")
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .is_some_and(|t| t.as_second() > jiff::Timestamp::now().as_second())
}

fn check_preconditions(
    rt: &ResourceType,
    name: &str,
    current: &Value,
    options: &DeleteOptions,
) -> ApiResult<()> {
    if let Some(uid) = &options.uid
        && meta_str(current, "uid") != Some(uid.as_str())
    {
        return Err(ApiError::conflict(rt, name));
    }
    if let Some(rv) = &options.resource_version
        && meta_str(current, "resourceVersion") != Some(rv.as_str())
    {
        return Err(ApiError::conflict(rt, name));
    }
    Ok(())
}

/// Combines the stored object and a requested one into what an update
/// writes: the request decides the part it addresses; identity and
/// lifecycle metadata always come from the stored object.
fn merge_update(rt: &ResourceType, current: &Value, requested: Value, part: Part) -> Value {
    let mut next = match part {
        Part::Main => {
            let mut next = requested;
            if rt.has_status
                && let Some(map) = next.as_object_mut()
            {
                match current.get("status") {
                    Some(status) => map.insert("status".into(), status.clone()),
                    None => map.remove("status"),
                };
            }
            next
        }
        Part::Status => {
            let mut next = current.clone();
            if let (Some(map), Some(status)) = (next.as_object_mut(), requested.get("status")) {
                map.insert("status".into(), status.clone());
            }
            next
        }
    };
    if let Some(map) = next.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(rt.api_version()));
        map.insert("kind".into(), Value::String(rt.kind.into()));
    }
    let old_meta = current
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let spec_changed = current.get("spec") != next.get("spec");
    let meta: &mut Map<String, Value> = meta_mut(&mut next);
    for field in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old_meta.get(field) {
            Some(v) => meta.insert(field.into(), v.clone()),
            None => meta.remove(field),
        };
    }
    if spec_changed {
        let generation = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        meta.insert("generation".into(), json!(generation));
    }
    meta.remove("managedFields");
    meta.remove("selfLink");
    next
}

/// A list response from cached objects, serialized without re-encoding them
/// and produced in chunks as the connection takes them.
///
/// A list of every Pod or EndpointSlice of a large cluster is tens of
/// megabytes of JSON; built whole, each such request would hold all of it
/// (and the allocator would keep the pages for the next one). Chunked, the
/// server holds the item handles and about [`LIST_CHUNK`] of JSON at a time,
/// as kube-apiserver has streamed its JSON lists since 1.33. The items are
/// the objects at the list's revision: later changes replace the cache's
/// entries, not these.
pub struct ListBody {
    head: Option<Vec<u8>>,
    items: std::vec::IntoIter<Arc<Cached>>,
    first: bool,
    done: bool,
}

/// Bytes of JSON gathered before a chunk is handed to the connection.
pub const LIST_CHUNK: usize = 64 * 1024;

/// See [`ListBody`].
pub fn list_body(
    rt: &ResourceType,
    items: Vec<Arc<Cached>>,
    rv: i64,
    continue_token: Option<&str>,
) -> ListBody {
    let mut head = Vec::with_capacity(160);
    head.extend_from_slice(b"{\"kind\":\"");
    head.extend_from_slice(rt.kind.as_bytes());
    head.extend_from_slice(b"List\",\"apiVersion\":\"");
    head.extend_from_slice(rt.api_version().as_bytes());
    head.extend_from_slice(b"\",\"metadata\":{\"resourceVersion\":\"");
    head.extend_from_slice(rv.to_string().as_bytes());
    head.push(b'"');
    if let Some(token) = continue_token {
        head.extend_from_slice(b",\"continue\":");
        // A base64 token needs no escaping, but serialize to be safe.
        head.extend_from_slice(&serde_json::to_vec(token).expect("a string serializes"));
    }
    head.extend_from_slice(b"},\"items\":[");
    ListBody {
        head: Some(head),
        items: items.into_iter(),
        first: true,
        done: false,
    }
}

impl Iterator for ListBody {
    type Item = Bytes;

    /// The next chunk: at least [`LIST_CHUNK`] bytes unless it is the last.
    fn next(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let mut out = self.head.take().unwrap_or_default();
        out.reserve(LIST_CHUNK + 4096);
        while out.len() < LIST_CHUNK {
            let Some(item) = self.items.next() else {
                out.extend_from_slice(b"]}");
                self.done = true;
                break;
            };
            if !std::mem::take(&mut self.first) {
                out.push(b',');
            }
            item.json.write_to(&mut out);
        }
        Some(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::Packer;

    fn pods(n: usize) -> Vec<Arc<Cached>> {
        let rt = pod_type();
        let packer = Packer::default();
        (0..n)
            .map(|i| {
                let json = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {
                    "name": format!("pod-{i}"), "namespace": "default",
                    "labels": {"app": "web", "pod-template-hash": "5d8f7c9b6d"}},
                    "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}});
                let key = format!("/registry/pods/default/pod-{i}");
                let bytes = serde_json::to_vec(&json).expect("a JSON value serializes");
                Arc::new(Cached::from_stored(rt, &key, &bytes, 7, &packer).expect("valid pod"))
            })
            .collect()
    }

    fn pod_type() -> &'static ResourceType {
        switchboard_api::RESOURCES
            .iter()
            .find(|rt| rt.kind == "Pod")
            .expect("Pods are served")
    }

    #[test]
    fn a_chunked_list_is_one_valid_list_of_every_item() {
        for n in [0, 1, 2, 1000] {
            let chunks: Vec<Bytes> = list_body(pod_type(), pods(n), 42, Some("tok")).collect();
            // Every chunk but the last is at least LIST_CHUNK long, so a
            // long list really is cut up and a short one is one chunk.
            let (last, rest) = chunks.split_last().expect("at least one chunk");
            assert!(rest.iter().all(|c| c.len() >= LIST_CHUNK), "n={n}");
            assert!(!last.is_empty());
            if n == 1000 {
                assert!(chunks.len() > 1, "a 1000-pod list in one chunk");
            }
            let body: Vec<u8> = chunks.iter().flat_map(|c| c.to_vec()).collect();
            let list: Value = serde_json::from_slice(&body).expect("the body is JSON");
            assert_eq!(list["kind"], "PodList");
            assert_eq!(list["metadata"]["resourceVersion"], "42");
            assert_eq!(list["metadata"]["continue"], "tok");
            let items = list["items"].as_array().expect("items");
            assert_eq!(items.len(), n);
            for (i, item) in items.iter().enumerate() {
                assert_eq!(item["metadata"]["name"], format!("pod-{i}"));
                assert_eq!(item["metadata"]["resourceVersion"], "7");
            }
        }
    }
}
