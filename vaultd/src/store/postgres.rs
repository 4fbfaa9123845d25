//! The PostgreSQL backend (`docs/ha.md`): the same contract as the embedded one, on a
//! replicated engine.
//!
//! Key-value writes go to `kv`; this node's audit entries and signed heads to `audit_entry` and
//! `audit_head`, keyed by (node id, sequence number), so that every node keeps a chain of its
//! own. A group is one transaction, acknowledged when PostgreSQL acknowledges the commit: with
//! `synchronous_commit = on` and a synchronous standby, once the standby has it on disk too. A
//! group that writes key-value data holds the write lock, a transaction advisory lock, from the
//! read that begins it to its commit, so such groups commit one at a time across every node.
//! The schema is created and migrated here, under an advisory lock, with its version in
//! `vaultd_schema`.
//!
//! Connections: one for the writer (transactions need it to themselves), one shared by readers
//! (tokio-postgres pipelines concurrent queries on it), one per backup (a repeatable-read
//! snapshot). Each is made again after it breaks; its connection task runs on the runtime the
//! backend was opened on. With `[postgres] ca_file` they are TLS, verified ([`tls`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Mutex;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Statement};

pub mod tls;

use super::backup::{self, Summary};
use super::{AuditLast, AuditPage, Backend, Entry, Group, StoreError, StoreFuture};
use crate::audit::chain::{self, ENTRIES, HEADS};

/// The schema version this build writes.
const SCHEMA_VERSION: i32 = 1;
/// Advisory lock held while the schema is created or migrated ("vaultd" in ASCII).
const MIGRATION_LOCK: i64 = 0x7661_756c_7464;
/// Transaction advisory lock of a group that writes key-value data ("vaultd-w"): such groups
/// commit one at a time across every node (`docs/ha.md`, "Writes from every node").
const WRITE_LOCK: i64 = 0x7661_756c_7464_2d77;
/// How long a group waits for the write lock, and how long a transaction may sit idle holding
/// it, before the server gives up on it.
const WRITE_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// First key of the two-key session lock a node holds on its node id ("vaul"); the second is a
/// hash of the id.
const NODE_LOCK: i32 = 0x7661_756c;
/// How long a new writer session waits for the node lock that its predecessor's session, just
/// closed, may still hold.
const NODE_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
/// Rows per query of a backup's scan.
const BACKUP_PAGE: i64 = 1000;

/// The tables of schema version 1.
const SCHEMA_V1: &str = "
CREATE TABLE kv (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE audit_entry (
    node text NOT NULL, seq bigint NOT NULL, entry bytea NOT NULL, PRIMARY KEY (node, seq));
CREATE TABLE audit_head (
    node text NOT NULL, seq bigint NOT NULL, head bytea NOT NULL, PRIMARY KEY (node, seq));
CREATE TABLE node_position (node text PRIMARY KEY, position bigint NOT NULL);
";

/// Where and as whom.
#[derive(Clone)]
pub struct Options {
    /// The connection (hosts, `target_session_attrs=read-write`, user, password, database).
    pub config: Config,
    /// This node's id: its audit chain and position are kept under it.
    pub node: String,
    /// TLS to the server, verified against `ca_file`; `None`: plain connections (`config`'s
    /// `sslmode` is then `disable`, see [`tls::settle_ssl_mode`]).
    pub tls: Option<tls::Tls>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `Config`'s own Debug redacts the password; the rest is enough to find the server.
        f.debug_struct("Options")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .field("user", &self.config.get_user())
            .field("node", &self.node)
            .field("tls", &self.tls)
            .finish()
    }
}

/// A connection with its prepared statements.
struct Conn {
    client: Client,
    /// A group's transaction is open on this connection (`begin_now` .. `apply_now`).
    open: bool,
    write_lock: Statement,
    get_many_kv: Statement,
    upsert: Statement,
    delete: Statement,
    insert_entries: Statement,
    insert_heads: Statement,
    set_position: Statement,
    get_kv: Statement,
    get_entry: Statement,
    get_head: Statement,
    scan_kv: Statement,
    scan_entries: Statement,
    scan_heads: Statement,
    last_kv: Statement,
    last_entry: Statement,
    last_head: Statement,
}

