//! Request counters, rendered in the Prometheus text format. Labels are route names and status
//! codes only: never ids, never secrets.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

use vault_client::wire::VaultState;

/// Counters since start.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    refused: Mutex<BTreeMap<&'static str, u64>>,
    alarms: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    /// Counts one answered request.
    pub(super) fn record(&self, route: &'static str, status: u16) {
        *self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((route, status))
            .or_insert(0) += 1;
    }

    /// Counts one connection refused before any request (a failed TLS handshake, no usable
    /// client certificate name, a handshake deadline missed), by listener.
    pub(super) fn record_refused(&self, listener: &'static str) {
        *self
            .refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(listener)
            .or_insert(0) += 1;
    }

    /// Counts one alarm raised.
    pub(super) fn record_alarm(&self, kind: super::alarms::AlarmKind) {
        *self
            .alarms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(kind.name())
            .or_insert(0) += 1;
    }

    /// The exposition text.
    pub(super) fn render(
        &self,
        state: VaultState,
        kms_provider: &str,
        kms_calls: u64,
        store: &crate::store::Stats,
        retention: &crate::vault::RetentionStats,
    ) -> String {
        let mut out = String::new();
        out.push_str("# HELP vaultd_requests_total Requests answered, by route and HTTP status.\n");
        out.push_str("# TYPE vaultd_requests_total counter\n");
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "vaultd_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str(
            "# HELP vaultd_connections_refused_total Connections refused before any request \
             (TLS handshake failed, no usable client certificate, handshake deadline), by listener.\n",
        );
        out.push_str("# TYPE vaultd_connections_refused_total counter\n");
        for (listener, n) in self
            .refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "vaultd_connections_refused_total{{listener=\"{listener}\"}} {n}"
            );
        }
        out.push_str("# HELP vaultd_alarms_total Alarms raised (docs/alarms.md), by kind.\n");
        out.push_str("# TYPE vaultd_alarms_total counter\n");
        let alarms = self.alarms.lock().unwrap_or_else(PoisonError::into_inner);
        for kind in super::alarms::AlarmKind::ALL {
            let n = alarms.get(kind.name()).copied().unwrap_or(0);
            let _ = writeln!(out, "vaultd_alarms_total{{kind=\"{}\"}} {n}", kind.name());
        }
        drop(alarms);
        out.push_str("# HELP vaultd_kms_calls_total Calls to the KMS provider since start.\n");
        out.push_str("# TYPE vaultd_kms_calls_total counter\n");
        let _ = writeln!(
            out,
            "vaultd_kms_calls_total{{provider=\"{kms_provider}\"}} {kms_calls}"
        );
        out.push_str(
            "# HELP vaultd_state Lifecycle state: 0 uninitialized, 1 sealed, 2 unsealed.\n",
        );
        out.push_str("# TYPE vaultd_state gauge\n");
        let state = match state {
            VaultState::Uninitialized => 0,
            VaultState::Sealed => 1,
            VaultState::Unsealed => 2,
        };
        let _ = writeln!(out, "vaultd_state {state}");
        let load = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
        for (name, help, n) in [
            (
                "vaultd_store_groups_total",
                "Group commits made durable (one log write and fdatasync each).",
                load(&store.groups),
            ),
            (
                "vaultd_store_batches_total",
                "Batches committed in those groups (one per write or audited request).",
                load(&store.batches),
            ),
            (
                "vaultd_store_failed_groups_total",
                "Group commits that failed (every batch in them answered with an error).",
                load(&store.failed_groups),
            ),
            (
                "vaultd_tokens_purged_total",
                "Tokens purged by retention since start (docs/retention.md).",
                load(&retention.purged),
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {n}"
            );
        }
        for (name, help, n) in [
            (
                "vaultd_tokens_expired",
                "Tokens past their expires_at and not purged yet, at the last retention pass.",
                load(&retention.expired),
            ),
            (
                "vaultd_tokens_expiring_7d",
                "Tokens that expire within 7 days, at the last retention pass.",
                load(&retention.expiring_7d),
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {n}");
        }
        out
    }
}
