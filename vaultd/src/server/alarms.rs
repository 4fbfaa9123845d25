//! Alarms (`docs/alarms.md`): a pattern of requests that looks like theft, raised as an audit
//! entry `alarm.KIND`, a count in `vaultd_alarms_total`, an ERROR log line, and with
//! `seal_on_alarm` a seal of the vault.

use vault_client::audit::Outcome;

use super::App;
use crate::audit::{Event, request_id};
use crate::policy::Identity;

/// What raised an alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AlarmKind {
    /// A caller asked for more distinct tokens than a brake of its rule allows.
    ExfiltrationBrake,
    /// A token was stored equal to one of its earlier revisions (`docs/leases.md`).
    TokenReused,
    /// A decoy token was unsealed.
    DecoyUnsealed,
}

impl AlarmKind {
    /// Every kind, for the metric.
    pub(super) const ALL: &[AlarmKind] = &[
        AlarmKind::ExfiltrationBrake,
        AlarmKind::TokenReused,
        AlarmKind::DecoyUnsealed,
    ];

    /// The kind's name: `alarm.{name}` is its audit op, `kind="{name}"` its metric label.
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::ExfiltrationBrake => "exfiltration_brake",
            Self::TokenReused => "token_reused",
            Self::DecoyUnsealed => "decoy_unsealed",
        }
    }

    /// The `code` of its entry: what the request that raised it was answered.
    fn code(self) -> Option<&'static str> {
        match self {
            Self::ExfiltrationBrake => Some("rate_limited"),
            Self::TokenReused => Some("token_reused"),
            // The unseal was answered as any other: the alarm's entry has no error code.
            Self::DecoyUnsealed => None,
        }
    }
}

/// Raises an alarm about `who`: `ev` is its entry (op `alarm.KIND`, with the tenant, token
/// and figures already set). Never fails: an entry that cannot be written is logged, and the
/// seal, if configured, still happens.
pub(super) async fn raise(app: &App, who: &Identity, kind: AlarmKind, mut ev: Event) {
    app.metrics.record_alarm(kind);
    tracing::error!(kind = kind.name(), %who, tenant = ev.tenant.as_deref(), "alarm raised");
    if let Err(e) = app
        .vault
        .record(&mut ev, Outcome::Denied, kind.code())
        .await
    {
        tracing::error!(error = %e, kind = kind.name(), "the alarm's audit entry was not written");
    }
    if app.seal_on_alarm {
        let mut seal = Event::system("sys.seal");
        seal.detail
            .insert("reason".into(), format!("alarm.{}", kind.name()));
        match app.vault.seal(&mut seal).await {
            Ok(()) => tracing::error!(
                kind = kind.name(),
                "vault sealed on the alarm (seal_on_alarm)"
            ),
            Err(e) => tracing::error!(error = %e, "seal_on_alarm: the seal failed"),
        }
    }
}

/// The entry of an alarm of `kind` about `who`.
pub(super) fn entry(who: &Identity, kind: AlarmKind) -> Event {
    Event::caller(who, &format!("alarm.{}", kind.name()), request_id())
}
