//! Starts the real `vaultd` binary on a Unix socket in a temp dir (and, with [`Tcp`], on
//! 127.0.0.1 with mutual TLS on a port the OS picks), with a real sled directory and the local
//! KMS provider, and kills it by its PID when dropped.
#![allow(dead_code, unreachable_pub)]

use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use vault_client::Client;

/// The uid the seal-only rule names (nobody).
pub const SEAL_ONLY_UID: u32 = 65534;
/// A uid in the socket's group that the policy does not name.
pub const STRANGER_UID: u32 = 65533;
/// The socket's group (nogroup).
pub const SOCKET_GID: u32 = 65534;

/// The auditor of the tests: a uid in the socket's group with the documented auditor grant
/// only ([`AUDITOR_RULE`], docs/operator-guide.md).
pub const AUDITOR: (u32, u32) = (STRANGER_UID, SOCKET_GID);

/// The auditor grant for [`AUDITOR`], a `[[policy]]` rule to append to a daemon's config.
pub const AUDITOR_RULE: &str = r#"
[[policy]]
name = "auditors"
uids = [65533]
capabilities = ["audit:read", "keys:metadata"]
tenants = ["*"]
"#;

/// A path to a workspace binary, built by `cargo build --workspace --bins` (scripts/test).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/..");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/test (it builds the binaries first)",
        path.display()
    );
    path
}

/// A running daemon and its directories.
pub struct Daemon {
    child: Option<Child>,
    /// Data, keys and log (0700).
    pub root: tempfile::TempDir,
    /// Parent of the socket directory (0755, so other uids can reach the socket's group).
    pub run: tempfile::TempDir,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    /// The data directory (`root/data` unless started with `start_on`).
    pub data: PathBuf,
    /// The local KMS provider's key directory (key id `test`).
    pub keys: PathBuf,
    restarts: u32,
    /// Size of a private tmpfs mounted on the data directory (`start_on_tmpfs`).
    tmpfs_mib: Option<u32>,
    /// The TCP listener's configuration, if any (`start_with_tcp`).
    tcp: Option<Tcp>,
    /// Where the TCP listener listens (the port the OS picked), once started.
    pub tcp_addr: Option<SocketAddr>,
}

/// A `[tcp]` section for the daemon: listens on `127.0.0.1:0` (the OS picks the port, read back
/// from the daemon's log into [`Daemon::tcp_addr`]), and `policy` (more `[[policy]]` rules,
/// e.g. with `subjects`) is appended to the config.
#[derive(Debug, Clone)]
pub struct Tcp {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
    pub policy: String,
}

impl Daemon {
    /// Starts a daemon with a fresh (uninitialized) vault.
    pub fn start() -> Self {
        Self::start_with(None, None)
    }

    /// Starts a daemon with a fresh vault and the TCP listener of `tcp`.
    pub fn start_with_tcp(tcp: Tcp) -> Self {
        Self::try_start_with_tcp(tcp).unwrap_or_else(|log| panic!("vaultd did not start:\n{log}"))
    }

    /// [`Daemon::start_with_tcp`], returning the daemon's log when it exits at start.
    pub fn try_start_with_tcp(tcp: Tcp) -> Result<Self, String> {
        let mut daemon = Self::prepare(None, None, None, Some(tcp), None);
        daemon.try_spawn()?;
        Ok(daemon)
    }

    /// Starts a daemon with a fresh vault and `top` (top-level keys, e.g. per-caller limits)
    /// at the head of its config.
    pub fn start_with_top(top: &str) -> Self {
        Self::start_configured(top, "")
    }

    /// Starts a daemon with a fresh vault, `top` at the head of its config and `tail` (e.g.
    /// more `[[policy]]` rules) at its end.
    pub fn start_configured(top: &str, tail: &str) -> Self {
        let mut daemon = Self::prepare(None, None, None, None, None);
        let config = fs::read_to_string(&daemon.config).expect("config");
        fs::write(&daemon.config, format!("{top}\n{config}\n{tail}")).expect("config");
        daemon.spawn();
        daemon
    }

