//! The registry of resource types the apiserver serves.
//!
//! One static table is the single source of truth for REST paths, discovery
//! documents, storage keys and the CLI's kind/short-name lookup.

/// A resource type as the Kubernetes API exposes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResourceType {
    /// API group; `""` is the legacy core group served under `/api`.
    pub group: &'static str,
    /// API version within the group, e.g. `v1`.
    pub version: &'static str,
    /// Kind, e.g. `Service`.
    pub kind: &'static str,
    /// Lower-case plural used in paths, e.g. `services`.
    pub plural: &'static str,
    /// Lower-case singular name, e.g. `service`.
    pub singular: &'static str,
    /// Short names kubectl accepts, e.g. `svc`.
    pub short_names: &'static [&'static str],
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Whether a `/status` subresource exists.
    pub has_status: bool,
}

impl ResourceType {
    /// `group/version`, or just `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Storage key prefix for this type, e.g. `/registry/services/`.
    ///
    /// Keys are `/registry/<group>/<plural>/<namespace>/<name>` (the group part
    /// is omitted for the core group), as the Kubernetes apiserver lays out etcd.
    pub fn key_prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/registry/{}/", self.plural)
        } else {
            format!("/registry/{}/{}/", self.group, self.plural)
        }
    }

    /// Storage key of one object (`namespace` is ignored for cluster-scoped types).
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{}/{}", self.key_prefix(), ns, name),
            _ => format!("{}{}", self.key_prefix(), name),
        }
    }

    /// Whether a `/scale` subresource exists (the replicated workloads).
    pub fn has_scale(&self) -> bool {
        matches!(self.kind, "Deployment" | "ReplicaSet")
    }

    /// Finds a resource type by group, version and plural (a REST path segment).
    pub fn from_path(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
        RESOURCES
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// Finds a resource type by `apiVersion` and `kind`, as written in a manifest.
    pub fn from_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
        RESOURCES
            .iter()
            .find(|r| r.kind == kind && r.api_version() == api_version)
    }

    /// Finds a resource type by any name a user may type on the command line:
    /// plural, singular, short name or kind, case-insensitive, optionally
    /// qualified by group (`ingresses.networking.k8s.io`).
    pub fn lookup(name: &str) -> Option<&'static ResourceType> {
        let name = name.to_ascii_lowercase();
        let (base, group) = match name.split_once('.') {
            Some((b, g)) => (b.to_string(), Some(g.to_string())),
            None => (name, None),
        };
        RESOURCES.iter().find(|r| {
            group.as_deref().is_none_or(|g| g == r.group)
                && (r.plural == base
                    || r.singular == base
                    || r.kind.eq_ignore_ascii_case(&base)
                    || r.short_names.contains(&base.as_str()))
        })
    }
}

macro_rules! resource {
    ($group:literal, $version:literal, $kind:literal, $plural:literal, $singular:literal, [$($short:literal),*], $namespaced:literal, $status:literal) => {
        ResourceType {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            short_names: &[$($short),*],
            namespaced: $namespaced,
            has_status: $status,
        }
    };
}

/// Every resource type the apiserver serves.
pub static RESOURCES: &[ResourceType] = &[
    resource!(
        "",
        "v1",
        "Namespace",
        "namespaces",
        "namespace",
        ["ns"],
        false,
        true
    ),
    resource!(
        "",
        "v1",
        "Service",
        "services",
        "service",
        ["svc"],
        true,
        true
    ),
    resource!(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        "endpoints",
        ["ep"],
        true,
        false
    ),
    resource!("", "v1", "Pod", "pods", "pod", ["po"], true, true),
    resource!("", "v1", "Node", "nodes", "node", ["no"], false, true),
    resource!("", "v1", "Secret", "secrets", "secret", [], true, false),
    resource!(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        "configmap",
        ["cm"],
        true,
        false
    ),
    resource!("", "v1", "Event", "events", "event", ["ev"], true, false),
    resource!(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        [],
        true,
        false
    ),
    resource!(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        "ingress",
        ["ing"],
        true,
        true
    ),
    resource!(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        "deployment",
        ["deploy"],
        true,
        true
    ),
    resource!(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        ["rs"],
        true,
        true
    ),
    resource!(
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        "ingressclass",
        [],
        false,
        false
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_accepts_every_spelling() {
        for name in ["svc", "service", "services", "Service", "SERVICES"] {
            assert_eq!(ResourceType::lookup(name).map(|r| r.kind), Some("Service"));
        }
        assert_eq!(
            ResourceType::lookup("ingresses.networking.k8s.io").map(|r| r.kind),
            Some("Ingress")
        );
        assert_eq!(ResourceType::lookup("ingresses.apps"), None);
        assert_eq!(
            ResourceType::lookup("deploy").map(|r| r.api_version()),
            Some("apps/v1".to_string())
        );
        assert_eq!(
            ResourceType::lookup("rs").map(|r| r.kind),
            Some("ReplicaSet")
        );
        assert_eq!(ResourceType::lookup("widgets"), None);
    }

    #[test]
    fn keys_follow_the_kubernetes_layout() {
        let svc = ResourceType::lookup("svc").unwrap();
        assert_eq!(
            svc.key(Some("default"), "web"),
            "/registry/services/default/web"
        );
        let ns = ResourceType::lookup("ns").unwrap();
        assert_eq!(
            ns.key(Some("ignored"), "default"),
            "/registry/namespaces/default"
        );
        let eps = ResourceType::from_kind("discovery.k8s.io/v1", "EndpointSlice").unwrap();
        assert_eq!(
            eps.key_prefix(),
            "/registry/discovery.k8s.io/endpointslices/"
        );
    }
}
