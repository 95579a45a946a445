//! What a run sets up before the plugin starts: the SQL policy, the credential slots and
//! logins, the hash keys, the configuration the plugin receives, and where it spools.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{Mode, RunError};
use crate::capabilities::credentials::CredentialSlots;
use crate::capabilities::http::policy::NetworkPolicy;
use crate::capabilities::sql::login::SqlLogin;
use crate::capabilities::sql::SqlPolicy;
use crate::config::{ConfigError, LoadedConfig, SinkConfig};
use crate::pipeline::fields::HashKeys;
use crate::pipeline::filter::FilterPolicy;
use crate::pipeline::scan::OutboundScanner;
use crate::pipeline::spool::SpoolKey;
use crate::runtime::limits::Limits;
use crate::sinks::local::{LocalSink, StagedRun};
use crate::sinks::remote::RemoteSpool;

/// Where a run spools: the sink's staging directory, or a private temporary one (preview).
pub(super) enum Staging {
    Sink(StagedRun),
    Spool(RemoteSpool),
    Temp(tempfile::TempDir),
}

impl Staging {
    /// The staging of a run in `mode`: the local sink's `.partial-<run-id>/`, a remote sink's
    /// encrypted spool in the home, or (preview) a private temporary directory.
    pub(super) fn create(
        mode: Mode,
        cfg: &LoadedConfig,
        home: Option<&crate::home::Home>,
        run_id: &str,
    ) -> Result<Staging, RunError> {
        Ok(match (mode, &cfg.config.sink, home) {
            (Mode::Publish, SinkConfig::Local { dir, .. }, _) => {
                let sink = LocalSink::new(cfg.resolve(dir));
                Staging::Sink(sink.stage(run_id).map_err(|e| {
                    RunError::Output(format!("sink.dir {}: {e}", sink.dir().display()))
                })?)
            }
            (Mode::Publish, SinkConfig::S3(_) | SinkConfig::Https(_), Some(home)) => {
                let root = crate::sinks::remote::spool_root(home);
                Staging::Spool(
                    RemoteSpool::create(home, run_id)
                        .map_err(|e| RunError::Output(format!("{}: {e}", root.display())))?,
                )
            }
            (Mode::Publish, SinkConfig::S3(_) | SinkConfig::Https(_), None) => {
                return Err(RunError::Config(ConfigError::Invalid(
                    "a remote sink needs an airlock home".into(),
                )))
            }
            (Mode::Preview { .. }, _, _) => Staging::Temp(
                tempfile::Builder::new()
                    .prefix("airlock-preview-")
                    .tempdir()
                    .map_err(|e| RunError::Output(format!("preview spool: {e}")))?,
            ),
        })
    }

    /// The key the spool's files are encrypted under (a remote sink's spool only).
    pub(super) fn key(&self) -> Option<Arc<SpoolKey>> {
        match self {
            Staging::Spool(spool) => Some(spool.key()),
            _ => None,
        }
    }

    pub(super) fn dir(&self) -> &Path {
        match self {
            Staging::Sink(s) => s.dir(),
            Staging::Spool(s) => s.dir(),
            Staging::Temp(t) => t.path(),
        }
    }
}

/// The SQL policy of a config: allowed SQLite directories default to the database's directory.
pub(super) fn sql_policy(cfg: &LoadedConfig, limits: &Limits) -> Result<SqlPolicy, RunError> {
    let grants = crate::capabilities::sql::guard::DataGrants::new(
        cfg.config
            .source
            .sql
            .as_ref()
            .map(|s| s.allow_relations.as_slice())
            .unwrap_or_default(),
    )
    .map_err(|e| RunError::Config(ConfigError::Invalid(e)))?;
    let dirs: Vec<PathBuf> = match &cfg.config.source.allowed_dirs {
        Some(dirs) => dirs.iter().map(|d| cfg.resolve(d)).collect(),
        None => match &cfg.config.source.database {
            Some(db) => cfg
                .resolve(db)
                .parent()
                .map(Path::to_path_buf)
                .into_iter()
                .collect(),
            None => Vec::new(),
        },
    };
    // Only a SQLite workflow (no network endpoint) gets file access: a network engine's
    // `database` is a name, never a path next to the config.
    let dirs = if cfg.config.source.endpoint.is_some() {
        Vec::new()
    } else {
        dirs
    };
    let mut sqlite_dirs = Vec::new();
    for d in dirs {
        let canonical = std::fs::canonicalize(&d).map_err(|e| {
            RunError::Config(ConfigError::Invalid(format!(
                "source.allowed_dirs: {}: {e}",
                d.display()
            )))
        })?;
        sqlite_dirs.push(canonical);
    }
    Ok(SqlPolicy {
        base_dir: cfg.base_dir.clone(),
        sqlite_dirs,
        query_timeout: Duration::from_secs(limits.query_timeout_s),
        result_bytes: limits.max_output_mb.saturating_mul(1 << 20).min(256 << 20) as usize,
        call_bytes: limits.call_bytes,
        grants,
        audit: None,
        guard_stats: Default::default(),
        budget: crate::runtime::budget::MemoryBudget::of_mb(limits.host_memory_mb),
    })
}

