//! The PostgreSQL driver: TLS on rustls, SCRAM-SHA-256, read-only sessions, streamed rows.
//!
//! - **TLS** follows libpq's `sslmode` names: `disable` (refused unless the workflow sets
//!   `allow_cleartext_password`, because the password would cross the network in the clear),
//!   `require` (TLS, any certificate), `verify-ca` (the chain must reach a trusted root; the
//!   host name is not checked) and `verify-full` (chain and host name). Trusted roots are the
//!   system's plus the workflow's `ca_file`.
//! - **Read-only.** The session defaults to read-only transactions, and every statement a
//!   plugin sends runs inside its own `BEGIN READ ONLY ... ROLLBACK` with a `SET LOCAL
//!   statement_timeout`. A plugin statement cannot leave the session writable for the next
//!   one: a `SET` it runs is rolled back with its transaction, and the extended protocol
//!   refuses several statements in one string.
//! - **Streaming.** Rows are decoded by a task that feeds a bounded channel, so host memory
//!   stays flat however many rows a catalog query returns; the task stops when the plugin drops
//!   the rows. One statement runs at a time per connection.
//! - **Errors never hold secrets.** Messages name the host, port and user, never a connection
//!   string or the password; connection errors are additionally scrubbed of the password text.
//!
//! Values arrive in the binary protocol and map onto [`DbValue`]: booleans, integers (`int2`,
//! `int4`, `int8`, `oid` and the `reg*` types, which arrive as the oid), floats, `numeric` as
//! exact text, text-like types (`text`, `varchar`, `char`, `name`, `json`, `jsonb`, `xml`,
//! enums, domains over them), `uuid`, dates and timestamps as ISO text, arrays as JSON text and
//! `bytea` as bytes. Any other type arrives as its raw binary representation (bytes); cast it
//! to `text` in SQL to get the server's text form. No type makes the driver fail or panic.
//!
//! tokio-postgres copies the password into its connection configuration and SCRAM state,
//! which it frees without zeroizing; the configuration lives only for the duration of the
//! login.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::StreamExt;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::sync::OwnedMutexGuard;
use tokio_postgres::config::{ChannelBinding, SslMode};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::types::{to_sql_checked, Format, FromSql, IsNull, Kind, ToSql, Type};
use tokio_postgres::Socket;

use super::{
    ConnectParams, DbValue, RowSender, SqlError, SqlRows, StreamProbe, TlsMode, TlsSettings,
};
use crate::runtime::budget::MemoryBudget;
use crate::tls::AnyCertificate;

type BoxError = Box<dyn std::error::Error + Sync + Send>;

/// How long a statement waits for the previous statement's rows to drain before it checks
/// again whether the plugin is still holding them unread.
const BUSY_POLL: Duration = Duration::from_millis(50);

/// An open, authenticated, read-only PostgreSQL session.
pub struct PgDb {
    client: Arc<tokio_postgres::Client>,
    /// `host:port`, for error messages.
    target: String,
    /// Held by the task streaming a statement's rows until its transaction has ended: the
    /// protocol answers statements in order, so a second statement must wait for the first.
    busy: Arc<tokio::sync::Mutex<()>>,
    /// The sender of the stream running now, to tell a draining stream from one the plugin
    /// holds half-read (which would never drain while the plugin waits on a new statement).
    current: Mutex<Option<StreamProbe>>,
    /// What the login may do beyond reading the catalog (see [`PgDb::privileges`]).
    privileges: Vec<String>,
    /// Cancels the running statement on the server when the host's timeout fires.
    canceller: Option<Arc<Canceller>>,
}

