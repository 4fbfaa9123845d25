//! `vault-cli`: the operator and auditor command line for vaultd.
//!
//! # Layout
//! - `cli`: the command line as clap derive types.
//! - `cmd`: one module per command group; `cmd::run` dispatches.
//! - `file`: files written new, owner-only and complete (exports, backups).
//! - `input`: reading secrets from stdin or a file (never from argv).
//! - `output`: aligned tables and JSON.
//!
//! Exit codes are listed in `vault-cli --help` and `docs/cli.md`.
#![forbid(unsafe_code)]

mod cli;
mod cmd;
mod file;
mod input;
mod output;

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser as _;
use vault_client::{ApiCode, Error};

use crate::cmd::{AuditProblems, Exit, Usage};

/// Exit status for errors that are not one of the specific classes below.
const EXIT_OTHER: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_SEALED: u8 = 3;
const EXIT_DENIED: u8 = 4;
const EXIT_NOT_FOUND: u8 = 5;
const EXIT_CONFLICT: u8 = 6;
const EXIT_CONNECT: u8 = 7;
const EXIT_AUDIT: u8 = 8;

fn main() -> ExitCode {
    // clap exits 2 on a usage error and 0 for --help/--version.
    let args = cli::Cli::parse();
    let json = args.json();
    let target = if args.addr.is_empty() {
        Target::Socket(args.socket.clone())
    } else {
        Target::Tls(args.addr.join(", "))
    };
    match cmd::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            if let Some(Exit(code)) = err.downcast_ref::<Exit>() {
                return ExitCode::from(*code);
            }
            let code = exit_code(&err);
            let hint = hint(&err, &target);
            if json {
                let client = err.chain().find_map(|e| e.downcast_ref::<Error>());
                let (api_code, status) = match client {
                    Some(Error::Api { code, status, .. }) => (Some(code.as_str()), Some(*status)),
                    _ => (None, None),
                };
                let body = serde_json::json!({ "error": {
                    "message": format!("{err:#}"),
                    "code": api_code,
                    "status": status,
                    "hint": hint,
                    "exit": code,
                }});
                eprintln!("{body}");
            } else {
                eprintln!("vault-cli: error: {err:#}");
                if let Some(hint) = hint {
                    eprintln!("vault-cli: hint: {hint}");
                }
            }
            ExitCode::from(code)
        }
    }
}

/// Where the CLI was talking to, for the hint on a failed connection.
enum Target {
    Socket(PathBuf),
    Tls(String),
}

/// What to do about an error, where one command or setting fixes it.
fn hint(err: &anyhow::Error, target: &Target) -> Option<String> {
    match err.chain().find_map(|e| e.downcast_ref::<Error>())? {
        Error::Api {
            code: ApiCode::Sealed,
            ..
        } => Some("unseal it: vault-cli operator unseal".into()),
        Error::Api {
            code: ApiCode::Uninitialized,
            ..
        } => Some("initialize it: vault-cli operator init".into()),
        Error::Api {
            code: ApiCode::Kms(code),
            ..
        } => vault_client::kms_remedy(code).map(str::to_owned),
        Error::Connect(io) => Some(match target {
            Target::Tls(addr) => format!(
                "tried {addr} over TLS (set --addr or VAULT_ADDR; check --cert, --key, --ca, \
                 --server-name)"
            ),
            Target::Socket(path) if io.kind() == io::ErrorKind::PermissionDenied => {
                socket_permission_hint(path)
            }
            Target::Socket(path) => format!(
                "is vaultd running? tried {} (set --socket or VAULT_SOCKET)",
                path.display()
            ),
        }),
        _ => None,
    }
}

/// Names the group that may use the socket (or its directory, when that is what refused).
fn socket_permission_hint(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt as _;
    let owner = [Some(path), path.parent()]
        .into_iter()
        .flatten()
        .find_map(|p| std::fs::metadata(p).ok().map(|m| (p.to_owned(), m)));
    match owner {
        Some((p, meta)) => {
            let gid = meta.gid();
            let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
                .ok()
                .flatten()
                .map_or_else(
                    || format!("gid {gid}"),
                    |g| format!("{} (gid {gid})", g.name),
                );
            format!(
                "{} is mode {:04o}, group {group}: run as a member of that group",
                p.display(),
                meta.mode() & 0o7777,
            )
        }
        None => format!(
            "permission denied on {}: run as a member of the socket's group",
            path.display()
        ),
    }
}

/// The documented exit status of an error.
fn exit_code(err: &anyhow::Error) -> u8 {
    if err.chain().any(|e| e.is::<Usage>()) {
        return EXIT_USAGE;
    }
    if err.chain().any(|e| e.is::<AuditProblems>()) {
        return EXIT_AUDIT;
    }
    let Some(client_err) = err.chain().find_map(|e| e.downcast_ref::<Error>()) else {
        return EXIT_OTHER;
    };
    match client_err {
        Error::Config(_) => EXIT_USAGE,
        Error::Connect(_) => EXIT_CONNECT,
        Error::Api { code, .. } => match code {
            ApiCode::Sealed | ApiCode::Uninitialized => EXIT_SEALED,
            ApiCode::Denied => EXIT_DENIED,
            ApiCode::NotFound => EXIT_NOT_FOUND,
            ApiCode::BindingMismatch | ApiCode::Conflict | ApiCode::Expired => EXIT_CONFLICT,
            _ => EXIT_OTHER,
        },
        _ => EXIT_OTHER,
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: &str) -> anyhow::Error {
        anyhow::Error::new(Error::Api {
            code: ApiCode::parse(code),
            status: 0,
            message: String::new(),
            request_id: None,
        })
        .context("doing something")
    }

    #[test]
    fn maps_errors_to_documented_exit_codes() {
        assert_eq!(exit_code(&api("sealed")), EXIT_SEALED);
        assert_eq!(exit_code(&api("uninitialized")), EXIT_SEALED);
        assert_eq!(exit_code(&api("denied")), EXIT_DENIED);
        assert_eq!(exit_code(&api("not_found")), EXIT_NOT_FOUND);
        assert_eq!(exit_code(&api("conflict")), EXIT_CONFLICT);
        assert_eq!(exit_code(&api("binding_mismatch")), EXIT_CONFLICT);
        assert_eq!(exit_code(&api("expired")), EXIT_CONFLICT);
        assert_eq!(exit_code(&api("invalid")), EXIT_OTHER);
        assert_eq!(exit_code(&api("kms_unreachable")), EXIT_OTHER);
        let connect = anyhow::Error::new(Error::Connect(io::Error::from(io::ErrorKind::NotFound)));
        assert_eq!(exit_code(&connect), EXIT_CONNECT);
        assert_eq!(exit_code(&anyhow::Error::new(Error::Timeout)), EXIT_OTHER);
        assert_eq!(exit_code(&anyhow::Error::new(Usage::new("x"))), EXIT_USAGE);
        assert_eq!(exit_code(&anyhow::Error::new(AuditProblems(2))), EXIT_AUDIT);
        assert_eq!(exit_code(&anyhow::anyhow!("other")), EXIT_OTHER);
    }

    #[test]
    fn broken_pipe_is_success() {
        let err = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe)).context("write");
        assert!(is_broken_pipe(&err));
        assert!(!is_broken_pipe(&anyhow::anyhow!("x")));
    }
}
