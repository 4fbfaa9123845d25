//! Request handling: route, authorize, read the body, dispatch to one operation group.
//!
//! - `sys`: health, status, init, seal, unseal, metrics.
//! - `tenants`: create, list, show, destroy.
//! - `tokens`: put, unseal, metadata, list, delete.
//! - `transit`: seal and unseal blobs, single and batch.

use std::time::Instant;

use ::http::{Request, Response};
use hyper::body::Incoming;

use super::App;
use super::message::{self, Body, Failure};
use super::routes::{self, Route};
use crate::policy::Identity;
use ::http::StatusCode;

mod sys;
mod tenants;
mod tokens;
mod transit;

/// Answers one request. Never fails: every error becomes an error answer.
pub(super) async fn handle(app: &App, who: Identity, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let route = routes::parse(&parts.method, parts.uri.path(), parts.uri.query());
    let name = route.as_ref().map_or("unknown", Route::name);
    let (tenant, token) = match &route {
        Ok(r) => (
            r.tenant().map(ToString::to_string),
            r.token().map(ToString::to_string),
        ),
        Err(_) => (None, None),
    };
    let response = match route {
        Err(failure) => message::failure(&failure),
        Ok(route) => match serve(app, who, &route, body).await {
            Ok(response) => response,
            Err(failure) => {
                if failure.status.is_server_error() {
                    tracing::warn!(route = name, code = failure.code, %who, "request failed");
                }
                message::failure(&failure)
            }
        },
    };
    let status = response.status().as_u16();
    app.metrics.record(name, status);
    tracing::debug!(route = name, status, %who, tenant, token, micros = started.elapsed().as_micros() as u64, "request");
    response
}

async fn serve(
    app: &App,
    who: Identity,
    route: &Route,
    body: Incoming,
) -> Result<Response<Body>, Failure> {
    if let Some(capability) = route.capability() {
        let tenant = route.tenant().map(|t| t.as_str());
        if !app.policy.allows(&who, capability, tenant) {
            tracing::info!(route = route.name(), capability = capability.name(), %who, "denied");
            return Err(Failure::new(
                StatusCode::FORBIDDEN,
                "denied",
                format!("{} is not granted to {who}", capability.name()),
            ));
        }
    }
    let body = message::read_body(body).await?;
    match route {
        Route::Health
        | Route::Status
        | Route::Init
        | Route::Unseal
        | Route::Seal
        | Route::Metrics => sys::serve(app, route, &body).await,
        Route::CreateTenant(_)
        | Route::ShowTenant(_)
        | Route::ListTenants
        | Route::DestroyTenant(_) => tenants::serve(app, who, route, &body).await,
        Route::PutToken(..)
        | Route::UnsealToken(..)
        | Route::ShowToken(..)
        | Route::ListTokens { .. }
        | Route::DeleteToken(..) => tokens::serve(app, route, &body).await,
        Route::TransitSeal(_) | Route::TransitUnseal(_) => transit::serve(app, route, &body),
    }
}

/// Refuses a body where none is expected (whitespace and `{}` are fine).
fn no_body(body: &[u8]) -> Result<(), Failure> {
    #[derive(serde::Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Empty {}
    message::parse::<Empty>(body, true).map(drop)
}
