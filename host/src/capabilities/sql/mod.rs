//! The `sql` capability: connections the host opens for a plugin, checked against the workflow.

pub mod guard;
pub mod login;
pub mod mysql;
pub mod postgres;
pub mod sqlite;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use guard::{DataGrants, Refusal};
use sqlite::SqliteDb;

use crate::runtime::budget::{MemoryBudget, Reservation};

/// A SQL value, independent of WIT versions.
#[derive(Debug, Clone, PartialEq)]
pub enum DbValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
}

impl DbValue {
    /// Approximate bytes this value takes across the boundary.
    pub fn size(&self) -> usize {
        match self {
            DbValue::Text(s) => s.len() + 8,
            DbValue::Bytes(b) => b.len() + 8,
            _ => 9,
        }
    }
}

/// The columns (name, declared type) and rows of a finished query.
#[derive(Debug, Clone, Default)]
pub struct QueryResult {
    pub columns: Vec<(String, String)>,
    pub rows: Vec<Vec<DbValue>>,
}

/// A SQL capability error; maps onto the WIT error kinds. Messages never hold secrets.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SqlError {
    #[error("{0}")]
    InvalidConfig(String),
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Source(String),
    #[error("{0}")]
    Limit(String),
    /// The statement guard refused the statement before it reached the server.
    #[error("{0}")]
    Refused(Refusal),
}

/// The `[source.sql]` table: what a workflow lets its plugin read through SQL beyond the
/// catalog.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlAccessConfig {
    /// Data relations the plugin may read, as `database.schema.relation` patterns (`*` within
    /// a segment). Empty (the default): only the engine's catalog. Takes effect only for a
    /// plugin that declares `sql_data_access` in its capabilities, which `plugin install`
    /// shows for approval.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_relations: Vec<String>,
}

/// Which engines and files a run may reach through `sql.open`.
#[derive(Debug, Clone)]
pub struct SqlPolicy {
    /// Directory relative SQLite paths are resolved against (the config file's).
    pub base_dir: PathBuf,
    /// Canonical directories SQLite files may be opened in.
    pub sqlite_dirs: Vec<PathBuf>,
    /// Per-statement timeout.
    pub query_timeout: Duration,
    /// Maximum bytes of one query result held by the host.
    pub result_bytes: usize,
    /// Maximum bytes of one row batch handed to the plugin.
    pub call_bytes: usize,
    /// Data relations the workflow grants; none by default.
    pub grants: DataGrants,
    /// Where refusals of the statement guard are audited.
    pub audit: Option<crate::state::RunAudit>,
    /// What the statement guard cost this run (reported by `airlock run --json`).
    pub guard_stats: Arc<GuardStats>,
    /// The run's host-memory budget: streamed rows, buffered results and open SQLite files
    /// are charged to it.
    pub budget: Arc<MemoryBudget>,
}

/// Statements the network guards checked in a run and the time they took.
#[derive(Debug, Default)]
pub struct GuardStats {
    statements: std::sync::atomic::AtomicU64,
    nanos: std::sync::atomic::AtomicU64,
}

impl GuardStats {
    fn add(&self, elapsed: Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        self.statements.fetch_add(1, Relaxed);
        self.nanos
            .fetch_add(elapsed.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
    }

    /// (statements checked, total time in microseconds).
    pub fn totals(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.statements.load(Relaxed),
            self.nanos.load(Relaxed) / 1_000,
        )
    }
}

/// A connection resource as the plugin holds it.
pub enum SqlConnection {
    Sqlite(SqliteDb),
    /// A MySQL or MariaDB session (rows are streamed).
    Mysql(mysql::MysqlDb),
    /// A PostgreSQL session (rows are streamed), connected to `database`.
    Postgres {
        db: postgres::PgDb,
        database: String,
    },
}

/// Host memory charged to the run's budget for one open SQLite file: its page cache (set to
/// [`sqlite::PAGE_CACHE_KIB`]) and SQLite's own bookkeeping.
pub const SQLITE_CONNECTION_BYTES: usize = 4 << 20;
/// Host memory charged for one open database session (socket and protocol buffers).
pub const SESSION_BYTES: usize = 1 << 20;

