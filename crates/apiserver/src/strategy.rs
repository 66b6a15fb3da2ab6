//! What differs per kind on create and update: decoding into the typed
//! Kubernetes object (which prunes unknown fields, as the Kubernetes
//! apiserver does), defaulting, validation, status reset, and for Services
//! the allocation of ClusterIPs, NodePorts and LoadBalancer addresses.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, Service, ServiceStatus};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use switchboard_api::validation::{ErrorList, FieldError};
use switchboard_api::{ResourceType, defaults, validation};

use crate::alloc::{AllocError, IpAllocator, PortAllocator};
use crate::error::{ApiError, ApiResult};
use crate::registry::Part;

/// Decodes `obj` as `T`, with the Kubernetes wording when it does not fit.
fn decode<T: DeserializeOwned>(rt: &ResourceType, obj: &Value) -> ApiResult<T> {
    serde_json::from_value(obj.clone()).map_err(|e| {
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {e}",
            kind = rt.kind,
            version = rt.version
        ))
    })
}

fn encode<T: Serialize>(typed: &T) -> Value {
    // k8s-openapi types always serialize to JSON.
    serde_json::to_value(typed).expect("a k8s-openapi object serializes")
}

fn invalid(rt: &ResourceType, obj: &Value, errors: ErrorList) -> ApiResult<()> {
    if errors.is_empty() {
        Ok(())
    } else {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        Err(ApiError::invalid(rt, name, &errors))
    }
}

/// Validates metadata the same way for every kind; names follow the rule of
/// the kind (DNS-1035 label for Services, DNS-1123 label for Namespaces,
/// DNS-1123 subdomain otherwise).
fn meta_errors(rt: &ResourceType, obj: &Value) -> ApiResult<ErrorList> {
    let meta: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta =
        decode(rt, obj.get("metadata").unwrap_or(&Value::Null))?;
    let names: switchboard_api::names::NameValidator = match rt.kind {
        "Service" => switchboard_api::names::name_is_dns1035_label,
        "Namespace" => switchboard_api::names::name_is_dns_label,
        _ => switchboard_api::names::name_is_dns_subdomain,
    };
    Ok(validation::validate_object_meta(
        &meta,
        rt.namespaced,
        names,
    ))
}

/// Prepares a new object for storage; returns what was allocated for it so a
/// failed write can give it back.
pub fn prepare_create(
    rt: &ResourceType,
    obj: &mut Value,
    allocators: &Allocators,
) -> ApiResult<Claims> {
    // Metadata problems are reported together with the kind's own, so one
    // answer names every field to fix.
    let mut errors = meta_errors(rt, obj)?;
    match rt.kind {
        "Service" => {
            let mut svc: Service = decode(rt, obj)?;
            defaults::default_service(&mut svc);
            svc.status = Some(ServiceStatus::default());
            errors.extend(validation::validate_service_create(&svc));
            invalid(rt, obj, errors)?;
            let claims = allocators.allocate(rt, &mut svc, None)?;
            *obj = encode(&svc);
            Ok(claims)
        }
        "Pod" => {
            let mut pod: k8s_openapi::api::core::v1::Pod = decode(rt, obj)?;
            defaults::default_pod(&mut pod);
            errors.extend(validation::validate_pod(&pod));
            invalid(rt, obj, errors)?;
            // A new pod starts Pending; its node agent reports the rest.
            pod.status = Some(k8s_openapi::api::core::v1::PodStatus {
                phase: Some("Pending".into()),
                ..Default::default()
            });
            *obj = encode(&pod);
            Ok(Claims::default())
        }
        "Deployment" => {
            let mut deploy: Deployment = decode(rt, obj)?;
            defaults::default_deployment(&mut deploy);
            deploy.status = Some(Default::default());
            errors.extend(validation::validate_deployment(&deploy));
            invalid(rt, obj, errors)?;
            *obj = encode(&deploy);
            Ok(Claims::default())
        }
        "ReplicaSet" => {
            let mut rs: ReplicaSet = decode(rt, obj)?;
            defaults::default_replica_set(&mut rs);
            rs.status = Some(Default::default());
            errors.extend(validation::validate_replica_set(&rs));
            invalid(rt, obj, errors)?;
            *obj = encode(&rs);
            Ok(Claims::default())
        }
        "Namespace" => {
            invalid(rt, obj, errors)?;
            let mut ns: k8s_openapi::api::core::v1::Namespace = decode(rt, obj)?;
            ns.status = Some(k8s_openapi::api::core::v1::NamespaceStatus {
                phase: Some("Active".into()),
                ..Default::default()
            });
            *obj = encode(&ns);
            Ok(Claims::default())
        }
        _ => {
            prune_and_validate(rt, obj, errors)?;
            Ok(Claims::default())
        }
    }
}

