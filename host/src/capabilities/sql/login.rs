//! Logging in to network SQL sources on a plugin's behalf. The host checks that the endpoint is
//! declared by the workflow *and* bound to the credential, resolves the secret just in time,
//! logs in, and lets the secret go (it is zeroized with the connect parameters). Every
//! resolution, login and denial is audited.

use std::time::Duration;

use std::sync::Arc;

use super::{ConnectParams, SqlConnection, SqlError, TlsSettings};
use crate::capabilities::credentials::CredentialBinding;
use crate::capabilities::http::policy::{NetworkPolicy, Refusal};
use crate::home::{destination_matches, parse_destination, parse_host_port};
use crate::secrets::redact::Redactor;
use crate::secrets::{SecretStoreError, SecretStores};
use crate::state::{RunAudit, StateStore};

/// Network SQL engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkDriver {
    Postgres,
    Mysql,
}

impl NetworkDriver {
    fn name(self) -> &'static str {
        match self {
            NetworkDriver::Postgres => "postgres",
            NetworkDriver::Mysql => "mysql",
        }
    }
}

/// What the host needs to log in for one run.
#[derive(Clone)]
pub struct SqlLogin {
    /// The workflow's declared endpoint (`source.endpoint`).
    pub endpoint: Option<String>,
    /// Databases the workflow declares (`source.database` / `source.databases`; `*` = any).
    pub databases: Vec<String>,
    /// TLS settings, `ca_file` resolved.
    pub tls: TlsSettings,
    /// The workflow's network policy with the declared endpoint added: the endpoint's
    /// addresses are checked and the driver connects to a checked address.
    pub policy: Arc<NetworkPolicy>,
    /// Connect and login timeout.
    pub connect_timeout: Duration,
    /// Secret backends.
    pub stores: SecretStores,
    /// The registry, re-read at each login so a revocation takes effect mid-run.
    pub state: Option<std::sync::Arc<StateStore>>,
    /// The run's audit context.
    pub audit: RunAudit,
    /// The run's outbound secret scanner: every resolved secret is registered with it.
    pub scanner: Option<std::sync::Arc<crate::pipeline::scan::OutboundScanner>>,
}

impl SqlLogin {
    /// The one database the workflow declares by name, if it declares exactly one.
    fn declared_database(&self) -> Option<&str> {
        match self.databases.as_slice() {
            [one] if one != "*" => Some(one.as_str()),
            _ => None,
        }
    }

