//! The command line, as clap derive types. Parsing only: `cmd/` acts on it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;
use vault_client::Timestamp;
use vault_client::audit::{Anchor, Outcome, unhex};

/// Exit codes, shown at the end of `--help` and documented in `docs/cli.md`.
const EXIT_CODES: &str = "\
Exit codes:
  0  success (`status`: the vault is unsealed)
  1  any other error (invalid request, KMS failure, timeout, failed rewrap job, damaged
     backup, ...)
  2  usage error (bad arguments, a confirmation that does not match, or a refusal that a
     flag overrides: --force, --allow-other-vault); `status`: the vault is not unsealed
  3  the vault is sealed or uninitialized (any command but `status`)
  4  denied: the caller lacks the capability
  5  not found (tenant, token)
  6  conflict (e.g. retiring a key version still in use), binding mismatch or expired token
  7  cannot connect to vaultd (socket, node, or TLS handshake)
  8  audit verification found problems";

/// Operator and auditor command line for vaultd.
///
/// Talks to the daemon over its Unix socket, or with --addr over its TCP listener with mutual
/// TLS. Secrets are read from stdin (or a file), never from the command line; only `token get`
/// and `transit unseal` print a secret, to stdout.
#[derive(Debug, Parser)]
#[command(name = "vault-cli", version, after_long_help = EXIT_CODES)]
pub(crate) struct Cli {
    /// The daemon's socket.
    #[arg(
        long,
        global = true,
        env = "VAULT_SOCKET",
        value_name = "PATH",
        default_value = "./vaultd-dev/vaultd.sock"
    )]
    pub(crate) socket: PathBuf,

    /// vaultd's TCP listener, HOST:PORT; repeatable or comma-separated, tried in order (the next
    /// one when a node cannot be reached or is sealed). With it the CLI speaks mutual TLS
    /// instead of using the socket, and needs --cert, --key and --ca.
    #[arg(
        long,
        global = true,
        env = "VAULT_ADDR",
        value_name = "HOST:PORT",
        value_delimiter = ','
    )]
    pub(crate) addr: Vec<String>,

    /// The client certificate chain (PEM) to present over TLS.
    #[arg(long, global = true, env = "VAULT_CERT", value_name = "PATH")]
    pub(crate) cert: Option<PathBuf>,

    /// The client certificate's private key (PEM), by path only; refused if group or others
    /// may read it.
    #[arg(long, global = true, env = "VAULT_KEY", value_name = "PATH")]
    pub(crate) key: Option<PathBuf>,

    /// The CA bundle (PEM) that verifies vaultd's server certificate.
    #[arg(long, global = true, env = "VAULT_CA", value_name = "PATH")]
    pub(crate) ca: Option<PathBuf>,

    /// The name to verify in vaultd's server certificate (default: the host of each --addr).
    #[arg(long, global = true, value_name = "NAME")]
    pub(crate) server_name: Option<String>,

    /// Print the answer, and errors, as JSON instead of a table (same as --format json).
    #[arg(long, global = true)]
    pub(crate) json: bool,

    /// How to print answers and errors.
    #[arg(long, global = true, env = "VAULT_FORMAT", value_name = "FORMAT")]
    pub(crate) format: Option<Format>,

    /// Give up on a request after this many seconds (default 30; 120 for the commands that
    /// wait on the KMS: operator init and unseal, keys rotate master and kms, keys kms migrate,
    /// longer than the daemon's own 30 s KMS budget so that its error, not a timeout, comes back).
    #[arg(long, global = true, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) timeout: Option<u64>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Aligned tables and `key  value` lines.
    Table,
    /// JSON, errors included.
    Json,
    /// Comma-separated values with a header row (RFC 4180): `audit tail`, `audit search` and
    /// `keys history` only.
    Csv,
}

/// The default `--timeout`, and the one of commands that wait on the KMS.
const DEFAULT_TIMEOUT: u64 = 30;
const KMS_TIMEOUT: u64 = 120;

impl Cli {
    /// `--timeout`, or the default of the command.
    pub(crate) fn timeout(&self) -> u64 {
        let kms = matches!(
            &self.command,
            Command::Operator(Operator::Init | Operator::Unseal)
                | Command::Keys(
                    Keys::Rotate(Rotate::Master | Rotate::Kms { .. })
                        | Keys::Kms(Kms::Migrate { .. })
                )
        );
        self.timeout
            .unwrap_or(if kms { KMS_TIMEOUT } else { DEFAULT_TIMEOUT })
    }

    /// Whether answers and errors are JSON (`--json`, or `--format json` / `VAULT_FORMAT=json`).
    pub(crate) fn json(&self) -> bool {
        self.json || self.format == Some(Format::Json)
    }

