//! The MySQL / MariaDB driver: one read-only session per plugin connection, TLS on rustls.
//!
//! - **TLS** follows [`TlsMode`]: `verify-full` checks the chain and the host name, `verify-ca`
//!   only the chain, `require` encrypts without checking, `disable` sends the login in the
//!   clear and is refused unless the workflow sets `allow_cleartext_password`. Trusted roots
//!   are the system's (`rustls-native-certs`) plus the workflow's `ca_file`.
//! - **Read-only**: the session is `SET SESSION TRANSACTION READ ONLY`, statements go through
//!   the binary (prepared) protocol, which executes exactly one statement, and only statements
//!   that start with a reading keyword are sent at all. The account's grants remain the real
//!   boundary; these are defence in depth against a plugin that tries to write.
//! - **Streaming**: rows are read by a task that feeds a bounded channel, so a catalog query
//!   of millions of rows never sits in host memory; dropping the rows stops the task.
//! - **Errors** are rebuilt from error codes and the server's message; no message contains the
//!   password, and no connection URL is ever built (the options are set field by field).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mysql_async::consts::ColumnType;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Params, SslOpts, Value};
use tokio::sync::{oneshot, Mutex};

use super::{ConnectParams, DbValue, SqlError, SqlRows, TlsMode};
use crate::runtime::budget::MemoryBudget;

/// `ER_ACCESS_DENIED_ERROR`: wrong user name or password.
const ER_ACCESS_DENIED: u16 = 1045;
/// `ER_DBACCESS_DENIED_ERROR`: the user may not use the requested database.
const ER_DBACCESS_DENIED: u16 = 1044;
/// `ER_BAD_DB_ERROR`: the requested database does not exist.
const ER_BAD_DB: u16 = 1049;
/// Privilege errors on a statement (table, column, command, specific privilege).
const PRIVILEGE_ERRORS: &[u16] = &[1142, 1143, 1227, 1370];
/// `ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION`.
const ER_READ_ONLY_TRANSACTION: u16 = 1792;
/// MariaDB `ER_STATEMENT_TIMEOUT` (max_statement_time) and MySQL `ER_QUERY_TIMEOUT`
/// (max_execution_time).
const TIMEOUT_ERRORS: &[u16] = &[1969, 3024];
/// `ER_QUERY_INTERRUPTED` (the server killed the statement, e.g. on shutdown or KILL QUERY).
const ER_QUERY_INTERRUPTED: u16 = 1317;

/// Leading keywords of the statements a plugin may send. Everything else (DML, DDL, `SET`,
/// `CALL`, `LOAD`, `HANDLER`, ...) is refused before it reaches the server.
const READ_KEYWORDS: &[&str] = &["SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN"];

/// Extra time the host waits beyond the server-side statement timeout before giving up on a
/// server that does not enforce it (MySQL's `max_execution_time` only covers `SELECT`).
const TIMEOUT_GRACE: Duration = Duration::from_secs(5);

/// An open, read-only MySQL or MariaDB session.
pub struct MysqlDb {
    conn: Arc<Mutex<Conn>>,
    /// The server is MariaDB (`max_statement_time`) rather than MySQL (`max_execution_time`).
    mariadb: bool,
    /// `user@host:port`, for messages.
    target: String,
    /// Set when a statement was abandoned mid-protocol; the session cannot be reused then.
    broken: Arc<AtomicBool>,
    /// The statement timeout currently set on the session, to avoid a `SET` per statement.
    session_timeout: Arc<std::sync::Mutex<Option<Duration>>>,
    /// What the login may do beyond reading the catalog (see [`MysqlDb::privileges`]).
    privileges: Vec<String>,
}

