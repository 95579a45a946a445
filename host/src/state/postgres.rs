//! The shared state store on PostgreSQL, for several workers on several machines.
//!
//! The store's API is synchronous and is called from inside the host's tokio runtime, where a
//! blocking client that runs its own runtime cannot be used. So one dedicated thread owns a
//! small current-thread runtime and the `tokio-postgres` client; callers send it a request over
//! a channel and block on a `std::sync::mpsc` reply. Requests run one at a time, each bounded
//! by [`REQUEST_TIMEOUT`].
//!
//! - **Reconnects.** A dropped connection is noticed by the runtime while it idles; the next
//!   request logs in again, and fails with an error naming the store when it cannot. A query
//!   whose connection drops under it is retried once on a new one; a write is not (it may have
//!   committed), and fails with an error saying so.
//! - **Secrets.** The password (from `password_file` or `password_env`) stays in a zeroizing
//!   [`crate::secrets::SecretString`] and is registered with the redactor; every message built from a driver or
//!   server error passes through the redactor. tokio-postgres copies the password into its
//!   configuration for the duration of a login only.
//! - **TLS** is rustls with the ring provider: `verify-full` trusts the system roots plus
//!   `ca_file` and checks the host name; `require` accepts any certificate.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::config::{ChannelBinding, SslMode};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Socket;

use super::backend::{Cell, Param, Row};
use super::config::{PostgresStateConfig, StateTls};
use super::migrations::{self, SCHEMA_MIGRATIONS};
use super::{now, StateError};
use crate::secrets::redact::Redactor;

/// How long one request (statement, query or the migration) may take before the connection
/// is given up and the caller told.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The advisory lock (per database) the migrations run under: "airlock1" in ASCII.
const MIGRATION_LOCK: i64 = 0x6169_726c_6f63_6b31;

/// An open PostgreSQL state store: the sending end of its connection thread's queue.
pub(super) struct PgDb {
    requests: tokio::sync::mpsc::UnboundedSender<Request>,
    location: String,
}

/// What the connection thread is asked to do.
enum Op {
    Execute(String, Vec<Param>),
    Query(String, Vec<Param>),
    Migrate,
}

/// What it answers.
enum Done {
    Count(u64),
    Rows(Vec<Row>),
    Migrated,
}

struct Request {
    op: Op,
    reply: std::sync::mpsc::Sender<Result<Done, StateError>>,
}

impl PgDb {
    /// Starts the connection thread, logs in and brings the schema up to date.
    pub fn open(config: PostgresStateConfig) -> Result<Self, StateError> {
        let location = config.location();
        if config.tls == StateTls::Disable {
            tracing::warn!(
                store = %location,
                "state.toml sets tls = \"disable\": the state store's traffic crosses the network unencrypted"
            );
        }
        let tls = connector(&config, &location)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StateError::Unavailable {
                location: location.clone(),
                message: format!("cannot start the connection thread's runtime: {e}"),
            })?;
        let (requests, queue) = tokio::sync::mpsc::unbounded_channel();
        let session = Session {
            config: Arc::new(config),
            tls,
            location: location.clone(),
            client: None,
        };
        std::thread::Builder::new()
            .name("airlock-state-pg".into())
            .spawn(move || runtime.block_on(session.serve(queue)))
            .map_err(|e| StateError::Unavailable {
                location: location.clone(),
                message: format!("cannot start the connection thread: {e}"),
            })?;
        let db = PgDb { requests, location };
        db.call(Op::Migrate)?;
        Ok(db)
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn execute(&self, sql: &str, params: Vec<Param>) -> Result<u64, StateError> {
        match self.call(Op::Execute(numbered(sql), params))? {
            Done::Count(n) => Ok(n),
            _ => Err(self.confused()),
        }
    }

    pub fn query(&self, sql: &str, params: Vec<Param>) -> Result<Vec<Row>, StateError> {
        match self.call(Op::Query(numbered(sql), params))? {
            Done::Rows(rows) => Ok(rows),
            _ => Err(self.confused()),
        }
    }

