//! The `Status` bodies the apiserver answers errors (and some successes) with,
//! in the exact reason/code/message shapes of `k8s.io/apimachinery/pkg/api/errors`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    ListMeta, Status, StatusCause, StatusDetails,
};

use crate::resource::ResourceType;
use crate::validation::{ErrorList, FieldError, aggregate_message};

/// `the object has been modified; ...`, the cause of a 409 on a stale update.
pub const OPTIMISTIC_LOCK_MESSAGE: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

fn failure(code: i32, reason: &str, message: String, details: Option<StatusDetails>) -> Status {
    Status {
        code: Some(code),
        details,
        message: Some(message),
        metadata: ListMeta::default(),
        reason: Some(reason.to_string()),
        status: Some("Failure".to_string()),
    }
}

/// `services` or `ingresses.networking.k8s.io`: Kubernetes' `GroupResource`.
fn group_resource(rt: &ResourceType) -> String {
    if rt.group.is_empty() {
        rt.plural.to_string()
    } else {
        format!("{}.{}", rt.plural, rt.group)
    }
}

/// `Service` or `Ingress.networking.k8s.io`: Kubernetes' `GroupKind`.
fn group_kind(rt: &ResourceType) -> String {
    if rt.group.is_empty() {
        rt.kind.to_string()
    } else {
        format!("{}.{}", rt.kind, rt.group)
    }
}

fn resource_details(rt: &ResourceType, name: &str) -> StatusDetails {
    StatusDetails {
        group: Some(rt.group.to_string()),
        kind: Some(rt.plural.to_string()),
        name: Some(name.to_string()),
        ..Default::default()
    }
}

fn go_quote(s: &str) -> String {
    format!("{s:?}")
}

/// 404 NotFound: `services "web" not found`.
pub fn not_found(rt: &ResourceType, name: &str) -> Status {
    failure(
        404,
        "NotFound",
        format!("{} {} not found", group_resource(rt), go_quote(name)),
        Some(resource_details(rt, name)),
    )
}

/// 404 NotFound for a path that names no resource: `the server could not find the requested resource`.
pub fn not_found_path() -> Status {
    failure(
        404,
        "NotFound",
        "the server could not find the requested resource".into(),
        Some(StatusDetails::default()),
    )
}

/// 409 AlreadyExists: `services "web" already exists`.
pub fn already_exists(rt: &ResourceType, name: &str) -> Status {
    failure(
        409,
        "AlreadyExists",
        format!("{} {} already exists", group_resource(rt), go_quote(name)),
        Some(resource_details(rt, name)),
    )
}

/// 409 Conflict for a stale `resourceVersion`: `Operation cannot be fulfilled
/// on services "web": the object has been modified; ...`.
pub fn conflict(rt: &ResourceType, name: &str) -> Status {
    conflict_with(rt, name, OPTIMISTIC_LOCK_MESSAGE)
}

/// 409 Conflict with another cause (e.g. a UID precondition).
pub fn conflict_with(rt: &ResourceType, name: &str, cause: &str) -> Status {
    failure(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} {}: {}",
            group_resource(rt),
            go_quote(name),
            cause
        ),
        Some(resource_details(rt, name)),
    )
}

/// 422 Invalid: `Service "web" is invalid: <error>` (several errors in
/// `[a, b]` form), with one `details.causes` entry per field error.
pub fn invalid(rt: &ResourceType, name: &str, errs: &ErrorList) -> Status {
    let causes: Vec<StatusCause> = errs
        .iter()
        .map(|e| StatusCause {
            field: Some(e.field.clone()),
            message: Some(e.body()),
            reason: Some(e.reason().to_string()),
        })
        .collect();
    let agg = aggregate_message(errs);
    let message = if agg.is_empty() {
        format!("{} {} is invalid", group_kind(rt), go_quote(name))
    } else {
        format!("{} {} is invalid: {}", group_kind(rt), go_quote(name), agg)
    };
    failure(
        422,
        "Invalid",
        message,
        Some(StatusDetails {
            group: Some(rt.group.to_string()),
            kind: Some(rt.kind.to_string()),
            name: Some(name.to_string()),
            causes: Some(causes),
            ..Default::default()
        }),
    )
}

/// 422 Invalid for a NodePort already taken by another Service:
/// `spec.ports[i].nodePort: Invalid value: N: provided port is already allocated`.
pub fn node_port_allocated(
    rt: &ResourceType,
    name: &str,
    port_index: usize,
    node_port: i32,
) -> Status {
    let err = FieldError::invalid(
        format!("spec.ports[{port_index}].nodePort"),
        node_port,
        "provided port is already allocated",
    );
    invalid(rt, name, &vec![err])
}

/// 422 Invalid for a NodePort outside the range (`range` like `30000-32767`).
pub fn node_port_out_of_range(
    rt: &ResourceType,
    name: &str,
    port_index: usize,
    node_port: i32,
    range: &str,
) -> Status {
    let err = FieldError::invalid(
        format!("spec.ports[{port_index}].nodePort"),
        node_port,
        format!("provided port is not in the valid range. The range of valid ports is {range}"),
    );
    invalid(rt, name, &vec![err])
}

