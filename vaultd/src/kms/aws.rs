//! The `aws` KMS provider: AWS KMS (or any KMS-compatible endpoint) through aws-sdk-kms.
//!
//! - init: `GenerateDataKey` (`AES_256`) under the configured key, with the master key's
//!   encryption context; KMS returns the plaintext (our master key) and its wrapped form.
//! - unseal: `Decrypt` with the same context and `KeyId` = the key recorded with the wrapped
//!   master key; the key KMS reports must be that key.
//! - KMS key migration: `ReEncrypt` to another key; the master key never leaves KMS.
//!
//! **Key pinning.** A master key is unwrapped only if the key that wraps it is the configured
//! key (or a key this provider rewrapped it to since start). A data directory swapped for one
//! wrapped under a key somebody else controls, or a config that names another key, is refused
//! with [`KmsError::WrongKeyId`] before any KMS call. Keys are therefore named by key id or key
//! ARN, never by an alias: an alias can be repointed to another key ([`KeyId`]).
//!
//! **Transport.** Every request goes over `https://`, or plain `http://` to a loopback address
//! only (a local test server): KMS answers carry the plaintext master key. An interceptor checks
//! the URL of each request, so an endpoint from the environment or an AWS profile
//! (`AWS_ENDPOINT_URL_KMS`, `endpoint_url`) cannot bypass the check made on the config file.
//!
//! **Retries.** Each call uses the SDK's standard retry strategy (3 attempts, exponential backoff
//! with jitter, for throttling, 5xx answers, timeouts and connection failures). What still fails
//! is mapped to a [`KmsError`]; the daemon's auto-unseal retries transient ones
//! ([`KmsError::is_transient`]) on its own, longer schedule.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::bail;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kms::Client;
use aws_sdk_kms::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_kms::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_kms::error::{BoxError, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use zeroize::Zeroizing;

use super::{BoxFuture, EncryptionContext, KmsError, KmsProvider, WrappedMasterKey};
use crate::secret::{KeyBytes, MasterKey};

/// Attempts per KMS call (the SDK's standard retry strategy).
const MAX_ATTEMPTS: u32 = 3;
/// Time allowed to open a connection to the KMS endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time allowed for one attempt of a call.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for a call, retries included. Bounds how long unseal holds the lifecycle lock.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A KMS key named by key id (`1234abcd-…`, `mrk-…`) or key ARN (`arn:aws:kms:…:key/…`).
/// Aliases are refused: anyone allowed to update an alias could point it at another key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyId(String);

impl KeyId {
    /// The id as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for KeyId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 2048 {
            return Err("a KMS key id must be 1-2048 characters".into());
        }
        if s.bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(format!("KMS key id {s:?} contains whitespace"));
        }
        if s.starts_with("alias/") || s.contains(":alias/") {
            return Err(format!(
                "KMS key {s:?} is an alias; name the key by key id or key ARN \
                 (an alias can be repointed to another key, and vaultd pins the key)"
            ));
        }
        if s.starts_with("arn:") && !s.contains(":key/") {
            return Err(format!("{s:?} is not a KMS key ARN (arn:…:kms:…:key/…)"));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// AWS KMS through aws-sdk-kms; new master keys are wrapped under `key_id`.
pub struct AwsKms {
    client: Client,
    key_id: KeyId,
    /// Keys whose wrapped master keys this provider unwraps: the configured key, and every key
    /// it rewrapped a master key to since start (KMS key migration).
    accepted: Mutex<Vec<String>>,
    calls: AtomicU64,
}

impl AwsKms {
    /// Loads the standard AWS credential chain and region (environment, profile, web identity,
    /// container and instance metadata), with `region` and `endpoint_url` overriding them, and
    /// builds the provider. Credentials are resolved at the first call, not here.
    pub async fn connect(
        key_id: KeyId,
        region: Option<&str>,
        endpoint_url: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .operation_timeout(CALL_TIMEOUT)
                    .build(),
            );
        if let Some(region) = region {
            loader = loader.region(Region::new(region.to_owned()));
        }
        let sdk = loader.load().await;
        if sdk.region().is_none() {
            bail!("no AWS region: set [kms] region, or AWS_REGION, or a region in the AWS profile");
        }
        // Set on the KMS client, not the loader: there it would yield to AWS_ENDPOINT_URL_KMS.
        Ok(Self::build(&sdk, endpoint_url, key_id))
    }

    /// Builds the provider over an SDK configuration the caller loaded (tests use static
    /// credentials and a local endpoint). Its retry and timeout settings apply as given.
    pub fn new(sdk: &SdkConfig, key_id: KeyId) -> Self {
        Self::build(sdk, None, key_id)
    }

    fn build(sdk: &SdkConfig, endpoint_url: Option<&str>, key_id: KeyId) -> Self {
        let mut config = aws_sdk_kms::config::Builder::from(sdk).interceptor(RequireTls);
        if let Some(url) = endpoint_url {
            config = config.endpoint_url(url);
        }
        let accepted = Mutex::new(vec![key_id.0.clone()]);
        Self {
            client: Client::from_conf(config.build()),
            key_id,
            accepted,
            calls: AtomicU64::new(0),
        }
    }

    /// Refuses a wrapped master key whose key is not pinned.
    fn check_pinned(&self, key_id: &str) -> Result<(), KmsError> {
        let accepted = self.accepted.lock().unwrap_or_else(PoisonError::into_inner);
        if accepted.iter().any(|k| same_key(k, key_id)) {
            Ok(())
        } else {
            Err(KmsError::KeyNotConfigured {
                configured: self.key_id.0.clone(),
                wrapping: key_id.to_owned(),
            })
        }
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// The master key as the KMS put it under `destination` (`operation`'s answer): the key it
    /// reports must be that one, which is accepted for unwrapping from then on.
    fn accept_moved(
        &self,
        destination: &str,
        reported: Option<String>,
        ciphertext: Option<Blob>,
        operation: &str,
    ) -> Result<WrappedMasterKey, KmsError> {
        let reported = reported.unwrap_or_default();
        check_reported(destination, &reported)?;
        let ciphertext = ciphertext
            .map(Blob::into_inner)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| malformed(&format!("{operation} returned no ciphertext")))?;
        self.accepted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(reported.clone());
        Ok(WrappedMasterKey {
            key_id: reported,
            ciphertext,
        })
    }
}