impl MysqlDb {
    /// Connects and logs in with `params`, then makes the session read-only.
    ///
    /// Refuses `mode = "disable"` unless `allow_cleartext_password` is set: the MySQL
    /// handshake would then cross the network unprotected (and `caching_sha2_password`
    /// can be downgraded to sending the password itself).
    pub async fn connect(params: &ConnectParams) -> Result<MysqlDb, SqlError> {
        let target = format!("{}@{}:{}", params.user, params.host, params.port);
        if params.tls.mode == TlsMode::Disable && !params.tls.allow_cleartext_password {
            return Err(SqlError::Denied(format!(
                "refusing to log in to {}:{} without TLS (tls.mode = \"disable\"); set \
                 tls.allow_cleartext_password = true to allow it",
                params.host, params.port
            )));
        }
        let ssl = ssl_opts(params).await?;
        let verified = matches!(params.tls.mode, TlsMode::VerifyCa | TlsMode::VerifyFull);
        // Connect to the checked address; TLS still verifies `host` (see `ssl_opts`).
        let connect_to = params
            .addr
            .map(|a| a.to_string())
            .unwrap_or_else(|| params.host.clone());
        let opts = OptsBuilder::default()
            .ip_or_hostname(connect_to)
            .tcp_port(params.port)
            .user(Some(params.user.clone()))
            // mysql_async keeps its options (and so this copy) for the connection's lifetime;
            // there is no way to log in without handing it the password.
            .pass(Some(params.password.expose()))
            .db_name(params.database.clone())
            // On a loopback address mysql_async would otherwise reconnect through the server's
            // unix socket, silently leaving the TLS the workflow asked for.
            .prefer_socket(false)
            // The cleartext plugin sends the password itself; allow it only on a connection
            // whose server identity was verified.
            .enable_cleartext_plugin(verified)
            .ssl_opts(ssl)
            .stmt_cache_size(32);

        let conn = match tokio::time::timeout(params.connect_timeout, Conn::new(opts)).await {
            Err(_) => {
                return Err(SqlError::Unavailable(format!(
                    "connecting to {}:{} timed out after {} s",
                    params.host,
                    params.port,
                    params.connect_timeout.as_secs()
                )))
            }
            Ok(Err(e)) => return Err(scrub(connect_error(e, params), params)),
            Ok(Ok(conn)) => conn,
        };
        let mut conn = conn;
        let version: Option<String> = conn
            .query_first("SELECT VERSION()")
            .await
            .map_err(|e| scrub(statement_error(e), params))?;
        let mariadb = version.is_some_and(|v| v.contains("MariaDB"));
        conn.query_drop("SET SESSION TRANSACTION READ ONLY")
            .await
            .map_err(|e| scrub(statement_error(e), params))?;
        // The grants of the login and its enabled roles. A grant line may carry the
        // password hash: the lines are only parsed, never logged or returned.
        let grants: Vec<String> = conn
            .query("SHOW GRANTS")
            .await
            .map_err(|e| scrub(statement_error(e), params))?;
        let privileges = privileges_in_grants(&grants);
        drop(grants);
        Ok(MysqlDb {
            conn: Arc::new(Mutex::new(conn)),
            mariadb,
            target,
            broken: Arc::new(AtomicBool::new(false)),
            session_timeout: Arc::new(std::sync::Mutex::new(None)),
            privileges,
        })
    }

    /// `user@host:port` of the session.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// What this login may do that a metadata reader never needs: `FILE`, `SUPER`,
    /// `ALL PRIVILEGES` or `CREATE USER` on `*.*`, or any grant `WITH GRANT OPTION`. Read by
    /// the host right after the login.
    pub fn privileges(&self) -> &[String] {
        &self.privileges
    }

    /// Runs one read-only statement with positional `?` parameters. Returns once the server
    /// has sent the result's columns; the rows stream behind them.
    pub async fn query(
        &self,
        statement: String,
        params: Vec<DbValue>,
        timeout: Duration,
        budget: &std::sync::Arc<MemoryBudget>,
    ) -> Result<SqlRows, SqlError> {
        check_read_only(&statement)?;
        if self.broken.load(Ordering::SeqCst) {
            return Err(SqlError::Unavailable(format!(
                "the connection to {} was abandoned after an earlier timeout; open a new one",
                self.target
            )));
        }
        let params: Vec<Value> = params.into_iter().map(to_mysql).collect();
        let params = if params.is_empty() {
            Params::Empty
        } else {
            Params::Positional(params)
        };
        // One session runs one statement at a time. The lock is free once the previous
        // query's rows were read to the end or dropped; a plugin that keeps them open and
        // queries again waits at most the timeout (nothing is half-sent, so no harm done).
        let Ok(mut conn) =
            tokio::time::timeout(timeout + TIMEOUT_GRACE, self.conn.clone().lock_owned()).await
        else {
            return Err(SqlError::Limit(format!(
                "the connection to {} is still streaming an earlier query's rows; read them \
                 to the end or drop them before the next query",
                self.target
            )));
        };
        let set_timeout = {
            let mut current = self
                .session_timeout
                .lock()
                .map_err(|_| SqlError::Unavailable("connection state is poisoned".into()))?;
            if *current == Some(timeout) {
                None
            } else {
                *current = Some(timeout);
                Some(timeout_statement(self.mariadb, timeout))
            }
        };
        let (columns_tx, columns_rx) = oneshot::channel();
        let (rows_tx, rows_rx) = super::row_channel(budget);
        let session_timeout = self.session_timeout.clone();
        let task = tokio::spawn(async move {
            if let Some(set) = set_timeout {
                if let Err(e) = conn.query_drop(set).await {
                    // Forget the recorded timeout so the next statement sets it again.
                    if let Ok(mut t) = session_timeout.lock() {
                        *t = None;
                    }
                    let _ = columns_tx.send(Err(statement_error(e)));
                    return;
                }
            }
            let mut result = match conn.exec_iter(statement.as_str(), params).await {
                Ok(r) => r,
                Err(e) => {
                    let _ = columns_tx.send(Err(statement_error(e)));
                    return;
                }
            };
            let columns: Vec<(String, String)> = result
                .columns_ref()
                .iter()
                .map(|c| {
                    (
                        c.name_str().into_owned(),
                        type_name(c.column_type()).to_string(),
                    )
                })
                .collect();
            let kinds: Vec<ColumnType> = result
                .columns_ref()
                .iter()
                .map(|c| c.column_type())
                .collect();
            if columns_tx.send(Ok(columns)).is_err() {
                return;
            }
            loop {
                let row = match result.next().await {
                    Ok(Some(row)) => row,
                    Ok(None) => break,
                    Err(e) => {
                        let _ = rows_tx.send(Err(statement_error(e))).await;
                        return;
                    }
                };
                let values: Vec<DbValue> = row
                    .unwrap_raw()
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| from_mysql(v, kinds.get(i).copied()))
                    .collect();
                if rows_tx.send(Ok(values)).await.is_err() {
                    // The plugin dropped its rows (or they passed the run's memory budget):
                    // stop reading. mysql_async drains what the server still sends before the
                    // connection's next statement.
                    return;
                }
            }
            // A statement may return further result sets; they are of no use to the plugin.
            let _ = result.drop_result().await;
        });
        match tokio::time::timeout(timeout + TIMEOUT_GRACE, columns_rx).await {
            Ok(Ok(Ok(columns))) => Ok(SqlRows::streamed(columns, rows_rx)),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(SqlError::Unavailable(format!(
                "the query task for {} ended unexpectedly",
                self.target
            ))),
            Err(_) => {
                // The statement is abandoned in the middle of the protocol: the session's
                // state is unknown, so it is not used again.
                task.abort();
                self.broken.store(true, Ordering::SeqCst);
                Err(SqlError::Limit(format!(
                    "query did not finish within {} s (limits.query_timeout_s)",
                    timeout.as_secs()
                )))
            }
        }
    }
}

