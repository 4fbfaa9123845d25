//! `vaultd`: flags → [`Config`] → [`run`]; errors → exit code.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use tokio::net::UnixListener;
use vault_client::audit::Outcome;
use vault_client::wire::VaultState;
use vaultd::audit::Event;
use vaultd::config::{Config, Env, KmsConfig, Overrides};
use vaultd::kms::KmsProvider;
use vaultd::kms::aws::AwsKms;
use vaultd::kms::local::LocalKms;
use vaultd::server::{self, App, Limits, Listeners, Metrics};
use vaultd::store::postgres::Postgres;
use vaultd::store::{Store, embedded};
use vaultd::vault::Vault;

/// First wait between auto-unseal attempts; it doubles up to [`UNSEAL_BACKOFF_MAX`].
const UNSEAL_BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between auto-unseal attempts.
const UNSEAL_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// A hardened vault for bank consent tokens, serving its API on a Unix socket.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Development mode: data, key file and socket under ./vaultd-dev, local KMS, auto-init and
    /// auto-unseal, every capability for the user who started it. Not for production.
    #[arg(long, conflicts_with = "config")]
    dev: bool,
    /// The TOML configuration file.
    #[arg(long, short, env = "VAULTD_CONFIG", required_unless_present = "dev")]
    config: Option<PathBuf>,
    /// Data directory (overrides the file and `VAULTD_DATA_DIR`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Socket path (overrides the file and `VAULTD_SOCKET`, or else `VAULT_SOCKET`, the variable
    /// `vault-cli` reads, so one setting serves both).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// `human` or `json` (overrides the file and `VAULTD_LOG_FORMAT`).
    #[arg(long)]
    log_format: Option<String>,
    /// Check the configuration and exit: the file, every policy name (through NSS), the local
    /// KMS key file, the TLS files. Binds nothing, opens no store, calls no KMS. Exit 0 when
    /// it would start, 1 with the reason when not.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    // First thing, before any thread or TLS client exists: one process-wide rustls provider,
    // aws-lc-rs, the one the AWS SDK brings (docs/tls.md). Err only if one is already installed.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = Args::parse();
    let overrides = Overrides {
        data_dir: args.data_dir,
        socket: args.socket,
        log_format: args.log_format,
    };
    // Every key of the file can also be set by a `VAULTD_*` variable (config::env).
    let config = Env::from_process().and_then(|env| {
        if args.dev {
            let overrides = overrides.or_dev_env(&env)?;
            Ok(Config::insecure_dev(Path::new("vaultd-dev"), &overrides))
        } else {
            let path = args
                .config
                .as_deref()
                .expect("clap requires --config without --dev");
            Config::load(path, &env, &overrides)
        }
    });
    if args.check_config {
        return match config.and_then(|c| check_config(&c)) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("vaultd: the configuration would not start: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let result = config.and_then(|config| {
        init_logging(config.log_json);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("vaultd-worker")
            .build()
            .context("starting the async runtime")?;
        runtime.block_on(run(config))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vaultd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--check-config`: what `Config::load` checked, and the files it only names (the local KMS
/// key, the TLS certificate and key), read and checked as at start. A summary when all hold.
fn check_config(config: &Config) -> anyhow::Result<String> {
    let kms = match &config.kms {
        // `--dev` creates what is missing at start; the check creates nothing.
        KmsConfig::Local {
            key_dir,
            key_id,
            create: true,
        } if !key_dir.exists() => format!(
            "local, key {key_id} in {} (created at start)",
            key_dir.display()
        ),
        KmsConfig::Local {
            key_dir, key_id, ..
        } => {
            LocalKms::open(key_dir, key_id, false).context("local KMS provider")?;
            format!("local, key {key_id} in {}", key_dir.display())
        }
        KmsConfig::Aws { key_id, region, .. } => format!(
            "aws, key {key_id}{} (not called)",
            region
                .as_ref()
                .map_or(String::new(), |r| format!(" in {r}"))
        ),
    };
    if let Some(tcp) = &config.tcp {
        server::tls::server_config(tcp).context("the TCP listener's TLS files")?;
    }
    let store = match &config.postgres {
        Some(_) => "PostgreSQL (not connected)".to_owned(),
        None => format!("data directory {}", config.data_dir.display()),
    };
    Ok(format!(
        "configuration OK: {store}; socket {}; KMS {kms}; {} policy rules; TCP listener {}; \
         metrics listener {}; retention {}",
        config.socket.display(),
        config.policy.rule_count(),
        config
            .tcp
            .as_ref()
            .map_or("off".into(), |t| t.listen.to_string()),
        config
            .metrics_listen
            .map_or("off".into(), |a| a.to_string()),
        if config.retention.is_some() {
            "on"
        } else {
            "off"
        },
    ))
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VAULTD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file or the journal gets plain `key=value` fields.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let hardening = vaultd::os::harden().context("hardening the process")?;
    match &hardening.memory_lock_problem {
        None => tracing::info!(
            core_dumps = false,
            memory_locked = hardening.memory_locked,
            "process hardened"
        ),
        Some(problem) => tracing::warn!(core_dumps = false, "{problem}"),
    }
    if config.dev
        && let Some(root) = config.socket.parent()
    {
        // The socket lives here: a directory someone else made or may write to could hand
        // them the socket, and with it the tokens put through it.
        private_dir(root, true).context("the --dev directory")?;
    }
    private_dir(&config.data_dir, true).context("data directory")?;
    // The TLS files are read first: a bad or exposed key stops the start before anything opens.
    let tls = config
        .tcp
        .as_ref()
        .map(server::tls::server_config)
        .transpose()?;
    let kms: Arc<dyn KmsProvider> = match &config.kms {
        KmsConfig::Local {
            key_dir,
            key_id,
            create,
        } => Arc::new(LocalKms::open(key_dir, key_id, *create).context("local KMS provider")?),
        KmsConfig::Aws {
            key_id,
            region,
            endpoint_url,
        } => Arc::new(
            AwsKms::connect(key_id.clone(), region.as_deref(), endpoint_url.as_deref())
                .await
                .context("AWS KMS provider")?,
        ),
    };
    let metrics = Arc::new(Metrics::default());
    let kms: Arc<dyn KmsProvider> =
        Arc::new(vaultd::kms::metered::Metered::new(kms, metrics.clone()));
    let store = match &config.postgres {
        None => embedded::open_store(&config.data_dir, config.storage)
            .await
            .context("opening the store")?,
        Some(options) => {
            let backend = Postgres::open(options.clone())
                .await
                .context("opening the PostgreSQL store")?;
            tracing::info!(?options, "store: PostgreSQL");
            Store::open(Arc::new(backend))
                .await
                .context("opening the store")?
        }
    };
    // One process opens the embedded store; on PostgreSQL the node id names this node.
    let jobs = vaultd::vault::JobOptions {
        node: config.postgres.as_ref().map_or_else(
            || vaultd::vault::LOCAL_NODE.to_owned(),
            |options| options.node.clone(),
        ),
        lease: config.job_lease,
    };
    let vault = Vault::open_with_jobs(Arc::new(store), kms, jobs)
        .await
        .context("opening the vault")?;
    if config.auto_init && vault.state() == VaultState::Uninitialized {
        let mut ev = Event::system("sys.init");
        let init = vault
            .init(&mut ev)
            .await
            .context("initializing the vault")?;
        tracing::info!(vault_id = %init.vault_id, "dev vault initialized");
    }
    // Socket activation (packaging/systemd/vaultd.socket): systemd made the socket, its mode and
    // group; vaultd serves it and leaves it to systemd at exit.
    let activated = vaultd::os::activated_listener().map_err(anyhow::Error::msg)?;
    let from_systemd = activated.is_some();
    let listener = match activated {
        Some(std_listener) => {
            std_listener.set_nonblocking(true)?;
            let addr = std_listener.local_addr().ok();
            let path = addr
                .as_ref()
                .and_then(|a| a.as_pathname().map(Path::to_owned));
            if path.as_deref() != Some(config.socket.as_path()) {
                tracing::warn!(
                    passed = ?path,
                    configured = %config.socket.display(),
                    "the socket systemd passed is not the configured one; serving the passed one"
                );
            }
            tracing::info!(socket = ?path, "socket activation: serving the socket systemd passed");
            UnixListener::from_std(std_listener)?
        }
        None => bind(&config)?,
    };
    let tcp = match (&config.tcp, tls) {
        (Some(tcp), Some(tls)) => {
            let listener = tokio::net::TcpListener::bind(tcp.listen)
                .await
                .with_context(|| format!("[tcp] binding {}", tcp.listen))?;
            tracing::info!(listen = %listener.local_addr()?, "TCP listener with mutual TLS");
            Some((listener, tls))
        }
        _ => None,
    };
    let app = Arc::new(App {
        vault: vault.clone(),
        policy: config.policy.clone(),
        metrics,
        callers: Arc::new(vaultd::server::Callers::new(config.callers)),
        long_reads: tokio::sync::Semaphore::new(1),
        seal_on_alarm: config.seal_on_alarm,
        rotation: config.rotation,
    });
    let limits = Limits {
        max_connections: config.max_connections,
        header_timeout: config.header_timeout,
    };
    tracing::info!(socket = %config.socket.display(), state = ?vault.state(), "serving");
    let metrics_server = match config.metrics_listen {
        Some(addr) => {
            let listener = server::metrics_listener::bind(addr)
                .await
                .with_context(|| format!("binding the metrics listener on {addr}"))?;
            tracing::info!(listen = %listener.local_addr()?, "metrics listener (GET /metrics, not audited)");
            Some(tokio::spawn(server::metrics_listener::serve(
                app.clone(),
                listener,
            )))
        }
        None => None,
    };
    // systemd (Type=notify): ready once the socket serves; the state in STATUS= as it changes.
    let notifier = Some(tokio::spawn(notify_systemd(vault.clone())));
    // After the bind, so that the daemon answers (sealed, health 503) while the KMS is away.
    let unsealer = (config.auto_unseal && vault.state() == VaultState::Sealed)
        .then(|| tokio::spawn(auto_unseal(vault.clone())));
    let rotator = config
        .rotation
        .map(|policy| tokio::spawn(rotate_on_schedule(vault.clone(), policy)));
    let purger = config
        .retention
        .clone()
        .map(|policy| tokio::spawn(purge_on_schedule(vault.clone(), policy)));
    // Resumes jobs whose node stopped renewing their lease (docs/ha.md, "Jobs").
    let job_watcher = Some(tokio::spawn(vault.clone().watch_jobs()));
    if config.dev {
        print_dev_banner(&config.socket);
    }
    let listeners = Listeners {
        unix: listener,
        tcp,
    };
    server::run(listeners, app, limits, shutdown_signal()).await;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    for task in [
        unsealer,
        rotator,
        purger,
        job_watcher,
        notifier,
        metrics_server,
    ]
    .into_iter()
    .flatten()
    {
        task.abort();
    }
    // An uninitialized vault has nothing to seal.
    if vault.state() != VaultState::Uninitialized
        && let Err(e) = vault.seal(&mut Event::system("sys.seal.shutdown")).await
    {
        tracing::warn!(error = %e, "sealing at shutdown failed");
    }
    if !from_systemd {
        let _ = fs::remove_file(&config.socket);
    }
    tracing::info!("stopped");
    Ok(())
}

/// Unseals through the KMS, retrying while the KMS is unreachable or throttling (backoff
/// 1 s, 2 s, … capped at 30 s, without giving up), until the vault is unsealed, by this task or
/// by an operator (`Vault::unseal` is serialized and idempotent). A permanent failure (access
/// denied, key disabled, wrong key, decryption failed, …) stops it: retrying cannot help.
async fn auto_unseal(vault: Vault) {
    let mut delay = UNSEAL_BACKOFF_FIRST;
    for attempt in 1u64.. {
        if vault.state() != VaultState::Sealed {
            return;
        }
        let mut ev = Event::system("sys.unseal.auto");
        let result = vault.unseal(&mut ev).await;
        let (outcome, code) = match &result {
            Ok(()) => (Outcome::Ok, None),
            Err(e) => (Outcome::Error, Some(e.code())),
        };
        if let Err(e) = vault.record(&mut ev, outcome, code).await {
            tracing::error!(error = %e, "auto-unseal: audit entry not written");
        }
        match result {
            Ok(()) => {
                tracing::info!(attempt, "auto-unseal: vault unsealed");
                return;
            }
            Err(vaultd::Error::Kms(e)) if e.is_transient() => {
                tracing::warn!(
                    attempt,
                    code = e.code(),
                    error = %e,
                    retry_in_secs = delay.as_secs(),
                    "auto-unseal failed; staying sealed and retrying"
                );
            }
            Err(e) => {
                tracing::error!(
                    attempt,
                    code = e.code(),
                    error = %e,
                    remedy = vault_client::kms_remedy(e.code()).unwrap_or("see docs/operator-aws.md"),
                    "auto-unseal failed and will not be retried: operator action needed"
                );
                return;
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(UNSEAL_BACKOFF_MAX);
    }
}

/// Rotates tenant data keys that the policy says are due, every `check_interval_secs`, while
/// the vault is unsealed.
async fn rotate_on_schedule(vault: Vault, policy: vaultd::config::RotationPolicy) {
    let mut tick =
        tokio::time::interval(std::time::Duration::from_secs(policy.check_interval_secs));
    loop {
        tick.tick().await;
        if vault.state() != VaultState::Unsealed {
            continue;
        }
        match vault.rotate_due(&policy).await {
            Ok(rotated) if !rotated.is_empty() => {
                tracing::info!(tenants = rotated.len(), "scheduled data key rotation done")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "scheduled data key rotation failed; retrying at the next check")
            }
        }
    }
}

/// Tells systemd (`NOTIFY_SOCKET`, when set) that vaultd is ready, then the vault's state each
/// time it changes, checked every second. Without systemd, `sd_notify` does nothing.
async fn notify_systemd(vault: Vault) {
    use sd_notify::NotifyState;
    let status = |state: VaultState| match state {
        VaultState::Uninitialized => "serving; vault uninitialized (vault-cli operator init)",
        VaultState::Sealed => "serving; vault sealed (vault-cli operator unseal)",
        VaultState::Unsealed => "serving; vault unsealed",
    };
    let mut last = vault.state();
    if let Err(e) = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(status(last))]) {
        tracing::warn!(error = %e, "could not notify systemd");
    }
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = vault.state();
        if now != last {
            let _ = sd_notify::notify(&[NotifyState::Status(status(now))]);
            last = now;
        }
    }
}

/// Purges expired tokens every `interval_secs` while the vault is unsealed
/// (`docs/retention.md`). The first pass runs one interval after start.
async fn purge_on_schedule(vault: Vault, policy: vaultd::config::RetentionPolicy) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(policy.interval_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if vault.state() != VaultState::Unsealed {
            continue;
        }
        match vault.purge_expired(&policy).await {
            Ok(report) if report.purged > 0 => {
                tracing::info!(purged = report.purged, "retention pass done")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "retention pass failed; retrying at the next one")
            }
        }
    }
}

/// Creates the socket under umask 077 inside a 0750 directory, then opens it to the group (0660).
fn bind(config: &Config) -> anyhow::Result<UnixListener> {
    let path = &config.socket;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o750))?;
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                bail!("{} is in use by a running daemon", path.display());
            }
            fs::remove_file(path)
                .with_context(|| format!("removing stale socket {}", path.display()))?;
        }
        Ok(_) => bail!(
            "{} exists and is not a socket; refusing to replace it",
            path.display()
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("checking {}", path.display())),
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    if let Some(gid) = config.socket_gid {
        std::os::unix::fs::chown(path, None, Some(gid))?;
        std::os::unix::fs::chown(dir, None, Some(gid))?;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// Creates `dir` 0700 if missing; refuses one that group or others can access.
fn private_dir(dir: &Path, create: bool) -> anyhow::Result<()> {
    if create && !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let meta = fs::symlink_metadata(dir).with_context(|| format!("{}", dir.display()))?;
    // A directory (not a symlink), owned by this process's user, for its owner only.
    vaultd::os::check_private(dir, &meta, true).map_err(anyhow::Error::msg)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining, then sealing"),
        _ = int.recv() => tracing::info!("SIGINT: draining, then sealing"),
    }
}

fn print_dev_banner(socket: &Path) {
    let socket = fs::canonicalize(socket).unwrap_or_else(|_| socket.to_owned());
    println!(
        "\nvaultd is running in DEV mode (local key file, auto-unsealed; not for production).\n\
         Socket: {s}\n\n\
         Try it in another shell:\n\
         \x20 export VAULT_SOCKET={s}\n\
         \x20 cargo run -q -p vault-cli -- status\n\
         \x20 cargo run -q -p vault-cli -- tenant create acme\n\
         \x20 echo -n 'my-access-token' | cargo run -q -p vault-cli -- token put acme consent-1 \\\n\
         \x20     --subject user-1 --bank demo-bank --account DE89370400440532013000 --scope accounts\n\
         \x20 cargo run -q -p vault-cli -- token get acme consent-1\n\n\
         Stop with Ctrl-C (the vault seals, then exits).",
        s = socket.display()
    );
}
