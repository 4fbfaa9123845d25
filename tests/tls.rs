//! The TCP listener with mutual TLS (docs/tls.md), end to end: the real `vaultd` on
//! 127.0.0.1 (a port the OS picks), test certificates made with rcgen, and `curl`, `openssl
//! s_client`, `vault-client` and `vault-cli` as clients.

mod common;

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, Tcp, bin, put};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use vault_client::{ApiCode, Client, Error, TlsOptions};

/// Policy rules for certificate callers: `platform-app` may create tenants, store and read
/// tokens back; `bank-receiver` may only store.
const POLICY: &str = r#"
[[policy]]
name = "platform-app"
subjects = ["platform-app"]
capabilities = ["tenant:create", "token:seal", "token:unseal", "token:read", "sys:status"]
tenants = ["*"]

[[policy]]
name = "bank-receiver-cert"
subjects = ["bank-receiver"]
capabilities = ["token:seal"]
tenants = ["*"]
"#;

/// A CA, a server certificate, and client certificates, as PEM files in a temp dir.
struct Pki {
    dir: tempfile::TempDir,
}

/// A certificate and its key, as files.
struct Pair {
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Self { dir };
        let ca = pki.ca("vaultd test CA", "ca");
        let other_ca = pki.ca("another CA", "other-ca");
        pki.leaf(&ca, "server", "vaultd", Some(&["localhost"]), true, false);
        pki.leaf(&ca, "platform", "platform-app", None, false, false);
        pki.leaf(&ca, "bank", "bank-receiver", None, false, false);
        pki.leaf(&ca, "expired", "platform-app", None, false, true);
        pki.leaf(&other_ca, "foreign", "platform-app", None, false, false);
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn pair(&self, name: &str) -> Pair {
        Pair {
            cert: self.path(&format!("{name}.pem")),
            key: self.path(&format!("{name}.key")),
        }
    }

    fn ca(&self, cn: &str, file: &str) -> CertifiedIssuer<'static, KeyPair> {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
        fs::write(self.path(&format!("{file}.pem")), ca.pem()).expect("write CA");
        ca
    }

    /// A leaf signed by `ca`, with CN `cn`; a server certificate names `dns` and 127.0.0.1.
    fn leaf(
        &self,
        ca: &CertifiedIssuer<'static, KeyPair>,
        file: &str,
        cn: &str,
        dns: Option<&[&str]>,
        server: bool,
        expired: bool,
    ) {
        let names = dns
            .unwrap_or(&[])
            .iter()
            .map(|d| (*d).to_owned())
            .collect::<Vec<_>>();
        let mut params = CertificateParams::new(names).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        if server {
            params
                .subject_alt_names
                .push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        } else {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, ca).expect("sign");
        fs::write(self.path(&format!("{file}.pem")), cert.pem()).expect("write cert");
        write_private(&self.path(&format!("{file}.key")), &key.serialize_pem());
    }

    fn tcp(&self) -> Tcp {
        let server = self.pair("server");
        Tcp {
            cert: server.cert,
            key: server.key,
            client_ca: self.path("ca.pem"),
            policy: POLICY.to_owned(),
        }
    }

    fn options(&self, client: &str) -> TlsOptions {
        let pair = self.pair(client);
        TlsOptions::from_pem_files(&pair.cert, &pair.key, &self.path("ca.pem")).expect("options")
    }
}

fn write_private(path: &Path, text: &str) {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("key file");
}

/// A started daemon with the TCP listener, initialized (so unsealed) through the Unix socket.
async fn ready(pki: &Pki) -> (Daemon, SocketAddr) {
    let daemon = Daemon::start_with_tcp(pki.tcp());
    daemon.client().init().await.expect("init");
    let addr = daemon.tcp_addr.expect("tcp address");
    (daemon, addr)
}

