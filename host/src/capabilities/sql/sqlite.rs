//! The SQLite driver: read-only, sandboxed connections to database files.
//!
//! A plugin's statements run against a connection opened with `SQLITE_OPEN_READ_ONLY`, no
//! attached databases, an authorizer that allows only reads (so `ATTACH`, `VACUUM INTO` and
//! write pragmas cannot touch other files), a cap on value sizes, and a progress handler that
//! interrupts a statement at its timeout (an endless recursive CTE cannot pin a host thread).
//!
//! The authorizer is also SQLite's statement guard, run by SQLite's own parser on every name a
//! statement touches (views are expanded, so a view over a business table is a read of that
//! table): reads pass only on the catalog (`sqlite_schema` and the schema `pragma_*` table
//! functions) or on tables the workflow grants (`[source.sql] allow_relations`, named
//! `<file stem>.main.<table>`), and functions pass only from an allow-list.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;
use rusqlite::OpenFlags;

use super::guard::{DataGrants, Refusal, RefusalKind};
use super::{DbValue, QueryResult, SqlError};

/// SQLite's page cache per open file, in KiB (SQLite's own default, set explicitly so the
/// charge against the run's host-memory budget is a bound).
pub const PAGE_CACHE_KIB: i64 = 2048;

/// Largest string or blob a statement may produce.
const MAX_VALUE_BYTES: i32 = 16 << 20;

/// Pragmas a plugin may read (they describe the schema and change nothing).
const READ_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "database_list",
    "collation_list",
    "function_list",
    "pragma_list",
    "module_list",
    "user_version",
    "application_id",
    "schema_version",
    "encoding",
    "page_size",
    "page_count",
    "freelist_count",
    // FTS5 reads it itself when a statement touches a full-text table (a change counter,
    // no data).
    "data_version",
];

/// Catalog relations every plugin may read (the schema itself and the eponymous virtual
/// tables of the reading pragmas).
const CATALOG_RELATIONS: &[&str] = &["sqlite_schema", "sqlite_master"];

/// Functions a statement may call: string, JSON and aggregate builders, and what `LIKE` /
/// `GLOB` run as. Anything else (`load_extension`, `fts3_tokenizer`, `zeroblob`,
/// `randomblob`, ...) is refused.
const ALLOWED_FUNCTIONS: &[&str] = &[
    "like",
    "glob",
    "lower",
    "upper",
    "length",
    "substr",
    "substring",
    "instr",
    "replace",
    "trim",
    "ltrim",
    "rtrim",
    "coalesce",
    "ifnull",
    "nullif",
    "iif",
    "typeof",
    "quote",
    "printf",
    "format",
    "count",
    "min",
    "max",
    "sum",
    "total",
    "group_concat",
    "string_agg",
    "json",
    "json_array",
    "json_object",
    "json_group_array",
    "json_group_object",
    "json_quote",
    "sqlite_version",
    "row_number",
    // Pure computation on values the statement already has; they read nothing.
    "hex",
    "zeroblob",
    "randomblob",
    "abs",
    "round",
    "char",
    "unicode",
];

/// Connects every virtual table of the main schema once, before the authorizer is installed.
/// A virtual table reads its own shadow tables when it connects (FTS5 its `_config`, R*Tree
/// its `_node`), which the authorizer would refuse as data reads; connected, it stays so for
/// the connection, and catalog reads of it (`pragma_table_xinfo`) read no data. A table whose
/// module is missing stays unconnected (reading it fails as it would anyway).
fn connect_virtual_tables(conn: &rusqlite::Connection) {
    let names: Vec<String> = conn
        .prepare(
            "SELECT name FROM main.sqlite_schema \
             WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%'",
        )
        .and_then(|mut stmt| {
            stmt.query_map([], |r| r.get::<_, String>(0))
                .map(|rows| rows.flatten().collect())
        })
        .unwrap_or_default();
    for name in names {
        let _ = conn.query_row(
            "SELECT count(*) FROM pragma_table_xinfo(?1, 'main')",
            [&name],
            |_| Ok(()),
        );
    }
}

