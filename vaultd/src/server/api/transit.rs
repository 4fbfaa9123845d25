//! `/v1/tenants/{t}/seal` and `/unseal`: transit mode, single and batch.

use ::http::{Response, StatusCode};
use vault_client::wire::{
    Batch, BatchItem, ErrorDetail, Plaintext, Sealed, TransitSeal, TransitUnseal,
};

use crate::audit::Event;
use crate::error::Error;
use crate::ids::TenantId;
use crate::secret::Secret;
use crate::server::App;
use crate::server::message::{self as http, Body, Failure};
use crate::server::routes::Route;
use crate::vault::{MAX_BATCH, Vault};

pub(super) fn serve(
    app: &App,
    route: &Route,
    body: &[u8],
    ev: &mut Event,
) -> Result<Response<Body>, Failure> {
    let vault = &app.vault;
    match route {
        Route::TransitSeal(t) => {
            let req: TransitSeal = http::parse_required(body)?;
            match req.items {
                Some(items) => {
                    if req.plaintext.is_some()
                        || req.plaintext_b64.is_some()
                        || req.context.is_some()
                    {
                        return Err(Failure::invalid(
                            "give either items or a single plaintext, not both",
                        ));
                    }
                    check_batch(items.len())?;
                    let results = items
                        .into_iter()
                        .map(|item| {
                            item_result(seal_one(
                                vault,
                                t,
                                item.plaintext,
                                item.plaintext_b64,
                                &item.context,
                                ev,
                            ))
                        })
                        .collect();
                    Ok(http::json(StatusCode::OK, &Batch { items: results }))
                }
                None => {
                    let context = req.context.unwrap_or_default();
                    let sealed =
                        seal_one(vault, t, req.plaintext, req.plaintext_b64, &context, ev)?;
                    Ok(http::json(StatusCode::OK, &sealed))
                }
            }
        }
        Route::TransitUnseal(t) => {
            for_each_blob(http::parse_required(body)?, ev, |sealed, context, ev| {
                unseal_one(vault, t, sealed, context, ev)
            })
        }
        Route::TransitRewrap(t) => {
            for_each_blob(http::parse_required(body)?, ev, |sealed, context, ev| {
                Ok(Sealed {
                    sealed: vault.transit_rewrap(t, sealed, context, ev)?,
                })
            })
        }
        _ => unreachable!("routed by api::serve"),
    }
}

/// Applies `one` to the blob of a single-form request, or to each item of a batch.
fn for_each_blob<T: serde::Serialize>(
    req: TransitUnseal,
    ev: &mut Event,
    mut one: impl FnMut(&str, &str, &mut Event) -> Result<T, Failure>,
) -> Result<Response<Body>, Failure> {
    match (req.items, req.sealed) {
        (Some(items), None) if req.context.is_none() => {
            check_batch(items.len())?;
            let results = items
                .into_iter()
                .map(|item| item_result(one(&item.sealed, &item.context, ev)))
                .collect();
            Ok(http::json(StatusCode::OK, &Batch { items: results }))
        }
        (None, Some(sealed)) => {
            let context = req.context.unwrap_or_default();
            Ok(http::json(StatusCode::OK, &one(&sealed, &context, ev)?))
        }
        _ => Err(Failure::invalid(
            "give either items or a single sealed blob",
        )),
    }
}

fn seal_one(
    vault: &Vault,
    tenant: &TenantId,
    text: Option<Secret>,
    b64: Option<Secret>,
    context: &str,
    ev: &mut Event,
) -> Result<Sealed, Failure> {
    let plaintext = match (text, b64) {
        (Some(p), None) | (None, Some(p)) => p,
        _ => {
            return Err(Failure::invalid(
                "give exactly one of plaintext and plaintext_b64",
            ));
        }
    };
    Ok(Sealed {
        sealed: vault.transit_seal(tenant, &plaintext, context, ev)?,
    })
}

fn unseal_one(
    vault: &Vault,
    tenant: &TenantId,
    sealed: &str,
    context: &str,
    ev: &mut Event,
) -> Result<Plaintext, Failure> {
    let plain = vault.transit_unseal(tenant, sealed, context, ev)?;
    Ok(if plain.expose_str().is_some() {
        Plaintext {
            plaintext: Some(plain),
            plaintext_b64: None,
        }
    } else {
        Plaintext {
            plaintext: None,
            plaintext_b64: Some(plain),
        }
    })
}

fn check_batch(len: usize) -> Result<(), Failure> {
    if (1..=MAX_BATCH).contains(&len) {
        Ok(())
    } else {
        Err(Failure::from(Error::Invalid(format!(
            "a batch holds 1-{MAX_BATCH} items"
        ))))
    }
}

fn item_result<T>(result: Result<T, Failure>) -> BatchItem<T> {
    match result {
        Ok(value) => BatchItem::Done(value),
        Err(f) => BatchItem::Failed {
            error: ErrorDetail {
                code: f.code.to_owned(),
                message: f.message,
            },
        },
    }
}