impl KmsProvider for AwsKms {
    fn provider(&self) -> &'static str {
        "aws"
    }

    fn key_id(&self) -> &str {
        &self.key_id.0
    }

    fn generate_master_key<'a>(
        &'a self,
        key_id: &'a str,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<(MasterKey, WrappedMasterKey), KmsError>> {
        Box::pin(async move {
            // Only the configured key, or one this provider moved the master key to.
            self.check_pinned(key_id)?;
            self.count();
            let mut out = self
                .client
                .generate_data_key()
                .key_id(key_id)
                .key_spec(DataKeySpec::Aes256)
                .set_encryption_context(Some(context_map(context)))
                .send()
                .await
                .map_err(|e| map_error(e, key_id))?;
            // Take the plaintext first so that it is wiped on every path below.
            let plaintext = take_plaintext(out.plaintext.take());
            let reported = out.key_id.take().unwrap_or_default();
            check_reported(key_id, &reported)?;
            let master = plaintext
                .as_deref()
                .and_then(|p| KeyBytes::from_slice(p))
                .map(MasterKey::new)
                .ok_or_else(|| malformed("GenerateDataKey returned no 32-byte plaintext"))?;
            let ciphertext = out
                .ciphertext_blob
                .take()
                .map(Blob::into_inner)
                .filter(|c| !c.is_empty())
                .ok_or_else(|| malformed("GenerateDataKey returned no ciphertext"))?;
            Ok((
                master,
                WrappedMasterKey {
                    // The key ARN, so that unseal pins exactly this key.
                    key_id: reported,
                    ciphertext,
                },
            ))
        })
    }

    fn unwrap_master_key<'a>(
        &'a self,
        wrapped: &'a WrappedMasterKey,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<MasterKey, KmsError>> {
        Box::pin(async move {
            self.check_pinned(&wrapped.key_id)?;
            self.count();
            let mut out = self
                .client
                .decrypt()
                .key_id(&wrapped.key_id)
                .ciphertext_blob(Blob::new(wrapped.ciphertext.clone()))
                .set_encryption_context(Some(context_map(context)))
                .send()
                .await
                .map_err(|e| map_error(e, &wrapped.key_id))?;
            let plaintext = take_plaintext(out.plaintext.take());
            check_reported(&wrapped.key_id, out.key_id.as_deref().unwrap_or_default())?;
            plaintext
                .as_deref()
                .and_then(|p| KeyBytes::from_slice(p))
                .map(MasterKey::new)
                // A 32-byte key was wrapped; anything else did not come from our init.
                .ok_or(KmsError::DecryptionFailed)
        })
    }

    fn rewrap_master_key<'a>(
        &'a self,
        wrapped: &'a WrappedMasterKey,
        context: &'a EncryptionContext,
        new_key_id: &'a str,
    ) -> BoxFuture<'a, Result<WrappedMasterKey, KmsError>> {
        Box::pin(async move {
            let destination: KeyId = new_key_id.parse().map_err(KmsError::Rejected)?;
            self.check_pinned(&wrapped.key_id)?;
            self.count();
            let pair = format!("{} or {}", wrapped.key_id, destination);
            let mut out = self
                .client
                .re_encrypt()
                .ciphertext_blob(Blob::new(wrapped.ciphertext.clone()))
                .source_key_id(&wrapped.key_id)
                .set_source_encryption_context(Some(context_map(context)))
                .destination_key_id(destination.as_str())
                .set_destination_encryption_context(Some(context_map(context)))
                .send()
                .await
                .map_err(|e| map_error(e, &pair))?;
            check_reported(
                &wrapped.key_id,
                out.source_key_id.as_deref().unwrap_or_default(),
            )?;
            self.accept_moved(
                destination.as_str(),
                out.key_id.take(),
                out.ciphertext_blob.take(),
                "ReEncrypt",
            )
        })
    }

    fn wrap_master_key<'a>(
        &'a self,
        master: &'a MasterKey,
        context: &'a EncryptionContext,
        key_id: &'a str,
    ) -> BoxFuture<'a, Result<WrappedMasterKey, KmsError>> {
        Box::pin(async move {
            let destination: KeyId = key_id.parse().map_err(KmsError::Rejected)?;
            self.count();
            // The SDK takes the plaintext as an owned `Blob` and drops it unwiped: one copy of
            // the master key in freed memory, once per migration (it is rare, and an operator's
            // act). Its response carries no plaintext.
            let mut out = self
                .client
                .encrypt()
                .key_id(destination.as_str())
                .plaintext(Blob::new(master.expose_secret().to_vec()))
                .set_encryption_context(Some(context_map(context)))
                .send()
                .await
                .map_err(|e| map_error(e, destination.as_str()))?;
            self.accept_moved(
                destination.as_str(),
                out.key_id.take(),
                out.ciphertext_blob.take(),
                "Encrypt",
            )
        })
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

