//! Method and path → [`Route`], with ids and query parameters parsed into typed values.

use http::Method;

use crate::error::Error;
use crate::ids::{TenantId, TokenId};
use crate::policy::Capability;
use crate::vault::{AuditFilter, Expiry};
use vault_client::Timestamp;
use vault_client::audit::{Anchor, Outcome};

/// Default page size of token lists.
const DEFAULT_LIMIT: usize = 100;

/// Every endpoint, with its parsed path and query parameters.
#[derive(Debug)]
pub(super) enum Route {
    AuditArchive,
    AuditChains,
    AuditExport {
        node: Option<String>,
        after: u64,
        limit: usize,
    },
    AuditHash,
    AuditList {
        filter: AuditFilter,
        after: u64,
        limit: usize,
    },
    AuditPublicKey,
    AuditStatement {
        node: Option<String>,
        last: u64,
    },
    AuditVerify {
        anchor: Option<Anchor>,
        accept: Vec<u64>,
        /// Reread every chain from its first entry (`full=true`).
        full: bool,
    },
    Backup,
    Job(String),
    KeyConfig(TenantId),
    KeyHistory(Option<TenantId>),
    KmsMigrate,
    KmsRotate,
    MasterRotate,
    Retire(TenantId),
    Rewrap,
    RotateTenant(TenantId),
    TransitRewrap(TenantId),
    CreateTenant(TenantId),
    DeleteToken(TenantId, TokenId),
    DestroyTenant(TenantId),
    Health,
    Init,
    LeaseToken(TenantId, TokenId),
    ListTenants,
    ListTokens {
        tenant: TenantId,
        after: Option<TokenId>,
        limit: usize,
        expiry: Expiry,
    },
    Metrics,
    OpenApi,
    PutDecoy(TenantId, TokenId),
    PutToken(TenantId, TokenId),
    Receipt(TenantId),
    Recover,
    Recovery,
    ReleaseLease(TenantId, TokenId),
    Seal,
    ShowTenant(TenantId),
    ShowToken(TenantId, TokenId),
    Status,
    TransitSeal(TenantId),
    TransitUnseal(TenantId),
    Unseal,
    UnsealToken(TenantId, TokenId),
}

/// Where a route's capabilities must be granted (`policy::Policy::allows`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope<'a> {
    /// No capability: the health check.
    Open,
    /// Capabilities not kept per tenant (`sys:*`, `audit:read`): any rule that grants them.
    Unscoped,
    /// One tenant: a rule that grants the capability on a pattern matching it.
    Tenant(&'a str),
    /// A list across tenants, filtered afterwards to the tenants the caller may see: a rule
    /// that grants the capability on some tenant.
    EachTenant,
    /// The whole vault: a rule that grants the capability on every tenant (`*`).
    Vault,
}