/// Prepares an update of `current` into `next`.
pub fn prepare_update(
    rt: &ResourceType,
    next: &mut Value,
    current: &Value,
    part: Part,
    allocators: &Allocators,
) -> ApiResult<Claims> {
    let mut errors = meta_errors(rt, next)?;
    match (rt.kind, part) {
        ("Service", Part::Main) => {
            let old: Service = decode(rt, current)?;
            let mut svc: Service = decode(rt, next)?;
            keep_allocated_values(&mut svc, &old);
            drop_type_dependent_fields(&mut svc, &old);
            defaults::default_service(&mut svc);
            errors.extend(validation::validate_service_update(&svc, &old));
            invalid(rt, next, errors)?;
            let claims = allocators.allocate(rt, &mut svc, Some(&old))?;
            *next = encode(&svc);
            Ok(claims)
        }
        ("Service", Part::Status) => {
            let old: Service = decode(rt, current)?;
            let svc: Service = decode(rt, next)?;
            errors.extend(validation::validate_service_status(&svc, &old));
            invalid(rt, next, errors)?;
            *next = encode(&svc);
            Ok(Claims::default())
        }
        ("Deployment", Part::Main) => {
            let old: Deployment = decode(rt, current)?;
            let mut deploy: Deployment = decode(rt, next)?;
            defaults::default_deployment(&mut deploy);
            errors.extend(validation::validate_deployment(&deploy));
            if let (Some(new), Some(old)) = (&deploy.spec, &old.spec) {
                errors.extend(validation::validate_selector_unchanged(
                    &new.selector,
                    &old.selector,
                ));
            }
            invalid(rt, next, errors)?;
            *next = encode(&deploy);
            Ok(Claims::default())
        }
        ("ReplicaSet", Part::Main) => {
            let old: ReplicaSet = decode(rt, current)?;
            let mut rs: ReplicaSet = decode(rt, next)?;
            defaults::default_replica_set(&mut rs);
            errors.extend(validation::validate_replica_set(&rs));
            if let (Some(new), Some(old)) = (&rs.spec, &old.spec) {
                errors.extend(validation::validate_selector_unchanged(
                    &new.selector,
                    &old.selector,
                ));
            }
            invalid(rt, next, errors)?;
            *next = encode(&rs);
            Ok(Claims::default())
        }
        ("Deployment", Part::Status) => {
            invalid(rt, next, errors)?;
            *next = encode(&decode::<Deployment>(rt, next)?);
            Ok(Claims::default())
        }
        ("ReplicaSet", Part::Status) => {
            invalid(rt, next, errors)?;
            *next = encode(&decode::<ReplicaSet>(rt, next)?);
            Ok(Claims::default())
        }
        ("Pod", _) => {
            let mut pod: k8s_openapi::api::core::v1::Pod = decode(rt, next)?;
            defaults::default_pod(&mut pod);
            errors.extend(validation::validate_pod(&pod));
            invalid(rt, next, errors)?;
            *next = encode(&pod);
            Ok(Claims::default())
        }
        _ => {
            prune_and_validate(rt, next, errors)?;
            Ok(Claims::default())
        }
    }
}

