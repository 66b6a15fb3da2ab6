//! A container's environment and command line, built as the kubelet's
//! `makeEnvironmentVariables` and `ExpandContainerCommandAndArgs` do. Pure:
//! the caller fetches the ConfigMaps and Secrets [`references`] names and
//! the service variables (`switchboard_api::envvars::for_pod`).
//!
//! Precedence, lowest first: the agent's base environment (what an image
//! would give: `PATH`), the service variables, `envFrom` in order, `env` in
//! order; then `POD_IP` and `HOSTNAME` when the pod did not set them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{Container, EnvVar, ObjectFieldSelector, Pod};

use crate::expand::expand;

/// ConfigMaps and Secrets of the pod's namespace, by name; a name that is
/// absent was not found. Secret values are already decoded (lossy UTF-8).
#[derive(Debug, Clone, Default)]
pub struct Objects {
    /// ConfigMap name → `data` (and `binaryData` as lossy text).
    pub config_maps: HashMap<String, BTreeMap<String, String>>,
    /// Secret name → decoded `data` and `stringData`.
    pub secrets: HashMap<String, BTreeMap<String, String>>,
}

/// What the environment of one container depends on besides its spec.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The pod.
    pub pod: &'a Pod,
    /// The pod's IP.
    pub pod_ip: &'a str,
    /// The node's IP.
    pub host_ip: &'a str,
    /// The service variables the pod sees.
    pub services: &'a [(String, String)],
    /// The ConfigMaps and Secrets the container references.
    pub objects: &'a Objects,
    /// The base environment (lowest precedence).
    pub base: &'a [(String, String)],
}

/// Why a container's environment cannot be built; the kubelet reports it as
/// `CreateContainerConfigError` with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A referenced ConfigMap does not exist and is not optional.
    #[error("configmap \"{name}\" not found")]
    ConfigMapNotFound {
        /// Its name.
        name: String,
    },
    /// A referenced Secret does not exist and is not optional.
    #[error("secret \"{name}\" not found")]
    SecretNotFound {
        /// Its name.
        name: String,
    },
    /// A `configMapKeyRef` key is missing.
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKey {
        /// The key.
        key: String,
        /// The pod's namespace.
        namespace: String,
        /// The ConfigMap.
        name: String,
    },
    /// A `secretKeyRef` key is missing.
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKey {
        /// The key.
        key: String,
        /// The pod's namespace.
        namespace: String,
        /// The Secret.
        name: String,
    },
    /// A `fieldRef` this agent does not know.
    #[error("unsupported fieldPath: {0}")]
    FieldPath(String),
}

/// The ConfigMap and Secret names `container` references (`envFrom`,
/// `configMapKeyRef`, `secretKeyRef`).
pub fn references(container: &Container) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut cms = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    for from in container.env_from.iter().flatten() {
        if let Some(r) = &from.config_map_ref {
            cms.insert(r.name.clone());
        }
        if let Some(r) = &from.secret_ref {
            secrets.insert(r.name.clone());
        }
    }
    for var in container.env.iter().flatten() {
        let Some(from) = &var.value_from else {
            continue;
        };
        if let Some(r) = &from.config_map_key_ref {
            cms.insert(r.name.clone());
        }
        if let Some(r) = &from.secret_key_ref {
            secrets.insert(r.name.clone());
        }
    }
    (cms, secrets)
}

/// The environment of `container`, the variables that `$(VAR)` in its
/// command and args may use, and the full process environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// What `$(VAR)` in `command`/`args` resolves against: the kubelet's
    /// list (service variables, `envFrom`, `env`) plus `POD_IP`.
    pub expansion: BTreeMap<String, String>,
    /// The process environment.
    pub process: BTreeMap<String, String>,
}