    /// Starts a daemon on an existing data directory (e.g. one restored from a backup) with the
    /// local KMS keys in `keys` (another daemon's [`Daemon::keys`]); socket, config and log are
    /// its own.
    pub fn start_on(data: &Path, keys: &Path) -> Self {
        Self::start_with(None, Some((data.to_owned(), keys.to_owned())))
    }

    /// Starts a daemon whose data directory is a private tmpfs of `mib` MiB, mounted in a mount
    /// namespace of its own (`unshare -m`, needs root), so tests can fill it to make writes
    /// fail with ENOSPC. The test reaches the mount through `/proc/PID/root`.
    pub fn start_on_tmpfs(mib: u32) -> Self {
        Self::start_with(Some(mib), None)
    }

    /// Starts a daemon whose store is the PostgreSQL database `url` names (written to an
    /// owner-only `url_file`), as node `node`, with the local KMS keys in `keys` (another node's
    /// [`Daemon::keys`], so that both unwrap the same master key) or new ones.
    pub fn start_on_postgres(url: &str, node: &str, keys: Option<&Path>) -> Self {
        Self::start_on_postgres_with(url, node, keys, "")
    }

    /// [`Daemon::start_on_postgres`], with `extra` (e.g. a `[jobs]` section) appended to the
    /// config.
    pub fn start_on_postgres_with(url: &str, node: &str, keys: Option<&Path>, extra: &str) -> Self {
        let keys = keys.map(Path::to_owned);
        let mut daemon = Self::prepare(None, None, keys, None, Some((url, node, None)));
        let mut config = fs::OpenOptions::new()
            .append(true)
            .open(&daemon.config)
            .expect("config");
        config.write_all(extra.as_bytes()).expect("config");
        daemon.spawn();
        daemon
    }

    /// [`Daemon::start_on_postgres`] with new keys and TLS to PostgreSQL verified against
    /// `ca_file` (`[postgres] ca_file`); `Err` holds the daemon's log when it exits at start.
    pub fn try_start_on_postgres_tls(
        url: &str,
        node: &str,
        ca_file: &Path,
    ) -> Result<Self, String> {
        let mut daemon = Self::prepare(None, None, None, None, Some((url, node, Some(ca_file))));
        daemon.try_spawn()?;
        Ok(daemon)
    }

    /// The data directory as this test process can reach it.
    pub fn data_dir_seen_from_tests(&self) -> PathBuf {
        let data = self.data.clone();
        match self.tmpfs_mib {
            None => data,
            Some(_) => PathBuf::from(format!("/proc/{}/root", self.pid()))
                .join(data.strip_prefix("/").expect("absolute")),
        }
    }

    fn start_with(tmpfs_mib: Option<u32>, existing: Option<(PathBuf, PathBuf)>) -> Self {
        let (data, keys) = existing.unzip();
        let mut daemon = Self::prepare(tmpfs_mib, data, keys, None, None);
        daemon.spawn();
        daemon
    }