/// The statement that sets the server-side statement timeout of the session.
fn timeout_statement(mariadb: bool, timeout: Duration) -> String {
    if mariadb {
        // Seconds, fractional allowed; 0 would mean "no limit", so at least 1 ms.
        format!(
            "SET SESSION max_statement_time = {:.3}",
            timeout.as_secs_f64().max(0.001)
        )
    } else {
        format!(
            "SET SESSION max_execution_time = {}",
            timeout.as_millis().clamp(1, u128::from(u32::MAX))
        )
    }
}

/// Builds the TLS options for `params.tls`, or `None` for `disable`.
async fn ssl_opts(params: &ConnectParams) -> Result<Option<SslOpts>, SqlError> {
    let tls = &params.tls;
    if tls.mode == TlsMode::Disable {
        return Ok(None);
    }
    // mysql_async's built-in roots are a compiled-in Mozilla list; the system's store is what
    // administrators manage (and what a company's internal CA is added to), so use that.
    // Each entry is one DER certificate or a PEM bundle.
    let mut roots: Vec<Vec<u8>> = Vec::new();
    let native = tokio::task::spawn_blocking(rustls_native_certs::load_native_certs)
        .await
        .map_err(|e| SqlError::Unavailable(format!("loading the system CA store failed: {e}")))?;
    for cert in native.certs {
        roots.push(cert.as_ref().to_vec());
    }
    if let Some(ca_file) = &tls.ca_file {
        let pem = tokio::fs::read(ca_file).await.map_err(|e| {
            SqlError::InvalidConfig(format!(
                "tls.ca_file {} cannot be read: {e}",
                ca_file.display()
            ))
        })?;
        let count = rustls_pki_types::pem::PemObject::pem_slice_iter(&pem)
            .filter(|c: &Result<rustls_pki_types::CertificateDer<'static>, _>| c.is_ok())
            .count();
        if count == 0 {
            return Err(SqlError::InvalidConfig(format!(
                "tls.ca_file {} holds no PEM certificate",
                ca_file.display()
            )));
        }
        roots.push(pem);
    }
    // verify-ca: mysql_async's `skip_domain_validation` looks for "NotValidForName" in the
    // text of rustls's error, which current rustls no longer writes, so it would reject every
    // certificate that does not name the host. Instead a first handshake learns a name the
    // certificate is valid for (after checking its chain), and the real connection then
    // verifies the chain *and* that name. Nothing is sent on the probe but the TLS request.
    let name_override = if tls.mode == TlsMode::VerifyCa {
        let host = params
            .addr
            .map(|a| a.to_string())
            .unwrap_or_else(|| params.host.clone());
        let (port, timeout) = (params.port, params.connect_timeout);
        let probe_roots = roots.clone();
        tokio::task::spawn_blocking(move || {
            probe_certificate_name(&host, port, &probe_roots, timeout)
        })
        .await
        .map_err(|e| SqlError::Unavailable(format!("TLS probe failed: {e}")))??
    } else {
        None
    };
    let opts = SslOpts::default()
        .with_disable_built_in_roots(true)
        .with_root_certs(roots.into_iter().map(Into::into).collect());
    Ok(Some(match (tls.mode, name_override) {
        (TlsMode::Require, _) => opts.with_danger_accept_invalid_certs(true),
        (TlsMode::VerifyCa, Some(name)) => opts.with_danger_tls_hostname_override(Some(name)),
        // The connection goes to the checked address; the certificate must name the host.
        _ if params.addr.is_some() => {
            opts.with_danger_tls_hostname_override(Some(params.host.clone()))
        }
        _ => opts,
    }))
}

/// What the probe's certificate verifier saw.
#[derive(Debug)]
enum ProbeOutcome {
    /// Chain and host name are valid: no override needed.
    Valid,
    /// The chain is valid (webpki checks it before the name); these are the names the
    /// certificate presents, as webpki prints them (`DnsName("x")`, `IpAddress(1.2.3.4)`).
    OtherNames(Vec<String>),
    /// The certificate is not acceptable.
    Invalid(String),
}

/// A verifier that records the verdict of the standard one.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    outcome: std::sync::Mutex<Option<ProbeOutcome>>,
}