/// Checks a KMS endpoint URL: `https://host…`, or `http://` to `localhost`, 127.0.0.0/8 or
/// `[::1]`; no credentials in it.
pub(crate) fn check_endpoint_url(url: &str) -> Result<(), String> {
    if url
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(format!("{url:?} contains whitespace"));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("{url:?} must start with https://"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("an endpoint URL must not carry credentials".into());
    }
    if authority.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(()),
        "http" if is_loopback(authority) => Ok(()),
        "http" => Err(format!(
            "{url:?}: plain http is allowed only to a loopback address (KMS answers carry the \
             plaintext master key); use https://"
        )),
        other => Err(format!("{url:?}: scheme {other:?} is not https")),
    }
}

/// Whether `host[:port]` names this machine: `localhost`, 127.0.0.0/8 or `[::1]`.
fn is_loopback(authority: &str) -> bool {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Refuses to send a request anywhere [`check_endpoint_url`] refuses.
#[derive(Debug)]
struct RequireTls;

/// A request to an endpoint that [`check_endpoint_url`] refuses.
#[derive(Debug, thiserror::Error)]
#[error("refusing to send a KMS request to {0}")]
struct InsecureEndpoint(String);

impl Intercept for RequireTls {
    fn name(&self) -> &'static str {
        "vaultd::RequireTls"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _config: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        check_endpoint_url(context.request().uri())
            .map_err(|reason| InsecureEndpoint(reason).into())
    }
}

/// Moves the SDK's plaintext into a buffer that is wiped on drop.
///
/// What this cannot wipe: the HTTP response body (`bytes::Bytes`, shared and immutable) that
/// holds the base64 text of the plaintext, the buffers of hyper and rustls that held the
/// decrypted TLS records, and any intermediate buffer of the SDK's JSON and base64 decoders.
/// Those are freed (not zeroed) when the call returns. The `Vec` inside the `Blob` is moved here,
/// not copied, and is wiped.
fn take_plaintext(blob: Option<Blob>) -> Option<Zeroizing<Vec<u8>>> {
    blob.map(|b| Zeroizing::new(b.into_inner()))
}

