//! Request handling: route, authorize, read the body, dispatch to one operation group, and
//! record the audit entry before the answer leaves (fail closed: when the entry cannot be
//! written, the answer is `503 audit_unavailable` and no result is returned).
//!
//! - `sys`: health, status, init, seal, unseal, recovery shares, metrics.
//! - `backup`: the streamed snapshot of the whole vault.
//! - `tenants`: create, list, show, destroy.
//! - `tokens`: put, unseal, metadata, list, delete.
//! - `transit`: seal and unseal blobs, single and batch.
//! - `keys`: rotation, rewrap jobs, retirement, history.
//! - `audit`: entries, verify, export, public key, HMAC of a value.

use std::time::Instant;

use ::http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use vault_client::audit::Outcome;

use super::App;
use super::alarms::{self, AlarmKind};
use super::message::{self, Body};
use super::routes::{self, Route, Scope};
use crate::audit::{Event, request_id};
use crate::error::{Error, Limit};
use crate::policy::{Capability, Identity};

mod audit;
mod backup;
mod keys;
mod sys;

pub(super) use sys::render_metrics;
mod tenants;
mod tokens;
mod transit;

/// Answers one request. Never fails: every error becomes an error answer.
pub(in crate::server) async fn handle(
    app: &App,
    who: &Identity,
    req: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let route = routes::parse(&parts.method, parts.uri.path(), parts.uri.query());
    if let Ok(Route::Health) = route {
        // Unauthenticated and data-free: answered without an audit entry (see docs/audit-log.md).
        let answer = sys::health(app);
        let status = answer.status().as_u16();
        app.metrics.record("sys.health", status, started.elapsed());
        return answer;
    }
    let name = route.as_ref().map_or("invalid", Route::name);
    // A caller that spent its budget of refused requests is answered before anything else is
    // done, without an entry of its own: its 429s are summarized (`server/callers.rs`).
    if let Err(wait) = app.callers.admit(who) {
        let limit = Limit::Refused;
        app.metrics.record(name, 429, started.elapsed());
        app.metrics.record_rate_limited(limit);
        return message::failure(&Error::RateLimited { limit, wait });
    }
    let mut ev = Event::caller(who, name, request_id());
    if let Ok(r) = &route {
        ev.tenant = r.tenant().map(ToString::to_string);
        ev.token = r.token().map(ToString::to_string);
    }
    let result = match route {
        Err(unrouted) => Err(unrouted),
        Ok(route) => match authorize(app, who, &route) {
            Err(denied) => Err(denied),
            Ok(capabilities) => {
                // Past a quota: answered like the refused-budget 429 above, counted for the
                // caller's summary entry, nothing done.
                let quotas = app.policy.quotas(who, capabilities);
                if let Err(wait) = app.callers.spend(who, &quotas) {
                    let limit = Limit::Quota;
                    app.metrics.record(name, 429, started.elapsed());
                    app.metrics.record_rate_limited(limit);
                    return message::failure(&Error::RateLimited { limit, wait });
                }
                if let Err(wait) = brake(app, who, &route, capabilities).await {
                    let limit = Limit::Brake;
                    app.metrics.record(name, 429, started.elapsed());
                    app.metrics.record_rate_limited(limit);
                    return message::failure(&Error::RateLimited { limit, wait });
                }
                serve(app, who, &route, body, &mut ev).await
            }
        },
    };
    let (outcome, code) = match &result {
        Ok(_) => (Outcome::Ok, None),
        Err(e @ Error::Denied(_)) => (Outcome::Denied, Some(e.code())),
        Err(e) => (Outcome::Error, Some(e.code())),
    };
    // Denied, malformed, for no endpoint, or a refused recovery share: spends the caller's
    // budget of refused requests.
    if let Err(
        Error::Denied(_)
        | Error::Invalid(_)
        | Error::NoEndpoint(_)
        | Error::MethodNotAllowed(_)
        | Error::ShareRefused(_),
    ) = &result
    {
        app.callers.refused(who);
    }
    let mut response = match app.vault.record(&mut ev, outcome, code).await {
        Ok(()) => result.unwrap_or_else(|e| message::failure(&e)),
        Err(e) => {
            tracing::error!(route = name, %who, "audit entry not written; answering audit_unavailable");
            message::failure(&e)
        }
    };
    if let Ok(id) = HeaderValue::from_str(ev.request()) {
        response.headers_mut().insert("x-request-id", id);
    }
    let status = response.status().as_u16();
    if response.status().is_server_error() {
        tracing::warn!(route = name, status, %who, request = ev.request(), "request failed");
    }
    app.metrics.record(name, status, started.elapsed());
    // The access log: one line per request, under its own target so that it can be turned
    // down alone (`VAULTD_LOG=info,access=warn`). Ids and codes only, never a secret.
    tracing::info!(
        target: "access",
        request = ev.request(),
        route = name,
        status,
        %who,
        tenant = ev.tenant.as_deref(),
        micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "request"
    );
    response
}

