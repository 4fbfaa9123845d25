//! Request bodies in; JSON, text, errors and streams out.

use bytes::Bytes;
pub(super) use http::StatusCode;
use http::{HeaderValue, Response, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Serialize;
use serde::de::DeserializeOwned;
use vault_client::wire::{ErrorBody, ErrorDetail};
use zeroize::Zeroizing;

use crate::error::Error;
use crate::store::StoreError;

/// Largest request body accepted.
pub(super) const MAX_BODY: usize = 64 * 1024;

/// A body the server sends: whole (JSON, text) or streamed (`GET /v1/sys/backup`). A streamed
/// body that fails sends an error frame, on which hyper aborts the connection, so the client
/// sees an incomplete answer rather than a complete short one.
pub(super) type Body = BoxBody<Bytes, std::io::Error>;

/// An answer that is not a success: status, code and message.
#[derive(Debug, Clone)]
pub(super) struct Failure {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) message: String,
}

impl Failure {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        debug_assert!(
            vault_client::API_CODES.contains(&code),
            "{code} is not in vault_client::API_CODES"
        );
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(super) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", message)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let internal = matches!(
            e,
            Error::Random | Error::Store(StoreError::Backend(_) | StoreError::Corrupt(_))
        );
        // Internal details and the OS's words go to the log, not to the caller.
        let message = if internal {
            tracing::error!(error = %e, "internal error");
            "internal error; see the vaultd log".to_owned()
        } else if let Error::Store(StoreError::Io(_)) = e {
            tracing::error!(error = %e, "storage unavailable");
            "storage unavailable (an I/O error: a full disk, a read-only or failing device); \
             retry later, and see the vaultd log"
                .to_owned()
        } else {
            e.to_string()
        };
        Self::new(e.status(), e.code(), message)
    }
}

/// Longest time allowed to receive a request body.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads the whole body, refusing more than [`MAX_BODY`] bytes or a body that takes longer than
/// [`BODY_TIMEOUT`]. This copy is wiped on drop; hyper's own read buffers are not ours to wipe
/// (`docs/threat-model.md`).
pub(super) async fn read_body(body: Incoming) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let collected = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY).collect())
        .await
        .map_err(|_| {
            Failure::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "the request body took too long",
            )
        })?;
    match collected {
        Ok(collected) => Ok(Zeroizing::new(collected.to_bytes().to_vec())),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("request body is over {MAX_BODY} bytes"),
        )),
        Err(_) => Err(Failure::invalid("could not read the request body")),
    }
}

/// Parses a JSON body; an empty body is `T::default()` where `empty_ok`.
pub(super) fn parse<T: DeserializeOwned + Default>(
    body: &[u8],
    empty_ok: bool,
) -> Result<T, Failure> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return if empty_ok {
            Ok(T::default())
        } else {
            Err(Failure::invalid("a JSON body is required"))
        };
    }
    parse_required(body)
}

/// Parses a JSON body that must be present. Unknown fields and trailing bytes are refused.
/// Error messages name the position and, for field errors, the field, never a value.
pub(super) fn parse_required<T: DeserializeOwned>(body: &[u8]) -> Result<T, Failure> {
    serde_json::from_slice(body).map_err(|e| {
        let text = e.to_string();
        let detail = if text.starts_with("unknown field") || text.starts_with("missing field") {
            text.split(" at line").next().unwrap_or("").to_owned()
        } else {
            format!("{:?} error", e.classify()).to_lowercase()
        };
        Failure::invalid(format!(
            "malformed JSON body (line {}, column {}): {detail}",
            e.line(),
            e.column()
        ))
    })
}

/// A JSON answer.
pub(super) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(bytes) => whole(status, Bytes::from(bytes), "application/json"),
        Err(_) => failure(&Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "could not encode the answer",
        )),
    }
}

/// A plain-text answer.
pub(super) fn text(status: StatusCode, body: String, content_type: &'static str) -> Response<Body> {
    whole(status, Bytes::from(body), content_type)
}

/// A streamed answer of `content_type`; nothing of it is buffered here.
pub(super) fn stream(
    status: StatusCode,
    body: impl hyper::body::Body<Data = Bytes, Error = std::io::Error> + Send + Sync + 'static,
    content_type: &'static str,
) -> Response<Body> {
    with_type(status, BoxBody::new(body), content_type)
}

/// An error answer.
pub(super) fn failure(f: &Failure) -> Response<Body> {
    let body = ErrorBody {
        error: ErrorDetail {
            code: f.code.to_owned(),
            message: f.message.clone(),
        },
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    whole(f.status, Bytes::from(bytes), "application/json")
}

/// `429 rate_limited` with `Retry-After` (whole seconds, at least 1): the caller spent its budget
/// of refused requests (`server/callers.rs`).
pub(super) fn rate_limited(wait: std::time::Duration, why: Limit) -> Response<Body> {
    let seconds = wait
        .as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0))
        .max(1);
    let why = match why {
        Limit::Refused => "too many refused requests (denied, malformed or for no endpoint)",
        Limit::Quota => "a request quota of its policy rule is spent",
    };
    let mut response = failure(&Failure::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("{why} for this caller; retry in {seconds} s"),
    ));
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// Which limit a `429 rate_limited` answers for (`server/callers.rs`).
#[derive(Debug, Clone, Copy)]
pub(super) enum Limit {
    /// The budget of refused requests.
    Refused,
    /// A request quota.
    Quota,
}

fn whole(status: StatusCode, body: Bytes, content_type: &'static str) -> Response<Body> {
    let body = Full::new(body).map_err(|never| match never {}).boxed();
    with_type(status, body, content_type)
}

fn with_type(status: StatusCode, body: Body, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
