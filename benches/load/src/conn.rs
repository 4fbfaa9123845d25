//! One connection to the system under test and the operations the workloads are made of.
//!
//! Every system gets the same keys (token `i` belongs to tenant `i % tenants`), the same value
//! and one request in flight per connection; each read checks that the whole value came back.
//!
//! | op | vaultd | redis | PostgreSQL (pgcrypto) |
//! | --- | --- | --- | --- |
//! | read | `POST …/tokens/{id}/unseal` with the expected account | `GET` | `SELECT pgp_sym_decrypt(…)` or `decrypt(…, 'aes')` |
//! | write | `PUT …/tokens/{id}` | `SET` | `INSERT … ON CONFLICT DO UPDATE` with `pgp_sym_encrypt` or `encrypt` |

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use vault_client::wire::{Binding, Expect, PutToken};
use vault_client::{Client, Secret};

use crate::pg::Pg;
use crate::resp::{Redis, Reply};

/// The account every bench token is bound to (unseal passes it as the expectation).
const ACCOUNT: &str = "DE89370400440532013000";
/// Transit context of the transit workloads.
const CONTEXT: &str = "bench";
/// The pgcrypto passphrase and raw AES-256 key (32 bytes): a bench key, not a secret.
const PG_KEY: &str = "vault-load-bench-key-0123456789a";

/// The system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum System {
    /// vaultd through vault-client.
    Vaultd,
    /// redis-server.
    Redis,
    /// PostgreSQL with pgcrypto.
    Postgres,
}

/// Which pgcrypto functions the PostgreSQL target uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PgCrypto {
    /// `pgp_sym_encrypt`/`pgp_sym_decrypt`: OpenPGP with a salted, iterated S2K per value.
    Pgp,
    /// `encrypt`/`decrypt` with `'aes'`: raw AES (CBC, PKCS padding) under a given key.
    Aes,
}

/// Where and what: shared by every connection.
pub(crate) struct Target {
    pub(crate) system: System,
    pub(crate) socket: PathBuf,
    pub(crate) pg_crypto: PgCrypto,
    pub(crate) pg_user: String,
    pub(crate) pg_database: String,
    pub(crate) value: Vec<u8>,
    pub(crate) tenants: usize,
    pub(crate) tokens: usize,
}

impl Target {
    /// Tenant of token `i`.
    pub(crate) fn tenant(&self, i: usize) -> String {
        format!("t{:05}", i % self.tenants)
    }

    fn id(i: usize) -> String {
        format!("tok-{i:07}")
    }

    fn table(&self) -> &'static str {
        match self.pg_crypto {
            PgCrypto::Aes => "tokens_aes",
            PgCrypto::Pgp => "tokens_pgp",
        }
    }

    /// One-time schema set-up (PostgreSQL only).
    pub(crate) async fn prepare_schema(&self) -> anyhow::Result<()> {
        if self.system != System::Postgres {
            return Ok(());
        }
        let mut pg = Pg::connect(&self.socket, &self.pg_user, &self.pg_database).await?;
        pg.simple("CREATE EXTENSION IF NOT EXISTS pgcrypto").await?;
        pg.simple(&format!(
            "CREATE TABLE IF NOT EXISTS {} (tenant text NOT NULL, id text NOT NULL, \
             secret bytea NOT NULL, PRIMARY KEY (tenant, id))",
            self.table()
        ))
        .await
    }
}

/// One operation.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op {
    /// Creates tenant `i` (set-up, vaultd only).
    CreateTenant(usize),
    /// Reads token `i` (vaultd: unseal).
    Read(usize),
    /// Seals the value for tenant `i` (vaultd only).
    TransitSeal(usize),
    /// Opens this connection's transit blob (vaultd only).
    TransitUnseal,
    /// Writes token `i` (vaultd: durable put).
    Write(usize),
}

/// A connection and what it needs between operations.
pub(crate) struct Conn {
    target: Arc<Target>,
    inner: Inner,
    /// The blob `Op::TransitUnseal` opens and its tenant.
    blob: Option<(String, String)>,
}

enum Inner {
    Pg(Box<Pg>),
    Redis(Redis),
    Vault(Client),
}

impl Conn {
    /// Connects (PostgreSQL: and prepares the two statements).
    pub(crate) async fn connect(target: &Arc<Target>) -> anyhow::Result<Self> {
        let inner = match target.system {
            System::Vaultd => Inner::Vault(Client::new(&target.socket)),
            System::Redis => Inner::Redis(Redis::connect(&target.socket).await?),
            System::Postgres => {
                let mut pg =
                    Pg::connect(&target.socket, &target.pg_user, &target.pg_database).await?;
                let t = target.table();
                let (read, write) = match target.pg_crypto {
                    PgCrypto::Pgp => (
                        format!(
                            "SELECT pgp_sym_decrypt(secret, $3) FROM {t} WHERE tenant = $1 AND id = $2"
                        ),
                        format!(
                            "INSERT INTO {t} (tenant, id, secret) VALUES ($1, $2, pgp_sym_encrypt($3, $4)) \
                             ON CONFLICT (tenant, id) DO UPDATE SET secret = EXCLUDED.secret"
                        ),
                    ),
                    PgCrypto::Aes => (
                        format!(
                            "SELECT convert_from(decrypt(secret, $3::bytea, 'aes'), 'UTF8') FROM {t} \
                             WHERE tenant = $1 AND id = $2"
                        ),
                        format!(
                            "INSERT INTO {t} (tenant, id, secret) VALUES ($1, $2, encrypt($3::bytea, $4::bytea, 'aes')) \
                             ON CONFLICT (tenant, id) DO UPDATE SET secret = EXCLUDED.secret"
                        ),
                    ),
                };
                pg.prepare("read", &read).await?;
                pg.prepare("write", &write).await?;
                Inner::Pg(Box::new(pg))
            }
        };
        Ok(Self {
            target: target.clone(),
            inner,
            blob: None,
        })
    }

