//! A `vaultd --dev` of our own in a data directory (a temp dir unless one is given), the time
//! from its start to unsealed-and-serving, and a process's memory from /proc.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use vault_client::Client;
use vault_client::wire::VaultState;

/// Longest wait for a spawned daemon to serve (a large store takes a while to open).
const START_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest wait for a SIGTERM'd daemon to seal and exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running daemon; killed (SIGKILL) if dropped before [`Daemon::stop`].
pub(crate) struct Daemon {
    child: Option<Child>,
    pub(crate) socket: PathBuf,
    pub(crate) log: PathBuf,
    /// From `spawn` to health answering 200 (unsealed).
    pub(crate) start_to_serving: Duration,
    _temp: Option<tempfile::TempDir>,
}

impl Daemon {
    /// Starts `vaultd --dev --data-dir DIR` and waits until it is unsealed and serving.
    pub(crate) async fn spawn(vaultd: &Path, data_dir: Option<&Path>) -> anyhow::Result<Self> {
        let (dir, temp) = match data_dir {
            Some(dir) => {
                fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                (dir.to_owned(), None)
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("vault-load-")
                    .tempdir()
                    .context("temp dir")?;
                (temp.path().to_owned(), Some(temp))
            }
        };
        let socket = dir.join("vaultd.sock");
        let log = dir.join("vaultd.log");
        let stderr = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let started = Instant::now();
        let child = Command::new(vaultd)
            .arg("--dev")
            .arg("--data-dir")
            .arg(&dir)
            .env("VAULTD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {}", vaultd.display()))?;
        let mut daemon = Self {
            child: Some(child),
            socket,
            log,
            start_to_serving: Duration::ZERO,
            _temp: temp,
        };
        let client = Client::new(&daemon.socket).with_timeout(Duration::from_secs(2));
        loop {
            if daemon.socket.exists()
                && let Ok(health) = client.health().await
                && health.state == VaultState::Unsealed
            {
                break;
            }
            if let Some(status) = daemon.child_mut()?.try_wait()? {
                bail!(
                    "vaultd exited ({status}) before serving: see {}",
                    daemon.log.display()
                );
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "vaultd not unsealed after {START_TIMEOUT:?}: see {}",
                    daemon.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        daemon.start_to_serving = started.elapsed();
        Ok(daemon)
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn child_mut(&mut self) -> anyhow::Result<&mut Child> {
        self.child.as_mut().context("daemon already stopped")
    }

    /// SIGTERM (the daemon drains, seals and exits), then waits; SIGKILL after the timeout.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .context("running kill")?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        while status.success() && Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        child.kill()?;
        child.wait()?;
        bail!("vaultd did not stop on SIGTERM; killed it");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Resident memory of a process, from /proc/PID/status.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(crate) struct Memory {
    pub(crate) pid: u32,
    /// Peak resident set size (VmHWM), KiB.
    pub(crate) vm_hwm_kib: u64,
    /// Current resident set size (VmRSS), KiB.
    pub(crate) vm_rss_kib: u64,
}

impl Memory {
    pub(crate) fn of(pid: u32) -> anyhow::Result<Self> {
        let path = format!("/proc/{pid}/status");
        let status = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .with_context(|| format!("{path} has no {name}"))
        };
        Ok(Self {
            pid,
            vm_hwm_kib: field("VmHWM:")?,
            vm_rss_kib: field("VmRSS:")?,
        })
    }
}
