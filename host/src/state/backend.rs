//! What the state store asks of a database, whichever it is: run a statement with parameters
//! and count the rows it changed, or run a query and hand back its rows. Statements are written
//! once, in the dialect both SQLite and PostgreSQL speak, with `?1`-style placeholders (the
//! PostgreSQL backend renumbers them `$1`); values are text, 64-bit integers and booleans.

use super::postgres::PgDb;
use super::sqlite::SqliteDb;
use super::StateError;

/// A statement parameter.
#[derive(Debug, Clone)]
pub(super) enum Param {
    Text(Option<String>),
    Int(i64),
    Bool(bool),
}

impl From<&str> for Param {
    fn from(s: &str) -> Self {
        Param::Text(Some(s.to_string()))
    }
}

impl From<&String> for Param {
    fn from(s: &String) -> Self {
        Param::Text(Some(s.clone()))
    }
}

impl From<String> for Param {
    fn from(s: String) -> Self {
        Param::Text(Some(s))
    }
}

impl From<Option<&str>> for Param {
    fn from(s: Option<&str>) -> Self {
        Param::Text(s.map(str::to_string))
    }
}

impl From<&Option<String>> for Param {
    fn from(s: &Option<String>) -> Self {
        Param::Text(s.clone())
    }
}

impl From<Option<String>> for Param {
    fn from(s: Option<String>) -> Self {
        Param::Text(s)
    }
}

impl From<bool> for Param {
    fn from(b: bool) -> Self {
        Param::Bool(b)
    }
}

impl From<i64> for Param {
    fn from(i: i64) -> Self {
        Param::Int(i)
    }
}

/// Builds a parameter list from values of mixed types.
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        vec![$($crate::state::backend::Param::from($value)),*]
    };
}
pub(super) use args;

/// One value of a result row.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Cell {
    Null,
    Text(String),
    Int(i64),
    Bool(bool),
}

/// One result row.
#[derive(Debug)]
pub(super) struct Row(pub Vec<Cell>);

impl Row {
    fn take(&mut self, i: usize) -> Cell {
        self.0
            .get_mut(i)
            .map(|c| std::mem::replace(c, Cell::Null))
            .unwrap_or(Cell::Null)
    }

    /// Column `i`, which must be non-NULL text.
    pub fn text(&mut self, i: usize) -> Result<String, StateError> {
        self.opt_text(i)?
            .ok_or_else(|| unexpected(i, "NULL", "text"))
    }

    /// Column `i`, text or NULL.
    pub fn opt_text(&mut self, i: usize) -> Result<Option<String>, StateError> {
        match self.take(i) {
            Cell::Null => Ok(None),
            Cell::Text(s) => Ok(Some(s)),
            other => Err(unexpected(i, kind(&other), "text")),
        }
    }

    /// Column `i` as a flag: a boolean, or an integer (SQLite), NULL meaning false.
    pub fn flag(&mut self, i: usize) -> Result<bool, StateError> {
        match self.take(i) {
            Cell::Null => Ok(false),
            Cell::Bool(b) => Ok(b),
            Cell::Int(n) => Ok(n != 0),
            other => Err(unexpected(i, kind(&other), "a boolean")),
        }
    }

    /// Column `i`, an integer or NULL.
    pub fn opt_int(&mut self, i: usize) -> Result<Option<i64>, StateError> {
        match self.take(i) {
            Cell::Null => Ok(None),
            Cell::Int(n) => Ok(Some(n)),
            other => Err(unexpected(i, kind(&other), "an integer")),
        }
    }
}

fn kind(c: &Cell) -> &'static str {
    match c {
        Cell::Null => "NULL",
        Cell::Text(_) => "text",
        Cell::Int(_) => "an integer",
        Cell::Bool(_) => "a boolean",
    }
}

fn unexpected(column: usize, found: &str, wanted: &str) -> StateError {
    StateError::Invalid(format!(
        "state store: column {column} of a stored row holds {found} where {wanted} belongs; \
         the store was changed by something other than airlock"
    ))
}

/// The database behind a [`super::StateStore`].
pub(super) enum Backend {
    Sqlite(SqliteDb),
    Postgres(PgDb),
}

impl Backend {
    /// Runs a statement; the number of rows it changed.
    pub fn execute(&self, sql: &str, params: Vec<Param>) -> Result<u64, StateError> {
        match self {
            Backend::Sqlite(db) => db.execute(sql, &params),
            Backend::Postgres(db) => db.execute(sql, params),
        }
    }

    /// Runs a query; its rows.
    pub fn query(&self, sql: &str, params: Vec<Param>) -> Result<Vec<Row>, StateError> {
        match self {
            Backend::Sqlite(db) => db.query(sql, &params),
            Backend::Postgres(db) => db.query(sql, params),
        }
    }

    /// Where the store is, for messages: a file path or `postgres://user@host:port/db`.
    pub fn location(&self) -> &str {
        match self {
            Backend::Sqlite(db) => db.location(),
            Backend::Postgres(db) => db.location(),
        }
    }
}