impl SqlConnection {
    /// The engine's name, as `limits.sql_connections` counts connections.
    pub fn engine(&self) -> &'static str {
        match self {
            SqlConnection::Sqlite(_) => "sqlite",
            SqlConnection::Mysql(_) => "mysql",
            SqlConnection::Postgres { .. } => "postgres",
        }
    }

    /// Where the connection goes, as the audit log names it.
    pub fn destination(&self) -> String {
        match self {
            SqlConnection::Sqlite(db) => format!("sqlite:{}", db.name()),
            SqlConnection::Mysql(db) => db.target().to_string(),
            SqlConnection::Postgres { db, database } => format!("{}/{database}", db.target()),
        }
    }

    /// What the login may do beyond reading the catalog (empty for SQLite files).
    pub fn privileges(&self) -> &[String] {
        match self {
            SqlConnection::Sqlite(_) => &[],
            SqlConnection::Mysql(db) => db.privileges(),
            SqlConnection::Postgres { db, .. } => db.privileges(),
        }
    }
}

/// How a network driver protects the connection (libpq's `sslmode` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// No TLS. The password would cross the network unprotected: refused unless
    /// `allow_cleartext_password` is set.
    Disable,
    /// TLS without certificate verification (protects against passive eavesdropping only).
    Require,
    /// TLS; the certificate must chain to a trusted CA; the host name is not checked.
    VerifyCa,
    /// TLS; the certificate must chain to a trusted CA and match the host name.
    #[default]
    VerifyFull,
}

/// TLS settings of a network SQL endpoint (the `tls` table of `[source]`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The mode; `verify-full` by default.
    #[serde(default)]
    pub mode: TlsMode,
    /// A PEM file of CA certificates trusted in addition to the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Allow logging in without TLS (`mode = "disable"`), sending the password unprotected.
    #[serde(default)]
    pub allow_cleartext_password: bool,
}

/// What a network driver needs to log in. Built by the host from the workflow and the
/// resolved credential; the password is zeroized when this is dropped.
pub struct ConnectParams {
    /// Host name or IP address: what TLS verifies and errors name.
    pub host: String,
    /// The address the network policy checked for `host`; the driver connects to it and never
    /// resolves `host` again, so a changed DNS answer cannot redirect the login.
    pub addr: Option<std::net::IpAddr>,
    /// TCP port.
    pub port: u16,
    /// Database to connect to, when the engine has several.
    pub database: Option<String>,
    /// User name.
    pub user: String,
    /// The password.
    pub password: crate::secrets::SecretString,
    /// TLS settings, with `ca_file` already resolved to an absolute path.
    pub tls: TlsSettings,
    /// Timeout of connecting and logging in.
    pub connect_timeout: Duration,
}

/// A query's rows, handed out in batches: either buffered (SQLite) or streamed from a driver
/// task through a bounded channel (network drivers), so memory stays flat however many rows a
/// catalog query returns. Dropping it cancels the stream.
pub struct SqlRows {
    /// Column names and declared types.
    pub columns: Vec<(String, String)>,
    /// Where the rows come from (`host:port/database`, or the SQLite file's name), as the
    /// audit log names it.
    pub destination: String,
    source: RowSource,
}

enum RowSource {
    /// All rows, and their bytes reserved against the run's budget until the rows are dropped.
    Buffered(VecDeque<Vec<DbValue>>, Reservation),
    Streamed {
        rx: RowReceiver,
        held: Option<(Vec<DbValue>, RowCharge)>,
        done: bool,
    },
}

/// Rows a streaming driver may buffer ahead of the plugin.
pub const STREAM_BUFFER_ROWS: usize = 4096;

/// Bytes of rows one stream may hold ahead of the plugin; its driver waits beyond that.
pub const STREAM_AHEAD_BYTES: usize = 8 << 20;

type Charged = Result<(Vec<DbValue>, RowCharge), SqlError>;

/// What a streamed row holds until the plugin takes it: its share of the stream's look-ahead
/// and its bytes of the run's budget.
pub struct RowCharge {
    _ahead: tokio::sync::OwnedSemaphorePermit,
    _budget: Reservation,
}

/// The driver's end of a streamed result: bounded in rows ([`STREAM_BUFFER_ROWS`]), in bytes
/// per stream ([`STREAM_AHEAD_BYTES`], the driver waits) and by the run's host-memory budget
/// (the stream ends with a `limit` error and the run fails).
pub struct RowSender {
    tx: tokio::sync::mpsc::Sender<Charged>,
    ahead: Arc<tokio::sync::Semaphore>,
    budget: Arc<MemoryBudget>,
    waiting: Arc<std::sync::atomic::AtomicBool>,
}

