//! Validation of objects with Kubernetes-style field errors.
//!
//! Each rule and message follows the Kubernetes apiserver
//! (`pkg/apis/core/validation`), so a client sees the same 422 causes it would
//! from a real cluster. Service validation is complete; the other kinds get the
//! checks a user would trip over (names, ports, keys, paths).
//!
//! Validation runs after defaulting ([`crate::defaults`]); fields an allocator
//! fills in later (`clusterIP`, `nodePort`, `healthCheckNodePort`) may be empty.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Endpoints, Namespace, Pod, PodSpec, PodTemplateSpec, Secret, Service,
    ServicePort,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::names::{self, NameValidator};

/// The kind of a field error, mirroring Kubernetes' `field.ErrorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldErrorKind {
    /// A value was expected but not found.
    NotFound,
    /// A required value is missing.
    Required,
    /// A value that must be unique is repeated.
    Duplicate,
    /// The value is malformed or out of range.
    Invalid,
    /// The value is not one of a known set.
    NotSupported,
    /// The field may not be set (here, or at all).
    Forbidden,
    /// The value is too long.
    TooLong,
    /// The list has too many items.
    TooMany,
    /// Validation itself failed.
    Internal,
}

impl FieldErrorKind {
    /// The `StatusCause.reason` Kubernetes sends for this kind.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NotFound => "FieldValueNotFound",
            Self::Required => "FieldValueRequired",
            Self::Duplicate => "FieldValueDuplicate",
            Self::Invalid => "FieldValueInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Forbidden => "FieldValueForbidden",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
            Self::Internal => "InternalError",
        }
    }

    /// The words that open the message, e.g. `Invalid value`.
    pub fn describe(self) -> &'static str {
        match self {
            Self::NotFound => "Not found",
            Self::Required => "Required value",
            Self::Duplicate => "Duplicate value",
            Self::Invalid => "Invalid value",
            Self::NotSupported => "Unsupported value",
            Self::Forbidden => "Forbidden",
            Self::TooLong => "Too long",
            Self::TooMany => "Too many",
            Self::Internal => "Internal error",
        }
    }
}

/// A value as Kubernetes prints it in an error (Go's `%#v`/`%v`): strings
/// quoted, numbers bare, string lists as `[]string{"a", "b"}`.
pub trait GoValue {
    /// The rendered value.
    fn go_repr(&self) -> String;
}

fn go_quote(s: &str) -> String {
    // Go's %q and Rust's {:?} agree for the printable ASCII that names carry;
    // both escape quotes, backslashes and control characters.
    format!("{s:?}")
}

impl GoValue for str {
    fn go_repr(&self) -> String {
        go_quote(self)
    }
}
impl GoValue for String {
    fn go_repr(&self) -> String {
        go_quote(self)
    }
}
impl<T: GoValue + ?Sized> GoValue for &T {
    fn go_repr(&self) -> String {
        (**self).go_repr()
    }
}
impl GoValue for i32 {
    fn go_repr(&self) -> String {
        self.to_string()
    }
}
impl GoValue for i64 {
    fn go_repr(&self) -> String {
        self.to_string()
    }
}
impl GoValue for usize {
    fn go_repr(&self) -> String {
        self.to_string()
    }
}
impl GoValue for bool {
    fn go_repr(&self) -> String {
        self.to_string()
    }
}
impl GoValue for [String] {
    fn go_repr(&self) -> String {
        let items: Vec<String> = self.iter().map(|s| go_quote(s)).collect();
        format!("[]string{{{}}}", items.join(", "))
    }
}
impl GoValue for Vec<String> {
    fn go_repr(&self) -> String {
        self.as_slice().go_repr()
    }
}
impl GoValue for Option<Vec<String>> {
    fn go_repr(&self) -> String {
        match self {
            Some(v) => v.go_repr(),
            None => "[]string(nil)".to_string(),
        }
    }
}

/// A value rendered verbatim (for structs Kubernetes prints with `%#v`).
#[derive(Debug, Clone)]
pub struct RawValue(pub String);

impl GoValue for RawValue {
    fn go_repr(&self) -> String {
        self.0.clone()
    }
}

/// One problem with one field of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// What is wrong.
    pub kind: FieldErrorKind,
    /// The field's path, e.g. `spec.ports[0].port`.
    pub field: String,
    /// The offending value as Kubernetes prints it (strings quoted, numbers
    /// bare); `None` where Kubernetes omits the value.
    pub value: Option<String>,
    /// Why the value is wrong; may be empty.
    pub detail: String,
}

/// All problems found in one object.
pub type ErrorList = Vec<FieldError>;