    /// Sends `op` to the connection thread and waits for its answer.
    fn call(&self, op: Op) -> Result<Done, StateError> {
        let (reply, answer) = std::sync::mpsc::channel();
        let gone = || StateError::Unavailable {
            location: self.location.clone(),
            message: "the connection thread has stopped".into(),
        };
        self.requests
            .send(Request { op, reply })
            .map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }

    fn confused(&self) -> StateError {
        StateError::Postgres {
            location: self.location.clone(),
            message: "the connection thread answered another request".into(),
        }
    }
}

/// `?1`-style placeholders as PostgreSQL's `$1`. The store's own statements hold no `?`
/// anywhere else.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// The TLS connector `tls` asks for, built once.
#[derive(Clone)]
enum Tls {
    Off,
    On(tokio_postgres_rustls::MakeRustlsConnect),
}

fn connector(config: &PostgresStateConfig, location: &str) -> Result<Tls, StateError> {
    let fail = |message: String| StateError::Unavailable {
        location: location.to_string(),
        message,
    };
    let setup = |e: crate::tls::TlsSetupError| match e {
        crate::tls::TlsSetupError::Setup(m) | crate::tls::TlsSetupError::Identity(m) => fail(m),
    };
    let mut client = match config.tls {
        StateTls::Disable => return Ok(Tls::Off),
        StateTls::Require => crate::tls::any_certificate_config().map_err(setup)?,
        StateTls::VerifyFull => {
            let ca_files: Vec<&std::path::Path> =
                config.ca_file.iter().map(|p| p.as_path()).collect();
            let roots = crate::tls::roots(true, &ca_files, "state.toml ca_file").map_err(fail)?;
            if roots.is_empty() {
                return Err(fail(
                    "no trusted CA certificates for tls = \"verify-full\"; set ca_file in state.toml"
                        .into(),
                ));
            }
            crate::tls::client_config(roots, None).map_err(setup)?
        }
    };
    // The helper offers HTTP/1.1 by ALPN; a PostgreSQL server wants none or its own.
    client.alpn_protocols.clear();
    Ok(Tls::On(tokio_postgres_rustls::MakeRustlsConnect::new(
        client,
    )))
}

/// Why a request failed on the connection thread.
enum Failure {
    /// The connection is gone or unusable; a new one is needed.
    Lost(String),
    /// No answer in time: the connection is given up, and the request is not run again (the
    /// caller has waited long enough).
    TimedOut(String),
    /// The request itself failed (the connection is fine).
    Refused(StateError),
}

/// The connection thread's state: the settings and, while logged in, the client.
struct Session {
    config: Arc<PostgresStateConfig>,
    tls: Tls,
    location: String,
    client: Option<tokio_postgres::Client>,
}

impl Session {
    /// Answers requests until every sender is gone.
    async fn serve(mut self, mut queue: tokio::sync::mpsc::UnboundedReceiver<Request>) {
        while let Some(Request { op, reply }) = queue.recv().await {
            let answer = self.answer(op).await;
            // The caller may have given up; nothing to do then.
            let _ = reply.send(answer);
        }
    }

    async fn answer(&mut self, op: Op) -> Result<Done, StateError> {
        match self.attempt(&op).await {
            Ok(done) => Ok(done),
            Err(Failure::Refused(e)) => Err(e),
            Err(Failure::TimedOut(why)) => {
                self.client = None;
                Err(self.unavailable(format!(
                    "{why}; the request may or may not have been carried out, and the next one reconnects"
                )))
            }
            Err(Failure::Lost(why)) => {
                self.client = None;
                // Reads and the (transactional) migration are safe to run again.
                if matches!(op, Op::Query(..) | Op::Migrate) {
                    tracing::info!(store = %self.location, "the state store connection was lost ({why}); reconnecting");
                    match self.attempt(&op).await {
                        Ok(done) => return Ok(done),
                        Err(Failure::Refused(e)) => return Err(e),
                        Err(Failure::Lost(why) | Failure::TimedOut(why)) => {
                            self.client = None;
                            return Err(self.unavailable(why));
                        }
                    }
                }
                Err(self.unavailable(format!(
                    "{why}; the change may or may not have been made, and the next request reconnects"
                )))
            }
        }
    }