/// The plugin's end of a streamed result.
pub struct RowReceiver(tokio::sync::mpsc::Receiver<Charged>);

/// Whether a stream is stuck on a reader that does not read (seen from the connection).
pub struct StreamProbe {
    tx: tokio::sync::mpsc::WeakSender<Charged>,
    waiting: Arc<std::sync::atomic::AtomicBool>,
}

/// A channel for one statement's rows, charged to `budget`.
pub fn row_channel(budget: &Arc<MemoryBudget>) -> (RowSender, RowReceiver) {
    let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER_ROWS);
    (
        RowSender {
            tx,
            ahead: Arc::new(tokio::sync::Semaphore::new(STREAM_AHEAD_BYTES)),
            budget: budget.clone(),
            waiting: Default::default(),
        },
        RowReceiver(rx),
    )
}

/// Bytes a row takes in host memory (approximately).
fn row_bytes(row: &[DbValue]) -> usize {
    row.iter().map(DbValue::size).sum::<usize>() + 24
}

impl RowSender {
    /// Hands a row (or the statement's error) to the reader, waiting while the stream holds
    /// [`STREAM_AHEAD_BYTES`] unread. `Err(())` when the driver should stop: the reader is
    /// gone, or the row did not fit the run's budget (the reader then gets a `limit` error).
    pub async fn send(&self, item: Result<Vec<DbValue>, SqlError>) -> Result<(), ()> {
        use std::sync::atomic::Ordering::Relaxed;
        let row = match item {
            Ok(row) => row,
            Err(e) => return self.tx.send(Err(e)).await.map_err(|_| ()),
        };
        let size = row_bytes(&row);
        let reservation = match self.budget.try_reserve(size, "a streamed row") {
            Ok(r) => r,
            Err(message) => {
                let _ = self.tx.send(Err(SqlError::Limit(message))).await;
                return Err(());
            }
        };
        let permits = size.min(STREAM_AHEAD_BYTES) as u32;
        self.waiting.store(true, Relaxed);
        let permit = tokio::select! {
            p = self.ahead.clone().acquire_many_owned(permits) => p,
            _ = self.tx.closed() => {
                self.waiting.store(false, Relaxed);
                return Err(());
            }
        };
        self.waiting.store(false, Relaxed);
        let permit = permit.map_err(|_| ())?;
        let charge = RowCharge {
            _ahead: permit,
            _budget: reservation,
        };
        self.tx.send(Ok((row, charge))).await.map_err(|_| ())
    }

    /// Resolves when the reader is gone.
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// A probe the connection keeps to tell a stalled stream from a draining one.
    pub fn probe(&self) -> StreamProbe {
        StreamProbe {
            tx: self.tx.downgrade(),
            waiting: self.waiting.clone(),
        }
    }
}

impl StreamProbe {
    /// The stream's reader is alive and its buffer full: it drains only when the plugin
    /// reads it.
    pub fn stalled(&self) -> bool {
        self.tx.upgrade().is_some_and(|tx| {
            !tx.is_closed()
                && (tx.capacity() == 0 || self.waiting.load(std::sync::atomic::Ordering::Relaxed))
        })
    }
}

/// Maximum statement length a plugin may send.
const MAX_STATEMENT_BYTES: usize = 1 << 20;

impl SqlPolicy {
    /// Resolves and checks a SQLite path: it must exist and lie inside an allowed directory.
    pub fn check_sqlite_path(&self, address: &str) -> Result<PathBuf, SqlError> {
        if address.is_empty() || address.contains('\0') {
            return Err(SqlError::InvalidConfig(
                "empty or malformed SQLite path".into(),
            ));
        }
        if address.starts_with("file:") || address == ":memory:" {
            return Err(SqlError::Denied(format!(
                "SQLite address `{address}` is not a plain file path"
            )));
        }
        let requested = Path::new(address);
        let joined = if requested.is_absolute() {
            requested.to_path_buf()
        } else {
            self.base_dir.join(requested)
        };
        // Check the lexical path first, so a plugin cannot probe which files exist outside
        // the allowed directories; then the canonical path, so a symlink cannot escape.
        let lexical = normalize_lexically(&joined);
        if !self.sqlite_dirs.iter().any(|d| lexical.starts_with(d)) {
            return Err(self.outside(&lexical));
        }
        let canonical = std::fs::canonicalize(&joined).map_err(|e| {
            SqlError::Unavailable(format!(
                "SQLite database {} cannot be opened: {e}; check source.database",
                lexical.display()
            ))
        })?;
        if !self.sqlite_dirs.iter().any(|d| canonical.starts_with(d)) {
            return Err(self.outside(&canonical));
        }
        if !canonical.is_file() {
            return Err(SqlError::Unavailable(format!(
                "SQLite database {} is not a file",
                canonical.display()
            )));
        }
        Ok(canonical)
    }

