//! `/v1/audit/…`: [`AuditQuery`] and the log's pages, verification, hashes, key and export.

use http::Method;
use zeroize::Zeroize as _;

use crate::audit::{Outcome, Report};
use crate::client::Client;
use crate::client::body::to_json;
use crate::client::path::query;
use crate::error::Error;
use crate::time::Timestamp;
use crate::wire::{
    AuditArchiveRequest, AuditArchived, AuditChains, AuditHash, AuditHashRequest, AuditPage,
    AuditPublicKey,
};

/// The filters and page of `GET /v1/audit` ([`Client::audit`]). Every field is optional; the
/// default asks for the first page of the whole log.
///
/// ```
/// use vault_client::AuditQuery;
/// use vault_client::audit::Outcome;
///
/// let denied_in_acme = AuditQuery {
///     tenant: Some("acme".into()),
///     outcome: Some(Outcome::Denied),
///     ..AuditQuery::default()
/// };
/// # let _ = denied_in_acme;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// The chain read, when several nodes share one PostgreSQL store (`docs/audit-log.md`,
    /// "Several chains"): this node's; by default the answering node's own.
    pub node: Option<String>,
    /// Only entries after this sequence number (the [`AuditPage::next`] of the previous page).
    pub after: Option<u64>,
    /// Page size, 1–10000 (the daemon's default is 100).
    pub limit: Option<u32>,
    /// Only this tenant.
    pub tenant: Option<String>,
    /// Only this token id.
    pub token: Option<String>,
    /// Only this caller uid (decimal), or `system`.
    pub actor: Option<String>,
    /// Only this operation (`token.put`, `sys.unseal`, …).
    pub op: Option<String>,
    /// Only this outcome.
    pub outcome: Option<Outcome>,
    /// Not before this time.
    pub since: Option<Timestamp>,
    /// Not after this time.
    pub until: Option<Timestamp>,
    /// Only entries whose binding account has this HMAC ([`Client::audit_hash`] of the account).
    pub account_hmac: Option<String>,
    /// Only entries whose binding subject has this HMAC.
    pub subject_hmac: Option<String>,
}

impl AuditQuery {
    /// The query string, `?…` (empty when nothing is set), every value percent-encoded.
    fn to_query(&self) -> String {
        let outcome = self.outcome.map(|o| match o {
            Outcome::Denied => "denied",
            Outcome::Error => "error",
            Outcome::Ok => "ok",
        });
        let pairs: [(&str, Option<String>); 12] = [
            ("node", self.node.clone()),
            ("after", self.after.map(|a| a.to_string())),
            ("limit", self.limit.map(|l| l.to_string())),
            ("tenant", self.tenant.clone()),
            ("token", self.token.clone()),
            ("actor", self.actor.clone()),
            ("op", self.op.clone()),
            ("outcome", outcome.map(str::to_owned)),
            ("since", self.since.map(|t| t.unix().to_string())),
            ("until", self.until.map(|t| t.unix().to_string())),
            ("account_hmac", self.account_hmac.clone()),
            ("subject_hmac", self.subject_hmac.clone()),
        ];
        query(pairs.iter().filter_map(|(k, v)| Some((*k, v.as_deref()?))))
    }
}

impl Client {
    /// `GET /v1/audit`: one page of entries matching `query`, oldest first. Continue with
    /// [`AuditPage::next`] as [`AuditQuery::after`] until it is `None`; a page may hold fewer
    /// entries than the limit (even none) and still have a `next`.
    pub async fn audit(&self, query: &AuditQuery) -> Result<AuditPage, Error> {
        Ok(self.audit_with_request_id(query).await?.0)
    }

    /// [`Client::audit`], also returning the request id the daemon gave this call
    /// (`x-request-id`). The call itself appends an audit entry with that `request`, so a
    /// follower of the log can tell its own polls from other callers' requests.
    pub async fn audit_with_request_id(
        &self,
        query: &AuditQuery,
    ) -> Result<(AuditPage, Option<String>), Error> {
        let path = format!("/v1/audit{}", query.to_query());
        let answer = self.call(Method::GET, path.clone(), None).await?;
        let request_id = answer.request_id.clone();
        Ok((answer.json(&path)?, request_id))
    }

    /// `GET /v1/audit/verify[?head=SEQ:HASH]`: the daemon verifies its log (chain, sequence,
    /// every head's signature), resuming after the last signed head it verified before
    /// ([`Report::resumed_after`]). With `head`, it rereads the whole log, which must also
    /// contain that signed head, recorded earlier from a report's [`Report::head`].
    pub async fn audit_verify(&self, head: Option<&str>) -> Result<Report, Error> {
        self.audit_verify_with(head, &[], false).await
    }

