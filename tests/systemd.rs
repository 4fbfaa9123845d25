//! Running under systemd (packaging/systemd/): the units pass `systemd-analyze verify` and the
//! offline security review; the real daemon sends READY=1 and STATUS= (sd_notify) to
//! `NOTIFY_SOCKET` as its state changes, and STOPPING=1 at SIGTERM; and it serves the socket
//! `systemd-socket-activate` passes (LISTEN_FDS) instead of binding its own.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vault_client::Client;
use vault_client::wire::VaultState;

use common::{bin, unsafe_free_kill};

const UNITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/systemd");

/// The units, with ExecStart pointing at the vaultd under test, in `dir`.
fn units_in(dir: &Path) -> (String, String) {
    let service = std::fs::read_to_string(format!("{UNITS}/vaultd.service"))
        .expect("vaultd.service")
        .replace("/usr/bin/vaultd", &bin("vaultd").to_string_lossy());
    let service_path = dir.join("vaultd.service");
    std::fs::write(&service_path, service).expect("write");
    let socket_path = dir.join("vaultd.socket");
    std::fs::copy(format!("{UNITS}/vaultd.socket"), &socket_path).expect("copy");
    (
        service_path.to_string_lossy().into_owned(),
        socket_path.to_string_lossy().into_owned(),
    )
}

#[test]
fn the_units_verify_and_their_sandbox_scores_ok() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (service, socket) = units_in(dir.path());
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no", &socket, &service])
        .output()
        .expect("systemd-analyze (package systemd)");
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "{complaints}");
    assert!(
        complaints.trim().is_empty(),
        "systemd-analyze verify: {complaints}"
    );
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", &service])
        .output()
        .expect("systemd-analyze security");
    let text = String::from_utf8_lossy(&security.stdout);
    let level: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for vaultd.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    eprintln!("systemd-analyze security: exposure {level} (0 best, 10 worst)");
    assert!(level <= 2.0, "exposure {level}:\n{text}");
    for file in ["vaultd.sysusers", "vaultd.tmpfiles"] {
        let text = std::fs::read_to_string(format!("{UNITS}/{file}")).expect(file);
        assert!(text.contains("vaultd"), "{file}");
    }
}

/// `vaultd --dev` in `dir`, with `env`.
fn dev(dir: &Path, env: &[(&str, &str)]) -> Child {
    let mut command = Command::new(bin("vaultd"));
    command
        .arg("--dev")
        .current_dir(dir)
        .env_remove("VAULT_SOCKET")
        .env_remove("VAULTD_SOCKET")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("vaultd.log")).expect("log"));
    for (k, v) in env {
        command.env(k, v);
    }
    command.spawn().expect("vaultd --dev")
}

/// The next message on `socket` within 20 s.
fn next_message(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn stop(child: &mut Child) {
    assert_eq!(
        unsafe_free_kill(i32::try_from(child.id()).expect("pid"), libc::SIGTERM),
        0
    );
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn the_daemon_tells_systemd_it_is_ready_and_each_state_it_goes_through() {
    let dir = tempfile::tempdir().expect("tempdir");
    let notify = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&notify).expect("notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut child = dev(dir.path(), &[("NOTIFY_SOCKET", &notify.to_string_lossy())]);
    let ready = next_message(&socket);
    assert!(ready.contains("READY=1"), "{ready}");
    assert!(ready.contains("STATUS=serving; vault unsealed"), "{ready}");
    let c = Client::new(dir.path().join("vaultd-dev/vaultd.sock"));
    c.seal().await.expect("seal");
    let sealed = next_message(&socket);
    assert_eq!(
        sealed.trim(),
        "STATUS=serving; vault sealed (vault-cli operator unseal)"
    );
    c.unseal().await.expect("unseal");
    assert_eq!(
        next_message(&socket).trim(),
        "STATUS=serving; vault unsealed"
    );
    stop(&mut child);
    assert!(next_message(&socket).contains("STOPPING=1"));
}

#[tokio::test]
async fn the_daemon_serves_the_socket_systemd_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let passed = dir.path().join("activated.sock");
    let mut command = Command::new("systemd-socket-activate");
    command
        .arg("--listen")
        .arg(&passed)
        .arg(bin("vaultd"))
        .arg("--dev")
        .current_dir(dir.path())
        .env_remove("VAULT_SOCKET")
        .env_remove("VAULTD_SOCKET")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("vaultd.log")).expect("log"));
    // systemd-socket-activate execs vaultd in its own process: the PID is the daemon's.
    let mut child = command
        .spawn()
        .expect("systemd-socket-activate (package systemd)");
    let c = Client::new(&passed);
    let deadline = Instant::now() + Duration::from_secs(20);
    let log = || std::fs::read_to_string(dir.path().join("vaultd.log")).unwrap_or_default();
    loop {
        if let Ok(h) = c.health().await
            && h.state == VaultState::Unsealed
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no answer on the passed socket:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.create_tenant("acme")
        .await
        .expect("served on the passed socket");
    assert!(
        log().contains("socket activation: serving the socket systemd passed"),
        "{}",
        log()
    );
    assert!(
        !dir.path().join("vaultd-dev/vaultd.sock").exists(),
        "no socket of its own"
    );
    stop(&mut child);
    // The passed socket is systemd's to remove, not vaultd's.
    assert!(passed.exists(), "vaultd removed the socket systemd owns");
}

/// The unit lets vaultd lock its memory: it locks only under an unlimited memlock limit.
#[test]
fn the_unit_allows_the_memory_lock_and_no_core_dumps() {
    let service = std::fs::read_to_string(format!("{UNITS}/vaultd.service")).expect("unit");
    assert!(service.lines().any(|l| l == "LimitMEMLOCK=infinity"));
    assert!(service.lines().any(|l| l == "LimitCORE=0"));
    assert!(service.lines().any(|l| l == "Type=notify"));
}
