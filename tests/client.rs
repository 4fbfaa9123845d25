//! `vault-client` as a platform service uses it, against the real daemon: the example program
//! stores and fetches a token with a client from the environment; idempotent calls ride out a
//! sealed vault by retrying, a write is never repeated, and every refusal carries the request
//! id that its audit entry records.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use vault_client::{ApiCode, Client, Retry};

use common::{Daemon, entries_with_op, put};

#[test]
fn the_example_stores_and_fetches_a_token_against_the_daemon() {
    let daemon = Daemon::start();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async { daemon.client().init().await.expect("init") });
    let example = common::bin("examples/store_and_fetch");
    let mut child = Command::new(example)
        .args(["acme", "consent-1"])
        .env_clear()
        .env("VAULT_SOCKET", &daemon.socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the example");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"DE89370400440532013000\nexample-access-token")
        .expect("stdin");
    let out = child.wait_with_output().expect("example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("stored acme/consent-1 at revision 1")
            && stdout.contains("read back 20 bytes"),
        "{stdout}"
    );
    // What it stored is there for any other client.
    let token = runtime
        .block_on(daemon.client().unseal_token("acme", "consent-1", None))
        .expect("unseal");
    assert_eq!(token.secret().expose_secret(), b"example-access-token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_calls_retry_through_a_seal_and_writes_do_not() {
    let daemon = Daemon::start();
    let c = daemon.client();
    c.init().await.expect("init");
    c.create_tenant("acme").await.expect("tenant");
    c.put_token("acme", "t", &put("kept", "DE01"))
        .await
        .expect("put");
    c.seal().await.expect("seal");

    // Without retries: sealed, retryable, and named by its request id.
    let once = Client::builder()
        .socket(&daemon.socket)
        .retry(Retry::NONE)
        .build()
        .expect("client");
    let err = once
        .unseal_token("acme", "t", None)
        .await
        .expect_err("sealed");
    assert_eq!(err.code(), Some(&ApiCode::Sealed));
    assert!(err.is_retryable());
    let id = err.request_id().expect("a request id").to_owned();
    assert!(err.to_string().contains(&id), "{err}");

    // A write is not repeated by the client: one refusal in the log for it.
    let patient = Client::builder()
        .socket(&daemon.socket)
        .retry(Retry {
            attempts: 40,
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(250),
        })
        .build()
        .expect("client");
    let err = patient
        .put_token("acme", "w", &put("new", "DE01"))
        .await
        .expect_err("sealed write");
    assert_eq!(err.code(), Some(&ApiCode::Sealed));

    // An unseal of a token started while sealed succeeds once an operator unseals.
    let reader = patient.clone();
    let read = tokio::spawn(async move { reader.unseal_token("acme", "t", None).await });
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        !read.is_finished(),
        "the read waits while the vault is sealed"
    );
    c.unseal().await.expect("unseal the vault");
    let token = read.await.expect("task").expect("read after the unseal");
    assert_eq!(token.secret().expose_secret(), b"kept");

    // The request id of an answer, as its audit entry records it.
    let (token, ids) = vault_client::with_request_ids(c.unseal_token("acme", "t", None)).await;
    assert_eq!(token.expect("read").secret().expose_secret(), b"kept");
    let [answered] = ids.as_slice() else {
        panic!("one request id: {ids:?}")
    };

    let entries = entries_with_op(&c, "token.put").await;
    let refused: Vec<_> = entries
        .iter()
        .filter(|e| e.token.as_deref() == Some("w"))
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].code.as_deref(), Some("sealed"));
    let sealed_reads = entries_with_op(&c, "token.unseal").await;
    assert!(
        sealed_reads.iter().any(|e| e.request == id),
        "the request id is the entry's"
    );
    assert!(
        sealed_reads
            .iter()
            .any(|e| &e.request == answered && e.code.is_none()),
        "the answer's request id is its entry's"
    );
    assert!(
        sealed_reads
            .iter()
            .filter(|e| e.code.as_deref() == Some("sealed"))
            .count()
            >= 3,
        "the waiting read was tried more than once"
    );
}
