//! `completions SHELL`: shell completion scripts.

use std::io::Write as _;

use clap::CommandFactory as _;
use clap_complete::Shell;

use crate::cli::Cli;

/// Prints the completion script for `shell` to stdout. Generated into memory first: clap
/// panics on a failed write, and a closed pipe (`| head -1`) must exit 0.
pub(crate) fn run(shell: Shell) -> anyhow::Result<()> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "vault-cli", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)?;
    Ok(out.flush()?)
}
