//! Request and answer bodies in zeroizing memory.

use std::io;

use bytes::Buf;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body as _, Incoming};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::client::exchange::from_hyper;
use crate::error::Error;

/// Largest answer body accepted (metrics and long lists included).
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// A request body in zeroizing memory.
pub(super) type RequestBody = Full<Payload>;

/// Bytes that are wiped when hyper is done with them.
pub(super) struct Payload {
    bytes: Zeroizing<Vec<u8>>,
    pos: usize,
}

impl Buf for Payload {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn chunk(&self) -> &[u8] {
        &self.bytes[self.pos..]
    }

    fn advance(&mut self, cnt: usize) {
        assert!(cnt <= self.remaining(), "advance past the end of the body");
        self.pos += cnt;
    }
}

pub(super) fn build_request(
    method: Method,
    path: &str,
    body: Option<Zeroizing<Vec<u8>>>,
    host: &str,
) -> Result<Request<RequestBody>, Error> {
    let uri: Uri = path
        .parse()
        .map_err(|_| Error::Protocol(format!("invalid request path {path:?}")))?;
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header(HOST, host);
    let body = match body {
        Some(bytes) => {
            builder = builder.header(CONTENT_LENGTH, bytes.len());
            if !bytes.is_empty() {
                builder = builder.header(CONTENT_TYPE, "application/json");
            }
            bytes
        }
        None => Zeroizing::new(Vec::new()),
    };
    builder
        .body(Full::new(Payload {
            bytes: body,
            pos: 0,
        }))
        .map_err(|e| Error::Protocol(format!("cannot build the request: {e}")))
}

/// Collects an answer body into zeroizing memory, growing it without leaving stale copies.
pub(super) async fn read_body(mut body: Incoming) -> Result<Zeroizing<Vec<u8>>, Error> {
    let hint = usize::try_from(body.size_hint().lower()).unwrap_or(MAX_ANSWER);
    let mut out = Zeroizing::new(Vec::with_capacity(hint.min(MAX_ANSWER)));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(from_hyper)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let needed = out.len() + data.len();
        if needed > MAX_ANSWER {
            return Err(Error::Protocol(format!(
                "answer body exceeds {MAX_ANSWER} bytes"
            )));
        }
        if needed > out.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(
                needed.max(out.capacity() * 2).min(MAX_ANSWER),
            ));
            bigger.extend_from_slice(&out);
            out = bigger; // the old buffer is wiped as it drops
        }
        out.extend_from_slice(&data);
    }
    Ok(out)
}

/// Serializes a request body into zeroizing memory of exactly the right size.
pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<Zeroizing<Vec<u8>>, Error> {
    let encode_err =
        |e: serde_json::Error| Error::Protocol(format!("cannot encode the request: {e}"));
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, value).map_err(encode_err)?;
    let mut out = Zeroizing::new(Vec::with_capacity(counter.0));
    serde_json::to_writer(&mut *out, value).map_err(encode_err)?;
    Ok(out)
}

/// A writer that only counts.
struct Counter(usize);

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::secret::Secret;
    use crate::wire::Binding;
    use crate::wire::{PutToken, RewrapStart, UnsealToken};

    #[test]
    fn request_body_is_exact_size_json() {
        let binding = Binding {
            subject: "s".into(),
            bank: "b".into(),
            account: "a".into(),
            scope: "accounts".into(),
        };
        let put = PutToken::new("tok\"en", binding.clone()).expected_revision(0);
        let body = to_json(&put).unwrap();
        assert_eq!(body.len(), body.capacity());
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["secret"], "tok\"en");
        assert_eq!(value["expected_revision"], 0);
        assert!(value.get("secret_b64").is_none());
        // Bytes that are not UTF-8 travel as base64, and read back as the same bytes.
        let bytes = PutToken::new(Secret::new(vec![0xff, 0x00]), binding);
        let body = to_json(&bytes).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (value["secret_b64"].as_str(), value.get("secret")),
            (Some("/wA="), None)
        );
        let back: PutToken = serde_json::from_slice(&body).unwrap();
        assert_eq!(back.secret.expose_secret(), [0xff, 0x00]);
    }

    #[test]
    fn a_put_with_both_secret_forms_or_neither_is_refused_by_its_deserializer() {
        let binding = r#""binding":{"subject":"s","bank":"b","account":"a","scope":"x"}"#;
        let both = format!(r#"{{"secret":"a","secret_b64":"YQ==",{binding}}}"#);
        let err = serde_json::from_str::<PutToken>(&both).unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");
        let neither = format!("{{{binding}}}");
        let err = serde_json::from_str::<PutToken>(&neither).unwrap_err();
        assert!(err.to_string().contains("is required"), "{err}");
        let unknown = format!(r#"{{"secret":"a","extra":1,{binding}}}"#);
        assert!(serde_json::from_str::<PutToken>(&unknown).is_err());
    }

    #[test]
    fn unseal_without_expectation_is_empty_object() {
        let body = to_json(&UnsealToken { expect: None }).unwrap();
        assert_eq!(&body[..], b"{}");
    }

    #[test]
    fn rewrap_start_sends_only_what_is_set() {
        let all = to_json(&RewrapStart::default()).unwrap();
        assert_eq!(&all[..], b"{}");
        let one = to_json(&RewrapStart {
            tenant: Some("acme".into()),
            rate: Some(500),
        })
        .unwrap();
        assert_eq!(&one[..], br#"{"tenant":"acme","rate":500}"#);
    }

    #[test]
    fn payload_advances() {
        let mut p = Payload {
            bytes: Zeroizing::new(b"abcdef".to_vec()),
            pos: 0,
        };
        p.advance(2);
        assert_eq!(p.chunk(), b"cdef");
        assert_eq!(p.remaining(), 4);
    }
}
