//! A real KMS API server for tests: moto in server mode on 127.0.0.1, one per test; and
//! [`Daemon`], the `vaultd` binary on it.
//!
//! The server binary is `$VAULTD_TEST_MOTO`, else `.venv-test/bin/moto_server` in the workspace
//! root (`scripts/test` creates that venv). If neither exists the test fails: it never skips.
//! moto runs with `sitecustomize.py` from this directory on its `PYTHONPATH`, which makes it
//! refuse disabled keys and keys pending deletion as AWS KMS does (moto itself does not).
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kms::config::{Credentials, SharedCredentialsProvider};

/// The region every test uses.
pub const REGION: &str = "eu-central-1";

/// A running moto server; killed by its PID on drop.
pub struct Moto {
    child: Option<Child>,
    port: u16,
}

impl Moto {
    /// Starts moto on a free port and waits until it answers.
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// Starts moto on `port` and waits until it answers.
    pub fn start_on(port: u16) -> Self {
        let binary = moto_binary();
        let patch_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/moto");
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("PYTHONPATH", &patch_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let mut moto = Self {
            child: Some(child),
            port,
        };
        moto.wait_ready();
        moto
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        endpoint(self.port)
    }

    /// An SDK configuration for this server: static test credentials, [`REGION`], quick retries.
    pub fn sdk_config(&self) -> SdkConfig {
        sdk_config(&self.endpoint())
    }

    /// Creates a symmetric encryption key through the KMS API and returns its key id.
    pub async fn create_key(&self) -> String {
        let out = self.client().create_key().send().await.expect("CreateKey");
        out.key_metadata
            .expect("CreateKey returns key metadata")
            .key_id
    }

    /// `DisableKey`.
    pub async fn disable_key(&self, key_id: &str) {
        self.client()
            .disable_key()
            .key_id(key_id)
            .send()
            .await
            .expect("DisableKey");
    }

    /// `ScheduleKeyDeletion` with the shortest window (7 days).
    pub async fn schedule_key_deletion(&self, key_id: &str) {
        self.client()
            .schedule_key_deletion()
            .key_id(key_id)
            .pending_window_in_days(7)
            .send()
            .await
            .expect("ScheduleKeyDeletion");
    }

    /// Kills the server (by its PID) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn client(&self) -> aws_sdk_kms::Client {
        aws_sdk_kms::Client::new(&self.sdk_config())
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if http_get_ok(self.port, "/moto-api/") {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("moto_server exited before it answered: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer on port {} within 30 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Test credentials; the secret is distinctive so that tests can check no message carries it.
pub const ACCESS_KEY_ID: &str = "AKIDVAULTDTEST";
/// See [`ACCESS_KEY_ID`].
pub const SECRET_ACCESS_KEY: &str = "vaultd-test-secret-never-in-a-message";

/// An SDK configuration for a local KMS server at `endpoint`: static test credentials,
/// [`REGION`], and retries and timeouts short enough for tests.
pub fn sdk_config(endpoint: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            ACCESS_KEY_ID,
            SECRET_ACCESS_KEY,
            None,
            None,
            "vaultd-tests",
        )))
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(2)
                .with_initial_backoff(Duration::from_millis(50)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_timeout(Duration::from_secs(10))
                .build(),
        )
        .build()
}

/// `http://127.0.0.1:<port>`.
pub fn endpoint(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// A port that was free a moment ago (bound to port 0, read, released).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("local address").port()
}

/// The moto server binary, or a failure that says how to get one.
fn moto_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("VAULTD_TEST_MOTO") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "VAULTD_TEST_MOTO={} does not exist; run scripts/test, which installs moto",
            path.display()
        );
        return path;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("vaultd lies inside the workspace");
    let path = workspace.join(".venv-test/bin/moto_server");
    assert!(
        path.is_file(),
        "no moto server: {} is missing and VAULTD_TEST_MOTO is unset. Run scripts/test \
         (it installs moto[server] into .venv-test), or set VAULTD_TEST_MOTO to a moto_server binary",
        path.display()
    );
    path
}

/// Whether `GET path` on 127.0.0.1:`port` answers 200.
fn http_get_ok(port: u16, path: &str) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok()
        && (head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"))
}

