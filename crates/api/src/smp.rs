//! Strategic merge patch (`application/strategic-merge-patch+json`), the
//! patch kubectl sends for `apply`, `set env`, `set image`, `edit` and
//! `scale`.
//!
//! It is a JSON merge patch (RFC 7386) with one difference that matters:
//! lists whose Kubernetes type declares `patchStrategy: merge` are merged
//! element by element on their `patchMergeKey` (containers by `name`, a
//! container's ports by `containerPort`, ...) instead of being replaced. The
//! merge keys are those of the core/v1 and apps/v1 types, looked up by field
//! name: the field names that carry them mean the same thing wherever they
//! appear in the objects Switchboard serves. The directives kubectl emits
//! are honoured: `$patch: replace|delete|merge`, `$retainKeys`,
//! `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`.

use serde_json::{Map, Value};

/// How a list field is patched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListStrategy {
    /// Objects merged by the value of this key.
    MergeOn(&'static str),
    /// Scalars, as a set union.
    Union,
    /// Replaced whole (the default).
    Replace,
}

/// The strategy of a list field, by name; `element` is a patch element,
/// which tells a container's ports (`containerPort`) from a Service's
/// (`port`).
fn strategy(field: &str, element: Option<&Value>) -> ListStrategy {
    use ListStrategy::*;
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims" => MergeOn("name"),
        "volumeMounts" => MergeOn("mountPath"),
        "volumeDevices" => MergeOn("devicePath"),
        "conditions" | "addresses" => MergeOn("type"),
        "ownerReferences" => MergeOn("uid"),
        "hostAliases" => MergeOn("ip"),
        "readinessGates" => MergeOn("conditionType"),
        "ports" => {
            if element.is_some_and(|e| e.get("containerPort").is_some()) {
                MergeOn("containerPort")
            } else {
                MergeOn("port")
            }
        }
        "finalizers" => Union,
        _ => Replace,
    }
}

/// Why a patch cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchError(pub String);

impl std::fmt::Display for PatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PatchError {}

/// Applies a strategic merge patch to `doc` in place.
pub fn apply(doc: &mut Value, patch: &Value) -> Result<(), PatchError> {
    match patch {
        Value::Object(p) => {
            if !doc.is_object() {
                *doc = Value::Object(Map::new());
            }
            let Value::Object(d) = doc else {
                unreachable!("doc was made an object just above");
            };
            if let Some(replaced) = merge_map(d, p)? {
                *doc = replaced;
            }
            Ok(())
        }
        other => {
            *doc = other.clone();
            Ok(())
        }
    }
}

