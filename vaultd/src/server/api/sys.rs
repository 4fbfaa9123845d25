//! `/v1/sys/*`: health, status, init, unseal, seal, recovery shares, metrics.

use ::http::{Response, StatusCode};
use vault_client::wire::{Health, RecoverShare, RecoveryCreate, StateResponse, VaultState};

use super::no_body;
use crate::audit::Event;
use crate::error::Error;
use crate::server::App;
use crate::server::message::{self as http, Body};
use crate::server::routes::Route;

/// 200 unsealed, 503 sealed (or audit or storage unavailable), 501 uninitialized; the body
/// says which.
pub(super) fn health(app: &App) -> Response<Body> {
    let state = app.vault.state();
    let audit_available = app.vault.audit_available();
    let storage_available = app.vault.storage_available();
    let status = match state {
        VaultState::Unsealed if audit_available && storage_available => StatusCode::OK,
        VaultState::Unsealed | VaultState::Sealed => StatusCode::SERVICE_UNAVAILABLE,
        VaultState::Uninitialized => StatusCode::NOT_IMPLEMENTED,
    };
    http::json(
        status,
        &Health {
            state,
            audit_available,
            storage_available,
        },
    )
}

pub(super) async fn serve(
    app: &App,
    route: &Route,
    body: &[u8],
    ev: &mut Event,
) -> Result<Response<Body>, Error> {
    let vault = &app.vault;
    match route {
        Route::Health => Ok(health(app)),
        Route::Status => Ok(http::json(StatusCode::OK, &vault.status().await?)),
        Route::OpenApi => {
            no_body(body)?;
            Ok(http::text(
                StatusCode::OK,
                crate::server::openapi::json().to_owned(),
                "application/json",
            ))
        }
        Route::Init => {
            no_body(body)?;
            Ok(http::json(StatusCode::OK, &vault.init(ev).await?))
        }
        Route::Unseal => {
            no_body(body)?;
            vault.unseal(ev).await?;
            Ok(http::json(
                StatusCode::OK,
                &StateResponse {
                    state: vault.state(),
                },
            ))
        }
        Route::Seal => {
            no_body(body)?;
            vault.seal(ev).await?;
            Ok(http::json(
                StatusCode::OK,
                &StateResponse {
                    state: vault.state(),
                },
            ))
        }
        Route::Recovery => {
            let req: RecoveryCreate = http::parse_required(body)?;
            Ok(http::json(
                StatusCode::OK,
                &vault.create_recovery(&req, ev).await?,
            ))
        }
        Route::Recover => {
            let req: RecoverShare = http::parse_required(body)?;
            let share = req
                .share
                .ok_or_else(|| Error::invalid("share is required: one decrypted share line"))?;
            Ok(http::json(
                StatusCode::OK,
                &vault.recover(&share, ev).await?,
            ))
        }
        Route::Metrics => Ok(http::text(
            StatusCode::OK,
            render_metrics(app).await,
            crate::server::metrics::CONTENT_TYPE,
        )),
        _ => unreachable!("routed by api::serve"),
    }
}

/// The metrics text, with the vault's state and key metadata read now.
pub(in crate::server) async fn render_metrics(app: &App) -> String {
    let vault = &app.vault;
    let kms = vault.kms();
    let keys = match vault.key_gauges().await {
        Ok(keys) => Some(keys),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: key metadata not readable");
            None
        }
    };
    app.metrics.render(&crate::server::metrics::Snapshot {
        state: vault.state(),
        audit_available: vault.audit_available(),
        kms_provider: kms.provider(),
        kms_calls: kms.calls(),
        store: vault.store_stats(),
        retention: vault.retention_stats(),
        keys,
    })
}