/// A TCP forwarder from a fixed local port to an upstream port that can be taken down and
/// brought back on the same port: the KMS endpoint "goes away" (connections refused, open ones
/// cut) and "comes back", while moto behind it keeps its keys (it holds them in memory only).
pub struct Outage {
    port: u16,
    upstream: u16,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Outage {
    /// A forwarder to `upstream` on a free port, initially down.
    pub fn new(upstream: u16) -> Self {
        Self {
            port: free_port(),
            upstream,
            tasks: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts forwarding (binds the port again).
    pub async fn up(&self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("binding the forwarder port");
        let upstream = self.upstream;
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().expect("tasks").push(conn);
            }
        });
        self.tasks.lock().expect("tasks").push(accept);
    }

    /// Stops forwarding: closes the port and cuts every open connection.
    pub async fn down(&self) {
        let tasks: Vec<_> = self.tasks.lock().expect("tasks").drain(..).collect();
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        for task in self.tasks.lock().expect("tasks").drain(..) {
            task.abort();
        }
    }
}

/// `vaultd` on the `aws` provider through a KMS endpoint on 127.0.0.1; killed by PID on drop.
pub struct Daemon {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Daemon {
    /// Starts it on `dir/data` with auto-unseal, granting the test's uid unseal and status.
    pub fn start(dir: &Path, kms_port: u16, key_id: &str) -> Self {
        Self::start_with(dir, kms_port, key_id, &["sys:unseal", "sys:status"])
    }

    /// [`Daemon::start`], granting the test's uid `capabilities` on every tenant.
    pub fn start_with(dir: &Path, kms_port: u16, key_id: &str, capabilities: &[&str]) -> Self {
        Self::spawn(dir, kms_port, key_id, capabilities, true)
    }

    /// [`Daemon::start`] with no AWS credentials anywhere in its environment (and instance
    /// metadata off).
    pub fn start_without_credentials(dir: &Path, kms_port: u16, key_id: &str) -> Self {
        Self::spawn(dir, kms_port, key_id, &["sys:unseal", "sys:status"], false)
    }

    fn spawn(
        dir: &Path,
        kms_port: u16,
        key_id: &str,
        capabilities: &[&str],
        credentials: bool,
    ) -> Self {
        let socket = dir.join("run/vaultd.sock");
        let log = dir.join("vaultd.log");
        let config = dir.join("vaultd.toml");
        let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(dir).expect("dir"));
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{data}\"\nsocket = \"{socket}\"\nauto_unseal = true\n\
                 [kms]\nprovider = \"aws\"\nkey_id = \"{key_id}\"\nregion = \"{region}\"\n\
                 endpoint_url = \"http://127.0.0.1:{kms_port}\"\n\
                 [[policy]]\nuids = [{uid}]\ncapabilities = {capabilities:?}\ntenants = [\"*\"]\n",
                data = dir.join("data").display(),
                socket = socket.display(),
                region = REGION,
            ),
        )
        .expect("config");
        let mut command = Command::new(env!("CARGO_BIN_EXE_vaultd"));
        command
            .arg("--config")
            .arg(&config)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir)
            .env("AWS_EC2_METADATA_DISABLED", "true");
        if credentials {
            command
                .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
                .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY);
        }
        let child = command
            .env("VAULTD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("starting vaultd");
        Self { child, socket, log }
    }

    /// Its socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn client(&self) -> vault_client::Client {
        vault_client::Client::new(&self.socket).with_timeout(Duration::from_secs(60))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `check` holds, or fails after `within` showing the log.
    pub async fn wait_for(
        &self,
        what: &str,
        within: Duration,
        mut check: impl AsyncFnMut() -> bool,
    ) {
        let deadline = Instant::now() + within;
        while !check().await {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits (up to 30 s) until the log holds `needle`; the log then.
    pub async fn wait_for_log(&self, needle: &str) -> String {
        self.wait_for(needle, Duration::from_secs(30), async || {
            self.log().contains(needle)
        })
        .await;
        self.log()
    }

    pub async fn state(&self) -> Option<vault_client::wire::VaultState> {
        self.client().health().await.ok().map(|h| h.state)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
