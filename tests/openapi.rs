//! The OpenAPI document against the live daemon: `GET /v1/sys/openapi.json` serves
//! docs/openapi.json byte for byte, and schemathesis (PyPI; `scripts/test` installs it into
//! .venv-test) generates requests from it and checks every answer against it: status codes,
//! content types, bodies, and no server errors. It reaches the Unix socket through a TCP bridge
//! on 127.0.0.1 that this test runs and stops.

mod common;

use std::process::Command;

use tokio::net::{TcpListener, UnixStream};

use common::{Daemon, put};

/// Forwards every TCP connection on a loopback port to the daemon's socket; the port.
async fn bridge(socket: std::path::PathBuf) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let socket = socket.clone();
            tokio::spawn(async move {
                if let Ok(mut unix) = UnixStream::connect(&socket).await {
                    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_answer_that_breaks_the_document() {
    let schemathesis = std::env::var("VAULTD_TEST_SCHEMATHESIS").expect(
        "VAULTD_TEST_SCHEMATHESIS names the schemathesis command: run scripts/test (it installs \
         schemathesis into .venv-test)",
    );
    // Most generated requests are refused (400, 404): a budget that lets them all be answered.
    let daemon = Daemon::start_with_top("max_refused_per_window = 1000000");
    let c = daemon.client();
    c.init().await.expect("init");
    c.create_tenant("acme").await.expect("tenant");
    c.put_token("acme", "t1", &put("s", "DE01"))
        .await
        .expect("put");

    let committed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    let (status, served) = c
        .raw(http::Method::GET, "/v1/sys/openapi.json", None)
        .await
        .expect("openapi.json");
    assert_eq!(status, 200);
    assert_eq!(
        served,
        std::fs::read(&committed).expect("docs/openapi.json"),
        "the daemon serves docs/openapi.json"
    );

    let port = bridge(daemon.socket.clone()).await;
    let run = tempfile::tempdir().expect("tempdir");
    let schemathesis = schemathesis.clone();
    let committed_path = committed.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(schemathesis)
            .current_dir(run.path())
            .env("NO_COLOR", "1")
            .args([
                "run",
                committed_path.to_str().expect("utf8"),
                "--url",
                &format!("http://127.0.0.1:{port}"),
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection",
                "--max-examples",
                "25",
                "--seed",
                "20261202",
                // Sealing would answer every later request 503 sealed.
                "--exclude-operation-id",
                "sys.seal",
                "--workers",
                "1",
            ])
            .output()
            .expect("run schemathesis")
    })
    .await
    .expect("schemathesis");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "schemathesis found failures:\n{text}");
    assert!(text.contains("generated"), "{text}");
}