fn context_map(context: &EncryptionContext) -> HashMap<String, String> {
    context
        .pairs()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The key KMS reports having used must be the one we asked for.
fn check_reported(expected: &str, reported: &str) -> Result<(), KmsError> {
    if same_key(expected, reported) {
        Ok(())
    } else {
        Err(KmsError::WrongKeyId {
            expected: expected.to_owned(),
            actual: if reported.is_empty() {
                "(none reported)".to_owned()
            } else {
                reported.to_owned()
            },
        })
    }
}

/// Whether two KMS key identifiers name the same key: equal, or one is a key ARN
/// (`arn:<partition>:kms:<region>:<account>:key/<id>`) whose key id is the other.
fn same_key(a: &str, b: &str) -> bool {
    !a.is_empty() && (a == b || arn_has_id(a, b) || arn_has_id(b, a))
}

fn arn_has_id(arn: &str, id: &str) -> bool {
    !id.is_empty()
        && !id.contains([':', '/'])
        && arn.starts_with("arn:")
        && arn
            .strip_suffix(id)
            .is_some_and(|head| head.ends_with(":key/"))
}

fn malformed(what: &str) -> KmsError {
    KmsError::Rejected(format!("malformed KMS answer: {what}"))
}

/// Maps an SDK failure to a [`KmsError`]. `key` names the key(s) the call used. Messages carry
/// error codes, key ids and the KMS's own message, never request or response bodies.
fn map_error<E>(err: SdkError<E>, key: &str) -> KmsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match &err {
        SdkError::TimeoutError(_) => {
            return KmsError::Unreachable("the KMS endpoint did not answer in time".into());
        }
        SdkError::DispatchFailure(_) if find_source::<InsecureEndpoint>(&err).is_some() => {
            return KmsError::Rejected(source_chain(&err));
        }
        SdkError::DispatchFailure(failure) if failure.is_io() || failure.is_timeout() => {
            return KmsError::Unreachable(format!(
                "cannot reach the KMS endpoint: {}",
                source_chain(&err)
            ));
        }
        // Credentials that cannot be loaded (yet): instance metadata or a web identity token
        // file that is not there. Transient (they may appear), said in one line: the chain's
        // own message lists every provider it tried.
        SdkError::DispatchFailure(_)
            if source_chain(&err)
                .to_ascii_lowercase()
                .contains("credentials") =>
        {
            return KmsError::Unreachable(
                "no AWS credentials yet (tried the environment, profile, web identity, container \
                 and instance metadata): give vaultd a role or credentials; retrying"
                    .into(),
            );
        }
        SdkError::DispatchFailure(_) => {
            return KmsError::Unreachable(format!(
                "the KMS request could not be sent: {}",
                source_chain(&err)
            ));
        }
        SdkError::ResponseError(_) => {
            return KmsError::Unreachable(format!(
                "the KMS endpoint sent an unreadable answer: {}",
                source_chain(&err)
            ));
        }
        SdkError::ConstructionFailure(_) => {
            return KmsError::Rejected(format!(
                "the KMS request could not be built: {}",
                source_chain(&err)
            ));
        }
        _ => {}
    }
    let code = err.code().unwrap_or("(no error code)").to_owned();
    let message = err.message().unwrap_or_default();
    let status = err.raw_response().map(|r| r.status().as_u16());
    let detail = if message.is_empty() {
        code.clone()
    } else {
        format!("{code}: {message}")
    };
    classify(&code, message, status, key, detail)
}

/// The error for a KMS service error code.
fn classify(code: &str, message: &str, status: Option<u16>, key: &str, detail: String) -> KmsError {
    match code {
        "ThrottlingException" | "LimitExceededException" | "TooManyRequestsException" => {
            KmsError::Throttled
        }
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "IncompleteSignature"
        | "InvalidClientTokenId"
        | "ExpiredTokenException"
        | "MissingAuthenticationToken" => KmsError::AccessDenied(detail),
        "DisabledException" => KmsError::KeyDisabled(key.to_owned()),
        "KMSInvalidStateException" if message.to_ascii_lowercase().contains("pending deletion") => {
            KmsError::KeyPendingDeletion(key.to_owned())
        }
        // Pending import, pending replica deletion, an unavailable custom key store: the key
        // exists but refuses use until an operator acts, like a disabled key.
        "KMSInvalidStateException" => KmsError::KeyDisabled(format!("{key} ({detail})")),
        "NotFoundException" | "InvalidArnException" => KmsError::KeyNotFound(key.to_owned()),
        "InvalidCiphertextException" | "IncorrectKeyException" => KmsError::DecryptionFailed,
        "KMSInternalException" | "DependencyTimeoutException" | "KeyUnavailableException" => {
            KmsError::Unreachable(format!("the KMS is unavailable ({detail})"))
        }
        _ if status.is_some_and(|s| s >= 500) => {
            KmsError::Unreachable(format!("the KMS is unavailable ({detail})"))
        }
        _ => KmsError::Rejected(detail),
    }
}

