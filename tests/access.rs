//! Who may do what, with real processes of other uids (the tests run as root and drop to
//! nobody with `Command::uid`).

mod common;

use common::{Daemon, SEAL_ONLY_UID, SOCKET_GID, STRANGER_UID};

/// `vault-cli token put acme t1 …` with its binding file.
fn put_args(daemon: &Daemon) -> Vec<String> {
    let binding = daemon.binding_file("u", "DE01");
    [
        "token",
        "put",
        "acme",
        "t1",
        "--bank",
        "b",
        "--scope",
        "accounts",
        "--binding-file",
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .chain([binding])
    .collect()
}

fn put(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

async fn ready() -> Daemon {
    let daemon = Daemon::start();
    let c = daemon.client();
    c.init().await.expect("init");
    c.create_tenant("acme").await.expect("tenant");
    daemon
}

fn code(out: &std::process::Output) -> i32 {
    out.status.code().expect("exited")
}

#[tokio::test]
async fn seal_only_identity_can_store_but_never_read_back() {
    let daemon = ready().await;
    let me = Some((SEAL_ONLY_UID, SOCKET_GID));
    let args = put_args(&daemon);
    let out = daemon.cli(me, &put(&args), b"bank-token");
    assert_eq!(
        code(&out),
        0,
        "put as seal-only: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for args in [
        &["token", "get", "acme", "t1"][..],
        &["token", "get", "acme", "t1", "--meta"],
        &["token", "list", "acme"],
        &["status"],
    ] {
        let out = daemon.cli(me, args, b"");
        assert_eq!(
            code(&out),
            4,
            "{args:?} must be denied: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "nothing printed on denial");
        assert!(String::from_utf8_lossy(&out.stderr).contains("denied"));
    }
    // The operator can read what the seal-only identity stored.
    let out = daemon.cli(None, &["token", "get", "acme", "t1"], b"");
    assert_eq!(
        (code(&out), out.stdout.as_slice()),
        (0, b"bank-token".as_slice())
    );
}

#[tokio::test]
async fn other_uids_are_denied_or_cannot_connect() {
    let daemon = ready().await;
    // In the socket's group but named by no rule: every call is 403 denied.
    let stranger = Some((STRANGER_UID, SOCKET_GID));
    for args in [
        &["status"][..],
        &["token", "get", "acme", "t1"],
        &["tenant", "create", "evil"],
        &["operator", "seal"],
    ] {
        let out = daemon.cli(stranger, args, b"");
        assert_eq!(
            code(&out),
            4,
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let args = put_args(&daemon);
    let out = daemon.cli(stranger, &put(&args), b"x");
    assert_eq!(code(&out), 4);
    // Not in the socket's group: the kernel refuses the connection (socket 0660, dir 0750).
    let outsider = Some((STRANGER_UID, STRANGER_UID));
    let out = daemon.cli(outsider, &["status"], b"");
    assert_eq!(
        code(&out),
        7,
        "cannot connect: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Nothing changed, and health is open to anyone who can connect.
    let c = daemon.client();
    assert_eq!(c.list_tenants().await.expect("list").tenants.len(), 1);
    assert_eq!(
        c.health().await.expect("health").state,
        vault_client::wire::VaultState::Unsealed
    );
    let out = daemon.cli(stranger, &["operator", "unseal"], b"");
    assert_eq!(code(&out), 4);
}

#[tokio::test]
async fn socket_and_directories_have_tight_modes() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let daemon = ready().await;
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&daemon.socket), 0o660);
    let sock_dir = daemon.socket.parent().expect("dir");
    assert_eq!(mode(sock_dir), 0o750);
    assert_eq!(
        std::fs::metadata(&daemon.socket).expect("stat").gid(),
        SOCKET_GID
    );
    assert_eq!(mode(&daemon.root.path().join("data")), 0o700);
}
