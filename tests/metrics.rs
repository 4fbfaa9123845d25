//! Metrics (docs/operator-guide.md, "Monitoring"): the text passes `promtool check metrics`; it
//! has latency histograms, KMS call times, group-commit sizes and sync times, the sealed and
//! audit gauges, the build, and key metadata, and no tenant or token id; the loopback metrics
//! listener serves `GET /metrics` only, and its scrapes are counted, not audited.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, bin, entries_with_op, put};

/// `(status, body)` of one plain HTTP/1.1 request to `port` on 127.0.0.1.
fn http(port: u16, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The metrics listener's port, from the daemon's log.
fn metrics_port(daemon: &Daemon) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = daemon.log_text();
        if let Some(port) = log
            .lines()
            .filter(|l| l.contains("metrics listener"))
            .find_map(|l| l.split("listen=127.0.0.1:").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|p| p.parse().ok())
        {
            return port;
        }
        assert!(Instant::now() < deadline, "no metrics listener in:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `promtool check metrics` accepts `text` (Debian package prometheus; scripts/test installs it).
fn promtool_accepts(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_metrics_lint_clean_say_what_operators_watch_and_name_no_tenant() {
    let daemon = Daemon::start_configured("", "[metrics]\nlisten = \"127.0.0.1:0\"\n");
    let c = daemon.client();
    c.init().await.expect("init");
    c.create_tenant("acme-secret-name").await.expect("tenant");
    for i in 0..3 {
        c.put_token(
            "acme-secret-name",
            &format!("consent-id-{i}"),
            &put("s", "DE00"),
        )
        .await
        .expect("put");
    }
    c.rotate_tenant("acme-secret-name").await.expect("rotate");
    let port = metrics_port(&daemon);
    let audited = entries_with_op(&c, "sys.metrics").await.len();
    let (status, text) = http(port, "GET", "/metrics");
    assert_eq!(status, 200, "{text}");
    promtool_accepts(&text);
    for series in [
        "vaultd_build_info{version=\"",
        "vaultd_sealed 0",
        "vaultd_audit_available 1",
        "vaultd_state 2",
        "vaultd_request_duration_seconds_bucket{le=\"0.0001\",route=\"token.put\",status=\"200\"}",
        "vaultd_requests_total{route=\"token.put\",status=\"200\"} 3",
        "vaultd_kms_call_duration_seconds_count{operation=\"generate\"} 1",
        "vaultd_store_apply_seconds_count ",
        "vaultd_store_group_batches_bucket{le=\"1.0\"}",
        "vaultd_records_on_old_key_versions 3",
        "vaultd_oldest_key_age_seconds ",
        "vaultd_jobs_running 0",
        "vaultd_metrics_scrapes_total 1",
        "vaultd_kms_calls_total{provider=\"local\"} 1",
    ] {
        assert!(text.contains(series), "{series} missing:\n{text}");
    }
    assert!(
        !text.contains("acme-secret-name"),
        "a tenant in the metrics"
    );
    assert!(!text.contains("consent-id"), "a token id in the metrics");
    for _ in 0..2 {
        assert_eq!(http(port, "GET", "/metrics").0, 200);
    }
    assert_eq!(http(port, "GET", "/v1/sys/status").0, 404);
    assert_eq!(http(port, "POST", "/metrics").0, 405);
    let (_, text) = http(port, "GET", "/metrics");
    assert!(text.contains("vaultd_metrics_scrapes_total 4"), "{text}");
    assert_eq!(
        entries_with_op(&c, "sys.metrics").await.len(),
        audited,
        "scrapes of the listener are not audited"
    );
    // The API route is audited, and its text lints the same.
    let api = c.metrics().await.expect("metrics");
    promtool_accepts(&api);
    assert_eq!(entries_with_op(&c, "sys.metrics").await.len(), audited + 1);
}

#[test]
fn a_metrics_listener_off_loopback_is_refused_at_start() {
    let daemon = Daemon::start_configured("", "");
    let config = std::fs::read_to_string(&daemon.config).expect("config");
    drop(daemon);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("vaultd.toml");
    std::fs::write(
        &path,
        format!("{config}\n[metrics]\nlisten = \"0.0.0.0:9464\"\n"),
    )
    .expect("write");
    let out = Command::new(bin("vaultd"))
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .expect("vaultd");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only a loopback address"), "{err}");
}
