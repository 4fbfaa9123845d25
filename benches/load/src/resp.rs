//! A minimal redis client: RESP2 over a Unix socket, one command in flight per connection
//! (no pipelining), which is how a request handler that needs the value before it goes on
//! talks to redis.

use std::path::Path;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// One connection to redis-server.
pub(crate) struct Redis {
    stream: BufReader<UnixStream>,
    out: Vec<u8>,
    line: Vec<u8>,
}

/// A reply, as far as the load generator needs it.
#[derive(Debug)]
pub(crate) enum Reply {
    /// A bulk string (`$n`), or `None` for the null bulk string.
    Bulk(Option<Vec<u8>>),
    /// `:n`.
    Integer(i64),
    /// `+text`.
    Simple(String),
}

impl Redis {
    pub(crate) async fn connect(socket: &Path) -> anyhow::Result<Self> {
        let stream = UnixStream::connect(socket)
            .await
            .with_context(|| format!("connecting to redis at {}", socket.display()))?;
        Ok(Self {
            stream: BufReader::with_capacity(64 * 1024, stream),
            out: Vec::with_capacity(4096),
            line: Vec::with_capacity(64),
        })
    }

    /// Sends one command and reads its reply; an error reply (`-ERR …`) is an error.
    pub(crate) async fn command(&mut self, args: &[&[u8]]) -> anyhow::Result<Reply> {
        self.out.clear();
        self.out
            .extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for arg in args {
            self.out
                .extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            self.out.extend_from_slice(arg);
            self.out.extend_from_slice(b"\r\n");
        }
        self.stream.get_mut().write_all(&self.out).await?;
        self.reply().await
    }

    async fn reply(&mut self) -> anyhow::Result<Reply> {
        self.line.clear();
        let n = self.stream.read_until(b'\n', &mut self.line).await?;
        if n < 3 || !self.line.ends_with(b"\r\n") {
            bail!("redis closed the connection or sent a malformed line");
        }
        let text = std::str::from_utf8(&self.line[1..n - 2]).context("redis reply")?;
        match self.line[0] {
            b'+' => Ok(Reply::Simple(text.to_owned())),
            b'-' => bail!("redis: {text}"),
            b':' => Ok(Reply::Integer(text.parse().context("redis integer")?)),
            b'$' => {
                let len: i64 = text.parse().context("redis bulk length")?;
                if len < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let len = usize::try_from(len).context("redis bulk length")?;
                let mut value = vec![0; len + 2];
                self.stream.read_exact(&mut value).await?;
                value.truncate(len);
                Ok(Reply::Bulk(Some(value)))
            }
            other => bail!("unexpected redis reply type {:?}", char::from(other)),
        }
    }
}
