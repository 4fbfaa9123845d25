//! Configuration: one TOML file, overridden by `VAULTD_*` environment variables and flags
//! (flags win), checked into a [`Config`] before anything starts.
//!
//! Every key of the file can be set from the environment by one rule ([`env`](mod@env)):
//! `VAULTD_` and the key's path upper-cased, `__` between a section and its key
//! (`VAULTD_DATA_DIR`, `VAULTD_KMS__KEY_ID`), the value read as the TOML value it would be in
//! the file (a value that is not TOML is a string). Any other `VAULTD_*` variable is an error
//! at start. The variables that are not keys of the file: `VAULTD_CONFIG` (the file),
//! `VAULTD_LOG` (the log filter), `VAULTD_POSTGRES_URL` (the connection string, a secret: never
//! on the command line); and `VAULT_SOCKET`, `vault-cli`'s variable, stands in for
//! `VAULTD_SOCKET` when that is unset. Rule and reasons: `docs/operator-guide.md`,
//! "Environment". Flags: `--data-dir`, `--socket`, `--log-format`.
//!
//! ```toml
//! data_dir = "/var/lib/vaultd"
//! socket = "/run/vaultd/vaultd.sock"
//! socket_group = "vaultd"          # optional: group of the socket and its directory
//! auto_unseal = true               # unseal at start through the KMS
//! log_format = "json"              # or "human"
//! max_connections = 256
//! max_connections_per_caller = 128 # one uid or certificate subject, over every listener
//! max_refused_per_window = 120     # denied or malformed requests, each audited; beyond them
//! refused_window_secs = 60         #   the caller gets 429 and one summary entry per window
//! seal_on_alarm = false            # seal the vault when an alarm is raised (docs/alarms.md)
//! header_timeout_secs = 10         # also the idle timeout of a kept-alive connection
//! cache_mib = 64                   # sled page cache
//!
//! [kms]
//! provider = "local"
//! key_dir = "/etc/vaultd/keys"
//! key_id = "main"
//! # or, in production (docs/operator-aws.md):
//! # provider = "aws"
//! # key_id = "arn:aws:kms:eu-central-1:111122223333:key/1234abcd-…"  # key id or ARN, no alias
//! # region = "eu-central-1"                     # optional: else the AWS region chain
//! # endpoint_url = "https://kms.example.internal" # optional: a private or compatible endpoint
//!
//! # Optional: keep everything in PostgreSQL instead of the data directory (docs/ha.md).
//! # [postgres]
//! # url_file = "/etc/vaultd/postgres.conn"  # a libpq connection string, 0600 (it may hold the
//! #                                          # password); or the VAULTD_POSTGRES_URL variable
//! # node_id = "vault-a"                     # this node's audit chain; unique per node
//! # ca_file = "/etc/vaultd/pg-ca.pem"       # optional: TLS 1.3 to TCP hosts, the server's
//! #                                          # certificate and host name verified against it
//!
//! # Optional: background jobs (docs/ha.md, "Jobs").
//! # [jobs]
//! # lease_seconds = 30    # a node that stops renewing a job's lease loses it after this (3-3600)
//!
//! [[policy]]
//! name = "platform-app"
//! users = ["platform"]             # and/or uids = [1001], gids = [...], groups = [...]
//! capabilities = ["token:unseal", "token:read", "transit:unseal"]
//! tenants = ["*"]                  # "*", "prefix*", or exact tenant ids
//! # Optional: request quotas per caller (uid or certificate subject); they compose, and past
//! # one the caller gets 429 rate_limited with Retry-After (docs/threat-model.md, "Quotas").
//! quotas = [{ capabilities = ["token:unseal"], per_second = 50, per_day = 100000 }]
//! # Optional: at most this many distinct tokens per caller per window, else 429 and an alarm
//! # (docs/alarms.md).
//! brakes = [{ capabilities = ["token:unseal"], distinct_tokens = 500, window_secs = 3600 }]
//!
//! # Optional: the same API on TCP with mutual TLS (docs/tls.md).
//! [tcp]
//! listen = "127.0.0.1:8443"
//! cert = "/etc/vaultd/tls/server.pem"        # the server's chain, leaf first
//! key = "/etc/vaultd/tls/server.key"         # its private key, mode 0600, owned by vaultd
//! client_ca = "/etc/vaultd/tls/clients.pem"  # the CAs whose client certificates may call
//! # and in a [[policy]] rule: subjects = ["payments-app"]  (certificate CN, else first DNS SAN)
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

pub mod env;

pub use env::Env;

use crate::kms::aws::{KeyId, check_endpoint_url};
use crate::policy::{Brake, Capability, Policy, Quota, Rule, SubjectName, TenantPattern};
use crate::store::postgres::tls;

/// The daemon's checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the store lives (created 0700; refused if group or others can access it).
    pub data_dir: PathBuf,
    /// The Unix socket path (0660, in a 0750 directory).
    pub socket: PathBuf,
    /// Group id for the socket and its directory.
    pub socket_gid: Option<u32>,
    /// Unseal through the KMS at start.
    pub auto_unseal: bool,
    /// Initialize on first start (only `--dev`).
    pub auto_init: bool,
    /// The KMS provider.
    pub kms: KmsConfig,
    /// Who may do what.
    pub policy: Policy,
    /// Log lines as JSON.
    pub log_json: bool,
    /// Most connections served at once.
    pub max_connections: usize,
    /// Per-caller limits: connections, and the budget of refused requests.
    pub callers: crate::server::CallerLimits,
    /// Seal the vault when an alarm is raised (`docs/alarms.md`).
    pub seal_on_alarm: bool,
    /// Time allowed to send request headers, and to stay idle between requests.
    pub header_timeout: Duration,
    /// The embedded store: sled's cache, log segment size, checkpoints.
    pub storage: crate::store::embedded::Options,
    /// `[postgres]`: the store is this PostgreSQL database instead of the data directory.
    pub postgres: Option<crate::store::postgres::Options>,
    /// Automatic tenant data key rotation, if configured.
    pub rotation: Option<RotationPolicy>,
    /// Purging expired tokens, if configured (`docs/retention.md`).
    pub retention: Option<RetentionPolicy>,
    /// `[jobs] lease_seconds`: how long a job's lease holds without renewal.
    pub job_lease: Duration,
    /// Whether this is `--dev` (prints a banner, creates what is missing).
    pub dev: bool,
    /// The TCP listener with mutual TLS, if configured (`[tcp]`).
    pub tcp: Option<TcpConfig>,
    /// `[metrics] listen`: a plain-HTTP listener on a loopback address serving `/metrics`.
    pub metrics_listen: Option<SocketAddr>,
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    /// A loopback address and port (`127.0.0.1:9464`); others are refused: the listener has no
    /// authentication.
    listen: SocketAddr,
}