impl Conn {
    async fn prepare(client: Client) -> Result<Self, StoreError> {
        let p = |sql: &'static str| client.prepare(sql);
        Ok(Self {
            open: false,
            write_lock: p("SELECT pg_advisory_xact_lock($1)")
                .await
                .map_err(pg_error)?,
            get_kv: p("SELECT v FROM kv WHERE k = $1").await.map_err(pg_error)?,
            get_many_kv: p("SELECT k, v FROM kv WHERE k = ANY($1::bytea[])")
                .await
                .map_err(pg_error)?,
            upsert: p(
                "INSERT INTO kv (k, v) SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
                       ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
            )
            .await
            .map_err(pg_error)?,
            delete: p("DELETE FROM kv WHERE k = ANY($1::bytea[])")
                .await
                .map_err(pg_error)?,
            insert_entries: p("INSERT INTO audit_entry (node, seq, entry) \
                               SELECT $1, * FROM unnest($2::bigint[], $3::bytea[])")
            .await
            .map_err(pg_error)?,
            insert_heads: p("INSERT INTO audit_head (node, seq, head) \
                             SELECT $1, * FROM unnest($2::bigint[], $3::bytea[])")
            .await
            .map_err(pg_error)?,
            set_position: p(
                "INSERT INTO node_position (node, position) VALUES ($1, $2) \
                             ON CONFLICT (node) DO UPDATE SET position = EXCLUDED.position",
            )
            .await
            .map_err(pg_error)?,
            get_entry: p("SELECT entry FROM audit_entry WHERE node = $1 AND seq = $2")
                .await
                .map_err(pg_error)?,
            get_head: p("SELECT head FROM audit_head WHERE node = $1 AND seq = $2")
                .await
                .map_err(pg_error)?,
            scan_kv: p("SELECT k, v FROM kv WHERE k >= $1 AND k > $2 \
                        AND ($3::bytea IS NULL OR k < $3) ORDER BY k LIMIT $4")
            .await
            .map_err(pg_error)?,
            scan_entries: p(
                "SELECT seq, entry FROM audit_entry WHERE node = $1 AND seq > $2 \
                             ORDER BY seq LIMIT $3",
            )
            .await
            .map_err(pg_error)?,
            scan_heads: p(
                "SELECT seq, head FROM audit_head WHERE node = $1 AND seq > $2 \
                           AND seq <= $3 ORDER BY seq LIMIT $4",
            )
            .await
            .map_err(pg_error)?,
            last_kv: p(
                "SELECT k, v FROM kv WHERE k >= $1 AND ($2::bytea IS NULL OR k < $2) \
                        ORDER BY k DESC LIMIT 1",
            )
            .await
            .map_err(pg_error)?,
            last_entry: p("SELECT seq, entry FROM audit_entry WHERE node = $1 \
                           ORDER BY seq DESC LIMIT 1")
            .await
            .map_err(pg_error)?,
            last_head: p("SELECT seq, head FROM audit_head WHERE node = $1 \
                          ORDER BY seq DESC LIMIT 1")
            .await
            .map_err(pg_error)?,
            client,
        })
    }
}

/// Which part of the audit log a key or prefix names.
#[derive(Clone, Copy)]
enum Audit {
    Entries,
    Heads,
}

impl Audit {
    fn of(key: &[u8]) -> Option<Self> {
        if key.starts_with(ENTRIES) {
            Some(Self::Entries)
        } else if key.starts_with(HEADS) {
            Some(Self::Heads)
        } else {
            None
        }
    }

    fn key(self, seq: i64) -> Vec<u8> {
        let seq = seq.unsigned_abs();
        match self {
            Self::Entries => chain::entry_key(seq),
            Self::Heads => chain::head_key(seq),
        }
    }
}

/// The backend over one PostgreSQL database.
pub struct Postgres {
    options: Options,
    /// Where connection tasks run.
    runtime: tokio::runtime::Handle,
    reader: Mutex<Option<Arc<Conn>>>,
    writer: Mutex<Option<Conn>>,
    position: AtomicU64,
    #[cfg(test)]
    fail_next_apply: std::sync::atomic::AtomicBool,
}

impl Postgres {
    /// Connects, creates or migrates the schema, and reads this node's position.
    pub async fn open(options: Options) -> Result<Self, StoreError> {
        if options.node.is_empty() || options.node.len() > 64 {
            return Err(StoreError::Backend("node_id must be 1-64 bytes".into()));
        }
        let backend = Self {
            options,
            runtime: tokio::runtime::Handle::current(),
            reader: Mutex::new(None),
            writer: Mutex::new(None),
            position: AtomicU64::new(0),
            #[cfg(test)]
            fail_next_apply: std::sync::atomic::AtomicBool::new(false),
        };
        let mut client = backend.connect().await?;
        migrate(&mut client).await?;
        backend.read_position(&client).await?;
        *backend.writer.lock().await = Some(backend.writer_session(client).await?);
        Ok(backend)
    }