/// The JSON the plugin receives: the `[source]` table without host-only keys.
pub(super) fn plugin_config_json(cfg: &LoadedConfig) -> String {
    let s = &cfg.config.source;
    let mut map = serde_json::Map::new();
    if let Some(e) = &s.endpoint {
        map.insert("endpoint".into(), e.clone().into());
    }
    if let Some(d) = &s.database {
        map.insert("database".into(), d.clone().into());
    }
    if let Some(d) = &s.databases {
        map.insert("databases".into(), d.clone().into());
    }
    map.insert(
        "options".into(),
        serde_json::Value::Object(s.options.clone().into_iter().collect()),
    );
    serde_json::Value::Object(map).to_string()
}

/// Binds the workflow's credential to the slot `source` and prepares network logins.
pub(super) fn credentials_for(
    cfg: &LoadedConfig,
    limits: &Limits,
    home: Option<&crate::home::Home>,
    audit: crate::state::RunAudit,
    scanner: &Arc<OutboundScanner>,
) -> Result<(CredentialSlots, Option<SqlLogin>), RunError> {
    let source = &cfg.config.source;
    let Some(guid) = &source.credential else {
        return Ok((CredentialSlots::default(), None));
    };
    let Some(home) = home else {
        return Err(RunError::Config(ConfigError::Invalid(
            "source.credential is set but no airlock home is open (use `airlock run`, which opens $AIRLOCK_HOME)".into(),
        )));
    };
    let record = home
        .state()
        .credential(guid)
        .map_err(|e| RunError::Config(ConfigError::Invalid(format!("source.credential: {e}"))))?;
    if let Some(at) = &record.revoked_at {
        let message = format!(
            "credential {guid} was revoked at {at}; bind another credential to the workflow"
        );
        audit.record(
            "resolve",
            "denied",
            Some(guid),
            source.endpoint.as_deref(),
            Some(&message),
        );
        return Err(RunError::Credential(message));
    }
    let mut slots = CredentialSlots::default();
    slots.bind("source", record).map_err(RunError::Credential)?;
    let mut databases: Vec<String> = source.database.iter().cloned().collect();
    databases.extend(source.databases.iter().flatten().cloned());
    let mut tls = source.tls.clone().unwrap_or_default();
    if let Some(ca) = &tls.ca_file {
        tls.ca_file = Some(cfg.resolve(&ca.to_string_lossy()));
    }
    let policy = sql_network_policy(cfg)?;
    let login = SqlLogin {
        endpoint: source.endpoint.clone(),
        databases,
        tls,
        policy: Arc::new(policy),
        connect_timeout: Duration::from_secs(limits.query_timeout_s.min(30)),
        stores: home.stores().clone(),
        state: Some(home.state().clone()),
        audit,
        scanner: Some(scanner.clone()),
    };
    Ok((slots, Some(login)))
}

/// The network policy of SQL logins: the workflow's `[network] allow` plus its declared
/// `source.endpoint`, which therefore needs no allow entry of its own.
pub(super) fn sql_network_policy(cfg: &LoadedConfig) -> Result<NetworkPolicy, RunError> {
    let invalid = |m: String| RunError::Config(ConfigError::Invalid(m));
    let mut policy = NetworkPolicy::parse(&cfg.config.network.allow).map_err(invalid)?;
    if let Some(endpoint) = &cfg.config.source.endpoint {
        let (host, port) = crate::home::parse_host_port(endpoint)
            .map_err(|e| invalid(format!("source.endpoint: {e}")))?;
        policy.declare(&host, port);
    }
    Ok(policy)
}

/// Resolves the HMAC keys of the policy's `hash` rules from the home's secret stores, once at
/// run start. Each key is a resolved secret like a login password: audited, registered with
/// the redactor and the outbound scanner, and held only in zeroizing buffers.
pub(super) async fn resolve_hash_keys(
    policy: &FilterPolicy,
    home: Option<&crate::home::Home>,
    audit: &crate::state::RunAudit,
    scanner: &OutboundScanner,
) -> Result<HashKeys, RunError> {
    let mut keys = HashKeys::default();
    let guids = policy.fields().key_credentials();
    if guids.is_empty() {
        return Ok(keys);
    }
    let Some(home) = home else {
        return Err(RunError::Config(ConfigError::Invalid(
            "filters.fields: a `hash` rule names key_credential but no airlock home is open (use `airlock run`, which opens $AIRLOCK_HOME)".into(),
        )));
    };
    for guid in guids {
        let usage = crate::home::CredentialUse {
            guid: &guid,
            setting: "filters.fields key_credential",
            destination: None,
            purpose: "filters.fields hash key",
        };
        let (_, secret) = home
            .resolve_for(&usage, audit, Some(scanner), |_| Ok(()))
            .await
            .map_err(|e| match e {
                crate::home::ResolveError::Unknown(m) => RunError::Config(ConfigError::Invalid(m)),
                e => RunError::Credential(e.to_string()),
            })?;
        keys.insert(
            &guid,
            zeroize::Zeroizing::new(secret.expose().as_bytes().to_vec()),
        );
    }
    Ok(keys)
}