/// Runs a command to completion, killing it by its own PID after `limit`.
fn run(cmd: &mut Command, stdin: &[u8], limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).expect("write stdin");
    let deadline = Instant::now() + limit;
    // Keep stdin open for a moment so that s_client reads the answer before it sees EOF.
    std::thread::sleep(Duration::from_millis(700));
    drop(input);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn curl(pki: &Pki, addr: SocketAddr, client: Option<&str>, path: &str) -> Output {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "10",
        "--tlsv1.3",
        "-w",
        "\n%{http_code}",
    ])
    .arg("--cacert")
    .arg(pki.path("ca.pem"));
    if let Some(client) = client {
        let pair = pki.pair(client);
        cmd.arg("--cert")
            .arg(&pair.cert)
            .arg("--key")
            .arg(&pair.key);
    }
    cmd.arg(format!("https://127.0.0.1:{}{path}", addr.port()));
    run(&mut cmd, b"", Duration::from_secs(15))
}

/// The status code curl printed last (`000` when no answer came).
fn http_code(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout.lines().last().unwrap_or_default().trim().to_owned()
}

/// Waits until the daemon's log has a line with every one of `parts`.
fn wait_for_log(daemon: &Daemon, parts: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = daemon.log_text();
        if let Some(line) = log.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {parts:?}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn curl_with_the_right_certificate_gets_health() {
    let pki = Pki::new();
    let (daemon, addr) = ready(&pki).await;
    let out = curl(&pki, addr, Some("platform"), "/v1/sys/health");
    assert_eq!(
        http_code(&out),
        "200",
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"unsealed\""));
    drop(daemon);
}