/// `[tcp]`: the same API on a TCP socket, over TLS 1.3 with a required client certificate
/// (`docs/tls.md`). The files are read and checked at start (`server::tls`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpConfig {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// The server's certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM); refused unless only its owner, the daemon's uid, can
    /// read it.
    pub key: PathBuf,
    /// The CA certificates (PEM bundle) that client certificates must chain to.
    pub client_ca: PathBuf,
}

/// Which KMS wraps the master key.
#[derive(Debug, Clone)]
pub enum KmsConfig {
    /// Key files in a directory.
    Local {
        /// Directory of `<key_id>.key` files.
        key_dir: PathBuf,
        /// Key that wraps new master keys.
        key_id: String,
        /// Create the directory and key if missing (`--dev`).
        create: bool,
    },
    /// AWS KMS (or a KMS-compatible endpoint) through the standard AWS credential chain.
    Aws {
        /// The key that wraps new master keys, and the only key unseal accepts.
        key_id: KeyId,
        /// Region; `None`: the AWS region chain (`AWS_REGION`, profile, instance metadata).
        region: Option<String>,
        /// Endpoint; `None`: the region's AWS endpoint (or `AWS_ENDPOINT_URL_KMS`). `https://`,
        /// or `http://` to a loopback address only (a local test server).
        endpoint_url: Option<String>,
    },
}

/// Per-caller limits unless configured: a caller holds at most half the default connections,
/// and may send 120 refused requests a minute, each audited, before it is answered 429.
const DEFAULT_CALLER_LIMITS: crate::server::CallerLimits = crate::server::CallerLimits {
    max_connections: 128,
    refused_per_window: 120,
    refused_window: Duration::from_secs(60),
};

/// The TOML file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    data_dir: Option<PathBuf>,
    socket: Option<PathBuf>,
    socket_group: Option<String>,
    auto_unseal: Option<bool>,
    log_format: Option<String>,
    max_connections: Option<usize>,
    max_connections_per_caller: Option<usize>,
    max_refused_per_window: Option<u32>,
    refused_window_secs: Option<u64>,
    seal_on_alarm: Option<bool>,
    header_timeout_secs: Option<u64>,
    cache_mib: Option<u64>,
    wal_segment_mib: Option<u64>,
    wal_checkpoint_mib: Option<u64>,
    compress_pages: Option<bool>,
    postgres: Option<RawPostgres>,
    kms: Option<RawKms>,
    rotation: Option<RotationPolicy>,
    retention: Option<RetentionPolicy>,
    jobs: Option<RawJobs>,
    #[serde(default)]
    policy: Vec<RawRule>,
    tcp: Option<TcpConfig>,
    metrics: Option<RawMetrics>,
}

/// `[rotation]`: rotate a tenant's data key when its current version is older than
/// `max_dek_age_days` or has made `max_encryptions_per_version` encryptions; checked every
/// `check_interval_secs` (default 3600).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationPolicy {
    /// Largest age of a current data key version, in days.
    pub max_dek_age_days: Option<u64>,
    /// Most encryptions under one data key version.
    pub max_encryptions_per_version: Option<u64>,
    /// Seconds between checks.
    #[serde(default = "default_check_interval")]
    pub check_interval_secs: u64,
}

fn default_check_interval() -> u64 {
    3600
}

/// `[retention]` (`docs/retention.md`): purge tokens `grace_days` after their `expires_at`, and
/// tokens without one `max_age_days[scope]` after their last update; a pass every
/// `interval_secs`, `batch` tokens per atomic write.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    /// Days kept after `expires_at`.
    #[serde(default)]
    pub grace_days: u64,
    /// Seconds between passes.
    #[serde(default = "default_check_interval")]
    pub interval_secs: u64,
    /// Tokens purged per atomic write.
    #[serde(default = "default_purge_batch")]
    pub batch: usize,
    /// For tokens without `expires_at`: days after their last update, by binding scope.
    #[serde(default)]
    pub max_age_days: std::collections::BTreeMap<String, u64>,
}

fn default_purge_batch() -> usize {
    100
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "provider", rename_all = "lowercase")]
enum RawKms {
    Aws {
        key_id: String,
        region: Option<String>,
        endpoint_url: Option<String>,
    },
    Local {
        key_dir: PathBuf,
        key_id: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<String>,
    #[serde(default)]
    uids: Vec<u32>,
    #[serde(default)]
    gids: Vec<u32>,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    subjects: Vec<String>,
    capabilities: Vec<Capability>,
    #[serde(default)]
    tenants: Vec<String>,
    #[serde(default)]
    quotas: Vec<RawQuota>,
    #[serde(default)]
    brakes: Vec<RawBrake>,
}

/// One entry of a rule's `brakes` as written (`docs/alarms.md`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBrake {
    capabilities: Vec<Capability>,
    /// By default, the rule's own tenants.
    tenants: Option<Vec<String>>,
    distinct_tokens: u32,
    window_secs: u64,
}

/// Longest brake window: 30 days.
const MAX_BRAKE_WINDOW_SECS: u64 = 30 * 86_400;

