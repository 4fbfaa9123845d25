//! Metrics kept with `prometheus-client` and served in the Prometheus text format (0.0.4, which
//! every scraper and `promtool` reads) at `GET /v1/sys/metrics`
//! and on the optional loopback listener (`[metrics] listen`, `server::metrics_listener`).
//! Labels are route names, status codes, KMS operations, error codes and kinds only: never a
//! tenant, a token, an id or a secret.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use vault_client::wire::VaultState;

use crate::vault::{KeyGauges, RetentionStats};

/// The content type of the text this renders.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KmsLabels {
    operation: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KmsErrorLabels {
    operation: &'static str,
    code: &'static str,
}

/// Seconds, from 100 µs to about 6.5 s.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

/// Seconds, from 10 ms to about 40 s (KMS calls: a round trip, and the SDK's retries).
fn kms_latency() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 13))
}

/// What the daemon counts while it runs. Cheap to share: every family is an `Arc` inside.
#[derive(Debug)]
pub struct Metrics {
    requests: Family<RouteLabels, Counter>,
    durations: Family<RouteLabels, Histogram, fn() -> Histogram>,
    refused: Family<ListenerLabels, Counter>,
    alarms: Family<KindLabels, Counter>,
    rate_limited: Family<LimitLabels, Counter>,
    kms_durations: Family<KmsLabels, Histogram, fn() -> Histogram>,
    kms_errors: Family<KmsErrorLabels, Counter>,
    scrapes: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            durations: Family::new_with_constructor(latency),
            refused: Family::default(),
            alarms: Family::default(),
            rate_limited: Family::default(),
            kms_durations: Family::new_with_constructor(kms_latency),
            kms_errors: Family::default(),
            scrapes: Counter::default(),
        }
    }
}

/// What is read when the metrics are rendered: the vault's state and counters kept elsewhere.
#[derive(Debug)]
pub struct Snapshot<'a> {
    /// Lifecycle state.
    pub state: VaultState,
    /// Whether the audit log is writable.
    pub audit_available: bool,
    /// The KMS provider's name and its call count.
    pub kms_provider: &'static str,
    /// KMS calls since start.
    pub kms_calls: u64,
    /// The store's group commits.
    pub store: &'a crate::store::Stats,
    /// What retention purged and saw.
    pub retention: &'a RetentionStats,
    /// Key metadata; `None` when it could not be read.
    pub keys: Option<KeyGauges>,
}