/// What the authorizer allows beyond the catalog, and what it refused last.
struct SqliteGuard {
    /// The logical database name grants use: the file name without its extension.
    database: String,
    grants: DataGrants,
    /// The first refusal of the statement being prepared.
    refused: Mutex<Option<Refusal>>,
}

impl SqliteGuard {
    fn refuse(&self, refusal: Refusal) -> Authorization {
        if let Ok(mut slot) = self.refused.lock() {
            slot.get_or_insert(refusal);
        }
        Authorization::Deny
    }

    fn take_refusal(&self) -> Option<Refusal> {
        self.refused.lock().ok().and_then(|mut slot| slot.take())
    }

    fn authorize(&self, ctx: AuthContext<'_>) -> Authorization {
        match ctx.action {
            AuthAction::Select | AuthAction::Recursive => Authorization::Allow,
            // SQLite names the schema of every stored table it reads; a read without one
            // is of a recursive CTE's own rows (subqueries are not reported at all).
            AuthAction::Read { .. } if ctx.database_name.is_none() => Authorization::Allow,
            AuthAction::Read { table_name, .. } => {
                let name = table_name.to_ascii_lowercase();
                let schema = ctx.database_name.unwrap_or("main");
                let catalog = CATALOG_RELATIONS.contains(&name.as_str())
                    || name
                        .strip_prefix("pragma_")
                        .is_some_and(|p| READ_PRAGMAS.contains(&p));
                if catalog || self.grants.allows(&self.database, schema, table_name) {
                    Authorization::Allow
                } else {
                    self.refuse(Refusal::new(
                        RefusalKind::Relation,
                        format!("{schema}.{table_name}"),
                        format!(
                            "only the catalog (sqlite_schema, pragma_* functions) may be read; \
                             to read this table add `{}.{schema}.{table_name}` to \
                             [source.sql] allow_relations",
                            self.database
                        ),
                    ))
                }
            }
            AuthAction::Function { function_name } => {
                let name = function_name.to_ascii_lowercase();
                if ALLOWED_FUNCTIONS.contains(&name.as_str()) {
                    Authorization::Allow
                } else {
                    self.refuse(Refusal::new(
                        RefusalKind::Function,
                        name,
                        "the function is not on the catalog allow-list",
                    ))
                }
            }
            AuthAction::Pragma {
                pragma_name,
                pragma_value,
            } => {
                let name = pragma_name.to_ascii_lowercase();
                let takes_argument = matches!(
                    name.as_str(),
                    "table_info"
                        | "table_xinfo"
                        | "index_list"
                        | "index_info"
                        | "index_xinfo"
                        | "foreign_key_list"
                        | "table_list"
                );
                if READ_PRAGMAS.contains(&name.as_str())
                    && (pragma_value.is_none() || takes_argument)
                {
                    Authorization::Allow
                } else {
                    self.refuse(Refusal::new(
                        RefusalKind::NotARead,
                        format!("PRAGMA {name}"),
                        "only schema-reading pragmas are allowed",
                    ))
                }
            }
            other => self.refuse(Refusal::new(
                RefusalKind::NotARead,
                format!("{other:?}")
                    .split([' ', '{', '('])
                    .next()
                    .unwrap_or("statement")
                    .to_string(),
                "only read queries over the catalog are allowed",
            )),
        }
    }
}

