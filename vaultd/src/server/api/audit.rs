//! `/v1/audit*`: entries, verify, export, public key, HMAC of a value.

use ::http::{Response, StatusCode};
use vault_client::wire::{AuditHash, AuditHashRequest};

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
        Route::AuditList {
            filter,
            after,
            limit,
        } => {
            no_body(body)?;
            Ok(http::json(
                StatusCode::OK,
                &vault.audit_entries(filter, *after, *limit).await?,
            ))
        }
        Route::AuditVerify { anchor, accept } => {
            no_body(body)?;
            Ok(http::json(
                StatusCode::OK,
                &vault.audit_verify(anchor.as_ref(), accept).await?,
            ))
        }
        Route::AuditChains => {
            no_body(body)?;
            Ok(http::json(StatusCode::OK, &vault.audit_chains().await?))
        }
        Route::AuditPublicKey => {
            no_body(body)?;
            Ok(http::json(StatusCode::OK, &vault.audit_public_key().await?))
        }
        Route::AuditExport { node, after, limit } => {
            no_body(body)?;
            let lines = vault.audit_export(node.as_deref(), *after, *limit).await?;
            let text = String::from_utf8(lines)
                .map_err(|_| Failure::from(crate::Error::Invalid("log is not UTF-8".into())))?;
            Ok(http::text(StatusCode::OK, text, "application/x-ndjson"))
        }
        Route::AuditHash => {
            let req: AuditHashRequest = http::parse_required(body)?;
            Ok(http::json(
                StatusCode::OK,
                &AuditHash {
                    hmac: vault.audit_hash(&req.value)?,
                },
            ))
        }
        _ => unreachable!("routed by api::serve"),
    }
}