impl Metrics {
    /// Counts one answered request and its time.
    pub fn record(&self, route: &'static str, status: u16, took: Duration) {
        let labels = RouteLabels { route, status };
        self.requests.get_or_create(&labels).inc();
        self.durations
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Counts one connection refused before any request (a failed TLS handshake, no usable
    /// client certificate name, a handshake deadline missed), by listener.
    pub(super) fn record_refused(&self, listener: &'static str) {
        self.refused
            .get_or_create(&ListenerLabels { listener })
            .inc();
    }

    /// Counts one alarm raised.
    pub(super) fn record_alarm(&self, kind: super::alarms::AlarmKind) {
        self.alarms
            .get_or_create(&KindLabels { kind: kind.name() })
            .inc();
    }

    /// Counts one request answered 429, by the limit that refused it.
    pub(super) fn record_rate_limited(&self, limit: crate::error::Limit) {
        let limit = match limit {
            crate::error::Limit::Refused => "refused",
            crate::error::Limit::Quota => "quota",
            crate::error::Limit::Brake => "brake",
        };
        self.rate_limited
            .get_or_create(&LimitLabels { limit })
            .inc();
    }

    /// Counts one KMS call, its time, and its error code when it failed.
    pub fn record_kms(&self, operation: &'static str, took: Duration, error: Option<&'static str>) {
        self.kms_durations
            .get_or_create(&KmsLabels { operation })
            .observe(took.as_secs_f64());
        if let Some(code) = error {
            self.kms_errors
                .get_or_create(&KmsErrorLabels { operation, code })
                .inc();
        }
    }

    /// Counts one scrape of the metrics listener (scrapes there are not audited).
    pub(super) fn record_scrape(&self) {
        self.scrapes.inc();
    }

    /// The exposition text.
    pub fn render(&self, now: &Snapshot<'_>) -> String {
        let mut r = Registry::default();
        r.register(
            "vaultd_requests",
            "Requests answered, by route and HTTP status",
            self.requests.clone(),
        );
        r.register(
            "vaultd_request_duration_seconds",
            "Time to answer a request, by route and HTTP status",
            self.durations.clone(),
        );
        r.register(
            "vaultd_connections_refused",
            "Connections refused before any request (TLS handshake failed, no usable client \
             certificate, handshake deadline), by listener",
            self.refused.clone(),
        );
        r.register(
            "vaultd_alarms",
            "Alarms raised (docs/alarms.md), by kind",
            self.alarms.clone(),
        );
        for kind in super::alarms::AlarmKind::ALL {
            // Every kind shows, at 0 until raised, so an alert has a series to watch.
            let _ = self.alarms.get_or_create(&KindLabels { kind: kind.name() });
        }
        r.register(
            "vaultd_rate_limited",
            "Requests answered 429, by the limit that refused them (refused-request budget, \
             quota, exfiltration brake)",
            self.rate_limited.clone(),
        );
        r.register(
            "vaultd_kms_call_duration_seconds",
            "Time of a KMS call (with the SDK's retries), by operation",
            self.kms_durations.clone(),
        );
        r.register(
            "vaultd_kms_errors",
            "KMS calls that failed, by operation and error code",
            self.kms_errors.clone(),
        );
        r.register(
            "vaultd_metrics_scrapes",
            "Scrapes of the metrics listener (not audited; GET /v1/sys/metrics on the API is)",
            self.scrapes.clone(),
        );
        // A gauge of 1 rather than an OpenMetrics info: Prometheus' text parser (and promtool)
        // reads every type used here.
        r.sub_registry_with_label(("version".into(), env!("CARGO_PKG_VERSION").into()))
            .register(
                "vaultd_build_info",
                "The running vaultd, by version",
                ConstGauge::new(1),
            );
        let state = match now.state {
            VaultState::Uninitialized => 0,
            VaultState::Sealed => 1,
            VaultState::Unsealed => 2,
        };
        r.register(
            "vaultd_state",
            "Lifecycle state: 0 uninitialized, 1 sealed, 2 unsealed",
            ConstGauge::new(state),
        );
        r.register(
            "vaultd_sealed",
            "1 while the vault is sealed (or uninitialized), else 0",
            ConstGauge::new(i64::from(now.state != VaultState::Unsealed)),
        );
        r.register(
            "vaultd_audit_available",
            "1 while audit entries can be written, 0 after a write failed (every audited \
             request is then refused)",
            ConstGauge::new(i64::from(now.audit_available)),
        );
        let kms = r.sub_registry_with_label(("provider".into(), now.kms_provider.into()));
        kms.register(
            "vaultd_kms_calls",
            "Calls to the KMS provider since start",
            ConstCounter::new(now.kms_calls),
        );
        let load = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
        for (name, help, n) in [
            (
                "vaultd_store_groups",
                "Group commits made durable (one log write and fdatasync each)",
                load(&now.store.groups),
            ),
            (
                "vaultd_store_batches",
                "Batches committed in those groups (one per write or audited request)",
                load(&now.store.batches),
            ),
            (
                "vaultd_store_failed_groups",
                "Group commits that failed (every batch in them answered with an error)",
                load(&now.store.failed_groups),
            ),
            (
                "vaultd_tokens_purged",
                "Tokens purged by retention since start (docs/retention.md)",
                load(&now.retention.purged),
            ),
        ] {
            r.register(name, help, ConstCounter::new(n));
        }
        r.register(
            "vaultd_store_group_batches",
            "Batches per group commit",
            now.store.group_batches.clone(),
        );
        r.register(
            "vaultd_store_apply_seconds",
            "Time to make a group durable (the log write and its fdatasync, or the PostgreSQL \
             commit)",
            now.store.apply_seconds.clone(),
        );
        for (name, help, n) in [
            (
                "vaultd_tokens_expired",
                "Tokens past their expires_at and not purged yet, at the last retention pass",
                load(&now.retention.expired),
            ),
            (
                "vaultd_tokens_expiring_7d",
                "Tokens that expire within 7 days, at the last retention pass",
                load(&now.retention.expiring_7d),
            ),
        ] {
            r.register(
                name,
                help,
                ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX)),
            );
        }
        if let Some(keys) = now.keys {
            let gauge = |n: u64| ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX));
            r.register(
                "vaultd_records_on_old_key_versions",
                "Token records under a data key version that is not their tenant's current one \
                 (keys rewrap moves them)",
                gauge(keys.records_on_old_versions),
            );
            r.register(
                "vaultd_oldest_key_age_seconds",
                "Age of the oldest current data key version (against the rotation policy)",
                ConstGauge::new(keys.oldest_key_age_secs),
            );
            r.register(
                "vaultd_jobs_running",
                "Rewrap jobs running",
                gauge(keys.jobs_running),
            );
            r.register(
                "vaultd_job_records_done",
                "Records the running rewrap jobs have done",
                gauge(keys.job_records_done),
            );
            r.register(
                "vaultd_job_records_covered",
                "Records the running rewrap jobs cover",
                gauge(keys.job_records_total),
            );
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        prometheus_text(&out)
    }
}

/// The Prometheus text format of OpenMetrics text: a counter family's `HELP` and `TYPE` name its
/// `_total` series, and there is no `# EOF`. Samples are the same in both.
fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let total = if counters.contains(name) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(&format!("{prefix}{name}{total} {tail}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_by_their_total_series_and_eof_goes() {
        let om = "# HELP a_requests Requests.\n# TYPE a_requests counter\na_requests_total{x=\"1\"} 2\n\
                  # HELP a_state State.\n# TYPE a_state gauge\na_state 1\n# EOF\n";
        assert_eq!(
            prometheus_text(om),
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\n\
             a_requests_total{x=\"1\"} 2\n# HELP a_state State.\n# TYPE a_state gauge\na_state 1\n"
        );
    }
}