    /// Seals the blob this connection's `Op::TransitUnseal` opens (not timed).
    pub(crate) async fn prepare_transit(&mut self, worker: usize) -> anyhow::Result<()> {
        let Inner::Vault(client) = &self.inner else {
            bail!("transit workloads are vaultd only");
        };
        let tenant = self.target.tenant(worker);
        let blob = client
            .transit_seal(&tenant, Secret::from_slice(&self.target.value), CONTEXT)
            .await
            .context("sealing the transit blob")?;
        self.blob = Some((tenant, blob));
        Ok(())
    }

    /// Runs one operation; an error leaves the connection usable (raw protocol connections
    /// are opened anew after one).
    pub(crate) async fn run(&mut self, op: Op) -> anyhow::Result<()> {
        let result = self.run_once(op).await;
        if result.is_err() && !matches!(self.inner, Inner::Vault(_)) {
            // The protocol state of the connection is unknown after a failure.
            *self = Self::connect(&self.target).await?;
        }
        result
    }

    async fn run_once(&mut self, op: Op) -> anyhow::Result<()> {
        let target = &*self.target;
        let size = target.value.len();
        match (&mut self.inner, op) {
            (Inner::Vault(client), Op::CreateTenant(i)) => {
                client.create_tenant(&target.tenant(i)).await?;
            }
            (Inner::Vault(client), Op::Read(i)) => {
                let expect = Expect {
                    account: Some(ACCOUNT.into()),
                    ..Expect::default()
                };
                let token = client
                    .unseal_token(&target.tenant(i), &Target::id(i), Some(expect))
                    .await?;
                let secret = token.secret;
                ensure!(
                    secret.len() == size,
                    "unseal returned {} bytes",
                    secret.len()
                );
            }
            (Inner::Vault(client), Op::Write(i)) => {
                let put = PutToken {
                    secret: Secret::from_slice(&target.value),
                    binding: Binding {
                        subject: format!("user-{i}"),
                        bank: "examplebank".into(),
                        account: ACCOUNT.into(),
                        scope: "accounts".into(),
                    },
                    expires_at: None,
                    expected_revision: None,
                    lease: None,
                };
                client
                    .put_token(&target.tenant(i), &Target::id(i), &put)
                    .await?;
            }
            (Inner::Vault(client), Op::TransitSeal(i)) => {
                let value = Secret::from_slice(&target.value);
                client
                    .transit_seal(&target.tenant(i), value, CONTEXT)
                    .await?;
            }
            (Inner::Vault(client), Op::TransitUnseal) => {
                let (tenant, blob) = self.blob.as_ref().context("no transit blob prepared")?;
                let plain = client.transit_unseal(tenant, blob, CONTEXT).await?;
                ensure!(
                    plain.len() == size,
                    "transit unseal returned {} bytes",
                    plain.len()
                );
            }
            (Inner::Redis(redis), Op::Read(i)) => {
                let key = format!("tok:{}:{}", target.tenant(i), Target::id(i));
                match redis.command(&[b"GET", key.as_bytes()]).await? {
                    Reply::Bulk(Some(v)) if v.len() == size => {}
                    other => bail!("GET {key}: unexpected reply {}", describe(&other)),
                }
            }
            (Inner::Redis(redis), Op::Write(i)) => {
                let key = format!("tok:{}:{}", target.tenant(i), Target::id(i));
                match redis
                    .command(&[b"SET", key.as_bytes(), &target.value])
                    .await?
                {
                    Reply::Simple(ok) if ok == "OK" => {}
                    other => bail!("SET {key}: unexpected reply {}", describe(&other)),
                }
            }
            (Inner::Pg(pg), Op::Read(i)) => {
                let (tenant, id) = (target.tenant(i), Target::id(i));
                let rows = pg
                    .execute(
                        "read",
                        &[tenant.as_bytes(), id.as_bytes(), PG_KEY.as_bytes()],
                    )
                    .await?;
                ensure!(
                    rows.len() == 1 && rows[0].len() == size,
                    "read of {tenant}/{id}: {} rows",
                    rows.len()
                );
            }
            (Inner::Pg(pg), Op::Write(i)) => {
                let (tenant, id) = (target.tenant(i), Target::id(i));
                pg.execute(
                    "write",
                    &[
                        tenant.as_bytes(),
                        id.as_bytes(),
                        &target.value,
                        PG_KEY.as_bytes(),
                    ],
                )
                .await?;
            }
            (_, op) => bail!("{op:?} is not supported by {:?}", target.system),
        }
        Ok(())
    }
}

fn describe(reply: &Reply) -> String {
    match reply {
        Reply::Bulk(Some(v)) => format!("{} bytes", v.len()),
        Reply::Bulk(None) => "nil (key missing: run the set-up)".into(),
        Reply::Integer(n) => n.to_string(),
        Reply::Simple(s) => s.clone(),
    }
}
