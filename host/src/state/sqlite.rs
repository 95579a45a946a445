//! The embedded state store: one SQLite file (`<home>/state.sqlite`, created 0600) in WAL mode,
//! one connection behind a mutex. Several processes may open the same file; SQLite's locks
//! (with a 10 s busy timeout) serialize their writes.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::types::{Value, ValueRef};
use rusqlite::{OptionalExtension, TransactionBehavior};

use super::backend::{Cell, Param, Row};
use super::migrations::{self, MIGRATIONS, SCHEMA_MIGRATIONS};
use super::{now, StateError};

/// An open SQLite state store.
pub(super) struct SqliteDb {
    conn: Mutex<rusqlite::Connection>,
    location: String,
}

impl SqliteDb {
    /// Opens (creating, 0600) the file at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let existed = path.exists();
        let mut conn = rusqlite::Connection::open(path)?;
        if !existed {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let location = path.display().to_string();
        migrate(&mut conn, &location)?;
        Ok(SqliteDb {
            conn: Mutex::new(conn),
            location,
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        // A poisoned lock only means another thread panicked mid-statement; SQLite keeps the
        // database consistent, so keep going.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn execute(&self, sql: &str, params: &[Param]) -> Result<u64, StateError> {
        let n = self
            .conn()
            .execute(sql, rusqlite::params_from_iter(params.iter().map(value)))?;
        Ok(n as u64)
    }

    pub fn query(&self, sql: &str, params: &[Param]) -> Result<Vec<Row>, StateError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(sql)?;
        let columns = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params.iter().map(value)))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut cells = Vec::with_capacity(columns);
            for i in 0..columns {
                cells.push(match r.get_ref(i)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(n) => Cell::Int(n),
                    ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Real(f) => Cell::Text(f.to_string()),
                    ValueRef::Blob(b) => Cell::Text(String::from_utf8_lossy(b).into_owned()),
                });
            }
            out.push(Row(cells));
        }
        Ok(out)
    }
}

fn value(p: &Param) -> Value {
    match p {
        Param::Text(Some(s)) => Value::Text(s.clone()),
        Param::Text(None) => Value::Null,
        Param::Int(n) => Value::Integer(*n),
        Param::Bool(b) => Value::Integer(i64::from(*b)),
    }
}

/// Applies the migrations the file lacks, in one immediate (write-locked) transaction so two
/// processes opening a new file at once do not both create it. A file written before the
/// store recorded versions is recognised by its tables and adopted at the version it has.
fn migrate(conn: &mut rusqlite::Connection, location: &str) -> Result<(), StateError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if !table_exists(&tx, "schema_migrations")? {
        tx.execute_batch(SCHEMA_MIGRATIONS)?;
    }
    let mut current: Option<i64> =
        tx.query_row("SELECT max(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })?;
    if current.is_none() {
        if let Some(adopted) = unversioned_schema(&tx)? {
            for m in MIGRATIONS.iter().take_while(|m| m.version <= adopted) {
                record(&tx, m.version)?;
            }
            current = Some(adopted);
        }
    }
    for m in migrations::pending(current, location)? {
        tx.execute_batch(m.sqlite)?;
        record(&tx, m.version)?;
    }
    tx.commit()?;
    Ok(())
}

fn record(tx: &rusqlite::Transaction<'_>, version: i64) -> Result<(), StateError> {
    tx.execute(
        "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
        rusqlite::params![version, now()],
    )?;
    Ok(())
}

fn table_exists(conn: &rusqlite::Connection, name: &str) -> Result<bool, StateError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [name],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// The version of a store written before `schema_migrations` existed: 1 when it has the
/// tables, 2 when its credentials also have the `privileged` column; `None` for a new file.
fn unversioned_schema(conn: &rusqlite::Connection) -> Result<Option<i64>, StateError> {
    if !table_exists(conn, "credentials")? {
        return Ok(None);
    }
    let privileged = conn
        .prepare("SELECT 1 FROM pragma_table_info('credentials') WHERE name = 'privileged'")?
        .exists([])?;
    Ok(Some(if privileged { 2 } else { 1 }))
}