impl rustls::client::danger::ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls_pki_types::CertificateDer<'_>,
        intermediates: &[rustls_pki_types::CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let result = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        let outcome = match &result {
            Ok(_) => ProbeOutcome::Valid,
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { presented, .. },
            )) => ProbeOutcome::OtherNames(presented.clone()),
            Err(e) => ProbeOutcome::Invalid(e.to_string()),
        };
        if let Ok(mut slot) = self.outcome.lock() {
            *slot = Some(outcome);
        }
        // The probe never continues past the certificate.
        Err(rustls::Error::General("probe finished".into()))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Connects, asks for TLS the way a MySQL client does, checks the server's certificate chain
/// against `roots`, and returns a name the certificate is valid for when it is not valid for
/// `host` (`None` when it is). Blocking; runs on a blocking thread.
fn probe_certificate_name(
    host: &str,
    port: u16,
    roots: &[Vec<u8>],
    timeout: Duration,
) -> Result<Option<String>, SqlError> {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;

    let at = format!("{host}:{port}");
    let unavailable = |what: String| SqlError::Unavailable(format!("{what} ({at})"));
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| unavailable(format!("cannot resolve the host: {e}")))?
        .next()
        .ok_or_else(|| unavailable("the host has no address".into()))?;
    let mut sock = std::net::TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| unavailable(format!("connection failed: {e}")))?;
    sock.set_read_timeout(Some(timeout))
        .and_then(|_| sock.set_write_timeout(Some(timeout)))
        .map_err(|e| unavailable(format!("connection failed: {e}")))?;

    // The server's greeting: a 4-byte header (length, sequence) and the handshake payload.
    let mut header = [0u8; 4];
    sock.read_exact(&mut header)
        .map_err(|e| unavailable(format!("reading the server greeting failed: {e}")))?;
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    if len > 64 * 1024 {
        return Err(unavailable("the server greeting is malformed".into()));
    }
    let mut greeting = vec![0u8; len];
    sock.read_exact(&mut greeting)
        .map_err(|e| unavailable(format!("reading the server greeting failed: {e}")))?;
    if greeting.first() == Some(&0xff) {
        let text = String::from_utf8_lossy(greeting.get(3..).unwrap_or_default());
        return Err(unavailable(format!(
            "the server refused the connection: {text}"
        )));
    }
    // protocol version, NUL-terminated version, thread id (4), scramble (8), filler (1),
    // then the low 16 capability bits.
    let capabilities = greeting
        .get(1..)
        .and_then(|rest| rest.iter().position(|b| *b == 0))
        .map(|nul| 1 + nul + 1 + 4 + 8 + 1)
        .and_then(|i| greeting.get(i..i + 2))
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or_else(|| unavailable("the server greeting is malformed".into()))?;
    const CLIENT_SSL: u32 = 0x0800;
    if u32::from(capabilities) & CLIENT_SSL == 0 {
        return Err(unavailable(
            "the server does not support TLS; tls.mode = \"verify-ca\" requires it".into(),
        ));
    }
    // SSLRequest: capability flags, max packet size, character set, 23 reserved bytes.
    const CLIENT_LONG_PASSWORD: u32 = 0x0001;
    const CLIENT_PROTOCOL_41: u32 = 0x0200;
    const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
    let flags = CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_SSL | CLIENT_SECURE_CONNECTION;
    let mut request = vec![32u8, 0, 0, 1];
    request.extend_from_slice(&flags.to_le_bytes());
    request.extend_from_slice(&(16u32 << 20).to_le_bytes());
    request.push(45); // utf8mb4_general_ci
    request.extend_from_slice(&[0u8; 23]);
    sock.write_all(&request)
        .map_err(|e| unavailable(format!("requesting TLS failed: {e}")))?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut store = rustls::RootCertStore::empty();
    for entry in roots {
        let pem: Vec<rustls_pki_types::CertificateDer<'static>> =
            rustls_pki_types::pem::PemObject::pem_slice_iter(entry)
                .filter_map(Result::ok)
                .collect();
        if pem.is_empty() {
            // Entries without PEM are single DER certificates; a bad one is skipped, as
            // the system store may hold certificates webpki cannot use.
            let _ = store.add(rustls_pki_types::CertificateDer::from(entry.clone()));
        } else {
            for cert in pem {
                let _ = store.add(cert);
            }
        }
    }
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(store),
        provider.clone(),
    )
    .build()
    .map_err(|e| SqlError::InvalidConfig(format!("no usable CA certificate: {e}")))?;
    let verifier = Arc::new(RecordingVerifier {
        inner,
        outcome: std::sync::Mutex::new(None),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| unavailable(format!("TLS setup failed: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let server_name = rustls_pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| SqlError::InvalidConfig(format!("{host} is not a valid TLS name: {e}")))?;
    let mut tls = rustls::ClientConnection::new(Arc::new(config), server_name)
        .map_err(|e| unavailable(format!("TLS setup failed: {e}")))?;
    let mut io_error = None;
    while tls.is_handshaking() {
        if let Err(e) = tls.complete_io(&mut sock) {
            io_error = Some(e);
            break;
        }
    }
    let outcome = verifier.outcome.lock().ok().and_then(|mut o| o.take());
    match outcome {
        Some(ProbeOutcome::Valid) => Ok(None),
        Some(ProbeOutcome::OtherNames(names)) => names
            .iter()
            .find_map(|n| usable_name(n))
            .map(Some)
            .ok_or_else(|| {
                unavailable(format!(
                    "TLS handshake failed: the certificate names no usable host ({})",
                    names.join(", ")
                ))
            }),
        Some(ProbeOutcome::Invalid(e)) => Err(unavailable(format!("TLS handshake failed: {e}"))),
        None => Err(unavailable(format!(
            "TLS handshake failed: {}",
            io_error.map_or_else(|| "no certificate".to_string(), |e| e.to_string())
        ))),
    }
}

/// A host name the certificate is valid for, from webpki's rendering of a presented name.
fn usable_name(presented: &str) -> Option<String> {
    if let Some(dns) = presented
        .strip_prefix("DnsName(\"")
        .and_then(|r| r.strip_suffix("\")"))
    {
        // A wildcard covers any label in its place.
        let name = match dns.strip_prefix("*.") {
            Some(rest) => format!("verify-ca.{rest}"),
            None => dns.to_string(),
        };
        return rustls_pki_types::ServerName::try_from(name.clone())
            .is_ok()
            .then_some(name);
    }
    let ip = presented.strip_prefix("IpAddress(")?.strip_suffix(')')?;
    ip.parse::<std::net::IpAddr>().ok().map(|a| a.to_string())
}

/// Replaces any occurrence of the password in an error message. The driver's messages are
/// built from error codes and server text and should never hold it; this is the backstop
/// for a server that echoes what it received.
fn scrub(e: SqlError, params: &ConnectParams) -> SqlError {
    let secret = params.password.expose();
    if secret.len() < 4 {
        // Replacing one or two characters would mangle the message and reveal the length.
        return e;
    }
    let clean = |m: String| {
        if m.contains(secret) {
            m.replace(secret, "[redacted]")
        } else {
            m
        }
    };
    match e {
        SqlError::InvalidConfig(m) => SqlError::InvalidConfig(clean(m)),
        SqlError::Denied(m) => SqlError::Denied(clean(m)),
        SqlError::Unavailable(m) => SqlError::Unavailable(clean(m)),
        SqlError::Source(m) => SqlError::Source(clean(m)),
        SqlError::Limit(m) => SqlError::Limit(clean(m)),
        SqlError::Refused(r) => SqlError::Refused(r),
    }
}

/// Maps an error of connecting and logging in.
fn connect_error(e: mysql_async::Error, params: &ConnectParams) -> SqlError {
    let at = format!("{}:{}", params.host, params.port);
    match e {
        mysql_async::Error::Server(s) if s.code == ER_ACCESS_DENIED => SqlError::Denied(format!(
            "authentication failed for user {} at {at}",
            params.user
        )),
        mysql_async::Error::Server(s) if s.code == ER_DBACCESS_DENIED => SqlError::Denied(format!(
            "user {} may not use database {:?} at {at}: {}",
            params.user, params.database, s.message
        )),
        mysql_async::Error::Server(s) if s.code == ER_BAD_DB => SqlError::Source(format!(
            "database {:?} does not exist at {at}",
            params.database.as_deref().unwrap_or_default()
        )),
        mysql_async::Error::Server(s) => SqlError::Unavailable(format!(
            "login to {at} failed: {} (error {})",
            s.message, s.code
        )),
        mysql_async::Error::Io(mysql_async::IoError::Tls(t)) => {
            SqlError::Unavailable(format!("TLS handshake with {at} failed: {t}"))
        }
        mysql_async::Error::Io(mysql_async::IoError::Io(io)) => {
            // rustls reports certificate failures through the I/O error of the handshake.
            let what = if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
            {
                "TLS handshake"
            } else {
                "connection"
            };
            SqlError::Unavailable(format!("{what} with {at} failed: {io}"))
        }
        mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer) => {
            SqlError::Unavailable(format!(
                "{at} does not support TLS; tls.mode = \"{}\" requires it",
                mode_name(params.tls.mode)
            ))
        }
        mysql_async::Error::Driver(mysql_async::DriverError::CleartextPluginDisabled) => {
            SqlError::Denied(format!(
                "{at} asked for the password in clear text (mysql_clear_password); allowed \
                 only with tls.mode = \"verify-ca\" or \"verify-full\""
            ))
        }
        mysql_async::Error::Driver(d) => {
            SqlError::Unavailable(format!("login to {at} failed: {d}"))
        }
        // `Url` cannot happen (no URL is parsed) and `Other` carries driver internals; neither
        // message is passed on, in case a future version puts options into it.
        mysql_async::Error::Url(_) | mysql_async::Error::Other(_) => {
            SqlError::Unavailable(format!("login to {at} failed"))
        }
    }
}

/// Maps an error of a statement on an open session.
fn statement_error(e: mysql_async::Error) -> SqlError {
    match e {
        mysql_async::Error::Server(s) if TIMEOUT_ERRORS.contains(&s.code) => {
            SqlError::Limit(format!(
                "query interrupted by its timeout (limits.query_timeout_s): {}",
                s.message
            ))
        }
        mysql_async::Error::Server(s)
            if PRIVILEGE_ERRORS.contains(&s.code) || s.code == ER_READ_ONLY_TRANSACTION =>
        {
            SqlError::Denied(format!("{} (error {})", s.message, s.code))
        }
        mysql_async::Error::Server(s) if s.code == ER_QUERY_INTERRUPTED => {
            SqlError::Unavailable(format!("{} (error {})", s.message, s.code))
        }
        mysql_async::Error::Server(s) => SqlError::Source(format!(
            "{} (error {}, SQLSTATE {})",
            s.message, s.code, s.state
        )),
        mysql_async::Error::Io(io) => SqlError::Unavailable(format!("connection failed: {io}")),
        mysql_async::Error::Driver(d) => SqlError::Unavailable(format!("driver error: {d}")),
        mysql_async::Error::Url(_) | mysql_async::Error::Other(_) => {
            SqlError::Unavailable("driver error".into())
        }
    }
}

fn mode_name(mode: TlsMode) -> &'static str {
    match mode {
        TlsMode::Disable => "disable",
        TlsMode::Require => "require",
        TlsMode::VerifyCa => "verify-ca",
        TlsMode::VerifyFull => "verify-full",
    }
}

/// Refuses anything but a single reading statement. Comments before the first keyword are
/// skipped, except MySQL's executable comments (`/*! ... */`, `/*M! ... */`), whose content
/// the server runs.
/// The privileges a metadata reader never needs, from `SHOW GRANTS` lines such as
/// ``GRANT FILE, SELECT (a, b) ON *.* TO `u`@`%` WITH GRANT OPTION``.
fn privileges_in_grants(lines: &[String]) -> Vec<String> {
    const GLOBAL: [&str; 5] = ["ALL PRIVILEGES", "ALL", "FILE", "SUPER", "CREATE USER"];
    let mut found: Vec<String> = Vec::new();
    let mut add = |name: &str| {
        if !found.iter().any(|f| f == name) {
            found.push(name.to_string());
        }
    };
    for line in lines {
        let upper = line.to_ascii_uppercase();
        let Some(rest) = upper.strip_prefix("GRANT ") else {
            continue;
        };
        if upper.contains(" WITH GRANT OPTION") || upper.contains(" WITH ADMIN OPTION") {
            add("GRANT OPTION");
        }
        // `GRANT role TO user` has no ` ON `: the role's own grants are listed separately.
        let Some((privs, object)) = split_outside_parens(rest, " ON ") else {
            continue;
        };
        let global = object.trim_start().starts_with("*.*");
        let mut depth = 0usize;
        let mut item = String::new();
        let mut items = Vec::new();
        for c in privs.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                ',' if depth == 0 => items.push(std::mem::take(&mut item)),
                _ if depth == 0 => item.push(c),
                _ => {}
            }
        }
        items.push(item);
        for item in items {
            let name = item.split_whitespace().collect::<Vec<_>>().join(" ");
            if name == "GRANT OPTION" {
                add("GRANT OPTION");
            } else if global && GLOBAL.contains(&name.as_str()) {
                add(if name == "ALL" {
                    "ALL PRIVILEGES"
                } else {
                    &name
                });
            }
        }
    }
    found
}