/// Sends PostgreSQL's cancel request for a session, to the address the login was checked
/// against and with the login's TLS settings. The host's timeout does not depend on the
/// session's `statement_timeout` (which a plugin cannot change, but defence in depth).
struct Canceller {
    token: tokio_postgres::CancelToken,
    addr: std::net::SocketAddr,
    host: String,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl Canceller {
    async fn cancel(&self) {
        let connect = tokio::net::TcpStream::connect(self.addr);
        let Ok(Ok(tcp)) = tokio::time::timeout(CANCEL_TIMEOUT, connect).await else {
            tracing::warn!(target = %self.addr, "could not reach the server to cancel a timed-out statement");
            return;
        };
        let sent = match &self.tls {
            None => {
                tokio::time::timeout(
                    CANCEL_TIMEOUT,
                    self.token.cancel_query_raw(tcp, tokio_postgres::NoTls),
                )
                .await
            }
            Some(make) => {
                let mut make = make.clone();
                // The error type is `Infallible` for rustls.
                let Ok(tls) = MakeTlsConnect::<tokio::net::TcpStream>::make_tls_connect(
                    &mut make, &self.host,
                );
                tokio::time::timeout(CANCEL_TIMEOUT, self.token.cancel_query_raw(tcp, tls)).await
            }
        };
        if !matches!(sent, Ok(Ok(()))) {
            tracing::warn!(target = %self.addr, "the cancel request for a timed-out statement failed");
        }
    }
}

/// How long sending a cancel request may take.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// What an error message may say about the connection; never the password itself.
struct Context<'a> {
    target: &'a str,
    user: &'a str,
    /// Scrubbed from connection error messages, in case a server or library echoes it.
    secret: Option<&'a str>,
}

impl PgDb {
    /// Connects, negotiates TLS as `params.tls` says, logs in, makes the session read-only
    /// and pins its `search_path` to `pg_catalog`.
    pub async fn connect(params: &ConnectParams) -> Result<PgDb, SqlError> {
        let target = format!("{}:{}", params.host, params.port);
        let ctx = Context {
            target: &target,
            user: &params.user,
            secret: Some(params.password.expose()).filter(|s| !s.is_empty()),
        };
        if params.host.is_empty() || params.user.is_empty() {
            return Err(SqlError::InvalidConfig(
                "a PostgreSQL endpoint needs a host and a user name".into(),
            ));
        }
        let mut config = tokio_postgres::Config::new();
        config
            .host(&params.host)
            .port(params.port)
            .user(&params.user)
            .application_name("airlock")
            .connect_timeout(params.connect_timeout)
            // SCRAM-SHA-256-PLUS when the server offers it over TLS.
            .channel_binding(ChannelBinding::Prefer);
        // Without a database, the maintenance database every cluster has (libpq would pick
        // the user's name, which rarely exists).
        config.dbname(params.database.as_deref().unwrap_or("postgres"));
        if let Some(addr) = params.addr {
            // Connect to the checked address; TLS still verifies `host`.
            config.hostaddr(addr);
        }
        // The TLS connector of the login, kept for the cancel requests of this session.
        let mut session_tls = None;
        let client = match params.tls.mode {
            TlsMode::Disable => {
                if !params.tls.allow_cleartext_password {
                    return Err(SqlError::Denied(format!(
                        "refusing to send a password to {target} without TLS (tls.mode = \"disable\"); \
                         use tls.mode = \"verify-full\", or set tls.allow_cleartext_password = true \
                         to accept the risk"
                    )));
                }
                config.ssl_mode(SslMode::Disable);
                login(config, tokio_postgres::NoTls, params, &ctx).await?
            }
            _ => {
                config.ssl_mode(SslMode::Require);
                let tls =
                    tokio_postgres_rustls::MakeRustlsConnect::new(client_config(&params.tls)?);
                session_tls = Some(tls.clone());
                login(config, tls, params, &ctx).await?
            }
        };
        let ctx = Context {
            secret: None,
            ..ctx
        };
        tokio::time::timeout(
            params.connect_timeout,
            // search_path pinned to pg_catalog: type names, defaults and view definitions
            // print schema-qualified whatever the role's search_path (`public.geometry`,
            // `nextval('s.seq'::regclass)`), and operators resolve in pg_catalog only.
            client.batch_execute(
                "SET default_transaction_read_only = on; SET search_path = pg_catalog",
            ),
        )
        .await
        .map_err(|_| timed_out(&ctx, params.connect_timeout))?
        .map_err(|e| map_error(&e, &ctx))?;
        let canceller = params.addr.map(|ip| {
            Arc::new(Canceller {
                token: client.cancel_token(),
                addr: std::net::SocketAddr::new(ip, params.port),
                host: params.host.clone(),
                tls: session_tls,
            })
        });
        let privileges = bounded(
            params.connect_timeout,
            client.query_one(PRIVILEGES_QUERY, &[]),
            &ctx,
        )
        .await
        .map(|row| privileges_of(&row))?;
        Ok(PgDb {
            client: Arc::new(client),
            target,
            busy: Arc::new(tokio::sync::Mutex::new(())),
            current: Mutex::new(None),
            privileges,
            canceller,
        })
    }