impl RawBrake {
    fn brake(
        self,
        rule: &str,
        granted: &[Capability],
        tenants: &[TenantPattern],
    ) -> anyhow::Result<Brake> {
        use Capability as C;
        if self.capabilities.is_empty() {
            bail!("policy rule {rule}: a brake lists no capabilities");
        }
        for c in &self.capabilities {
            if !granted.contains(c) {
                bail!(
                    "policy rule {rule}: a brake counts {}, which the rule does not grant",
                    c.name()
                );
            }
            if !matches!(
                c,
                C::TokenUnseal | C::TokenRead | C::TokenSeal | C::TokenDelete
            ) {
                bail!(
                    "policy rule {rule}: a brake counts tokens, so only token:unseal, token:read, \
                     token:seal and token:delete, not {}",
                    c.name()
                );
            }
        }
        if self.distinct_tokens == 0 {
            bail!("policy rule {rule}: brake distinct_tokens must be at least 1");
        }
        if !(1..=MAX_BRAKE_WINDOW_SECS).contains(&self.window_secs) {
            bail!("policy rule {rule}: brake window_secs must be 1 to {MAX_BRAKE_WINDOW_SECS}");
        }
        let tenants = match self.tenants {
            None => tenants.to_vec(),
            Some(list) => list
                .iter()
                .map(|t| t.parse::<TenantPattern>().map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<Vec<_>>>()
                .with_context(|| format!("policy rule {rule}: brake tenants"))?,
        };
        if tenants.is_empty() {
            bail!("policy rule {rule}: a brake lists no tenants");
        }
        Ok(Brake {
            rule: rule.to_owned(),
            capabilities: self.capabilities,
            tenants,
            distinct_tokens: self.distinct_tokens,
            window: Duration::from_secs(self.window_secs),
        })
    }
}

/// One entry of a rule's `quotas` as written: each given rate is one [`Quota`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuota {
    capabilities: Vec<Capability>,
    per_second: Option<u32>,
    per_minute: Option<u32>,
    per_hour: Option<u32>,
    per_day: Option<u32>,
}

impl RawQuota {
    /// The quotas this entry writes; `rule` names the rule in errors.
    fn quotas(self, rule: &str, granted: &[Capability]) -> anyhow::Result<Vec<Quota>> {
        if self.capabilities.is_empty() {
            bail!("policy rule {rule}: a quota lists no capabilities");
        }
        if let Some(c) = self.capabilities.iter().find(|c| !granted.contains(c)) {
            bail!(
                "policy rule {rule}: a quota counts {}, which the rule does not grant",
                c.name()
            );
        }
        let rates = [
            ("per_second", self.per_second, 1),
            ("per_minute", self.per_minute, 60),
            ("per_hour", self.per_hour, 3_600),
            ("per_day", self.per_day, 86_400),
        ];
        let mut quotas = Vec::new();
        for (name, requests, seconds) in rates {
            let Some(requests) = requests else { continue };
            if requests == 0 {
                bail!("policy rule {rule}: quota {name} must be at least 1");
            }
            quotas.push(Quota {
                capabilities: self.capabilities.clone(),
                requests,
                window: Duration::from_secs(seconds),
            });
        }
        if quotas.is_empty() {
            bail!(
                "policy rule {rule}: a quota gives no rate: per_second, per_minute, per_hour or per_day"
            );
        }
        Ok(quotas)
    }
}

/// `[jobs]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJobs {
    lease_seconds: Option<u64>,
}

/// The range of `[jobs] lease_seconds`: a lease must outlast the second between two batches
/// of a rate-limited job, with room for a slow commit.
const LEASE_SECONDS: std::ops::RangeInclusive<u64> = 3..=3600;

/// `[postgres]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPostgres {
    url_file: Option<PathBuf>,
    node_id: String,
    ca_file: Option<PathBuf>,
}

/// The environment variable that may hold the PostgreSQL connection string instead of a file.
const POSTGRES_URL_VAR: &str = "VAULTD_POSTGRES_URL";

/// `[postgres]`: the connection string from `VAULTD_POSTGRES_URL` or `url_file` (owner-only: it
/// may hold the password), parsed; never from the command line. With `ca_file`, TLS to the
/// server, verified (`store/postgres/tls.rs`).
fn postgres_options(raw: &RawPostgres) -> anyhow::Result<crate::store::postgres::Options> {
    let text = match (std::env::var(POSTGRES_URL_VAR), &raw.url_file) {
        (Ok(url), _) => zeroize::Zeroizing::new(url),
        (Err(_), Some(path)) => {
            let bytes = crate::os::read_private_file(path, 64 * 1024)
                .map_err(|e| anyhow::anyhow!("[postgres] url_file: {e}"))?;
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| anyhow::anyhow!("[postgres] url_file is not UTF-8"))?;
            zeroize::Zeroizing::new(text.to_owned())
        }
        (Err(_), None) => bail!("[postgres] needs url_file, or the {POSTGRES_URL_VAR} variable"),
    };
    // The driver's own error may quote the string, password included: say only where it failed.
    let mut config = text.trim().parse::<tokio_postgres::Config>().map_err(|e| {
        match tls::unsupported_ssl_setting(&e) {
            Some(why) => anyhow::anyhow!("[postgres]: {why}"),
            None => anyhow::anyhow!("[postgres]: the connection string does not parse"),
        }
    })?;
    if config.get_hosts().is_empty() {
        bail!("[postgres]: the connection string names no host");
    }
    let tls = raw
        .ca_file
        .as_deref()
        .map(tls::Tls::from_ca_file)
        .transpose()
        .context("[postgres] ca_file")?;
    tls::settle_ssl_mode(&mut config, tls.as_ref())?;
    let node = raw.node_id.trim();
    if node.is_empty() || node.len() > 64 || !node.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("[postgres] node_id must be 1-64 printable characters without spaces");
    }
    Ok(crate::store::postgres::Options {
        config,
        node: node.to_owned(),
        tls,
    })
}

/// Values from flags that override the file and the environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--socket`.
    pub socket: Option<PathBuf>,
    /// `--log-format`.
    pub log_format: Option<String>,
}

/// The keys `--dev` takes from the environment: it reads no file, so there is nothing else to
/// override.
const DEV_KEYS: [&str; 3] = ["data_dir", "socket", "log_format"];

impl Overrides {
    /// For `--dev`: these flags, else `data_dir`, `socket` and `log_format` from `env`; any
    /// other setting in `env` is an error.
    pub fn or_dev_env(self, env: &Env) -> anyhow::Result<Self> {
        env.only(&DEV_KEYS, "--dev reads no configuration file")?;
        Ok(Self {
            data_dir: self
                .data_dir
                .or(env.top_level_string("data_dir")?.map(PathBuf::from)),
            socket: self
                .socket
                .or(env.top_level_string("socket")?.map(PathBuf::from)),
            log_format: self.log_format.or(env.top_level_string("log_format")?),
        })
    }
}