#[tokio::test]
async fn handshake_without_client_certificate_is_refused_and_logged() {
    let pki = Pki::new();
    let (daemon, addr) = ready(&pki).await;
    let out = run(
        Command::new("openssl")
            .args(["s_client", "-tls1_3", "-connect"])
            .arg(format!("127.0.0.1:{}", addr.port()))
            .arg("-CAfile")
            .arg(pki.path("ca.pem")),
        b"GET /v1/sys/health HTTP/1.1\r\nHost: vaultd\r\n\r\n",
        Duration::from_secs(15),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stdout.contains("HTTP/1.1"),
        "no answer without a client certificate:\n{stdout}"
    );
    assert!(
        stderr.contains("alert") || stdout.contains("alert") || !out.status.success(),
        "s_client should see the refusal:\n{stdout}\n{stderr}"
    );
    let line = wait_for_log(
        &daemon,
        &[
            "WARN",
            "connection refused",
            "peer=127.0.0.1:",
            "peer sent no certificates",
        ],
    );
    assert!(line.contains("listener=\"tcp\""), "{line}");
    // Nothing got as far as a request: no audit entry for it.
    let page = daemon
        .client()
        .audit(&vault_client::AuditQuery::default())
        .await
        .expect("audit");
    assert!(
        page.entries
            .iter()
            .all(|e| !e.actor.to_string().starts_with("cert="))
    );
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused() {
    let pki = Pki::new();
    let (daemon, addr) = ready(&pki).await;
    let out = curl(&pki, addr, Some("foreign"), "/v1/sys/health");
    assert_eq!(http_code(&out), "000", "no HTTP answer");
    assert!(!out.status.success());
    wait_for_log(
        &daemon,
        &[
            "WARN",
            "connection refused",
            "peer=127.0.0.1:",
            "UnknownIssuer",
        ],
    );
    // The same through vault-client: a connection error, not an answer.
    let client = Client::tls([addr.to_string()], pki.options("foreign")).expect("client");
    assert!(matches!(client.health().await, Err(Error::Connect(_))));
}

#[tokio::test]
async fn expired_certificate_is_refused() {
    let pki = Pki::new();
    let (daemon, addr) = ready(&pki).await;
    let out = curl(&pki, addr, Some("expired"), "/v1/sys/health");
    assert_eq!(http_code(&out), "000", "no HTTP answer");
    let line = wait_for_log(
        &daemon,
        &[
            "WARN",
            "connection refused",
            "peer=127.0.0.1:",
            "certificate expired",
        ],
    );
    assert!(!line.contains("PRIVATE KEY"), "{line}");
}

#[tokio::test]
async fn authorized_request_is_audited_with_the_subject() {
    let pki = Pki::new();
    let (daemon, addr) = ready(&pki).await;
    let out = curl(&pki, addr, Some("platform"), "/v1/tenants/acme");
    // GET of a tenant needs keys:read, which platform-app lacks: denied, and audited.
    assert_eq!(
        http_code(&out),
        "403",
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("is not granted to cert=platform-app"));

    let out = curl(&pki, addr, Some("platform"), "/v1/sys/status");
    assert_eq!(
        http_code(&out),
        "200",
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let app = Client::tls([addr.to_string()], pki.options("platform")).expect("client");
    app.create_tenant("acme").await.expect("create over TLS");
    app.put_token("acme", "t1", &put("bank-token", "DE01"))
        .await
        .expect("put over TLS");
    let token = app.unseal_token("acme", "t1", None).await.expect("unseal");
    assert_eq!(token.secret.expose_secret(), b"bank-token");

    // The operator reads the log through the Unix socket.
    let operator = daemon.client();
    let page = operator
        .audit(&vault_client::AuditQuery {
            actor: Some("cert=platform-app".into()),
            ..vault_client::AuditQuery::default()
        })
        .await
        .expect("audit");
    let ops: Vec<(&str, vault_client::audit::Outcome)> = page
        .entries
        .iter()
        .map(|e| (e.op.as_str(), e.outcome))
        .collect();
    use vault_client::audit::Outcome;
    assert_eq!(
        ops,
        [
            ("tenant.show", Outcome::Denied),
            ("sys.status", Outcome::Ok),
            ("tenant.create", Outcome::Ok),
            ("token.put", Outcome::Ok),
            ("token.unseal", Outcome::Ok)
        ]
    );
    for e in &page.entries {
        assert_eq!(
            e.actor,
            vault_client::audit::Actor::Certificate {
                cert: "platform-app".into()
            }
        );
        assert_eq!(e.actor.to_string(), "cert=platform-app");
    }
    // The raw entry names the subject, and the chain still verifies.
    let export = operator
        .audit_export_page(None, 0, 1000)
        .await
        .expect("export");
    assert!(common::contains(
        &export,
        br#""actor":{"cert":"platform-app"}"#
    ));
    let report = operator.audit_verify(None).await.expect("verify");
    assert!(report.ok, "{:?}", report.problems);
    // And the request log names it too.
    wait_for_log(&daemon, &["denied", "cert=platform-app"]);
}

#[tokio::test]
async fn seal_only_subject_can_put_but_not_unseal() {
    let pki = Pki::new();
    let (daemon, addr) = ready(&pki).await;
    daemon.client().create_tenant("acme").await.expect("tenant");
    let bank = Client::tls([addr.to_string()], pki.options("bank")).expect("client");
    bank.put_token("acme", "t1", &put("from-the-bank", "DE02"))
        .await
        .expect("seal-only put");
    for denied in [
        bank.unseal_token("acme", "t1", None).await.map(drop),
        bank.token("acme", "t1").await.map(drop),
        bank.status().await.map(drop),
    ] {
        match denied {
            Err(Error::Api { code, status, .. }) => {
                assert_eq!((code, status), (ApiCode::Denied, 403));
            }
            other => panic!("expected 403 denied, got {other:?}"),
        }
    }
    // The local operator reads back what the certificate stored.
    let token = daemon
        .client()
        .unseal_token("acme", "t1", None)
        .await
        .expect("operator unseal");
    assert_eq!(token.secret.expose_secret(), b"from-the-bank");
}

#[tokio::test]
async fn client_moves_past_a_closed_port() {
    let pki = Pki::new();
    let (_daemon, addr) = ready(&pki).await;
    // A port that was free a moment ago and that nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let client = Client::tls(
        [closed.to_string(), addr.to_string()],
        pki.options("platform"),
    )
    .expect("client")
    .with_timeout(Duration::from_secs(20));
    for i in 0..3 {
        client
            .create_tenant(&format!("t{i}"))
            .await
            .expect("through the second node");
    }
    assert_eq!(client.nodes(), [closed.to_string(), addr.to_string()]);
}

#[tokio::test]
async fn client_moves_past_a_sealed_node() {
    let pki = Pki::new();
    let (sealed, sealed_addr) = ready(&pki).await;
    sealed.client().seal().await.expect("seal the first node");
    let (_open, open_addr) = ready(&pki).await;
    let client = Client::tls(
        [sealed_addr.to_string(), open_addr.to_string()],
        pki.options("platform"),
    )
    .expect("client");
    client
        .create_tenant("acme")
        .await
        .expect("served by the unsealed node");
    // The sealed node, then a closed port: the sealed answer says more than the refused
    // connection, and is what the client returns.
    let closed = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let sealed_then_closed = Client::tls(
        [sealed_addr.to_string(), closed.to_string()],
        pki.options("platform"),
    )
    .expect("client");
    let err = sealed_then_closed
        .create_tenant("acme")
        .await
        .expect_err("sealed or closed");
    assert_eq!(err.code(), Some(&ApiCode::Sealed), "{err}");
    // Only the sealed node: its `sealed` answer is returned.
    let only_sealed =
        Client::tls([sealed_addr.to_string()], pki.options("platform")).expect("client");
    let err = only_sealed.create_tenant("acme").await.expect_err("sealed");
    assert_eq!(err.code(), Some(&ApiCode::Sealed));
}

#[tokio::test]
async fn silent_client_loses_its_connection_at_the_handshake_deadline() {
    let pki = Pki::new();
    let (daemon, addr) = ready(&pki).await;
    let started = Instant::now();
    let mut idle = TcpStream::connect(addr).expect("connect");
    idle.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let mut buf = [0u8; 16];
    // The daemon closes it (EOF) after header_timeout_secs = 5; nothing is ever sent.
    let n = idle.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed without a byte");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(14),
        "{waited:?}"
    );
    wait_for_log(
        &daemon,
        &["WARN", "connection refused", "handshake timed out"],
    );
}