/// Merges patch map `p` into `d`; returns a whole replacement when the
/// patch says `$patch: replace` or `delete` (then `Value::Null`).
fn merge_map(
    d: &mut Map<String, Value>,
    p: &Map<String, Value>,
) -> Result<Option<Value>, PatchError> {
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut fresh = p.clone();
            fresh.remove("$patch");
            strip_directives(&mut fresh);
            return Ok(Some(Value::Object(fresh)));
        }
        Some("delete") => return Ok(Some(Value::Null)),
        Some("merge") | None => {}
        Some(other) => {
            return Err(PatchError(format!(
                "unknown patch directive $patch: {other:?} (expected replace, delete or merge)"
            )));
        }
    }
    if let Some(retain) = p.get("$retainKeys") {
        let keep: Vec<&str> = retain
            .as_array()
            .ok_or_else(|| PatchError("$retainKeys must be a list of field names".into()))?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        d.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (key, value) in p {
        if key == "$patch" || key == "$retainKeys" {
            continue;
        }
        if key.starts_with("$setElementOrder/") || key.starts_with("$deleteFromPrimitiveList/") {
            continue; // applied after the lists are merged, below
        }
        if key.starts_with('$') {
            return Err(PatchError(format!("unknown patch directive {key:?}")));
        }
        match value {
            Value::Null => {
                d.remove(key);
            }
            Value::Object(pm) => {
                let slot = d.entry(key.clone()).or_insert(Value::Null);
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                let Value::Object(dm) = slot else {
                    unreachable!("slot was made an object just above");
                };
                match merge_map(dm, pm)? {
                    Some(Value::Null) => {
                        d.remove(key);
                    }
                    Some(replaced) => {
                        d.insert(key.clone(), replaced);
                    }
                    None => {}
                }
            }
            Value::Array(pl) => {
                let merged = match (strategy(key, pl.first()), d.get(key)) {
                    (ListStrategy::MergeOn(k), Some(Value::Array(dl))) => merge_list(dl, pl, k)?,
                    (ListStrategy::MergeOn(k), _) => merge_list(&[], pl, k)?,
                    (ListStrategy::Union, Some(Value::Array(dl))) => {
                        let mut out = dl.clone();
                        for v in pl {
                            if !out.contains(v) {
                                out.push(v.clone());
                            }
                        }
                        out
                    }
                    _ => {
                        let mut out = pl.clone();
                        out.iter_mut().for_each(strip_value_directives);
                        out
                    }
                };
                d.insert(key.clone(), Value::Array(merged));
            }
            scalar => {
                d.insert(key.clone(), scalar.clone());
            }
        }
    }
    for (key, value) in p {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/")
            && let (Some(Value::Array(list)), Some(gone)) = (d.get_mut(field), value.as_array())
        {
            list.retain(|v| !gone.contains(v));
        }
    }
    for (key, order) in p {
        if let Some(field) = key.strip_prefix("$setElementOrder/")
            && let (Some(Value::Array(list)), Some(order)) = (d.get_mut(field), order.as_array())
        {
            reorder(list, order, strategy(field, order.first()));
        }
    }
    Ok(None)
}

/// Merges a patch list into an original list on `key`.
fn merge_list(original: &[Value], patch: &[Value], key: &str) -> Result<Vec<Value>, PatchError> {
    let mut out: Vec<Value> = original.to_vec();
    for element in patch {
        let Value::Object(pe) = element else {
            return Err(PatchError(format!(
                "a list merged on {key:?} must hold objects, got {element}"
            )));
        };
        let id = pe.get(key).ok_or_else(|| {
            PatchError(format!(
                "an element of a list merged on {key:?} lacks {key:?}: {element}"
            ))
        })?;
        let at = out.iter().position(|o| o.get(key) == Some(id));
        match (pe.get("$patch").and_then(Value::as_str), at) {
            (Some("delete"), Some(i)) => {
                out.remove(i);
            }
            (Some("delete"), None) => {}
            (_, Some(i)) => {
                if let Value::Object(om) = &mut out[i] {
                    if let Some(replaced) = merge_map(om, pe)? {
                        out[i] = replaced;
                    }
                } else {
                    out[i] = element.clone();
                }
            }
            (_, None) => {
                let mut fresh = pe.clone();
                fresh.remove("$patch");
                strip_directives(&mut fresh);
                out.push(Value::Object(fresh));
            }
        }
    }
    out.retain(|v| !v.is_null());
    Ok(out)
}

/// Orders `list` as `order` says (elements it does not name keep their
/// relative order, after those it names).
fn reorder(list: &mut Vec<Value>, order: &[Value], strategy: ListStrategy) {
    let rank = |v: &Value| {
        order.iter().position(|o| match strategy {
            ListStrategy::MergeOn(k) => o.get(k).is_some() && o.get(k) == v.get(k),
            _ => o == v,
        })
    };
    let mut ranked: Vec<(usize, Value)> = list
        .drain(..)
        .map(|v| (rank(&v).unwrap_or(usize::MAX), v))
        .collect();
    ranked.sort_by_key(|(r, _)| *r);
    list.extend(ranked.into_iter().map(|(_, v)| v));
}

