//! The OpenAPI 3.1 document of the API (`docs/openapi.json`, `GET /v1/sys/openapi.json`). The
//! schemas are derived from the wire types both sides use (`vault_client::wire`, with
//! `utoipa`); the operations are [`OPERATIONS`], which a test holds to the router (every
//! route, no other), and a test holds the committed file to what this builds.

use std::borrow::Cow;
use std::sync::OnceLock;

use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ComponentsBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{
    Content, InfoBuilder, OpenApi, OpenApiBuilder, PathItem, PathsBuilder, Ref, RefOr, Required,
    ResponseBuilder, ResponsesBuilder,
};
use utoipa::{PartialSchema, ToSchema};
use vault_client::audit::{Report, StatementLine};
use vault_client::wire::{self, ErrorBody};

/// The document as served: built once.
pub(crate) fn json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut text = serde_json::to_string_pretty(&document()).expect("the document serializes");
        text.push('\n');
        text
    })
}

/// What an operation answers on success.
enum Answer {
    /// JSON of this schema, with this status.
    Json(u16, Box<RefOr<Schema>>),
    /// One of two JSON shapes (a single item or a batch).
    EitherJson(Box<RefOr<Schema>>, Box<RefOr<Schema>>),
    /// A body of this content type.
    Body(&'static str, &'static str),
    /// `GET /v1/sys/health`: its state as 200, 503 or 501, always the same shape.
    Health,
    /// This document: a JSON object.
    Document,
}

/// A query parameter: name, whether required, schema type, description.
type Param = (&'static str, bool, Type, &'static str);

/// One operation of the API.
struct Operation {
    method: HttpMethod,
    path: &'static str,
    /// The route's name (`vault_client::audit::OPS`): its operation id.
    op: &'static str,
    /// What it needs: a capability, or nothing.
    needs: &'static str,
    summary: &'static str,
    query: &'static [Param],
    /// The JSON body, and whether it may be left out.
    body: Option<(RefOr<Schema>, bool)>,
    answer: Answer,
}

/// A reference to the component schema of `T`, which [`components`] registers.
fn r<T: ToSchema>() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(T::name()))
}