/// Splits `text` at the first `sep` that is not inside parentheses or backquotes.
fn split_outside_parens<'a>(text: &'a str, sep: &str) -> Option<(&'a str, &'a str)> {
    let mut depth = 0usize;
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '`' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.saturating_sub(1),
            _ if !quoted && depth == 0 && text[i..].starts_with(sep) => {
                return Some((&text[..i], &text[i + sep.len()..]));
            }
            _ => {}
        }
    }
    None
}

fn check_read_only(statement: &str) -> Result<(), SqlError> {
    let mut rest = statement;
    loop {
        rest = rest.trim_start();
        if rest.starts_with("/*!") || rest.starts_with("/*M!") {
            return Err(SqlError::Denied(
                "executable comments (/*! ... */) are not allowed".into(),
            ));
        }
        if let Some(after) = rest.strip_prefix("/*") {
            match after.find("*/") {
                Some(end) => rest = &after[end + 2..],
                None => rest = "",
            }
        } else if rest.starts_with("-- ") || rest.starts_with("--\t") || rest.starts_with('#') {
            match rest.find('\n') {
                Some(end) => rest = &rest[end + 1..],
                None => rest = "",
            }
        } else {
            break;
        }
    }
    if rest.starts_with('(') {
        // A parenthesised query expression: `(SELECT ...) UNION (SELECT ...)`.
        return Ok(());
    }
    let word: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase();
    if READ_KEYWORDS.contains(&word.as_str()) {
        Ok(())
    } else {
        Err(SqlError::Denied(format!(
            "only reading statements ({}) are allowed on a MySQL source, not `{}`",
            READ_KEYWORDS.join(", "),
            if word.is_empty() { "(empty)" } else { &word }
        )))
    }
}