/// Builds the environment of `container` in the pod of `inputs`.
pub fn build(container: &Container, inputs: &Inputs<'_>) -> Result<Environment, ConfigError> {
    let pod = inputs.pod;
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let services: HashMap<&str, &str> = inputs
        .services
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();

    // envFrom first; `env` then overrides.
    let mut tmp: BTreeMap<String, String> = BTreeMap::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        if let Some(r) = &from.config_map_ref {
            match inputs.objects.config_maps.get(&r.name) {
                Some(data) => {
                    for (k, v) in data {
                        tmp.insert(format!("{prefix}{k}"), v.clone());
                    }
                }
                None if r.optional == Some(true) => {}
                None => {
                    return Err(ConfigError::ConfigMapNotFound {
                        name: r.name.clone(),
                    });
                }
            }
        }
        if let Some(r) = &from.secret_ref {
            match inputs.objects.secrets.get(&r.name) {
                Some(data) => {
                    for (k, v) in data {
                        tmp.insert(format!("{prefix}{k}"), v.clone());
                    }
                }
                None if r.optional == Some(true) => {}
                None => {
                    return Err(ConfigError::SecretNotFound {
                        name: r.name.clone(),
                    });
                }
            }
        }
    }

    for var in container.env.iter().flatten() {
        let value = match resolve(container, var, &tmp, &services, inputs, namespace)? {
            Some(v) => v,
            // An optional reference that is missing sets nothing.
            None => continue,
        };
        tmp.insert(var.name.clone(), value);
    }

    // The kubelet's list: `tmp`, then the service variables it lacks.
    let mut expansion = tmp;
    for (k, v) in inputs.services {
        expansion.entry(k.clone()).or_insert_with(|| v.clone());
    }
    expansion
        .entry("POD_IP".to_owned())
        .or_insert_with(|| inputs.pod_ip.to_owned());

    let mut process: BTreeMap<String, String> = inputs.base.iter().cloned().collect();
    process.extend(expansion.iter().map(|(k, v)| (k.clone(), v.clone())));
    if !expansion.contains_key("HOSTNAME") {
        let hostname = pod
            .spec
            .as_ref()
            .and_then(|s| s.hostname.clone())
            .or_else(|| pod.metadata.name.clone())
            .unwrap_or_default();
        process.insert("HOSTNAME".to_owned(), hostname);
    }
    Ok(Environment { expansion, process })
}

/// The value of one `env` entry: `Ok(None)` for an optional reference
/// that is missing.
fn resolve(
    container: &Container,
    var: &EnvVar,
    tmp: &BTreeMap<String, String>,
    services: &HashMap<&str, &str>,
    inputs: &Inputs<'_>,
    namespace: &str,
) -> Result<Option<String>, ConfigError> {
    if let Some(value) = var.value.as_deref().filter(|v| !v.is_empty()) {
        // Declared variables first, then the service variables.
        return Ok(Some(expand(value, |name| {
            tmp.get(name)
                .cloned()
                .or_else(|| services.get(name).map(|s| (*s).to_owned()))
        })));
    }
    let Some(from) = &var.value_from else {
        return Ok(Some(String::new()));
    };
    if let Some(field) = &from.field_ref {
        return field_value(field, inputs).map(Some);
    }
    if let Some(r) = &from.config_map_key_ref {
        let optional = r.optional == Some(true);
        return match inputs.objects.config_maps.get(&r.name) {
            None if optional => Ok(None),
            None => Err(ConfigError::ConfigMapNotFound {
                name: r.name.clone(),
            }),
            Some(data) => match data.get(&r.key) {
                Some(v) => Ok(Some(v.clone())),
                None if optional => Ok(None),
                None => Err(ConfigError::ConfigMapKey {
                    key: r.key.clone(),
                    namespace: namespace.to_owned(),
                    name: r.name.clone(),
                }),
            },
        };
    }
    if let Some(r) = &from.secret_key_ref {
        let optional = r.optional == Some(true);
        return match inputs.objects.secrets.get(&r.name) {
            None if optional => Ok(None),
            None => Err(ConfigError::SecretNotFound {
                name: r.name.clone(),
            }),
            Some(data) => match data.get(&r.key) {
                Some(v) => Ok(Some(v.clone())),
                None if optional => Ok(None),
                None => Err(ConfigError::SecretKey {
                    key: r.key.clone(),
                    namespace: namespace.to_owned(),
                    name: r.name.clone(),
                }),
            },
        };
    }
    if let Some(r) = &from.resource_field_ref {
        // Without resource accounting the agent passes the declared
        // quantity through, and "0" when none is declared.
        // `containerName` is required in volumes only; in env it defaults
        // to the container itself.
        let container = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
            Some(name) => inputs
                .pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .find(|c| c.name == name),
            None => Some(container),
        };
        let (kind, resource) = r.resource.split_once('.').unwrap_or(("", ""));
        let resources = container.and_then(|c| c.resources.as_ref());
        let list = match kind {
            "limits" => resources.and_then(|r| r.limits.as_ref()),
            "requests" => resources.and_then(|r| r.requests.as_ref()),
            _ => None,
        };
        let value = list
            .and_then(|l| l.get(resource))
            .map(|q| q.0.clone())
            .unwrap_or_else(|| "0".to_owned());
        return Ok(Some(value));
    }
    Ok(Some(String::new()))
}