    /// Checks a SQLite path ([`SqlPolicy::check_sqlite_path`]) and opens the file once, by
    /// descriptor: `openat2` below the allowed directory it lies in, with no symbolic link
    /// anywhere on the way (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), so a link swapped in
    /// after the check cannot lead elsewhere. A file with more than one hard link is refused
    /// (its other name may lie outside the allowed directories). The driver opens the same
    /// path and checks that what it opened is this descriptor's file
    /// ([`sqlite::SqliteDb::open`]).
    pub fn open_sqlite_file(&self, address: &str) -> Result<(PathBuf, std::fs::File), SqlError> {
        use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
        let canonical = self.check_sqlite_path(address)?;
        let Some(root) = self
            .sqlite_dirs
            .iter()
            .filter(|d| canonical.starts_with(d))
            .max_by_key(|d| d.as_os_str().len())
        else {
            return Err(self.outside(&canonical));
        };
        let rel = canonical.strip_prefix(root).unwrap_or(Path::new(""));
        let changed = |e: std::io::Error| {
            SqlError::Denied(format!(
                "SQLite database {} changed while it was opened ({e}): a symbolic link or a \
                 file outside the allowed directories took its place",
                canonical.display()
            ))
        };
        let dir = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|e| changed(e.into()))?;
        let file = rustix::fs::openat2(
            &dir,
            rel,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NOCTTY,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|e| changed(e.into()))?;
        let stat = rustix::fs::fstat(&file).map_err(|e| changed(e.into()))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(SqlError::Unavailable(format!(
                "SQLite database {} is not a file",
                canonical.display()
            )));
        }
        if stat.st_nlink > 1 {
            return Err(SqlError::Denied(format!(
                "SQLite database {} has {} hard links; its other names may lie outside the \
                 allowed directories, so it is not opened: copy the file instead",
                canonical.display(),
                stat.st_nlink
            )));
        }
        Ok((canonical, std::fs::File::from(file)))
    }

    fn outside(&self, path: &Path) -> SqlError {
        let dirs: Vec<String> = self
            .sqlite_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        SqlError::Denied(format!(
            "SQLite database {} is outside the allowed directories [{}]; add its directory to source.allowed_dirs",
            path.display(),
            dirs.join(", ")
        ))
    }

    /// Checks a statement before it is sent to a driver.
    pub fn check_statement(&self, statement: &str) -> Result<(), SqlError> {
        if statement.len() > MAX_STATEMENT_BYTES {
            return Err(SqlError::Limit(format!(
                "statement of {} bytes exceeds {MAX_STATEMENT_BYTES}",
                statement.len()
            )));
        }
        Ok(())
    }

    /// Records a refusal of the statement guard in the audit log: the engine, the kind and
    /// the object refused, never the statement's literal values.
    pub fn audit_refusal(&self, engine: &str, refusal: &Refusal) {
        if let Some(audit) = &self.audit {
            audit.record(
                "sql-refused",
                refusal.kind.as_str(),
                None,
                Some(engine),
                Some(&refusal.object),
            );
        }
        tracing::warn!(
            engine,
            kind = refusal.kind.as_str(),
            object = %refusal.object,
            "the SQL guard refused a plugin statement"
        );
    }
}