/// 422 Invalid for a requested cluster IP that is taken:
/// `spec.clusterIPs: Invalid value: []string{"127.96.0.5"}: failed to allocate IP 127.96.0.5: provided IP is already allocated`.
pub fn cluster_ip_allocated(
    rt: &ResourceType,
    name: &str,
    cluster_ips: &[String],
    ip: &str,
) -> Status {
    cluster_ip_error(
        rt,
        name,
        cluster_ips,
        ip,
        "provided IP is already allocated",
    )
}

/// 422 Invalid for a requested cluster IP outside the service CIDR (`cidr` like `127.96.0.0/16`).
pub fn cluster_ip_out_of_range(
    rt: &ResourceType,
    name: &str,
    cluster_ips: &[String],
    ip: &str,
    cidr: &str,
) -> Status {
    cluster_ip_error(
        rt,
        name,
        cluster_ips,
        ip,
        &format!(
            "the provided IP ({ip}) is not in the valid range. The range of valid IPs is {cidr}"
        ),
    )
}

/// 422 Invalid when the service CIDR has no free address left.
pub fn cluster_ip_range_full(rt: &ResourceType, name: &str, cluster_ips: &[String]) -> Status {
    let err = FieldError::invalid(
        "spec.clusterIPs",
        cluster_ips,
        "failed to allocate a serviceIP: range is full",
    );
    invalid(rt, name, &vec![err])
}

fn cluster_ip_error(
    rt: &ResourceType,
    name: &str,
    cluster_ips: &[String],
    ip: &str,
    cause: &str,
) -> Status {
    let err = FieldError::invalid(
        "spec.clusterIPs",
        cluster_ips,
        format!("failed to allocate IP {ip}: {cause}"),
    );
    invalid(rt, name, &vec![err])
}

/// 410 Expired, e.g. for a watch from a compacted revision:
/// `too old resource version: 5 (120)` (see [`too_old_resource_version`]).
pub fn gone(message: &str) -> Status {
    failure(410, "Expired", message.to_string(), None)
}

/// The 410 a watch gets when asked to start before the oldest kept revision.
pub fn too_old_resource_version(requested: u64, oldest: u64) -> Status {
    gone(&format!("too old resource version: {requested} ({oldest})"))
}

/// 401 Unauthorized, as kube-apiserver answers a request without valid credentials.
pub fn unauthorized() -> Status {
    failure(401, "Unauthorized", "Unauthorized".into(), None)
}

/// 403 Forbidden: `services "web" is forbidden: <why>` (no name: `services is forbidden: <why>`).
pub fn forbidden(rt: &ResourceType, name: &str, why: &str) -> Status {
    let message = if name.is_empty() {
        format!("{} is forbidden: {}", group_resource(rt), why)
    } else {
        format!(
            "{} {} is forbidden: {}",
            group_resource(rt),
            go_quote(name),
            why
        )
    };
    failure(403, "Forbidden", message, Some(resource_details(rt, name)))
}

/// 400 BadRequest with the given message.
pub fn bad_request(message: &str) -> Status {
    failure(400, "BadRequest", message.to_string(), None)
}

/// 405 MethodNotAllowed: `<verb> is not supported on resources of kind "services"`.
pub fn method_not_allowed(rt: &ResourceType, verb: &str) -> Status {
    failure(
        405,
        "MethodNotAllowed",
        format!(
            "{} is not supported on resources of kind {}",
            verb,
            go_quote(&group_resource(rt))
        ),
        Some(StatusDetails {
            group: Some(rt.group.to_string()),
            kind: Some(rt.plural.to_string()),
            ..Default::default()
        }),
    )
}

/// 415 UnsupportedMediaType for a body in a format the server does not read.
pub fn unsupported_media_type(content_type: &str, accepted: &[&str]) -> Status {
    let _ = content_type;
    failure(
        415,
        "UnsupportedMediaType",
        format!(
            "the body of the request was in an unknown format - accepted media types include: {}",
            accepted.join(", ")
        ),
        None,
    )
}

/// 406 NotAcceptable for an `Accept` header the server cannot satisfy.
pub fn not_acceptable(accepted: &[&str]) -> Status {
    failure(
        406,
        "NotAcceptable",
        format!(
            "only the following media types are accepted: {}",
            accepted.join(", ")
        ),
        None,
    )
}