    /// `host:port` of the server.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// What this login may do that a metadata reader never needs: `superuser`, `createrole`,
    /// `replication`, or membership (direct or inherited) in `pg_read_server_files`,
    /// `pg_write_server_files`, `pg_execute_server_program`, `pg_read_all_data`,
    /// `pg_write_all_data`. Read by the host right after the login.
    pub fn privileges(&self) -> &[String] {
        &self.privileges
    }

    /// Runs one statement in its own read-only transaction and streams its rows. `timeout`
    /// bounds the statement on the server (`statement_timeout`) and every wait on the network.
    pub async fn query(
        &self,
        statement: String,
        params: Vec<DbValue>,
        timeout: Duration,
        budget: &std::sync::Arc<MemoryBudget>,
    ) -> Result<SqlRows, SqlError> {
        let ctx = Context {
            target: &self.target,
            user: "",
            secret: None,
        };
        let guard = self.acquire(timeout).await?;
        let client = self.client.clone();
        let millis = timeout.as_millis().clamp(1, i32::MAX as u128);
        // The host's `SELECT 1` takes the transaction's snapshot before the plugin's
        // statement runs, so nothing the plugin sends can make the transaction read-write
        // (`SET TRANSACTION READ WRITE` must come before any query).
        let begin = format!("BEGIN READ ONLY; SET LOCAL statement_timeout = {millis}; SELECT 1");
        let prepared = async {
            bounded(timeout, client.batch_execute(&begin), &ctx).await?;
            let types: Vec<Type> = params.iter().map(param_type).collect();
            let stmt = bounded(timeout, client.prepare_typed(&statement, &types), &ctx).await?;
            let stream = bounded(
                timeout,
                client.query_raw(&stmt, params.iter().map(Param)),
                &ctx,
            )
            .await?;
            Ok::<_, SqlError>((stmt, stream))
        }
        .await;
        let (stmt, stream) = match prepared {
            Ok(ok) => ok,
            Err(e) => {
                if matches!(e, SqlError::Limit(_)) {
                    if let Some(c) = &self.canceller {
                        c.cancel().await;
                    }
                }
                // The transaction is aborted or was never opened; end it before the next
                // statement. Its outcome changes nothing for this error.
                let _ = tokio::time::timeout(timeout, client.batch_execute("ROLLBACK")).await;
                return Err(e);
            }
        };
        let columns: Vec<(String, String)> = stmt
            .columns()
            .iter()
            .map(|c| (c.name().to_string(), c.type_().name().to_string()))
            .collect();
        let (tx, rx) = super::row_channel(budget);
        if let Ok(mut current) = self.current.lock() {
            *current = Some(tx.probe());
        }
        let target = self.target.clone();
        let canceller = self.canceller.clone();
        tokio::spawn(async move {
            let _guard: OwnedMutexGuard<()> = guard;
            let ctx = Context {
                target: &target,
                user: "",
                secret: None,
            };
            let timed_out = stream_rows(stream, &tx, timeout, &ctx).await;
            drop(tx);
            if timed_out {
                if let Some(c) = &canceller {
                    c.cancel().await;
                }
            }
            // Ends the read-only transaction (discarding what the server still sends when
            // the plugin stopped reading early) before the next statement may start.
            let _ = tokio::time::timeout(timeout, client.batch_execute("ROLLBACK")).await;
            drop(stmt);
        });
        Ok(SqlRows::streamed(columns, rx))
    }

    /// Waits until no other statement's rows are streaming on this connection.
    async fn acquire(&self, timeout: Duration) -> Result<OwnedMutexGuard<()>, SqlError> {
        let started = Instant::now();
        loop {
            if let Ok(guard) = tokio::time::timeout(BUSY_POLL, self.busy.clone().lock_owned()).await
            {
                return Ok(guard);
            }
            // The previous stream's buffer is full and its reader is alive: it drains only
            // when the plugin reads it, which it will not do while it waits here.
            let stalled = self
                .current
                .lock()
                .ok()
                .is_some_and(|c| c.as_ref().is_some_and(StreamProbe::stalled));
            if stalled {
                return Err(SqlError::Source(format!(
                    "the rows of the previous statement on the connection to {} are still unread; \
                     read them to the end or drop them before the next statement",
                    self.target
                )));
            }
            if started.elapsed() >= timeout {
                return Err(SqlError::Limit(format!(
                    "the previous statement on the connection to {} did not finish within {} s \
                     (limits.query_timeout_s)",
                    self.target,
                    timeout.as_secs()
                )));
            }
        }
    }
}