/// Every operation, in the order of `docs/api.md`.
fn operations() -> Vec<Operation> {
    use HttpMethod::{Delete, Get, Post, Put};
    use Type::{Boolean, Integer, String as Str};
    let op = |method, path, op, needs, summary| Operation {
        method,
        path,
        op,
        needs,
        summary,
        query: &[],
        body: None,
        answer: Answer::Json(200, Box::new(r::<wire::StateResponse>())),
    };
    let json = |status, schema| Answer::Json(status, Box::new(schema));
    let either = |one, batch| Answer::EitherJson(Box::new(one), Box::new(batch));
    let with = |mut o: Operation, body: Option<(RefOr<Schema>, bool)>, answer: Answer| {
        o.body = body;
        o.answer = answer;
        o
    };
    let required = |s| Some((s, false));
    let optional = |s| Some((s, true));
    let mut ops = vec![
        with(
            op(
                Get,
                "/v1/sys/health",
                "sys.health",
                "",
                "The vault's state, for load balancers",
            ),
            None,
            Answer::Health,
        ),
        with(
            op(
                Get,
                "/v1/sys/status",
                "sys.status",
                "sys:status",
                "State, versions, KMS, storage",
            ),
            None,
            json(200, r::<wire::Status>()),
        ),
        with(
            op(
                Post,
                "/v1/sys/init",
                "sys.init",
                "sys:init",
                "Create the vault's keys",
            ),
            None,
            json(200, r::<wire::InitResponse>()),
        ),
        op(
            Post,
            "/v1/sys/unseal",
            "sys.unseal",
            "sys:unseal",
            "Unseal through the KMS",
        ),
        op(
            Post,
            "/v1/sys/seal",
            "sys.seal",
            "sys:seal",
            "Seal: drop every key from memory",
        ),
        with(
            op(
                Post,
                "/v1/sys/recovery",
                "sys.recovery.create",
                "sys:init",
                "Create break-glass recovery shares",
            ),
            required(r::<wire::RecoveryCreate>()),
            json(200, r::<wire::RecoveryShares>()),
        ),
        with(
            op(
                Post,
                "/v1/sys/recover",
                "sys.recover",
                "sys:unseal",
                "Hand in one recovery share",
            ),
            required(r::<wire::RecoverShare>()),
            json(200, r::<wire::RecoverProgress>()),
        ),
        with(
            op(
                Get,
                "/v1/sys/metrics",
                "sys.metrics",
                "sys:status",
                "Prometheus metrics",
            ),
            None,
            Answer::Body("text/plain; version=0.0.4", "Prometheus text format 0.0.4"),
        ),
        with(
            op(
                Get,
                "/v1/sys/backup",
                "sys.backup",
                "sys:backup on *",
                "A consistent backup, streamed",
            ),
            None,
            Answer::Body(
                "application/octet-stream",
                "the backup file (docs/storage.md)",
            ),
        ),
        with(
            op(
                Get,
                "/v1/sys/openapi.json",
                "sys.openapi",
                "",
                "This document",
            ),
            None,
            Answer::Document,
        ),
        with(
            op(
                Get,
                "/v1/tenants",
                "tenant.list",
                "keys:metadata",
                "The tenants the caller may see",
            ),
            None,
            json(200, r::<wire::TenantList>()),
        ),
        with(
            op(
                Put,
                "/v1/tenants/{tenant}",
                "tenant.create",
                "tenant:create",
                "Create a tenant and its first data key",
            ),
            None,
            json(200, r::<wire::TenantInfo>()),
        ),
        with(
            op(
                Get,
                "/v1/tenants/{tenant}",
                "tenant.show",
                "keys:metadata",
                "A tenant's key versions",
            ),
            None,
            json(200, r::<wire::TenantInfo>()),
        ),
        with(
            op(
                Delete,
                "/v1/tenants/{tenant}",
                "tenant.destroy",
                "tenant:destroy",
                "Destroy a tenant's keys and records",
            ),
            None,
            json(200, r::<wire::DestroyResponse>()),
        ),
        with(
            op(
                Get,
                "/v1/tenants/{tenant}/receipt",
                "tenant.receipt",
                "audit:read",
                "The signed erasure receipt",
            ),
            None,
            Answer::Body(
                "application/x-ndjson",
                "the receipt line and its signature line",
            ),
        ),
        with(
            op(
                Get,
                "/v1/tenants/{tenant}/tokens",
                "token.list",
                "token:read",
                "A page of token metadata",
            ),
            None,
            json(200, r::<wire::TokenList>()),
        ),
        with(
            op(
                Put,
                "/v1/tenants/{tenant}/tokens/{id}",
                "token.put",
                "token:seal",
                "Store a token",
            ),
            required(r::<wire::PutToken>()),
            json(200, r::<wire::PutTokenResponse>()),
        ),
        with(
            op(
                Get,
                "/v1/tenants/{tenant}/tokens/{id}",
                "token.show",
                "token:read",
                "A token's metadata, never its secret",
            ),
            None,
            json(200, r::<wire::TokenMeta>()),
        ),
        with(
            op(
                Delete,
                "/v1/tenants/{tenant}/tokens/{id}",
                "token.delete",
                "token:delete",
                "Delete a token",
            ),
            None,
            json(200, r::<wire::Deleted>()),
        ),
        with(
            op(
                Put,
                "/v1/tenants/{tenant}/decoys/{id}",
                "token.put.decoy",
                "token:seal and keys:read",
                "Plant a decoy token",
            ),
            required(r::<wire::PutToken>()),
            json(200, r::<wire::PutTokenResponse>()),
        ),
        with(
            op(
                Post,
                "/v1/tenants/{tenant}/tokens/{id}/unseal",
                "token.unseal",
                "token:unseal",
                "Read a token",
            ),
            optional(r::<wire::UnsealToken>()),
            json(200, r::<wire::UnsealTokenResponse>()),
        ),
        with(
            op(
                Post,
                "/v1/tenants/{tenant}/tokens/{id}/lease",
                "token.lease",
                "token:unseal and token:seal",
                "Lease a token to refresh it",
            ),
            required(r::<wire::LeaseToken>()),
            json(200, r::<wire::LeaseTokenResponse>()),
        ),
        with(
            op(
                Delete,
                "/v1/tenants/{tenant}/tokens/{id}/lease",
                "token.lease.release",
                "token:seal",
                "Give a lease back",
            ),
            required(r::<wire::ReleaseLease>()),
            json(200, r::<wire::Released>()),
        ),
        with(
            op(
                Post,
                "/v1/tenants/{tenant}/seal",
                "transit.seal",
                "transit:seal",
                "Encrypt (transit)",
            ),
            required(r::<wire::TransitSeal>()),
            either(r::<wire::Sealed>(), wire::Batch::<wire::Sealed>::schema()),
        ),
        with(
            op(
                Post,
                "/v1/tenants/{tenant}/unseal",
                "transit.unseal",
                "transit:unseal",
                "Decrypt (transit)",
            ),
            required(r::<wire::TransitUnseal>()),
            either(
                r::<wire::Plaintext>(),
                wire::Batch::<wire::Plaintext>::schema(),
            ),
        ),
        with(
            op(
                Post,
                "/v1/tenants/{tenant}/rewrap",
                "transit.rewrap",
                "transit:unseal and transit:seal",
                "Re-encrypt under the current key (transit)",
            ),
            required(r::<wire::TransitUnseal>()),
            either(r::<wire::Sealed>(), wire::Batch::<wire::Sealed>::schema()),
        ),
        with(
            op(
                Post,
                "/v1/tenants/{tenant}/keys/rotate",
                "tenant.keys.rotate",
                "keys:rotate",
                "Rotate a tenant's data key",
            ),
            None,
            json(200, r::<wire::TenantRotated>()),
        ),
        with(
            op(
                Post,
                "/v1/tenants/{tenant}/keys/retire",
                "tenant.keys.retire",
                "keys:rotate",
                "Destroy data key versions below one",
            ),
            required(r::<wire::Retire>()),
            json(200, r::<wire::Retired>()),
        ),
        with(
            op(
                Post,
                "/v1/tenants/{tenant}/keys/config",
                "tenant.keys.config",
                "keys:rotate",
                "A tenant's rotation policy",
            ),
            required(r::<wire::KeyConfig>()),
            json(200, r::<wire::KeyConfig>()),
        ),
        with(
            op(
                Post,
                "/v1/keys/master/rotate",
                "keys.master.rotate",
                "keys:rotate on *",
                "Rotate the master key",
            ),
            None,
            json(200, r::<wire::MasterRotated>()),
        ),
        with(
            op(
                Post,
                "/v1/keys/kms/rotate",
                "keys.kms.rotate",
                "keys:rotate on *",
                "Re-encrypt the master key under another KMS key",
            ),
            required(r::<wire::KmsRotate>()),
            json(200, r::<wire::KmsRotated>()),
        ),
        with(
            op(
                Post,
                "/v1/keys/kms/migrate",
                "keys.kms.migrate",
                "keys:rotate on *",
                "Encrypt the master key under a new KMS key",
            ),
            required(r::<wire::KmsRotate>()),
            json(200, r::<wire::KmsRotated>()),
        ),
        with(
            op(
                Post,
                "/v1/keys/rewrap",
                "keys.rewrap",
                "keys:rotate on *",
                "Start moving records to current key versions",
            ),
            optional(r::<wire::RewrapStart>()),
            json(202, r::<wire::JobStarted>()),
        ),
        with(
            op(
                Get,
                "/v1/keys/history",
                "keys.history",
                "keys:metadata",
                "Key events and live versions",
            ),
            None,
            json(200, r::<wire::KeyHistory>()),
        ),
        with(
            op(
                Get,
                "/v1/jobs/{id}",
                "job.show",
                "keys:metadata on *",
                "A job's progress",
            ),
            None,
            json(200, r::<wire::Job>()),
        ),
        with(
            op(
                Get,
                "/v1/audit",
                "audit.list",
                "audit:read",
                "Audit entries, filtered",
            ),
            None,
            json(200, r::<wire::AuditPage>()),
        ),
        with(
            op(
                Get,
                "/v1/audit/verify",
                "audit.verify",
                "audit:read on *",
                "Verify the audit log",
            ),
            None,
            json(200, r::<Report>()),
        ),
        with(
            op(
                Post,
                "/v1/audit/hash",
                "audit.hash",
                "audit:read",
                "The HMAC of a value as entries write it",
            ),
            required(r::<wire::AuditHashRequest>()),
            json(200, r::<wire::AuditHash>()),
        ),
        with(
            op(
                Get,
                "/v1/audit/pubkey",
                "audit.pubkey",
                "audit:read",
                "The audit public key",
            ),
            None,
            json(200, r::<wire::AuditPublicKey>()),
        ),
        with(
            op(
                Get,
                "/v1/audit/chains",
                "audit.chains",
                "audit:read",
                "The chains of the log",
            ),
            None,
            json(200, r::<wire::AuditChains>()),
        ),
        with(
            op(
                Get,
                "/v1/audit/export",
                "audit.export",
                "audit:read on *",
                "A page of the raw log",
            ),
            None,
            Answer::Body(
                "application/x-ndjson",
                "entries and signed heads, one per line, as stored",
            ),
        ),
        with(
            op(
                Get,
                "/v1/audit/export/statement",
                "audit.export.statement",
                "audit:read on *",
                "The signed statement that ends an export",
            ),
            None,
            json(200, r::<StatementLine>()),
        ),
        with(
            op(
                Post,
                "/v1/audit/archive",
                "audit.archive",
                "audit:archive",
                "Archive a chain's oldest entries",
            ),
            required(r::<wire::AuditArchiveRequest>()),
            json(200, r::<wire::AuditArchived>()),
        ),
    ];
    for o in &mut ops {
        o.query = match o.op {
            "tenant.destroy" => &[("confirm", true, Str, "the tenant's name again")],
            "token.list" => &[
                ("after", false, Str, "the last id of the previous page"),
                ("limit", false, Integer, "page size"),
                ("expired", false, Boolean, "only tokens past their expiry"),
                (
                    "expiring_within",
                    false,
                    Integer,
                    "only tokens expiring within this many seconds",
                ),
            ],
            "keys.history" => &[("tenant", false, Str, "one tenant's history")],
            "audit.list" => &[
                ("node", false, Str, "the chain of this node"),
                ("after", false, Integer, "entries after this seq"),
                ("limit", false, Integer, "page size, 1-10000"),
                ("tenant", false, Str, "only this tenant"),
                ("token", false, Str, "only this token id"),
                ("actor", false, Str, "a uid, cert=NAME, or system"),
                (
                    "op",
                    false,
                    Str,
                    "operations or prefixes ending in '.', comma-separated",
                ),
                ("outcome", false, Str, "ok, denied or error"),
                ("since", false, Str, "not before (RFC 3339 or Unix seconds)"),
                ("until", false, Str, "not after (RFC 3339 or Unix seconds)"),
                (
                    "account_hmac",
                    false,
                    Str,
                    "POST /v1/audit/hash of an account",
                ),
                (
                    "subject_hmac",
                    false,
                    Str,
                    "POST /v1/audit/hash of a subject",
                ),
            ],
            "audit.verify" => &[
                ("head", false, Str, "SEQ:HASH the log must contain"),
                (
                    "accept",
                    false,
                    Str,
                    "reviewed audit.adopt_unsigned seqs, comma-separated",
                ),
                ("full", false, Boolean, "reread every entry"),
            ],
            "audit.export" => &[
                ("node", false, Str, "the chain of this node"),
                ("after", false, Integer, "entries after this seq"),
                ("limit", false, Integer, "seq numbers per page, 1-10000"),
            ],
            "audit.export.statement" => &[
                ("last", true, Integer, "the last seq exported"),
                ("node", false, Str, "the chain of this node"),
            ],
            _ => &[],
        };
    }
    ops
}