    /// Opens a connection for `binding` to `address` / `database`.
    pub async fn open(
        &self,
        binding: &CredentialBinding,
        driver: NetworkDriver,
        address: &str,
        database: Option<&str>,
    ) -> Result<SqlConnection, SqlError> {
        let guid = binding.record.guid.as_str();
        let shown: String = address
            .chars()
            .filter(|c| !c.is_control())
            .take(256)
            .collect();
        let deny = |message: String| {
            self.audit
                .record("login", "denied", Some(guid), Some(&shown), Some(&message));
            SqlError::Denied(message)
        };
        let declared = self
            .endpoint
            .as_deref()
            .is_some_and(|e| same_address(e, address));
        if !declared {
            return Err(deny(format!(
                "endpoint {shown} is not the workflow's source.endpoint"
            )));
        }
        if !binding
            .record
            .destinations
            .iter()
            .any(|d| destination_matches(d, address))
        {
            return Err(deny(format!(
                "credential {guid} is not bound to {shown} (its destinations: {})",
                binding.record.destinations.join(", ")
            )));
        }
        // PostgreSQL always connects to one database: without one named, the workflow's
        // single declared database, never a database the workflow did not declare. A
        // workflow that declares any database (`*`, as `credential test` does) lets the
        // server pick its default.
        let any_database = self.databases.iter().any(|d| d == "*");
        let database = match (database, driver) {
            (None, NetworkDriver::Postgres) if any_database => None,
            (None, NetworkDriver::Postgres) => match self.declared_database() {
                Some(db) => Some(db),
                None => {
                    return Err(deny(
                        "sql.open without a database: the workflow declares no single \
                         database (source.database); name the database to open"
                            .into(),
                    ))
                }
            },
            (database, _) => database,
        };
        if let Some(db) = database {
            if !any_database && !self.databases.iter().any(|d| d == db) {
                return Err(deny(format!(
                    "database `{}` is not declared by the workflow (source.database / source.databases)",
                    db.chars().take(128).collect::<String>()
                )));
            }
        }
        // Re-read the record: a credential revoked during the run must not log in again.
        let record = match &self.state {
            Some(state) => state.credential(guid).map_err(|e| deny(e.to_string()))?,
            None => binding.record.clone(),
        };
        if let Some(at) = &record.revoked_at {
            return Err(deny(format!("credential {guid} was revoked at {at}")));
        }
        let (host, port) = parse_host_port(address)
            .map_err(|e| SqlError::InvalidConfig(format!("endpoint {e}")))?;
        // Checked before the secret is resolved: a denied destination never gets one.
        let addr = match self.policy.resolve(&host, port).await {
            Ok(addrs) => addrs.first().map(|a| a.ip()),
            Err(Refusal::Denied(why)) => {
                self.audit
                    .record("network", "denied", Some(guid), Some(&shown), Some(&why));
                return Err(SqlError::Denied(format!("network policy: {why}")));
            }
            Err(Refusal::Unresolvable(why)) => return Err(SqlError::Unavailable(why)),
        };

        let store = self.stores.get(&record.backend).map_err(|e| {
            self.audit.record(
                "resolve",
                "failed",
                Some(guid),
                Some(&shown),
                Some(&e.to_string()),
            );
            SqlError::Unavailable(format!("credential {guid}: {e}"))
        })?;
        // The secret is resolved for this login only. When the server refuses it as a bad
        // password, the secret may have been rotated between resolution and login (or a stale
        // value read): resolve once more and retry once.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let secret = match store.resolve(&record.locator).await {
                Ok(s) => s,
                Err(e) => {
                    let message = format!(
                        "credential {guid} cannot be resolved from the `{}` backend: {e}",
                        record.backend
                    );
                    self.audit.record(
                        "resolve",
                        "failed",
                        Some(guid),
                        Some(&shown),
                        Some(&message),
                    );
                    return Err(match e {
                        SecretStoreError::Denied(_) | SecretStoreError::NotFound(_) => {
                            SqlError::Denied(message)
                        }
                        SecretStoreError::Invalid(_) => SqlError::InvalidConfig(message),
                        SecretStoreError::Unavailable(_) => SqlError::Unavailable(message),
                    });
                }
            };
            Redactor::global().register(&secret);
            if let Some(scanner) = &self.scanner {
                scanner.register(&secret);
                // The verifiers the server stores for this login (readable through a catalog
                // a plugin may query, or reflected by a hostile server) are withheld too.
                scanner.register_login(record.username.as_deref().unwrap_or(""), &secret);
            }
            self.audit
                .record("resolve", "ok", Some(guid), Some(&shown), None);