/// Connects with `tls` and spawns the task that drives the connection.
async fn login<T>(
    config: tokio_postgres::Config,
    tls: T,
    params: &ConnectParams,
    ctx: &Context<'_>,
) -> Result<tokio_postgres::Client, SqlError>
where
    T: MakeTlsConnect<Socket> + Send + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as tokio_postgres::tls::TlsConnect<Socket>>::Future: Send,
{
    let mut config = config;
    // tokio-postgres keeps its own copy in `config`, which is dropped when this returns.
    config.password(params.password.expose().as_bytes());
    let connecting = config.connect(tls);
    // The library's own connect timeout covers the TCP connect only; this covers the TLS
    // handshake and the login too.
    let (client, connection) = tokio::time::timeout(params.connect_timeout, connecting)
        .await
        .map_err(|_| timed_out(ctx, params.connect_timeout))?
        .map_err(|e| map_error(&e, ctx))?;
    drop(config);
    tokio::spawn(async move {
        // The connection ends when the client is dropped or the server goes away; the
        // client's next call reports that as "connection closed".
        let _ = connection.await;
    });
    Ok(client)
}

/// Feeds decoded rows into `tx` until the stream ends, fails, or the reader goes away;
/// true when it stopped because the server did not answer in time.
async fn stream_rows(
    stream: tokio_postgres::RowStream,
    tx: &RowSender,
    timeout: Duration,
    ctx: &Context<'_>,
) -> bool {
    let mut stream = std::pin::pin!(stream);
    loop {
        let next = tokio::select! {
            _ = tx.closed() => return false,
            next = tokio::time::timeout(timeout, stream.next()) => next,
        };
        let (item, late) = match next {
            Err(_) => (Err(timed_out(ctx, timeout)), true),
            Ok(None) => return false,
            Ok(Some(Err(e))) => (Err(map_error(&e, ctx)), false),
            Ok(Some(Ok(row))) => (decode_row(&row), false),
        };
        let failed = item.is_err();
        if tx.send(item).await.is_err() || failed {
            return late;
        }
    }
}

/// The host's own query for what the login may do (never a plugin's statement).
const PRIVILEGES_QUERY: &str = "SELECT r.rolsuper, r.rolcreaterole, r.rolreplication, \
     ARRAY(SELECT g.rolname::text FROM pg_catalog.pg_roles g \
           WHERE g.rolname IN ('pg_read_server_files', 'pg_write_server_files', \
                               'pg_execute_server_program', 'pg_read_all_data', \
                               'pg_write_all_data') \
             AND pg_catalog.pg_has_role(r.oid, g.oid, 'MEMBER') ORDER BY 1) \
     FROM pg_catalog.pg_roles r WHERE r.rolname = current_user";

fn privileges_of(row: &tokio_postgres::Row) -> Vec<String> {
    let mut out = Vec::new();
    for (i, name) in ["superuser", "createrole", "replication"]
        .iter()
        .enumerate()
    {
        if row.try_get::<_, bool>(i).unwrap_or(false) {
            out.push(name.to_string());
        }
    }
    out.extend(row.try_get::<_, Vec<String>>(3).unwrap_or_default());
    out
}

/// Awaits a driver call with a timeout, mapping both failures.
async fn bounded<T>(
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ctx: &Context<'_>,
) -> Result<T, SqlError> {
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| timed_out(ctx, timeout))?
        .map_err(|e| map_error(&e, ctx))
}

fn timed_out(ctx: &Context<'_>, timeout: Duration) -> SqlError {
    SqlError::Limit(format!(
        "{} did not answer within {} s",
        ctx.target,
        timeout.as_secs_f32()
    ))
}

// ---------------------------------------------------------------------------------------
// TLS

