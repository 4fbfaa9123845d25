//! `vault-cli` conventions a script relies on: the exit status of `status`, errors as JSON,
//! hints that name the command or group that fixes an error, a closed pipe, `version`.

mod common;

use common::{Daemon, STRANGER_UID, bin};

fn code(out: &std::process::Output) -> i32 {
    out.status.code().expect("exited")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The one JSON document a `--json` error writes to stderr.
fn json_error(out: &std::process::Output) -> serde_json::Value {
    let text = stderr(out);
    let value: serde_json::Value =
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    value["error"].clone()
}

#[tokio::test]
async fn status_exits_0_unsealed_2_sealed_or_uninitialized() {
    let daemon = Daemon::start();
    let out = daemon.cli(None, &["status"], b"");
    assert_eq!(code(&out), 2, "uninitialized: {}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("uninitialized"));
    let c = daemon.client();
    c.init().await.expect("init");
    let out = daemon.cli(None, &["status"], b"");
    assert_eq!(code(&out), 0, "unsealed: {}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("unsealed"), "{text}");
    assert!(
        text.contains(env!("CARGO_PKG_VERSION")),
        "daemon version: {text}"
    );
    c.seal().await.expect("seal");
    let out = daemon.cli(None, &["status", "--json"], b"");
    assert_eq!(code(&out), 2, "sealed: {}", stderr(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(status["state"], "sealed");
    // A sealed vault refuses other commands with exit 3 and says how to unseal.
    let out = daemon.cli(None, &["tenant", "list"], b"");
    assert_eq!(code(&out), 3);
    assert!(
        stderr(&out).contains("hint: unseal it: vault-cli operator unseal"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn json_errors_are_json_with_code_hint_and_exit() {
    let daemon = Daemon::start();
    let c = daemon.client();
    c.init().await.expect("init");
    let out = daemon.cli(None, &["--json", "token", "list", "nope"], b"");
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    let err = json_error(&out);
    assert_eq!(err["code"], "not_found");
    assert_eq!(err["status"], 404);
    assert_eq!(err["exit"], 5);
    assert!(err["message"].as_str().expect("message").contains("nope"));
    assert!(out.stdout.is_empty());
    // VAULT_FORMAT=json does the same, and a sealed error carries the unseal hint.
    c.seal().await.expect("seal");
    let mut cmd = std::process::Command::new(bin("vault-cli"));
    let out = cmd
        .args(["tenant", "list"])
        .env("VAULT_SOCKET", &daemon.socket)
        .env("VAULT_FORMAT", "json")
        .output()
        .expect("run vault-cli");
    assert_eq!(code(&out), 3);
    let err = json_error(&out);
    assert_eq!(err["code"], "sealed");
    assert_eq!(err["hint"], "unseal it: vault-cli operator unseal");
    // A failed connection is JSON too, with no API code.
    let out = common::cli_at(
        &daemon.socket.with_file_name("absent.sock"),
        None,
        &["--json", "status"],
        b"",
    );
    assert_eq!(code(&out), 7);
    let err = json_error(&out);
    assert!(err["code"].is_null());
    assert!(
        err["hint"]
            .as_str()
            .expect("hint")
            .contains("is vaultd running")
    );
}

#[tokio::test]
async fn a_socket_permission_error_names_the_group() {
    use std::os::unix::fs::MetadataExt as _;
    let daemon = Daemon::start();
    daemon.client().init().await.expect("init");
    // Not in the socket's group: the kernel refuses the connection.
    let outsider = Some((STRANGER_UID, STRANGER_UID));
    let out = daemon.cli(outsider, &["status"], b"");
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    let dir = daemon.socket.parent().expect("socket dir").to_owned();
    let gid = std::fs::metadata(&dir).expect("stat").gid();
    let text = stderr(&out);
    // The test daemon's socket group is nogroup (tests/common), named through NSS.
    assert!(
        text.contains(&format!("group nogroup (gid {gid})")),
        "hint names the group: {text}"
    );
}

#[test]
fn completions_into_a_closed_pipe_exit_0() {
    use std::io::Read as _;
    use std::process::{Command, Stdio};
    let mut child = Command::new(bin("vault-cli"))
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).expect("first bytes");
    // `| head -1`: the reader goes away long before the script is written.
    drop(stdout);
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn version_prints_both_versions_without_a_daemon() {
    let out = common::cli_at(
        std::path::Path::new("/nonexistent/vaultd.sock"),
        None,
        &["version"],
        b"",
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains(&format!("vault-cli  {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains("vaultd     unknown"), "{text}");
}

#[test]
fn one_vault_socket_variable_serves_daemon_and_cli() {
    use std::os::unix::fs::PermissionsExt as _;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let cwd = tempfile::tempdir().expect("tempdir");
    let sock_dir = cwd.path().join("run");
    std::fs::create_dir(&sock_dir).expect("mkdir");
    // --dev refuses a socket directory that others can reach.
    std::fs::set_permissions(&sock_dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let socket = sock_dir.join("shared.sock");
    let mut child = Command::new(bin("vaultd"))
        .arg("--dev")
        .current_dir(cwd.path())
        .env_remove("VAULTD_SOCKET")
        .env("VAULT_SOCKET", &socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start vaultd --dev");
    let pid = i32::try_from(child.id()).expect("pid");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        if Instant::now() > deadline || child.try_wait().expect("wait").is_some() {
            common::unsafe_free_kill(pid, 9);
            let _ = child.wait();
            panic!("vaultd did not bind VAULT_SOCKET {}", socket.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = common::cli_at(&socket, None, &["status"], b"");
    // Killed by its own PID (SIGTERM: it seals and exits).
    common::unsafe_free_kill(pid, 15);
    let _ = child.wait();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!cwd.path().join("vaultd-dev").join("vaultd.sock").exists());
}

#[test]
fn man_pages_render_for_every_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pages_dir = dir.path().join("man1");
    let out = common::cli_at(
        std::path::Path::new("/nonexistent/vaultd.sock"),
        None,
        &["man", pages_dir.to_str().expect("utf-8")],
        b"",
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let listed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    // One page per command and subcommand: the CLI has dozens.
    assert!(listed.len() >= 30, "{listed:?}");
    for page in &listed {
        let name = std::path::Path::new(page)
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .into_owned();
        let rendered = std::process::Command::new("man")
            .args(["-l", page])
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .output()
            .expect("run man (package man-db)");
        assert!(rendered.status.success(), "man -l {page}: {rendered:?}");
        let text = String::from_utf8_lossy(&rendered.stdout);
        assert!(
            text.contains("NAME") && text.contains(&name),
            "{page}:\n{text}"
        );
    }
    let main = std::process::Command::new("man")
        .args(["-l", &pages_dir.join("vault-cli.1").to_string_lossy()])
        .env("MANPAGER", "cat")
        .output()
        .expect("man");
    assert!(
        String::from_utf8_lossy(&main.stdout).contains("Exit codes"),
        "the main page lists the exit codes"
    );
}