            let params = ConnectParams {
                host: host.clone(),
                addr,
                port,
                database: database.map(str::to_string),
                user: record.username.clone().unwrap_or_default(),
                password: secret,
                tls: self.tls.clone(),
                connect_timeout: self.connect_timeout,
            };
            let result = match driver {
                NetworkDriver::Postgres => {
                    super::postgres::PgDb::connect(&params).await.map(|db| {
                        SqlConnection::Postgres {
                            db,
                            database: params.database.clone().unwrap_or_default(),
                        }
                    })
                }
                NetworkDriver::Mysql => super::mysql::MysqlDb::connect(&params)
                    .await
                    .map(SqlConnection::Mysql),
            };
            drop(params);
            match result {
                Ok(conn) => {
                    let privileges = conn.privileges().join(", ");
                    if !privileges.is_empty() && !record.privileged {
                        drop(conn);
                        let message = format!(
                            "credential {guid} logs in to {shown} with privileges a metadata \
                             connector never needs ({privileges}); the login is refused. {} \
                             If this login is privileged on purpose, register it with \
                             `airlock credential add --privileged`.",
                            minimal_role_hint(driver)
                        );
                        self.audit.record(
                            "login",
                            "privileged-refused",
                            Some(guid),
                            Some(&shown),
                            Some(&privileges),
                        );
                        return Err(SqlError::Denied(message));
                    }
                    if !privileges.is_empty() {
                        tracing::warn!(
                            credential = guid,
                            destination = %shown,
                            privileges = %privileges,
                            "logged in with a credential registered as privileged; a minimal \
                             role is safer (see the README's \"Minimal database roles\")"
                        );
                        self.audit.record(
                            "login",
                            "ok-privileged",
                            Some(guid),
                            Some(&shown),
                            Some(&format!("{}; {privileges}", driver.name())),
                        );
                    } else {
                        self.audit.record(
                            "login",
                            "ok",
                            Some(guid),
                            Some(&shown),
                            Some(driver.name()),
                        );
                    }
                    return Ok(conn);
                }
                Err(e) => {
                    let e = redact_error(e);
                    self.audit.record(
                        "login",
                        "failed",
                        Some(guid),
                        Some(&shown),
                        Some(&e.to_string()),
                    );
                    if attempt == 1 && is_authentication_failure(&e) {
                        tracing::info!(
                            credential = guid,
                            "login refused; resolving the credential again once"
                        );
                        // Past any cached value: the re-resolution reads the backend.
                        store.invalidate(&record.locator);
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }
}

/// How to create the minimal role for `driver`, for the privileged-login refusal.
fn minimal_role_hint(driver: NetworkDriver) -> &'static str {
    match driver {
        NetworkDriver::Postgres => {
            "A PostgreSQL role with LOGIN and no other grant reads the whole catalog: \
             `CREATE ROLE airlock_meta LOGIN PASSWORD '...'; GRANT CONNECT ON DATABASE <db> TO \
             airlock_meta;` (see the README's \"Minimal database roles\")."
        }
        NetworkDriver::Mysql => {
            "A MySQL/MariaDB user needs only `SHOW VIEW` and `REFERENCES` on the databases to \
             describe (no SELECT on data): `CREATE USER 'airlock_meta'@'%' IDENTIFIED BY '...'; \
             GRANT SHOW VIEW, REFERENCES ON <db>.* TO 'airlock_meta'@'%';`, plus SELECT on \
             each view for view definitions (see the README's \"Minimal database roles\")."
        }
    }
}

/// Whether the server refused the secret itself (a rotated or stale password).
fn is_authentication_failure(e: &SqlError) -> bool {
    matches!(e, SqlError::Denied(m) if m.to_ascii_lowercase().contains("authentication failed"))
}

/// Passes an error's message through the redactor.
pub fn redact_error(e: SqlError) -> SqlError {
    let r = Redactor::global();
    match e {
        SqlError::InvalidConfig(m) => SqlError::InvalidConfig(r.redact(&m).into_owned()),
        SqlError::Denied(m) => SqlError::Denied(r.redact(&m).into_owned()),
        SqlError::Unavailable(m) => SqlError::Unavailable(r.redact(&m).into_owned()),
        SqlError::Source(m) => SqlError::Source(r.redact(&m).into_owned()),
        SqlError::Limit(m) => SqlError::Limit(r.redact(&m).into_owned()),
        SqlError::Refused(refusal) => SqlError::Refused(refusal),
    }
}

fn same_address(a: &str, b: &str) -> bool {
    match (parse_destination(a), parse_destination(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Logs in with credential `guid` to `destination` (default: its first destination without
/// wildcards) and returns what the server was, or why it failed. Used by
/// `airlock credential test`; audited as `test`.
pub async fn test_login(
    home: &crate::home::Home,
    guid: &str,
    destination: Option<&str>,
    engine: Option<&str>,
    tls: TlsSettings,
) -> Result<String, SqlError> {
    let record = home
        .state()
        .credential(guid)
        .map_err(|e| SqlError::InvalidConfig(e.to_string()))?;
    let destination = match destination {
        Some(d) => d.to_string(),
        None => record
            .destinations
            .iter()
            .find(|d| !d.contains('*'))
            .cloned()
            .ok_or_else(|| {
                SqlError::InvalidConfig(
                    "the credential's destinations are all patterns; pass --destination HOST:PORT"
                        .into(),
                )
            })?,
    };
    let driver = match engine.or(record.engine.as_deref()) {
        Some("postgres") => NetworkDriver::Postgres,
        Some("mysql") => NetworkDriver::Mysql,
        Some(other) => {
            return Err(SqlError::InvalidConfig(format!(
                "unknown engine `{other}`; use postgres or mysql"
            )))
        }
        None => {
            return Err(SqlError::InvalidConfig(
                "the credential has no engine; pass --engine postgres|mysql".into(),
            ))
        }
    };
    let mut slots = crate::capabilities::credentials::CredentialSlots::default();
    slots
        .bind("test", record.clone())
        .map_err(SqlError::InvalidConfig)?;
    let binding = slots
        .binding("test")
        .cloned()
        .ok_or_else(|| SqlError::InvalidConfig("binding lost".into()))?;
    let (host, port) = parse_host_port(&destination)
        .map_err(|e| SqlError::InvalidConfig(format!("destination {e}")))?;
    let login = SqlLogin {
        endpoint: Some(destination.clone()),
        databases: vec!["*".into()],
        tls,
        // The operator named the destination: it may be on a private network, but the login
        // still goes to the address that was resolved and checked.
        policy: Arc::new(NetworkPolicy::operator_destination(&host, port)),
        connect_timeout: Duration::from_secs(15),
        stores: home.stores().clone(),
        state: Some(home.state().clone()),
        audit: RunAudit::new(Some(home.state().clone()), "credential-test", None, None),
        scanner: None,
    };
    login.open(&binding, driver, &destination, None).await?;
    Ok(format!(
        "logged in to {destination} ({}) as {}",
        driver.name(),
        record.username.as_deref().unwrap_or("")
    ))
}