/// Builds the rustls client configuration for a verifying or non-verifying mode.
fn client_config(tls: &TlsSettings) -> Result<rustls::ClientConfig, SqlError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| SqlError::InvalidConfig(format!("TLS setup failed: {e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = match tls.mode {
        TlsMode::Require => Arc::new(AnyCertificate(provider)),
        TlsMode::VerifyCa => Arc::new(IgnoreHostName(webpki_verifier(tls, provider)?)),
        TlsMode::VerifyFull | TlsMode::Disable => webpki_verifier(tls, provider)?,
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// The standard chain-and-name verifier over the system roots plus `ca_file`.
fn webpki_verifier(
    tls: &TlsSettings,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, SqlError> {
    let mut roots = RootCertStore::empty();
    // Unreadable system certificates are skipped, as every TLS client does; a bad ca_file
    // is an error because the workflow asked for it.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = &tls.ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            SqlError::InvalidConfig(format!(
                "tls.ca_file {} cannot be read: {e}",
                path.display()
            ))
        })?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| {
                SqlError::InvalidConfig(format!(
                    "tls.ca_file {} is not valid PEM: {e}",
                    path.display()
                ))
            })?;
            roots.add(cert).map_err(|e| {
                SqlError::InvalidConfig(format!(
                    "tls.ca_file {} holds a certificate rustls rejects: {e}",
                    path.display()
                ))
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(SqlError::InvalidConfig(format!(
                "tls.ca_file {} holds no PEM certificate",
                path.display()
            )));
        }
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| {
            SqlError::InvalidConfig(format!(
                "no trusted CA certificates for TLS verification ({e}); set tls.ca_file"
            ))
        })
}

/// `verify-ca`: the full chain check, except that the certificate may name another host.
#[derive(Debug)]
struct IgnoreHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for IgnoreHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            // webpki checks the name only after the chain, so this error means the chain
            // itself was valid.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

// ---------------------------------------------------------------------------------------
// Errors

/// Maps a driver error onto the capability's kinds. Messages name the endpoint and user but
/// never the password or a connection string (the driver is configured field by field, so no
/// connection string exists).
fn map_error(e: &tokio_postgres::Error, ctx: &Context<'_>) -> SqlError {
    let target = ctx.target;
    let mapped = if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let message = db.message();
        match code {
            _ if code.starts_with("28") => SqlError::Denied(format!(
                "authentication failed for user \"{}\" on {target}: {message}",
                ctx.user
            )),
            "57014" => SqlError::Limit(format!(
                "statement cancelled on {target}: {message} (limits.query_timeout_s)"
            )),
            "25006" => SqlError::Denied(format!(
                "statement not allowed on a read-only source: {message}"
            )),
            "42501" => SqlError::Denied(format!("{message} (SQLSTATE {code})")),
            _ if code.starts_with("08") || code.starts_with("53") || code.starts_with("57P") => {
                SqlError::Unavailable(format!("{target}: {message} (SQLSTATE {code})"))
            }
            _ => SqlError::Source(format!("{message} (SQLSTATE {code})")),
        }
    } else if let Some(tls) = find_rustls_error(e) {
        SqlError::Denied(format!("TLS handshake with {target} failed: {tls}"))
    } else {
        let text = e.to_string();
        if text.starts_with("error performing TLS handshake") {
            SqlError::Denied(format!("{target}: {text}"))
        } else if text.starts_with("error authenticating") {
            SqlError::Denied(format!(
                "authentication failed for user \"{}\" on {target}: {text}",
                ctx.user
            ))
        } else if e.is_closed() || find_io_error(e) {
            SqlError::Unavailable(format!("cannot reach {target}: {text}"))
        } else {
            SqlError::Source(format!("{target}: {text}"))
        }
    };
    match ctx.secret {
        Some(secret) => scrub(mapped, secret),
        None => mapped,
    }
}

/// Replaces any occurrence of the secret in an error message.
fn scrub(e: SqlError, secret: &str) -> SqlError {
    let fix = |m: String| {
        if m.contains(secret) {
            m.replace(secret, "[redacted]")
        } else {
            m
        }
    };
    match e {
        SqlError::InvalidConfig(m) => SqlError::InvalidConfig(fix(m)),
        SqlError::Denied(m) => SqlError::Denied(fix(m)),
        SqlError::Unavailable(m) => SqlError::Unavailable(fix(m)),
        SqlError::Source(m) => SqlError::Source(fix(m)),
        SqlError::Limit(m) => SqlError::Limit(fix(m)),
        SqlError::Refused(r) => SqlError::Refused(r),
    }
}

/// The rustls error behind a failed handshake (tokio-rustls wraps it in an `io::Error`).
fn find_rustls_error(e: &tokio_postgres::Error) -> Option<rustls::Error> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<rustls::Error>() {
            return Some(r.clone());
        }
        if let Some(r) = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(r.clone());
        }
        source = s.source();
    }
    None
}