    /// The next apply writes its group, then rolls back and fails as a lost connection would.
    #[cfg(test)]
    pub(super) fn dangerous_fail_next_apply(&self) {
        self.fail_next_apply.store(true, Ordering::SeqCst);
    }

    /// A new connection; its task runs on the backend's runtime.
    async fn connect(&self) -> Result<Client, StoreError> {
        let config = self.options.config.clone();
        let tls = self.options.tls.as_ref().map(tls::Tls::connector);
        self.runtime
            .spawn(async move {
                let client = match tls {
                    None => {
                        let (client, connection) =
                            config.connect(NoTls).await.map_err(connect_error)?;
                        tokio::spawn(watch(connection));
                        client
                    }
                    Some(tls) => {
                        let (client, connection) =
                            config.connect(tls).await.map_err(connect_error)?;
                        tokio::spawn(watch(connection));
                        client
                    }
                };
                Ok(client)
            })
            .await
            .map_err(|e| StoreError::Backend(format!("PostgreSQL connect task: {e}")))?
    }

    /// The writer's connection, made again if it broke.
    async fn writer_conn<'s>(
        &self,
        slot: &'s mut Option<Conn>,
    ) -> Result<&'s mut Conn, StoreError> {
        if slot.as_ref().is_none_or(|c| c.client.is_closed()) {
            *slot = None;
            *slot = Some(self.writer_session(self.connect().await?).await?);
        }
        Ok(slot.as_mut().expect("connected above"))
    }

    /// `client` as the writer's session: its statements prepared, and this node's id locked to
    /// it, so that a second process started with the same `node_id` (which would write into
    /// this node's audit chain) is refused instead.
    async fn writer_session(&self, client: Client) -> Result<Conn, StoreError> {
        let conn = Conn::prepare(client).await?;
        // A node cut off in the middle of a group must not hold the write lock for long: the
        // server ends a transaction left idle, and a group gives up waiting for the lock.
        conn.client
            .batch_execute(&format!(
                "SET idle_in_transaction_session_timeout = {ms}; SET lock_timeout = {ms}",
                ms = WRITE_LOCK_TIMEOUT.as_millis()
            ))
            .await
            .map_err(pg_error)?;
        let node = node_key(&self.options.node);
        let deadline = tokio::time::Instant::now() + NODE_LOCK_WAIT;
        loop {
            let row = conn
                .client
                .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&NODE_LOCK, &node])
                .await
                .map_err(pg_error)?;
            if row.get::<_, bool>(0) {
                return Ok(conn);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::Backend(format!(
                    "another process uses node_id {:?} on this database: each node needs an id \
                     of its own",
                    self.options.node
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// The readers' connection, made again if it broke.
    async fn reader(&self) -> Result<Arc<Conn>, StoreError> {
        let mut slot = self.reader.lock().await;
        if let Some(conn) = slot.as_ref().filter(|c| !c.client.is_closed()) {
            return Ok(conn.clone());
        }
        let conn = Arc::new(Conn::prepare(self.connect().await?).await?);
        *slot = Some(conn.clone());
        Ok(conn)
    }

    async fn read_position(&self, client: &Client) -> Result<(), StoreError> {
        let row = client
            .query_opt(
                "SELECT position FROM node_position WHERE node = $1",
                &[&self.options.node],
            )
            .await
            .map_err(pg_error)?;
        let position: i64 = row.map_or(0, |r| r.get(0));
        self.position
            .store(position.unsigned_abs(), Ordering::Release);
        Ok(())
    }

    /// [`Backend::begin_group`]: one round trip that opens the group's transaction, takes the
    /// write lock for it if the group writes key-value data, and reads `keys` under it.
    async fn begin_now(
        &self,
        keys: &[Vec<u8>],
        writes: bool,
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() && !writes {
            // Only this node's own audit entries: apply opens the transaction.
            return Ok(Vec::new());
        }
        let mut slot = self.writer.lock().await;
        let conn = self.writer_conn(&mut slot).await?;
        let client = &conn.client;
        let lock = async {
            match writes {
                true => client
                    .execute(&conn.write_lock, &[&WRITE_LOCK])
                    .await
                    .map(drop),
                false => Ok(()),
            }
        };
        let read = async {
            match keys.is_empty() {
                true => Ok(Vec::new()),
                false => client.query(&conn.get_many_kv, &[&keys]).await,
            }
        };
        // Sent in the order polled; the server answers each in order.
        let (begun, locked, rows) = tokio::join!(client.batch_execute("BEGIN"), lock, read);
        conn.open = begun.is_ok();
        begun.map_err(pg_error)?;
        locked.map_err(pg_error)?;
        let mut found: std::collections::HashMap<Vec<u8>, Vec<u8>> = rows
            .map_err(pg_error)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        Ok(keys.iter().map(|k| found.remove(k)).collect())
    }

    /// [`Backend::abandon_group`].
    async fn abandon_now(&self) -> Result<(), StoreError> {
        let mut slot = self.writer.lock().await;
        if let Some(conn) = slot.as_mut().filter(|c| c.open) {
            conn.open = false;
            conn.client
                .batch_execute("ROLLBACK")
                .await
                .map_err(pg_error)?;
        }
        Ok(())
    }

    /// [`Backend::apply`]: the group's writes, its position and `COMMIT`, in one round trip.
    async fn apply_now(&self, group: &Group) -> Result<(), StoreError> {
        let mut writes = Writes::default();
        for (key, value) in &group.writes {
            writes.add(key, value.as_deref())?;
        }
        let position = seq_param(group.position)?;
        let mut slot = self.writer.lock().await;
        let conn = self.writer_conn(&mut slot).await?;
        let begin = !std::mem::take(&mut conn.open);
        #[cfg(test)]
        let end = match self.fail_next_apply.swap(false, Ordering::SeqCst) {
            true => "ROLLBACK",
            false => "COMMIT",
        };
        #[cfg(not(test))]
        let end = "COMMIT";
        let (client, node) = (&conn.client, &self.options.node);
        let (put_keys, put_values, deletes) =
            (&writes.put_keys, &writes.put_values, &writes.deletes);
        let begun = async {
            match begin {
                true => client.batch_execute("BEGIN").await,
                false => Ok(()),
            }
        };
        let upsert = async {
            match put_keys.is_empty() {
                true => Ok(0),
                false => client.execute(&conn.upsert, &[put_keys, put_values]).await,
            }
        };
        let delete = async {
            match deletes.is_empty() {
                true => Ok(0),
                false => client.execute(&conn.delete, &[deletes]).await,
            }
        };
        let entries = async {
            match writes.entry_seqs.is_empty() {
                true => Ok(0),
                false => {
                    let params: [&(dyn ToSql + Sync); 3] =
                        [node, &writes.entry_seqs, &writes.entries];
                    client.execute(&conn.insert_entries, &params).await
                }
            }
        };
        let heads = async {
            match writes.head_seqs.is_empty() {
                true => Ok(0),
                false => {
                    let params: [&(dyn ToSql + Sync); 3] = [node, &writes.head_seqs, &writes.heads];
                    client.execute(&conn.insert_heads, &params).await
                }
            }
        };
        let position_params: [&(dyn ToSql + Sync); 2] = [node, &position];
        let position = client.execute(&conn.set_position, &position_params);
        // Sent in the order polled. The server runs them in order, and after a failure answers
        // the rest with "transaction is aborted" (and COMMIT with a rollback): the first error
        // in statement order is the cause, and then nothing was committed.
        let (begun, upserted, deleted, entries, heads, position, ended) = tokio::join!(
            begun,
            upsert,
            delete,
            entries,
            heads,
            position,
            client.batch_execute(end)
        );
        begun.map_err(pg_error)?;
        for done in [upserted, deleted, entries, heads, position] {
            done.map_err(pg_error)?;
        }
        ended.map_err(pg_error)?;
        #[cfg(test)]
        if end == "ROLLBACK" {
            return Err(StoreError::Io(
                "injected: connection lost before COMMIT".into(),
            ));
        }
        self.position.store(group.position, Ordering::Release);
        Ok(())
    }

    async fn backup_now(
        &self,
        vault_id: &str,
        out: &mut dyn std::io::Write,
    ) -> Result<Summary, StoreError> {
        let mut client = self.connect().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(pg_error)?;
        let position: i64 = tx
            .query_opt(
                "SELECT position FROM node_position WHERE node = $1",
                &[&self.options.node],
            )
            .await
            .map_err(pg_error)?
            .map_or(0, |r| r.get(0));
        let position = position.unsigned_abs();
        let mut file = backup::Writer::new(out, vault_id, position)?;
        let mut after: Vec<u8> = Vec::new();
        loop {
            let rows = tx
                .query(
                    "SELECT k, v FROM kv WHERE k > $1 ORDER BY k LIMIT $2",
                    &[&after, &BACKUP_PAGE],
                )
                .await
                .map_err(pg_error)?;
            for row in &rows {
                file.entry(row.get::<_, &[u8]>(0), row.get::<_, &[u8]>(1))?;
            }
            match rows.last() {
                Some(row) => after = row.get(0),
                None => break,
            }
        }
        // The audit log, one group per entry with the head signed at it: a restored log reads
        // as the node wrote it.
        let mut seq = 0i64;
        loop {
            let rows = tx
                .query(
                    "SELECT e.seq, e.entry, h.head FROM audit_entry e \
                     LEFT JOIN audit_head h ON h.node = e.node AND h.seq = e.seq \
                     WHERE e.node = $1 AND e.seq > $2 ORDER BY e.seq LIMIT $3",
                    &[&self.options.node, &seq, &BACKUP_PAGE],
                )
                .await
                .map_err(pg_error)?;
            for row in &rows {
                seq = row.get(0);
                let mut writes = vec![(Audit::Entries.key(seq), Some(row.get(1)))];
                if let Some(head) = row.get::<_, Option<Vec<u8>>>(2) {
                    writes.push((Audit::Heads.key(seq), Some(head)));
                }
                file.group(&Group {
                    position: seq.unsigned_abs(),
                    writes,
                })?;
            }
            if rows.is_empty() {
                break;
            }
        }
        tx.commit().await.map_err(pg_error)?;
        file.finish(position)
    }
}

/// A group's writes, split by table, as statement parameters.
#[derive(Default)]
struct Writes<'a> {
    put_keys: Vec<&'a [u8]>,
    put_values: Vec<&'a [u8]>,
    deletes: Vec<&'a [u8]>,
    entry_seqs: Vec<i64>,
    entries: Vec<&'a [u8]>,
    head_seqs: Vec<i64>,
    heads: Vec<&'a [u8]>,
}

impl<'a> Writes<'a> {
    fn add(&mut self, key: &'a [u8], value: Option<&'a [u8]>) -> Result<(), StoreError> {
        let Some(kind) = Audit::of(key) else {
            match value {
                Some(value) => {
                    self.put_keys.push(key);
                    self.put_values.push(value);
                }
                None => self.deletes.push(key),
            }
            return Ok(());
        };
        let (Some(seq), Some(value)) = (chain::seq_of(key), value) else {
            return Err(StoreError::Backend(
                "the audit log is append-only: refused a removal or a bad key".into(),
            ));
        };
        let seq = seq_param(seq)?;
        match kind {
            Audit::Entries => {
                self.entry_seqs.push(seq);
                self.entries.push(value);
            }
            Audit::Heads => {
                self.head_seqs.push(seq);
                self.heads.push(value);
            }
        }
        Ok(())
    }
}

impl Backend for Postgres {
    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let conn = self.reader().await?;
            let row = match Audit::of(key) {
                None => conn.client.query_opt(&conn.get_kv, &[&key]).await,
                Some(kind) => {
                    let Some(seq) = chain::seq_of(key).and_then(|s| i64::try_from(s).ok()) else {
                        return Ok(None);
                    };
                    let statement = match kind {
                        Audit::Entries => &conn.get_entry,
                        Audit::Heads => &conn.get_head,
                    };
                    let node = &self.options.node;
                    conn.client.query_opt(statement, &[node, &seq]).await
                }
            };
            Ok(row.map_err(pg_error)?.map(|r| r.get(0)))
        })
    }

    fn scan<'a>(
        &'a self,
        prefix: &'a [u8],
        after: Option<&'a [u8]>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<Entry>> {
        Box::pin(async move {
            let conn = self.reader().await?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let Some(kind) = Audit::of(prefix) else {
                let end = prefix_end(prefix);
                let rows = conn
                    .client
                    .query(
                        &conn.scan_kv,
                        &[&prefix, &after.unwrap_or_default(), &end, &limit],
                    )
                    .await
                    .map_err(pg_error)?;
                return Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect());
            };
            if prefix != ENTRIES && prefix != HEADS {
                return Err(StoreError::Backend(
                    "the audit log is read by sequence number, not by a longer prefix".into(),
                ));
            }
            let after = match after {
                None => 0,
                Some(key) => chain::seq_of(key)
                    .and_then(|s| i64::try_from(s).ok())
                    .ok_or_else(|| StoreError::Backend("audit scan after a bad key".into()))?,
            };
            let node = &self.options.node;
            let rows = match kind {
                Audit::Entries => conn
                    .client
                    .query(&conn.scan_entries, &[node, &after, &limit])
                    .await
                    .map_err(pg_error)?,
                Audit::Heads => conn
                    .client
                    .query(&conn.scan_heads, &[node, &after, &i64::MAX, &limit])
                    .await
                    .map_err(pg_error)?,
            };
            Ok(rows
                .iter()
                .map(|r| (kind.key(r.get(0)), r.get(1)))
                .collect())
        })
    }

    fn last<'a>(&'a self, prefix: &'a [u8]) -> StoreFuture<'a, Option<Entry>> {
        Box::pin(async move {
            let conn = self.reader().await?;
            let node = &self.options.node;
            let row = match Audit::of(prefix) {
                None => {
                    let end = prefix_end(prefix);
                    let row = conn.client.query_opt(&conn.last_kv, &[&prefix, &end]).await;
                    return Ok(row.map_err(pg_error)?.map(|r| (r.get(0), r.get(1))));
                }
                Some(_) if prefix != ENTRIES && prefix != HEADS => {
                    return Err(StoreError::Backend(
                        "the audit log is read by sequence number, not by a longer prefix".into(),
                    ));
                }
                Some(Audit::Entries) => conn.client.query_opt(&conn.last_entry, &[node]).await,
                Some(Audit::Heads) => conn.client.query_opt(&conn.last_head, &[node]).await,
            };
            let kind = Audit::of(prefix).expect("an audit prefix");
            Ok(row
                .map_err(pg_error)?
                .map(|r| (kind.key(r.get(0)), r.get(1))))
        })
    }

    fn audit_page<'a>(
        &'a self,
        chain: Option<&'a str>,
        after: u64,
        limit: usize,
    ) -> StoreFuture<'a, AuditPage> {
        Box::pin(async move {
            let conn = self.reader().await?;
            let node = &chain.unwrap_or(&self.options.node);
            let after = seq_param(after)?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = conn
                .client
                .query(&conn.scan_entries, &[node, &after, &limit])
                .await
                .map_err(pg_error)?;
            let entries: Vec<(u64, Vec<u8>)> = rows
                .iter()
                .map(|r| (r.get::<_, i64>(0).unsigned_abs(), r.get(1)))
                .collect();
            let Some(&(last, _)) = entries.last() else {
                return Ok(AuditPage::default());
            };
            let rows = conn
                .client
                .query(&conn.scan_heads, &[node, &after, &seq_param(last)?, &limit])
                .await
                .map_err(pg_error)?;
            let heads = rows
                .iter()
                .map(|r| (r.get::<_, i64>(0).unsigned_abs(), r.get(1)))
                .collect();
            Ok(AuditPage { entries, heads })
        })
    }

    fn begin_group<'a>(
        &'a self,
        keys: &'a [Vec<u8>],
        writes: bool,
    ) -> StoreFuture<'a, Vec<Option<Vec<u8>>>> {
        Box::pin(self.begin_now(keys, writes))
    }

    fn abandon_group(&self) -> StoreFuture<'_, ()> {
        Box::pin(self.abandon_now())
    }

    fn audit_last<'a>(&'a self, chain: Option<&'a str>) -> StoreFuture<'a, AuditLast> {
        Box::pin(async move {
            let conn = self.reader().await?;
            let node = chain.unwrap_or(&self.options.node);
            let params: [&(dyn ToSql + Sync); 1] = [&node];
            let (entry, head) = tokio::join!(
                conn.client.query_opt(&conn.last_entry, &params),
                conn.client.query_opt(&conn.last_head, &params)
            );
            let numbered = |row: Option<tokio_postgres::Row>| {
                row.map(|r| (r.get::<_, i64>(0).unsigned_abs(), r.get(1)))
            };
            Ok(AuditLast {
                entry: numbered(entry.map_err(pg_error)?),
                head: numbered(head.map_err(pg_error)?),
            })
        })
    }

    fn chains(&self) -> StoreFuture<'_, Vec<Option<String>>> {
        Box::pin(async move {
            // Every node that committed a group has its position row.
            let conn = self.reader().await?;
            let rows = conn
                .client
                .query("SELECT node FROM node_position ORDER BY node", &[])
                .await
                .map_err(pg_error)?;
            Ok(rows.iter().map(|r| Some(r.get(0))).collect())
        })
    }

    fn node(&self) -> Option<&str> {
        Some(&self.options.node)
    }

    fn archive_audit<'a>(&'a self, chain: Option<&'a str>, through: u64) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let node = chain.unwrap_or(&self.options.node);
            let through = seq_param(through)?;
            // A session of its own: the writer's may hold a group's transaction open.
            let client = self.connect().await?;
            let deleted = client
                .query_one(
                    "WITH e AS (DELETE FROM audit_entry WHERE node = $1 AND seq <= $2 RETURNING 1), \
                     h AS (DELETE FROM audit_head WHERE node = $1 AND seq <= $2 RETURNING 1) \
                     SELECT (SELECT count(*) FROM e), (SELECT count(*) FROM h)",
                    &[&node, &through],
                )
                .await
                .map_err(pg_error)?;
            let (entries, heads): (i64, i64) = (deleted.get(0), deleted.get(1));
            if entries > 0 {
                tracing::info!(node, entries, heads, "archived audit entries removed");
            }
            Ok(())
        })
    }

    fn apply<'a>(&'a self, group: &'a Group) -> StoreFuture<'a, ()> {
        Box::pin(self.apply_now(group))
    }

    fn position(&self) -> u64 {
        self.position.load(Ordering::Acquire)
    }

    fn recover(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            // The failed commit may have reached the server: the position says.
            let mut slot = self.writer.lock().await;
            *slot = None;
            let client = self.connect().await?;
            self.read_position(&client).await?;
            *slot = Some(self.writer_session(client).await?);
            Ok(())
        })
    }

    fn backup(
        &self,
        vault_id: &str,
        out: &mut dyn std::io::Write,
    ) -> Result<backup::Summary, StoreError> {
        self.runtime.block_on(self.backup_now(vault_id, out))
    }
}

