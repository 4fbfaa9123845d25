//! `/v1/tenants/{t}/tokens[/{id}[/unseal|/lease]]`: put, unseal, metadata, list, delete, and
//! refresh leases (`docs/leases.md`).

use ::http::{Response, StatusCode};
use vault_client::wire::{self, LeaseToken, ReleaseLease, UnsealToken};

use super::no_body;
use crate::audit::Event;
use crate::error::Error;
use crate::policy::{Capability, Identity};
use crate::server::App;
use crate::server::alarms::{self, AlarmKind};
use crate::server::message::{self as http, Body};
use crate::server::routes::Route;
use crate::vault::PutToken;

pub(super) async fn serve(
    app: &App,
    who: &Identity,
    route: &Route,
    body: &[u8],
    ev: &mut Event,
) -> Result<Response<Body>, Error> {
    let vault = &app.vault;
    match route {
        Route::PutToken(t, k) | Route::PutDecoy(t, k) => {
            let req: wire::PutToken = http::parse_required(body)?;
            let put = PutToken {
                secret: req.secret,
                binding: req.binding,
                expires_at: req.expires_at.map(|t| t.unix()),
                expected_revision: req.expected_revision,
                lease: req.lease,
                decoy: matches!(route, Route::PutDecoy(..)),
            };
            match vault.put_token(t, k, &put, ev).await {
                Err(Error::TokenReused) => {
                    let mut alarm = alarms::entry(who, AlarmKind::TokenReused);
                    alarm.tenant = Some(t.to_string());
                    alarm.token = Some(k.to_string());
                    alarms::raise(app, who, AlarmKind::TokenReused, alarm).await;
                    Err(Error::TokenReused)
                }
                answer => Ok(http::json(StatusCode::OK, &answer?)),
            }
        }
        Route::LeaseToken(t, k) => {
            let req: LeaseToken = http::parse_required(body)?;
            let holder = who.to_string();
            Ok(http::json(
                StatusCode::OK,
                &vault.lease_token(t, k, req.seconds, &holder, ev).await?,
            ))
        }
        Route::ReleaseLease(t, k) => {
            let req: ReleaseLease = http::parse_required(body)?;
            Ok(http::json(
                StatusCode::OK,
                &vault.release_lease(t, k, &req.lease, ev).await?,
            ))
        }
        Route::UnsealToken(t, k) => {
            let req: UnsealToken = http::parse(body, true)?;
            let (answer, decoy) = vault
                .unseal_token_telling_decoys(t, k, req.expect.as_ref(), ev)
                .await?;
            if decoy {
                // Answered like any token; the caller is not told.
                let mut alarm = alarms::entry(who, AlarmKind::DecoyUnsealed);
                alarm.tenant = Some(t.to_string());
                alarm.token = Some(k.to_string());
                alarms::raise(app, who, AlarmKind::DecoyUnsealed, alarm).await;
            }
            Ok(http::json(StatusCode::OK, &answer))
        }
        Route::ShowToken(t, k) => {
            no_body(body)?;
            let mut meta = vault.token_meta(t, k, ev).await?;
            if !tells_decoys(app, who, t) {
                meta.decoy = None;
            }
            Ok(http::json(StatusCode::OK, &meta))
        }
        Route::ListTokens {
            tenant,
            after,
            limit,
            expiry,
        } => {
            no_body(body)?;
            let mut list = vault
                .list_tokens(tenant, after.as_ref(), *limit, *expiry)
                .await?;
            if !tells_decoys(app, who, tenant) {
                for meta in &mut list.items {
                    meta.decoy = None;
                }
            }
            Ok(http::json(StatusCode::OK, &list))
        }
        Route::DeleteToken(t, k) => {
            no_body(body)?;
            Ok(http::json(
                StatusCode::OK,
                &vault.delete_token(t, k, ev).await?,
            ))
        }
        _ => unreachable!("routed by api::serve"),
    }
}

/// Whether `who` may see which tokens of `tenant` are decoys: `keys:read` on it.
fn tells_decoys(app: &App, who: &Identity, tenant: &crate::ids::TenantId) -> bool {
    app.policy
        .allows(who, Capability::KeysRead, Some(tenant.as_str()))
}
