//! `/v1/tenants[/{tenant}]`: create, list, show, destroy.

use ::http::{Response, StatusCode};
use vault_client::wire::TenantList;

use super::no_body;
use crate::audit::Event;
use crate::error::Error;
use crate::policy::{Capability, Identity};
use crate::server::App;
use crate::server::message::{self as http, Body};
use crate::server::routes::Route;

pub(super) async fn serve(
    app: &App,
    who: &Identity,
    route: &Route,
    body: &[u8],
    ev: &mut Event,
) -> Result<Response<Body>, Error> {
    let vault = &app.vault;
    no_body(body)?;
    match route {
        Route::CreateTenant(t) => Ok(http::json(
            StatusCode::OK,
            &vault.create_tenant(t, ev).await?,
        )),
        Route::ShowTenant(t) => Ok(http::json(StatusCode::OK, &vault.tenant_info(t).await?)),
        Route::ListTenants => {
            let all = vault.list_tenants().await?;
            let tenants = all
                .tenants
                .into_iter()
                .filter(|t| {
                    app.policy
                        .allows(who, Capability::KeysMetadata, Some(&t.name))
                })
                .collect();
            Ok(http::json(StatusCode::OK, &TenantList { tenants }))
        }
        Route::DestroyTenant(t) => Ok(http::json(
            StatusCode::OK,
            &vault.destroy_tenant(t, ev).await?,
        )),
        Route::Receipt(t) => {
            no_body(body)?;
            Ok(http::text(
                StatusCode::OK,
                vault.erasure_receipt(t).await?,
                "application/x-ndjson",
            ))
        }
        _ => unreachable!("routed by api::serve"),
    }
}
