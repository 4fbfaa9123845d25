//! The auditor's HTML report (`vault-cli audit report`) opened in a real headless Chromium: the
//! DOM holds the verification result, the key-rotation timeline (a marker per key event), the
//! records per key version, retired and destroyed versions and the access summary; the page
//! loads nothing from outside the file. Made by the auditor grant, live and from an export.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{AUDITOR, AUDITOR_RULE, Daemon, put};

const ROTATION: &str = r#"
[rotation]
max_dek_age_days = 90
check_interval_secs = 86400
"#;

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The DOM headless Chromium builds from `page`, started so that it makes no connection of its
/// own (no sync, no component updates, no background networking).
fn chromium_dom(page: &Path, profile: &Path) -> String {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .output()
        .expect("chromium (scripts/test installs the chromium package)");
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 DOM")
}

/// Nothing in the page can make the browser fetch anything: no URL, no source, and a
/// Content-Security-Policy that forbids all but inline styles.
fn self_contained(html: &str) {
    assert!(
        html.contains(
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        ),
        "CSP"
    );
    for outside in [
        "http:", "https:", "//", "src=", "href=", "url(", "@import", "<script", "<link",
    ] {
        let found = html.match_indices(outside).count();
        assert_eq!(found, 0, "{outside:?} appears {found} times in the page");
    }
}

#[tokio::test]
async fn the_report_opens_in_headless_chromium_with_the_timeline_and_the_verification() {
    let daemon = Daemon::start_configured("", &format!("{AUDITOR_RULE}{ROTATION}"));
    let c = daemon.client();
    c.init().await.expect("init");
    for t in ["acme", "beta", "gamma"] {
        c.create_tenant(t).await.expect("tenant");
    }
    for i in 0..3 {
        c.put_token("acme", &format!("consent-{i}"), &put("s", "DE00"))
            .await
            .expect("put");
        c.unseal_token("acme", &format!("consent-{i}"), None)
            .await
            .expect("unseal");
    }
    c.rotate_tenant("acme").await.expect("rotate acme");
    c.rotate_tenant("beta").await.expect("rotate beta");
    c.rotate_tenant("beta").await.expect("rotate beta again");
    c.retire("beta", 3).await.expect("retire beta v1, v2");
    c.rotate_master().await.expect("rotate master");
    c.destroy_tenant("gamma").await.expect("erase gamma");
    // a denial: the auditor may not read a token
    daemon.cli(Some(AUDITOR), &["token", "get", "acme", "consent-0"], b"");

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod");
    let page = dir.path().join("report.html");
    let page_arg = page.to_string_lossy().into_owned();
    let said = ok(&daemon.cli(Some(AUDITOR), &["audit", "report", "--out", &page_arg], b""));
    assert!(said.contains("verification ok"), "{said}");
    let html = std::fs::read_to_string(&page).expect("report");
    self_contained(&html);

    let history = c.key_history(None).await.expect("history");
    let events = history.events.len();
    let dom = chromium_dom(&page, &dir.path().join("chromium"));
    assert!(
        dom.contains("id=\"verification\" data-ok=\"true\""),
        "verification result in the DOM"
    );
    assert!(dom.contains("Verification: <span class=\"ok\">ok</span>"));
    assert!(dom.contains("<svg id=\"timeline\""), "timeline in the DOM");
    assert_eq!(
        dom.matches("<circle class=\"event\"").count(),
        events,
        "one marker per key event"
    );
    for event in [
        "data_key_rotated",
        "data_keys_retired",
        "data_keys_destroyed",
        "master_key_rotated",
    ] {
        assert!(dom.contains(&format!("data-event=\"{event}\"")), "{event}");
    }
    for lane in ["master key", "tenant acme", "tenant beta", "tenant gamma"] {
        assert!(dom.contains(&format!(">{lane}</text>")), "lane {lane}");
    }
    // records per version, against the daemon's 90-day policy
    assert!(dom.contains("Rotation policy: at most 90 days."), "policy");
    assert!(
        dom.contains("<tr><td>acme</td><td>v1</td><td>no</td><td>3</td>"),
        "acme's records under v1"
    );
    assert!(dom.contains("records under an older version"));
    assert!(dom.contains("90 days left"));
    // retired and destroyed
    assert!(
        dom.contains("<td>beta</td><td>retired</td><td>1,2</td>"),
        "beta's retired versions"
    );
    assert!(dom.contains("<td>gamma</td><td>destroyed (tenant erased)</td><td>1</td>"));
    // the access summary: 3 unseals of acme, a denial, an erasure
    assert!(
        dom.contains("<td>acme: 3</td><td>1</td><td>0</td><td>1</td>"),
        "access summary"
    );

    // Offline, from an export and the public key alone.
    let export = dir.path().join("log.export");
    ok(&daemon.cli(None, &["audit", "export", &export.to_string_lossy()], b""));
    let key = dir.path().join("audit.pub");
    std::fs::write(&key, ok(&daemon.cli(None, &["audit", "pubkey"], b""))).expect("key file");
    let offline = dir.path().join("offline.html");
    let (out, export, key) = (
        offline.to_string_lossy().into_owned(),
        export.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    );
    let offline_report = [
        "audit",
        "report",
        "--out",
        &out,
        "--offline",
        &export,
        "--pubkey",
        &key,
    ];
    ok(&daemon.cli(None, &offline_report, b""));
    let html = std::fs::read_to_string(&offline).expect("offline report");
    self_contained(&html);
    let dom = chromium_dom(&offline, &dir.path().join("chromium-offline"));
    assert!(dom.contains("id=\"verification\" data-ok=\"true\""));
    assert!(dom.contains("<svg id=\"timeline\""));
    assert!(dom.contains("Not in an export"));
    // an existing file is refused without --force
    let again = daemon.cli(None, &offline_report, b"");
    assert_eq!(again.status.code(), Some(2));
}
