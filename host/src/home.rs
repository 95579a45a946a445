//! An airlock home: the state store (`state.sqlite`, or the shared PostgreSQL database
//! `state.toml` names), the embedded vault (`vault/`, under a key in `vault.key` or
//! `$AIRLOCK_VAULT_KEY_FILE`) and the external secret backends (`backends.toml` or
//! `$AIRLOCK_BACKENDS`) of one installation.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{ConfigError, LoadedConfig, WorkflowConfig};
use crate::secrets::backends::{BackendsConfig, BackendsError};
use crate::secrets::embedded::EmbeddedVault;
use crate::secrets::{SecretStores, SecretString};
use crate::state::{now, AuditEntry, CredentialRecord, StateError, StateStore, WorkflowRecord};

/// A home could not be used.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// The directory could not be created or read.
    #[error("airlock home {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The vault failed.
    #[error("vault: {0}")]
    Vault(#[from] crate::secrets::SecretStoreError),
    /// A request was not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// A stored workflow's config is not valid any more.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `backends.toml` is not valid.
    #[error(transparent)]
    Backends(#[from] BackendsError),
}

/// Credential kinds the registry accepts.
pub const CREDENTIAL_KINDS: &[&str] = &["password", "token", "aws-access-key", "oauth2-client"];

/// What `credential add` registers besides the secret.
#[derive(Debug, Clone)]
pub struct NewCredential {
    /// `password`.
    pub kind: String,
    /// The user name to log in as.
    pub username: Option<String>,
    /// `postgres` or `mysql`: what `credential test` logs in to.
    pub engine: Option<String>,
    /// `host:port` patterns (`*` allowed in the host) the credential may log in to.
    pub destinations: Vec<String>,
    /// Free text for operators.
    pub description: Option<String>,
    /// The login is privileged on purpose (superuser, server files, all data): without this a
    /// privileged login is refused.
    pub privileged: bool,
}

/// An airlock home.
pub struct Home {
    dir: PathBuf,
    state: Arc<StateStore>,
    vault: Arc<EmbeddedVault>,
    stores: SecretStores,
}

impl Home {
    /// `$AIRLOCK_HOME`, else `$XDG_DATA_HOME/airlock`, else `~/.local/share/airlock`.
    pub fn default_dir() -> PathBuf {
        if let Some(d) = std::env::var_os("AIRLOCK_HOME") {
            return PathBuf::from(d);
        }
        std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("."))
            .join("airlock")
    }

    /// Opens (creating, private to the user) the home in `dir`.
    pub fn open(dir: &Path) -> Result<Self, HomeError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| HomeError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        let state = Arc::new(StateStore::open_in_home(dir)?);
        let key_file = std::env::var_os("AIRLOCK_VAULT_KEY_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.join("vault.key"));
        let vault = Arc::new(EmbeddedVault::new(dir.join("vault"), key_file));
        let mut stores = SecretStores::default();
        stores.register(vault.clone());
        let backends = BackendsConfig::path_for(dir);
        let required = std::env::var_os("AIRLOCK_BACKENDS").is_some();
        BackendsConfig::load(&backends, required)?.register(&mut stores, &backends)?;
        Ok(Home {
            dir: dir.to_path_buf(),
            state,
            vault,
            stores,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The state store.
    pub fn state(&self) -> &Arc<StateStore> {
        &self.state
    }

    /// The secret backends.
    pub fn stores(&self) -> &SecretStores {
        &self.stores
    }

    /// The embedded vault (its key also wraps the keys of encrypted spools).
    pub fn vault(&self) -> &EmbeddedVault {
        &self.vault
    }

    /// Registers a credential, sealing `secret` in the embedded vault; returns its GUID.
    pub fn add_credential(
        &self,
        spec: NewCredential,
        secret: SecretString,
    ) -> Result<String, HomeError> {
        check_spec(&spec)?;
        if secret.is_empty() {
            return Err(HomeError::Invalid("the secret is empty".into()));
        }
        let locator = uuid::Uuid::new_v4().simple().to_string();
        self.vault.put(&locator, &secret)?;
        drop(secret);
        self.register_credential(spec, "embedded", locator)
    }

    /// Registers a credential whose secret lives in the external backend `backend` at
    /// `locator` (nothing is read now: the secret is resolved at each login); returns its GUID.
    pub fn add_credential_at(
        &self,
        spec: NewCredential,
        backend: &str,
        locator: &str,
    ) -> Result<String, HomeError> {
        check_spec(&spec)?;
        if backend == "embedded" {
            return Err(HomeError::Invalid(
                "the embedded vault chooses its own locators; add the secret from stdin instead"
                    .into(),
            ));
        }
        let store = self.stores.get(backend).map_err(|_| {
            HomeError::Invalid(format!(
                "secret backend `{backend}` is not configured in {} (configured: {})",
                BackendsConfig::path_for(&self.dir).display(),
                self.stores.names().join(", ")
            ))
        })?;
        store.check_locator(locator)?;
        self.register_credential(spec, backend, locator.to_string())
    }

    fn register_credential(
        &self,
        spec: NewCredential,
        backend: &str,
        locator: String,
    ) -> Result<String, HomeError> {
        let guid = uuid::Uuid::new_v4().to_string();
        let record = CredentialRecord {
            guid: guid.clone(),
            kind: spec.kind,
            backend: backend.into(),
            locator,
            username: spec.username,
            engine: spec.engine,
            destinations: spec.destinations,
            description: spec.description,
            created_at: now(),
            rotated_at: None,
            revoked_at: None,
            privileged: spec.privileged,
        };
        self.state.insert_credential(&record)?;
        self.state.audit(&AuditEntry {
            credential: Some(guid.clone()),
            action: "create".into(),
            outcome: "ok".into(),
            detail: Some(if record.privileged {
                format!("backend {backend}, registered as privileged")
            } else {
                format!("backend {backend}")
            }),
            ..AuditEntry::default()
        })?;
        Ok(guid)
    }

    /// Registers a password credential for `user` bound to `destinations`; returns its GUID.
    pub fn add_password_credential(
        &self,
        user: &str,
        password: &str,
        destinations: &[&str],
    ) -> Result<String, HomeError> {
        self.add_password(user, password, destinations, false)
    }

    /// Registers a password credential registered as privileged on purpose
    /// (`credential add --privileged`); returns its GUID.
    pub fn add_privileged_password_credential(
        &self,
        user: &str,
        password: &str,
        destinations: &[&str],
    ) -> Result<String, HomeError> {
        self.add_password(user, password, destinations, true)
    }

    fn add_password(
        &self,
        user: &str,
        password: &str,
        destinations: &[&str],
        privileged: bool,
    ) -> Result<String, HomeError> {
        self.add_credential(
            NewCredential {
                kind: "password".into(),
                username: Some(user.to_string()),
                engine: None,
                destinations: destinations.iter().map(|d| d.to_string()).collect(),
                description: None,
                privileged,
            },
            SecretString::new(password.to_string()),
        )
    }

    /// Replaces the secret of `guid`; the next login uses the new one.
    pub fn rotate(&self, guid: &str, secret: SecretString) -> Result<(), HomeError> {
        let record = self.state.credential(guid)?;
        if record.revoked_at.is_some() {
            return Err(HomeError::Invalid(format!(
                "credential {guid} is revoked; add a new one instead"
            )));
        }
        if secret.is_empty() {
            return Err(HomeError::Invalid("the secret is empty".into()));
        }
        self.stores.get(&record.backend)?;
        if record.backend != "embedded" {
            return Err(HomeError::Invalid(format!(
                "credential {guid} lives in the `{}` backend; rotate it there",
                record.backend
            )));
        }
        self.vault.put(&record.locator, &secret)?;
        self.state.mark_rotated(guid)?;
        self.state.audit(&AuditEntry {
            credential: Some(guid.to_string()),
            action: "rotate".into(),
            outcome: "ok".into(),
            ..AuditEntry::default()
        })?;
        Ok(())
    }

    /// Revokes `guid`: the registry marks it and the embedded vault forgets the secret.
    pub fn revoke(&self, guid: &str) -> Result<(), HomeError> {
        let record = self.state.credential(guid)?;
        self.state.mark_revoked(guid)?;
        if record.backend == "embedded" {
            self.vault.delete(&record.locator)?;
        }
        self.state.audit(&AuditEntry {
            credential: Some(guid.to_string()),
            action: "revoke".into(),
            outcome: "ok".into(),
            ..AuditEntry::default()
        })?;
        Ok(())
    }

    /// Stores a workflow config (which must name only registered credentials); returns its id.
    pub fn create_workflow(&self, cfg: &LoadedConfig) -> Result<String, HomeError> {
        if let Some(guid) = &cfg.config.source.credential {
            let record = self.state.credential(guid)?;
            if record.revoked_at.is_some() {
                return Err(HomeError::Invalid(format!("credential {guid} is revoked")));
            }
        }
        let id = uuid::Uuid::now_v7().to_string();
        let config_json = serde_json::to_string(&cfg.config)
            .map_err(|e| HomeError::Invalid(format!("config does not serialize: {e}")))?;
        self.state.insert_workflow(&WorkflowRecord {
            id: id.clone(),
            name: cfg.config.name.clone(),
            config_json,
            base_dir: cfg.base_dir.display().to_string(),
            created_at: now(),
        })?;
        Ok(id)
    }

    /// Loads a stored workflow as a config.
    pub fn load_workflow(&self, id: &str) -> Result<LoadedConfig, HomeError> {
        let record = self.state.workflow(id)?;
        let config: WorkflowConfig = serde_json::from_str(&record.config_json).map_err(|e| {
            ConfigError::Invalid(format!("stored workflow {id} does not parse: {e}"))
        })?;
        config.check()?;
        Ok(LoadedConfig {
            config,
            base_dir: PathBuf::from(record.base_dir),
            workflow_id: Some(id.to_string()),
            file: None,
        })
    }
}

/// Checks what every new credential needs: a known kind and valid destinations.
fn check_spec(spec: &NewCredential) -> Result<(), HomeError> {
    if !CREDENTIAL_KINDS.contains(&spec.kind.as_str()) {
        return Err(HomeError::Invalid(format!(
            "unknown credential kind `{}`; known: {}",
            spec.kind,
            CREDENTIAL_KINDS.join(", ")
        )));
    }
    if spec.destinations.is_empty() {
        return Err(HomeError::Invalid(
            "a credential needs at least one --destination HOST:PORT it may log in to".into(),
        ));
    }
    for d in &spec.destinations {
        parse_destination(d).map_err(HomeError::Invalid)?;
    }
    Ok(())
}

/// A host-side use of a credential: a sink key, a client certificate, a hash key.
pub struct CredentialUse<'a> {
    /// The GUID.
    pub guid: &'a str,
    /// The setting that names it, for messages (`sink.api_key`, `network.client_cert`).
    pub setting: &'a str,
    /// Where the secret will be sent (`host:port`): it must be one of the credential's
    /// destinations. `None` for a key that never leaves the host (a hash key).
    pub destination: Option<&'a str>,
    /// The audit detail of a successful resolution (`sink api key`).
    pub purpose: &'a str,
}

/// Why a credential could not be resolved for a host-side use. Every variant but `Unknown`
/// was audited.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The registry has no such GUID.
    #[error("{0}")]
    Unknown(String),
    /// Revoked, not bound to the destination, or not the kind the setting needs.
    #[error("{0}")]
    Denied(String),
    /// The backend did not give the secret.
    #[error("{0}")]
    Failed(String),
}

impl Home {
    /// Resolves a credential for a host-side use, just in time: it must exist, not be revoked,
    /// be bound to the destination and pass `check` (e.g. its kind); the secret is then read
    /// from its backend, registered with the redactor and (during a run) the outbound
    /// `scanner`, and the resolution audited by GUID.
    pub async fn resolve_for(
        &self,
        usage: &CredentialUse<'_>,
        audit: &crate::state::RunAudit,
        scanner: Option<&crate::pipeline::scan::OutboundScanner>,
        check: impl FnOnce(&CredentialRecord) -> Result<(), String>,
    ) -> Result<(CredentialRecord, SecretString), ResolveError> {
        let CredentialUse {
            guid,
            setting,
            destination,
            purpose,
        } = *usage;
        let record = self
            .state()
            .credential(guid)
            .map_err(|e| ResolveError::Unknown(format!("{setting}: {e}")))?;
        let audited = |outcome: &str, message: String| {
            audit.record("resolve", outcome, Some(guid), destination, Some(&message));
            message
        };
        let denied = |message: String| ResolveError::Denied(audited("denied", message));
        let failed = |message: String| ResolveError::Failed(audited("failed", message));
        if let Some(at) = &record.revoked_at {
            return Err(denied(format!(
                "{setting} credential {guid} was revoked at {at}"
            )));
        }
        if let Some(dest) = destination {
            if !record
                .destinations
                .iter()
                .any(|d| destination_matches(d, dest))
            {
                return Err(denied(format!(
                    "{setting} credential {guid} may not be used for {dest} (its destinations: {}); register {dest} with the credential",
                    record.destinations.join(", ")
                )));
            }
        }
        check(&record).map_err(|why| denied(format!("{setting} credential {guid}: {why}")))?;
        let store = self
            .stores()
            .get(&record.backend)
            .map_err(|e| failed(format!("{setting} credential {guid}: {e}")))?;
        let secret = store.resolve(&record.locator).await.map_err(|e| {
            failed(format!(
                "{setting} credential {guid} cannot be resolved from the `{}` backend: {e}",
                record.backend
            ))
        })?;
        if secret.is_empty() {
            return Err(failed(format!(
                "{setting} credential {guid} resolved to an empty secret"
            )));
        }
        crate::secrets::redact::Redactor::global().register(&secret);
        if let Some(scanner) = scanner {
            scanner.register(&secret);
        }
        audit.record("resolve", "ok", Some(guid), destination, Some(purpose));
        Ok((record, secret))
    }
}

/// Splits `host:port` (a `*` port or host parts are allowed in patterns).
pub fn parse_destination(d: &str) -> Result<(String, String), String> {
    let (host, port) = d
        .rsplit_once(':')
        .ok_or_else(|| format!("destination `{d}` must be HOST:PORT (e.g. db.internal:5432)"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port.is_empty() {
        return Err(format!("destination `{d}` must be HOST:PORT"));
    }
    if port != "*" && port.parse::<u16>().is_err() {
        return Err(format!("destination `{d}` has an invalid port `{port}`"));
    }
    Ok((host.to_ascii_lowercase(), port.to_string()))
}

/// Splits one concrete `HOST:PORT` (no `*` port) into its lowercase host and port; the error
/// names `d`.
pub fn parse_host_port(d: &str) -> Result<(String, u16), String> {
    let (host, port) = parse_destination(d)?;
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("`{d}` needs a numeric port"))?;
    Ok((host, port))
}

/// Whether `address` (`host:port`) matches the destination `pattern`.
pub fn destination_matches(pattern: &str, address: &str) -> bool {
    let (Ok((ph, pp)), Ok((ah, ap))) = (parse_destination(pattern), parse_destination(address))
    else {
        return false;
    };
    let port_ok = pp == "*" || pp == ap;
    let host_ok = if let Some(suffix) = ph.strip_prefix("*.") {
        ah.ends_with(&format!(".{suffix}"))
    } else {
        ph == ah
    };
    port_ok && host_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        assert!(destination_matches("db.internal:5432", "DB.internal:5432"));
        assert!(!destination_matches("db.internal:5432", "db.internal:5433"));
        assert!(destination_matches("*.internal:*", "a.internal:1"));
        assert!(!destination_matches("*.internal:*", "internal:1"));
        assert!(!destination_matches(
            "*.internal:*",
            "a.internal.evil.com:1"
        ));
        assert!(parse_destination("nohost").is_err());
        assert!(parse_destination("h:99999").is_err());
    }

    #[test]
    fn credential_lifecycle_keeps_secrets_out_of_the_state_store() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::open(dir.path()).unwrap();
        let guid = home
            .add_password_credential("app", "canary-Pa55word", &["127.0.0.1:5432"])
            .unwrap();
        let rec = home.state().credential(&guid).unwrap();
        assert_eq!(rec.username.as_deref(), Some("app"));
        home.rotate(&guid, SecretString::new("canary-Rotated".into()))
            .unwrap();
        home.revoke(&guid).unwrap();
        assert!(home.state().credential(&guid).unwrap().revoked_at.is_some());
        let audit = home.state().audit_entries(None, Some(&guid)).unwrap();
        let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
        assert_eq!(actions, ["create", "rotate", "revoke"]);
        drop(home);
        for entry in walk(dir.path()) {
            let bytes = std::fs::read(&entry).unwrap();
            for canary in [&b"canary-Pa55word"[..], b"canary-Rotated"] {
                assert!(
                    !bytes.windows(canary.len()).any(|w| w == canary),
                    "{} holds a secret",
                    entry.display()
                );
            }
        }
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
