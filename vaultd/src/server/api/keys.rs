//! `/v1/keys/*`, `/v1/tenants/{t}/keys/*`, `/v1/jobs/{id}`: rotation, rewrap, retirement, history.

use ::http::{Response, StatusCode};
use vault_client::wire::{KeyConfig, KmsRotate, Retire, RewrapStart};

use super::no_body;
use crate::audit::Event;
use crate::error::Error;
use crate::ids::TenantId;
use crate::server::App;
use crate::server::message::{self as http, Body};
use crate::server::routes::Route;

pub(super) async fn serve(
    app: &App,
    route: &Route,
    body: &[u8],
    ev: &mut Event,
) -> Result<Response<Body>, Error> {
    let vault = &app.vault;
    let answer = match route {
        Route::RotateTenant(t) => {
            no_body(body)?;
            http::json(StatusCode::OK, &vault.rotate_tenant(t, ev).await?)
        }
        Route::Retire(t) => {
            let req: Retire = http::parse_required(body)?;
            http::json(
                StatusCode::OK,
                &vault.retire(t, req.below_version, ev).await?,
            )
        }
        Route::KeyConfig(t) => {
            let req: KeyConfig = http::parse_required(body)?;
            http::json(StatusCode::OK, &vault.set_key_config(t, &req, ev).await?)
        }
        Route::MasterRotate => {
            no_body(body)?;
            http::json(StatusCode::OK, &vault.rotate_master(ev).await?)
        }
        Route::KmsRotate => {
            let req: KmsRotate = http::parse_required(body)?;
            http::json(StatusCode::OK, &vault.rotate_kms(&req.key_id, ev).await?)
        }
        Route::KmsMigrate => {
            let req: KmsRotate = http::parse_required(body)?;
            http::json(StatusCode::OK, &vault.migrate_kms(&req.key_id, ev).await?)
        }
        Route::Rewrap => {
            let req: RewrapStart = http::parse(body, true)?;
            let tenant = req.tenant.as_deref().map(TenantId::parse).transpose()?;
            ev.tenant = tenant.as_ref().map(ToString::to_string);
            http::json(
                StatusCode::ACCEPTED,
                &vault.start_rewrap(tenant.as_ref(), req.rate, ev).await?,
            )
        }
        Route::Job(id) => {
            no_body(body)?;
            http::json(StatusCode::OK, &vault.job(id).await?)
        }
        Route::KeyHistory(t) => {
            no_body(body)?;
            let mut history = vault.key_history(t.as_ref()).await?;
            history.rotation = app.rotation.map(|r| vault_client::wire::RotationInfo {
                max_dek_age_days: r.max_dek_age_days,
                max_encryptions_per_version: r.max_encryptions_per_version,
            });
            http::json(StatusCode::OK, &history)
        }
        _ => unreachable!("routed by api::serve"),
    };
    Ok(answer)
}