/// Whether the main database file `conn` opened is `verified`'s file (device and inode).
///
/// SQLite hands out its `sqlite3_file` for the main database (`SQLITE_FCNTL_FILE_POINTER`);
/// for the default `unix` VFS that is a `unixFile`, whose fields begin `pMethod`, `pVfs`,
/// `pInode`, `int h` (the descriptor) — unchanged in SQLite's `os_unix.c` for over a decade.
/// The layout is trusted only when `pVfs` is the default VFS; anything else fails closed.
fn same_file(conn: &rusqlite::Connection, verified: &std::fs::File) -> bool {
    use rusqlite::ffi;
    use std::os::fd::{AsFd, BorrowedFd};
    let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: `conn.handle()` is the live connection's handle; FILE_POINTER writes one
    // `sqlite3_file*` for the main database into `file`, which outlives the call.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_FILE_POINTER,
            (&mut file as *mut *mut ffi::sqlite3_file).cast(),
        )
    };
    if rc != ffi::SQLITE_OK || file.is_null() {
        return false;
    }
    // SAFETY: `file` points to SQLite's file object for the open main database. Only when its
    // second word is the default VFS (so the object is a `unixFile`) is the descriptor read
    // from the fourth word; the object lives as long as the connection.
    let fd = unsafe {
        let words = file as *const *const std::ffi::c_void;
        let vfs = ffi::sqlite3_vfs_find(std::ptr::null());
        if vfs.is_null() || *words.add(1) != vfs as *const std::ffi::c_void {
            return false;
        }
        *(words.add(3) as *const std::ffi::c_int)
    };
    if fd < 0 {
        return false;
    }
    // SAFETY: SQLite keeps `fd` open while the connection is; it is only borrowed here.
    let opened = unsafe { BorrowedFd::borrow_raw(fd) };
    match (
        rustix::fs::fstat(opened),
        rustix::fs::fstat(verified.as_fd()),
    ) {
        (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
        _ => false,
    }
}

/// An open read-only SQLite database.
pub struct SqliteDb {
    conn: Arc<Mutex<rusqlite::Connection>>,
    stop_at: Arc<Mutex<Option<Instant>>>,
    guard: Arc<SqliteGuard>,
}

impl SqliteDb {
    /// The database's logical name (the file name without its extension).
    pub fn name(&self) -> &str {
        &self.guard.database
    }

