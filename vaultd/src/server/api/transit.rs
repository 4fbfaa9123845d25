//! `/v1/tenants/{t}/seal` and `/unseal`: transit mode, single and batch.

use ::http::{Response, StatusCode};
use vault_client::wire::{Batch, BatchItem, Plaintext, Sealed, TransitSeal, TransitUnseal};

use crate::audit::Event;
use crate::error::Error;
use crate::ids::TenantId;
use crate::secret::Secret;
use crate::server::App;
use crate::server::message::{self as http, Body};
use crate::server::routes::Route;
use crate::vault::{MAX_BATCH, Vault};

pub(super) async fn serve(
    app: &App,
    route: &Route,
    body: &[u8],
    ev: &mut Event,
) -> Result<Response<Body>, Error> {
    let vault = &app.vault;
    match route {
        Route::TransitSeal(t) => {
            let req: TransitSeal = http::parse_required(body)?;
            match req.items {
                Some(items) => {
                    if req.plaintext.is_some() || req.context.is_some() {
                        return Err(Error::invalid(
                            "give either items or a single plaintext, not both",
                        ));
                    }
                    check_batch(items.len())?;
                    let mut results = Vec::with_capacity(items.len());
                    for item in items {
                        let sealed = seal_one(vault, t, &item.plaintext, &item.context, ev);
                        results.push(item_result(sealed.await));
                    }
                    Ok(http::json(StatusCode::OK, &Batch { items: results }))
                }
                None => {
                    let Some(plaintext) = req.plaintext else {
                        return Err(Error::invalid(
                            "give plaintext (UTF-8 text) or plaintext_b64 (base64), or items",
                        ));
                    };
                    let context = req.context.unwrap_or_default();
                    let sealed = seal_one(vault, t, &plaintext, &context, ev).await?;
                    Ok(http::json(StatusCode::OK, &sealed))
                }
            }
        }
        Route::TransitUnseal(t) => {
            for_each_blob(vault, t, BlobOp::Unseal, http::parse_required(body)?, ev).await
        }
        Route::TransitRewrap(t) => {
            for_each_blob(vault, t, BlobOp::Rewrap, http::parse_required(body)?, ev).await
        }
        _ => unreachable!("routed by api::serve"),
    }
}

/// What [`for_each_blob`] does to a sealed blob.
#[derive(Clone, Copy)]
enum BlobOp {
    Unseal,
    Rewrap,
}

/// The answer for one blob.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum BlobDone {
    Unsealed(Plaintext),
    Rewrapped(Sealed),
}

async fn blob_op(
    vault: &Vault,
    tenant: &TenantId,
    op: BlobOp,
    sealed: &str,
    context: &str,
    ev: &mut Event,
) -> Result<BlobDone, Error> {
    Ok(match op {
        BlobOp::Unseal => BlobDone::Unsealed(unseal_one(vault, tenant, sealed, context, ev).await?),
        BlobOp::Rewrap => BlobDone::Rewrapped(Sealed {
            sealed: vault.transit_rewrap(tenant, sealed, context, ev).await?,
        }),
    })
}

/// Applies `op` to the blob of a single-form request, or to each item of a batch.
async fn for_each_blob(
    vault: &Vault,
    tenant: &TenantId,
    op: BlobOp,
    req: TransitUnseal,
    ev: &mut Event,
) -> Result<Response<Body>, Error> {
    match (req.items, req.sealed) {
        (Some(items), None) if req.context.is_none() => {
            check_batch(items.len())?;
            let mut results = Vec::with_capacity(items.len());
            for item in items {
                let done = blob_op(vault, tenant, op, &item.sealed, &item.context, ev).await;
                results.push(item_result(done));
            }
            Ok(http::json(StatusCode::OK, &Batch { items: results }))
        }
        (None, Some(sealed)) => {
            let context = req.context.unwrap_or_default();
            let done = blob_op(vault, tenant, op, &sealed, &context, ev).await?;
            Ok(http::json(StatusCode::OK, &done))
        }
        _ => Err(Error::invalid("give either items or a single sealed blob")),
    }
}

async fn seal_one(
    vault: &Vault,
    tenant: &TenantId,
    plaintext: &Secret,
    context: &str,
    ev: &mut Event,
) -> Result<Sealed, Error> {
    Ok(Sealed {
        sealed: vault.transit_seal(tenant, plaintext, context, ev).await?,
    })
}

async fn unseal_one(
    vault: &Vault,
    tenant: &TenantId,
    sealed: &str,
    context: &str,
    ev: &mut Event,
) -> Result<Plaintext, Error> {
    Ok(Plaintext {
        plaintext: vault.transit_unseal(tenant, sealed, context, ev).await?,
    })
}

fn check_batch(len: usize) -> Result<(), Error> {
    if (1..=MAX_BATCH).contains(&len) {
        Ok(())
    } else {
        Err(Error::invalid(format!("a batch holds 1-{MAX_BATCH} items")))
    }
}

fn item_result<T>(result: Result<T, Error>) -> BatchItem<T> {
    match result {
        Ok(value) => BatchItem::Done(value),
        Err(e) => BatchItem::Failed {
            error: http::detail(&e),
        },
    }
}
