//! vaultd against hostile local users and callers (issue 12), with the real binary. Each test
//! is named after what it guards.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `vaultd --dev` in `cwd`; returns its exit status and stderr if it exits within 20 s,
/// else kills it (by its PID) and fails.
fn dev_run(cwd: &std::path::Path) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(common::bin("vaultd"))
        .arg("--dev")
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vaultd --dev");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
                .expect("stderr");
            return (status, err);
        }
        if Instant::now() > deadline {
            let pid = i32::try_from(child.id()).expect("pid");
            common::unsafe_free_kill(pid, 9);
            let _ = child.wait();
            panic!("vaultd --dev kept running on a directory it must refuse");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn dev_refuses_a_dev_directory_others_may_write_to() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let dev = cwd.path().join("vaultd-dev");
    std::fs::create_dir(&dev).expect("mkdir");
    // A local user pre-creates it for everyone: they could swap the socket.
    std::fs::set_permissions(&dev, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let (status, err) = dev_run(cwd.path());
    assert!(!status.success());
    assert!(
        err.contains("--dev directory") && err.contains("mode 777"),
        "{err}"
    );
    assert!(
        !dev.join("vaultd.sock").exists(),
        "no socket in a refused directory"
    );
}

#[test]
fn dev_refuses_a_dev_directory_owned_by_another_user() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let dev = cwd.path().join("vaultd-dev");
    std::fs::create_dir(&dev).expect("mkdir");
    std::fs::set_permissions(&dev, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    // Owned by nobody (the tests run as root, as CI does).
    let chown = Command::new("chown")
        .arg("65534")
        .arg(&dev)
        .status()
        .expect("chown");
    assert!(chown.success(), "chown needs root");
    let (status, err) = dev_run(cwd.path());
    assert!(!status.success());
    assert!(err.contains("owned by uid 65534"), "{err}");
}

#[tokio::test]
async fn a_tenants_key_history_holds_its_own_events_only() {
    let daemon = common::Daemon::start();
    let c = daemon.client();
    c.init().await.expect("init");
    for name in ["acme", "globex"] {
        c.create_tenant(name).await.expect("tenant");
        c.rotate_tenant(name).await.expect("rotate");
    }
    c.rotate_master().await.expect("rotate master");
    let acme = c.key_history(Some("acme")).await.expect("history");
    assert!(!acme.events.is_empty(), "acme's own rotation is there");
    for event in &acme.events {
        assert_eq!(event.tenant.as_deref(), Some("acme"), "{event:?}");
    }
    // The vault-wide history (keys:read on every tenant) keeps the rest.
    let all = c.key_history(None).await.expect("history");
    assert!(all.events.iter().any(|e| e.tenant.is_none()));
    assert!(
        all.events
            .iter()
            .any(|e| e.tenant.as_deref() == Some("globex"))
    );
}