/// The first error of type `T` in the source chain of `err`.
fn find_source<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// `err` and its sources, joined with `: `, on one line.
fn source_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str =
        "arn:aws:kms:eu-central-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn arn_and_key_id_name_the_same_key() {
        assert!(same_key(ARN, ID));
        assert!(same_key(ID, ARN));
        assert!(same_key(ARN, ARN));
        assert!(!same_key(ARN, "1234abcd-12ab-34cd-56ef-1234567890ac"));
        assert!(!same_key(ARN, "90ab"));
        assert!(!same_key(ARN, ""));
        assert!(!same_key("", ""));
        assert!(!same_key(
            ARN,
            "arn:aws:kms:eu-central-1:444455556666:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        ));
        assert!(!same_key("arn:aws:kms:eu-central-1:1:alias/x", "x"));
    }

    #[test]
    fn key_id_refuses_aliases_and_junk() {
        assert!(ID.parse::<KeyId>().is_ok());
        assert!(ARN.parse::<KeyId>().is_ok());
        assert!(
            "mrk-1234abcd12ab34cd56ef1234567890ab"
                .parse::<KeyId>()
                .is_ok()
        );
        for bad in [
            "",
            "alias/vaultd",
            "arn:aws:kms:eu-central-1:111122223333:alias/vaultd",
            "arn:aws:iam::111122223333:role/x",
            "key id",
        ] {
            assert!(bad.parse::<KeyId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn service_errors_map_to_typed_errors() {
        let c = |code: &str, message: &str, status: u16| {
            classify(
                code,
                message,
                Some(status),
                ID,
                format!("{code}: {message}"),
            )
        };
        assert!(matches!(
            c("ThrottlingException", "", 400),
            KmsError::Throttled
        ));
        assert!(matches!(
            c("LimitExceededException", "", 400),
            KmsError::Throttled
        ));
        assert!(matches!(
            c("AccessDeniedException", "", 400),
            KmsError::AccessDenied(_)
        ));
        assert!(matches!(
            c("UnrecognizedClientException", "", 400),
            KmsError::AccessDenied(_)
        ));
        assert!(matches!(
            c("DisabledException", "", 400),
            KmsError::KeyDisabled(_)
        ));
        assert!(matches!(
            c(
                "KMSInvalidStateException",
                &format!("{ARN} is pending deletion."),
                400
            ),
            KmsError::KeyPendingDeletion(_)
        ));
        assert!(matches!(
            c(
                "KMSInvalidStateException",
                &format!("{ARN} is pending import."),
                400
            ),
            KmsError::KeyDisabled(_)
        ));
        assert!(matches!(
            c("NotFoundException", "", 400),
            KmsError::KeyNotFound(_)
        ));
        assert!(matches!(
            c("InvalidCiphertextException", "", 400),
            KmsError::DecryptionFailed
        ));
        assert!(matches!(
            c("IncorrectKeyException", "", 400),
            KmsError::DecryptionFailed
        ));
        assert!(matches!(
            c("KMSInternalException", "", 500),
            KmsError::Unreachable(_)
        ));
        assert!(matches!(
            c("SomethingNew", "", 503),
            KmsError::Unreachable(_)
        ));
        assert!(matches!(
            c("InvalidKeyUsageException", "", 400),
            KmsError::Rejected(_)
        ));
    }

    #[test]
    fn endpoint_must_be_https_or_loopback_http() {
        for ok in [
            "https://kms.eu-central-1.amazonaws.com",
            "https://kms.eu-central-1.amazonaws.com/",
            "http://127.0.0.1:4566",
            "http://127.8.9.10:4566/",
            "HTTP://LOCALHOST:4566",
            "http://[::1]:4566",
        ] {
            assert!(check_endpoint_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://kms.example.internal",
            "http://10.0.0.5:4566",
            "http://127.0.0.1.evil.example:80",
            "http://[::2]:80",
            "ftp://127.0.0.1",
            "kms.example.internal",
            "https://",
            "https://user:pw@kms.example.internal",
            "https://kms.example.internal /x",
        ] {
            assert!(check_endpoint_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reported_key_must_be_the_requested_one() {
        assert!(check_reported(ID, ARN).is_ok());
        assert!(matches!(
            check_reported(ID, ""),
            Err(KmsError::WrongKeyId { .. })
        ));
        assert!(matches!(
            check_reported(
                ID,
                "arn:aws:kms:eu-central-1:111122223333:key/ffffffff-12ab-34cd-56ef-1234567890ab"
            ),
            Err(KmsError::WrongKeyId { .. })
        ));
    }
}