/// 500 InternalError: `Internal error occurred: <msg>`, the cause in `details.causes`.
pub fn internal(message: &str) -> Status {
    failure(
        500,
        "InternalError",
        format!("Internal error occurred: {message}"),
        Some(StatusDetails {
            causes: Some(vec![StatusCause {
                message: Some(message.to_string()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    )
}

/// 504 Timeout for a request that ran past its deadline.
pub fn timeout(message: &str) -> Status {
    failure(504, "Timeout", message.to_string(), None)
}

/// 200 Success with no details, as a deletecollection or a delete answers.
pub fn success() -> Status {
    Status {
        code: None,
        details: None,
        message: None,
        metadata: ListMeta::default(),
        reason: None,
        status: Some("Success".to_string()),
    }
}

/// 200 Success for a deleted object, with its details as kube-apiserver gives
/// them when the object is gone at once.
pub fn deleted(rt: &ResourceType, name: &str, uid: Option<&str>) -> Status {
    Status {
        details: Some(StatusDetails {
            group: Some(rt.group.to_string()),
            kind: Some(rt.plural.to_string()),
            name: Some(name.to_string()),
            uid: uid.map(str::to_string),
            ..Default::default()
        }),
        ..success()
    }
}

/// The HTTP status code a `Status` should be sent with (200 for Success).
pub fn http_code(status: &Status) -> u16 {
    status
        .code
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (100..600).contains(c))
        .unwrap_or(if status.status.as_deref() == Some("Success") {
            200
        } else {
            500
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::FieldError;
    use serde_json::json;

    fn svc() -> &'static ResourceType {
        ResourceType::lookup("services").expect("services is in the registry")
    }

    #[test]
    fn not_found_serializes_like_kube_apiserver() {
        let s = not_found(svc(), "web");
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "services \"web\" not found", "reason": "NotFound",
                "details": {"name": "web", "group": "", "kind": "services"}, "code": 404
            })
        );
        let ing = ResourceType::lookup("ingresses").unwrap();
        assert_eq!(
            already_exists(ing, "a").message.unwrap(),
            "ingresses.networking.k8s.io \"a\" already exists"
        );
    }

    #[test]
    fn conflict_message() {
        assert_eq!(
            conflict(svc(), "web").message.unwrap(),
            "Operation cannot be fulfilled on services \"web\": the object has been modified; please apply your changes to the latest version and try again"
        );
    }

    #[test]
    fn invalid_lists_causes() {
        let one = vec![FieldError::invalid(
            "spec.ports[0].port",
            0,
            "must be between 1 and 65535, inclusive",
        )];
        let s = invalid(svc(), "web", &one);
        assert_eq!(s.code, Some(422));
        assert_eq!(
            s.message.as_deref(),
            Some(
                "Service \"web\" is invalid: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"
            )
        );
        let cause = &s.details.as_ref().unwrap().causes.as_ref().unwrap()[0];
        assert_eq!(cause.reason.as_deref(), Some("FieldValueInvalid"));
        assert_eq!(cause.field.as_deref(), Some("spec.ports[0].port"));
        assert_eq!(
            cause.message.as_deref(),
            Some("Invalid value: 0: must be between 1 and 65535, inclusive")
        );

        let two = vec![one[0].clone(), FieldError::required("spec.type", "")];
        assert_eq!(
            invalid(svc(), "web", &two).message.as_deref(),
            Some(
                "Service \"web\" is invalid: [spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive, spec.type: Required value]"
            )
        );
    }

    #[test]
    fn allocation_errors() {
        assert_eq!(
            node_port_allocated(svc(), "web", 0, 30080).message.unwrap(),
            "Service \"web\" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
        );
        assert_eq!(
            node_port_out_of_range(svc(), "web", 1, 80, "30000-32767")
                .message
                .unwrap(),
            "Service \"web\" is invalid: spec.ports[1].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767"
        );
        assert_eq!(
            cluster_ip_allocated(svc(), "web", &["127.96.0.5".to_string()], "127.96.0.5")
                .message
                .unwrap(),
            "Service \"web\" is invalid: spec.clusterIPs: Invalid value: []string{\"127.96.0.5\"}: failed to allocate IP 127.96.0.5: provided IP is already allocated"
        );
    }

    #[test]
    fn other_statuses() {
        assert_eq!(gone("x").code, Some(410));
        assert_eq!(
            too_old_resource_version(5, 120).message.unwrap(),
            "too old resource version: 5 (120)"
        );
        assert_eq!(too_old_resource_version(5, 120).reason.unwrap(), "Expired");
        let u = serde_json::to_value(unauthorized()).unwrap();
        assert_eq!(
            u,
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401})
        );
        assert_eq!(
            internal("boom").message.unwrap(),
            "Internal error occurred: boom"
        );
        assert_eq!(
            method_not_allowed(svc(), "deletecollection").code,
            Some(405)
        );
        assert_eq!(
            unsupported_media_type("text/plain", &["application/json"]).code,
            Some(415)
        );
        assert_eq!(
            forbidden(svc(), "", "no").message.unwrap(),
            "services is forbidden: no"
        );
        let s = serde_json::to_value(success()).unwrap();
        assert_eq!(
            s,
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success"})
        );
        assert_eq!(http_code(&success()), 200);
        assert_eq!(http_code(&bad_request("x")), 400);
    }
}