    /// Whether answers are CSV (`--format csv`, `VAULT_FORMAT=csv`); `--json` wins.
    pub(crate) fn csv(&self) -> bool {
        !self.json && self.format == Some(Format::Csv)
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// The audit log: tail, search, verify (also offline), export, public key.
    #[command(subcommand)]
    Audit(Audit),
    /// Backups: create (from the running daemon), restore (into a stopped vault), verify.
    #[command(subcommand)]
    Backup(Backup),
    /// This CLI's version and the daemon's.
    Version,
    /// Write man pages, one per command, into DIR (`man -l DIR/vault-cli.1`).
    Man {
        /// Where to write them (created when missing).
        dir: PathBuf,
    },
    /// Print shell completions to stdout.
    Completions {
        /// The shell to generate for.
        shell: Shell,
    },
    /// Key rotation, rewrap of stored records, retirement, history.
    #[command(subcommand)]
    Keys(Keys),
    /// Vault lifecycle: init, unseal, seal, break-glass recovery.
    #[command(subcommand)]
    Operator(Operator),
    /// Show the vault's state, KMS, master key version, counts and the daemon's version. Exits 0
    /// when unsealed, 2 when sealed or uninitialized.
    Status,
    /// Tenants: create, list, show, destroy.
    #[command(subcommand)]
    Tenant(Tenant),
    /// Consent tokens: put, get, list, delete.
    #[command(subcommand)]
    Token(Token),
    /// Transit mode: seal, unseal and rewrap data the caller keeps.
    #[command(subcommand)]
    Transit(Transit),
}

#[derive(Debug, Subcommand)]
pub(crate) enum Backup {
    /// Write a consistent snapshot of the vault to a new file (mode 0600), then check it.
    ///
    /// The vault keeps serving meanwhile, and a sealed vault can be backed up too: the file
    /// holds ciphertext, wrapped keys and the audit log, never a plaintext key. It is written
    /// beside FILE, synced and read back whole before it takes FILE's name. Needs sys:backup.
    Create {
        /// The file to create; an existing file is refused unless --force.
        file: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Restore a backup into the data directory of a stopped vault; needs no daemon.
    ///
    /// The whole file is checked before anything is written. Run it as the user vaultd runs
    /// as. The next unseal of the restored vault records a backup.restore audit entry.
    Restore(BackupRestore),
    /// Check a backup file (format, counts, checksum) without a daemon.
    Verify {
        /// The backup file.
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub(crate) struct BackupRestore {
    /// The backup file.
    pub(crate) file: PathBuf,
    /// The stopped vault's data directory (it may not exist yet).
    #[arg(long, value_name = "DIR", required_unless_present = "config")]
    pub(crate) data_dir: Option<PathBuf>,
    /// vaultd's config file: its data_dir (unless --data-dir) and storage settings.
    #[arg(long, value_name = "PATH")]
    pub(crate) config: Option<PathBuf>,
    /// Replace a directory that holds a vault; its contents are kept as DIR.replaced-TIME.
    #[arg(long)]
    pub(crate) force: bool,
    /// Accept a backup of another vault than the one in the directory (with --force).
    #[arg(long)]
    pub(crate) allow_other_vault: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Keys {
    /// Set a tenant's minimum decryption version for transit blobs.
    ///
    /// Transit blobs under lower versions are refused from now on. No key is destroyed, so the
    /// step can be undone; stored records are not affected (rewrap them instead).
    Config {
        /// The tenant.
        tenant: String,
        /// The lowest data key version transit unseal accepts.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        min_decryption_version: u32,
    },
    /// Key events with time, actor, versions and KMS key, and the live data key versions.
    History {
        /// Only this tenant's events (and the vault-wide ones) and keys.
        #[arg(long)]
        tenant: Option<String>,
        /// Only the live data key versions, with their record counts (with --format csv: the
        /// versions instead of the events).
        #[arg(long)]
        versions: bool,
    },
    /// Show a background job (`keys rewrap --detach` prints its id).
    Job {
        /// The job id.
        id: String,
    },
    /// Destroy a tenant's data key versions below N.
    ///
    /// Refused (exit 6) while any stored record still uses one of them: run `keys rewrap`
    /// first. Also raises the tenant's minimum decryption version to N.
    Retire {
        /// The tenant.
        tenant: String,
        /// Destroy every version below this one (at most the current version).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        below: u32,
    },
    /// Re-encrypt stored records under their tenant's current data key.
    ///
    /// The daemon runs it as a background job that survives restarts. Without --detach this
    /// waits for the end with a progress bar (exit 0 when completed, 1 when failed);
    /// interrupting the wait does not stop the job.
    Rewrap {
        /// Only this tenant (default: every tenant).
        #[arg(long)]
        tenant: Option<String>,
        /// At most N records per second.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        rate: Option<u64>,
        /// Print the job id and exit; follow it with `keys job ID`.
        #[arg(long)]
        detach: bool,
    },
    /// Move the master key to a new KMS key without the old one (after break-glass recovery).
    #[command(subcommand)]
    Kms(Kms),
    /// Rotate the master key, move it to another KMS key, or rotate a tenant's data key.
    #[command(subcommand)]
    Rotate(Rotate),
}

#[derive(Debug, Subcommand)]
pub(crate) enum Kms {
    /// Wrap the master key the daemon holds under a new KMS key, asking nothing of the old one.
    ///
    /// For a vault opened with recovery shares because its KMS key is gone; `keys rotate kms`
    /// needs the old key alive. Then set kms.key_id in the config: the next start auto-unseals
    /// through the new key.
    Migrate {
        /// The KMS key id to wrap the master key under.
        key_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum Rotate {
    /// Move the master key under another KMS key (then set kms.key_id in the config).
    Kms {
        /// The KMS key id to move the master key under.
        key_id: String,
    },
    /// Rotate the master key: every data key is rewrapped under a new version.
    ///
    /// The data keys and the audit keys are rewrapped in one atomic switch, and the old master
    /// key version is destroyed.
    Master,
    /// Rotate a tenant's data key: new seals use the new version, older ones still decrypt.
    Tenant {
        /// The tenant.
        tenant: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum Operator {
    /// Create the master key (once); the vault is unsealed afterwards.
    Init,
    /// Hand in one break-glass recovery share while the vault is sealed.
    ///
    /// The share is read from --share FILE or stdin: the age file its holder received, which is
    /// decrypted here with --identity (the daemon never sees it encrypted, nor the identity), or
    /// the line it decrypts to (vaultd-share-v1:…). The share that reaches the threshold
    /// unseals the vault without the KMS; then run `keys kms migrate NEW_KEY`.
    Recover {
        /// The holder's age identity file (AGE-SECRET-KEY-1…), to decrypt an age-encrypted
        /// share.
        #[arg(long, short = 'i', value_name = "FILE")]
        identity: Option<PathBuf>,
        /// Read the share from this file instead of stdin.
        #[arg(long, value_name = "FILE")]
        share: Option<PathBuf>,
    },
    /// Break-glass recovery shares: K of N open the vault without the KMS.
    #[command(subcommand)]
    Recovery(Recovery),
    /// Wipe every key from the daemon's memory.
    Seal,
    /// Unwrap the master key through the KMS.
    Unseal,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Recovery {
    /// Create a recovery key and split it into one share per age recipient.
    ///
    /// Each share is encrypted by the daemon to its holder's recipient and written to
    /// DIR/share-N.age; no share exists in clear. A new set voids every earlier share. The
    /// master key, and each new version at rotation, is kept encrypted to the recovery key.
    Create {
        /// How many shares open the vault (2 or more).
        #[arg(long, short = 'k', value_name = "K")]
        threshold: u8,
        /// A holder's age recipient (age1…); repeat, once per holder.
        #[arg(long, short = 'r', value_name = "RECIPIENT")]
        recipient: Vec<String>,
        /// A file of recipients, one per line (# comments and blank lines are skipped).
        #[arg(long, short = 'R', value_name = "FILE")]
        recipients_file: Option<PathBuf>,
        /// The directory to write the encrypted shares to (created 0700 if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum Tenant {
    /// Create a tenant (idempotent).
    Create {
        /// Tenant name: 1-128 of A-Z a-z 0-9 . _ -, starting alphanumeric.
        tenant: String,
    },
    /// Crypto-shred a tenant: destroy its data keys and every token. Irreversible.
    Destroy {
        /// The tenant.
        tenant: String,
        /// Repeat the tenant name to confirm.
        #[arg(long, value_name = "TENANT")]
        confirm: String,
        /// Write the signed erasure receipt to this new file (mode 0600).
        #[arg(long, value_name = "FILE")]
        receipt: Option<PathBuf>,
    },
    /// The signed erasure receipt of a destroyed tenant, again (to stdout, or --out FILE).
    ///
    /// Check it offline with `vault-cli audit receipt verify FILE --pubkey KEYFILE`.
    Receipt {
        /// The destroyed tenant.
        tenant: String,
        /// Write it to this new file (mode 0600) instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// List tenants.
    List,
    /// Show one tenant with its key versions and token counts.
    Show {
        /// The tenant.
        tenant: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum Token {
    /// Delete a token.
    Delete {
        /// The tenant.
        tenant: String,
        /// The token id.
        id: String,
    },
    /// Unseal a token and print it to stdout (or its metadata with --meta).
    Get(TokenGet),
    /// List token metadata, one page at a time.
    List {
        /// The tenant.
        tenant: String,
        /// Start after this token id (the `next` of the previous page).
        #[arg(long, value_name = "ID")]
        after: Option<String>,
        /// Page size.
        #[arg(long)]
        limit: Option<u32>,
        /// Only tokens past their expires_at, not purged yet (docs/retention.md).
        #[arg(long, conflicts_with = "expiring_within")]
        expired: bool,
        /// Only tokens that expire within this time: 2w, 7d, 12h, 30m or 90s.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        expiring_within: Option<std::time::Duration>,
    },
    /// Seal and store a token read from stdin (or --secret-file), never from argv.
    Put(TokenPut),
}

#[derive(Debug, Args)]
pub(crate) struct TokenPut {
    /// The tenant.
    pub(crate) tenant: String,
    /// The token id: 1-128 of A-Z a-z 0-9 . _ -, starting alphanumeric.
    pub(crate) id: String,
    /// A file with the binding's personal data, kept off the command line (which every local
    /// user can read in /proc): the user who gave consent and the account the token reads or
    /// pays from, as `subject=…` and `account=…`, one per line.
    #[arg(long, value_name = "PATH")]
    pub(crate) binding_file: PathBuf,
    /// The bank that issued the token.
    #[arg(long)]
    pub(crate) bank: String,
    /// The consent scope, e.g. accounts or payments.
    #[arg(long)]
    pub(crate) scope: String,
    /// When the token stops being usable (RFC 3339, e.g. 2026-12-31T23:59:59Z).
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub(crate) expires_at: Option<Timestamp>,
    /// Store only if the current revision is N (0: only if the token does not exist).
    #[arg(long, value_name = "N")]
    pub(crate) expected_revision: Option<u64>,
    /// Read the token from this file instead of stdin.
    #[arg(long, value_name = "PATH")]
    pub(crate) secret_file: Option<PathBuf>,
    /// Send the bytes unchanged, as base64 (no newline trimming, no UTF-8 check).
    #[arg(long)]
    pub(crate) binary: bool,
    /// Plant a decoy (needs token:seal and keys:read): it looks like any token to callers
    /// without keys:read, and unsealing it raises an alarm (docs/alarms.md).
    #[arg(long)]
    pub(crate) decoy: bool,
}

#[derive(Debug, Args)]
pub(crate) struct TokenGet {
    /// The tenant.
    pub(crate) tenant: String,
    /// The token id.
    pub(crate) id: String,
    /// Refuse unless the token is bound to the account read as one line from stdin (personal
    /// data stays off the command line).
    #[arg(long)]
    pub(crate) expect_account_stdin: bool,
    /// Refuse unless the token is bound to the subject read as one line from stdin (after the
    /// account's line when --expect-account-stdin is given too).
    #[arg(long)]
    pub(crate) expect_subject_stdin: bool,
    /// Refuse unless the token has this scope.
    #[arg(long, value_name = "SCOPE")]
    pub(crate) expect_scope: Option<String>,
    /// Print metadata only; the secret is not unsealed.
    #[arg(long, conflicts_with_all = ["expect_account_stdin", "expect_subject_stdin", "expect_scope"])]
    pub(crate) meta: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Transit {
    /// Re-encrypt a blob (from --sealed or stdin) under the current key; print the new blob.
    ///
    /// The plaintext never leaves the daemon. Needs transit:unseal.
    Rewrap {
        /// The tenant whose key sealed it.
        tenant: String,
        /// Context given at seal time (the new blob keeps it).
        #[arg(long, default_value = "")]
        context: String,
        /// The blob (a blob is not secret); read from stdin when absent.
        #[arg(long, value_name = "BLOB")]
        sealed: Option<String>,
    },
    /// Seal stdin and print the blob (vault:v{N}:...); the daemon keeps nothing.
    Seal {
        /// The tenant whose key seals.
        tenant: String,
        /// Context bound to the blob; unseal needs the same.
        #[arg(long, default_value = "")]
        context: String,
        /// Seal the bytes unchanged (no newline trimming).
        #[arg(long)]
        binary: bool,
    },
    /// Unseal a blob (from --sealed or stdin) and print the plaintext to stdout.
    Unseal {
        /// The tenant whose key sealed it.
        tenant: String,
        /// Context given at seal time.
        #[arg(long, default_value = "")]
        context: String,
        /// The blob (a blob is not secret); read from stdin when absent.
        #[arg(long, value_name = "BLOB")]
        sealed: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum Audit {
    /// Move the oldest entries out of the live log: write them to a sealed archive (a new
    /// file, mode 0600, verified), then have the daemon leave a signed checkpoint and give
    /// their storage back. Needs `audit:archive`.
    Archive {
        /// Archive the entries before this one, up to the last signed head among them.
        #[arg(long, value_name = "SEQ")]
        before: u64,
        /// The archive file to create.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The chain of this node (a shared PostgreSQL store); by default the daemon's own.
        #[arg(long, value_name = "ID")]
        node: Option<String>,
    },
    /// Write the log (entries and signed heads, byte for byte) to a new file, mode 0600.
    Export {
        /// The file to create; an existing file is refused unless --force.
        file: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Print the audit public key (hex) that verifies the log's signed heads.
    Pubkey,
    /// Erasure receipts: check one offline.
    #[command(subcommand)]
    Receipt(AuditReceipt),
    /// Write the auditor's report: one self-contained HTML file (no scripts, fonts or styles
    /// from elsewhere) with the verification result, a key-rotation timeline, records per key
    /// version, retired and destroyed versions, and an access summary.
    Report(AuditReportArgs),
    /// Entries matching filters, oldest first. Personal data is searched by its HMAC.
    Search(AuditSearch),
    /// Print the last entries; with -f, keep printing new ones.
    Tail {
        /// How many entries.
        #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 20,
              value_parser = clap::value_parser!(u64).range(0..=100_000))]
        lines: u64,
        /// Poll every second for new entries until interrupted.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only the chain of this node (several nodes on one PostgreSQL store keep a chain
        /// each; by default every chain is read and merged by time).
        #[arg(long, value_name = "ID")]
        node: Option<String>,
    },
    /// Verify the chain and its signatures: the daemon's log, or an export with --offline.
    Verify(AuditVerify),
}

#[derive(Debug, Args)]
pub(crate) struct AuditReportArgs {
    /// The HTML file to write (mode 0600; an existing file is refused unless --force).
    #[arg(long, value_name = "FILE.html")]
    pub(crate) out: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub(crate) force: bool,
    /// Report on this export (from `audit export`) instead of the live daemon; needs no daemon.
    /// Records per key version are then not known.
    #[arg(long, value_name = "FILE", requires = "pubkey")]
    pub(crate) offline: Option<PathBuf>,
    /// The audit public key file, with --offline.
    #[arg(long, value_name = "KEYFILE", requires = "offline")]
    pub(crate) pubkey: Option<PathBuf>,
    /// The rotation policy to measure key ages against, in days (default: the daemon's
    /// `[rotation] max_dek_age_days`, if it has one).
    #[arg(long, value_name = "DAYS")]
    pub(crate) max_key_age_days: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditReceipt {
    /// Check an erasure receipt with the audit public key alone: no daemon needed. Exit 8
    /// when it does not verify.
    Verify {
        /// The receipt file (`tenant destroy --receipt`, `tenant receipt`).
        file: PathBuf,
        /// The audit public key file (hex, as `vault-cli audit pubkey` prints it).
        #[arg(long, value_name = "KEYFILE")]
        pubkey: PathBuf,
    },
}

#[derive(Debug, Args)]
pub(crate) struct AuditSearch {
    /// Only this tenant.
    #[arg(long)]
    pub(crate) tenant: Option<String>,
    /// Only this token id.
    #[arg(long, value_name = "ID")]
    pub(crate) token: Option<String>,
    /// Only this caller: a uid, `cert=NAME` for a TLS client certificate's subject, or `system`
    /// for the daemon's own events.
    #[arg(long, value_name = "UID|cert=NAME|system", value_parser = parse_actor)]
    pub(crate) actor: Option<String>,
    /// Only this operation (token.unseal), or those starting with a prefix ending in "." (keys.);
    /// repeat for several. docs/audit-log.md lists every operation; another name is refused.
    #[arg(long, value_name = "OP", value_parser = parse_op)]
    pub(crate) op: Vec<String>,
    /// Only this outcome.
    #[arg(long, value_enum)]
    pub(crate) outcome: Option<OutcomeArg>,
    /// Not before this time: RFC 3339, a date (2026-03-01, meaning 00:00:00Z), a time back from
    /// now (90s, 30m, 12h, 1d, 2w) or Unix seconds.
    #[arg(long, value_name = "TIME", value_parser = parse_filter_time)]
    pub(crate) since: Option<Timestamp>,
    /// Not after this time, given as for --since (a date means 00:00:00Z that day).
    #[arg(long, value_name = "TIME", value_parser = parse_filter_time)]
    pub(crate) until: Option<Timestamp>,
    /// Only entries for this account, read as one line from stdin (personal data stays off the
    /// command line); the daemon turns it into the HMAC the log holds.
    #[arg(long, conflicts_with = "account_hmac")]
    pub(crate) account_stdin: bool,
    /// Only entries for the account with this HMAC (hex, from a log entry or `POST /v1/audit/hash`).
    #[arg(long, value_name = "HEX", value_parser = parse_hmac)]
    pub(crate) account_hmac: Option<String>,
    /// Only entries for this subject, read as one line from stdin (after the account's line
    /// when --account-stdin is given too).
    #[arg(long, conflicts_with = "subject_hmac")]
    pub(crate) subject_stdin: bool,
    /// Only entries for the subject with this HMAC (hex).
    #[arg(long, value_name = "HEX", value_parser = parse_hmac)]
    pub(crate) subject_hmac: Option<String>,
    /// Only the chain of this node (several nodes on one PostgreSQL store keep a chain each; by
    /// default every chain is searched and the matches merged by time).
    #[arg(long, value_name = "ID")]
    pub(crate) node: Option<String>,
    /// Start after this sequence number (to continue an earlier search; with several chains,
    /// in the chain --node names).
    #[arg(long, value_name = "SEQ")]
    pub(crate) after: Option<u64>,
    /// Most entries printed.
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub(crate) limit: u64,
}

/// An outcome on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutcomeArg {
    /// Refused by policy.
    Denied,
    /// Failed with an error code.
    Error,
    /// Done.
    Ok,
}

impl From<OutcomeArg> for Outcome {
    fn from(o: OutcomeArg) -> Self {
        match o {
            OutcomeArg::Denied => Self::Denied,
            OutcomeArg::Error => Self::Error,
            OutcomeArg::Ok => Self::Ok,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct AuditVerify {
    /// Fail unless the log contains this signed head, recorded from an earlier `audit verify`:
    /// finds a log replaced by an older copy, or cut off at a head.
    #[arg(long, value_name = "SEQ:HASH", value_parser = parse_anchor)]
    pub(crate) since_head: Option<Anchor>,
    /// Verify this export (from `audit export`) instead of the daemon's log; needs no daemon.
    /// Archives (`audit archive`) and a later export verify together: give them in order.
    #[arg(long, value_name = "FILE", num_args = 1.., requires = "pubkey")]
    pub(crate) offline: Vec<PathBuf>,
    /// File holding the audit public key in hex, as `audit pubkey` prints it (with --offline).
    #[arg(long, value_name = "KEYFILE", requires = "offline")]
    pub(crate) pubkey: Option<PathBuf>,
    /// Accept the adoption recorded by this `audit.adopt_unsigned` entry (its SEQ), once you
    /// have reviewed the unsigned range it names; repeatable.
    #[arg(long, value_name = "SEQ")]
    pub(crate) accept_adopted: Vec<u64>,
    /// Reread every entry: by default the daemon resumes after the last signed head it
    /// verified since it started.
    #[arg(long, conflicts_with = "offline")]
    pub(crate) full: bool,
}

fn parse_time(text: &str) -> Result<Timestamp, String> {
    Timestamp::parse(text).ok_or_else(|| match text.parse::<jiff::Timestamp>() {
        Err(reason) => format!("{text:?} is not an RFC 3339 time: {reason}"),
        Ok(_) => format!("{text:?} is not an RFC 3339 time"),
    })
}

/// The time a filter starts or ends at ([`filter_time`] from now).
fn parse_filter_time(text: &str) -> Result<Timestamp, String> {
    filter_time(text, Timestamp::now())
}

/// A time given as one of (`docs/cli.md`, "Times"):
/// - RFC 3339: `2026-03-01T12:00:00Z`, `2026-03-01T13:00:00+01:00`;
/// - a date alone: `2026-03-01`, meaning 00:00:00Z that day;
/// - a time back from `now`, as [`parse_duration`] reads it: `90s`, `30m`, `12h`, `1d`, `2w`;
/// - Unix seconds: `1772323200`.
///
/// An impossible date (`2026-02-31`) is refused with the reason.
fn filter_time(text: &str, now: Timestamp) -> Result<Timestamp, String> {
    if let Some(t) = Timestamp::parse(text) {
        return Ok(t);
    }
    if let Ok(back) = parse_duration(text) {
        let back = i64::try_from(back.as_secs()).expect("parse_duration stays below u32::MAX");
        return Ok(Timestamp(now.unix().saturating_sub(back)));
    }
    if text.len() == 10 {
        match jiff::civil::Date::strptime("%Y-%m-%d", text) {
            Ok(date) => {
                let midnight = date.to_datetime(jiff::civil::Time::midnight());
                return jiff::tz::Offset::UTC
                    .to_timestamp(midnight)
                    .map(|t| Timestamp(t.as_second()))
                    .map_err(|e| format!("{text:?} is out of range: {e}"));
            }
            // Shaped like a date but not one: jiff says why (an impossible day, say).
            Err(e) if text.as_bytes()[4] == b'-' => {
                return Err(format!("{text:?} is not a date: {e}"));
            }
            Err(_) => {}
        }
    } else if text.as_bytes().get(4) == Some(&b'-')
        && let Err(e) = text.parse::<jiff::Timestamp>()
    {
        // Shaped like RFC 3339 but not a time: jiff says why (an impossible day, no offset).
        return Err(format!("{text:?} is not an RFC 3339 time: {e}"));
    }
    Err(format!(
        "{text:?} is not a time: give RFC 3339 (2026-03-01T12:00:00Z), a date (2026-03-01, \
         meaning 00:00:00Z), a time back from now (90s, 30m, 12h, 1d, 2w) or Unix seconds"
    ))
}

/// `2w`, `7d`, `12h`, `30m`, `90s`: a positive whole number and one unit (weeks, days of 24
/// hours, hours, minutes, seconds), at most 136 years.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("{text:?} is not a duration such as 2w, 7d, 12h, 30m or 90s");
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: u64 = number.parse().map_err(|_| bad())?;
    let per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    match n.checked_mul(per) {
        Some(secs) if secs > 0 && secs <= u64::from(u32::MAX) => {
            Ok(std::time::Duration::from_secs(secs))
        }
        _ => Err(bad()),
    }
}

/// An operation name of `vault_client::audit::OPS`, or a prefix of one ending in `.`.
fn parse_op(text: &str) -> Result<String, String> {
    if vault_client::audit::is_op_pattern(text) {
        return Ok(text.to_owned());
    }
    let near: Vec<&str> = vault_client::audit::OPS
        .iter()
        .filter(|op| {
            let stem = text.split('.').next().unwrap_or(text);
            !stem.is_empty() && op.starts_with(stem)
        })
        .copied()
        .collect();
    let hint = if near.is_empty() {
        "docs/audit-log.md lists every operation".to_owned()
    } else {
        format!("did you mean one of: {}", near.join(", "))
    };
    Err(format!(
        "{text:?} is no operation the daemon writes, nor a prefix ending in \".\" ({hint})"
    ))
}

fn parse_actor(text: &str) -> Result<String, String> {
    let subject_ok = text
        .strip_prefix("cert=")
        .is_some_and(|name| name.parse::<vaultd::policy::SubjectName>().is_ok());
    if text == "system" || text.parse::<u32>().is_ok() || subject_ok {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "expected a uid, cert=NAME or `system`, not {text:?}"
        ))
    }
}

/// An HMAC as the log writes it: 64 hex digits, lower case.
fn parse_hmac(text: &str) -> Result<String, String> {
    unhex::<32>(text)
        .map(|_| text.trim().to_ascii_lowercase())
        .ok_or_else(|| "expected 64 hex digits".to_owned())
}

fn parse_anchor(text: &str) -> Result<Anchor, String> {
    text.parse()
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn commands_that_wait_on_the_kms_wait_longer_than_its_budget_unless_told() {
        use clap::Parser as _;
        let timeout = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("vault-cli").chain(args.iter().copied()))
                .expect("parses")
                .timeout()
        };
        assert_eq!(timeout(&["status"]), DEFAULT_TIMEOUT);
        for kms in [
            &["operator", "unseal"][..],
            &["operator", "init"],
            &["keys", "rotate", "master"],
            &["keys", "rotate", "kms", "k"],
            &["keys", "kms", "migrate", "k"],
        ] {
            assert_eq!(timeout(kms), KMS_TIMEOUT, "{kms:?}");
        }
        assert_eq!(timeout(&["--timeout", "5", "operator", "unseal"]), 5);
    }

    #[test]
    fn filter_times_take_rfc3339_a_date_a_time_back_or_seconds() {
        let now = Timestamp(1_795_453_200); // 2026-11-23T17:00:00Z
        let at = |text: &str| filter_time(text, now).map(Timestamp::unix);
        assert_eq!(at("2026-11-23T17:00:00Z"), Ok(1_795_453_200));
        assert_eq!(at("2026-11-23T18:00:00+01:00"), Ok(1_795_453_200));
        assert_eq!(at("1795453200"), Ok(1_795_453_200));
        // A date alone is 00:00:00Z that day.
        assert_eq!(at("2026-03-01"), Ok(1_772_323_200));
        assert_eq!(at("2028-02-29"), Ok(1_835_395_200));
        // Back from now.
        assert_eq!(at("90s"), Ok(1_795_453_200 - 90));
        assert_eq!(at("30m"), Ok(1_795_453_200 - 30 * 60));
        assert_eq!(at("12h"), Ok(1_795_453_200 - 12 * 3600));
        assert_eq!(at("1d"), Ok(1_795_453_200 - 86_400));
        assert_eq!(at("2w"), Ok(1_795_453_200 - 14 * 86_400));
    }

    #[test]
    fn filter_times_refuse_impossible_dates_and_other_text_with_the_reason() {
        let now = Timestamp(1_795_453_200);
        for bad in [
            "2026-02-31",
            "2026-02-29",
            "2026-13-01",
            "2026-02-31T00:00:00Z",
        ] {
            let err = filter_time(bad, now).expect_err(bad);
            assert!(err.contains(bad) && err.contains("is not"), "{bad}: {err}");
            assert!(!err.contains("give RFC 3339"), "{bad}: {err}");
        }
        for bad in ["2026-03-01T12:00:00", "2026-3-1"] {
            let err = filter_time(bad, now).expect_err(bad);
            assert!(err.contains("not an RFC 3339 time"), "{bad}: {err}");
        }
        for bad in ["", "yesterday", "1y", "1mo", "-1d", "1.5h", "0d", "1 d"] {
            let err = filter_time(bad, now).expect_err(bad);
            assert!(
                err.contains("a time back from now (90s, 30m, 12h, 1d, 2w)"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn token_commands_take_no_personal_data_on_argv() {
        let parse = |args: &[&str]| Cli::try_parse_from(["vault-cli"].iter().chain(args));
        let put = ["token", "put", "acme", "c1", "--bank", "b", "--scope", "s"];
        for extra in [&["--subject", "user-42"][..], &["--account", "DE89"]] {
            let args: Vec<&str> = put
                .iter()
                .chain(extra)
                .chain(&["--binding-file", "f"])
                .copied()
                .collect();
            assert!(parse(&args).is_err(), "{args:?}");
        }
        let args: Vec<&str> = put
            .iter()
            .chain(&["--binding-file", "f"])
            .copied()
            .collect();
        assert!(parse(&args).is_ok());
        assert!(parse(&put).is_err(), "the binding file is required");
        for flag in ["--expect-account", "--expect-subject"] {
            assert!(
                parse(&["token", "get", "acme", "c1", flag, "DE89"]).is_err(),
                "{flag}"
            );
        }
        assert!(parse(&["token", "get", "acme", "c1", "--expect-account-stdin"]).is_ok());
    }

    #[test]
    fn offline_verify_needs_a_key_and_personal_data_stays_off_argv() {
        let parse = |args: &[&str]| Cli::try_parse_from(["vault-cli"].iter().chain(args));
        assert!(parse(&["audit", "verify", "--offline", "f"]).is_err());
        assert!(parse(&["audit", "verify", "--pubkey", "k"]).is_err());
        assert!(parse(&["audit", "verify", "--offline", "f", "--pubkey", "k"]).is_ok());
        assert!(parse(&["audit", "verify", "--since-head", "3:zz"]).is_err());
        assert!(parse(&["audit", "search", "--account", "DE89"]).is_err());
        assert!(parse(&["audit", "search", "--account-hmac", "ab"]).is_err());
        assert!(parse(&["audit", "search", "--actor", "root"]).is_err());
        let tls = parse(&[
            "--addr",
            "10.0.0.1:8443,10.0.0.2:8443",
            "--addr",
            "[::1]:8443",
            "status",
        ])
        .expect("addresses");
        assert_eq!(
            tls.addr,
            ["10.0.0.1:8443", "10.0.0.2:8443", "[::1]:8443"],
            "repeatable and comma-separated"
        );
        assert!(parse(&["audit", "search", "--actor", "cert=payments-app"]).is_ok());
        assert!(parse(&["audit", "search", "--actor", "cert=a b"]).is_err());
        assert!(
            parse(&["backup", "restore", "f"]).is_err(),
            "needs a directory"
        );
        assert!(parse(&["backup", "restore", "f", "--data-dir", "d"]).is_ok());
        assert!(parse(&["backup", "restore", "f", "--config", "c.toml"]).is_ok());
        assert!(
            parse(&[
                "audit",
                "search",
                "--actor",
                "system",
                "--outcome",
                "denied"
            ])
            .is_ok()
        );
    }
}