/// The kubelet's `podFieldSelectorRuntimeValue` and the downward API's
/// `ExtractFieldPathAsString`.
fn field_value(field: &ObjectFieldSelector, inputs: &Inputs<'_>) -> Result<String, ConfigError> {
    let pod = inputs.pod;
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let path = field.field_path.as_str();
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .filter(|s| !s.is_empty())
            // What the ServiceAccount admission would have set.
            .unwrap_or_else(|| "default".to_owned()),
        "status.podIP" | "status.podIPs" => inputs.pod_ip.to_owned(),
        "status.hostIP" | "status.hostIPs" => inputs.host_ip.to_owned(),
        other => {
            let subscript = |prefix: &str| {
                other
                    .strip_prefix(prefix)?
                    .strip_prefix("['")?
                    .strip_suffix("']")
                    .map(str::to_owned)
            };
            if let Some(key) = subscript("metadata.labels") {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(&key).cloned())
                    .unwrap_or_default()
            } else if let Some(key) = subscript("metadata.annotations") {
                meta.annotations
                    .as_ref()
                    .and_then(|l| l.get(&key).cloned())
                    .unwrap_or_default()
            } else {
                return Err(ConfigError::FieldPath(other.to_owned()));
            }
        }
    };
    Ok(value)
}

/// `command` followed by `args`, each with `$(VAR)` expanded against `vars`.
pub fn command_line(container: &Container, vars: &BTreeMap<String, String>) -> Vec<String> {
    let lookup = |name: &str| vars.get(name).cloned();
    container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten())
        .map(|s| expand(s, lookup))
        .collect()
}

