//! SQL through connections the host opens, authenticates and keeps read-only.

use std::collections::VecDeque;
use std::rc::Rc;

use crate::__private::airlock::connector::sql as wit;
use crate::credentials::Credential;
use crate::Error;

/// The database engine of an [`Endpoint`].
pub use wit::Driver;
/// One SQL value, used for parameters and in rows.
pub use wit::SqlValue as Value;

/// Rows per boundary crossing.
const BATCH_ROWS: u32 = 1000;

/// Where to connect: a file path for SQLite, `host:port` for network engines.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The database engine.
    pub driver: Driver,
    /// File path (SQLite) or `host:port`.
    pub address: String,
    /// Database name, for engines that have several per server.
    pub database: Option<String>,
}

/// A read-only connection opened by the host.
pub struct Connection(wit::Connection);

impl Connection {
    /// Asks the host to open a connection; the host checks the endpoint against the workflow
    /// and logs in with `credential` itself.
    pub fn open(endpoint: &Endpoint, credential: Option<&Credential>) -> Result<Self, Error> {
        let target = wit::Endpoint {
            driver: endpoint.driver,
            address: endpoint.address.clone(),
            database: endpoint.database.clone(),
        };
        wit::open(&target, credential.map(|c| &c.0)).map(Connection)
    }

    /// Runs a statement; rows arrive in batches as the iterator advances.
    pub fn query(&self, statement: &str, params: &[Value]) -> Result<Rows, Error> {
        let rows = self.0.query(statement, params)?;
        let columns: Rc<[String]> = rows.columns().into_iter().map(|c| c.name).collect();
        Ok(Rows {
            inner: rows,
            columns,
            buffered: VecDeque::new(),
            done: false,
        })
    }

    /// Runs a statement and collects every row.
    pub fn query_all(&self, statement: &str, params: &[Value]) -> Result<Vec<Row>, Error> {
        self.query(statement, params)?.collect()
    }
}

/// The rows of one query; an iterator that fetches batches from the host.
pub struct Rows {
    inner: wit::Rows,
    columns: Rc<[String]>,
    buffered: VecDeque<Vec<Value>>,
    done: bool,
}

impl Rows {
    /// The names of the result columns.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }
}

impl Iterator for Rows {
    type Item = Result<Row, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(values) = self.buffered.pop_front() {
                return Some(Ok(Row {
                    columns: self.columns.clone(),
                    values,
                }));
            }
            if self.done {
                return None;
            }
            match self.inner.next_batch(BATCH_ROWS) {
                Ok(Some(batch)) if !batch.is_empty() => self.buffered.extend(batch),
                Ok(_) => self.done = true,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// One result row with typed accessors by column name.
#[derive(Debug, Clone)]
pub struct Row {
    columns: Rc<[String]>,
    values: Vec<Value>,
}

impl Row {
    /// The raw value of column `name`.
    pub fn value(&self, name: &str) -> Result<&Value, Error> {
        self.columns
            .iter()
            .position(|c| c == name)
            .and_then(|i| self.values.get(i))
            .ok_or_else(|| Error::Source(format!("result has no column `{name}`")))
    }

    /// The value of column `name` as text; `None` for NULL. Numbers are formatted.
    pub fn text(&self, name: &str) -> Result<Option<String>, Error> {
        Ok(match self.value(name)? {
            Value::Null => None,
            Value::Text(s) => Some(s.clone()),
            Value::Integer(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Boolean(b) => Some(b.to_string()),
            Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        })
    }

    /// As [`Row::text`], borrowing text values instead of copying them (for building an
    /// asset's attributes without an allocation per field).
    pub fn text_ref(&self, name: &str) -> Result<Option<std::borrow::Cow<'_, str>>, Error> {
        use std::borrow::Cow;
        Ok(match self.value(name)? {
            Value::Null => None,
            Value::Text(s) => Some(Cow::Borrowed(s.as_str())),
            Value::Integer(i) => Some(Cow::Owned(i.to_string())),
            Value::Float(f) => Some(Cow::Owned(f.to_string())),
            Value::Boolean(b) => Some(Cow::Owned(b.to_string())),
            Value::Bytes(b) => Some(String::from_utf8_lossy(b)),
        })
    }

    /// The value of column `name` as text; NULL is an error.
    pub fn string(&self, name: &str) -> Result<String, Error> {
        self.text(name)?
            .ok_or_else(|| Error::Source(format!("column `{name}` is NULL")))
    }

    /// The value of column `name` as an integer; `None` for NULL.
    pub fn int(&self, name: &str) -> Result<Option<i64>, Error> {
        match self.value(name)? {
            Value::Null => Ok(None),
            Value::Integer(i) => Ok(Some(*i)),
            Value::Boolean(b) => Ok(Some(i64::from(*b))),
            Value::Text(s) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| Error::Source(format!("column `{name}` is not an integer"))),
            _ => Err(Error::Source(format!("column `{name}` is not an integer"))),
        }
    }

    /// The value of column `name` as a boolean (integers: non-zero is true); `None` for NULL.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, Error> {
        match self.value(name)? {
            Value::Null => Ok(None),
            Value::Boolean(b) => Ok(Some(*b)),
            Value::Integer(i) => Ok(Some(*i != 0)),
            Value::Text(s) => Ok(Some(matches!(
                s.as_str(),
                "t" | "true" | "TRUE" | "YES" | "yes" | "1"
            ))),
            _ => Err(Error::Source(format!("column `{name}` is not a boolean"))),
        }
    }
}