    fn unavailable(&self, message: String) -> StateError {
        StateError::Unavailable {
            location: self.location.clone(),
            message,
        }
    }

    /// Runs `op` once, logging in first when there is no live connection.
    async fn attempt(&mut self, op: &Op) -> Result<Done, Failure> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = None;
            let client = self.login().await.map_err(Failure::Refused)?;
            self.client = Some(client);
        }
        let location = self.location.clone();
        let Some(client) = self.client.as_mut() else {
            return Err(Failure::Lost("not connected".into()));
        };
        let run = async {
            match op {
                Op::Execute(sql, params) => {
                    let typed = typed(params);
                    client
                        .execute_typed(sql, &borrowed(&typed))
                        .await
                        .map(Done::Count)
                        .map_err(Failed::Db)
                }
                Op::Query(sql, params) => {
                    let typed = typed(params);
                    let rows = client
                        .query_typed(sql, &borrowed(&typed))
                        .await
                        .map_err(Failed::Db)?;
                    rows.iter()
                        .map(|r| row(r, &location))
                        .collect::<Result<Vec<_>, _>>()
                        .map(Done::Rows)
                        .map_err(Failed::State)
                }
                Op::Migrate => migrate(client, &location).await.map(|()| Done::Migrated),
            }
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, run).await {
            Err(_) => Err(Failure::TimedOut(format!(
                "no answer within {} s",
                REQUEST_TIMEOUT.as_secs()
            ))),
            Ok(Ok(done)) => Ok(done),
            Ok(Err(Failed::State(e))) => Err(Failure::Refused(e)),
            Ok(Err(Failed::Db(e))) if lost(&e) => Err(Failure::Lost(describe(&e))),
            Ok(Err(Failed::Db(e))) => Err(Failure::Refused(StateError::Postgres {
                location,
                message: describe(&e),
            })),
        }
    }

    /// Logs in with a configuration built for this login only (it holds a password copy).
    async fn login(&self) -> Result<tokio_postgres::Client, StateError> {
        let c = &*self.config;
        let mut config = tokio_postgres::Config::new();
        config
            .host(&c.host)
            .port(c.port)
            .user(&c.user)
            .dbname(&c.dbname)
            .application_name("airlock")
            .connect_timeout(c.connect_timeout)
            // SCRAM-SHA-256-PLUS when the server offers it over TLS.
            .channel_binding(ChannelBinding::Prefer);
        if let Some(p) = &c.password {
            config.password(p.expose().as_bytes());
        }
        let connected = match &self.tls {
            Tls::Off => {
                config.ssl_mode(SslMode::Disable);
                connect(config, tokio_postgres::NoTls, c.connect_timeout).await
            }
            Tls::On(tls) => {
                config.ssl_mode(SslMode::Require);
                connect(config, tls.clone(), c.connect_timeout).await
            }
        };
        connected.map_err(|message| self.unavailable(format!("cannot log in: {message}")))
    }
}

/// Connects, and spawns the task that drives the connection on this thread's runtime.
async fn connect<T>(
    config: tokio_postgres::Config,
    tls: T,
    timeout: Duration,
) -> Result<tokio_postgres::Client, String>
where
    T: MakeTlsConnect<Socket> + Send + 'static,
    T::Stream: Send + 'static,
{
    // The library's own timeout covers the TCP connect; this one covers TLS and the login.
    let (client, connection) = tokio::time::timeout(timeout, config.connect(tls))
        .await
        .map_err(|_| {
            format!(
                "no answer within {} s (connect_timeout_s)",
                timeout.as_secs()
            )
        })?
        .map_err(|e| describe(&e))?;
    drop(config);
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("the state store connection ended: {}", describe(&e));
        }
    });
    Ok(client)
}

/// A failure inside a request.
enum Failed {
    Db(tokio_postgres::Error),
    State(StateError),
}