/// Counts the token `route` names against the caller's brakes (`docs/alarms.md`); `Err` with
/// the wait when one refuses it, after raising the alarm on the first refusal of a window.
async fn brake(
    app: &App,
    who: &Identity,
    route: &Route,
    capabilities: &[Capability],
) -> Result<(), std::time::Duration> {
    let (Some(tenant), Some(token)) = (route.tenant(), route.token()) else {
        return Ok(());
    };
    let brakes = app.policy.brakes(who, capabilities, tenant);
    let Err(braked) = app.callers.brake(who, &brakes, tenant, token.as_str()) else {
        return Ok(());
    };
    if let Some(alarm) = braked.alarm {
        let mut ev = alarms::entry(who, AlarmKind::ExfiltrationBrake);
        ev.tenant = Some(tenant.to_string());
        ev.token = Some(token.to_string());
        ev.detail.insert(
            "brake".into(),
            format!("{} #{}", alarm.rule, alarm.brake + 1),
        );
        ev.detail
            .insert("distinct_tokens".into(), alarm.distinct_tokens.to_string());
        ev.detail
            .insert("window_secs".into(), alarm.window.as_secs().to_string());
        alarms::raise(app, who, AlarmKind::ExfiltrationBrake, ev).await;
    }
    Err(braked.wait)
}

/// Whether `who` holds every capability `route` needs where it needs it; `Ok` with them.
fn authorize(app: &App, who: &Identity, route: &Route) -> Result<&'static [Capability], Error> {
    let (capabilities, scope) = route.access();
    for &capability in capabilities {
        let allowed = match scope {
            Scope::Open => true,
            Scope::Tenant(t) => app.policy.allows(who, capability, Some(t)),
            Scope::Unscoped | Scope::EachTenant => app.policy.allows(who, capability, None),
            Scope::Vault => app.policy.allows_everywhere(who, capability),
        };
        if !allowed {
            tracing::info!(route = route.name(), capability = capability.name(), %who, "denied");
            return Err(Error::Denied(format!(
                "{} is not granted to {who}",
                capability.name()
            )));
        }
    }
    Ok(capabilities)
}

async fn serve(
    app: &App,
    who: &Identity,
    route: &Route,
    body: Incoming,
    ev: &mut Event,
) -> Result<Response<Body>, Error> {
    let body = message::read_body(body).await?;
    match route {
        Route::Health
        | Route::Status
        | Route::Init
        | Route::Unseal
        | Route::Seal
        | Route::Recovery
        | Route::Recover
        | Route::Metrics
        | Route::OpenApi => sys::serve(app, route, &body, ev).await,
        Route::CreateTenant(_)
        | Route::ShowTenant(_)
        | Route::ListTenants
        | Route::DestroyTenant(_)
        | Route::Receipt(_) => tenants::serve(app, who, route, &body, ev).await,
        Route::PutToken(..)
        | Route::PutDecoy(..)
        | Route::LeaseToken(..)
        | Route::ReleaseLease(..)
        | Route::UnsealToken(..)
        | Route::ShowToken(..)
        | Route::ListTokens { .. }
        | Route::DeleteToken(..) => tokens::serve(app, who, route, &body, ev).await,
        Route::TransitSeal(_) | Route::TransitUnseal(_) => {
            transit::serve(app, route, &body, ev).await
        }
        Route::AuditList { .. }
        | Route::AuditVerify { .. }
        | Route::AuditHash
        | Route::AuditPublicKey
        | Route::AuditChains
        | Route::AuditExport { .. }
        | Route::AuditStatement { .. }
        | Route::AuditArchive => audit::serve(app, route, &body, ev).await,
        Route::Backup => backup::serve(app, &body),
        Route::Job(_)
        | Route::KeyConfig(_)
        | Route::KeyHistory(_)
        | Route::KmsMigrate
        | Route::KmsRotate
        | Route::MasterRotate
        | Route::Retire(_)
        | Route::Rewrap
        | Route::RotateTenant(_) => keys::serve(app, route, &body, ev).await,
        Route::TransitRewrap(_) => transit::serve(app, route, &body, ev).await,
    }
}

/// Refuses a body where none is expected (whitespace and `{}` are fine).
fn no_body(body: &[u8]) -> Result<(), Error> {
    #[derive(serde::Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Empty {}
    message::parse::<Empty>(body, true).map(drop)
}