fn strip_directives(map: &mut Map<String, Value>) {
    map.retain(|k, _| !k.starts_with('$'));
    map.values_mut().for_each(strip_value_directives);
}

fn strip_value_directives(value: &mut Value) {
    match value {
        Value::Object(m) => strip_directives(m),
        Value::Array(a) => a.iter_mut().for_each(strip_value_directives),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [
            {"name": "app", "image": "agnhost", "args": ["serve-hostname"],
             "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
             "ports": [{"containerPort": 8080, "name": "http"}]},
            {"name": "side", "image": "busybox"}]}}}})
    }

    fn patched(patch: Value) -> Value {
        let mut doc = deployment();
        apply(&mut doc, &patch).expect("the patch applies");
        doc
    }

    #[test]
    fn kubectl_set_env_merges_containers_and_env_by_name() {
        let doc = patched(json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}]}}}}));
        let c = &doc["spec"]["template"]["spec"]["containers"];
        assert_eq!(c.as_array().unwrap().len(), 2, "the other container stays");
        assert_eq!(c[0]["image"], "agnhost", "unpatched fields stay");
        assert_eq!(
            c[0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}])
        );
    }

    #[test]
    fn directives_delete_replace_and_order() {
        let doc = patched(json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "side"}, {"name": "app"}],
            "containers": [
                {"name": "app", "env": [{"name": "A", "$patch": "delete"}],
                 "$setElementOrder/env": [{"name": "B"}, {"name": "A"}]},
                {"name": "side", "$patch": "replace", "name2": "x"}]}}}}));
        let c = &doc["spec"]["template"]["spec"]["containers"];
        assert_eq!(
            c[0],
            json!({"name": "side", "name2": "x"}),
            "replaced, and ordered first"
        );
        assert_eq!(c[1]["env"], json!([{"name": "B", "value": "2"}]));

        let doc = patched(
            json!({"spec": {"replicas": null, "template": {"spec": {"containers": [
            {"name": "side", "$patch": "delete"}]}}}}),
        );
        assert!(doc["spec"].get("replicas").is_none(), "null deletes");
        assert_eq!(
            doc["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            1
        );

        let doc = patched(json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "$retainKeys": ["name", "image"], "image": "new"}]}}}}));
        assert_eq!(
            doc["spec"]["template"]["spec"]["containers"][0],
            json!({"name": "app", "image": "new"})
        );
    }

    #[test]
    fn ports_merge_on_their_kind_of_key_and_other_lists_are_replaced() {
        let doc = patched(json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "args": ["netexec"], "ports": [{"containerPort": 9090}]}]}}}}));
        let c = &doc["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["args"], json!(["netexec"]), "args are replaced");
        assert_eq!(c["ports"].as_array().unwrap().len(), 2);

        let mut svc = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}});
        apply(
            &mut svc,
            &json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
        )
        .unwrap();
        assert_eq!(
            svc["spec"]["ports"],
            json!([{"port": 80, "targetPort": 9090}, {"port": 443}])
        );

        let mut meta = json!({"metadata": {"finalizers": ["a"]}});
        apply(
            &mut meta,
            &json!({"metadata": {"finalizers": ["b", "a"],
            "$deleteFromPrimitiveList/finalizers": ["a"]}}),
        )
        .unwrap();
        assert_eq!(meta["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn bad_patches_are_errors_not_panics() {
        let mut doc = deployment();
        let before = doc.clone();
        for bad in [
            json!({"spec": {"template": {"spec": {"containers": ["app"]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
            json!({"spec": {"$patch": "explode"}}),
            json!({"spec": {"$unknown": 1}}),
        ] {
            let mut d = doc.clone();
            assert!(apply(&mut d, &bad).is_err(), "{bad} accepted");
        }
        apply(&mut doc, &json!("scalar")).unwrap();
        assert_eq!(doc, json!("scalar"));
        assert_ne!(before, doc);
    }
}