fn find_io_error(e: &tokio_postgres::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

// ---------------------------------------------------------------------------------------
// Parameters

/// The type a parameter is declared with; the server converts from it as SQL would
/// (`int2_column = $1` works with an `int8` parameter). NULL is left for the server to infer.
fn param_type(v: &DbValue) -> Type {
    match v {
        DbValue::Null => Type::UNKNOWN,
        DbValue::Bool(_) => Type::BOOL,
        DbValue::Int(_) => Type::INT8,
        DbValue::Float(_) => Type::FLOAT8,
        DbValue::Text(_) => Type::TEXT,
        DbValue::Bytes(_) => Type::BYTEA,
    }
}

/// A plugin parameter. Everything but bytes is sent in the text format, which the server
/// parses for whatever type it settled on.
#[derive(Debug)]
struct Param<'a>(&'a DbValue);

impl ToSql for Param<'_> {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        use std::fmt::Write;
        match self.0 {
            DbValue::Null => return Ok(IsNull::Yes),
            DbValue::Bool(b) => out.extend_from_slice(if *b { b"t" } else { b"f" }),
            DbValue::Int(i) => write!(out, "{i}")?,
            DbValue::Float(f) if f.is_nan() => out.extend_from_slice(b"NaN"),
            DbValue::Float(f) if f.is_infinite() => {
                out.extend_from_slice(if *f > 0.0 { b"Infinity" } else { b"-Infinity" })
            }
            DbValue::Float(f) => write!(out, "{f:?}")?,
            DbValue::Text(s) => out.extend_from_slice(s.as_bytes()),
            DbValue::Bytes(b) => out.extend_from_slice(b),
        }
        Ok(IsNull::No)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        match self.0 {
            DbValue::Bytes(_) => Format::Binary,
            _ => Format::Text,
        }
    }

    to_sql_checked!();
}

// ---------------------------------------------------------------------------------------
// Values

/// One result value of any type.
struct Value(DbValue);