/// `args` alone, expanded (for an image whose entrypoint the agent supplies).
pub fn args_line(container: &Container, vars: &BTreeMap<String, String>) -> Vec<String> {
    let lookup = |name: &str| vars.get(name).cloned();
    container
        .args
        .iter()
        .flatten()
        .map(|s| expand(s, lookup))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1",
                         "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": containers}
        }))
        .unwrap_or_else(|e| panic!("test pod: {e}"))
    }

    fn container(p: &Pod) -> &Container {
        p.spec
            .as_ref()
            .map(|s| &s.containers[0])
            .unwrap_or_else(|| panic!("no spec"))
    }

    fn objects() -> Objects {
        let mut o = Objects::default();
        o.config_maps.insert(
            "cfg".into(),
            [("MODE", "fast"), ("LEVEL", "3")]
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        o.secrets.insert(
            "creds".into(),
            [("PASSWORD", "hunter2")]
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        o
    }

    fn services() -> Vec<(String, String)> {
        vec![
            ("KUBERNETES_SERVICE_HOST".into(), "10.96.0.1".into()),
            ("DB_SERVICE_HOST".into(), "10.96.0.7".into()),
        ]
    }

    fn build_for(p: &Pod, o: &Objects) -> Result<Environment, ConfigError> {
        let svcs = services();
        let base = vec![("PATH".to_owned(), "/usr/bin:/bin".to_owned())];
        build(
            container(p),
            &Inputs {
                pod: p,
                pod_ip: "127.244.0.2",
                host_ip: "127.0.0.1",
                services: &svcs,
                objects: o,
                base: &base,
            },
        )
    }

    #[test]
    fn precedence_and_sources() {
        let p = pod(json!([{
            "name": "c",
            "envFrom": [
                {"configMapRef": {"name": "cfg"}},
                {"secretRef": {"name": "creds"}, "prefix": "S_"},
                {"configMapRef": {"name": "missing", "optional": true}},
            ],
            "env": [
                {"name": "LEVEL", "value": "9"},
                {"name": "DB", "value": "$(DB_SERVICE_HOST):5432"},
                {"name": "BOTH", "value": "$(MODE)-$(LEVEL)-$(LATER)-$$(MODE)"},
                {"name": "LATER", "value": "x"},
                {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "M", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "MODE"}}},
                {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "PASSWORD"}}},
                {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": true}}},
                {"name": "KUBERNETES_SERVICE_HOST", "value": "override"},
                {"name": "EMPTY"},
            ]
        }]));
        let env = build_for(&p, &objects()).unwrap_or_else(|e| panic!("{e}"));
        let get = |k: &str| env.process.get(k).map(String::as_str);
        assert_eq!(get("MODE"), Some("fast"));
        assert_eq!(get("LEVEL"), Some("9"), "env overrides envFrom");
        assert_eq!(get("S_PASSWORD"), Some("hunter2"), "prefix");
        assert_eq!(get("DB"), Some("10.96.0.7:5432"), "service vars expand");
        // LATER is declared after BOTH, so it is not yet known.
        assert_eq!(get("BOTH"), Some("fast-9-$(LATER)-$(MODE)"));
        assert_eq!(get("NAME"), Some("web-1"));
        assert_eq!(get("NS"), Some("shop"));
        assert_eq!(get("UID"), Some("u-1"));
        assert_eq!(get("NODE"), Some("n1"));
        assert_eq!(get("SA"), Some("default"));
        assert_eq!(get("MY_IP"), Some("127.244.0.2"));
        assert_eq!(get("HOST"), Some("127.0.0.1"));
        assert_eq!(get("APP"), Some("web"));
        assert_eq!(get("M"), Some("fast"));
        assert_eq!(get("PW"), Some("hunter2"));
        assert_eq!(get("OPT"), None, "optional and missing: not set");
        assert_eq!(get("KUBERNETES_SERVICE_HOST"), Some("override"));
        assert_eq!(get("EMPTY"), Some(""));
        assert_eq!(get("POD_IP"), Some("127.244.0.2"));
        assert_eq!(get("HOSTNAME"), Some("web-1"));
        assert_eq!(get("PATH"), Some("/usr/bin:/bin"));
        assert!(
            !env.expansion.contains_key("PATH"),
            "the base is not the kubelet's list"
        );
        assert!(!env.expansion.contains_key("HOSTNAME"));
    }

    #[test]
    fn missing_references_fail_with_the_kubelet_texts() {
        let cases = [
            (
                json!({"envFrom": [{"configMapRef": {"name": "nope"}}]}),
                "configmap \"nope\" not found",
            ),
            (
                json!({"envFrom": [{"secretRef": {"name": "nope"}}]}),
                "secret \"nope\" not found",
            ),
            (
                json!({"env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "NOPE"}}}]}),
                "couldn't find key NOPE in ConfigMap shop/cfg",
            ),
            (
                json!({"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "NOPE"}}}]}),
                "couldn't find key NOPE in Secret shop/creds",
            ),
            (
                json!({"env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}]}),
                "unsupported fieldPath: spec.bogus",
            ),
        ];
        for (mut c, want) in cases {
            c["name"] = json!("c");
            let p = pod(json!([c]));
            let err = build_for(&p, &objects()).err().map(|e| e.to_string());
            assert_eq!(err.as_deref(), Some(want));
        }
    }

    #[test]
    fn command_and_args_expand_against_the_final_environment() {
        let p = pod(json!([{
            "name": "c",
            "command": ["sh", "-c", "echo $(GREETING) $(POD_IP) $(DB_SERVICE_HOST) $$(GREETING) $(HOSTNAME)"],
            "args": ["$(UNKNOWN)", "$(GREETING)"],
            "env": [{"name": "GREETING", "value": "hi"}]
        }]));
        let env = build_for(&p, &objects()).unwrap_or_else(|e| panic!("{e}"));
        let line = command_line(container(&p), &env.expansion);
        assert_eq!(
            line,
            [
                "sh",
                "-c",
                "echo hi 127.244.0.2 10.96.0.7 $(GREETING) $(HOSTNAME)",
                "$(UNKNOWN)",
                "hi"
            ]
        );
        assert_eq!(
            args_line(container(&p), &env.expansion),
            ["$(UNKNOWN)", "hi"]
        );
    }

    #[test]
    fn user_pod_ip_and_hostname_win() {
        let p = pod(json!([{
            "name": "c",
            "env": [{"name": "POD_IP", "value": "mine"}, {"name": "HOSTNAME", "value": "h"}]
        }]));
        let env = build_for(&p, &objects()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(env.process.get("POD_IP").map(String::as_str), Some("mine"));
        assert_eq!(env.process.get("HOSTNAME").map(String::as_str), Some("h"));
    }

    #[test]
    fn references_lists_every_object() {
        let p = pod(json!([{
            "name": "c",
            "envFrom": [{"configMapRef": {"name": "a"}}, {"secretRef": {"name": "s"}}],
            "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "b", "key": "k"}}}]
        }]));
        let (cms, secrets) = references(container(&p));
        assert_eq!(cms.into_iter().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(secrets.into_iter().collect::<Vec<_>>(), ["s"]);
    }
}
