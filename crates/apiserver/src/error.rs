//! API errors: every failure a handler meets becomes a Kubernetes `Status`
//! response; handlers never fail.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use switchboard_api::ResourceType;
use switchboard_api::status;

/// The body formats the apiserver reads.
pub const ACCEPTED_MEDIA_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/merge-patch+json",
    "application/json-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// A Kubernetes `Status` on its way to the client.
#[derive(Debug, Clone)]
pub struct ApiError(pub Box<Status>);

/// The result of an API operation.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// The HTTP status code.
    pub fn code(&self) -> u16 {
        self.0
            .code
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(500)
    }

    /// 404 for one object.
    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        Self(Box::new(status::not_found(rt, name)))
    }

    /// 404 for a path that names nothing served.
    pub fn not_found_path(message: &str) -> Self {
        let mut status = status::not_found_path();
        status.message = Some(message.to_string());
        Self(Box::new(status))
    }

    /// 409 AlreadyExists.
    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        Self(Box::new(status::already_exists(rt, name)))
    }

    /// 409 Conflict on a stale resourceVersion.
    pub fn conflict(rt: &ResourceType, name: &str) -> Self {
        Self(Box::new(status::conflict(rt, name)))
    }

    /// 409 Conflict with another cause than a stale resourceVersion.
    pub fn conflict_with(rt: &ResourceType, name: &str, cause: &str) -> Self {
        Self(Box::new(status::conflict_with(rt, name, cause)))
    }

    /// 422 Invalid with field causes.
    pub fn invalid(
        rt: &ResourceType,
        name: &str,
        errors: &switchboard_api::validation::ErrorList,
    ) -> Self {
        Self(Box::new(status::invalid(rt, name, errors)))
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self(Box::new(status::bad_request(&message.into())))
    }

    /// 403 Forbidden.
    pub fn forbidden(rt: &ResourceType, name: &str, reason: impl Into<String>) -> Self {
        Self(Box::new(status::forbidden(rt, name, &reason.into())))
    }

    /// 405 MethodNotAllowed: `verb` is not supported on `rt`.
    pub fn method_not_allowed(rt: &ResourceType, verb: &str) -> Self {
        Self(Box::new(status::method_not_allowed(rt, verb)))
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self(Box::new(status::unsupported_media_type(
            content_type,
            ACCEPTED_MEDIA_TYPES,
        )))
    }

    /// 410 Gone (Expired).
    pub fn gone(message: impl Into<String>) -> Self {
        Self(Box::new(status::gone(&message.into())))
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> Self {
        Self(Box::new(status::unauthorized()))
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        Self(Box::new(status::internal(&message.into())))
    }

    /// 504 Timeout (e.g. a resourceVersion the cache never reached).
    pub fn timeout(message: impl Into<String>) -> Self {
        Self(Box::new(status::timeout(&message.into())))
    }

    /// The Status serialized.
    pub fn to_json(&self) -> Vec<u8> {
        // k8s-openapi types always serialize.
        serde_json::to_vec(&self.0).expect("a Status serializes")
    }
}

impl From<switchboard_store::Error> for ApiError {
    fn from(err: switchboard_store::Error) -> Self {
        ApiError::internal(err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            code,
            [(http::header::CONTENT_TYPE, "application/json")],
            self.to_json(),
        )
            .into_response()
    }
}
