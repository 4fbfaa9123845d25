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

use crate::error::{Error, retry_seconds};
use crate::store::StoreError;

/// Largest request body accepted.
pub(super) const MAX_BODY: usize = 64 * 1024;

/// A body the server sends: whole (JSON, text) or streamed (`GET /v1/sys/backup`). A streamed
/// body that fails sends an error frame, on which hyper aborts the connection, so the client
/// sees an incomplete answer rather than a complete short one.
pub(super) type Body = BoxBody<Bytes, std::io::Error>;

/// Longest time allowed to receive a request body.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads the whole body, refusing more than [`MAX_BODY`] bytes or a body that takes longer than
/// [`BODY_TIMEOUT`]. This copy is wiped on drop; hyper's own read buffers are not ours to wipe
/// (`docs/threat-model.md`).
pub(super) async fn read_body(body: Incoming) -> Result<Zeroizing<Vec<u8>>, Error> {
    let collected = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY).collect())
        .await
        .map_err(|_| Error::Timeout)?;
    match collected {
        Ok(collected) => Ok(Zeroizing::new(collected.to_bytes().to_vec())),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Error::TooLarge(MAX_BODY)),
        Err(_) => Err(Error::invalid("could not read the request body")),
    }
}

/// Parses a JSON body; an empty body is `T::default()` where `empty_ok`.
pub(super) fn parse<T: DeserializeOwned + Default>(
    body: &[u8],
    empty_ok: bool,
) -> Result<T, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return if empty_ok {
            Ok(T::default())
        } else {
            Err(Error::invalid("a JSON body is required"))
        };
    }
    parse_required(body)
}

/// Parses a JSON body that must be present. Unknown fields and trailing bytes are refused.
/// Error messages name the position and, for field errors, the field, never a value.
pub(super) fn parse_required<T: DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    // Every body is an object: serde would also read a struct from an array of its fields.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Error::invalid("the JSON body must be an object"));
    }
    serde_json::from_slice(body).map_err(|e| {
        let text = e.to_string();
        // Field names, and the wire types' own rules (a secret's two forms), never a value.
        let named = [
            "unknown field",
            "missing field",
            "give one of",
            "secret (UTF-8",
            "plaintext (UTF-8",
        ];
        let detail = if named.iter().any(|p| text.starts_with(p)) {
            text.split(" at line").next().unwrap_or("").to_owned()
        } else {
            format!("{:?} error", e.classify()).to_lowercase()
        };
        Error::invalid(format!(
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
        Err(_) => whole(
            StatusCode::INTERNAL_SERVER_ERROR,
            Bytes::from_static(
                br#"{"error":{"code":"internal","message":"could not encode the answer"}}"#,
            ),
            "application/json",
        ),
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

/// What an error answer says: its code, and a message for the caller. Internal details and
/// the OS's words go to the log, not to the caller.
pub(super) fn detail(e: &Error) -> ErrorDetail {
    let message = match e {
        Error::Random | Error::Store(StoreError::Backend(_) | StoreError::Corrupt(_)) => {
            tracing::error!(error = %e, "internal error");
            "internal error; see the vaultd log".to_owned()
        }
        Error::Store(StoreError::Io(_)) => {
            tracing::error!(error = %e, "storage unavailable");
            "storage unavailable (an I/O error: a full disk, a read-only or failing device); \
             retry later, and see the vaultd log"
                .to_owned()
        }
        _ => e.to_string(),
    };
    debug_assert!(
        vault_client::API_CODES.contains(&e.code()),
        "{} is not in vault_client::API_CODES",
        e.code()
    );
    ErrorDetail {
        code: e.code().to_owned(),
        message,
    }
}

/// An error answer: its status, its [`detail`], and the headers it calls for (`Allow` on 405,
/// `Retry-After` in whole seconds on 429).
pub(super) fn failure(e: &Error) -> Response<Body> {
    let body = ErrorBody { error: detail(e) };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut response = whole(e.status(), Bytes::from(bytes), "application/json");
    let headers = response.headers_mut();
    match e {
        Error::MethodNotAllowed(allowed) => {
            headers.insert(header::ALLOW, HeaderValue::from_static(allowed));
        }
        Error::RateLimited { wait, .. } | Error::Leased { wait } => {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_seconds(*wait)));
        }
        _ => {}
    }
    response
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Limit;

    #[test]
    fn an_error_answer_carries_the_headers_its_status_calls_for() {
        let not_allowed = failure(&Error::MethodNotAllowed("GET, PUT, DELETE"));
        assert_eq!(not_allowed.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(not_allowed.headers()[header::ALLOW], "GET, PUT, DELETE");
        let limited = failure(&Error::RateLimited {
            limit: Limit::Refused,
            wait: std::time::Duration::from_millis(2001),
        });
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers()[header::RETRY_AFTER], "3");
        let internal = detail(&Error::Store(StoreError::Corrupt("page 7 of sled".into())));
        assert_eq!(internal.code, "internal");
        assert!(!internal.message.contains("page 7"), "{}", internal.message);
    }

    #[test]
    fn a_body_is_an_object_and_its_errors_name_fields_and_rules_never_values() {
        use vault_client::wire::{PutToken, RewrapStart};
        let err = parse_required::<RewrapStart>(b"[null, null]").expect_err("an array");
        assert!(err.to_string().contains("must be an object"), "{err}");
        let both = br#"{"secret":"hunter2","secret_b64":"aHVudGVyMg==","binding":{"subject":"s","bank":"b","account":"a","scope":"x"}}"#;
        let err = parse_required::<PutToken>(both).expect_err("both forms");
        let text = err.to_string();
        assert!(text.contains("give one of secret and secret_b64"), "{text}");
        assert!(
            !text.contains("hunter2") && !text.contains("aHVudGVyMg"),
            "{text}"
        );
        let odd = br#"{"rate":"hunter2"}"#;
        let err = parse_required::<RewrapStart>(odd).expect_err("a string rate");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
