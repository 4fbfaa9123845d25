//! `completions SHELL`: shell completion scripts.

use clap::CommandFactory as _;
use clap_complete::Shell;

use crate::cli::Cli;

/// Prints the completion script for `shell` to stdout.
pub(crate) fn run(shell: Shell) -> anyhow::Result<()> {
    let mut command = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut command, "vault-cli", &mut out);
    Ok(())
}