#[tokio::test]
async fn cli_speaks_tls_with_addr_cert_key_and_ca() {
    let pki = Pki::new();
    let (_daemon, addr) = ready(&pki).await;
    let platform = pki.pair("platform");
    let cli = |args: &[&str], env_only: bool| {
        let mut cmd = Command::new(bin("vault-cli"));
        cmd.env_remove("VAULT_SOCKET")
            .env("VAULT_SOCKET", "/nonexistent/vaultd.sock");
        if env_only {
            cmd.env("VAULT_ADDR", format!("127.0.0.1:1,{addr}"))
                .env("VAULT_CERT", &platform.cert)
                .env("VAULT_KEY", &platform.key)
                .env("VAULT_CA", pki.path("ca.pem"));
        } else {
            cmd.arg("--addr")
                .arg(addr.to_string())
                .arg("--cert")
                .arg(&platform.cert)
                .arg("--key")
                .arg(&platform.key)
                .arg("--ca")
                .arg(pki.path("ca.pem"))
                .args(["--server-name", "localhost"]);
        }
        cmd.args(args);
        run(&mut cmd, b"", Duration::from_secs(30))
    };
    let out = cli(&["tenant", "create", "acme"], false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["--json", "status"], true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"unsealed\""));
    // A wrong server name fails verification: a connection error (exit 7).
    let mut cmd = Command::new(bin("vault-cli"));
    cmd.arg("--addr")
        .arg(addr.to_string())
        .arg("--cert")
        .arg(&platform.cert)
        .arg("--key")
        .arg(&platform.key)
        .arg("--ca")
        .arg(pki.path("ca.pem"))
        .args(["--server-name", "not-vaultd.example", "status"]);
    let out = run(&mut cmd, b"", Duration::from_secs(30));
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // --addr without the files is a usage error.
    let out = run(
        Command::new(bin("vault-cli"))
            .env_remove("VAULT_CERT")
            .env_remove("VAULT_KEY")
            .env_remove("VAULT_CA")
            .args(["--addr", "127.0.0.1:1", "status"]),
        b"",
        Duration::from_secs(30),
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn refuses_to_start_with_a_server_key_others_can_read() {
    let pki = Pki::new();
    let tcp = pki.tcp();
    fs::set_permissions(&tcp.key, fs::Permissions::from_mode(0o640)).expect("chmod");
    let log = match Daemon::try_start_with_tcp(tcp) {
        Ok(_) => panic!("vaultd started with a group-readable key"),
        Err(log) => log,
    };
    assert!(log.contains("[tcp] key"), "{log}");
    assert!(log.contains("mode 640"), "{log}");
    assert!(
        !log.contains("PRIVATE KEY"),
        "no key material in the error: {log}"
    );
}
