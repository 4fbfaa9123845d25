//! One module per command group; [`run`] builds the client and dispatches.

mod audit;
mod backup;
mod completions;
mod keys;
mod man;
mod receipt;
mod recovery;
mod report;
mod sys;
mod tenant;
mod token;
mod transit;

use std::fmt;
use std::io::{self, IsTerminal as _, StdoutLock, Write as _};
use std::time::Duration;

use vault_client::{Client, TlsOptions};

use crate::cli::{Cli, Command};

/// What every command gets: the client and the output mode.
pub(crate) struct Ctx {
    pub(crate) client: Client,
    pub(crate) json: bool,
    /// `--format csv`: tables as CSV (the commands that have one).
    pub(crate) csv: bool,
}

impl Ctx {
    /// Locked stdout.
    pub(crate) fn out(&self) -> StdoutLock<'static> {
        io::stdout().lock()
    }
}

/// A command line the user must fix (exit code 2), found after clap parsed it.
#[derive(Debug)]
pub(crate) struct Usage(String);

impl Usage {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// The command printed its answer and exits with this status (`status` while sealed).
#[derive(Debug)]
pub(crate) struct Exit(pub(crate) u8);

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// Audit verification ran and found problems (exit code 8); the report is already printed.
#[derive(Debug)]
pub(crate) struct AuditProblems(pub(crate) usize);

impl fmt::Display for AuditProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            1 => f.write_str("audit verification found 1 problem"),
            n => write!(f, "audit verification found {n} problems"),
        }
    }
}

impl std::error::Error for AuditProblems {}

/// Runs the parsed command line.
pub(crate) fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Completions { shell } => return completions::run(*shell),
        Command::Man { dir } => return man::run(dir),
        _ => {}
    }
    if cli.csv() && !has_csv(&cli.command) {
        return Err(Usage::new(
            "--format csv is for audit tail, audit search and keys history; use table or json here",
        )
        .into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let ctx = Ctx {
        // One command, one try: an operator sees `sealed` at once, with what to do about it.
        client: client(&cli)?
            .with_timeout(Duration::from_secs(cli.timeout()))
            .with_retry(vault_client::Retry::NONE),
        json: cli.json(),
        csv: cli.csv(),
    };
    runtime.block_on(async {
        match cli.command {
            Command::Audit(a) => audit::run(&ctx, a).await,
            Command::Backup(b) => backup::run(&ctx, b).await,
            Command::Completions { .. } | Command::Man { .. } => Ok(()),
            Command::Keys(k) => keys::run(&ctx, k).await,
            Command::Operator(op) => sys::operator(&ctx, op).await,
            Command::Status => sys::status(&ctx).await,
            Command::Tenant(t) => tenant::run(&ctx, t).await,
            Command::Token(t) => token::run(&ctx, t).await,
            Command::Transit(t) => transit::run(&ctx, t).await,
            Command::Version => sys::version(&ctx).await,
        }
    })
}

/// The client: over TLS to `--addr` when given, else on the Unix socket.
fn client(cli: &Cli) -> anyhow::Result<Client> {
    if cli.addr.is_empty() {
        return Ok(Client::new(&cli.socket));
    }
    let (Some(cert), Some(key), Some(ca)) = (&cli.cert, &cli.key, &cli.ca) else {
        return Err(Usage::new(
            "--addr needs --cert, --key and --ca (or VAULT_CERT, VAULT_KEY, VAULT_CA)",
        )
        .into());
    };
    let mut tls = TlsOptions::from_pem_files(cert, key, ca)?;
    if let Some(name) = &cli.server_name {
        tls = tls.with_server_name(name)?;
    }
    Ok(Client::tls(&cli.addr, tls)?)
}

/// Writes a secret to stdout exactly as it is, plus a newline when stdout is a terminal.
pub(crate) fn write_secret(bytes: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)?;
    if out.is_terminal() {
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Whether `command` prints CSV with `--format csv`.
fn has_csv(command: &Command) -> bool {
    use crate::cli::{Audit, Keys};
    matches!(
        command,
        Command::Audit(Audit::Tail { .. } | Audit::Search(_)) | Command::Keys(Keys::History { .. })
    )
}