impl<'a> FromSql<'a> for Value {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        decode(ty, raw).map(Value)
    }

    fn from_sql_null(_ty: &Type) -> Result<Self, BoxError> {
        Ok(Value(DbValue::Null))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

fn decode_row(row: &tokio_postgres::Row) -> Result<Vec<DbValue>, SqlError> {
    (0..row.len())
        .map(|i| {
            row.try_get::<_, Value>(i).map(|v| v.0).map_err(|e| {
                let column = row.columns().get(i).map(|c| c.name()).unwrap_or("?");
                SqlError::Source(format!("column `{column}` cannot be decoded: {e}"))
            })
        })
        .collect()
}

fn decode(ty: &Type, raw: &[u8]) -> Result<DbValue, BoxError> {
    let v = match *ty {
        Type::BOOL => DbValue::Bool(raw.first().is_some_and(|b| *b != 0)),
        Type::INT2 => DbValue::Int(i16::from_be_bytes(fixed(raw)?).into()),
        Type::INT4 => DbValue::Int(i32::from_be_bytes(fixed(raw)?).into()),
        Type::INT8 => DbValue::Int(i64::from_be_bytes(fixed(raw)?)),
        Type::OID
        | Type::XID
        | Type::CID
        | Type::REGPROC
        | Type::REGPROCEDURE
        | Type::REGOPER
        | Type::REGOPERATOR
        | Type::REGCLASS
        | Type::REGTYPE
        | Type::REGCONFIG
        | Type::REGDICTIONARY
        | Type::REGNAMESPACE
        | Type::REGROLE
        | Type::REGCOLLATION => DbValue::Int(u32::from_be_bytes(fixed(raw)?).into()),
        Type::FLOAT4 => DbValue::Float(f32::from_be_bytes(fixed(raw)?).into()),
        Type::FLOAT8 => DbValue::Float(f64::from_be_bytes(fixed(raw)?)),
        Type::NUMERIC => DbValue::Text(numeric_text(raw)?),
        Type::TEXT
        | Type::VARCHAR
        | Type::BPCHAR
        | Type::NAME
        | Type::UNKNOWN
        | Type::JSON
        | Type::XML
        | Type::PG_NODE_TREE => DbValue::Text(utf8(raw)),
        // "char": one byte.
        Type::CHAR => DbValue::Text(utf8(raw)),
        Type::JSONB => match raw.split_first() {
            Some((1, text)) => DbValue::Text(utf8(text)),
            _ => DbValue::Bytes(raw.to_vec()),
        },
        Type::BYTEA => DbValue::Bytes(raw.to_vec()),
        Type::UUID => DbValue::Text(uuid_text(raw)?),
        Type::DATE => DbValue::Text(date_text(i32::from_be_bytes(fixed(raw)?))),
        Type::TIMESTAMP => DbValue::Text(timestamp_text(i64::from_be_bytes(fixed(raw)?), "")),
        Type::TIMESTAMPTZ => DbValue::Text(timestamp_text(i64::from_be_bytes(fixed(raw)?), "Z")),
        Type::TIME => DbValue::Text(time_text(i64::from_be_bytes(fixed(raw)?))),
        _ => match ty.kind() {
            Kind::Enum(_) => DbValue::Text(utf8(raw)),
            Kind::Domain(inner) => decode(inner, raw)?,
            Kind::Array(member) => DbValue::Text(array_json(member, raw)?.to_string()),
            _ => DbValue::Bytes(raw.to_vec()),
        },
    };
    Ok(v)
}

fn fixed<const N: usize>(raw: &[u8]) -> Result<[u8; N], BoxError> {
    raw.try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", raw.len()).into())
}

fn utf8(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

fn uuid_text(raw: &[u8]) -> Result<String, BoxError> {
    let b: [u8; 16] = fixed(raw)?;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// Days since 2000-01-01 as `YYYY-MM-DD`.
fn date_text(days: i32) -> String {
    match days {
        i32::MAX => "infinity".into(),
        i32::MIN => "-infinity".into(),
        _ => chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
            .and_then(|epoch| epoch.checked_add_signed(chrono::TimeDelta::days(days.into())))
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_else(|| format!("{days} days after 2000-01-01")),
    }
}

/// Microseconds since 2000-01-01 00:00 as ISO 8601 (UTC for `timestamptz`).
fn timestamp_text(micros: i64, zone: &str) -> String {
    match micros {
        i64::MAX => "infinity".into(),
        i64::MIN => "-infinity".into(),
        _ => chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .and_then(|epoch| epoch.checked_add_signed(chrono::TimeDelta::microseconds(micros)))
            .map(|t| format!("{}{zone}", t.format("%Y-%m-%dT%H:%M:%S%.f")))
            .unwrap_or_else(|| format!("{micros} µs after 2000-01-01")),
    }
}

/// Microseconds since midnight as `HH:MM:SS[.ffffff]`.
fn time_text(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let base = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if frac == 0 {
        base
    } else {
        format!("{base}.{frac:06}")
    }
}

/// The binary `numeric` format (base-10000 digits) as exact decimal text.
fn numeric_text(raw: &[u8]) -> Result<String, BoxError> {
    let word = |i: usize| -> Result<u16, BoxError> {
        raw.get(i * 2..i * 2 + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "truncated numeric".into())
    };
    let ndigits = usize::from(word(0)?);
    let weight = word(1)? as i16 as i32;
    let sign = word(2)?;
    let dscale = usize::from(word(3)?);
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let digits: Vec<u16> = (0..ndigits)
        .map(|i| word(4 + i))
        .collect::<Result<_, _>>()?;
    if digits.iter().any(|d| *d > 9999) {
        return Err("malformed numeric digit".into());
    }
    let digit_at = |pos: i32| -> u16 {
        // `pos` counts base-10000 groups from the decimal point: 0 is the units group.
        let idx = weight - pos;
        if idx >= 0 && (idx as usize) < digits.len() {
            digits[idx as usize]
        } else {
            0
        }
    };
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for pos in (0..=weight).rev() {
            let d = digit_at(pos);
            if pos == weight {
                out.push_str(&d.to_string());
            } else {
                out.push_str(&format!("{d:04}"));
            }
        }
    }
    if dscale > 0 {
        out.push('.');
        let mut frac = String::new();
        let mut pos = -1;
        while frac.len() < dscale {
            frac.push_str(&format!("{:04}", digit_at(pos)));
            pos -= 1;
        }
        frac.truncate(dscale);
        out.push_str(&frac);
    }
    Ok(out)
}

/// A binary array (any number of dimensions) as JSON, nested per dimension.
fn array_json(member: &Type, raw: &[u8]) -> Result<serde_json::Value, BoxError> {
    let array = postgres_protocol_array(raw)?;
    let mut values = Vec::with_capacity(array.elements.len());
    for element in array.elements {
        values.push(match element {
            None => serde_json::Value::Null,
            Some(bytes) => match decode(member, bytes)? {
                DbValue::Null => serde_json::Value::Null,
                DbValue::Bool(b) => b.into(),
                DbValue::Int(i) => i.into(),
                DbValue::Float(f) => serde_json::Number::from_f64(f)
                    .map(serde_json::Value::Number)
                    .unwrap_or_else(|| f.to_string().into()),
                DbValue::Text(s) => s.into(),
                DbValue::Bytes(b) => format!("\\x{}", hex::encode(b)).into(),
            },
        });
    }
    // Nest from the innermost dimension outwards.
    for len in array.dims.iter().skip(1).rev() {
        let len = (*len).max(1);
        values = values
            .chunks(len)
            .map(|c| serde_json::Value::Array(c.to_vec()))
            .collect();
    }
    Ok(serde_json::Value::Array(values))
}

struct RawArray<'a> {
    dims: Vec<usize>,
    elements: Vec<Option<&'a [u8]>>,
}

/// Parses the binary array header and elements without trusting any length in it.
fn postgres_protocol_array(raw: &[u8]) -> Result<RawArray<'_>, BoxError> {
    let mut cur = Cursor(raw);
    let ndim = cur.int()?;
    let _has_nulls = cur.int()?;
    let _element_oid = cur.int()?;
    if !(0..=6).contains(&ndim) {
        return Err("malformed array dimensions".into());
    }
    let mut dims = Vec::new();
    let mut total: usize = if ndim == 0 { 0 } else { 1 };
    for _ in 0..ndim {
        let len = usize::try_from(cur.int()?).map_err(|_| "negative array length")?;
        let _lower_bound = cur.int()?;
        total = total.checked_mul(len).ok_or("array too large")?;
        dims.push(len);
    }
    let mut elements = Vec::new();
    for _ in 0..total {
        let len = cur.int()?;
        // A negative length is SQL NULL.
        elements.push(match usize::try_from(len) {
            Ok(len) => Some(cur.take(len)?),
            Err(_) => None,
        });
    }
    Ok(RawArray { dims, elements })
}