    /// Writes the config of a daemon; `data` and `keys` default to new directories.
    fn prepare(
        tmpfs_mib: Option<u32>,
        data: Option<PathBuf>,
        keys: Option<PathBuf>,
        tcp: Option<Tcp>,
        postgres: Option<(&str, &str, Option<&Path>)>,
    ) -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        let run = tempfile::tempdir().expect("tempdir");
        fs::set_permissions(run.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let data = data.unwrap_or_else(|| root.path().join("data"));
        let keys = keys.unwrap_or_else(|| {
            let keys = root.path().join("keys");
            std::os::unix::fs::DirBuilderExt::mode(&mut fs::DirBuilder::new(), 0o700)
                .create(&keys)
                .expect("keys dir");
            write_key_file(&keys.join("test.key"));
            keys
        });
        let postgres = postgres.map_or_else(String::new, |(url, node, ca_file)| {
            let url_file = root.path().join("postgres.conn");
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&url_file)
                .and_then(|mut f| f.write_all(url.as_bytes()))
                .expect("url file");
            let ca_file = ca_file.map_or_else(String::new, |ca| {
                format!("ca_file = \"{}\"\n", ca.display())
            });
            format!(
                "\n[postgres]\nurl_file = \"{}\"\nnode_id = \"{node}\"\n{ca_file}",
                url_file.display()
            )
        });
        let socket = run.path().join("sock").join("vaultd.sock");
        let config = root.path().join("vaultd.toml");
        let tcp_section = tcp.as_ref().map_or_else(String::new, |t| {
            format!(
                "\n[tcp]\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n\n{}",
                t.cert.display(),
                t.key.display(),
                t.client_ca.display(),
                t.policy
            )
        });
        fs::write(
            &config,
            format!(
                r#"data_dir = "{data}"
socket = "{socket}"
socket_group = "nogroup"
auto_unseal = true
header_timeout_secs = 5
cache_mib = 16
wal_segment_mib = 2

[kms]
provider = "local"
key_dir = "{keys}"
key_id = "test"

[[policy]]
name = "operator"
uids = [0]
capabilities = ["sys:init", "sys:seal", "sys:unseal", "sys:status", "sys:backup", "tenant:create",
  "tenant:destroy", "token:seal", "token:unseal", "token:read", "token:delete", "transit:seal",
  "transit:unseal", "keys:read", "keys:rotate", "audit:read", "audit:archive"]
tenants = ["*"]

[[policy]]
name = "bank-receiver"
uids = [{SEAL_ONLY_UID}]
capabilities = ["token:seal"]
tenants = ["*"]
{tcp_section}{postgres}"#,
                data = data.display(),
                socket = socket.display(),
                keys = keys.display(),
            ),
        )
        .expect("config");
        let log = root.path().join("vaultd.log");
        Self {
            child: None,
            root,
            run,
            socket,
            config,
            log,
            data,
            keys,
            restarts: 0,
            tmpfs_mib,
            tcp,
            tcp_addr: None,
        }
    }

    fn spawn(&mut self) {
        if let Err(log) = self.try_spawn() {
            panic!("{log}");
        }
    }

    /// Starts the process and waits for its socket (and TCP listener); `Err` holds the log
    /// when it exits or does not come up.
    fn try_spawn(&mut self) -> Result<(), String> {
        // This run's lines start here (the log is appended to across restarts).
        let log_start = fs::metadata(&self.log).map_or(0, |m| m.len() as usize);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut cmd = match self.tmpfs_mib {
            None => {
                let mut cmd = Command::new(bin("vaultd"));
                cmd.arg("--config").arg(&self.config);
                cmd
            }
            Some(mib) => {
                let data = self.data.clone();
                fs::create_dir_all(&data).expect("data dir");
                fs::set_permissions(&data, fs::Permissions::from_mode(0o700)).expect("chmod");
                let script = format!(
                    "mount -t tmpfs -o size={mib}m,mode=0700 vaultd-test {data} && exec {bin} --config {config}",
                    data = data.display(),
                    bin = bin("vaultd").display(),
                    config = self.config.display(),
                );
                // unshare execs sh, and sh execs vaultd: the child's pid is the daemon's.
                let mut cmd = Command::new("unshare");
                cmd.args(["-m", "--propagation", "private", "sh", "-c", &script]);
                cmd
            }
        };
        let child = cmd
            .env("VAULTD_LOG", "info,vaultd=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start vaultd");
        self.child = Some(child);
        self.tcp_addr = None;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let socket_up = std::os::unix::net::UnixStream::connect(&self.socket).is_ok();
            if socket_up && self.tcp.is_some() {
                self.tcp_addr = self.tcp_addr_from_log(log_start);
            }
            if socket_up && (self.tcp.is_none() || self.tcp_addr.is_some()) {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!(
                    "vaultd exited with {status} at start:\n{}",
                    self.log_text()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "vaultd did not open its socket:\n{}",
                    self.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The address in the `TCP listener with mutual TLS listen=ADDR` line of this run.
    fn tcp_addr_from_log(&self, log_start: usize) -> Option<SocketAddr> {
        let log = self.log_text();
        let line = log
            .get(log_start..)?
            .lines()
            .rev()
            .find(|l| l.contains("TCP listener with mutual TLS"))?;
        let addr = line.split("listen=").nth(1)?.split_whitespace().next()?;
        addr.trim_matches('"').parse().ok()
    }

    /// A client for this daemon.
    pub fn client(&self) -> Client {
        Client::new(&self.socket).with_timeout(Duration::from_secs(20))
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.as_ref().expect("running").id()).expect("pid fits")
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait(Duration::from_secs(20))
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        self.wait(Duration::from_secs(20));
    }

    /// Starts the daemon again on the same data directory and socket.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the daemon first");
        self.restarts += 1;
        self.spawn();
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A `vault-cli token put --binding-file` for `subject` and `account`, readable by the test
    /// uids (test data, not personal data).
    pub fn binding_file(&self, subject: &str, account: &str) -> String {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.run.path().join(format!("binding-{subject}-{account}"));
        fs::write(&path, format!("subject={subject}\naccount={account}\n")).expect("binding file");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        path.to_string_lossy().into_owned()
    }

    /// Runs `vault-cli` against this daemon as the given uid/gid (None: as the test runner).
    pub fn cli(
        &self,
        ids: Option<(u32, u32)>,
        args: &[&str],
        stdin: &[u8],
    ) -> std::process::Output {
        cli_at(&self.socket, ids, args, stdin)
    }

    fn signal(&mut self, signal: i32) {
        let pid = self.pid();
        // Killed by its own PID, which we hold as its parent until we reap it.
        let rc = unsafe_free_kill(pid, signal);
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("vaultd did not exit in time:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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

/// Runs `vault-cli` against the daemon on `socket` as the given uid/gid (None: as the test
/// runner); without a `Daemon` borrow, so it can run on another thread.
pub fn cli_at(
    socket: &Path,
    ids: Option<(u32, u32)>,
    args: &[&str],
    stdin: &[u8],
) -> std::process::Output {
    use std::os::unix::process::CommandExt as _;
    let mut cmd = Command::new(bin("vault-cli"));
    cmd.args(args)
        .env("VAULT_SOCKET", socket)
        .env_remove("VAULTD_LOG");
    if let Some((uid, gid)) = ids {
        // std drops supplementary groups (setgroups(0)) when a root parent sets uid.
        cmd.uid(uid).gid(gid);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vault-cli");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("vault-cli output")
}

/// `kill(2)` through the `kill` command, keeping the tests free of `unsafe`.
pub fn unsafe_free_kill(pid: i32, signal: i32) -> i32 {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    if status.success() { 0 } else { 1 }
}

/// Every file below `dir`.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Whether `haystack` contains `needle`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A put of `secret` bound to `account` (subject `user-42`, bank `example-bank`, scope
/// `accounts`).
pub fn put(secret: &str, account: &str) -> vault_client::wire::PutToken {
    vault_client::wire::PutToken {
        secret: vault_client::Secret::from(secret),
        binding: vault_client::wire::Binding {
            subject: "user-42".into(),
            bank: "example-bank".into(),
            account: account.into(),
            scope: "accounts".into(),
        },
        expires_at: None,
        expected_revision: None,
        lease: None,
    }
}

/// Waits (up to 20 s) until the daemon reports itself unsealed.
pub async fn wait_unsealed(c: &Client) {
    for _ in 0..1000 {
        if matches!(c.health().await, Ok(h) if h.state == vault_client::wire::VaultState::Unsealed)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the daemon did not unseal");
}

/// Writes a new local KMS key file: 32 random bytes, mode 0600, never overwriting.
pub fn write_key_file(path: &Path) {
    let mut key = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut key))
        .expect("rng");
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(&key))
        .expect("key file");
}

/// The entries of operation `op` in the log (the first page: at most 1,000).
pub async fn entries_with_op(c: &Client, op: &str) -> Vec<vault_client::audit::Entry> {
    c.audit(&vault_client::AuditQuery {
        op: Some(op.into()),
        limit: Some(1000),
        ..Default::default()
    })
    .await
    .expect("audit")
    .entries
}