impl Config {
    /// Reads `path`, sets the keys `env` sets, applies `overrides`, and checks the result.
    pub fn load(path: &Path, env: &Env, overrides: &Overrides) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let raw =
            raw_config(&text, env).with_context(|| format!("parsing config {}", path.display()))?;
        Self::from_raw(raw, overrides)
    }

    /// `--dev`: everything under `dir` (default `./vaultd-dev`), local KMS, auto-init and
    /// auto-unseal, every capability for the uid that started the daemon and nobody else.
    pub fn insecure_dev(dir: &Path, overrides: &Overrides) -> Self {
        let dir = overrides.data_dir.clone().unwrap_or_else(|| dir.to_owned());
        Self {
            socket: overrides
                .socket
                .clone()
                .unwrap_or_else(|| dir.join("vaultd.sock")),
            kms: KmsConfig::Local {
                key_dir: dir.join("keys"),
                key_id: "dev".into(),
                create: true,
            },
            data_dir: dir.join("data"),
            socket_gid: None,
            auto_unseal: true,
            auto_init: true,
            policy: Policy::insecure_dev_owner_only(crate::os::effective_uid()),
            log_json: overrides.log_format.as_deref() == Some("json"),
            max_connections: 256,
            callers: DEFAULT_CALLER_LIMITS,
            seal_on_alarm: false,
            header_timeout: Duration::from_secs(10),
            storage: crate::store::embedded::Options::default(),
            postgres: None,
            rotation: None,
            retention: None,
            job_lease: crate::vault::DEFAULT_LEASE,
            dev: true,
            tcp: None,
            metrics_listen: None,
        }
    }

    fn from_raw(raw: RawConfig, overrides: &Overrides) -> anyhow::Result<Self> {
        let storage = storage_options(&raw)?;
        let job_lease = match raw.jobs.as_ref().and_then(|j| j.lease_seconds) {
            None => crate::vault::DEFAULT_LEASE,
            Some(secs) if LEASE_SECONDS.contains(&secs) => Duration::from_secs(secs),
            Some(_) => bail!(
                "[jobs] lease_seconds must be {}-{}",
                LEASE_SECONDS.start(),
                LEASE_SECONDS.end()
            ),
        };
        let postgres = raw.postgres.as_ref().map(postgres_options).transpose()?;
        let data_dir = overrides
            .data_dir
            .clone()
            .or(raw.data_dir)
            .context("data_dir is required")?;
        let socket = overrides
            .socket
            .clone()
            .or(raw.socket)
            .context("socket is required")?;
        let log_format = overrides
            .log_format
            .clone()
            .or(raw.log_format)
            .unwrap_or_else(|| "human".into());
        let log_json = match log_format.as_str() {
            "json" => true,
            "human" => false,
            other => bail!("log_format must be \"human\" or \"json\", not {other:?}"),
        };
        let kms = match raw.kms.context("[kms] is required")? {
            RawKms::Local { key_dir, key_id } => KmsConfig::Local {
                key_dir,
                key_id,
                create: false,
            },
            RawKms::Aws {
                key_id,
                region,
                endpoint_url,
            } => KmsConfig::Aws {
                key_id: key_id
                    .parse()
                    .map_err(anyhow::Error::msg)
                    .context("[kms] key_id")?,
                region: region.map(check_region).transpose()?,
                endpoint_url: endpoint_url
                    .map(|u| {
                        check_endpoint_url(&u)
                            .map(|()| u)
                            .map_err(anyhow::Error::msg)
                            .context("[kms] endpoint_url")
                    })
                    .transpose()?,
            },
        };
        let socket_gid = raw.socket_group.as_deref().map(group_id).transpose()?;
        let mut rules = Vec::new();
        for (i, r) in raw.policy.into_iter().enumerate() {
            let mut uids = r.uids;
            for user in &r.users {
                uids.push(user_id(user)?);
            }
            let mut gids = r.gids;
            for group in &r.groups {
                gids.push(group_id(group)?);
            }
            let subjects = r
                .subjects
                .iter()
                .map(|n| n.parse::<SubjectName>().map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<Vec<_>>>()
                .with_context(|| format!("policy rule {} subjects", i + 1))?;
            if uids.is_empty() && gids.is_empty() && subjects.is_empty() {
                bail!(
                    "policy rule {} names nobody: give uids, gids, users, groups or subjects",
                    i + 1
                );
            }
            let tenants = r
                .tenants
                .iter()
                .map(|t| t.parse::<TenantPattern>().map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<Vec<_>>>()?;
            if r.capabilities.iter().any(|c| c.tenant_scoped()) && tenants.is_empty() {
                bail!(
                    "policy rule {} grants tenant capabilities but lists no tenants",
                    i + 1
                );
            }
            let name = r.name.unwrap_or_else(|| format!("rule-{}", i + 1));
            let mut quotas = Vec::new();
            for quota in r.quotas {
                quotas.extend(quota.quotas(&name, &r.capabilities)?);
            }
            let brakes = r
                .brakes
                .into_iter()
                .map(|b| b.brake(&name, &r.capabilities, &tenants))
                .collect::<anyhow::Result<Vec<_>>>()?;
            rules.push(Rule {
                name,
                uids,
                gids,
                subjects,
                capabilities: r.capabilities,
                tenants,
                quotas,
                brakes,
            });
        }
        let max_connections = raw.max_connections.unwrap_or(256);
        if max_connections == 0 {
            bail!("max_connections must be at least 1");
        }
        let callers = crate::server::CallerLimits {
            max_connections: raw
                .max_connections_per_caller
                .unwrap_or(DEFAULT_CALLER_LIMITS.max_connections.min(max_connections)),
            refused_per_window: raw
                .max_refused_per_window
                .unwrap_or(DEFAULT_CALLER_LIMITS.refused_per_window),
            refused_window: raw
                .refused_window_secs
                .map_or(DEFAULT_CALLER_LIMITS.refused_window, Duration::from_secs),
        };
        if callers.max_connections == 0 || callers.max_connections > max_connections {
            bail!("max_connections_per_caller must be 1 to max_connections ({max_connections})");
        }
        if callers.refused_per_window == 0 {
            bail!("max_refused_per_window must be at least 1");
        }
        if !(1..=86_400).contains(&callers.refused_window.as_secs()) {
            bail!("refused_window_secs must be 1 to 86400");
        }
        if let Some(r) = &raw.rotation {
            if r.max_dek_age_days.is_none() && r.max_encryptions_per_version.is_none() {
                bail!("[rotation] needs max_dek_age_days or max_encryptions_per_version");
            }
            if r.check_interval_secs == 0
                || r.max_dek_age_days == Some(0)
                || r.max_encryptions_per_version == Some(0)
            {
                bail!("[rotation] values must be at least 1");
            }
        }
        if let Some(m) = &raw.metrics
            && !m.listen.ip().is_loopback()
        {
            bail!(
                "[metrics] listen = {}: only a loopback address (127.0.0.1, [::1]); the metrics \
                 listener has no authentication (scrape through a local agent or a proxy)",
                m.listen
            );
        }
        if let Some(r) = &raw.retention {
            if r.interval_secs == 0 || !(1..=1000).contains(&r.batch) {
                bail!("[retention] interval_secs must be at least 1 and batch 1 to 1000");
            }
            if r.grace_days > 36_500 || r.max_age_days.values().any(|d| *d == 0 || *d > 36_500) {
                bail!("[retention] grace_days must be 0 to 36500 and max_age_days 1 to 36500");
            }
        }
        Ok(Self {
            data_dir,
            socket,
            socket_gid,
            auto_unseal: raw.auto_unseal.unwrap_or(true),
            auto_init: false,
            kms,
            policy: Policy::new(rules),
            log_json,
            max_connections,
            callers,
            seal_on_alarm: raw.seal_on_alarm.unwrap_or(false),
            header_timeout: Duration::from_secs(raw.header_timeout_secs.unwrap_or(10).max(1)),
            storage,
            postgres,
            rotation: raw.rotation,
            retention: raw.retention,
            job_lease,
            dev: false,
            tcp: raw.tcp,
            metrics_listen: raw.metrics.map(|m| m.listen),
        })
    }
}

/// `cache_mib`, `compress_pages`, `wal_segment_mib`, `wal_checkpoint_mib`.
/// The file's text with the keys `env` sets. Without any, the file is read as it is, so that
/// errors point at its lines; with some, an error names the variables.
fn raw_config(text: &str, env: &Env) -> anyhow::Result<RawConfig> {
    if env.is_empty() {
        return Ok(toml::from_str(text)?);
    }
    let mut table: toml::Table = toml::from_str(text)?;
    env.apply(&mut table)?;
    toml::Value::Table(table).try_into().with_context(|| {
        format!(
            "with {} from the environment (docs/operator-guide.md, \"Environment\")",
            env.vars().join(", ")
        )
    })
}

fn storage_options(raw: &RawConfig) -> anyhow::Result<crate::store::embedded::Options> {
    let defaults = crate::store::embedded::Options::default();
    let mib =
        |value: Option<u64>, default: u64, name: &str, range: std::ops::RangeInclusive<u64>| {
            let v = value.unwrap_or(default >> 20);
            if !range.contains(&v) {
                bail!("{name} must be {}-{}", range.start(), range.end());
            }
            Ok(v << 20)
        };
    Ok(crate::store::embedded::Options {
        cache_bytes: mib(
            raw.cache_mib,
            defaults.cache_bytes,
            "cache_mib",
            1..=1 << 20,
        )?,
        compression: raw.compress_pages.unwrap_or(defaults.compression),
        segment_bytes: mib(
            raw.wal_segment_mib,
            defaults.segment_bytes,
            "wal_segment_mib",
            1..=4096,
        )?,
        checkpoint_bytes: mib(
            raw.wal_checkpoint_mib,
            defaults.checkpoint_bytes,
            "wal_checkpoint_mib",
            1..=1 << 16,
        )?,
        checkpoint_interval: defaults.checkpoint_interval,
    })
}

/// An AWS region name: lower-case letters, digits and `-`.
fn check_region(region: String) -> anyhow::Result<String> {
    let ok = !region.is_empty()
        && region.len() <= 64
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        bail!("[kms] region {region:?} is not an AWS region name");
    }
    Ok(region)
}

