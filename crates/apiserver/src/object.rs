//! Helpers on objects as JSON values: metadata access and the fields that
//! field selectors may name.

use serde_json::{Map, Value};
use switchboard_store::Revision;

/// `metadata` of `obj`, created if missing. Non-object values are replaced:
/// callers only pass objects that were checked to be JSON objects.
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let map = obj.as_object_mut().expect("made an object above");
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut().expect("made an object above")
}

/// A string field of `metadata`.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// Sets `metadata.resourceVersion` to `rv`.
pub fn set_resource_version(obj: &mut Value, rv: Revision) {
    meta_mut(obj).insert("resourceVersion".into(), Value::String(rv.to_string()));
}

/// Removes `metadata.resourceVersion`: the store's revision is the truth, so
/// the stored bytes never carry a copy that could disagree.
pub fn strip_resource_version(obj: &mut Value) {
    meta_mut(obj).remove("resourceVersion");
}

/// Serializes an object for the store.
pub fn to_stored(obj: &Value) -> bytes::Bytes {
    let mut obj = obj.clone();
    strip_resource_version(&mut obj);
    // A serde_json::Value always serializes.
    // Exactly sized, as the store's history may hold it for a while.
    bytes::Bytes::from(
        serde_json::to_vec(&obj)
            .expect("a JSON value serializes")
            .into_boxed_slice(),
    )
}

/// Parses a stored value and sets its resourceVersion.
pub fn from_stored(value: &[u8], rv: Revision) -> Option<Value> {
    let mut obj: Value = serde_json::from_slice(value).ok()?;
    set_resource_version(&mut obj, rv);
    Some(obj)
}

/// The current time in the RFC 3339 form Kubernetes uses (second precision, UTC).
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A Unix time in seconds in the Kubernetes RFC 3339 form.
pub fn rfc3339(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