/// Every schema the operations name, and what those name.
fn components() -> Vec<(String, RefOr<Schema>)> {
    let mut all = Vec::new();
    macro_rules! add {
        ($($t:ty),* $(,)?) => {$(
            all.push((<$t as ToSchema>::name().into_owned(), <$t as PartialSchema>::schema()));
            <$t as ToSchema>::schemas(&mut all);
        )*};
    }
    add!(
        ErrorBody,
        wire::Health,
        wire::StateResponse,
        wire::Status,
        wire::InitResponse,
        wire::RecoveryCreate,
        wire::RecoveryShares,
        wire::RecoverShare,
        wire::RecoverProgress,
        wire::TenantList,
        wire::TenantInfo,
        wire::DestroyResponse,
        wire::TokenList,
        wire::PutToken,
        wire::PutTokenResponse,
        wire::TokenMeta,
        wire::Deleted,
        wire::UnsealToken,
        wire::UnsealTokenResponse,
        wire::LeaseToken,
        wire::LeaseTokenResponse,
        wire::ReleaseLease,
        wire::Released,
        wire::TransitSeal,
        wire::TransitUnseal,
        wire::Sealed,
        wire::Plaintext,
        wire::TenantRotated,
        wire::Retire,
        wire::Retired,
        wire::KeyConfig,
        wire::MasterRotated,
        wire::KmsRotate,
        wire::KmsRotated,
        wire::RewrapStart,
        wire::JobStarted,
        wire::KeyHistory,
        wire::Job,
        wire::AuditPage,
        Report,
        wire::AuditHashRequest,
        wire::AuditHash,
        wire::AuditPublicKey,
        wire::AuditChains,
        StatementLine,
        wire::AuditArchiveRequest,
        wire::AuditArchived,
    );
    // The batch answers are inlined (one per item type); what their items name is registered.
    <wire::Batch<wire::Sealed> as ToSchema>::schemas(&mut all);
    <wire::Batch<wire::Plaintext> as ToSchema>::schemas(&mut all);
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all.dedup_by(|a, b| a.0 == b.0);
    all
}