/// A user's uid, through NSS (`getpwnam_r`: `/etc/passwd`, LDAP, sssd, as nsswitch.conf says).
fn user_id(name: &str) -> anyhow::Result<u32> {
    nix::unistd::User::from_name(name)
        .with_context(|| format!("looking up user {name:?}"))?
        .map(|u| u.uid.as_raw())
        .with_context(|| format!("no user named {name:?} (looked up through NSS)"))
}

/// A group's gid, through NSS (`getgrnam_r`).
fn group_id(name: &str) -> anyhow::Result<u32> {
    nix::unistd::Group::from_name(name)
        .with_context(|| format!("looking up group {name:?}"))?
        .map(|g| g.gid.as_raw())
        .with_context(|| format!("no group named {name:?} (looked up through NSS)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Identity;

    fn parse(text: &str) -> anyhow::Result<Config> {
        Config::from_raw(toml::from_str(text)?, &Overrides::default())
    }

    const BASE: &str = "data_dir = \"/d\"\nsocket = \"/s\"\n[kms]\nprovider = \"local\"\nkey_dir = \"/k\"\nkey_id = \"main\"\n";

    fn env(vars: &[(&str, &str)]) -> Env {
        Env::parse(vars.iter().map(|(k, v)| (k.into(), v.into()))).expect("env")
    }

    #[test]
    fn environment_sets_any_key_and_flags_win() {
        let vars = env(&[
            ("VAULTD_MAX_CONNECTIONS", "7"),
            ("VAULTD_SEAL_ON_ALARM", "true"),
            ("VAULTD_KMS__KEY_ID", "other"),
            ("VAULTD_JOBS__LEASE_SECONDS", "60"),
            ("VAULTD_SOCKET", "/env.sock"),
            ("VAULTD_DATA_DIR", "/env-data"),
        ]);
        let flags = Overrides {
            socket: Some("/flag.sock".into()),
            ..Overrides::default()
        };
        let cfg = Config::from_raw(raw_config(BASE, &vars).expect("raw"), &flags).expect("valid");
        assert_eq!(cfg.max_connections, 7);
        assert!(cfg.seal_on_alarm);
        assert!(matches!(cfg.kms, KmsConfig::Local { ref key_id, .. } if key_id == "other"));
        assert_eq!(cfg.job_lease, Duration::from_secs(60));
        assert_eq!(cfg.data_dir, Path::new("/env-data"));
        assert_eq!(
            cfg.socket,
            Path::new("/flag.sock"),
            "a flag beats the variable"
        );
    }

    #[test]
    fn environment_errors_name_the_variable() {
        for (vars, why) in [
            (&[("VAULTD_MAX_CONNECTIONS", "many")][..], "invalid type"),
            (
                &[("VAULTD_SEAL_ON_ALARMS", "true")],
                "unknown field `seal_on_alarms`",
            ),
            (&[("VAULTD_KMS__KEYID", "x")], "unknown field `keyid`"),
        ] {
            let err = format!("{:#}", raw_config(BASE, &env(vars)).expect_err(why));
            assert!(err.contains(vars[0].0) && err.contains(why), "{why}: {err}");
        }
        let err = format!(
            "{:#}",
            raw_config(BASE, &env(&[("VAULTD_JOBS__LEASE_SECONDS", "1")]))
                .map(|raw| Config::from_raw(raw, &Overrides::default()))
                .expect("parses")
                .expect_err("out of range")
        );
        assert!(err.contains("lease_seconds must be 3-3600"), "{err}");
    }

    #[test]
    fn dev_takes_only_the_socket_data_dir_and_log_format_from_the_environment() {
        let o = Overrides::default()
            .or_dev_env(&env(&[
                ("VAULTD_SOCKET", "/d.sock"),
                ("VAULTD_LOG_FORMAT", "json"),
            ]))
            .expect("ok");
        assert_eq!(o.socket.as_deref(), Some(Path::new("/d.sock")));
        assert_eq!(o.log_format.as_deref(), Some("json"));
        let err = Overrides::default()
            .or_dev_env(&env(&[("VAULTD_MAX_CONNECTIONS", "7")]))
            .expect_err("not for --dev")
            .to_string();
        assert!(
            err.contains("VAULTD_MAX_CONNECTIONS") && err.contains("--dev"),
            "{err}"
        );
    }

    /// BASE with a `[postgres]` section whose url_file holds `url` with `mode`.
    fn with_postgres(url: &str, mode: u32, node: &str) -> (tempfile::TempDir, String) {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pg.conn");
        std::fs::write(&file, url).expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let text = format!(
            "{BASE}[postgres]\nurl_file = \"{}\"\nnode_id = \"{node}\"\n",
            file.display()
        );
        (dir, text)
    }

    #[test]
    fn postgres_section_reads_an_owner_only_url_file_and_never_echoes_it() {
        let url = "host=/run/pg,db2.internal user=vaultd password=hunter2-planted \
                   target_session_attrs=read-write";
        let (_dir, text) = with_postgres(url, 0o600, "vault-a");
        let cfg = parse(&text).expect("valid");
        let pg = cfg.postgres.as_ref().expect("postgres");
        assert_eq!(pg.node, "vault-a");
        assert_eq!(pg.config.get_hosts().len(), 2);
        assert!(!format!("{cfg:?}").contains("hunter2"), "{cfg:?}");

        let (_dir, text) = with_postgres(url, 0o644, "vault-a");
        let err = format!("{:#}", parse(&text).expect_err("readable by others"));
        assert!(err.contains("mode"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");

        let (_dir, text) = with_postgres("host=/x password=hunter2-planted nonsense", 0o600, "a");
        let err = format!("{:#}", parse(&text).expect_err("does not parse"));
        assert!(!err.contains("hunter2"), "{err}");

        for node in ["", "has space", &"n".repeat(65)] {
            let (_dir, text) = with_postgres(url, 0o600, node);
            assert!(parse(&text).is_err(), "node_id {node:?}");
        }
    }

    /// BASE with a `[postgres]` section of `url` (in an owner-only url_file) and `extra` lines.
    fn with_postgres_tls(url: &str, extra: &str) -> (tempfile::TempDir, String) {
        let (dir, text) = with_postgres(url, 0o600, "vault-a");
        (dir, format!("{text}{extra}\n"))
    }

    #[test]
    fn postgres_tls_is_verified_and_required_with_ca_file_and_refused_without() {
        use tokio_postgres::config::SslMode;
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        std::fs::write(&ca, params.self_signed(&key).expect("ca").pem()).expect("write");
        let ca_line = format!("ca_file = \"{}\"", ca.display());

        // With ca_file: TLS required (the driver's default `prefer` raised), every host TCP.
        let url = "host=db1.internal,127.0.0.1 user=vaultd password=hunter2-planted";
        let (_d, text) = with_postgres_tls(url, &ca_line);
        let cfg = parse(&text).expect("valid");
        let pg = cfg.postgres.as_ref().expect("postgres");
        assert_eq!(pg.config.get_ssl_mode(), SslMode::Require);
        assert!(pg.tls.is_some());
        let debug = format!("{cfg:?}");
        assert!(
            debug.contains("ca.pem") && !debug.contains("hunter2"),
            "{debug}"
        );
        let (_d, text) = with_postgres_tls(&format!("{url} sslmode=require"), &ca_line);
        assert!(parse(&text).is_ok());

        let refused = |url: &str, extra: &str| {
            let (_d, text) = with_postgres_tls(url, extra);
            let err = format!("{:#}", parse(&text).expect_err(url));
            assert!(!err.contains("hunter2"), "{err}");
            err
        };
        let err = refused(
            "host=/run/pg,db1.internal password=hunter2-planted",
            &ca_line,
        );
        assert!(
            err.contains("Unix socket") && err.contains("/run/pg"),
            "{err}"
        );
        let err = refused(
            "host=db1 sslmode=disable password=hunter2-planted",
            &ca_line,
        );
        assert!(err.contains("sslmode=disable"), "{err}");
        let err = refused(
            "host=db1 password=hunter2-planted",
            "ca_file = \"/nonexistent.pem\"",
        );
        assert!(
            err.contains("ca_file") && err.contains("/nonexistent.pem"),
            "{err}"
        );
        // Without ca_file: plain, and no TLS without verification.
        let err = refused("host=db1 sslmode=require password=hunter2-planted", "");
        assert!(err.contains("needs ca_file"), "{err}");
        // libpq settings the driver does not know get a word on what to do instead.
        for mode in ["verify-full", "verify-ca", "allow"] {
            let err = refused(
                &format!("host=db1 sslmode={mode} password=hunter2-planted"),
                "",
            );
            assert!(
                err.contains("sslmode must be disable, prefer or require"),
                "{err}"
            );
        }
        let err = refused("host=db1 sslrootcert=/ca.pem password=hunter2-planted", "");
        assert!(err.contains("ca_file"), "{err}");
        let (_d, text) = with_postgres_tls("host=db1 password=hunter2-planted", "");
        let cfg = parse(&text).expect("plain");
        let pg = cfg.postgres.as_ref().expect("postgres");
        assert_eq!(pg.config.get_ssl_mode(), SslMode::Disable);
        assert!(pg.tls.is_none());
    }

    #[test]
    fn job_lease_defaults_to_30_seconds_and_is_bounded() {
        assert_eq!(
            parse(BASE).expect("defaults").job_lease,
            Duration::from_secs(30)
        );
        let cfg = parse(&format!("{BASE}[jobs]\nlease_seconds = 3\n")).expect("valid");
        assert_eq!(cfg.job_lease, Duration::from_secs(3));
        for bad in [
            "lease_seconds = 0",
            "lease_seconds = 2",
            "lease_seconds = 3601",
            "lease = 5",
        ] {
            assert!(parse(&format!("{BASE}[jobs]\n{bad}\n")).is_err(), "{bad}");
        }
    }

    #[test]
    fn storage_settings_are_checked() {
        let cfg = parse(BASE).expect("defaults");
        assert!(!cfg.storage.compression);
        assert_eq!(cfg.storage.segment_bytes, 64 << 20);
        let cfg = parse(&format!(
            "compress_pages = true\nwal_segment_mib = 2\ncache_mib = 8\n{BASE}"
        ))
        .expect("valid");
        assert!(cfg.storage.compression);
        assert_eq!(
            (cfg.storage.segment_bytes, cfg.storage.cache_bytes),
            (2 << 20, 8 << 20)
        );
        for bad in [
            "wal_segment_mib = 0",
            "wal_segment_mib = 5000",
            "wal_checkpoint_mib = 0",
        ] {
            let err = parse(&format!("{bad}\n{BASE}")).expect_err(bad);
            assert!(err.to_string().contains("must be"), "{bad}: {err}");
        }
    }

    #[test]
    fn parses_policy_with_users_and_patterns() {
        let cfg = parse(&format!(
            "{BASE}[[policy]]\nusers = [\"root\"]\ncapabilities = [\"token:seal\"]\ntenants = [\"acme-*\"]\n"
        ))
        .expect("valid");
        let root = Identity::local(0, 0, None);
        assert!(
            cfg.policy
                .allows(&root, Capability::TokenSeal, Some("acme-1"))
        );
        assert!(
            !cfg.policy
                .allows(&root, Capability::TokenUnseal, Some("acme-1"))
        );
    }

    #[test]
    fn quotas_compose_per_rate_and_are_checked() {
        let rule = "[[policy]]\nuids = [7]\ncapabilities = [\"token:unseal\", \"token:read\"]\ntenants = [\"*\"]\n";
        let cfg = parse(&format!(
            "{BASE}{rule}quotas = [{{ capabilities = [\"token:unseal\"], per_second = 50, per_day = 100000 }}]\n"
        ))
        .expect("valid");
        let who = Identity::local(7, 7, None);
        let quotas = cfg.policy.quotas(&who, &[Capability::TokenUnseal]);
        let rates: Vec<_> = quotas
            .iter()
            .map(|(_, q)| (q.requests, q.window.as_secs()))
            .collect();
        assert_eq!(rates, [(50, 1), (100_000, 86_400)]);
        assert!(cfg.policy.quotas(&who, &[Capability::TokenRead]).is_empty());
        assert!(
            cfg.policy
                .quotas(&Identity::local(8, 8, None), &[Capability::TokenUnseal])
                .is_empty()
        );
        for (bad, says) in [
            (
                "{ capabilities = [\"token:seal\"], per_second = 5 }",
                "does not grant",
            ),
            ("{ capabilities = [\"token:unseal\"] }", "no rate"),
            (
                "{ capabilities = [\"token:unseal\"], per_second = 0 }",
                "at least 1",
            ),
            ("{ capabilities = [], per_second = 5 }", "no capabilities"),
            (
                "{ capabilities = [\"token:unseal\"], per_week = 5 }",
                "unknown field",
            ),
        ] {
            let err = parse(&format!("{BASE}{rule}quotas = [{bad}]\n")).expect_err(bad);
            assert!(format!("{err:#}").contains(says), "{bad}: {err:#}");
        }
    }

    #[test]
    fn brakes_default_to_the_rules_tenants_and_are_checked() {
        let rule = "[[policy]]\nname = \"app\"\nuids = [7]\ncapabilities = [\"token:unseal\", \"sys:status\"]\ntenants = [\"acme*\"]\n";
        let cfg = parse(&format!(
            "{BASE}{rule}brakes = [{{ capabilities = [\"token:unseal\"], distinct_tokens = 10, window_secs = 60 }}]\n"
        ))
        .expect("valid");
        let who = Identity::local(7, 7, None);
        let brakes = cfg
            .policy
            .brakes(&who, &[Capability::TokenUnseal], "acme-1");
        let [(_, brake)] = brakes.as_slice() else {
            panic!("{brakes:?}")
        };
        assert_eq!((brake.rule.as_str(), brake.distinct_tokens), ("app", 10));
        assert!(
            cfg.policy
                .brakes(&who, &[Capability::TokenUnseal], "globex")
                .is_empty()
        );
        assert!(
            cfg.policy
                .brakes(&who, &[Capability::TokenRead], "acme")
                .is_empty()
        );
        for (bad, says) in [
            (
                "{ capabilities = [\"sys:status\"], distinct_tokens = 1, window_secs = 1 }",
                "counts tokens",
            ),
            (
                "{ capabilities = [\"token:read\"], distinct_tokens = 1, window_secs = 1 }",
                "does not grant",
            ),
            (
                "{ capabilities = [\"token:unseal\"], distinct_tokens = 0, window_secs = 1 }",
                "at least 1",
            ),
            (
                "{ capabilities = [\"token:unseal\"], distinct_tokens = 1, window_secs = 0 }",
                "window_secs",
            ),
            (
                "{ capabilities = [\"token:unseal\"], distinct_tokens = 1, window_secs = 1, tenants = [] }",
                "no tenants",
            ),
            (
                "{ capabilities = [\"token:unseal\"], distinct_tokens = 1 }",
                "window_secs",
            ),
        ] {
            let err = parse(&format!("{BASE}{rule}brakes = [{bad}]\n")).expect_err(bad);
            assert!(format!("{err:#}").contains(says), "{bad}: {err:#}");
        }
    }

    #[test]
    fn rejects_unknown_fields_capabilities_and_empty_rules() {
        assert!(parse(&format!("{BASE}bogus = 1\n")).is_err());
        assert!(
            parse(&format!(
                "{BASE}[[policy]]\nuids = [1]\ncapabilities = [\"token:all\"]\n"
            ))
            .is_err()
        );
        assert!(
            parse(&format!(
                "{BASE}[[policy]]\ncapabilities = [\"sys:status\"]\n"
            ))
            .is_err()
        );
        assert!(
            parse(&format!(
                "{BASE}[[policy]]\nuids = [1]\ncapabilities = [\"token:seal\"]\n"
            ))
            .is_err()
        );
        assert!(
            parse(&format!(
                "{BASE}[[policy]]\nusers = [\"no-such-user-x\"]\ncapabilities = [\"sys:status\"]\n"
            ))
            .is_err()
        );
    }

    const AWS: &str = "data_dir = \"/d\"\nsocket = \"/s\"\n[kms]\nprovider = \"aws\"\n";
    const ARN: &str =
        "arn:aws:kms:eu-central-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn parses_aws_kms() {
        let cfg = parse(&format!(
            "{AWS}key_id = \"{ARN}\"\nregion = \"eu-central-1\"\nendpoint_url = \"https://kms.example.internal\"\n"
        ))
        .expect("valid");
        let KmsConfig::Aws {
            key_id,
            region,
            endpoint_url,
        } = cfg.kms
        else {
            panic!("aws provider expected");
        };
        assert_eq!(key_id.as_str(), ARN);
        assert_eq!(region.as_deref(), Some("eu-central-1"));
        assert_eq!(
            endpoint_url.as_deref(),
            Some("https://kms.example.internal")
        );

        let cfg = parse(&format!(
            "{AWS}key_id = \"1234abcd-12ab-34cd-56ef-1234567890ab\"\n"
        ))
        .expect("region and endpoint are optional");
        assert!(matches!(
            cfg.kms,
            KmsConfig::Aws {
                region: None,
                endpoint_url: None,
                ..
            }
        ));
    }

    #[test]
    fn rejects_aws_alias_missing_key_and_unknown_fields() {
        assert!(parse(&format!("{AWS}key_id = \"alias/vaultd\"\n")).is_err());
        assert!(parse(AWS).is_err());
        assert!(parse(&format!("{AWS}key_id = \"{ARN}\"\nkey_dir = \"/k\"\n")).is_err());
        assert!(
            parse(&format!(
                "{AWS}key_id = \"{ARN}\"\nregion = \"EU central\"\n"
            ))
            .is_err()
        );
    }

    #[test]
    fn rejects_plain_http_endpoint_off_this_machine() {
        let with = |url: &str| {
            parse(&format!(
                "{AWS}key_id = \"{ARN}\"\nendpoint_url = \"{url}\"\n"
            ))
        };
        for ok in [
            "https://kms.eu-central-1.amazonaws.com",
            "http://127.0.0.1:4566",
            "http://localhost:4566/",
            "http://[::1]:4566",
        ] {
            assert!(with(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://kms.example.internal",
            "http://10.0.0.5:4566",
            "http://127.0.0.1.evil.example:80",
            "ftp://127.0.0.1",
            "kms.example.internal",
            "https://",
            "https://user:pw@kms.example.internal",
        ] {
            assert!(with(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_override_the_file() {
        let o = Overrides {
            socket: Some("/other".into()),
            ..Overrides::default()
        };
        let cfg = Config::from_raw(toml::from_str(BASE).expect("toml"), &o).expect("valid");
        assert_eq!(cfg.socket, PathBuf::from("/other"));
    }

    #[test]
    fn parses_tcp_section_and_subjects() {
        let cfg = parse(BASE).expect("defaults");
        assert_eq!(cfg.tcp, None);
        let cfg = parse(&format!(
            "{BASE}[tcp]\nlisten = \"[::1]:8443\"\ncert = \"/c\"\nkey = \"/k\"\nclient_ca = \"/ca\"\n\
             [[policy]]\nsubjects = [\"payments-app\"]\ncapabilities = [\"token:seal\"]\ntenants = [\"*\"]\n"
        ))
        .expect("valid");
        let tcp = cfg.tcp.expect("tcp");
        assert_eq!(tcp.listen, "[::1]:8443".parse().expect("addr"));
        assert_eq!(tcp.key, PathBuf::from("/k"));
        let app = Identity::Certificate("payments-app".parse().expect("name"));
        assert!(cfg.policy.allows(&app, Capability::TokenSeal, Some("acme")));
        assert!(!cfg.policy.allows(
            &Identity::local(0, 0, None),
            Capability::TokenSeal,
            Some("acme")
        ));
        for bad in [
            "[tcp]\nlisten = \"127.0.0.1\"\ncert = \"/c\"\nkey = \"/k\"\nclient_ca = \"/ca\"\n",
            "[tcp]\nlisten = \"127.0.0.1:1\"\ncert = \"/c\"\nkey = \"/k\"\n",
            "[tcp]\nlisten = \"127.0.0.1:1\"\ncert = \"/c\"\nkey = \"/k\"\nclient_ca = \"/ca\"\nallow_anonymous = true\n",
            "[[policy]]\nsubjects = [\"pay*\"]\ncapabilities = [\"sys:status\"]\n",
            "[[policy]]\nsubjects = [\"\"]\ncapabilities = [\"sys:status\"]\n",
        ] {
            assert!(parse(&format!("{BASE}{bad}")).is_err(), "{bad}");
        }
    }
}