/// Round-trips an object of the remaining kinds through its typed form and
/// runs the kind's validation.
fn prune_and_validate(rt: &ResourceType, obj: &mut Value, mut errors: ErrorList) -> ApiResult<()> {
    use k8s_openapi::api::core::v1 as core;
    use k8s_openapi::api::discovery::v1 as discovery;
    use k8s_openapi::api::networking::v1 as networking;
    match rt.kind {
        "Endpoints" => {
            let typed: core::Endpoints = decode(rt, obj)?;
            errors.extend(validation::validate_endpoints(&typed));
            invalid(rt, obj, std::mem::take(&mut errors))?;
            *obj = encode(&typed);
        }
        "EndpointSlice" => {
            let typed: discovery::EndpointSlice = decode(rt, obj)?;
            errors.extend(validation::validate_endpoint_slice(&typed));
            invalid(rt, obj, std::mem::take(&mut errors))?;
            *obj = encode(&typed);
        }
        "Ingress" => {
            let typed: networking::Ingress = decode(rt, obj)?;
            errors.extend(validation::validate_ingress(&typed));
            invalid(rt, obj, std::mem::take(&mut errors))?;
            *obj = encode(&typed);
        }
        "ConfigMap" => {
            let typed: core::ConfigMap = decode(rt, obj)?;
            errors.extend(validation::validate_config_map(&typed));
            invalid(rt, obj, std::mem::take(&mut errors))?;
            *obj = encode(&typed);
        }
        "Secret" => {
            let typed: core::Secret = decode(rt, obj)?;
            errors.extend(validation::validate_secret(&typed));
            invalid(rt, obj, std::mem::take(&mut errors))?;
            *obj = encode(&typed);
        }
        "Namespace" => *obj = encode(&decode::<core::Namespace>(rt, obj)?),
        "Node" => *obj = encode(&decode::<core::Node>(rt, obj)?),
        "Event" => *obj = encode(&decode::<core::Event>(rt, obj)?),
        "IngressClass" => *obj = encode(&decode::<networking::IngressClass>(rt, obj)?),
        _ => {}
    }
    invalid(rt, obj, errors)
}

/// Values the user did not repeat on update keep what was allocated before
/// (Kubernetes' `patchAllocatedValues`): an apply of the original manifest
/// must not drop the ClusterIP or the NodePorts.
fn keep_allocated_values(svc: &mut Service, old: &Service) {
    let (Some(spec), Some(old_spec)) = (svc.spec.as_mut(), old.spec.as_ref()) else {
        return;
    };
    if needs_cluster_ip(spec) && old_spec.type_.as_deref() != Some("ExternalName") {
        if spec.cluster_ip.as_deref().unwrap_or("").is_empty() {
            spec.cluster_ip = old_spec.cluster_ip.clone();
            if spec.cluster_ips.as_ref().is_none_or(Vec::is_empty) {
                spec.cluster_ips = old_spec.cluster_ips.clone();
            }
        }
        if spec.ip_families.as_ref().is_none_or(Vec::is_empty) {
            spec.ip_families = old_spec.ip_families.clone();
        }
        if spec.ip_family_policy.is_none() {
            spec.ip_family_policy = old_spec.ip_family_policy.clone();
        }
    }
    if needs_node_ports(spec) {
        let old_ports = old_spec.ports.clone().unwrap_or_default();
        for port in spec.ports.iter_mut().flatten() {
            if port.node_port.unwrap_or(0) == 0
                && let Some(prev) = old_ports.iter().find(|p| {
                    p.port == port.port
                        && p.protocol.as_deref().unwrap_or("TCP")
                            == port.protocol.as_deref().unwrap_or("TCP")
                })
            {
                port.node_port = prev.node_port;
            }
        }
    }
    if needs_health_check_port(spec) && spec.health_check_node_port.unwrap_or(0) == 0 {
        spec.health_check_node_port = old_spec.health_check_node_port;
    }
}

/// Fields the new type has no use for go when the user left them as they
/// were (Kubernetes' `dropTypeDependentFields`), so a type change needs no
/// hand-editing of allocated values.
fn drop_type_dependent_fields(svc: &mut Service, old: &Service) {
    let (Some(spec), Some(old_spec)) = (svc.spec.as_mut(), old.spec.as_ref()) else {
        return;
    };
    if !needs_cluster_ip(spec)
        && spec.cluster_ip == old_spec.cluster_ip
        && spec.cluster_ip.as_deref() != Some("None")
    {
        spec.cluster_ip = None;
        spec.cluster_ips = None;
        spec.ip_families = None;
        spec.ip_family_policy = None;
    }
    if !needs_node_ports(spec) {
        let old_ports = old_spec.ports.clone().unwrap_or_default();
        for port in spec.ports.iter_mut().flatten() {
            if port.node_port.is_some() && old_ports.iter().any(|p| p.node_port == port.node_port) {
                port.node_port = None;
            }
        }
    }
    if !needs_health_check_port(spec)
        && spec.health_check_node_port == old_spec.health_check_node_port
    {
        spec.health_check_node_port = None;
    }
    if spec.type_.as_deref() != Some("LoadBalancer")
        && let Some(status) = svc.status.as_mut()
    {
        status.load_balancer = None;
    }
}