/// The whole document.
pub(crate) fn document() -> OpenApi {
    let id_schema = || {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"))
    };
    let error = || {
        ResponseBuilder::new()
            .description("refused: the error's code and message (docs/api.md, \"Errors\")")
            .content("application/json", Content::new(Some(r::<ErrorBody>())))
            .build()
    };
    let mut paths = PathsBuilder::new();
    for o in operations() {
        let mut b = OperationBuilder::new()
            .operation_id(Some(o.op))
            .summary(Some(o.summary))
            .description(Some(match o.needs {
                "" => Cow::Borrowed("Needs no capability."),
                needs => Cow::Owned(format!("Needs `{needs}`.")),
            }));
        for name in ["tenant", "id"] {
            if o.path.contains(&format!("{{{name}}}")) {
                b = b.parameter(
                    ParameterBuilder::new()
                        .name(name)
                        .parameter_in(ParameterIn::Path)
                        .required(Required::True)
                        .schema(Some(id_schema())),
                );
            }
        }
        for (name, required, kind, what) in o.query {
            b = b.parameter(
                ParameterBuilder::new()
                    .name(*name)
                    .parameter_in(ParameterIn::Query)
                    .required(if *required {
                        Required::True
                    } else {
                        Required::False
                    })
                    .description(Some(*what))
                    .schema(Some(ObjectBuilder::new().schema_type(kind.clone()))),
            );
        }
        if let Some((schema, optional)) = o.body {
            b = b.request_body(Some(
                RequestBodyBuilder::new()
                    .required(Some(if optional {
                        Required::False
                    } else {
                        Required::True
                    }))
                    .content("application/json", Content::new(Some(schema)))
                    .build(),
            ));
        }
        let mut responses = ResponsesBuilder::new();
        match o.answer {
            Answer::Json(status, schema) => {
                responses = responses.response(
                    status.to_string(),
                    ResponseBuilder::new()
                        .description("done")
                        .content("application/json", Content::new(Some(*schema))),
                );
            }
            Answer::EitherJson(one, batch) => {
                let either = OneOfBuilder::new().item(*one).item(*batch);
                responses = responses.response(
                    "200",
                    ResponseBuilder::new()
                        .description("done: the single form, or the batch form (per item)")
                        .content("application/json", Content::new(Some(either))),
                );
            }
            Answer::Body(content_type, what) => {
                responses = responses.response(
                    "200",
                    ResponseBuilder::new()
                        .description(what)
                        .content(content_type, Content::new(Some(String::schema()))),
                );
            }
            Answer::Document => {
                let object = ObjectBuilder::new().schema_type(Type::Object);
                responses = responses.response(
                    "200",
                    ResponseBuilder::new()
                        .description("the OpenAPI 3.1 document of the API")
                        .content("application/json", Content::new(Some(object))),
                );
            }
            Answer::Health => {
                for (status, what) in [
                    ("200", "unsealed, audit and storage available"),
                    ("503", "sealed, or audit or storage unavailable"),
                    ("501", "uninitialized"),
                ] {
                    responses = responses.response(
                        status,
                        ResponseBuilder::new()
                            .description(what)
                            .content("application/json", Content::new(Some(r::<wire::Health>()))),
                    );
                }
            }
        }
        if o.op != "sys.health" {
            responses = responses.response("default", error());
        }
        paths = paths.path(
            o.path,
            PathItem::new(o.method, b.responses(responses).build()),
        );
    }
    let mut schemas = ComponentsBuilder::new();
    for (name, schema) in components() {
        schemas = schemas.schema(name, schema);
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("vaultd")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The vaultd HTTP API over its Unix socket (callers known by SO_PEERCRED) or \
                     its mutual-TLS listener (callers known by their certificate). docs/api.md \
                     says what each operation does; this document is generated from the wire \
                     types (vaultd/src/server/openapi.rs).",
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(schemas.build()))
        .build()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::server::routes;

    /// A request path and query for `o`: its parameters filled in.
    fn concrete(o: &Operation) -> (String, String) {
        let path = o.path.replace("{tenant}", "acme").replace("{id}", "t1");
        let required: Vec<String> = o
            .query
            .iter()
            .filter(|(_, required, ..)| *required)
            .map(|(name, ..)| match *name {
                "confirm" => "confirm=acme".to_owned(),
                other => format!("{other}=1"),
            })
            .collect();
        (path, required.join("&"))
    }

    #[test]
    fn every_route_is_an_operation_and_every_operation_a_route() {
        let mut documented = BTreeSet::new();
        for o in operations() {
            let method = match o.method {
                HttpMethod::Get => http::Method::GET,
                HttpMethod::Post => http::Method::POST,
                HttpMethod::Put => http::Method::PUT,
                HttpMethod::Delete => http::Method::DELETE,
                _ => unreachable!("the API uses four methods"),
            };
            let (path, query) = concrete(&o);
            let query = (!query.is_empty()).then_some(query.as_str());
            let route = routes::parse(&method, &path, query)
                .unwrap_or_else(|e| panic!("{} {path} does not route: {e}", o.op));
            assert_eq!(route.name(), o.op, "{path}");
            assert!(documented.insert(o.op), "{} twice", o.op);
        }
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server/routes.rs");
        let names: BTreeSet<String> =
            routes::tests::literals_in_fn(&std::fs::read_to_string(src).expect("source"), "name")
                .into_iter()
                .collect();
        let documented: BTreeSet<String> = documented.into_iter().map(str::to_owned).collect();
        assert_eq!(names, documented, "routes and documented operations");
    }

    /// `VAULTD_WRITE_OPENAPI=1 cargo test -p vaultd --lib openapi` writes the file instead.
    #[test]
    fn the_committed_document_is_the_generated_one() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
        if std::env::var_os("VAULTD_WRITE_OPENAPI").is_some() {
            std::fs::write(&path, json()).expect("write docs/openapi.json");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == json(),
            "docs/openapi.json differs from the document the code generates: run \
             VAULTD_WRITE_OPENAPI=1 cargo test -p vaultd --lib openapi, and review the diff"
        );
    }
}
