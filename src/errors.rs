//! Errors every client can act on. Every non-OK status carries a
//! `google.rpc.ErrorInfo` (domain `sessionbridge.v1`, an UPPER_SNAKE reason
//! per cause), a `BadRequest` naming the fields of an invalid argument, and
//! a `RetryInfo` where retrying helps (shedding, store outage). Store error
//! text goes to the log, never to the caller.
//!
//! [`Edge`] wraps the identity API at the HTTP level: it gives every call a
//! request id (the `x-request-id` response header, also in the log line),
//! and completes the statuses tonic makes itself (a message over the size
//! limit, a timeout) with the same details.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::body::Body;
use tonic::server::NamedService;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The ErrorInfo domain.
pub const DOMAIN: &str = "sessionbridge.v1";
/// The response header (and request extension) holding the request id.
pub const REQUEST_ID: &str = "x-request-id";

/// The reasons a call fails, as `ErrorInfo.reason`.
pub mod reason {
    pub const INVALID_FIELD: &str = "INVALID_FIELD";
    pub const HOST_NOT_ALLOWED: &str = "HOST_NOT_ALLOWED";
    pub const DESTINATION_NOT_ALLOWED: &str = "DESTINATION_NOT_ALLOWED";
    pub const MESSAGE_TOO_LARGE: &str = "MESSAGE_TOO_LARGE";
    pub const NOT_FOUND: &str = "NOT_FOUND";
    pub const STORE_UNAVAILABLE: &str = "STORE_UNAVAILABLE";
    pub const OVERLOADED: &str = "OVERLOADED";
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    pub const DEADLINE_EXCEEDED: &str = "DEADLINE_EXCEEDED";
    pub const INTERNAL: &str = "INTERNAL";
}

/// A status with an ErrorInfo and whatever other details are given.
pub fn status(
    code: Code,
    why: &str,
    message: impl Into<String>,
    mut details: ErrorDetails,
) -> Status {
    details.set_error_info(why, DOMAIN, std::collections::HashMap::new());
    Status::with_error_details(code, message, details)
}

/// INVALID_ARGUMENT with a BadRequest naming each field.
pub fn invalid_argument(violations: Vec<(String, String)>) -> Status {
    let summary: Vec<String> = violations
        .iter()
        .map(|(f, d)| format!("{f}: {d}"))
        .collect();
    let why = if violations
        .iter()
        .any(|(f, d)| f == "context.host" && d.contains("allowed_domains"))
    {
        reason::HOST_NOT_ALLOWED
    } else if violations
        .iter()
        .any(|(_, d)| d.contains("handoff_destinations"))
    {
        reason::DESTINATION_NOT_ALLOWED
    } else {
        reason::INVALID_FIELD
    };
    let mut details = ErrorDetails::new();
    for (field, description) in violations {
        details.add_bad_request_violation(field, description);
    }
    status(
        Code::InvalidArgument,
        why,
        format!("invalid request: {}", summary.join("; ")),
        details,
    )
}

/// UNAVAILABLE for a store that does not answer; the cause is logged.
pub fn store_unavailable(cause: &dyn std::fmt::Display) -> Status {
    tracing::error!(error = %cause, "store call failed");
    let mut details = ErrorDetails::new();
    details.set_retry_info(Some(Duration::from_secs(1)));
    status(
        Code::Unavailable,
        reason::STORE_UNAVAILABLE,
        "the identity store does not answer: retry after a second, or serve the page without identity",
        details,
    )
}

/// RESOURCE_EXHAUSTED when shedding load.
pub fn overloaded() -> Status {
    let mut details = ErrorDetails::new();
    details.set_retry_info(Some(Duration::from_millis(100)));
    status(
        Code::ResourceExhausted,
        reason::OVERLOADED,
        "too many calls in flight (concurrency_limit): retry with backoff, or serve the page without identity",
        details,
    )
}

/// UNAUTHENTICATED for a missing or wrong bearer token.
pub fn unauthenticated(message: &str) -> Status {
    status(
        Code::Unauthenticated,
        reason::UNAUTHENTICATED,
        message,
        ErrorDetails::new(),
    )
}

/// A status tonic made itself, completed with the details every error
/// carries; one over the message limit becomes INVALID_ARGUMENT.
fn complete(s: &Status) -> Status {
    let msg = s.message();
    match s.code() {
        Code::OutOfRange | Code::ResourceExhausted if msg.contains("too large") => {
            let mut details = ErrorDetails::new();
            details.add_bad_request_violation(
                "(request)",
                "the message is larger than max_message_bytes",
            );
            status(
                Code::InvalidArgument,
                reason::MESSAGE_TOO_LARGE,
                format!("the request message is too large: {msg}"),
                details,
            )
        }
        Code::Cancelled | Code::DeadlineExceeded => status(
            s.code(),
            reason::DEADLINE_EXCEEDED,
            msg,
            ErrorDetails::new(),
        ),
        code => status(code, reason::INTERNAL, msg, ErrorDetails::new()),
    }
}

/// The request id of a call: the caller's `x-request-id` when it is a
/// short token, else a new random one.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

impl RequestId {
    fn of(req: &http::Request<Body>) -> Self {
        let given = req
            .headers()
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| {
                (1..=64).contains(&v.len())
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        RequestId(match given {
            Some(v) => v.to_string(),
            None => format!("{:016x}", rand::random::<u64>()),
        })
    }
}

/// Wraps the identity API: request ids, and details on tonic's own errors.
#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
    /// The call's deadline (`request_timeout_ms`): past it the call ends
    /// with DEADLINE_EXCEEDED, its ErrorInfo and request id.
    timeout: Option<Duration>,
}

impl<S> Edge<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            timeout: None,
        }
    }

    /// Ends calls that run past `timeout` with a complete status.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl<S: NamedService> NamedService for Edge<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<Body>> for Edge<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let id = RequestId::of(&req);
        req.extensions_mut().insert(id.clone());
        let mut inner = self.inner.clone();
        std::mem::swap(&mut inner, &mut self.inner);
        let timeout = self.timeout;
        Box::pin(async move {
            let call = inner.call(req);
            let response = match timeout {
                Some(t) => match tokio::time::timeout(t, call).await {
                    Ok(Ok(r)) => r.map(Body::new),
                    Err(_) => status(
                        Code::DeadlineExceeded,
                        reason::DEADLINE_EXCEEDED,
                        "the call took longer than request_timeout_ms: serve the page without identity",
                        ErrorDetails::new(),
                    )
                    .into_http(),
                },
                None => {
                    let Ok(r) = call.await;
                    r.map(Body::new)
                }
            };
            let mut response = response;
            let bare_error = Status::from_header_map(response.headers())
                .filter(|s| s.code() != Code::Ok && s.details().is_empty());
            if let Some(s) = bare_error {
                response = complete(&s).into_http();
            }
            if let Ok(v) = http::HeaderValue::from_str(&id.0) {
                response.headers_mut().insert(REQUEST_ID, v);
            }
            Ok(response)
        })
    }
}