fn needs_cluster_ip(spec: &k8s_openapi::api::core::v1::ServiceSpec) -> bool {
    spec.type_.as_deref() != Some("ExternalName")
}

fn needs_node_ports(spec: &k8s_openapi::api::core::v1::ServiceSpec) -> bool {
    match spec.type_.as_deref() {
        Some("NodePort") => true,
        Some("LoadBalancer") => spec.allocate_load_balancer_node_ports != Some(false),
        _ => false,
    }
}

fn needs_health_check_port(spec: &k8s_openapi::api::core::v1::ServiceSpec) -> bool {
    spec.type_.as_deref() == Some("LoadBalancer")
        && spec.external_traffic_policy.as_deref() == Some("Local")
}

/// What one write claimed from the allocators.
#[derive(Debug, Default, Clone)]
pub struct Claims {
    cluster_ips: Vec<Ipv4Addr>,
    node_ports: Vec<u16>,
    lb_ips: Vec<Ipv4Addr>,
}

/// The allocated values a Service object holds.
#[derive(Debug, Default, PartialEq, Eq)]
struct Held {
    cluster_ips: BTreeSet<Ipv4Addr>,
    node_ports: BTreeSet<u16>,
    lb_ips: BTreeSet<Ipv4Addr>,
}

impl Held {
    fn of_value(obj: &Value) -> Held {
        if obj.get("kind").and_then(Value::as_str) != Some("Service") {
            return Held::default();
        }
        serde_json::from_value::<Service>(obj.clone())
            .map(|s| Held::of(&s))
            .unwrap_or_default()
    }

    fn of(svc: &Service) -> Held {
        let mut held = Held::default();
        if let Some(spec) = &svc.spec {
            let ips = spec
                .cluster_ips
                .iter()
                .flatten()
                .chain(spec.cluster_ip.iter());
            held.cluster_ips
                .extend(ips.filter_map(|ip| ip.parse::<Ipv4Addr>().ok()));
            held.node_ports.extend(
                spec.ports
                    .iter()
                    .flatten()
                    .filter_map(|p| p.node_port)
                    .filter_map(|p| u16::try_from(p).ok()),
            );
            held.node_ports.extend(
                spec.health_check_node_port
                    .and_then(|p| u16::try_from(p).ok()),
            );
        }
        if let Some(ingress) = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
        {
            held.lb_ips.extend(
                ingress
                    .iter()
                    .filter_map(|i| i.ip.as_deref()?.parse::<Ipv4Addr>().ok()),
            );
        }
        held
    }
}

struct Pools {
    cluster_ips: IpAllocator,
    node_ports: PortAllocator,
    lb_ips: IpAllocator,
}

/// The ClusterIP, NodePort and LoadBalancer IP allocators.
pub struct Allocators {
    pools: Mutex<Pools>,
}

