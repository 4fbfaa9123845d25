//! `GET /v1/sys/backup`: a consistent snapshot of the whole vault, streamed (`docs/storage.md`,
//! "Backups"). The snapshot holds ciphertext only, so a sealed vault can be backed up too.
//!
//! The answer's body starts the backup when hyper first polls it. That is after `api::handle`
//! wrote the request's audit entry, so the entry says that a backup started, and the snapshot
//! holds it. A blocking thread runs [`Vault::backup`] into a channel of at most [`QUEUE`]
//! pieces of [`CHUNK`] bytes, so memory stays bounded whatever the vault's size. A backup in
//! progress keeps the write-ahead log from its start, so a client that reads nothing for
//! [`STALL_TIMEOUT`] ends it. When the backup fails or ends early, the body ends with an error
//! and hyper aborts the connection: the client holds a cut-off file, which fails its checksum.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use ::http::{Response, StatusCode};
use bytes::Bytes;
use hyper::body::Frame;
use tokio::sync::mpsc::{self, error::TrySendError};
use vault_client::wire::VaultState;

use super::no_body;
use crate::error::Error;
use crate::server::App;
use crate::server::message::{self as http, Body};
use crate::vault::Vault;

/// Bytes per piece of the answer.
const CHUNK: usize = 256 * 1024;
/// Pieces waiting between the backup thread and the connection.
const QUEUE: usize = 4;
/// Longest the backup waits for the client to take a piece.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest pause between two tries to hand over a piece while the queue is full.
const MAX_PAUSE: Duration = Duration::from_millis(5);

/// The answer: `200`, `application/octet-stream`, the backup file as its body.
pub(super) fn serve(app: &App, body: &[u8]) -> Result<Response<Body>, Error> {
    no_body(body)?;
    // Refused here, while the status can still say so; the backup itself starts later.
    if app.vault.state() == VaultState::Uninitialized {
        return Err(Error::Uninitialized);
    }
    Ok(http::stream(
        StatusCode::OK,
        Snapshot::Idle(app.vault.clone()),
        "application/octet-stream",
    ))
}

/// The answer's body.
enum Snapshot {
    /// Not polled yet: nothing has been read.
    Idle(Vault),
    /// The backup thread is running.
    Streaming(mpsc::Receiver<Piece>),
    /// Ended, completely or with an error.
    Done,
}

/// What the backup thread sends.
enum Piece {
    /// The next bytes of the file.
    Data(Bytes),
    /// The file is complete. A channel that closes without it means the backup failed.
    End,
}

impl hyper::body::Body for Snapshot {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Self::Idle(vault) = this {
            let vault = vault.clone();
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::task::spawn_blocking(move || run(&vault, tx));
            *this = Self::Streaming(rx);
        }
        let Self::Streaming(rx) = this else {
            return Poll::Ready(None);
        };
        match ready!(rx.poll_recv(cx)) {
            Some(Piece::Data(bytes)) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
            Some(Piece::End) => {
                *this = Self::Done;
                Poll::Ready(None)
            }
            None => {
                *this = Self::Done;
                Poll::Ready(Some(Err(io::Error::other(
                    "the backup failed; see the vaultd log",
                ))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Self::Done)
    }
}

/// The backup thread: the snapshot into the channel, then [`Piece::End`] if it is complete.
fn run(vault: &Vault, tx: mpsc::Sender<Piece>) {
    let started = Instant::now();
    let mut out = Chunks {
        tx,
        buf: Vec::with_capacity(CHUNK),
        sent: 0,
    };
    let result = vault.backup(&mut out).map_err(|e| e.to_string());
    let result = result.and_then(|summary| {
        out.send_buf()
            .and_then(|()| out.push(Piece::End))
            .map(|()| summary)
            .map_err(|e| format!("writing the backup: {e}"))
    });
    let secs = started.elapsed().as_secs_f64();
    match result {
        Ok(summary) => tracing::info!(
            vault_id = %summary.vault_id,
            position = summary.position,
            entries = summary.entries,
            groups = summary.groups,
            sha256 = %summary.sha256,
            bytes = out.sent,
            secs,
            "backup sent"
        ),
        // Dropping `out` closes the channel without `End`: the connection is aborted.
        Err(e) => {
            tracing::warn!(error = %e, bytes = out.sent, secs, "backup not completed; answer aborted")
        }
    }
}

/// An [`io::Write`] that hands the backup to the connection in pieces of [`CHUNK`] bytes.
struct Chunks {
    tx: mpsc::Sender<Piece>,
    buf: Vec<u8>,
    /// Bytes handed over so far.
    sent: u64,
}

impl Chunks {
    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let len = chunk.len() as u64;
        self.push(Piece::Data(Bytes::from(chunk)))?;
        self.sent += len;
        Ok(())
    }

    /// Hands `piece` over, waiting while the queue is full, at most [`STALL_TIMEOUT`]. It polls
    /// rather than blocking on the runtime, so that it never depends on a runtime that may be
    /// shutting down.
    fn push(&self, mut piece: Piece) -> io::Result<()> {
        let deadline = Instant::now() + STALL_TIMEOUT;
        let mut pause = Duration::from_micros(100);
        loop {
            match self.tx.try_send(piece) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the client went away",
                    ));
                }
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    piece = back;
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                Err(TrySendError::Full(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the client read nothing for {} s", STALL_TIMEOUT.as_secs()),
                    ));
                }
            }
        }
    }
}

impl io::Write for Chunks {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buf()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn chunks(queue: usize) -> (Chunks, mpsc::Receiver<Piece>) {
        let (tx, rx) = mpsc::channel(queue);
        let out = Chunks {
            tx,
            buf: Vec::new(),
            sent: 0,
        };
        (out, rx)
    }

    #[test]
    fn pieces_are_bounded_and_complete() {
        let (mut out, mut rx) = chunks(16);
        let data: Vec<u8> = (0..CHUNK * 2 + 10).map(|i| i as u8).collect();
        out.write_all(&data).expect("write");
        out.flush().expect("flush");
        let mut got = Vec::new();
        while let Ok(Piece::Data(bytes)) = rx.try_recv() {
            assert!(bytes.len() <= CHUNK);
            got.extend_from_slice(&bytes);
        }
        assert_eq!(got, data);
        assert_eq!(out.sent, data.len() as u64);
    }

    #[tokio::test]
    async fn a_backup_that_ends_without_end_is_an_error_frame() {
        use http_body_util::BodyExt as _;

        for complete in [true, false] {
            let (tx, rx) = mpsc::channel(4);
            tx.try_send(Piece::Data(Bytes::from_static(b"vaultbak")))
                .expect("room");
            if complete {
                tx.try_send(Piece::End).expect("room");
            }
            drop(tx); // the thread ended
            let mut body = Snapshot::Streaming(rx);
            let first = body.frame().await.expect("a frame").expect("data");
            assert_eq!(first.into_data().expect("data"), &b"vaultbak"[..]);
            match body.frame().await {
                None => assert!(complete, "an incomplete backup must not end cleanly"),
                Some(Err(_)) => assert!(!complete, "a complete backup ends cleanly"),
                Some(Ok(_)) => panic!("no more data"),
            }
            assert!(hyper::body::Body::is_end_stream(&body));
        }
    }

    #[test]
    fn a_client_that_went_away_ends_the_backup() {
        let (mut out, rx) = chunks(1);
        drop(rx);
        let err = out.write_all(&vec![0u8; CHUNK]).expect_err("closed");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
