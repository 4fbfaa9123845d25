//! A KMS provider that times every call of another and counts its errors for the metrics
//! (`vaultd_kms_call_duration_seconds`, `vaultd_kms_errors_total`).

use std::sync::Arc;
use std::time::Instant;

use super::{BoxFuture, EncryptionContext, KmsError, KmsProvider, WrappedMasterKey};
use crate::secret::MasterKey;
use crate::server::Metrics;

/// `inner`, measured into `metrics`.
pub struct Metered {
    inner: Arc<dyn KmsProvider>,
    metrics: Arc<Metrics>,
}

impl Metered {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn KmsProvider>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        call: BoxFuture<'_, Result<T, KmsError>>,
    ) -> Result<T, KmsError> {
        let started = Instant::now();
        let result = call.await;
        let code = result.as_ref().err().map(KmsError::code);
        self.metrics.record_kms(operation, started.elapsed(), code);
        result
    }
}

impl KmsProvider for Metered {
    fn provider(&self) -> &'static str {
        self.inner.provider()
    }

    fn check_key_id(&self, key_id: &str) -> Result<(), String> {
        self.inner.check_key_id(key_id)
    }

    fn key_id(&self) -> &str {
        self.inner.key_id()
    }

    fn generate_master_key<'a>(
        &'a self,
        key_id: &'a str,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<(MasterKey, WrappedMasterKey), KmsError>> {
        Box::pin(self.timed("generate", self.inner.generate_master_key(key_id, context)))
    }

    fn unwrap_master_key<'a>(
        &'a self,
        wrapped: &'a WrappedMasterKey,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<MasterKey, KmsError>> {
        Box::pin(self.timed("unwrap", self.inner.unwrap_master_key(wrapped, context)))
    }

    fn rewrap_master_key<'a>(
        &'a self,
        wrapped: &'a WrappedMasterKey,
        context: &'a EncryptionContext,
        new_key_id: &'a str,
    ) -> BoxFuture<'a, Result<WrappedMasterKey, KmsError>> {
        Box::pin(self.timed(
            "rewrap",
            self.inner.rewrap_master_key(wrapped, context, new_key_id),
        ))
    }

    fn wrap_master_key<'a>(
        &'a self,
        master: &'a MasterKey,
        context: &'a EncryptionContext,
        key_id: &'a str,
    ) -> BoxFuture<'a, Result<WrappedMasterKey, KmsError>> {
        Box::pin(self.timed("wrap", self.inner.wrap_master_key(master, context, key_id)))
    }

    fn calls(&self) -> u64 {
        self.inner.calls()
    }
}