    /// Opens `path` read-only. The caller has already checked the path is allowed and opened
    /// it as `verified` ([`super::SqlPolicy::open_sqlite_file`]); SQLite opens the path again
    /// (it has no way to adopt a descriptor), so the file SQLite opened must be `verified`'s
    /// (same device and inode), or the open is refused. `grants` are the data tables the
    /// workflow lets the plugin read, named `<file stem>.main.<table>`.
    pub fn open(
        path: &Path,
        verified: &std::fs::File,
        grants: &DataGrants,
    ) -> Result<Self, SqlError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW;
        let conn = rusqlite::Connection::open_with_flags(path, flags).map_err(|e| {
            SqlError::Unavailable(format!(
                "cannot open SQLite database {}: {e}",
                path.display()
            ))
        })?;
        conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0);
        // Before the authorizer is installed: the plugin cannot change either.
        conn.execute_batch(&format!(
            "PRAGMA cache_size = -{PAGE_CACHE_KIB}; PRAGMA mmap_size = 0;"
        ))
        .map_err(|e| SqlError::Source(format!("cannot configure {}: {e}", path.display())))?;
        conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES);
        connect_virtual_tables(&conn);
        let guard = Arc::new(SqliteGuard {
            database: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            grants: grants.clone(),
            refused: Mutex::new(None),
        });
        let authorizer = guard.clone();
        conn.authorizer(Some(move |ctx: AuthContext<'_>| authorizer.authorize(ctx)));
        let stop_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
        let handler_stop = stop_at.clone();
        conn.progress_handler(
            10_000,
            Some(move || {
                handler_stop
                    .lock()
                    .map(|s| s.is_some_and(|t| Instant::now() >= t))
                    .unwrap_or(true)
            }),
        );
        // Checks the file really is a database now, with a clear error, instead of at the
        // plugin's first query.
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
            .map_err(|e| {
                SqlError::Source(format!(
                    "{} is not a readable SQLite database: {e}",
                    path.display()
                ))
            })?;
        // The check above ran through the guard; forget what it saw.
        guard.take_refusal();
        if !same_file(&conn, verified) {
            return Err(SqlError::Denied(format!(
                "SQLite database {} changed while it was opened: SQLite opened another file than \
                 the one checked inside the allowed directories",
                path.display()
            )));
        }
        Ok(SqliteDb {
            conn: Arc::new(Mutex::new(conn)),
            stop_at,
            guard,
        })
    }

    /// Runs one statement on a blocking thread; returns at most `max_bytes` of rows.
    pub async fn query(
        &self,
        statement: String,
        params: Vec<DbValue>,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<QueryResult, SqlError> {
        let conn = self.conn.clone();
        let stop_at = self.stop_at.clone();
        let guard = self.guard.clone();
        let task = tokio::task::spawn_blocking(move || {
            let conn = conn
                .lock()
                .map_err(|_| SqlError::Unavailable("connection is poisoned".into()))?;
            if let Ok(mut s) = stop_at.lock() {
                *s = Some(Instant::now() + timeout);
            }
            guard.take_refusal();
            let result = run(&conn, &statement, &params, max_bytes, timeout);
            if let Ok(mut s) = stop_at.lock() {
                *s = None;
            }
            // A statement the authorizer refused reports what it refused, typed.
            match (result, guard.take_refusal()) {
                (Err(_), Some(refusal)) => Err(SqlError::Refused(refusal)),
                (result, _) => result,
            }
        });
        task.await
            .map_err(|e| SqlError::Unavailable(format!("query task failed: {e}")))?
    }
}

fn run(
    conn: &rusqlite::Connection,
    statement: &str,
    params: &[DbValue],
    max_bytes: usize,
    timeout: Duration,
) -> Result<QueryResult, SqlError> {
    let map_err = |e: rusqlite::Error| {
        let denied = match &e {
            rusqlite::Error::SqliteFailure(f, m) => {
                f.code == rusqlite::ErrorCode::AuthorizationForStatementDenied
                    || m.as_deref()
                        .is_some_and(|m| m.starts_with("not authorized"))
            }
            rusqlite::Error::SqlInputError { msg, .. } => msg.starts_with("not authorized"),
            _ => false,
        };
        match e {
            _ if denied => {
                SqlError::Denied(format!("statement not allowed on a read-only source: {e}"))
            }
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::OperationInterrupted =>
            {
                SqlError::Limit(format!(
                    "query interrupted after {} s (limits.query_timeout_s)",
                    timeout.as_secs()
                ))
            }
            other => SqlError::Source(other.to_string()),
        }
    };
    let mut stmt = conn.prepare(statement).map_err(map_err)?;
    if !stmt.readonly() {
        // The authorizer is not asked about everything (SQLite never asks it about VACUUM):
        // whatever still writes is refused here, as the guard's refusal.
        let first = statement
            .split(|c: char| !c.is_ascii_alphabetic())
            .find(|w| !w.is_empty())
            .unwrap_or("statement")
            .to_ascii_uppercase();
        return Err(SqlError::Refused(Refusal::new(
            RefusalKind::NotARead,
            first.chars().take(32).collect::<String>(),
            "only read-only statements are allowed",
        )));
    }
    let columns: Vec<(String, String)> = stmt
        .columns()
        .iter()
        .map(|c| {
            (
                c.name().to_string(),
                c.decl_type().unwrap_or("").to_string(),
            )
        })
        .collect();
    let bound: Vec<rusqlite::types::Value> = params.iter().map(to_sqlite).collect();
    let mut rows = stmt
        .query(rusqlite::params_from_iter(bound.iter()))
        .map_err(map_err)?;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    while let Some(row) = rows.next().map_err(map_err)? {
        let mut values = Vec::with_capacity(columns.len());
        for i in 0..columns.len() {
            let v = from_sqlite(row.get_ref(i).map_err(map_err)?);
            bytes += v.size();
            values.push(v);
        }
        if bytes > max_bytes {
            return Err(SqlError::Limit(format!(
                "query result exceeds {} MiB; narrow the query",
                max_bytes >> 20
            )));
        }
        out.push(values);
    }
    Ok(QueryResult { columns, rows: out })
}

fn to_sqlite(v: &DbValue) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match v {
        DbValue::Null => Value::Null,
        DbValue::Bool(b) => Value::Integer(i64::from(*b)),
        DbValue::Int(i) => Value::Integer(*i),
        DbValue::Float(f) => Value::Real(*f),
        DbValue::Text(s) => Value::Text(s.clone()),
        DbValue::Bytes(b) => Value::Blob(b.clone()),
    }
}

fn from_sqlite(v: ValueRef<'_>) -> DbValue {
    match v {
        ValueRef::Null => DbValue::Null,
        ValueRef::Integer(i) => DbValue::Int(i),
        ValueRef::Real(f) => DbValue::Float(f),
        ValueRef::Text(t) => DbValue::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => DbValue::Bytes(b.to_vec()),
    }
}