impl From<tokio_postgres::Error> for Failed {
    fn from(e: tokio_postgres::Error) -> Self {
        Failed::Db(e)
    }
}

/// Applies the migrations the database lacks, in one transaction holding an advisory lock,
/// so that workers starting together apply each migration once and never see half a schema.
async fn migrate(client: &mut tokio_postgres::Client, location: &str) -> Result<(), Failed> {
    let tx = client.transaction().await?;
    tx.batch_execute(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
        .await?;
    let exists: bool = tx
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await?
        .try_get(0)?;
    if !exists {
        tx.batch_execute(SCHEMA_MIGRATIONS).await?;
    }
    let current: Option<i32> = tx
        .query_one("SELECT max(version) FROM schema_migrations", &[])
        .await?
        .try_get(0)?;
    let pending = migrations::pending(current.map(i64::from), location).map_err(Failed::State)?;
    for m in pending {
        tx.batch_execute(m.postgres).await?;
        let version = i32::try_from(m.version).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[&version, &now()],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Parameters with the types they are declared with (so `$1 IS NULL` needs no cast).
fn typed(params: &[Param]) -> Vec<(Box<dyn ToSql + Sync + Send>, Type)> {
    params
        .iter()
        .map(|p| -> (Box<dyn ToSql + Sync + Send>, Type) {
            match p {
                Param::Text(s) => (Box::new(s.clone()), Type::TEXT),
                Param::Int(n) => (Box::new(*n), Type::INT8),
                Param::Bool(b) => (Box::new(*b), Type::BOOL),
            }
        })
        .collect()
}

fn borrowed(typed: &[(Box<dyn ToSql + Sync + Send>, Type)]) -> Vec<(&(dyn ToSql + Sync), Type)> {
    typed
        .iter()
        .map(|(v, t)| (&**v as &(dyn ToSql + Sync), t.clone()))
        .collect()
}

/// A driver row as the store's row type: text, integers and booleans.
fn row(r: &tokio_postgres::Row, location: &str) -> Result<Row, StateError> {
    let bad = |e: tokio_postgres::Error| StateError::Postgres {
        location: location.to_string(),
        message: describe(&e),
    };
    let mut cells = Vec::with_capacity(r.len());
    for (i, column) in r.columns().iter().enumerate() {
        let t = column.type_();
        let cell = if *t == Type::INT8 {
            r.try_get::<_, Option<i64>>(i).map_err(bad)?.map(Cell::Int)
        } else if *t == Type::INT4 {
            r.try_get::<_, Option<i32>>(i)
                .map_err(bad)?
                .map(|n| Cell::Int(n.into()))
        } else if *t == Type::BOOL {
            r.try_get::<_, Option<bool>>(i)
                .map_err(bad)?
                .map(Cell::Bool)
        } else {
            r.try_get::<_, Option<String>>(i)
                .map_err(bad)?
                .map(Cell::Text)
        };
        cells.push(cell.unwrap_or(Cell::Null));
    }
    Ok(Row(cells))
}

/// Whether the connection itself failed (rather than the statement).
fn lost(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(db) = e.as_db_error() {
        // connection exceptions, admin shutdown / crash, too many connections
        let code = db.code().code();
        return code.starts_with("08") || code.starts_with("57P");
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// One line for a driver error: the server's message and SQLSTATE, or the driver's text,
/// passed through the redactor (which knows the password).
fn describe(e: &tokio_postgres::Error) -> String {
    let text = match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => {
            // The driver's own text is short ("error connecting to server"); the cause
            // (refused, TLS alert, certificate) is in its sources.
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                let part = s.to_string();
                if !text.contains(&part) {
                    text.push_str(": ");
                    text.push_str(&part);
                }
                source = s.source();
            }
            text
        }
    };
    Redactor::global().redact(&text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_renumbered() {
        assert_eq!(
            numbered("SELECT a FROM t WHERE (?1 IS NULL OR b = ?1) AND c = ?12 LIMIT ?"),
            "SELECT a FROM t WHERE ($1 IS NULL OR b = $1) AND c = $12 LIMIT ?"
        );
    }
}