/// A failed connect as the store's error, with the driver's causes: its own message is only
/// "error connecting to server" or "error performing TLS handshake", the cause says what
/// (refused, a certificate from an unknown issuer, another host name).
fn connect_error(e: tokio_postgres::Error) -> StoreError {
    if e.as_db_error().is_some() {
        return pg_error(e);
    }
    let mut text = format!("PostgreSQL: {e}");
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    StoreError::Io(text)
}

/// Drives a connection until it ends, and logs why.
async fn watch<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(e) = connection.await {
        tracing::warn!(error = %e, "PostgreSQL connection ended");
    }
}

/// Creates the schema, or checks that it is one this build knows.
async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_error)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS vaultd_schema (version integer NOT NULL)")
        .await
        .map_err(pg_error)?;
    let version: Option<i32> = tx
        .query_opt("SELECT max(version) FROM vaultd_schema", &[])
        .await
        .map_err(pg_error)?
        .and_then(|r| r.get(0));
    match version {
        None => {
            tx.batch_execute(SCHEMA_V1).await.map_err(pg_error)?;
            tx.execute(
                "INSERT INTO vaultd_schema (version) VALUES ($1)",
                &[&SCHEMA_VERSION],
            )
            .await
            .map_err(pg_error)?;
            tracing::info!(version = SCHEMA_VERSION, "PostgreSQL schema created");
        }
        Some(SCHEMA_VERSION) => {}
        Some(other) => {
            return Err(StoreError::Corrupt(format!(
                "the PostgreSQL schema is version {other}; this vaultd knows version \
                 {SCHEMA_VERSION} (a newer vaultd created it?)"
            )));
        }
    }
    tx.commit().await.map_err(pg_error)
}

