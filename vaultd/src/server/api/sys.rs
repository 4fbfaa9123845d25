//! `/v1/sys/*`: health, status, init, unseal, seal, metrics.

use ::http::{Response, StatusCode};
use vault_client::wire::{Health, StateResponse, VaultState};

use super::no_body;
use crate::server::App;
use crate::server::message::{self as http, Body, Failure};
use crate::server::routes::Route;

pub(super) async fn serve(
    app: &App,
    route: &Route,
    body: &[u8],
) -> Result<Response<Body>, Failure> {
    let vault = &app.vault;
    match route {
        Route::Health => {
            let state = vault.state();
            let status = match state {
                VaultState::Unsealed => StatusCode::OK,
                VaultState::Sealed => StatusCode::SERVICE_UNAVAILABLE,
                VaultState::Uninitialized => StatusCode::NOT_IMPLEMENTED,
            };
            Ok(http::json(status, &Health { state }))
        }
        Route::Status => Ok(http::json(StatusCode::OK, &vault.status()?)),
        Route::Init => {
            no_body(body)?;
            Ok(http::json(StatusCode::OK, &vault.init().await?))
        }
        Route::Unseal => {
            no_body(body)?;
            vault.unseal().await?;
            Ok(http::json(
                StatusCode::OK,
                &StateResponse {
                    state: vault.state(),
                },
            ))
        }
        Route::Seal => {
            no_body(body)?;
            vault.seal().await?;
            Ok(http::json(
                StatusCode::OK,
                &StateResponse {
                    state: vault.state(),
                },
            ))
        }
        Route::Metrics => {
            let kms = vault.kms();
            let text = app
                .metrics
                .render(vault.state(), kms.provider(), kms.calls());
            Ok(http::text(
                StatusCode::OK,
                text,
                "text/plain; version=0.0.4",
            ))
        }
        _ => unreachable!("routed by api::serve"),
    }
}