    /// [`Client::audit_verify`], accepting the adoptions recorded by these reviewed
    /// `audit.adopt_unsigned` entries (their seq numbers), and with `full` rereading every
    /// entry even where the daemon could resume.
    pub async fn audit_verify_with(
        &self,
        head: Option<&str>,
        accept: &[u64],
        full: bool,
    ) -> Result<Report, Error> {
        let accept = accept
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let pairs = head
            .map(|h| ("head", h))
            .into_iter()
            .chain((!accept.is_empty()).then_some(("accept", accept.as_str())))
            .chain(full.then_some(("full", "true")));
        self.get(format!("/v1/audit/verify{}", query(pairs))).await
    }

    /// `POST /v1/audit/hash`: the HMAC of `value` (an account number or subject an auditor
    /// searches for) as the log writes it, hex. The value travels in a zeroizing buffer.
    pub async fn audit_hash(&self, value: &str) -> Result<String, Error> {
        let mut request = AuditHashRequest {
            value: value.to_owned(),
        };
        let body = to_json(&request);
        request.value.zeroize();
        let hash: AuditHash = self
            .request(Method::POST, "/v1/audit/hash".to_owned(), Some(body?))
            .await?;
        Ok(hash.hmac)
    }

    /// `POST /v1/audit/archive`: archives a chain's entries up to `req.through`, which the
    /// caller has written to an archive file (`docs/audit-log.md`, "Archiving"); the answer
    /// holds the checkpoint the live chain now starts at.
    pub async fn audit_archive(&self, req: &AuditArchiveRequest) -> Result<AuditArchived, Error> {
        self.request(
            Method::POST,
            "/v1/audit/archive".to_owned(),
            Some(to_json(req)?),
        )
        .await
    }

    /// `GET /v1/audit/pubkey`: the vault id and the Ed25519 public key that verifies the log's
    /// signed heads.
    pub async fn audit_pubkey(&self) -> Result<AuditPublicKey, Error> {
        self.get("/v1/audit/pubkey".to_owned()).await
    }

    /// `GET /v1/audit/export?after=&limit=[&node=]`: the stored entry lines and signed-head
    /// lines of one chain (`node`; by default the answering node's) with sequence numbers in
    /// `(after, after + limit]`, newline-terminated, byte for byte as stored (the chain hash
    /// covers the exact bytes: write them out unchanged). `limit` is 1–10000.
    pub async fn audit_export_page(
        &self,
        node: Option<&str>,
        after: u64,
        limit: u32,
    ) -> Result<Vec<u8>, Error> {
        let after = after.to_string();
        let limit = limit.to_string();
        let pairs = [("after", after.as_str()), ("limit", limit.as_str())]
            .into_iter()
            .chain(node.map(|n| ("node", n)));
        let path = format!("/v1/audit/export{}", query(pairs));
        let answer = self.call(Method::GET, path, None).await?;
        Ok(answer.success()?.to_vec())
    }

    /// `GET /v1/audit/export/statement?last=SEQ[&node=]`: the signed statement that ends an
    /// export of a chain whose last exported entry is `last` (`docs/audit-log.md`, "Sealed
    /// exports"); needs the vault unsealed.
    pub async fn audit_statement(
        &self,
        node: Option<&str>,
        last: u64,
    ) -> Result<crate::audit::StatementLine, Error> {
        let last = last.to_string();
        let pairs = [("last", last.as_str())]
            .into_iter()
            .chain(node.map(|n| ("node", n)));
        self.get(format!("/v1/audit/export/statement{}", query(pairs)))
            .await
    }

    /// `GET /v1/audit/chains`: the chains of the log with their last sequence numbers, and
    /// which one the answering node appends to.
    pub async fn audit_chains(&self) -> Result<AuditChains, Error> {
        Ok(self.audit_chains_with_request_id().await?.0)
    }

    /// [`Client::audit_chains`], with the request id of the call (its own audit entry).
    pub async fn audit_chains_with_request_id(
        &self,
    ) -> Result<(AuditChains, Option<String>), Error> {
        let path = "/v1/audit/chains".to_owned();
        let answer = self.call(Method::GET, path.clone(), None).await?;
        let request_id = answer.request_id.clone();
        Ok((answer.json(&path)?, request_id))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn audit_query_encodes_every_value() {
        assert_eq!(AuditQuery::default().to_query(), "");
        let q = AuditQuery {
            after: Some(7),
            limit: Some(50),
            tenant: Some("acme".into()),
            actor: Some("system".into()),
            op: Some("token.put&limit=1".into()),
            outcome: Some(Outcome::Denied),
            since: Some(Timestamp(1_795_453_200)),
            account_hmac: Some("ab12".into()),
            ..AuditQuery::default()
        };
        assert_eq!(
            q.to_query(),
            "?after=7&limit=50&tenant=acme&actor=system&op=token.put%26limit%3D1\
             &outcome=denied&since=1795453200&account_hmac=ab12"
        );
        assert_eq!(query([("head", "3:ab")]), "?head=3%3Aab");
    }
}
