//! `man DIR`: one man page per command, from the same clap definition as `--help`.

use std::path::Path;

use anyhow::Context as _;
use clap::CommandFactory as _;

use crate::cli::Cli;

/// Writes `vault-cli.1` and a page per subcommand (`vault-cli-audit-verify.1`, …) into `dir`,
/// creating it when missing, and lists the pages written.
pub(crate) fn run(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
    let mut pages: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("vault-cli") && name.ends_with(".1"))
        .collect();
    pages.sort();
    let mut out = std::io::stdout().lock();
    for page in pages {
        std::io::Write::write_all(
            &mut out,
            format!("{}\n", dir.join(page).display()).as_bytes(),
        )?;
    }
    Ok(std::io::Write::flush(&mut out)?)
}