impl Route {
    /// A stable name for logs and metrics.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Self::AuditArchive => "audit.archive",
            Self::AuditExport { .. } => "audit.export",
            Self::AuditStatement { .. } => "audit.export.statement",
            Self::AuditHash => "audit.hash",
            Self::AuditList { .. } => "audit.list",
            Self::AuditPublicKey => "audit.pubkey",
            Self::AuditChains => "audit.chains",
            Self::AuditVerify { .. } => "audit.verify",
            Self::Backup => "sys.backup",
            Self::Job(_) => "job.show",
            Self::KeyConfig(_) => "tenant.keys.config",
            Self::KeyHistory(_) => "keys.history",
            Self::KmsMigrate => "keys.kms.migrate",
            Self::KmsRotate => "keys.kms.rotate",
            Self::MasterRotate => "keys.master.rotate",
            Self::Retire(_) => "tenant.keys.retire",
            Self::Rewrap => "keys.rewrap",
            Self::RotateTenant(_) => "tenant.keys.rotate",
            Self::TransitRewrap(_) => "transit.rewrap",
            Self::CreateTenant(_) => "tenant.create",
            Self::DeleteToken(..) => "token.delete",
            Self::DestroyTenant(_) => "tenant.destroy",
            Self::Health => "sys.health",
            Self::Init => "sys.init",
            Self::LeaseToken(..) => "token.lease",
            Self::ListTenants => "tenant.list",
            Self::ListTokens { .. } => "token.list",
            Self::Metrics => "sys.metrics",
            Self::OpenApi => "sys.openapi",
            Self::PutDecoy(..) => "token.put.decoy",
            Self::PutToken(..) => "token.put",
            Self::Receipt(_) => "tenant.receipt",
            Self::Recover => "sys.recover",
            Self::Recovery => "sys.recovery.create",
            Self::ReleaseLease(..) => "token.lease.release",
            Self::Seal => "sys.seal",
            Self::ShowTenant(_) => "tenant.show",
            Self::ShowToken(..) => "token.show",
            Self::Status => "sys.status",
            Self::TransitSeal(_) => "transit.seal",
            Self::TransitUnseal(_) => "transit.unseal",
            Self::Unseal => "sys.unseal",
            Self::UnsealToken(..) => "token.unseal",
        }
    }

    /// What the caller needs: every capability in the list, each granted in the scope. One
    /// exhaustive match, with no catch-all arm: a new route does not compile until it says both
    /// what it needs and where.
    pub(super) fn access(&self) -> (&'static [Capability], Scope<'_>) {
        use Capability as C;
        use Scope::{EachTenant, Open, Tenant, Unscoped, Vault};
        match self {
            // The contract of the API holds nothing secret (docs/openapi.json).
            Self::Health | Self::OpenApi => (&[], Open),
            // audit:read is granted per tenant pattern: the entries of one tenant need it on that
            // tenant; the whole log (every tenant's entries and the vault's own) needs it on
            // "*"; what reveals no entry needs it on some tenant.
            Self::AuditList { filter, .. } => match filter.tenant.as_deref() {
                Some(t) => (&[C::AuditRead], Tenant(t)),
                None => (&[C::AuditRead], Vault),
            },
            Self::AuditExport { .. } | Self::AuditStatement { .. } | Self::AuditVerify { .. } => {
                (&[C::AuditRead], Vault)
            }
            Self::AuditHash | Self::AuditPublicKey | Self::AuditChains => {
                (&[C::AuditRead], EachTenant)
            }
            // It removes entries from the live log (after verifying them): a capability of its
            // own, which the auditor's grant does not have.
            Self::AuditArchive => (&[C::AuditArchive], Unscoped),
            // The vault's state is not kept per tenant.
            // Who may create the vault's first key may create its recovery key; who may unseal
            // may hand in a recovery share (docs/break-glass.md).
            Self::Init | Self::Recovery => (&[C::SysInit], Unscoped),
            Self::Unseal | Self::Recover => (&[C::SysUnseal], Unscoped),
            Self::Metrics | Self::Status => (&[C::SysStatus], Unscoped),
            Self::Seal => (&[C::SysSeal], Unscoped),
            // Every tenant's records, keys or jobs: granted on "*" only.
            Self::Backup => (&[C::SysBackup], Vault),
            // Key metadata: `keys:metadata`, which `keys:read` includes (the auditor's grant).
            Self::Job(_) | Self::KeyHistory(None) => (&[C::KeysMetadata], Vault),
            Self::KmsMigrate | Self::KmsRotate | Self::MasterRotate | Self::Rewrap => {
                (&[C::KeysRotate], Vault)
            }
            // A list, filtered to the tenants the caller may see (`api/tenants.rs`).
            Self::ListTenants => (&[C::KeysMetadata], EachTenant),
            Self::KeyHistory(Some(t)) | Self::ShowTenant(t) => {
                (&[C::KeysMetadata], Tenant(t.as_str()))
            }
            Self::KeyConfig(t) | Self::Retire(t) | Self::RotateTenant(t) => {
                (&[C::KeysRotate], Tenant(t.as_str()))
            }
            // It decrypts and encrypts: both, so a decrypt-only identity cannot drive the
            // encryption counters that trigger rotation (docs/api.md).
            Self::TransitRewrap(t) => (&[C::TransitUnseal, C::TransitSeal], Tenant(t.as_str())),
            Self::TransitSeal(t) => (&[C::TransitSeal], Tenant(t.as_str())),
            Self::TransitUnseal(t) => (&[C::TransitUnseal], Tenant(t.as_str())),
            Self::CreateTenant(t) => (&[C::TenantCreate], Tenant(t.as_str())),
            Self::DestroyTenant(t) => (&[C::TenantDestroy], Tenant(t.as_str())),
            // Proof of an erasure: what the log records, signed (the auditor's grant has it).
            Self::Receipt(t) => (&[C::AuditRead], Tenant(t.as_str())),
            Self::DeleteToken(t, _) => (&[C::TokenDelete], Tenant(t.as_str())),
            Self::ListTokens { tenant: t, .. } | Self::ShowToken(t, _) => {
                (&[C::TokenRead], Tenant(t.as_str()))
            }
            Self::PutToken(t, _) => (&[C::TokenSeal], Tenant(t.as_str())),
            Self::UnsealToken(t, _) => (&[C::TokenUnseal], Tenant(t.as_str())),
            // A refresh: it reads the token and writes the next one (docs/leases.md).
            Self::LeaseToken(t, _) => (&[C::TokenUnseal, C::TokenSeal], Tenant(t.as_str())),
            Self::ReleaseLease(t, _) => (&[C::TokenSeal], Tenant(t.as_str())),
            // Who may tell decoys apart may plant them (docs/alarms.md).
            Self::PutDecoy(t, _) => (&[C::TokenSeal, C::KeysRead], Tenant(t.as_str())),
        }
    }

    /// The tenant the request is about, if any (for its audit entry).
    pub(super) fn tenant(&self) -> Option<&str> {
        match self.access().1 {
            Scope::Tenant(t) => Some(t),
            Scope::Open | Scope::Unscoped | Scope::EachTenant | Scope::Vault => None,
        }
    }

    /// The token id the request is about, if any.
    pub(super) fn token(&self) -> Option<&TokenId> {
        match self {
            Self::DeleteToken(_, k)
            | Self::LeaseToken(_, k)
            | Self::PutDecoy(_, k)
            | Self::PutToken(_, k)
            | Self::ReleaseLease(_, k)
            | Self::ShowToken(_, k)
            | Self::UnsealToken(_, k) => Some(k),
            _ => None,
        }
    }
}

