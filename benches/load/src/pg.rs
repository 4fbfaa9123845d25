//! A minimal PostgreSQL client: protocol v3 over the Unix socket, `trust` authentication only
//! (the compare script's throw-away cluster), prepared statements with text parameters, one
//! statement in flight per connection, as a connection-pooled application server would run
//! them.

use std::path::Path;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// Protocol version 3.0.
const PROTOCOL_V3: i32 = 196_608;

/// One connection (one backend process).
pub(crate) struct Pg {
    stream: BufReader<UnixStream>,
    out: Vec<u8>,
    body: Vec<u8>,
}

impl Pg {
    /// Connects as `user` to `database` through the socket file (`…/.s.PGSQL.5432`).
    pub(crate) async fn connect(socket: &Path, user: &str, database: &str) -> anyhow::Result<Self> {
        let stream = UnixStream::connect(socket)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {}", socket.display()))?;
        let mut pg = Self {
            stream: BufReader::with_capacity(64 * 1024, stream),
            out: Vec::with_capacity(4096),
            body: Vec::with_capacity(4096),
        };
        let mut startup = Vec::new();
        startup.extend_from_slice(&PROTOCOL_V3.to_be_bytes());
        for s in ["user", user, "database", database] {
            cstr(&mut startup, s.as_bytes());
        }
        startup.push(0);
        let len = i32::try_from(startup.len() + 4).context("startup message")?;
        pg.out.extend_from_slice(&len.to_be_bytes());
        pg.out.extend_from_slice(&startup);
        pg.flush().await?;
        loop {
            let kind = pg.message().await?;
            match kind {
                b'R' => {
                    let code = pg.int32(0)?;
                    if code != 0 {
                        bail!(
                            "PostgreSQL asks for authentication (code {code}); this client \
                             speaks only `trust` on the local socket"
                        );
                    }
                }
                b'E' => bail!("PostgreSQL refused the connection: {}", pg.error_text()),
                b'Z' => return Ok(pg),
                _ => {} // parameter status, backend key, notices
            }
        }
    }

    /// Runs `sql` with the simple query protocol (set-up statements); rows are discarded.
    pub(crate) async fn simple(&mut self, sql: &str) -> anyhow::Result<()> {
        self.out.push(b'Q');
        let at = self.begin();
        cstr(&mut self.out, sql.as_bytes());
        self.end(at)?;
        self.flush().await?;
        self.until_ready(None).await.map(drop)
    }

    /// Prepares `sql` as the named statement `name` (parameter types inferred by the server).
    pub(crate) async fn prepare(&mut self, name: &str, sql: &str) -> anyhow::Result<()> {
        self.out.push(b'P');
        let at = self.begin();
        cstr(&mut self.out, name.as_bytes());
        cstr(&mut self.out, sql.as_bytes());
        self.out.extend_from_slice(&0i16.to_be_bytes());
        self.end(at)?;
        self.sync();
        self.flush().await?;
        self.until_ready(None).await.map(drop)
    }

    /// Executes a prepared statement with text parameters; returns the first column of each
    /// row (NULL as empty).
    pub(crate) async fn execute(
        &mut self,
        name: &str,
        params: &[&[u8]],
    ) -> anyhow::Result<Vec<Vec<u8>>> {
        self.out.push(b'B');
        let at = self.begin();
        cstr(&mut self.out, b"");
        cstr(&mut self.out, name.as_bytes());
        self.out.extend_from_slice(&0i16.to_be_bytes()); // all parameters in text format
        let n = i16::try_from(params.len()).context("too many parameters")?;
        self.out.extend_from_slice(&n.to_be_bytes());
        for p in params {
            let len = i32::try_from(p.len()).context("parameter too long")?;
            self.out.extend_from_slice(&len.to_be_bytes());
            self.out.extend_from_slice(p);
        }
        self.out.extend_from_slice(&0i16.to_be_bytes()); // all results in text format
        self.end(at)?;
        self.out.push(b'E');
        let at = self.begin();
        cstr(&mut self.out, b"");
        self.out.extend_from_slice(&0i32.to_be_bytes());
        self.end(at)?;
        self.sync();
        self.flush().await?;
        let mut rows = Vec::new();
        self.until_ready(Some(&mut rows)).await?;
        Ok(rows)
    }

    /// Reads messages until ReadyForQuery; an ErrorResponse on the way is the result.
    async fn until_ready(&mut self, mut rows: Option<&mut Vec<Vec<u8>>>) -> anyhow::Result<()> {
        let mut error = None;
        loop {
            match self.message().await? {
                b'Z' => break,
                b'E' => error = Some(self.error_text()),
                b'D' => {
                    if let Some(rows) = rows.as_deref_mut() {
                        rows.push(self.first_column()?);
                    }
                }
                _ => {} // parse/bind/command complete, row description, notices
            }
        }
        match error {
            Some(text) => bail!("PostgreSQL: {text}"),
            None => Ok(()),
        }
    }

    /// Reads one message into `self.body`; returns its type.
    async fn message(&mut self) -> anyhow::Result<u8> {
        let kind = self.stream.read_u8().await.context("PostgreSQL closed")?;
        let len = self.stream.read_i32().await?;
        let len = usize::try_from(len)
            .ok()
            .and_then(|l| l.checked_sub(4))
            .context("bad message length")?;
        self.body.resize(len, 0);
        self.stream.read_exact(&mut self.body).await?;
        Ok(kind)
    }

    fn first_column(&self) -> anyhow::Result<Vec<u8>> {
        let columns = self.body.get(..2).context("short data row")?;
        if columns == [0, 0] {
            return Ok(Vec::new());
        }
        let len = self.int32(2)?;
        match usize::try_from(len) {
            Ok(len) => Ok(self
                .body
                .get(6..6 + len)
                .context("short data row")?
                .to_vec()),
            Err(_) => Ok(Vec::new()), // NULL
        }
    }

    fn int32(&self, at: usize) -> anyhow::Result<i32> {
        let bytes = self.body.get(at..at + 4).context("short message")?;
        Ok(i32::from_be_bytes(bytes.try_into().context("4 bytes")?))
    }

    /// The SQLSTATE and message of an ErrorResponse in `self.body`.
    fn error_text(&self) -> String {
        let (mut code, mut message) = (String::new(), String::new());
        for field in self.body.split(|b| *b == 0) {
            match field.split_first() {
                Some((b'C', rest)) => code = String::from_utf8_lossy(rest).into_owned(),
                Some((b'M', rest)) => message = String::from_utf8_lossy(rest).into_owned(),
                _ => {}
            }
        }
        format!("{message} (SQLSTATE {code})")
    }

    fn begin(&mut self) -> usize {
        let at = self.out.len();
        self.out.extend_from_slice(&[0; 4]);
        at
    }

    fn end(&mut self, at: usize) -> anyhow::Result<()> {
        let len = i32::try_from(self.out.len() - at).context("message too long")?;
        self.out[at..at + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    fn sync(&mut self) {
        self.out.push(b'S');
        self.out.extend_from_slice(&4i32.to_be_bytes());
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        self.stream.get_mut().write_all(&self.out).await?;
        self.out.clear();
        Ok(())
    }
}

fn cstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s);
    out.push(0);
}
