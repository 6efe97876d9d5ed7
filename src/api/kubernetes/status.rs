//! [`Status`]: every failure of the Kubernetes surface, in the API server's
//! own error object (`kind: Status`, `status: Failure`, `reason`, `code`),
//! as an HTTP answer and as the object of an in-stream `ERROR` event.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::cache::{ReadError, Revision};
use crate::error::ApiError;

/// A Kubernetes `Status` of failure.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// HTTP status code (also the object's `code`).
    pub code: u16,
    /// The machine-readable reason (`NotFound`, `Expired`, ...).
    pub reason: &'static str,
    /// A sentence for people.
    pub message: String,
    /// `details`, when the reason has some.
    pub details: Option<Value>,
    /// `Retry-After` seconds (also `details.retryAfterSeconds`).
    pub retry_after: Option<u64>,
}

impl Status {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self { code, reason, message: message.into(), details: None, retry_after: None }
    }

    /// 400 `BadRequest`: a malformed parameter.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 422 `Invalid`: list options that break the API server's validation
    /// rules; `field` names the option, `kind` is the rule broken
    /// (`Forbidden`, `Unsupported value`, `Invalid value`).
    pub fn invalid(field: &str, kind: &str, detail: &str) -> Self {
        let cause_reason = match kind {
            "Forbidden" => "FieldValueForbidden",
            "Unsupported value" => "FieldValueNotSupported",
            _ => "FieldValueInvalid",
        };
        let mut status = Self::new(
            422,
            "Invalid",
            format!("ListOptions.meta.k8s.io \"\" is invalid: {field}: {kind}: {detail}"),
        );
        status.details = Some(json!({
            "group": "meta.k8s.io",
            "kind": "ListOptions",
            "causes": [{"reason": cause_reason, "message": format!("{kind}: {detail}"), "field": field}],
        }));
        status
    }

    /// 404 `NotFound` for the object `name` of `resource` in `group`.
    pub fn not_found(resource: &str, group: &str, name: &str) -> Self {
        let mut status = Self::new(404, "NotFound", format!("{resource}.{group} \"{name}\" not found"));
        status.details = Some(json!({"name": name, "group": group, "kind": resource}));
        status
    }

    /// 404 `NotFound` for a path the surface does not serve.
    pub fn no_route(path: &str) -> Self {
        Self::new(404, "NotFound", format!("the server could not find the requested resource ({path})"))
    }

    /// 410 `Expired`: the state or history asked for is gone.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// The in-stream 410 of a watch resumed from a revision nobody can
    /// serve any more, in the API server's words.
    pub fn too_old(requested: Revision, oldest: Revision) -> Self {
        Self::expired(format!("too old resource version: {requested} ({oldest})"))
    }

    /// 504 `Timeout` with the cause `ResourceVersionTooLarge`: a revision
    /// beyond etcd's.
    pub fn too_large(requested: Revision, current: Revision) -> Self {
        let mut status =
            Self::new(504, "Timeout", format!("Too large resource version: {requested}, current: {current}"));
        status.details = Some(json!({
            "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            "retryAfterSeconds": 1,
        }));
        status.retry_after = Some(1);
        status
    }

    /// 405 `MethodNotAllowed`: the surface is read-only.
    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource ({method}): the gateway serves get, list and watch"
            ),
        )
    }

    /// 403 `Forbidden` for `resource.group`.
    pub fn forbidden(resource: &str, group: &str, why: &str) -> Self {
        let mut status = Self::new(403, "Forbidden", format!("{resource}.{group} is forbidden: {why}"));
        status.details = Some(json!({"group": group, "kind": resource}));
        status
    }

    /// The object, as sent in a body or an `ERROR` event.
    pub fn to_json(&self) -> Value {
        let mut object = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            object["details"] = details.clone();
        }
        object
    }
}

impl From<ReadError> for Status {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::FutureRevision { revision, etcd_revision } => Self::too_large(revision, etcd_revision),
            ReadError::Compacted { .. } => {
                Self::expired("The resourceVersion for the provided list is too old.")
            }
            ReadError::Timeout { revision, head, .. } => Self::too_large(revision, head),
            // Before the first load, as the API server answers before its
            // watch cache is initialised: try again in a second.
            ReadError::NotReady => {
                let mut status =
                    Self::new(429, "TooManyRequests", "the resource's objects are still loading from etcd");
                status.details = Some(json!({"retryAfterSeconds": 1}));
                status.retry_after = Some(1);
                status
            }
            other => Self::from(ApiError::from(other)),
        }
    }
}

impl From<ApiError> for Status {
    /// Shared plumbing's failures (authentication, readiness, etcd) keep
    /// their HTTP status and message, with the reason the API server uses
    /// for that status.
    fn from(e: ApiError) -> Self {
        let problem = e.problem();
        let reason = match problem.status {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            405 => "MethodNotAllowed",
            410 => "Expired",
            413 => "RequestEntityTooLarge",
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "InternalError",
        };
        let mut status = Self::new(problem.status, reason, problem.detail);
        if matches!(problem.status, 429 | 503) {
            status.retry_after = Some(crate::error::ETCD_RETRY_AFTER.as_secs());
            status.details = Some(json!({"retryAfterSeconds": crate::error::ETCD_RETRY_AFTER.as_secs()}));
        }
        status
    }
}

impl IntoResponse for Status {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.to_json()).unwrap_or_default();
        let mut response = (code, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_have_the_api_servers_shape() {
        assert_eq!(
            Status::not_found("widgets", "example.com", "a").to_json(),
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                   "message":"widgets.example.com \"a\" not found","reason":"NotFound",
                   "details":{"name":"a","group":"example.com","kind":"widgets"},"code":404})
        );
        assert_eq!(
            Status::too_old(5, 9).to_json(),
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                   "message":"too old resource version: 5 (9)","reason":"Expired","code":410})
        );
        assert_eq!(
            Status::too_large(99, 10).to_json(),
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                   "message":"Too large resource version: 99, current: 10","reason":"Timeout",
                   "details":{"causes":[{"reason":"ResourceVersionTooLarge","message":"Too large resource version"}],
                              "retryAfterSeconds":1},"code":504})
        );
        let invalid = Status::invalid("resourceVersionMatch", "Forbidden", "x");
        assert_eq!(
            invalid.message,
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: x"
        );
        assert_eq!(Status::from(ApiError::Unauthorized { presented: true }).reason, "Unauthorized");
    }
}