fn to_mysql(v: DbValue) -> Value {
    match v {
        DbValue::Null => Value::NULL,
        DbValue::Bool(b) => Value::Int(i64::from(b)),
        DbValue::Int(i) => Value::Int(i),
        DbValue::Float(f) => Value::Double(f),
        DbValue::Text(s) => Value::Bytes(s.into_bytes()),
        DbValue::Bytes(b) => Value::Bytes(b),
    }
}

/// Converts a value of the binary protocol. Decimals arrive as text and stay text (no
/// precision is lost); text and binary columns both arrive as bytes and become text when
/// they are UTF-8; dates and times are formatted the way the server prints them.
fn from_mysql(v: Option<Value>, kind: Option<ColumnType>) -> DbValue {
    match v {
        None | Some(Value::NULL) => DbValue::Null,
        Some(Value::Int(i)) => DbValue::Int(i),
        Some(Value::UInt(u)) => match i64::try_from(u) {
            Ok(i) => DbValue::Int(i),
            Err(_) => DbValue::Text(u.to_string()),
        },
        Some(Value::Float(f)) => DbValue::Float(f64::from(f)),
        Some(Value::Double(f)) => DbValue::Float(f),
        Some(Value::Bytes(b)) => match String::from_utf8(b) {
            Ok(s) => DbValue::Text(s),
            Err(e) => DbValue::Bytes(e.into_bytes()),
        },
        Some(Value::Date(y, mo, d, h, mi, s, us)) => {
            let date_only = matches!(
                kind,
                Some(ColumnType::MYSQL_TYPE_DATE | ColumnType::MYSQL_TYPE_NEWDATE)
            );
            DbValue::Text(if date_only {
                format!("{y:04}-{mo:02}-{d:02}")
            } else if us == 0 {
                format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
            } else {
                format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}")
            })
        }
        Some(Value::Time(negative, days, h, mi, s, us)) => {
            let sign = if negative { "-" } else { "" };
            let hours = u64::from(days) * 24 + u64::from(h);
            DbValue::Text(if us == 0 {
                format!("{sign}{hours:02}:{mi:02}:{s:02}")
            } else {
                format!("{sign}{hours:02}:{mi:02}:{s:02}.{us:06}")
            })
        }
    }
}