impl FieldError {
    fn new(
        kind: FieldErrorKind,
        field: impl Into<String>,
        value: Option<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            field: field.into(),
            value,
            detail: detail.into(),
        }
    }

    /// `Required value`.
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Required, field, None, detail)
    }

    /// `Invalid value: <value>: <detail>`.
    pub fn invalid(
        field: impl Into<String>,
        value: impl GoValue,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(
            FieldErrorKind::Invalid,
            field,
            Some(value.go_repr()),
            detail,
        )
    }

    /// `Invalid value` with the value left out.
    pub fn invalid_omit_value(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Invalid, field, None, detail)
    }

    /// `Duplicate value: <value>`.
    pub fn duplicate(field: impl Into<String>, value: impl GoValue) -> Self {
        Self::new(FieldErrorKind::Duplicate, field, Some(value.go_repr()), "")
    }

    /// `Unsupported value: <value>: supported values: "a", "b"`.
    pub fn not_supported(
        field: impl Into<String>,
        value: impl GoValue,
        supported: &[&str],
    ) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(
            FieldErrorKind::NotSupported,
            field,
            Some(value.go_repr()),
            detail,
        )
    }

    /// `Forbidden: <detail>`.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Forbidden, field, None, detail)
    }

    /// `Too long: may not be more than N bytes`.
    pub fn too_long(field: impl Into<String>, max_bytes: usize) -> Self {
        let unit = if max_bytes == 1 { "byte" } else { "bytes" };
        Self::new(
            FieldErrorKind::TooLong,
            field,
            None,
            format!("may not be more than {max_bytes} {unit}"),
        )
    }

    /// `Too many: <actual>: must have at most N items`.
    pub fn too_many(field: impl Into<String>, actual: usize, max: usize) -> Self {
        let unit = if max == 1 { "item" } else { "items" };
        Self::new(
            FieldErrorKind::TooMany,
            field,
            Some(actual.to_string()),
            format!("must have at most {max} {unit}"),
        )
    }

    /// `Internal error: <detail>`.
    pub fn internal(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Internal, field, None, detail)
    }

    /// The Kubernetes cause type, e.g. `FieldValueInvalid`.
    pub fn reason(&self) -> &'static str {
        self.kind.reason()
    }

    /// The message without the field path, as `StatusCause.message` carries it
    /// (Kubernetes' `ErrorBody`).
    pub fn body(&self) -> String {
        let shows_value = !matches!(
            self.kind,
            FieldErrorKind::Required
                | FieldErrorKind::Forbidden
                | FieldErrorKind::TooLong
                | FieldErrorKind::Internal
        );
        let mut s = self.kind.describe().to_string();
        if shows_value && let Some(v) = &self.value {
            s.push_str(": ");
            s.push_str(v);
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    /// The full message, e.g.
    /// `spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive`.
    pub fn message(&self) -> String {
        format!("{}: {}", self.field, self.body())
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for FieldError {}

/// Kubernetes' aggregate form of an error list: one message alone, several as
/// `[a, b]`, repeated messages once.
pub fn aggregate_message(errs: &[FieldError]) -> String {
    let mut seen = HashSet::new();
    let msgs: Vec<String> = errs
        .iter()
        .map(FieldError::message)
        .filter(|m| seen.insert(m.clone()))
        .collect();
    match msgs.len() {
        0 => String::new(),
        1 => msgs.into_iter().next().unwrap_or_default(),
        _ => format!("[{}]", msgs.join(", ")),
    }
}

const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;
const MAX_SECRET_SIZE: usize = 1024 * 1024;
const MAX_CONFIG_MAP_SIZE: usize = 1024 * 1024;
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

fn invalid_each(errs: &mut ErrorList, field: &str, value: &str, msgs: Vec<String>) {
    errs.extend(
        msgs.into_iter()
            .map(|m| FieldError::invalid(field, value, m)),
    );
}

/// Validates label keys and values (`metadata.labels`, `spec.selector`).
pub fn validate_labels(labels: &BTreeMap<String, String>, field: &str) -> ErrorList {
    let mut errs = ErrorList::new();
    for (k, v) in labels {
        invalid_each(&mut errs, field, k, names::is_qualified_name(k));
        invalid_each(&mut errs, field, v, names::is_valid_label_value(v));
    }
    errs
}

/// Validates annotation keys and their total size (256 KiB).
pub fn validate_annotations(annotations: &BTreeMap<String, String>, field: &str) -> ErrorList {
    let mut errs = ErrorList::new();
    let mut total = 0usize;
    for (k, v) in annotations {
        invalid_each(
            &mut errs,
            field,
            k,
            names::is_qualified_name(&k.to_lowercase()),
        );
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(field, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

/// Validates `metadata` of a new object: name (or `generateName`) per the
/// kind's `name_validator`, namespace present and a DNS-1123 label for
/// namespaced kinds and absent otherwise, labels, annotations, finalizers.
pub fn validate_object_meta(
    meta: &ObjectMeta,
    namespaced: bool,
    name_validator: NameValidator,
) -> ErrorList {
    let mut errs = ErrorList::new();
    let name = meta.name.as_deref().unwrap_or("");
    let generate_name = meta.generate_name.as_deref().unwrap_or("");
    if !generate_name.is_empty() {
        invalid_each(
            &mut errs,
            "metadata.generateName",
            generate_name,
            name_validator(generate_name, true),
        );
    }
    if name.is_empty() {
        // The apiserver makes the name from generateName before storing; a
        // caller that validates first must not be refused for that.
        if generate_name.is_empty() {
            errs.push(FieldError::required(
                "metadata.name",
                "name or generateName is required",
            ));
        }
    } else {
        invalid_each(
            &mut errs,
            "metadata.name",
            name,
            name_validator(name, false),
        );
    }
    let namespace = meta.namespace.as_deref().unwrap_or("");
    if namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required("metadata.namespace", ""));
        } else {
            invalid_each(
                &mut errs,
                "metadata.namespace",
                namespace,
                names::is_dns1123_label(namespace),
            );
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        ));
    }
    if let Some(g) = meta.generation
        && g < 0
    {
        errs.push(FieldError::invalid(
            "metadata.generation",
            g,
            "must be greater than or equal to 0",
        ));
    }
    if let Some(labels) = &meta.labels {
        errs.extend(validate_labels(labels, "metadata.labels"));
    }
    if let Some(annotations) = &meta.annotations {
        errs.extend(validate_annotations(annotations, "metadata.annotations"));
    }
    for f in meta.finalizers.iter().flatten() {
        invalid_each(
            &mut errs,
            "metadata.finalizers",
            f,
            names::is_qualified_name(f),
        );
    }
    errs
}

/// Validates what an update may not change in `metadata`: name, namespace,
/// uid and creationTimestamp are immutable (`field is immutable`).
pub fn validate_object_meta_update(new: &ObjectMeta, old: &ObjectMeta) -> ErrorList {
    let mut errs = ErrorList::new();
    let immutable = |errs: &mut ErrorList, field: &str, n: Option<&str>, o: Option<&str>| {
        if n.unwrap_or("") != o.unwrap_or("") {
            errs.push(FieldError::invalid(
                field,
                n.unwrap_or(""),
                "field is immutable",
            ));
        }
    };
    immutable(
        &mut errs,
        "metadata.name",
        new.name.as_deref(),
        old.name.as_deref(),
    );
    immutable(
        &mut errs,
        "metadata.namespace",
        new.namespace.as_deref(),
        old.namespace.as_deref(),
    );
    // uid and creationTimestamp are set by the server; an update that leaves
    // them out keeps the stored ones, so only a different value is an error.
    if new.uid.is_some() {
        immutable(
            &mut errs,
            "metadata.uid",
            new.uid.as_deref(),
            old.uid.as_deref(),
        );
    }
    if new.creation_timestamp.is_some() && new.creation_timestamp != old.creation_timestamp {
        errs.push(FieldError::invalid_omit_value(
            "metadata.creationTimestamp",
            "field is immutable",
        ));
    }
    errs
}

// ---------------------------------------------------------------- Services

/// Service types, sorted as Kubernetes lists them.
pub const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const SESSION_AFFINITIES: &[&str] = &["ClientIP", "None"];
const TRAFFIC_POLICIES: &[&str] = &["Cluster", "Local"];
const IP_FAMILIES: &[&str] = &["IPv4", "IPv6"];
const IP_FAMILY_POLICIES: &[&str] = &["PreferDualStack", "RequireDualStack", "SingleStack"];
/// Longest ClientIP affinity timeout, one day.
pub const MAX_CLIENT_IP_AFFINITY_SECONDS: i32 = 86400;
const KUBELET_PORT: i32 = 10250;
const INVALID_IP: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";
const INVALID_CIDR: &str = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";

fn svc_type(svc: &Service) -> &str {
    svc.spec
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("")
}

/// `clusterIPs` as validation sees it: when only the singular `clusterIP` is
/// given, Kubernetes' strategy copies it into the plural before validating.
fn effective_cluster_ips(svc: &Service) -> Vec<String> {
    let Some(spec) = &svc.spec else {
        return Vec::new();
    };
    match (&spec.cluster_ips, spec.cluster_ip.as_deref()) {
        (Some(ips), _) if !ips.is_empty() => ips.clone(),
        (_, Some(ip)) if !ip.is_empty() => vec![ip.to_string()],
        _ => Vec::new(),
    }
}

/// Whether the Service is headless (`clusterIP: None`).
pub fn is_headless(svc: &Service) -> bool {
    let ips = effective_cluster_ips(svc);
    ips.len() == 1 && ips[0] == "None"
}

fn externally_accessible(svc: &Service) -> bool {
    let t = svc_type(svc);
    t == "LoadBalancer"
        || t == "NodePort"
        || (t == "ClusterIP"
            && svc
                .spec
                .as_ref()
                .and_then(|s| s.external_ips.as_ref())
                .is_some_and(|v| !v.is_empty()))
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

fn is_valid_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    match parse_ip(ip) {
        Some(IpAddr::V4(_)) => bits <= 32,
        Some(IpAddr::V6(_)) => bits <= 128,
        None => false,
    }
}

/// Go's `%#v` of the `core.ServicePort{Protocol, Port}` key Kubernetes uses to
/// report a duplicate (port, protocol) pair.
fn service_port_key_repr(protocol: &str, port: i32) -> RawValue {
    RawValue(format!(
        "core.ServicePort{{Name:\"\", Protocol:{protocol:?}, AppProtocol:(*string)(nil), Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}"
    ))
}

/// Validates a port number or an IANA port name (`targetPort`, probes).
pub fn validate_port_num_or_name(port: &IntOrString, field: &str) -> ErrorList {
    match port {
        IntOrString::Int(n) => names::is_valid_port_num(i64::from(*n))
            .into_iter()
            .map(|m| FieldError::invalid(field, *n, m))
            .collect(),
        IntOrString::String(s) => names::is_iana_svc_name(s)
            .into_iter()
            .map(|m| FieldError::invalid(field, s, m))
            .collect(),
    }
}

fn validate_service_port(
    sp: &ServicePort,
    require_name: bool,
    all_names: &mut BTreeSet<String>,
    path: &str,
    errs: &mut ErrorList,
) {
    let name = sp.name.as_deref().unwrap_or("");
    if require_name && name.is_empty() {
        errs.push(FieldError::required(format!("{path}.name"), ""));
    } else if !name.is_empty() {
        invalid_each(
            errs,
            &format!("{path}.name"),
            name,
            names::is_dns1123_label(name),
        );
        if !all_names.insert(name.to_string()) {
            errs.push(FieldError::duplicate(format!("{path}.name"), name));
        }
    }
    for m in names::is_valid_port_num(i64::from(sp.port)) {
        errs.push(FieldError::invalid(format!("{path}.port"), sp.port, m));
    }
    match sp.protocol.as_deref() {
        None | Some("") => errs.push(FieldError::required(format!("{path}.protocol"), "")),
        Some(p) if !PROTOCOLS.contains(&p) => errs.push(FieldError::not_supported(
            format!("{path}.protocol"),
            p,
            PROTOCOLS,
        )),
        Some(_) => {}
    }
    // Defaulting sets targetPort = port; an unset one here means the caller
    // skipped defaulting, and Kubernetes would see 0.
    let target = sp.target_port.clone().unwrap_or(IntOrString::Int(sp.port));
    errs.extend(validate_port_num_or_name(
        &target,
        &format!("{path}.targetPort"),
    ));
    if let Some(ap) = &sp.app_protocol {
        invalid_each(
            errs,
            &format!("{path}.appProtocol"),
            ap,
            names::is_qualified_name(ap),
        );
    }
    if let Some(np) = sp.node_port
        && np != 0
    {
        for m in names::is_valid_port_num(i64::from(np)) {
            errs.push(FieldError::invalid(format!("{path}.nodePort"), np, m));
        }
    }
}

fn validate_cluster_ips_related(svc: &Service, errs: &mut ErrorList) {
    if svc_type(svc) == "ExternalName" {
        return;
    }
    let Some(spec) = &svc.spec else { return };
    let cluster_ip = spec.cluster_ip.as_deref().unwrap_or("");
    let ips = effective_cluster_ips(svc);
    let field = "spec.clusterIPs";
    if !cluster_ip.is_empty() {
        if ips[0] != cluster_ip {
            errs.push(FieldError::invalid(
                field,
                &ips,
                "first value must match `clusterIP`",
            ));
        }
    } else if !ips.is_empty() {
        errs.push(FieldError::invalid(
            field,
            &ips,
            "must be empty when `clusterIP` is not specified",
        ));
    }

    let families = spec.ip_families.clone().unwrap_or_default();
    let mut seen = BTreeSet::new();
    for (i, fam) in families.iter().enumerate() {
        let f = format!("spec.ipFamilies[{i}]");
        if !IP_FAMILIES.contains(&fam.as_str()) {
            errs.push(FieldError::not_supported(&f, fam, IP_FAMILIES));
        }
        if !seen.insert(fam.clone()) {
            errs.push(FieldError::duplicate(&f, fam));
        }
    }
    if let Some(policy) = &spec.ip_family_policy
        && !IP_FAMILY_POLICIES.contains(&policy.as_str())
    {
        errs.push(FieldError::not_supported(
            "spec.ipFamilyPolicy",
            policy,
            IP_FAMILY_POLICIES,
        ));
    }

    let mut has_invalid = false;
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && ip == "None" {
            if ips.len() > 1 {
                has_invalid = true;
                errs.push(FieldError::invalid(
                    field,
                    &ips,
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        if parse_ip(ip).is_none() {
            has_invalid = true;
            errs.push(FieldError::invalid(format!("{field}[{i}]"), ip, INVALID_IP));
        }
    }
    if ips.len() > 2 {
        has_invalid = true;
        errs.push(FieldError::invalid(
            field,
            &ips,
            "may only hold up to 2 values",
        ));
    }
    // Further checks would only repeat the bad addresses in other words.
    if has_invalid {
        return;
    }
    if ips.len() == 2 {
        let v6: Vec<bool> = ips
            .iter()
            .map(|ip| matches!(parse_ip(ip), Some(IpAddr::V6(_))))
            .collect();
        if v6[0] == v6[1] {
            errs.push(FieldError::invalid(
                field,
                &ips,
                "may specify no more than one IP for each IP family",
            ));
        }
    }
    if !is_headless(svc) {
        for (i, ip) in ips.iter().enumerate().take(families.len()) {
            let is_v6 = matches!(parse_ip(ip), Some(IpAddr::V6(_)));
            if families[i] == "IPv4" && is_v6 {
                errs.push(FieldError::invalid(
                    format!("{field}[{i}]"),
                    ip,
                    format!("expected an IPv4 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
            if families[i] == "IPv6" && !is_v6 {
                errs.push(FieldError::invalid(
                    format!("{field}[{i}]"),
                    ip,
                    format!("expected an IPv6 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
        }
    }
}

/// Validates a Service as the Kubernetes apiserver does on create (and, with
/// the update checks added, on update). Expects a defaulted object.
pub fn validate_service(svc: &Service) -> ErrorList {
    let mut errs = validate_object_meta(&svc.metadata, true, names::name_is_dns1035_label);
    let default_spec = Default::default();
    let spec = svc.spec.as_ref().unwrap_or(&default_spec);
    let ty = svc_type(svc);
    let ports = spec.ports.as_deref().unwrap_or(&[]);
    let headless = is_headless(svc);
    let ips = effective_cluster_ips(svc);

    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required("spec.ports", ""));
    }
    match ty {
        "LoadBalancer" => {
            if headless {
                errs.push(FieldError::invalid(
                    "spec.clusterIPs[0]",
                    &ips[0],
                    "may not be set to 'None' for LoadBalancer services",
                ));
            }
            for (i, p) in ports.iter().enumerate() {
                // Kubernetes' guard for clouds that open firewalls too widely.
                if p.port == KUBELET_PORT {
                    errs.push(FieldError::invalid(
                        format!("spec.ports[{i}]"),
                        p.port,
                        format!("may not expose port {KUBELET_PORT} externally since it is used by kubelet"),
                    ));
                }
            }
        }
        "NodePort" if headless => {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                &ips[0],
                "may not be set to 'None' for NodePort services",
            ));
        }
        "ExternalName" => {
            if !ips.is_empty() {
                errs.push(FieldError::forbidden(
                    "spec.clusterIPs",
                    "may not be set for ExternalName services",
                ));
            }
            if spec.ip_families.as_ref().is_some_and(|f| !f.is_empty()) {
                errs.push(FieldError::forbidden(
                    "spec.ipFamilies",
                    "may not be set for ExternalName services",
                ));
            }
            if spec.ip_family_policy.is_some() {
                errs.push(FieldError::forbidden(
                    "spec.ipFamilyPolicy",
                    "may not be set for ExternalName services",
                ));
            }
            // A CNAME target may end in a dot to mark it fully qualified.
            let cname = spec.external_name.as_deref().unwrap_or("");
            let cname = cname.strip_suffix('.').unwrap_or(cname);
            if cname.is_empty() {
                errs.push(FieldError::required("spec.externalName", ""));
            } else {
                invalid_each(
                    &mut errs,
                    "spec.externalName",
                    cname,
                    names::is_dns1123_subdomain(cname),
                );
            }
        }
        _ => {}
    }

    let mut all_names = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        validate_service_port(
            p,
            ports.len() > 1,
            &mut all_names,
            &format!("spec.ports[{i}]"),
            &mut errs,
        );
    }

    if let Some(sel) = &spec.selector {
        errs.extend(validate_labels(sel, "spec.selector"));
    }

    let affinity = spec.session_affinity.as_deref().unwrap_or("");
    if affinity.is_empty() {
        errs.push(FieldError::required("spec.sessionAffinity", ""));
    } else if !SESSION_AFFINITIES.contains(&affinity) {
        errs.push(FieldError::not_supported(
            "spec.sessionAffinity",
            affinity,
            SESSION_AFFINITIES,
        ));
    }
    if affinity == "ClientIP" {
        let when = "when session affinity type is ClientIP";
        match &spec.session_affinity_config {
            None => errs.push(FieldError::required("spec.sessionAffinityConfig", when)),
            Some(c) => match &c.client_ip {
                None => errs.push(FieldError::required("spec.sessionAffinityConfig.clientIP", when)),
                Some(cip) => match cip.timeout_seconds {
                    None => errs.push(FieldError::required("spec.sessionAffinityConfig.clientIP.timeoutSeconds", when)),
                    Some(t) if t <= 0 || t > MAX_CLIENT_IP_AFFINITY_SECONDS => errs.push(FieldError::invalid(
                        "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                        t,
                        format!("must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}"),
                    )),
                    Some(_) => {}
                },
            },
        }
    } else if affinity == "None" && spec.session_affinity_config.is_some() {
        errs.push(FieldError::forbidden(
            "spec.sessionAffinityConfig",
            "must not be set when session affinity is None",
        ));
    }

    validate_cluster_ips_related(svc, &mut errs);

    for (i, ip) in spec.external_ips.iter().flatten().enumerate() {
        let f = format!("spec.externalIPs[{i}]");
        match parse_ip(ip) {
            None => errs.push(FieldError::invalid(&f, ip, INVALID_IP)),
            Some(addr) => {
                // Kubernetes also refuses loopback here; Switchboard runs on
                // loopback (127.0.0.0/8 is its node network), so it allows it.
                if addr.is_unspecified() {
                    let d = if addr.is_ipv4() { "0.0.0.0" } else { "::" };
                    errs.push(FieldError::invalid(
                        &f,
                        ip,
                        format!("may not be unspecified ({d})"),
                    ));
                } else if is_link_local(addr) {
                    errs.push(FieldError::invalid(
                        &f,
                        ip,
                        "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
                    ));
                }
            }
        }
    }

    if ty.is_empty() {
        errs.push(FieldError::required("spec.type", ""));
    } else if !SERVICE_TYPES.contains(&ty) {
        errs.push(FieldError::not_supported("spec.type", ty, SERVICE_TYPES));
    }

    if ty == "ClusterIP" {
        for (i, p) in ports.iter().enumerate() {
            if p.node_port.unwrap_or(0) != 0 {
                errs.push(FieldError::forbidden(
                    format!("spec.ports[{i}].nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }

    let mut node_ports = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let np = p.node_port.unwrap_or(0);
        if np == 0 {
            continue;
        }
        if !node_ports.insert((p.protocol.clone(), np)) {
            errs.push(FieldError::duplicate(
                format!("spec.ports[{i}].nodePort"),
                np,
            ));
        }
    }
    let mut port_keys = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let proto = p.protocol.clone().unwrap_or_default();
        if !port_keys.insert((proto.clone(), p.port)) {
            errs.push(FieldError::duplicate(
                format!("spec.ports[{i}]"),
                service_port_key_repr(&proto, p.port),
            ));
        }
    }

    if let Some(ranges) = spec
        .load_balancer_source_ranges
        .as_ref()
        .filter(|r| !r.is_empty())
    {
        // Kubernetes spells this path with a capital L.
        let f = "spec.LoadBalancerSourceRanges";
        if ty != "LoadBalancer" {
            errs.push(FieldError::forbidden(
                f,
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
        for (i, r) in ranges.iter().enumerate() {
            let r = r.trim();
            if !is_valid_cidr(r) {
                errs.push(FieldError::invalid(format!("{f}[{i}]"), r, INVALID_CIDR));
            }
        }
    }

    if spec.allocate_load_balancer_node_ports.is_some() && ty != "LoadBalancer" {
        errs.push(FieldError::forbidden(
            "spec.allocateLoadBalancerNodePorts",
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if ty == "LoadBalancer" && spec.allocate_load_balancer_node_ports.is_none() {
        // Kubernetes reports this one without the `spec.` prefix.
        errs.push(FieldError::required("allocateLoadBalancerNodePorts", ""));
    }
    if let Some(class) = &spec.load_balancer_class {
        if ty != "LoadBalancer" {
            errs.push(FieldError::forbidden(
                "spec.loadBalancerClass",
                "may only be used when `type` is 'LoadBalancer'",
            ));
        } else {
            invalid_each(
                &mut errs,
                "spec.loadBalancerClass",
                class,
                names::is_qualified_name(class),
            );
        }
    }

    // externalTrafficPolicy
    let etp = spec.external_traffic_policy.as_deref().unwrap_or("");
    if !externally_accessible(svc) {
        if !etp.is_empty() {
            errs.push(FieldError::invalid(
                "spec.externalTrafficPolicy",
                etp,
                "may only be set for externally-accessible services",
            ));
        }
    } else if etp.is_empty() {
        errs.push(FieldError::required("spec.externalTrafficPolicy", ""));
    } else if !TRAFFIC_POLICIES.contains(&etp) {
        errs.push(FieldError::not_supported(
            "spec.externalTrafficPolicy",
            etp,
            TRAFFIC_POLICIES,
        ));
    }
    let hc = spec.health_check_node_port.unwrap_or(0);
    let needs_hc = ty == "LoadBalancer" && etp == "Local";
    if !needs_hc && hc != 0 {
        errs.push(FieldError::invalid(
            "spec.healthCheckNodePort",
            hc,
            "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
        ));
    } else if needs_hc && hc != 0 {
        // A missing one is allocated after validation, so only a bad value is refused.
        for m in names::is_valid_port_num(i64::from(hc)) {
            errs.push(FieldError::invalid("spec.healthCheckNodePort", hc, m));
        }
    }

    // internalTrafficPolicy
    match spec.internal_traffic_policy.as_deref() {
        None => {
            if matches!(ty, "ClusterIP" | "NodePort" | "LoadBalancer") {
                errs.push(FieldError::required(
                    "spec.internalTrafficPolicy",
                    "must be specified when `type` is set to one of ClusterIP, NodePort, LoadBalancer",
                ));
            }
        }
        Some(p) if !TRAFFIC_POLICIES.contains(&p) => {
            errs.push(FieldError::not_supported(
                "spec.internalTrafficPolicy",
                p,
                TRAFFIC_POLICIES,
            ));
        }
        Some(_) => {}
    }

    if let Some(td) = &spec.traffic_distribution
        && !matches!(
            td.as_str(),
            "PreferClose" | "PreferSameZone" | "PreferSameNode"
        )
    {
        errs.push(FieldError::not_supported(
            "spec.trafficDistribution",
            td,
            &["PreferClose", "PreferSameNode", "PreferSameZone"],
        ));
    }
    errs
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Validates a new Service.
pub fn validate_service_create(svc: &Service) -> ErrorList {
    validate_service(svc)
}

/// Validates an update of a Service: metadata immutability, the primary
/// cluster IP and IP family (which may not change once set, except when the
/// Service is or becomes ExternalName), then the new object as on create.
pub fn validate_service_update(new: &Service, old: &Service) -> ErrorList {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    let to_or_from_external_name =
        svc_type(new) == "ExternalName" || svc_type(old) == "ExternalName";
    let both_headless = is_headless(new) && is_headless(old);
    if !(to_or_from_external_name || both_headless) {
        let new_ips = effective_cluster_ips(new);
        let old_ips = effective_cluster_ips(old);
        let f0 = "spec.clusterIPs[0]";
        if old_ips.len() == new_ips.len() {
            for (i, ip) in old_ips.iter().enumerate() {
                if *ip != new_ips[i] {
                    errs.push(FieldError::invalid(
                        format!("spec.clusterIPs[{i}]"),
                        &new_ips,
                        "may not change once set",
                    ));
                }
            }
        } else if old_ips.len() > new_ips.len() {
            if new_ips.is_empty() {
                errs.push(FieldError::invalid(
                    f0,
                    &new_ips,
                    "primary clusterIP can not be unset",
                ));
            } else if new_ips[0] != old_ips[0] {
                errs.push(FieldError::invalid(f0, &new_ips, "may not change once set"));
            }
            let policy = new
                .spec
                .as_ref()
                .and_then(|s| s.ip_family_policy.as_deref());
            if new_ips.len() == 1 && policy != Some("SingleStack") {
                errs.push(FieldError::invalid(
                    f0,
                    &new_ips,
                    "`ipFamilyPolicy` must be set to 'SingleStack' when releasing the secondary clusterIP",
                ));
            }
        } else if !old_ips.is_empty() && new_ips[0] != old_ips[0] {
            errs.push(FieldError::invalid(f0, &new_ips, "may not change once set"));
        }

        let fams = |s: &Service| {
            s.spec
                .as_ref()
                .and_then(|s| s.ip_families.clone())
                .unwrap_or_default()
        };
        let (nf, of) = (fams(new), fams(old));
        if !nf.is_empty() && !of.is_empty() && nf[0] != of[0] {
            errs.push(FieldError::invalid(
                "spec.ipFamilies[0]",
                &nf,
                "may not change once set",
            ));
        }
    }
    errs.extend(validate_service(new));
    errs
}

/// Validates a write to `services/status`: load-balancer ingress addresses.
pub fn validate_service_status(new: &Service, old: &Service) -> ErrorList {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    let ingress = new
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    for (i, ing) in ingress.into_iter().flatten().enumerate() {
        let base = format!("status.loadBalancer.ingress[{i}]");
        if let Some(ip) = ing.ip.as_deref().filter(|s| !s.is_empty()) {
            if parse_ip(ip).is_none() {
                errs.push(FieldError::invalid(format!("{base}.ip"), ip, INVALID_IP));
            }
        } else if ing.ip_mode.is_some() {
            errs.push(FieldError::forbidden(
                format!("{base}.ipMode"),
                "may not be specified when `ip` is not set",
            ));
        }
        if let Some(mode) = &ing.ip_mode
            && !matches!(mode.as_str(), "VIP" | "Proxy")
        {
            errs.push(FieldError::not_supported(
                format!("{base}.ipMode"),
                mode,
                &["Proxy", "VIP"],
            ));
        }
        if let Some(host) = ing.hostname.as_deref().filter(|s| !s.is_empty()) {
            invalid_each(
                &mut errs,
                &format!("{base}.hostname"),
                host,
                names::is_dns1123_subdomain(host),
            );
            if parse_ip(host).is_some() {
                errs.push(FieldError::invalid(
                    format!("{base}.hostname"),
                    host,
                    "must be a DNS name, not an IP address",
                ));
            }
        }
    }
    errs
}

// ---------------------------------------------------------------- other kinds

/// Validates a Namespace: a DNS-1123 label name, cluster-scoped.
pub fn validate_namespace(ns: &Namespace) -> ErrorList {
    validate_object_meta(&ns.metadata, false, names::name_is_dns_label)
}

fn validate_containers(
    containers: &[Container],
    path: &str,
    all_port_names: &mut BTreeSet<String>,
    errs: &mut ErrorList,
) {
    let mut names_seen = BTreeSet::new();
    for (i, c) in containers.iter().enumerate() {
        let cp = format!("{path}[{i}]");
        if c.name.is_empty() {
            errs.push(FieldError::required(format!("{cp}.name"), ""));
        } else {
            invalid_each(
                errs,
                &format!("{cp}.name"),
                &c.name,
                names::is_dns1123_label(&c.name),
            );
            if !names_seen.insert(c.name.clone()) {
                errs.push(FieldError::duplicate(format!("{cp}.name"), &c.name));
            }
        }
        if c.image.as_deref().unwrap_or("").trim().is_empty() {
            errs.push(FieldError::required(format!("{cp}.image"), ""));
        }
        for (j, p) in c.ports.iter().flatten().enumerate() {
            let pp = format!("{cp}.ports[{j}]");
            if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
                invalid_each(
                    errs,
                    &format!("{pp}.name"),
                    name,
                    names::is_iana_svc_name(name),
                );
                if !all_port_names.insert(name.to_string()) {
                    errs.push(FieldError::duplicate(format!("{pp}.name"), name));
                }
            }
            if p.container_port == 0 {
                errs.push(FieldError::required(format!("{pp}.containerPort"), ""));
            } else {
                for m in names::is_valid_port_num(i64::from(p.container_port)) {
                    errs.push(FieldError::invalid(
                        format!("{pp}.containerPort"),
                        p.container_port,
                        m,
                    ));
                }
            }
            if let Some(hp) = p.host_port.filter(|&h| h != 0) {
                for m in names::is_valid_port_num(i64::from(hp)) {
                    errs.push(FieldError::invalid(format!("{pp}.hostPort"), hp, m));
                }
            }
            match p.protocol.as_deref() {
                None | Some("") => errs.push(FieldError::required(format!("{pp}.protocol"), "")),
                Some(pr) if !PROTOCOLS.contains(&pr) => errs.push(FieldError::not_supported(
                    format!("{pp}.protocol"),
                    pr,
                    PROTOCOLS,
                )),
                Some(_) => {}
            }
        }
    }
}

/// Validates a Pod lightly: metadata and its spec (see [`validate_pod_spec`]).
/// Expects a defaulted object.
pub fn validate_pod(pod: &Pod) -> ErrorList {
    let mut errs = validate_object_meta(&pod.metadata, true, names::name_is_dns_subdomain);
    match &pod.spec {
        Some(spec) => errs.extend(validate_pod_spec(spec, "spec")),
        None => errs.push(FieldError::required("spec", "")),
    }
    errs
}

/// Validates a pod spec at `path` (`spec` of a Pod, `spec.template.spec` of a
/// workload): containers (names, images, ports), restartPolicy, dnsPolicy,
/// hostname, subdomain and the grace period.
pub fn validate_pod_spec(spec: &PodSpec, path: &str) -> ErrorList {
    let mut errs = ErrorList::new();
    if spec.containers.is_empty() {
        errs.push(FieldError::required(format!("{path}.containers"), ""));
    }
    let mut port_names = BTreeSet::new();
    validate_containers(
        &spec.containers,
        &format!("{path}.containers"),
        &mut port_names,
        &mut errs,
    );
    if let Some(init) = &spec.init_containers {
        validate_containers(
            init,
            &format!("{path}.initContainers"),
            &mut port_names,
            &mut errs,
        );
    }
    if let Some(rp) = &spec.restart_policy
        && !matches!(rp.as_str(), "Always" | "OnFailure" | "Never")
    {
        errs.push(FieldError::not_supported(
            format!("{path}.restartPolicy"),
            rp,
            &["Always", "OnFailure", "Never"],
        ));
    }
    if let Some(dp) = &spec.dns_policy
        && !matches!(
            dp.as_str(),
            "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None"
        )
    {
        errs.push(FieldError::not_supported(
            format!("{path}.dnsPolicy"),
            dp,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        ));
    }
    if let Some(h) = &spec.hostname {
        invalid_each(
            &mut errs,
            &format!("{path}.hostname"),
            h,
            names::is_dns1123_label(h),
        );
    }
    if let Some(s) = &spec.subdomain {
        invalid_each(
            &mut errs,
            &format!("{path}.subdomain"),
            s,
            names::is_dns1123_label(s),
        );
    }
    if let Some(g) = spec.termination_grace_period_seconds
        && g < 0
    {
        errs.push(FieldError::invalid(
            format!("{path}.terminationGracePeriodSeconds"),
            g,
            "must be greater than or equal to 0",
        ));
    }
    errs
}

/// Validates a `metav1.LabelSelector` at `path`: label keys and values, and
/// each expression's operator and values.
pub fn validate_label_selector(selector: &LabelSelector, path: &str) -> ErrorList {
    let mut errs = ErrorList::new();
    if let Some(labels) = &selector.match_labels {
        errs.extend(validate_labels(labels, &format!("{path}.matchLabels")));
    }
    for (i, e) in selector.match_expressions.iter().flatten().enumerate() {
        let ep = format!("{path}.matchExpressions[{i}]");
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => errs.push(FieldError::required(
                format!("{ep}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(FieldError::forbidden(
                format!("{ep}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errs.push(FieldError::not_supported(
                format!("{ep}.operator"),
                other,
                &["In", "NotIn", "Exists", "DoesNotExist"],
            )),
        }
        invalid_each(
            &mut errs,
            &format!("{ep}.key"),
            &e.key,
            names::is_qualified_name(&e.key),
        );
    }
    errs
}

/// The checks a Deployment and a ReplicaSet share (`ValidateReplicaSetSpec`
/// and `ValidateDeploymentSpec`): a non-empty selector that matches the
/// template's labels, replicas and minReadySeconds not negative, a valid pod
/// template whose restartPolicy is Always.
fn validate_workload_spec(
    kind: &str,
    replicas: Option<i32>,
    min_ready_seconds: Option<i32>,
    selector: &LabelSelector,
    template: Option<&PodTemplateSpec>,
    errs: &mut ErrorList,
) {
    for (field, value) in [
        ("spec.replicas", replicas),
        ("spec.minReadySeconds", min_ready_seconds),
    ] {
        if let Some(v) = value
            && v < 0
        {
            errs.push(FieldError::invalid(
                field,
                v,
                "must be greater than or equal to 0",
            ));
        }
    }
    let empty = selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty);
    if empty {
        errs.push(FieldError::invalid_omit_value(
            "spec.selector",
            format!("empty selector is invalid for {kind}"),
        ));
    }
    let selector_errs = validate_label_selector(selector, "spec.selector");
    let selector_ok = selector_errs.is_empty();
    errs.extend(selector_errs);
    let Some(template) = template else {
        errs.push(FieldError::required("spec.template", ""));
        return;
    };
    let labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    errs.extend(validate_labels(&labels, "spec.template.metadata.labels"));
    if !empty
        && selector_ok
        && let Ok(parsed) = crate::labels::Selector::from_label_selector(selector)
        && !parsed.matches(&labels)
    {
        errs.push(FieldError::invalid_omit_value(
            "spec.template.metadata.labels",
            "`selector` does not match template `labels`",
        ));
    }
    match &template.spec {
        None => errs.push(FieldError::required("spec.template.spec", "")),
        Some(spec) => {
            errs.extend(validate_pod_spec(spec, "spec.template.spec"));
            if let Some(rp) = &spec.restart_policy
                && rp != "Always"
            {
                errs.push(FieldError::not_supported(
                    "spec.template.spec.restartPolicy",
                    rp,
                    &["Always"],
                ));
            }
        }
    }
}

/// An `intstr` of a rolling update: a count of at least 0 or a percentage
/// `N%` (at most 100% for maxUnavailable); returns the number, count or
/// percentage, when it is valid.
fn validate_int_or_percent(value: &IntOrString, field: &str, errs: &mut ErrorList) -> Option<i64> {
    match value {
        IntOrString::Int(n) if *n < 0 => {
            errs.push(FieldError::invalid(
                field,
                *n,
                "must be greater than or equal to 0",
            ));
            None
        }
        IntOrString::Int(n) => Some(i64::from(*n)),
        IntOrString::String(s) => {
            let Some(p) = s.strip_suffix('%').and_then(|n| n.parse::<i64>().ok()) else {
                errs.push(FieldError::invalid(
                    field,
                    s,
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                ));
                return None;
            };
            if p < 0 {
                errs.push(FieldError::invalid(
                    field,
                    s,
                    "must be greater than or equal to 0",
                ));
                return None;
            }
            if p > 100 && field.ends_with("maxUnavailable") {
                errs.push(FieldError::invalid(
                    field,
                    s,
                    "must not be greater than 100%",
                ));
                return None;
            }
            Some(p)
        }
    }
}

/// Validates a defaulted Deployment: metadata, the shared workload checks,
/// the strategy (RollingUpdate with a surge and an unavailability not both
/// zero, or Recreate without rollingUpdate), revisionHistoryLimit and a
/// progress deadline longer than minReadySeconds.
pub fn validate_deployment(deploy: &Deployment) -> ErrorList {
    let mut errs = validate_object_meta(&deploy.metadata, true, names::name_is_dns_subdomain);
    let Some(spec) = &deploy.spec else {
        errs.push(FieldError::required("spec", ""));
        return errs;
    };
    validate_workload_spec(
        "deployment",
        spec.replicas,
        spec.min_ready_seconds,
        &spec.selector,
        Some(&spec.template),
        &mut errs,
    );
    if let Some(strategy) = &spec.strategy {
        match strategy.type_.as_deref() {
            Some("Recreate") => {
                if strategy.rolling_update.is_some() {
                    errs.push(FieldError::forbidden(
                        "spec.strategy.rollingUpdate",
                        "may not be specified when strategy `type` is 'Recreate'",
                    ));
                }
            }
            Some("RollingUpdate") => {
                let rolling = strategy.rolling_update.clone().unwrap_or_default();
                let surge = rolling.max_surge.as_ref().and_then(|v| {
                    validate_int_or_percent(v, "spec.strategy.rollingUpdate.maxSurge", &mut errs)
                });
                let unavailable = rolling.max_unavailable.as_ref().and_then(|v| {
                    validate_int_or_percent(
                        v,
                        "spec.strategy.rollingUpdate.maxUnavailable",
                        &mut errs,
                    )
                });
                if surge == Some(0) && unavailable == Some(0) {
                    errs.push(FieldError::invalid(
                        "spec.strategy.rollingUpdate.maxUnavailable",
                        0i32,
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
            }
            Some(other) => errs.push(FieldError::not_supported(
                "spec.strategy.type",
                other,
                &["Recreate", "RollingUpdate"],
            )),
            None => errs.push(FieldError::required("spec.strategy.type", "")),
        }
    }
    if let Some(limit) = spec.revision_history_limit
        && limit < 0
    {
        errs.push(FieldError::invalid(
            "spec.revisionHistoryLimit",
            limit,
            "must be greater than or equal to 0",
        ));
    }
    if let Some(deadline) = spec.progress_deadline_seconds
        && deadline <= spec.min_ready_seconds.unwrap_or(0)
    {
        errs.push(FieldError::invalid(
            "spec.progressDeadlineSeconds",
            deadline,
            "must be greater than minReadySeconds",
        ));
    }
    errs
}

/// Validates a defaulted ReplicaSet: metadata and the shared workload checks.
pub fn validate_replica_set(rs: &ReplicaSet) -> ErrorList {
    let mut errs = validate_object_meta(&rs.metadata, true, names::name_is_dns_subdomain);
    let Some(spec) = &rs.spec else {
        errs.push(FieldError::required("spec", ""));
        return errs;
    };
    validate_workload_spec(
        "replicaset",
        spec.replicas,
        spec.min_ready_seconds,
        &spec.selector,
        spec.template.as_ref(),
        &mut errs,
    );
    errs
}

/// The selector of an apps/v1 workload may not change (`field is immutable`).
pub fn validate_selector_unchanged(new: &LabelSelector, old: &LabelSelector) -> ErrorList {
    if new == old {
        ErrorList::new()
    } else {
        vec![FieldError::invalid_omit_value(
            "spec.selector",
            "field is immutable",
        )]
    }
}

/// Validates legacy Endpoints: addresses are IPs, ports valid and named when
/// there are several.
pub fn validate_endpoints(ep: &Endpoints) -> ErrorList {
    let mut errs = validate_object_meta(&ep.metadata, true, names::name_is_dns_subdomain);
    for (i, ss) in ep.subsets.iter().flatten().enumerate() {
        let sp = format!("subsets[{i}]");
        for (list, key) in [
            (&ss.addresses, "addresses"),
            (&ss.not_ready_addresses, "notReadyAddresses"),
        ] {
            for (j, a) in list.iter().flatten().enumerate() {
                if parse_ip(&a.ip).is_none() {
                    errs.push(FieldError::invalid(
                        format!("{sp}.{key}[{j}].ip"),
                        &a.ip,
                        INVALID_IP,
                    ));
                }
                if let Some(h) = a.hostname.as_deref().filter(|h| !h.is_empty()) {
                    invalid_each(
                        &mut errs,
                        &format!("{sp}.{key}[{j}].hostname"),
                        h,
                        names::is_dns1123_label(h),
                    );
                }
            }
        }
        let ports = ss.ports.as_deref().unwrap_or(&[]);
        let mut seen = BTreeSet::new();
        for (j, p) in ports.iter().enumerate() {
            let pp = format!("{sp}.ports[{j}]");
            let name = p.name.as_deref().unwrap_or("");
            if ports.len() > 1 && name.is_empty() {
                errs.push(FieldError::required(format!("{pp}.name"), ""));
            } else if !name.is_empty() {
                invalid_each(
                    &mut errs,
                    &format!("{pp}.name"),
                    name,
                    names::is_dns1123_label(name),
                );
                if !seen.insert(name.to_string()) {
                    errs.push(FieldError::duplicate(format!("{pp}.name"), name));
                }
            }
            for m in names::is_valid_port_num(i64::from(p.port)) {
                errs.push(FieldError::invalid(format!("{pp}.port"), p.port, m));
            }
            match p.protocol.as_deref() {
                None | Some("") => errs.push(FieldError::required(format!("{pp}.protocol"), "")),
                Some(pr) if !PROTOCOLS.contains(&pr) => errs.push(FieldError::not_supported(
                    format!("{pp}.protocol"),
                    pr,
                    PROTOCOLS,
                )),
                Some(_) => {}
            }
        }
    }
    errs
}

/// Most endpoints one EndpointSlice may hold.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 1000;
/// Most addresses one endpoint may hold.
pub const MAX_ADDRESSES_PER_ENDPOINT: usize = 100;
const MAX_PORTS_PER_SLICE: usize = 20000;

/// Validates an EndpointSlice: addressType, each endpoint's addresses (1 to
/// 100, of that type), ports.
pub fn validate_endpoint_slice(slice: &EndpointSlice) -> ErrorList {
    let mut errs = validate_object_meta(&slice.metadata, true, names::name_is_dns_subdomain);
    let at = slice.address_type.as_str();
    if at.is_empty() {
        errs.push(FieldError::required("addressType", ""));
    } else if !matches!(at, "IPv4" | "IPv6" | "FQDN") {
        errs.push(FieldError::not_supported(
            "addressType",
            at,
            &["FQDN", "IPv4", "IPv6"],
        ));
    }
    if slice.endpoints.len() > MAX_ENDPOINTS_PER_SLICE {
        errs.push(FieldError::too_many(
            "endpoints",
            slice.endpoints.len(),
            MAX_ENDPOINTS_PER_SLICE,
        ));
    }
    for (i, ep) in slice.endpoints.iter().enumerate() {
        let ap = format!("endpoints[{i}].addresses");
        if ep.addresses.is_empty() {
            errs.push(FieldError::required(&ap, "must contain at least 1 address"));
        } else if ep.addresses.len() > MAX_ADDRESSES_PER_ENDPOINT {
            errs.push(FieldError::too_many(
                &ap,
                ep.addresses.len(),
                MAX_ADDRESSES_PER_ENDPOINT,
            ));
        }
        for (j, a) in ep.addresses.iter().enumerate() {
            let f = format!("{ap}[{j}]");
            match (at, parse_ip(a)) {
                ("IPv4", Some(IpAddr::V4(_))) | ("IPv6", Some(IpAddr::V6(_))) => {}
                ("IPv4", _) => {
                    errs.push(FieldError::invalid(&f, a, "must be a valid IPv4 address"))
                }
                ("IPv6", _) => {
                    errs.push(FieldError::invalid(&f, a, "must be a valid IPv6 address"))
                }
                ("FQDN", _) => invalid_each(&mut errs, &f, a, names::is_dns1123_subdomain(a)),
                _ => {}
            }
        }
        if let Some(h) = ep.hostname.as_deref() {
            invalid_each(
                &mut errs,
                &format!("endpoints[{i}].hostname"),
                h,
                names::is_dns1123_label(h),
            );
        }
        if let Some(n) = ep.node_name.as_deref() {
            invalid_each(
                &mut errs,
                &format!("endpoints[{i}].nodeName"),
                n,
                names::is_dns1123_subdomain(n),
            );
        }
    }
    let ports = slice.ports.as_deref().unwrap_or(&[]);
    if ports.len() > MAX_PORTS_PER_SLICE {
        errs.push(FieldError::too_many(
            "ports",
            ports.len(),
            MAX_PORTS_PER_SLICE,
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let pp = format!("ports[{i}]");
        let name = p.name.as_deref().unwrap_or("");
        if !name.is_empty() {
            invalid_each(
                &mut errs,
                &format!("{pp}.name"),
                name,
                names::is_dns1123_label(name),
            );
        }
        if !seen.insert(name.to_string()) {
            errs.push(FieldError::duplicate(format!("{pp}.name"), name));
        }
        if let Some(port) = p.port {
            for m in names::is_valid_port_num(i64::from(port)) {
                errs.push(FieldError::invalid(format!("{pp}.port"), port, m));
            }
        }
        match p.protocol.as_deref() {
            None => errs.push(FieldError::required(format!("{pp}.protocol"), "")),
            Some(pr) if !PROTOCOLS.contains(&pr) => errs.push(FieldError::not_supported(
                format!("{pp}.protocol"),
                pr,
                PROTOCOLS,
            )),
            Some(_) => {}
        }
        if let Some(ap) = &p.app_protocol {
            invalid_each(
                &mut errs,
                &format!("{pp}.appProtocol"),
                ap,
                names::is_qualified_name(ap),
            );
        }
    }
    errs
}

fn validate_ingress_backend(b: &IngressBackend, path: &str, errs: &mut ErrorList) {
    match (&b.service, &b.resource) {
        (Some(_), Some(_)) => errs.push(FieldError::invalid_omit_value(
            path,
            "cannot set both resource and service backends",
        )),
        (None, None) => errs.push(FieldError::invalid_omit_value(
            path,
            "resource or service backend is required",
        )),
        (None, Some(_)) => {}
        (Some(svc), None) => {
            invalid_each(
                errs,
                &format!("{path}.service.name"),
                &svc.name,
                names::name_is_dns1035_label(&svc.name, false),
            );
            let port_path = format!("{path}.service.port");
            let name = svc
                .port
                .as_ref()
                .and_then(|p| p.name.as_deref())
                .filter(|n| !n.is_empty());
            let number = svc.port.as_ref().and_then(|p| p.number).filter(|&n| n != 0);
            match (name, number) {
                (Some(_), Some(_)) => errs.push(FieldError::invalid(
                    &port_path,
                    "",
                    "cannot set both port name & port number",
                )),
                (Some(n), None) => invalid_each(
                    errs,
                    &format!("{port_path}.name"),
                    n,
                    names::is_iana_svc_name(n),
                ),
                (None, Some(n)) => {
                    for m in names::is_valid_port_num(i64::from(n)) {
                        errs.push(FieldError::invalid(format!("{port_path}.number"), n, m));
                    }
                }
                (None, None) => errs.push(FieldError::required(
                    &port_path,
                    "port name or number is required",
                )),
            }
        }
    }
}

/// Validates an Ingress: rule hosts (DNS subdomain or `*.` wildcard, not an
/// IP), paths (absolute, pathType Exact/Prefix/ImplementationSpecific) and
/// backends (service name and port).
pub fn validate_ingress(ing: &Ingress) -> ErrorList {
    let mut errs = validate_object_meta(&ing.metadata, true, names::name_is_dns_subdomain);
    let Some(spec) = &ing.spec else {
        errs.push(FieldError::invalid_omit_value(
            "spec",
            "either `defaultBackend` or `rules` must be specified",
        ));
        return errs;
    };
    let rules = spec.rules.as_deref().unwrap_or(&[]);
    if rules.is_empty() && spec.default_backend.is_none() {
        errs.push(FieldError::invalid_omit_value(
            "spec",
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(b) = &spec.default_backend {
        validate_ingress_backend(b, "spec.defaultBackend", &mut errs);
    }
    for (i, rule) in rules.iter().enumerate() {
        let rp = format!("spec.rules[{i}]");
        if let Some(host) = rule.host.as_deref().filter(|h| !h.is_empty()) {
            let hp = format!("{rp}.host");
            if parse_ip(host).is_some() {
                errs.push(FieldError::invalid(
                    &hp,
                    host,
                    "must be a DNS name, not an IP address",
                ));
            }
            if host.contains('*') {
                invalid_each(
                    &mut errs,
                    &hp,
                    host,
                    names::is_wildcard_dns1123_subdomain(host),
                );
            } else {
                invalid_each(&mut errs, &hp, host, names::is_dns1123_subdomain(host));
            }
        }
        let Some(http) = &rule.http else { continue };
        if http.paths.is_empty() {
            errs.push(FieldError::required(format!("{rp}.http.paths"), ""));
        }
        for (j, p) in http.paths.iter().enumerate() {
            let pp = format!("{rp}.http.paths[{j}]");
            let path = p.path.as_deref().unwrap_or("");
            match p.path_type.as_str() {
                "" => errs.push(FieldError::required(
                    format!("{pp}.pathType"),
                    "pathType must be specified",
                )),
                "Exact" | "Prefix" | "ImplementationSpecific" => {}
                other => errs.push(FieldError::not_supported(
                    format!("{pp}.pathType"),
                    other,
                    &["Exact", "ImplementationSpecific", "Prefix"],
                )),
            }
            let needs_path = matches!(p.path_type.as_str(), "Exact" | "Prefix");
            if (needs_path || !path.is_empty()) && !path.starts_with('/') {
                errs.push(FieldError::invalid(
                    format!("{pp}.path"),
                    path,
                    "must be an absolute path",
                ));
            }
            if needs_path && (path.contains("//") || path.contains("/./") || path.contains("/../"))
            {
                errs.push(FieldError::invalid(
                    format!("{pp}.path"),
                    path,
                    "must not contain '//', '/./' or '/../'",
                ));
            }
            validate_ingress_backend(&p.backend, &format!("{pp}.backend"), &mut errs);
        }
    }
    for (i, tls) in spec.tls.iter().flatten().enumerate() {
        for (j, h) in tls.hosts.iter().flatten().enumerate() {
            let f = format!("spec.tls[{i}].hosts[{j}]");
            if h.contains('*') {
                invalid_each(&mut errs, &f, h, names::is_wildcard_dns1123_subdomain(h));
            } else {
                invalid_each(&mut errs, &f, h, names::is_dns1123_subdomain(h));
            }
        }
    }
    if let Some(class) = &spec.ingress_class_name {
        invalid_each(
            &mut errs,
            "spec.ingressClassName",
            class,
            names::name_is_dns_subdomain(class, false),
        );
    }
    errs
}

fn validate_data_keys<'a>(
    keys: impl Iterator<Item = &'a String>,
    base: &str,
    errs: &mut ErrorList,
) {
    for k in keys {
        let f = format!("{base}[{k}]");
        invalid_each(errs, &f, k, names::is_config_map_key(k));
    }
}

/// Validates a ConfigMap: key names, no key in both `data` and `binaryData`,
/// total size 1 MiB.
pub fn validate_config_map(cm: &ConfigMap) -> ErrorList {
    let mut errs = validate_object_meta(&cm.metadata, true, names::name_is_dns_subdomain);
    let mut size = 0usize;
    if let Some(d) = &cm.data {
        validate_data_keys(d.keys(), "data", &mut errs);
        size += d.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    }
    if let Some(b) = &cm.binary_data {
        validate_data_keys(b.keys(), "binaryData", &mut errs);
        for (k, v) in b {
            size += k.len() + v.0.len();
            if cm.data.as_ref().is_some_and(|d| d.contains_key(k)) {
                errs.push(FieldError::invalid(
                    format!("data[{k}]"),
                    k,
                    "duplicate of key present in binaryData",
                ));
            }
        }
    }
    if size > MAX_CONFIG_MAP_SIZE {
        errs.push(FieldError::too_long("", MAX_CONFIG_MAP_SIZE));
    }
    errs
}

/// Validates a Secret: key names and total size 1 MiB.
pub fn validate_secret(secret: &Secret) -> ErrorList {
    let mut errs = validate_object_meta(&secret.metadata, true, names::name_is_dns_subdomain);
    let mut size = 0usize;
    if let Some(d) = &secret.data {
        validate_data_keys(d.keys(), "data", &mut errs);
        size += d.values().map(|v| v.0.len()).sum::<usize>();
    }
    if let Some(d) = &secret.string_data {
        validate_data_keys(d.keys(), "stringData", &mut errs);
        size += d.values().map(String::len).sum::<usize>();
    }
    if size > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long("data", MAX_SECRET_SIZE));
    }
    errs
}

/// Validates an update of a Secret: `type` is immutable.
pub fn validate_secret_update(new: &Secret, old: &Secret) -> ErrorList {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    if new.type_ != old.type_ {
        errs.push(FieldError::invalid(
            "type",
            new.type_.as_deref().unwrap_or(""),
            "field is immutable",
        ));
    }
    errs.extend(validate_secret(new));
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults::{default_service, prepare_service_update};
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        let mut s: Service = serde_json::from_value(v).expect("test manifests are well-formed");
        default_service(&mut s);
        s
    }

    fn web() -> serde_json::Value {
        json!({"metadata": {"name": "web", "namespace": "default"},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    }

    fn messages(errs: &ErrorList) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    #[test]
    fn defaulted_service_is_valid() {
        assert_eq!(
            messages(&validate_service_create(&svc(web()))),
            Vec::<String>::new()
        );
        let lb = svc(json!({"metadata": {"name": "lb", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]}}));
        assert_eq!(
            messages(&validate_service_create(&lb)),
            Vec::<String>::new()
        );
        let headless = svc(
            json!({"metadata": {"name": "h", "namespace": "default"}, "spec": {"clusterIP": "None"}}),
        );
        assert_eq!(
            messages(&validate_service_create(&headless)),
            Vec::<String>::new()
        );
        let ext = svc(json!({"metadata": {"name": "x", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "example.com."}}));
        assert_eq!(
            messages(&validate_service_create(&ext)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn port_rules_use_kubernetes_messages() {
        let s = svc(json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"ports": [{"port": 0}]}}));
        let m = messages(&validate_service_create(&s));
        assert!(
            m.contains(
                &"spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"
                    .to_string()
            ),
            "{m:?}"
        );

        let s = svc(json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"ports": [{"name": "a", "port": 80}, {"port": 81, "protocol": "HTTP", "targetPort": "Bad--"}]}}));
        let m = messages(&validate_service_create(&s));
        assert!(
            m.contains(&"spec.ports[1].name: Required value".to_string()),
            "{m:?}"
        );
        assert!(m.contains(&"spec.ports[1].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"".to_string()), "{m:?}");
        assert!(m.contains(&"spec.ports[1].targetPort: Invalid value: \"Bad--\": must not contain consecutive hyphens".to_string()), "{m:?}");

        let s = svc(json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 80}]}}));
        let errs = validate_service_create(&s);
        assert!(
            messages(&errs).contains(&"spec.ports[1].name: Duplicate value: \"a\"".to_string())
        );
        assert!(
            errs.iter()
                .any(|e| e.field == "spec.ports[1]" && e.reason() == "FieldValueDuplicate")
        );

        let s = svc(json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {}}));
        assert_eq!(
            messages(&validate_service_create(&s)),
            vec!["spec.ports: Required value"]
        );

        let s = svc(json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"ports": [{"port": 80, "nodePort": 30080}]}}));
        assert_eq!(
            messages(&validate_service_create(&s)),
            vec!["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
        );
    }

    #[test]
    fn names_and_types() {
        let mut v = web();
        v["metadata"]["name"] = json!("1web");
        v["spec"]["type"] = json!("Magic");
        let m = messages(&validate_service_create(&svc(v)));
        assert!(
            m[0].starts_with(
                "metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist"
            ),
            "{m:?}"
        );
        assert!(m.contains(&"spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"".to_string()), "{m:?}");

        let ext = svc(
            json!({"metadata": {"name": "x", "namespace": "default"}, "spec": {"type": "ExternalName"}}),
        );
        assert_eq!(
            messages(&validate_service_create(&ext)),
            vec!["spec.externalName: Required value"]
        );

        let mut v = web();
        v["metadata"] =
            json!({"generateName": "web-", "namespace": "default", "labels": {"-x": "ok"}});
        let m = messages(&validate_service_create(&svc(v)));
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(
            m[0].starts_with("metadata.labels: Invalid value: \"-x\": name part must consist"),
            "{m:?}"
        );
    }

    #[test]
    fn affinity_and_policies() {
        let mut v = web();
        v["spec"]["sessionAffinity"] = json!("ClientIP");
        let s = svc(v.clone());
        assert_eq!(
            s.spec
                .as_ref()
                .unwrap()
                .session_affinity_config
                .as_ref()
                .unwrap()
                .client_ip
                .as_ref()
                .unwrap()
                .timeout_seconds,
            Some(10800)
        );
        v["spec"]["sessionAffinityConfig"] = json!({"clientIP": {"timeoutSeconds": 86401}});
        assert_eq!(
            messages(&validate_service_create(&svc(v))),
            vec![
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401: must be greater than 0 and less than 86400"
            ]
        );
        let mut v = web();
        v["spec"]["externalTrafficPolicy"] = json!("Local");
        v["spec"]["internalTrafficPolicy"] = json!("Nowhere");
        assert_eq!(
            messages(&validate_service_create(&svc(v))),
            vec![
                "spec.externalTrafficPolicy: Invalid value: \"Local\": may only be set for externally-accessible services",
                "spec.internalTrafficPolicy: Unsupported value: \"Nowhere\": supported values: \"Cluster\", \"Local\""
            ]
        );
        let mut v = web();
        v["spec"]["clusterIP"] = json!("300.1.1.1");
        v["spec"]["externalIPs"] = json!(["nope"]);
        v["spec"]["loadBalancerSourceRanges"] = json!(["10.0.0.0/8"]);
        let m = messages(&validate_service_create(&svc(v)));
        assert!(m.contains(&"spec.clusterIPs[0]: Invalid value: \"300.1.1.1\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".to_string()), "{m:?}");
        assert!(
            m.iter()
                .any(|e| e.starts_with("spec.externalIPs[0]: Invalid value: \"nope\"")),
            "{m:?}"
        );
        assert!(m.contains(&"spec.LoadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'".to_string()), "{m:?}");
    }

    #[test]
    fn cluster_ip_is_immutable_except_through_external_name() {
        let mut old_v = web();
        old_v["spec"]["clusterIP"] = json!("127.96.0.5");
        let old = svc(old_v.clone());
        let mut new_v = old_v.clone();
        new_v["spec"]["clusterIP"] = json!("127.96.0.6");
        let mut new: Service = serde_json::from_value(new_v).unwrap();
        prepare_service_update(&mut new, &old);
        default_service(&mut new);
        assert_eq!(
            messages(&validate_service_update(&new, &old)),
            vec![
                "spec.clusterIPs[0]: Invalid value: []string{\"127.96.0.6\"}: may not change once set"
            ]
        );

        // An apply without clusterIP keeps the allocated one.
        let mut new: Service = serde_json::from_value(web()).unwrap();
        prepare_service_update(&mut new, &old);
        default_service(&mut new);
        assert_eq!(
            new.spec.as_ref().unwrap().cluster_ip.as_deref(),
            Some("127.96.0.5")
        );
        assert!(validate_service_update(&new, &old).is_empty());

        // ClusterIP -> ExternalName drops the cluster IP.
        let mut ext = old.clone();
        let spec = ext.spec.as_mut().unwrap();
        spec.type_ = Some("ExternalName".into());
        spec.external_name = Some("example.com".into());
        prepare_service_update(&mut ext, &old);
        default_service(&mut ext);
        assert_eq!(ext.spec.as_ref().unwrap().cluster_ip, None);
        assert_eq!(
            messages(&validate_service_update(&ext, &old)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn other_kinds() {
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": "Bad_NS"}})).unwrap();
        assert_eq!(validate_namespace(&ns).len(), 1);
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 80, "name": "8080"}]}]}})).unwrap();
        let mut pod = pod;
        crate::defaults::default_pod(&mut pod);
        assert_eq!(
            messages(&validate_pod(&pod)),
            vec![
                "spec.containers[0].ports[0].name: Invalid value: \"8080\": must contain at least one letter (a-z)"
            ]
        );
        let slice: EndpointSlice = serde_json::from_value(json!({"metadata": {"name": "s", "namespace": "default"},
            "addressType": "IPv4", "endpoints": [{"addresses": []}, {"addresses": ["::1"]}], "ports": [{"port": 80, "protocol": "TCP"}]})).unwrap();
        assert_eq!(
            messages(&validate_endpoint_slice(&slice)),
            vec![
                "endpoints[0].addresses: Required value: must contain at least 1 address",
                "endpoints[1].addresses[0]: Invalid value: \"::1\": must be a valid IPv4 address"
            ]
        );
        let ing: Ingress = serde_json::from_value(json!({"metadata": {"name": "i", "namespace": "default"},
            "spec": {"rules": [{"host": "*.example.com", "http": {"paths": [
                {"path": "api", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
                {"path": "/", "pathType": "Fuzzy", "backend": {"service": {"name": "web"}}}]}}]}})).unwrap();
        assert_eq!(
            messages(&validate_ingress(&ing)),
            vec![
                "spec.rules[0].http.paths[0].path: Invalid value: \"api\": must be an absolute path",
                "spec.rules[0].http.paths[1].pathType: Unsupported value: \"Fuzzy\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\"",
                "spec.rules[0].http.paths[1].backend.service.port: Required value: port name or number is required"
            ]
        );
        let cm: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": "c", "namespace": "default"}, "data": {"a/b": "x"}}),
        )
        .unwrap();
        assert_eq!(validate_config_map(&cm).len(), 1);
        assert_eq!(validate_config_map(&cm)[0].field, "data[a/b]");
    }

    fn deployment(spec: serde_json::Value) -> Deployment {
        let mut d: Deployment = serde_json::from_value(
            json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec}),
        )
        .unwrap();
        crate::defaults::default_deployment(&mut d);
        d
    }

    fn template(labels: serde_json::Value) -> serde_json::Value {
        json!({"metadata": {"labels": labels},
               "spec": {"containers": [{"name": "c", "image": "agnhost", "command": ["x"]}]}})
    }

    #[test]
    fn a_defaulted_deployment_is_valid() {
        let d = deployment(json!({"selector": {"matchLabels": {"app": "web"}},
                                  "template": template(json!({"app": "web"}))}));
        let spec = d.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(
            spec.strategy.as_ref().unwrap().type_.as_deref(),
            Some("RollingUpdate")
        );
        let probe_default = spec
            .template
            .spec
            .as_ref()
            .unwrap()
            .restart_policy
            .as_deref();
        assert_eq!(probe_default, Some("Always"));
        assert_eq!(messages(&validate_deployment(&d)), Vec::<String>::new());
    }

    #[test]
    fn deployment_errors_name_each_field() {
        let d = deployment(json!({
            "replicas": -1,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}},
            "template": template(json!({"app": "other"}))}));
        assert_eq!(
            messages(&validate_deployment(&d)),
            vec![
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`",
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0",
            ]
        );
        let d = deployment(json!({
            "selector": {},
            "strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}},
            "template": template(json!({"app": "web"}))}));
        assert_eq!(
            messages(&validate_deployment(&d)),
            vec![
                "spec.selector: Invalid value: empty selector is invalid for deployment",
                "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'",
            ]
        );
        let d = deployment(json!({
            "selector": {"matchExpressions": [{"key": "app", "operator": "Near"}]},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "x%", "maxUnavailable": "150%"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}));
        let got = messages(&validate_deployment(&d));
        for want in [
            "spec.selector.matchExpressions[0].operator: Unsupported value: \"Near\"",
            "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
            "spec.strategy.rollingUpdate.maxSurge: Invalid value: \"x%\"",
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%",
        ] {
            assert!(
                got.iter().any(|m| m.starts_with(want)),
                "{want} not in {got:#?}"
            );
        }
    }

    #[test]
    fn replica_sets_need_a_template_and_immutable_selectors() {
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}}}))
        .unwrap();
        assert_eq!(
            messages(&validate_replica_set(&rs)),
            vec!["spec.template: Required value"]
        );
        let a: LabelSelector =
            serde_json::from_value(json!({"matchLabels": {"app": "a"}})).unwrap();
        let b: LabelSelector =
            serde_json::from_value(json!({"matchLabels": {"app": "b"}})).unwrap();
        assert!(validate_selector_unchanged(&a, &a).is_empty());
        assert_eq!(
            messages(&validate_selector_unchanged(&b, &a)),
            vec!["spec.selector: Invalid value: field is immutable"]
        );
    }
}