impl Allocators {
    /// Allocators over the configured ranges. The service range's `.1` (the
    /// `kubernetes` service) and `.10` (cluster DNS) are only given on request.
    pub fn new(
        service_cidr: ipnet::Ipv4Net,
        node_ports: (u16, u16),
        lb_pool: ipnet::Ipv4Net,
    ) -> Self {
        let base = u32::from(service_cidr.network());
        let reserved = vec![Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 10)];
        Self {
            pools: Mutex::new(Pools {
                cluster_ips: IpAllocator::new(service_cidr, reserved),
                node_ports: PortAllocator::new(node_ports.0, node_ports.1),
                lb_ips: IpAllocator::new(lb_pool, Vec::new()),
            }),
        }
    }

    fn pools(&self) -> std::sync::MutexGuard<'_, Pools> {
        // Every critical section leaves the bitmaps consistent between
        // statements, so a poisoned lock is still safe to use.
        self.pools.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The ClusterIP the `kubernetes` service gets: the range's `.1`.
    pub fn kubernetes_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.pools().cluster_ips.range().network()) + 1)
    }

    /// Claims, at start, what the stored Services hold (the repair pass).
    /// Returns a description of each value held twice, for the log.
    pub fn repair<'a>(&self, services: impl Iterator<Item = &'a Value>) -> Vec<String> {
        let mut pools = self.pools();
        let mut problems = Vec::new();
        for svc in services {
            let name = format!(
                "{}/{}",
                svc.pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
                svc.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
            );
            let held = Held::of_value(svc);
            for ip in held.cluster_ips {
                if let Err(AllocError::Taken { .. }) = pools.cluster_ips.allocate(ip) {
                    problems.push(format!(
                        "ClusterIP {ip} of {name} is held by another service"
                    ));
                }
            }
            for port in held.node_ports {
                if let Err(AllocError::Taken { .. }) = pools.node_ports.allocate(port) {
                    problems.push(format!(
                        "NodePort {port} of {name} is held by another service"
                    ));
                }
            }
            for ip in held.lb_ips {
                if let Err(AllocError::Taken { .. }) = pools.lb_ips.allocate(ip) {
                    problems.push(format!(
                        "LoadBalancer IP {ip} of {name} is held by another service"
                    ));
                }
            }
        }
        problems
    }

    /// Gives back what a failed write claimed.
    pub fn release(&self, claims: &Claims) {
        let mut pools = self.pools();
        claims
            .cluster_ips
            .iter()
            .for_each(|ip| pools.cluster_ips.release(*ip));
        claims
            .node_ports
            .iter()
            .for_each(|p| pools.node_ports.release(*p));
        claims
            .lb_ips
            .iter()
            .for_each(|ip| pools.lb_ips.release(*ip));
    }

    /// After `old` was replaced by `new` (`Value::Null` when deleted), gives
    /// back what `old` held and `new` does not.
    pub fn release_replaced(&self, old: &Value, new: &Value) {
        let (old, new) = (Held::of_value(old), Held::of_value(new));
        if old == new {
            return;
        }
        let mut pools = self.pools();
        old.cluster_ips
            .difference(&new.cluster_ips)
            .for_each(|ip| pools.cluster_ips.release(*ip));
        old.node_ports
            .difference(&new.node_ports)
            .for_each(|p| pools.node_ports.release(*p));
        old.lb_ips
            .difference(&new.lb_ips)
            .for_each(|ip| pools.lb_ips.release(*ip));
    }

    /// Fills in and claims the ClusterIP, NodePorts, health-check NodePort and
    /// LoadBalancer address `svc` needs that `old` did not already hold. All
    /// or nothing: on error, whatever was claimed is given back.
    fn allocate(
        &self,
        rt: &ResourceType,
        svc: &mut Service,
        old: Option<&Service>,
    ) -> ApiResult<Claims> {
        let held = old.map(Held::of).unwrap_or_default();
        let mut claims = Claims::default();
        let mut pools = self.pools();
        let result = Self::allocate_locked(&mut pools, svc, &held, &mut claims);
        drop(pools);
        match result {
            Ok(()) => Ok(claims),
            Err(errors) => {
                self.release(&claims);
                let name = svc.metadata.name.clone().unwrap_or_default();
                if errors.iter().any(|e| e.detail.ends_with("range is full")) {
                    return Err(ApiError::internal(format!(
                        "failed to allocate a {}: range is full",
                        if errors[0].field.contains("nodePort") {
                            "nodePort"
                        } else {
                            "serviceIP"
                        }
                    )));
                }
                Err(ApiError::invalid(rt, &name, &errors))
            }
        }
    }

    fn allocate_locked(
        pools: &mut Pools,
        svc: &mut Service,
        held: &Held,
        claims: &mut Claims,
    ) -> Result<(), ErrorList> {
        let Some(spec) = svc.spec.as_mut() else {
            return Ok(());
        };
        let mut errors = ErrorList::new();

        if needs_cluster_ip(spec) && spec.cluster_ip.as_deref() != Some("None") {
            let requested = spec.cluster_ip.clone().unwrap_or_default();
            if requested.is_empty() {
                match pools.cluster_ips.allocate_next() {
                    Ok(ip) => {
                        claims.cluster_ips.push(ip);
                        spec.cluster_ip = Some(ip.to_string());
                        spec.cluster_ips = Some(vec![ip.to_string()]);
                    }
                    Err(e) => errors.push(FieldError::invalid(
                        "spec.clusterIPs",
                        Vec::<String>::new(),
                        format!("failed to allocate a serviceIP: {e}"),
                    )),
                }
            } else if let Ok(ip) = requested.parse::<Ipv4Addr>() {
                if !held.cluster_ips.contains(&ip) {
                    match pools.cluster_ips.allocate(ip) {
                        Ok(()) => claims.cluster_ips.push(ip),
                        Err(e) => errors.push(FieldError::invalid(
                            "spec.clusterIPs",
                            vec![ip.to_string()],
                            format!("failed to allocate IP {ip}: {e}"),
                        )),
                    }
                }
                spec.cluster_ips = Some(vec![ip.to_string()]);
            }
            if spec.cluster_ip.as_deref().is_some_and(|ip| !ip.is_empty()) {
                spec.ip_families.get_or_insert_with(|| vec!["IPv4".into()]);
                spec.ip_family_policy
                    .get_or_insert_with(|| "SingleStack".into());
            }
        } else if spec.cluster_ip.as_deref() == Some("None") {
            spec.cluster_ips = Some(vec!["None".into()]);
        }

        if needs_node_ports(spec) {
            let mut in_this_service = BTreeSet::new();
            for (i, port) in spec.ports.iter_mut().flatten().enumerate() {
                let field = format!("spec.ports[{i}].nodePort");
                match port
                    .node_port
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p != 0)
                {
                    None => match pools.node_ports.allocate_next() {
                        Ok(p) => {
                            claims.node_ports.push(p);
                            in_this_service.insert(p);
                            port.node_port = Some(i32::from(p));
                        }
                        Err(e) => errors.push(FieldError::invalid(&field, 0i32, e.to_string())),
                    },
                    // One NodePort may serve the same port number over two
                    // protocols; it is claimed once.
                    Some(p) if held.node_ports.contains(&p) || in_this_service.contains(&p) => {}
                    Some(p) => match pools.node_ports.allocate(p) {
                        Ok(()) => {
                            claims.node_ports.push(p);
                            in_this_service.insert(p);
                        }
                        Err(e) => {
                            errors.push(FieldError::invalid(&field, i32::from(p), e.to_string()))
                        }
                    },
                }
            }
        }

        if needs_health_check_port(spec) {
            match spec
                .health_check_node_port
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0)
            {
                None => match pools.node_ports.allocate_next() {
                    Ok(p) => {
                        claims.node_ports.push(p);
                        spec.health_check_node_port = Some(i32::from(p));
                    }
                    Err(e) => errors.push(FieldError::invalid(
                        "spec.healthCheckNodePort",
                        0i32,
                        e.to_string(),
                    )),
                },
                Some(p) if held.node_ports.contains(&p) => {}
                Some(p) => match pools.node_ports.allocate(p) {
                    Ok(()) => claims.node_ports.push(p),
                    Err(e) => errors.push(FieldError::invalid(
                        "spec.healthCheckNodePort",
                        i32::from(p),
                        e.to_string(),
                    )),
                },
            }
        }

        if spec.type_.as_deref() == Some("LoadBalancer") {
            let pool = pools.lb_ips.range();
            let current: Vec<Ipv4Addr> = held
                .lb_ips
                .iter()
                .copied()
                .filter(|ip| pool.contains(ip))
                .collect();
            let requested = spec
                .load_balancer_ip
                .as_deref()
                .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
            let ip = match (current.first(), requested) {
                (Some(ip), None) => Some(*ip),
                (Some(ip), Some(req)) if *ip == req => Some(*ip),
                (_, Some(req)) => match pools.lb_ips.allocate(req) {
                    Ok(()) => {
                        claims.lb_ips.push(req);
                        Some(req)
                    }
                    Err(e) => {
                        errors.push(FieldError::invalid(
                            "spec.loadBalancerIP",
                            req.to_string(),
                            e.to_string(),
                        ));
                        None
                    }
                },
                (None, None) => match pools.lb_ips.allocate_next() {
                    Ok(ip) => {
                        claims.lb_ips.push(ip);
                        Some(ip)
                    }
                    // An exhausted pool leaves the service pending, as a
                    // cloud load balancer that cannot be provisioned does.
                    Err(_) => None,
                },
            };
            if let Some(ip) = ip {
                let status = svc.status.get_or_insert_with(Default::default);
                status.load_balancer = Some(LoadBalancerStatus {
                    ingress: Some(vec![LoadBalancerIngress {
                        ip: Some(ip.to_string()),
                        ip_mode: Some("VIP".into()),
                        ..Default::default()
                    }]),
                });
            }
        }

        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// The `kubernetes` Service in `default`, pointing at the apiserver.
pub fn kubernetes_service(ip: Ipv4Addr, port: u16) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"}
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ip.to_string(),
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
            "sessionAffinity": "None"
        }
    })
}
