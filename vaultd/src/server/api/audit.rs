//! `/v1/audit*`: entries, verify, export, public key, HMAC of a value.

use ::http::{Response, StatusCode};
use vault_client::wire::{AuditArchiveRequest, AuditHash, AuditHashRequest};

use super::no_body;
use crate::audit::Event;
use crate::error::Error;
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
    match route {
        Route::AuditArchive => {
            let req: AuditArchiveRequest = http::parse_required(body)?;
            Ok(http::json(
                StatusCode::OK,
                &vault.audit_archive(&req, ev).await?,
            ))
        }
        Route::AuditList {
            filter,
            after,
            limit,
        } => {
            no_body(body)?;
            let (v, filter, after, limit) = (vault.clone(), filter.clone(), *after, *limit);
            let page = off_workers(
                app,
                async move { v.audit_entries(&filter, after, limit).await },
            )
            .await?;
            Ok(http::json(StatusCode::OK, &page))
        }
        Route::AuditVerify {
            anchor,
            accept,
            full,
        } => {
            no_body(body)?;
            let (v, anchor, accept, full) = (vault.clone(), anchor.clone(), accept.clone(), *full);
            let report = off_workers(app, async move {
                v.audit_verify(anchor.as_ref(), &accept, full).await
            })
            .await?;
            Ok(http::json(StatusCode::OK, &report))
        }
        Route::AuditStatement { node, last } => {
            no_body(body)?;
            Ok(http::json(
                StatusCode::OK,
                &vault.audit_statement(node.as_deref(), *last).await?,
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
            let (v, node, after, limit) = (vault.clone(), node.clone(), *after, *limit);
            let lines = off_workers(app, async move {
                v.audit_export(node.as_deref(), after, limit).await
            })
            .await?;
            let text = String::from_utf8(lines).map_err(|_| {
                crate::store::StoreError::Corrupt("audit export is not UTF-8".into())
            })?;
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

/// Runs a long read of the log (a verify, an export page, a filtered page that may examine
/// 200,000 entries) off the async workers, one at a time: on a blocking thread that waits on
/// the runtime, so the workers go on serving every other request meanwhile.
async fn off_workers<T: Send + 'static>(
    app: &App,
    read: impl std::future::Future<Output = Result<T, Error>> + Send + 'static,
) -> Result<T, Error> {
    let _turn = app
        .long_reads
        .acquire()
        .await
        .map_err(|_| Error::Store(crate::store::StoreError::Closed))?;
    let runtime = tokio::runtime::Handle::current();
    match tokio::task::spawn_blocking(move || runtime.block_on(read)).await {
        Ok(result) => result,
        Err(e) => {
            tracing::error!(error = %e, "a long read of the audit log failed");
            Err(Error::Store(crate::store::StoreError::Backend(
                "a long read of the audit log failed".into(),
            )))
        }
    }
}