/// `op=a,b,keys.`: operation names or prefixes, each one the daemon writes
/// (`vault_client::audit::OPS`).
fn op_patterns(list: Option<String>) -> Result<Vec<String>, Error> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    list.split(',')
        .map(|p| {
            if vault_client::audit::is_op_pattern(p) {
                Ok(p.to_owned())
            } else {
                Err(Error::invalid(format!(
                    "op {p:?} is no operation the daemon writes, nor a prefix of one ending in \".\" (docs/audit-log.md lists them)"
                )))
            }
        })
        .collect()
}

/// Parses a request line. Unknown paths are 404, known paths with another method 405.
pub(super) fn parse(method: &Method, path: &str, query: Option<&str>) -> Result<Route, Error> {
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let mut q = Query::parse(query)?;
    let m = method.clone();
    let route = match segments.as_slice() {
        ["v1", "sys", "health"] => only(&m, GET, Route::Health)?,
        ["v1", "sys", "status"] => only(&m, GET, Route::Status)?,
        ["v1", "sys", "metrics"] => only(&m, GET, Route::Metrics)?,
        ["v1", "sys", "openapi.json"] => only(&m, GET, Route::OpenApi)?,
        ["v1", "sys", "init"] => only(&m, POST, Route::Init)?,
        ["v1", "sys", "unseal"] => only(&m, POST, Route::Unseal)?,
        ["v1", "sys", "seal"] => only(&m, POST, Route::Seal)?,
        ["v1", "sys", "recovery"] => only(&m, POST, Route::Recovery)?,
        ["v1", "sys", "recover"] => only(&m, POST, Route::Recover)?,
        ["v1", "sys", "backup"] => only(&m, GET, Route::Backup)?,
        ["v1", "audit"] => {
            let (after, limit) = (
                number(q.take("after"), 0)?,
                number(q.take("limit"), DEFAULT_LIMIT as u64)?,
            );
            let outcome = match q.take("outcome").as_deref() {
                None => None,
                Some("ok") => Some(Outcome::Ok),
                Some("denied") => Some(Outcome::Denied),
                Some("error") => Some(Outcome::Error),
                Some(_) => return Err(Error::invalid("outcome must be ok, denied or error")),
            };
            let time = |t: Option<String>| -> Result<Option<Timestamp>, Error> {
                t.map(|t| {
                    Timestamp::parse(&t)
                        .ok_or_else(|| Error::invalid("times are RFC 3339 or Unix seconds"))
                })
                .transpose()
            };
            let filter = AuditFilter {
                node: q.take("node"),
                tenant: q.take("tenant"),
                token: q.take("token"),
                actor: q.take("actor"),
                ops: op_patterns(q.take("op"))?,
                outcome,
                since: time(q.take("since"))?,
                until: time(q.take("until"))?,
                account_hmac: q.take("account_hmac"),
                subject_hmac: q.take("subject_hmac"),
            };
            let limit = usize::try_from(limit).map_err(|_| Error::invalid("limit too large"))?;
            only(
                &m,
                GET,
                Route::AuditList {
                    filter,
                    after,
                    limit,
                },
            )?
        }
        ["v1", "audit", "verify"] => {
            let anchor = q
                .take("head")
                .map(|h| {
                    h.parse::<Anchor>()
                        .map_err(|e| Error::invalid(format!("head: {e}")))
                })
                .transpose()?;
            let accept = q
                .take("accept")
                .map(|list| {
                    list.split(',')
                        .map(|n| {
                            n.trim().parse::<u64>().map_err(|_| {
                                Error::invalid("accept is a comma-separated list of seq numbers")
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?
                .unwrap_or_default();
            let full = match q.take("full").as_deref() {
                None | Some("false") => false,
                Some("true") => true,
                Some(_) => return Err(Error::invalid("full is true or false")),
            };
            only(
                &m,
                GET,
                Route::AuditVerify {
                    anchor,
                    accept,
                    full,
                },
            )?
        }
        ["v1", "audit", "archive"] => only(&m, POST, Route::AuditArchive)?,
        ["v1", "audit", "hash"] => only(&m, POST, Route::AuditHash)?,
        ["v1", "audit", "pubkey"] => only(&m, GET, Route::AuditPublicKey)?,
        ["v1", "audit", "chains"] => only(&m, GET, Route::AuditChains)?,
        ["v1", "audit", "export", "statement"] => {
            let last = q
                .take("last")
                .ok_or_else(|| Error::invalid("last is required: the last seq exported"))?;
            let last = last
                .parse()
                .map_err(|_| Error::invalid("last must be a seq number"))?;
            let node = q.take("node");
            only(&m, GET, Route::AuditStatement { node, last })?
        }
        ["v1", "audit", "export"] => {
            let (after, limit) = (number(q.take("after"), 0)?, number(q.take("limit"), 1000)?);
            let limit = usize::try_from(limit).map_err(|_| Error::invalid("limit too large"))?;
            let node = q.take("node");
            only(&m, GET, Route::AuditExport { node, after, limit })?
        }
        ["v1", "tenants"] => only(&m, GET, Route::ListTenants)?,
        ["v1", "tenants", t, "receipt"] => only(&m, GET, Route::Receipt(tenant(t)?))?,
        ["v1", "tenants", t] => match m {
            Method::PUT => Route::CreateTenant(tenant(t)?),
            Method::GET => Route::ShowTenant(tenant(t)?),
            Method::DELETE => {
                let t = tenant(t)?;
                match q.take("confirm") {
                    Some(c) if c == t.as_str() => Route::DestroyTenant(t),
                    _ => {
                        return Err(Error::invalid(format!(
                            "destroying a tenant needs ?confirm={t}"
                        )));
                    }
                }
            }
            _ => return Err(Error::MethodNotAllowed("GET, PUT, DELETE")),
        },
        ["v1", "tenants", t, "tokens"] => {
            let tenant = tenant(t)?;
            let after = q.take("after").map(|a| TokenId::parse(&a)).transpose()?;
            let limit = match q.take("limit") {
                None => DEFAULT_LIMIT,
                Some(l) => l
                    .parse()
                    .map_err(|_| Error::invalid("limit must be a number"))?,
            };
            let expiry = match (q.take("expired").as_deref(), q.take("expiring_within")) {
                (None | Some("false"), None) => Expiry::Any,
                (Some("true"), None) => Expiry::Expired,
                (None | Some("false"), Some(secs)) => Expiry::Within(
                    secs.parse()
                        .ok()
                        .filter(|s| (1..=i64::from(u32::MAX)).contains(s))
                        .ok_or_else(|| Error::invalid("expiring_within is seconds, 1 or more"))?,
                ),
                (Some("true"), Some(_)) => {
                    return Err(Error::invalid("give expired or expiring_within, not both"));
                }
                (Some(_), _) => return Err(Error::invalid("expired is true or false")),
            };
            only(
                &m,
                GET,
                Route::ListTokens {
                    tenant,
                    after,
                    limit,
                    expiry,
                },
            )?
        }
        ["v1", "tenants", t, "tokens", k] => match m {
            Method::PUT => Route::PutToken(tenant(t)?, token(k)?),
            Method::GET => Route::ShowToken(tenant(t)?, token(k)?),
            Method::DELETE => Route::DeleteToken(tenant(t)?, token(k)?),
            _ => return Err(Error::MethodNotAllowed("GET, PUT, DELETE")),
        },
        ["v1", "tenants", t, "decoys", k] => {
            let route = Route::PutDecoy(tenant(t)?, token(k)?);
            if m != Method::PUT {
                return Err(Error::MethodNotAllowed("PUT"));
            }
            route
        }
        ["v1", "tenants", t, "tokens", k, "lease"] => match m {
            Method::POST => Route::LeaseToken(tenant(t)?, token(k)?),
            Method::DELETE => Route::ReleaseLease(tenant(t)?, token(k)?),
            _ => return Err(Error::MethodNotAllowed("POST, DELETE")),
        },
        ["v1", "tenants", t, "tokens", k, "unseal"] => {
            only(&m, POST, Route::UnsealToken(tenant(t)?, token(k)?))?
        }
        ["v1", "tenants", t, "rewrap"] => only(&m, POST, Route::TransitRewrap(tenant(t)?))?,
        ["v1", "tenants", t, "keys", "rotate"] => only(&m, POST, Route::RotateTenant(tenant(t)?))?,
        ["v1", "tenants", t, "keys", "retire"] => only(&m, POST, Route::Retire(tenant(t)?))?,
        ["v1", "tenants", t, "keys", "config"] => only(&m, POST, Route::KeyConfig(tenant(t)?))?,
        ["v1", "keys", "master", "rotate"] => only(&m, POST, Route::MasterRotate)?,
        ["v1", "keys", "kms", "rotate"] => only(&m, POST, Route::KmsRotate)?,
        ["v1", "keys", "kms", "migrate"] => only(&m, POST, Route::KmsMigrate)?,
        ["v1", "keys", "rewrap"] => only(&m, POST, Route::Rewrap)?,
        ["v1", "keys", "history"] => {
            let t = q.take("tenant").map(|t| tenant(&t)).transpose()?;
            only(&m, GET, Route::KeyHistory(t))?
        }
        ["v1", "jobs", id] => only(&m, GET, Route::Job((*id).to_owned()))?,
        ["v1", "tenants", t, "seal"] => only(&m, POST, Route::TransitSeal(tenant(t)?))?,
        ["v1", "tenants", t, "unseal"] => only(&m, POST, Route::TransitUnseal(tenant(t)?))?,
        _ => {
            return Err(Error::NoEndpoint(path.to_owned()));
        }
    };
    q.finish()?;
    Ok(route)
}

fn number(text: Option<String>, default: u64) -> Result<u64, Error> {
    text.map_or(Ok(default), |t| {
        t.parse()
            .map_err(|_| Error::invalid("after and limit must be numbers"))
    })
}

/// The one method an endpoint takes, and its name for `Allow`.
struct Allowed(Method, &'static str);

const GET: Allowed = Allowed(Method::GET, "GET");
const POST: Allowed = Allowed(Method::POST, "POST");

fn only(method: &Method, allowed: Allowed, route: Route) -> Result<Route, Error> {
    if *method == allowed.0 {
        Ok(route)
    } else {
        Err(Error::MethodNotAllowed(allowed.1))
    }
}

fn tenant(text: &str) -> Result<TenantId, Error> {
    TenantId::parse(text)
}

fn token(text: &str) -> Result<TokenId, Error> {
    TokenId::parse(text)
}

/// Decodes `%XX` escapes (and `+` as a space); the result must be UTF-8 without control characters.
fn percent_decode(text: &str) -> Result<String, Error> {
    // The crate passes a `%` without two hex digits through as it is; here it is an error.
    let well_formed = text.split('%').skip(1).all(|after| {
        after
            .as_bytes()
            .get(..2)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return Err(Error::invalid(
            "malformed percent-encoding in the query: % must be followed by two hex digits",
        ));
    }
    let spaced = text.replace('+', " ");
    let decoded = percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map_err(|_| Error::invalid("the query is not UTF-8 once percent-decoded"))?;
    if decoded.chars().any(char::is_control) {
        return Err(Error::invalid("control characters in the query"));
    }
    Ok(decoded.into_owned())
}

/// Query parameters; any left unconsumed are refused.
struct Query(Vec<(String, String)>);

/// Most query parameters a request may carry: no route takes more than eleven. The cap is checked
/// before anything is decoded, so a query of thousands of keys (which any caller that can
/// connect may send, before authorization) costs one pass over its bytes.
const MAX_QUERY_PARAMS: usize = 16;

impl Query {
    fn parse(query: Option<&str>) -> Result<Self, Error> {
        let parts = || query.unwrap_or("").split('&').filter(|p| !p.is_empty());
        if parts().nth(MAX_QUERY_PARAMS).is_some() {
            return Err(Error::invalid(format!(
                "at most {MAX_QUERY_PARAMS} query parameters"
            )));
        }
        let mut pairs: Vec<(String, String)> = Vec::with_capacity(MAX_QUERY_PARAMS);
        for part in parts() {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let (k, v) = (percent_decode(k)?, percent_decode(v)?);
            if pairs.iter().any(|(seen, _)| *seen == k) {
                return Err(Error::invalid(format!("query parameter {k:?} given twice")));
            }
            pairs.push((k, v));
        }
        Ok(Self(pairs))
    }

    fn take(&mut self, key: &str) -> Option<String> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(i).1)
    }

    fn finish(self) -> Result<(), Error> {
        match self.0.first() {
            None => Ok(()),
            Some((k, _)) => Err(Error::invalid(format!("unknown query parameter {k:?}"))),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// String literals in the body of the first `fn NAME` of `text`, up to its closing brace.
    pub(crate) fn literals_in_fn(text: &str, name: &str) -> Vec<String> {
        let start = text.find(&format!("fn {name}(")).expect("fn present");
        let body = &text[start..];
        let end = body.find("\n    }\n").expect("fn ends");
        body[..end]
            .split('"')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    }

    /// Every `Event::system("…")` literal in `text`.
    fn system_ops(text: &str) -> Vec<String> {
        text.split("Event::system(\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_op_list_holds_every_op_the_code_writes_and_no_other() {
        use std::collections::BTreeSet;
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let read = |p: &str| std::fs::read_to_string(src.join(p)).expect("source");
        let mut written: BTreeSet<String> = literals_in_fn(&read("server/routes.rs"), "name")
            .into_iter()
            .collect();
        written.extend(
            literals_in_fn(&read("server/alarms.rs"), "name")
                .into_iter()
                .map(|kind| format!("alarm.{kind}")),
        );
        let mut stack = vec![src.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).expect("source");
                    // Test code names ops of its own ("test"); real ones have a dot.
                    written.extend(system_ops(&text).into_iter().filter(|op| op.contains('.')));
                }
            }
        }
        // Written with the caller as actor, or through a constant.
        written.extend(
            [
                "limits.rate_limited",
                "invalid",
                vault_client::audit::OP_TRUNCATED,
                vault_client::audit::OP_ADOPT_UNSIGNED,
            ]
            .map(str::to_owned),
        );
        assert!(read("server/mod.rs").contains("\"limits.rate_limited\""));
        assert!(read("server/api/mod.rs").contains("map_or(\"invalid\""));
        let listed: BTreeSet<String> = vault_client::audit::OPS
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(
            written.difference(&listed).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "written but not in vault_client::audit::OPS"
        );
        assert_eq!(
            listed.difference(&written).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "in vault_client::audit::OPS but never written"
        );
        let mut sorted = vault_client::audit::OPS.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, vault_client::audit::OPS, "OPS is in name order");
        // docs/audit-log.md lists each, in its table "Every operation".
        let docs = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/audit-log.md"),
        )
        .expect("docs/audit-log.md");
        let section = docs
            .split("### Every operation")
            .nth(1)
            .and_then(|s| s.split("\n#").next())
            .expect("docs/audit-log.md has a section \"Every operation\"");
        let documented: BTreeSet<String> = section
            .lines()
            .skip_while(|l| !l.starts_with("| ---"))
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .map(str::to_owned)
            .collect();
        assert_eq!(documented, listed, "docs/audit-log.md, \"Every operation\"");
    }

    #[test]
    fn op_filters_take_names_and_prefixes_and_refuse_the_rest() {
        assert_eq!(
            op_patterns(Some("token.unseal,keys.".into())).expect("ok"),
            ["token.unseal", "keys."]
        );
        assert!(op_patterns(None).expect("ok").is_empty());
        for bad in ["token.unsel", "keys", "nope.", "", "token.unseal,"] {
            let err = op_patterns(Some(bad.into())).expect_err(bad);
            assert!(err.to_string().contains("docs/audit-log.md"), "{err}");
        }
    }

    #[test]
    fn transit_rewrap_needs_both_seal_and_unseal() {
        use crate::policy::{Identity, Policy, Rule, TenantPattern};
        let route = parse(&Method::POST, "/v1/tenants/acme/rewrap", None).expect("route");
        let granting = |capabilities: Vec<Capability>| {
            Policy::new(vec![Rule {
                name: "caller".into(),
                uids: vec![7],
                gids: vec![],
                subjects: vec![],
                capabilities,
                tenants: vec![TenantPattern::Any],
                quotas: vec![],
                brakes: vec![],
            }])
        };
        let who = Identity::local(7, 7, None);
        // What api::serve checks: every capability the route needs.
        let allowed = |policy: &Policy| {
            let (capabilities, scope) = route.access();
            assert!(matches!(scope, Scope::Tenant("acme")));
            capabilities
                .iter()
                .all(|&c| policy.allows(&who, c, Some("acme")))
        };
        assert!(!allowed(&granting(vec![Capability::TransitUnseal])));
        assert!(!allowed(&granting(vec![Capability::TransitSeal])));
        assert!(allowed(&granting(vec![
            Capability::TransitUnseal,
            Capability::TransitSeal
        ])));
    }

    #[test]
    fn query_values_are_percent_decoded_and_malformed_ones_refused() {
        assert_eq!(
            percent_decode("a%2Fb+c%2B%C3%A9").expect("decodes"),
            "a/b c+é"
        );
        assert_eq!(percent_decode("plain").expect("decodes"), "plain");
        for bad in ["%", "%4", "%zz", "a%%41", "x%G1"] {
            let err = percent_decode(bad).expect_err(bad).to_string();
            assert!(err.contains("two hex digits"), "{bad}: {err}");
        }
        let err = percent_decode("%C3%28").expect_err("not UTF-8").to_string();
        assert!(err.contains("not UTF-8"), "{err}");
        let err = percent_decode("a%0Ab").expect_err("a newline").to_string();
        assert!(err.contains("control characters"), "{err}");
    }

    #[test]
    fn query_with_thousands_of_keys_is_refused_before_decoding() {
        let query: String = (0..10_000)
            .map(|i| format!("k{i}=%ZZ"))
            .collect::<Vec<_>>()
            .join("&");
        // Had it been decoded, the first "%ZZ" would be the error.
        let err = Query::parse(Some(&query)).err().expect("refused");
        assert_eq!(err.status().as_u16(), 400);
        assert!(err.to_string().contains("at most 16"), "{err}");
        let sixteen: Vec<String> = (0..16).map(|i| format!("k{i}=v")).collect();
        assert!(Query::parse(Some(&sixteen.join("&"))).is_ok());
        let seventeen: Vec<String> = (0..17).map(|i| format!("k{i}=v")).collect();
        assert!(Query::parse(Some(&seventeen.join("&"))).is_err());
    }

    #[test]
    fn routes_and_errors() {
        assert!(matches!(
            parse(&Method::GET, "/v1/sys/health", None),
            Ok(Route::Health)
        ));
        assert!(matches!(
            parse(
                &Method::GET,
                "/v1/tenants/acme/tokens",
                Some("after=t1&limit=5")
            ),
            Ok(Route::ListTokens { limit: 5, .. })
        ));
        let status = |m: &Method, p: &str, q: Option<&str>| {
            parse(m, p, q).err().map(|f| f.status().as_u16())
        };
        assert_eq!(status(&Method::POST, "/v1/sys/health", None), Some(405));
        let backup = parse(&Method::GET, "/v1/sys/backup", None).expect("backup route");
        assert_eq!(
            (backup.name(), backup.access()),
            ("sys.backup", (&[Capability::SysBackup][..], Scope::Vault))
        );
        assert_eq!(status(&Method::POST, "/v1/sys/backup", None), Some(405));
        assert_eq!(
            status(&Method::GET, "/v1/sys/backup", Some("tenant=acme")),
            Some(400)
        );
        assert_eq!(status(&Method::GET, "/v1/nope", None), Some(404));
        assert_eq!(status(&Method::GET, "/v1/tenants/a%2Fb", None), Some(400));
        assert_eq!(status(&Method::GET, "/v1/tenants/..", None), Some(400));
        assert_eq!(
            status(&Method::DELETE, "/v1/tenants/acme", Some("confirm=other")),
            Some(400)
        );
        assert_eq!(
            status(&Method::GET, "/v1/sys/status", Some("x=1")),
            Some(400)
        );
        assert!(matches!(
            parse(&Method::DELETE, "/v1/tenants/acme", Some("confirm=acme")),
            Ok(Route::DestroyTenant(_))
        ));
    }
}