/// Reads a binary value front to back, failing instead of panicking on short input.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BoxError> {
        if self.0.len() < n {
            return Err("truncated array".into());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn int(&mut self) -> Result<i32, BoxError> {
        Ok(i32::from_be_bytes(fixed(self.take(4)?)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut v = Vec::new();
        for w in [digits.len() as u16, weight as u16, sign, dscale] {
            v.extend_from_slice(&w.to_be_bytes());
        }
        for d in digits {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    #[test]
    fn numerics_decode_exactly() {
        assert_eq!(numeric_text(&numeric(0, 0, 0, &[])).unwrap(), "0");
        assert_eq!(numeric_text(&numeric(0, 0, 2, &[])).unwrap(), "0.00");
        assert_eq!(
            numeric_text(&numeric(1, 0, 3, &[12, 3456, 7800])).unwrap(),
            "123456.780"
        );
        assert_eq!(
            numeric_text(&numeric(-1, 0x4000, 5, &[50])).unwrap(),
            "-0.00500"
        );
        assert_eq!(numeric_text(&numeric(2, 0, 0, &[1])).unwrap(), "100000000");
        assert_eq!(numeric_text(&numeric(0, 0xC000, 0, &[])).unwrap(), "NaN");
        assert!(numeric_text(&[0, 1]).is_err());
    }

    #[test]
    fn arrays_decode_to_json() {
        // int4[] {{1,2},{3,NULL}}
        let mut raw = Vec::new();
        for i in [2i32, 1, 23, 2, 1, 2, 1] {
            raw.extend_from_slice(&i.to_be_bytes());
        }
        for v in [1i32, 2, 3] {
            raw.extend_from_slice(&4i32.to_be_bytes());
            raw.extend_from_slice(&v.to_be_bytes());
        }
        raw.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(
            array_json(&Type::INT4, &raw).unwrap().to_string(),
            "[[1,2],[3,null]]"
        );
        assert!(array_json(&Type::INT4, &raw[..raw.len() - 2]).is_err());
    }

    #[test]
    fn times_decode() {
        assert_eq!(date_text(0), "2000-01-01");
        assert_eq!(date_text(-1), "1999-12-31");
        assert_eq!(timestamp_text(1_500_000, "Z"), "2000-01-01T00:00:01.500Z");
        assert_eq!(time_text(3_723_000_001), "01:02:03.000001");
    }

    #[test]
    fn secrets_are_scrubbed() {
        let e = scrub(SqlError::Denied("bad hunter2 here".into()), "hunter2");
        assert_eq!(e.to_string(), "bad [redacted] here");
    }
}