/// The SQL name of a wire type, reported as the column's declared type.
fn type_name(t: ColumnType) -> &'static str {
    use ColumnType::*;
    match t {
        MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL => "DECIMAL",
        MYSQL_TYPE_TINY => "TINYINT",
        MYSQL_TYPE_SHORT => "SMALLINT",
        MYSQL_TYPE_LONG => "INT",
        MYSQL_TYPE_INT24 => "MEDIUMINT",
        MYSQL_TYPE_LONGLONG => "BIGINT",
        MYSQL_TYPE_FLOAT => "FLOAT",
        MYSQL_TYPE_DOUBLE => "DOUBLE",
        MYSQL_TYPE_NULL => "NULL",
        MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2 => "TIMESTAMP",
        MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => "DATE",
        MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => "TIME",
        MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 => "DATETIME",
        MYSQL_TYPE_YEAR => "YEAR",
        MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING => "VARCHAR",
        MYSQL_TYPE_STRING => "CHAR",
        MYSQL_TYPE_BIT => "BIT",
        MYSQL_TYPE_JSON => "JSON",
        MYSQL_TYPE_ENUM => "ENUM",
        MYSQL_TYPE_SET => "SET",
        MYSQL_TYPE_TINY_BLOB | MYSQL_TYPE_MEDIUM_BLOB | MYSQL_TYPE_LONG_BLOB | MYSQL_TYPE_BLOB => {
            "BLOB"
        }
        MYSQL_TYPE_GEOMETRY => "GEOMETRY",
        MYSQL_TYPE_VECTOR => "VECTOR",
        MYSQL_TYPE_TYPED_ARRAY | MYSQL_TYPE_UNKNOWN => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privileged_grants_are_recognised() {
        let lines = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            privileges_in_grants(&lines(&[
                "GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` IDENTIFIED BY PASSWORD '*AB' WITH GRANT OPTION",
                "GRANT PROXY ON ''@'%' TO 'root'@'localhost' WITH GRANT OPTION",
            ])),
            vec!["GRANT OPTION", "ALL PRIVILEGES"]
        );
        assert_eq!(
            privileges_in_grants(&lines(&["GRANT SELECT, file ON *.* TO `u`@`%`"])),
            vec!["FILE"]
        );
        assert_eq!(
            privileges_in_grants(&lines(&["GRANT SUPER, CREATE USER ON *.* TO `u`@`%`"])),
            vec!["SUPER", "CREATE USER"]
        );
        // A minimal metadata role, a role grant, column grants and database-level ALL.
        assert!(privileges_in_grants(&lines(&[
            "GRANT USAGE ON *.* TO `meta`@`%` IDENTIFIED BY PASSWORD '*AB'",
            "GRANT SHOW VIEW, REFERENCES ON `shop`.* TO `meta`@`%`",
            "GRANT SELECT (`a`, `file`) ON `shop`.`t` TO `meta`@`%`",
            "GRANT `reader` TO `meta`@`%`",
            "GRANT ALL PRIVILEGES ON `scratch`.* TO `meta`@`%`",
        ]))
        .is_empty());
        assert_eq!(
            privileges_in_grants(&lines(&[
                "GRANT SELECT ON `shop`.* TO `u`@`%` WITH GRANT OPTION"
            ])),
            vec!["GRANT OPTION"]
        );
    }

    #[test]
    fn only_reading_statements_pass() {
        for ok in [
            "SELECT 1",
            "  select * from t",
            "/* why */ SELECT 1",
            "-- note\nSHOW TABLES",
            "# note\nWITH x AS (SELECT 1) SELECT * FROM x",
            "(SELECT 1) UNION (SELECT 2)",
            "explain select 1",
        ] {
            assert!(check_read_only(ok).is_ok(), "{ok}");
        }
        for bad in [
            "DELETE FROM t",
            "SET SESSION TRANSACTION READ WRITE",
            "/*! DROP TABLE t */",
            "/*M!100000 DROP TABLE t */",
            "/* c */ INSERT INTO t VALUES (1)",
            "-- SELECT\nDROP TABLE t",
            "",
            "CALL p()",
            "SELECTX 1",
        ] {
            assert!(
                matches!(check_read_only(bad), Err(SqlError::Denied(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn values_convert_without_panicking() {
        assert_eq!(from_mysql(None, None), DbValue::Null);
        assert_eq!(
            from_mysql(Some(Value::UInt(u64::MAX)), None),
            DbValue::Text(u64::MAX.to_string())
        );
        assert_eq!(
            from_mysql(Some(Value::Bytes(vec![0xff, 0x00])), None),
            DbValue::Bytes(vec![0xff, 0x00])
        );
        assert_eq!(
            from_mysql(Some(Value::Bytes(b"12.50".to_vec())), None),
            DbValue::Text("12.50".into())
        );
        assert_eq!(
            from_mysql(
                Some(Value::Date(2024, 2, 29, 0, 0, 0, 0)),
                Some(ColumnType::MYSQL_TYPE_DATE)
            ),
            DbValue::Text("2024-02-29".into())
        );
        assert_eq!(
            from_mysql(
                Some(Value::Date(2024, 2, 29, 13, 5, 9, 120)),
                Some(ColumnType::MYSQL_TYPE_DATETIME)
            ),
            DbValue::Text("2024-02-29 13:05:09.000120".into())
        );
        assert_eq!(
            from_mysql(Some(Value::Time(true, 1, 2, 3, 4, 0)), None),
            DbValue::Text("-26:03:04".into())
        );
    }
}