/// Resolves `.` and `..` without touching the file system.
fn normalize_lexically(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

impl SqlConnection {
    /// Runs a statement and returns all its rows (bounded by the policy).
    pub async fn query(
        &self,
        policy: &SqlPolicy,
        statement: String,
        params: Vec<DbValue>,
    ) -> Result<SqlRows, SqlError> {
        policy.check_statement(&statement)?;
        // The guard runs before anything reaches a server; the network drivers get the
        // statement re-rendered from the checked parse tree, never the plugin's text.
        let refused = |engine: &str, refusal: Refusal| {
            policy.audit_refusal(engine, &refusal);
            SqlError::Refused(refusal)
        };
        let result = match self {
            SqlConnection::Mysql(db) => {
                let started = std::time::Instant::now();
                let checked = guard::mysql::check(&statement, &policy.grants);
                policy.guard_stats.add(started.elapsed());
                let checked = checked.map_err(|r| refused("mysql", r))?;
                let mut rows = db
                    .query(checked, params, policy.query_timeout, &policy.budget)
                    .await?;
                rows.destination = self.destination();
                return Ok(rows);
            }
            SqlConnection::Postgres { db, database } => {
                let started = std::time::Instant::now();
                let checked = guard::postgres::check(&statement, database, &policy.grants);
                policy.guard_stats.add(started.elapsed());
                let checked = checked.map_err(|r| refused("postgres", r))?;
                let mut rows = db
                    .query(checked, params, policy.query_timeout, &policy.budget)
                    .await?;
                rows.destination = self.destination();
                return Ok(rows);
            }
            SqlConnection::Sqlite(db) => {
                match db
                    .query(statement, params, policy.query_timeout, policy.result_bytes)
                    .await
                {
                    Err(SqlError::Refused(r)) => return Err(refused("sqlite", r)),
                    other => other?,
                }
            }
        };
        let bytes: usize = result.rows.iter().map(|r| row_bytes(r)).sum();
        let reservation = policy
            .budget
            .try_reserve(bytes, "a buffered query result")
            .map_err(SqlError::Limit)?;
        let mut rows = SqlRows::buffered(result.columns, result.rows);
        if let RowSource::Buffered(_, held) = &mut rows.source {
            *held = reservation;
        }
        rows.destination = self.destination();
        Ok(rows)
    }
}

impl SqlRows {
    /// Rows already in memory.
    pub fn buffered(columns: Vec<(String, String)>, rows: Vec<Vec<DbValue>>) -> Self {
        SqlRows {
            columns,
            destination: String::new(),
            source: RowSource::Buffered(rows.into(), Reservation::none()),
        }
    }

    /// Bytes of rows held in host memory: a buffered result's remaining rows; a stream holds
    /// at most [`STREAM_BUFFER_ROWS`] ahead and counts nothing.
    pub fn buffered_bytes(&self) -> usize {
        match &self.source {
            RowSource::Buffered(rows, _) => rows.iter().flatten().map(DbValue::size).sum(),
            RowSource::Streamed { .. } => 0,
        }
    }

    /// Rows a driver task sends through the [`RowSender`] of `rx` ([`row_channel`]).
    pub fn streamed(columns: Vec<(String, String)>, rx: RowReceiver) -> Self {
        SqlRows {
            columns,
            destination: String::new(),
            source: RowSource::Streamed {
                rx,
                held: None,
                done: false,
            },
        }
    }

    /// Takes up to `max` rows, and fewer when they would exceed `max_bytes` (at least one);
    /// `None` once the rows are exhausted.
    pub async fn next_batch(
        &mut self,
        max: u32,
        max_bytes: usize,
    ) -> Result<Option<Vec<Vec<DbValue>>>, SqlError> {
        let max = max.clamp(1, 10_000) as usize;
        let mut out: Vec<Vec<DbValue>> = Vec::new();
        let mut bytes = 0;
        match &mut self.source {
            RowSource::Buffered(rows, _) => {
                while out.len() < max {
                    let Some(next) = rows.front() else { break };
                    let size: usize = next.iter().map(DbValue::size).sum();
                    if !out.is_empty() && bytes + size > max_bytes {
                        break;
                    }
                    bytes += size;
                    if let Some(row) = rows.pop_front() {
                        out.push(row);
                    }
                }
            }
            RowSource::Streamed { rx, held, done } => {
                while out.len() < max {
                    let (row, charge) = match held.take() {
                        Some(r) => r,
                        None if *done => break,
                        None => match rx.0.recv().await {
                            Some(Ok(r)) => r,
                            Some(Err(e)) => {
                                *done = true;
                                return Err(e);
                            }
                            None => {
                                *done = true;
                                break;
                            }
                        },
                    };
                    let size: usize = row.iter().map(DbValue::size).sum();
                    if !out.is_empty() && bytes + size > max_bytes {
                        *held = Some((row, charge));
                        break;
                    }
                    bytes += size;
                    // The row leaves the host's buffers for the plugin's memory.
                    drop(charge);
                    out.push(row);
                }
            }
        }
        Ok(if out.is_empty() { None } else { Some(out) })
    }
}