/// The smallest key after every key that starts with `prefix` (`None`: no such bound).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The node id's 32-bit FNV-1a hash, the second key of its lock (two ids that collide would
/// refuse each other at start, one time in 2^32).
fn node_key(node: &str) -> i32 {
    let hash = node.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    i32::from_ne_bytes(hash.to_ne_bytes())
}

fn seq_param(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| StoreError::Backend("sequence number out of range".into()))
}

/// A driver error as the store's: one from the server is the backend's (its SQLSTATE in the
/// message), anything else (no connection, a closed one, I/O) the disk's or network's.
fn pg_error(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => StoreError::Backend(format!(
            "PostgreSQL: {} ({})",
            db.message(),
            db.code().code()
        )),
        None => StoreError::Io(format!("PostgreSQL: {e}")),
    }
}

/// A new, empty database on the test cluster (`VAULTD_TEST_PG`, started by `scripts/test`
/// through `scripts/pg-cluster`), for node `node`.
#[cfg(test)]
pub(super) async fn test_database(node: &str) -> Options {
    let url = std::env::var("VAULTD_TEST_PG").expect(
        "VAULTD_TEST_PG names the test PostgreSQL cluster: run scripts/test, or \
         eval \"$(scripts/pg-cluster start DIR)\"",
    );
    let mut name = [0u8; 8];
    getrandom::fill(&mut name).expect("random");
    let name = format!("unit_{}", hex::encode(name));
    let (admin, connection) = tokio_postgres::connect(&url, NoTls)
        .await
        .expect("connect to the test cluster");
    tokio::spawn(connection);
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    let mut config: Config = url.parse().expect("VAULTD_TEST_PG");
    config.dbname(&name);
    Options {
        config,
        node: node.into(),
        tls: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_process_with_the_same_node_id_is_refused() {
        let options = test_database("node-a").await;
        let first = Postgres::open(options.clone()).await.expect("open");
        let err = Postgres::open(options.clone())
            .await
            .err()
            .expect("the same node id twice");
        assert!(err.to_string().contains("node_id"), "{err}");
        drop(first);
        Postgres::open(options)
            .await
            .expect("free once the first is gone");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn groups_that_write_commit_one_at_a_time_and_read_what_the_last_one_left() {
        let a_options = test_database("node-a").await;
        let mut b_options = a_options.clone();
        b_options.node = "node-b".into();
        let a = Arc::new(Postgres::open(a_options).await.expect("open a"));
        let b = Arc::new(Postgres::open(b_options).await.expect("open b"));
        let group = |value: &[u8], text: &[u8]| Group {
            position: 1,
            writes: vec![
                (b"k/x".to_vec(), Some(value.to_vec())),
                (chain::entry_key(1), Some(text.to_vec())),
            ],
        };
        let keys = vec![b"k/x".to_vec()];
        assert_eq!(
            a.begin_group(&keys, true).await.expect("a begins"),
            vec![None]
        );
        // b's group waits for a's to end, then reads what a wrote.
        let waiting = {
            let (b, keys) = (b.clone(), keys.clone());
            tokio::spawn(async move { b.begin_group(&keys, true).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(
            !waiting.is_finished(),
            "b began while a held the write lock"
        );
        a.apply(&group(b"a", b"a's first"))
            .await
            .expect("a commits");
        let read = waiting.await.expect("task").expect("b begins");
        assert_eq!(read, vec![Some(b"a".to_vec())]);
        b.apply(&group(b"b", b"b's first"))
            .await
            .expect("b commits");
        // Each node's entries went to a chain of its own, which every node reads.
        let page = b.audit_page(None, 0, 10).await.expect("page");
        assert_eq!(page.entries, vec![(1, b"b's first".to_vec())]);
        let page = a.audit_page(None, 0, 10).await.expect("page");
        assert_eq!(page.entries, vec![(1, b"a's first".to_vec())]);
        let page = a.audit_page(Some("node-b"), 0, 10).await.expect("page");
        assert_eq!(page.entries, vec![(1, b"b's first".to_vec())]);
        let chains = b.chains().await.expect("chains");
        assert_eq!(chains, [Some("node-a".into()), Some("node-b".into())]);
        let last = a.audit_last(Some("node-b")).await.expect("last");
        assert_eq!(last.entry, Some((1, b"b's first".to_vec())));
        // An abandoned group writes nothing and lets the next one in at once.
        assert_eq!(
            a.begin_group(&keys, true).await.expect("a begins"),
            vec![Some(b"b".to_vec())]
        );
        a.abandon_group().await.expect("a abandons");
        let begun = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            b.begin_group(&keys, true),
        );
        assert!(begun.await.expect("not blocked").is_ok());
        b.abandon_group().await.expect("b abandons");
    }

    #[test]
    fn prefix_end_is_the_next_prefix() {
        assert_eq!(prefix_end(b"t/a"), Some(b"t/b".to_vec()));
        assert_eq!(prefix_end(b"t/\xff"), Some(b"t0".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}
