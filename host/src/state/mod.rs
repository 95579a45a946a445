//! The state store: the credential registry, workflows, runs, publish claims and the audit
//! log. It is the embedded SQLite file `<home>/state.sqlite` unless `<home>/state.toml` names a
//! PostgreSQL database, which several workers on several machines then share. It never holds a
//! secret: a leaked state store reveals GUIDs, locators and destinations only (secrets live in
//! the secret stores).
//!
//! Every statement is written once ([`backend`]); the schema is an ordered list of migrations
//! ([`migrations`]) each store records as it applies them.

mod backend;
mod config;
mod migrations;
mod postgres;
mod sqlite;

use std::path::Path;

use serde::Serialize;

use backend::{args, Backend, Row};
pub use config::{PostgresStateConfig, StateConfig, StateConfigError, StateTls};
pub use migrations::SCHEMA_VERSION;

/// A state-store failure. No variant holds a secret: messages from PostgreSQL pass through the
/// redactor, which knows the store's password.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The SQLite database failed.
    #[error("state store: {0}")]
    Db(#[from] rusqlite::Error),
    /// The PostgreSQL database refused a statement.
    #[error("state store {location}: {message}")]
    Postgres { location: String, message: String },
    /// The PostgreSQL database cannot be reached or logged in to.
    #[error("state store {location} is unavailable: {message}")]
    Unavailable { location: String, message: String },
    /// The store's schema is not one this binary can use (a newer airlock wrote it).
    #[error("{0}")]
    Schema(String),
    /// `state.toml` is not valid.
    #[error(transparent)]
    Config(#[from] StateConfigError),
    /// Something asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A request is not acceptable.
    #[error("{0}")]
    Invalid(String),
}

/// A credential as the registry knows it: where the secret lives and where it may be used.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CredentialRecord {
    pub guid: String,
    pub kind: String,
    pub backend: String,
    pub locator: String,
    pub username: Option<String>,
    /// `postgres` or `mysql`, for `credential test`.
    pub engine: Option<String>,
    /// `host:port` patterns the credential may log in to.
    pub destinations: Vec<String>,
    pub description: Option<String>,
    pub created_at: String,
    pub rotated_at: Option<String>,
    pub revoked_at: Option<String>,
    /// Registered on purpose as a privileged login (`credential add --privileged`): a login
    /// that may read server files, run programs, read all data or is a superuser is refused
    /// unless this is set, and is audited and warned about when it is.
    pub privileged: bool,
}

/// A stored workflow: its config as JSON (GUIDs only) and the directory relative paths
/// resolve against.
#[derive(Debug, Clone, Serialize)]
pub struct WorkflowRecord {
    pub id: String,
    pub name: Option<String>,
    pub config_json: String,
    pub base_dir: String,
    pub created_at: String,
}

/// A run as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub id: String,
    pub workflow_id: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: String,
    pub output: Option<String>,
    pub error: Option<String>,
}

/// What a workflow's last complete run published: its entities' qualified names and kinds,
/// and the plugin and filters that produced them.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedSet {
    pub run_id: String,
    pub plugin_sha256: String,
    pub filter_digest: String,
    /// Qualified name -> asset kind.
    pub names: std::collections::BTreeMap<String, String>,
}

/// One audit entry. Never holds a secret.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditEntry {
    pub at: String,
    pub run_id: Option<String>,
    pub workflow_id: Option<String>,
    pub plugin_sha256: Option<String>,
    pub credential: Option<String>,
    pub destination: Option<String>,
    /// What happened: `resolve`, `login`, `denied`, `rotate`, `revoke`, ...
    pub action: String,
    /// `ok`, `denied` or `failed`.
    pub outcome: String,
    pub detail: Option<String>,
}

/// An installed plugin as approved: its digest and the capabilities the operator saw.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PluginApproval {
    /// The name workflows use (`[source] plugin = "name"`).
    pub name: String,
    /// Lowercase hex SHA-256 of the approved file.
    pub sha256: String,
    /// The `airlock:connector` version it imports.
    pub wit_version: Option<String>,
    /// The approved capabilities, as JSON ([`crate::plugins::Capabilities`]).
    pub capabilities: String,
    /// The trusted public key that signed it, when it was signed.
    pub signer: Option<String>,
    /// Where it was installed.
    pub file: String,
    pub approved_at: String,
}

/// Outcome of claiming the right to publish for a trigger key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishClaim {
    /// This run holds the claim: it may publish.
    Won,
    /// Another run holds it.
    Held {
        run_id: String,
        /// That run's status in `runs`, if recorded.
        status: Option<String>,
    },
}

/// The state store.
pub struct StateStore {
    db: Backend,
}

/// Now, as stored: RFC 3339 UTC with milliseconds.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

const CREDENTIAL_COLUMNS: &str = "guid, kind, backend, locator, username, engine, destinations, description, created_at, rotated_at, revoked_at, privileged";
const WORKFLOW_COLUMNS: &str = "id, name, config_json, base_dir, created_at";
const RUN_COLUMNS: &str = "id, workflow_id, started_at, finished_at, status, output, error";
const APPROVAL_COLUMNS: &str = "name, sha256, wit_version, capabilities, signer, file, approved_at";
const AUDIT_COLUMNS: &str =
    "at, run_id, workflow_id, plugin_sha256, credential, destination, action, outcome, detail";

/// How often `claim_publish` tries again when the claim it lost is released before it could
/// read who held it.
const CLAIM_ATTEMPTS: usize = 5;

impl StateStore {
    /// Opens (creating, 0600) the embedded store at `path`, bringing its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        Ok(StateStore {
            db: Backend::Sqlite(sqlite::SqliteDb::open(path)?),
        })
    }

    /// Opens the store of the home in `home`: the database `<home>/state.toml` names, else
    /// `<home>/state.sqlite`.
    pub fn open_in_home(home: &Path) -> Result<Self, StateError> {
        Self::connect(StateConfig::load(home)?)
    }

    /// Opens the store `config` describes, bringing its schema up to date. A PostgreSQL store
    /// is logged in to now, so an unreachable one fails here.
    pub fn connect(config: StateConfig) -> Result<Self, StateError> {
        match config {
            StateConfig::Sqlite(path) => Self::open(&path),
            StateConfig::Postgres(c) => Ok(StateStore {
                db: Backend::Postgres(postgres::PgDb::open(c)?),
            }),
        }
    }

    /// Where the store is: the SQLite file, or `postgres://user@host:port/dbname`.
    pub fn location(&self) -> &str {
        self.db.location()
    }

    /// The schema version recorded in the store.
    pub fn schema_version(&self) -> Result<i64, StateError> {
        let mut rows = self
            .db
            .query("SELECT max(version) FROM schema_migrations", args![])?;
        Ok(match rows.first_mut() {
            Some(row) => row.opt_int(0)?.unwrap_or(0),
            None => 0,
        })
    }

    /// Adds a credential record.
    pub fn insert_credential(&self, c: &CredentialRecord) -> Result<(), StateError> {
        self.db.execute(
            &format!(
                "INSERT INTO credentials ({CREDENTIAL_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            ),
            args![
                &c.guid,
                &c.kind,
                &c.backend,
                &c.locator,
                &c.username,
                &c.engine,
                serde_json::to_string(&c.destinations).unwrap_or_else(|_| "[]".into()),
                &c.description,
                &c.created_at,
                &c.rotated_at,
                &c.revoked_at,
                c.privileged,
            ],
        )?;
        Ok(())
    }

    /// The credential `guid`.
    pub fn credential(&self, guid: &str) -> Result<CredentialRecord, StateError> {
        self.db
            .query(
                &format!("SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE guid = ?1"),
                args![guid],
            )?
            .into_iter()
            .next()
            .map(row_to_credential)
            .transpose()?
            .ok_or_else(|| {
                StateError::NotFound(format!(
                    "unknown credential {guid}; list them with `airlock credential list`"
                ))
            })
    }

    /// Every credential, oldest first.
    pub fn credentials(&self) -> Result<Vec<CredentialRecord>, StateError> {
        self.db
            .query(
                &format!("SELECT {CREDENTIAL_COLUMNS} FROM credentials ORDER BY created_at, guid"),
                args![],
            )?
            .into_iter()
            .map(row_to_credential)
            .collect()
    }

    /// Marks a credential rotated now.
    pub fn mark_rotated(&self, guid: &str) -> Result<(), StateError> {
        let n = self.db.execute(
            "UPDATE credentials SET rotated_at = ?2 WHERE guid = ?1",
            args![guid, now()],
        )?;
        if n == 0 {
            return Err(StateError::NotFound(format!("unknown credential {guid}")));
        }
        Ok(())
    }

    /// Marks a credential revoked now.
    pub fn mark_revoked(&self, guid: &str) -> Result<(), StateError> {
        let n = self.db.execute(
            "UPDATE credentials SET revoked_at = ?2 WHERE guid = ?1 AND revoked_at IS NULL",
            args![guid, now()],
        )?;
        if n == 0 {
            return Err(StateError::NotFound(format!(
                "unknown or already revoked credential {guid}"
            )));
        }
        Ok(())
    }

    /// Stores a workflow.
    pub fn insert_workflow(&self, w: &WorkflowRecord) -> Result<(), StateError> {
        self.db.execute(
            &format!("INSERT INTO workflows ({WORKFLOW_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
            args![&w.id, &w.name, &w.config_json, &w.base_dir, &w.created_at],
        )?;
        Ok(())
    }

    /// The workflow `id`.
    pub fn workflow(&self, id: &str) -> Result<WorkflowRecord, StateError> {
        self.db
            .query(
                &format!("SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE id = ?1"),
                args![id],
            )?
            .into_iter()
            .next()
            .map(row_to_workflow)
            .transpose()?
            .ok_or_else(|| {
                StateError::NotFound(format!(
                    "unknown workflow {id}; list them with `airlock workflow list`"
                ))
            })
    }

    /// Every workflow, oldest first.
    pub fn workflows(&self) -> Result<Vec<WorkflowRecord>, StateError> {
        self.db
            .query(
                &format!("SELECT {WORKFLOW_COLUMNS} FROM workflows ORDER BY created_at, id"),
                args![],
            )?
            .into_iter()
            .map(row_to_workflow)
            .collect()
    }

    /// Records a run's start.
    pub fn run_started(&self, id: &str, workflow_id: Option<&str>) -> Result<(), StateError> {
        self.db.execute(
            "INSERT INTO runs (id, workflow_id, started_at, status) VALUES (?1, ?2, ?3, 'running')",
            args![id, workflow_id, now()],
        )?;
        Ok(())
    }

    /// Records a run's end.
    pub fn run_finished(
        &self,
        id: &str,
        status: &str,
        output: Option<&str>,
        error: Option<&str>,
    ) -> Result<(), StateError> {
        // Error text quotes plugins and servers: it passes the redactor every log line does.
        let redactor = crate::secrets::redact::Redactor::global();
        let error = error.map(|e| redactor.redact(e).into_owned());
        let output = output.map(|o| redactor.redact(o).into_owned());
        self.db.execute(
            "UPDATE runs SET finished_at = ?2, status = ?3, output = ?4, error = ?5 WHERE id = ?1",
            args![id, now(), status, output, error],
        )?;
        Ok(())
    }

    /// Recent runs, newest first.
    pub fn runs(&self, limit: u32) -> Result<Vec<RunRecord>, StateError> {
        self.db
            .query(
                &format!(
                    "SELECT {RUN_COLUMNS} FROM runs ORDER BY started_at DESC, id DESC LIMIT ?1"
                ),
                args![i64::from(limit)],
            )?
            .into_iter()
            .map(row_to_run)
            .collect()
    }

    /// Records (replacing any earlier one) the approval of an installed plugin.
    pub fn approve_plugin(&self, p: &PluginApproval) -> Result<(), StateError> {
        self.db.execute(
            &format!(
                "INSERT INTO plugin_approvals ({APPROVAL_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (name) DO UPDATE SET sha256 = excluded.sha256, wit_version = excluded.wit_version,
                 capabilities = excluded.capabilities, signer = excluded.signer, file = excluded.file,
                 approved_at = excluded.approved_at"
            ),
            args![
                &p.name,
                &p.sha256,
                &p.wit_version,
                &p.capabilities,
                &p.signer,
                &p.file,
                &p.approved_at
            ],
        )?;
        Ok(())
    }

    /// The approval of the plugin `name`, if it was installed.
    pub fn plugin_approval(&self, name: &str) -> Result<Option<PluginApproval>, StateError> {
        self.db
            .query(
                &format!("SELECT {APPROVAL_COLUMNS} FROM plugin_approvals WHERE name = ?1"),
                args![name],
            )?
            .into_iter()
            .next()
            .map(row_to_approval)
            .transpose()
    }

    /// Every approved plugin, by name.
    pub fn plugin_approvals(&self) -> Result<Vec<PluginApproval>, StateError> {
        self.db
            .query(
                &format!("SELECT {APPROVAL_COLUMNS} FROM plugin_approvals ORDER BY name"),
                args![],
            )?
            .into_iter()
            .map(row_to_approval)
            .collect()
    }

    /// Appends an audit entry (its `at` is set now when empty).
    pub fn audit(&self, e: &AuditEntry) -> Result<(), StateError> {
        let at = if e.at.is_empty() { now() } else { e.at.clone() };
        self.db.execute(
            &format!(
                "INSERT INTO audit ({AUDIT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ),
            args![
                at,
                &e.run_id,
                &e.workflow_id,
                &e.plugin_sha256,
                &e.credential,
                &e.destination,
                &e.action,
                &e.outcome,
                &e.detail
            ],
        )?;
        Ok(())
    }

    /// Audit entries, oldest first, optionally for one run and/or one credential.
    pub fn audit_entries(
        &self,
        run_id: Option<&str>,
        credential: Option<&str>,
    ) -> Result<Vec<AuditEntry>, StateError> {
        self.db
            .query(
                &format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit
                     WHERE (?1 IS NULL OR run_id = ?1) AND (?2 IS NULL OR credential = ?2) ORDER BY id"
                ),
                args![run_id, credential],
            )?
            .into_iter()
            .map(|mut r| {
                Ok(AuditEntry {
                    at: r.text(0)?,
                    run_id: r.opt_text(1)?,
                    workflow_id: r.opt_text(2)?,
                    plugin_sha256: r.opt_text(3)?,
                    credential: r.opt_text(4)?,
                    destination: r.opt_text(5)?,
                    action: r.text(6)?,
                    outcome: r.text(7)?,
                    detail: r.opt_text(8)?,
                })
            })
            .collect()
    }

    /// Claims, for `run_id`, the right to publish what the trigger `key` asked for, so that a
    /// trigger retried on another worker publishes at most once. Atomic: the first claim wins
    /// and later ones learn who holds it (and that run's status). Claiming again with the
    /// holding run wins again.
    pub fn claim_publish(&self, key: &str, run_id: &str) -> Result<PublishClaim, StateError> {
        check_claim(key, run_id)?;
        for _ in 0..CLAIM_ATTEMPTS {
            self.db.execute(
                "INSERT INTO publish_claims (key, run_id, claimed_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO NOTHING",
                args![key, run_id, now()],
            )?;
            let holder = self
                .db
                .query(
                    "SELECT c.run_id, r.status FROM publish_claims c LEFT JOIN runs r ON r.id = c.run_id
                     WHERE c.key = ?1",
                    args![key],
                )?
                .into_iter()
                .next();
            // None: the holder released it between the two statements; claim again.
            if let Some(mut row) = holder {
                let holder = row.text(0)?;
                return Ok(if holder == run_id {
                    PublishClaim::Won
                } else {
                    PublishClaim::Held {
                        run_id: holder,
                        status: row.opt_text(1)?,
                    }
                });
            }
        }
        Err(StateError::Invalid(format!(
            "the publish claim for {key} kept changing hands while {run_id} claimed it; try again"
        )))
    }

    /// Hands the claim for `key` from `from_run_id` (say, a run that failed or was abandoned)
    /// to `to_run_id`: an atomic compare-and-set, false when the claim is no longer
    /// `from_run_id`'s (someone else took it over, or it was released).
    pub fn take_over_publish(
        &self,
        key: &str,
        from_run_id: &str,
        to_run_id: &str,
    ) -> Result<bool, StateError> {
        check_claim(key, to_run_id)?;
        let n = self.db.execute(
            "UPDATE publish_claims SET run_id = ?3, claimed_at = ?4 WHERE key = ?1 AND run_id = ?2",
            args![key, from_run_id, to_run_id, now()],
        )?;
        Ok(n == 1)
    }

    /// Gives up the claim for `key`, only if `run_id` holds it (a run that failed before
    /// publishing anything).
    pub fn release_publish(&self, key: &str, run_id: &str) -> Result<(), StateError> {
        self.db.execute(
            "DELETE FROM publish_claims WHERE key = ?1 AND run_id = ?2",
            args![key, run_id],
        )?;
        Ok(())
    }

    /// The run holding the claim for `key`, when it completed (what a retried trigger reports
    /// instead of publishing again).
    pub fn published_run(&self, key: &str) -> Result<Option<RunRecord>, StateError> {
        self.db
            .query(
                "SELECT r.id, r.workflow_id, r.started_at, r.finished_at, r.status, r.output, r.error
                 FROM publish_claims c JOIN runs r ON r.id = c.run_id
                 WHERE c.key = ?1 AND r.status = 'complete'",
                args![key],
            )?
            .into_iter()
            .next()
            .map(row_to_run)
            .transpose()
    }

    /// What the last complete run of `workflow_key` published, if one was recorded.
    pub fn published_set(&self, workflow_key: &str) -> Result<Option<PublishedSet>, StateError> {
        let Some(mut row) = self
            .db
            .query(
                "SELECT run_id, plugin_sha256, filter_digest, names FROM published_sets
                 WHERE workflow_key = ?1",
                args![workflow_key],
            )?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        let names = row.text(3)?;
        Ok(Some(PublishedSet {
            run_id: row.text(0)?,
            plugin_sha256: row.text(1)?,
            filter_digest: row.text(2)?,
            names: serde_json::from_str(&names).map_err(|e| {
                StateError::Invalid(format!("published set of {workflow_key}: {e}"))
            })?,
        }))
    }

    /// Records what a complete run of `workflow_key` published, replacing the previous set.
    pub fn record_published_set(
        &self,
        workflow_key: &str,
        set: &PublishedSet,
    ) -> Result<(), StateError> {
        let names =
            serde_json::to_string(&set.names).map_err(|e| StateError::Invalid(e.to_string()))?;
        self.db.execute(
            "INSERT INTO published_sets (workflow_key, run_id, plugin_sha256, filter_digest, names, recorded_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (workflow_key) DO UPDATE SET run_id = excluded.run_id,
               plugin_sha256 = excluded.plugin_sha256, filter_digest = excluded.filter_digest,
               names = excluded.names, recorded_at = excluded.recorded_at",
            args![workflow_key, &set.run_id, &set.plugin_sha256, &set.filter_digest, names, now()],
        )?;
        Ok(())
    }
}

fn check_claim(key: &str, run_id: &str) -> Result<(), StateError> {
    if key.is_empty() || run_id.is_empty() {
        return Err(StateError::Invalid(
            "a publish claim needs a trigger key and a run id".into(),
        ));
    }
    Ok(())
}

fn row_to_credential(mut r: Row) -> Result<CredentialRecord, StateError> {
    let destinations = r.text(6)?;
    Ok(CredentialRecord {
        guid: r.text(0)?,
        kind: r.text(1)?,
        backend: r.text(2)?,
        locator: r.text(3)?,
        username: r.opt_text(4)?,
        engine: r.opt_text(5)?,
        destinations: serde_json::from_str(&destinations).unwrap_or_default(),
        description: r.opt_text(7)?,
        created_at: r.text(8)?,
        rotated_at: r.opt_text(9)?,
        revoked_at: r.opt_text(10)?,
        privileged: r.flag(11)?,
    })
}

fn row_to_workflow(mut r: Row) -> Result<WorkflowRecord, StateError> {
    Ok(WorkflowRecord {
        id: r.text(0)?,
        name: r.opt_text(1)?,
        config_json: r.text(2)?,
        base_dir: r.text(3)?,
        created_at: r.text(4)?,
    })
}

fn row_to_run(mut r: Row) -> Result<RunRecord, StateError> {
    Ok(RunRecord {
        id: r.text(0)?,
        workflow_id: r.opt_text(1)?,
        started_at: r.text(2)?,
        finished_at: r.opt_text(3)?,
        status: r.text(4)?,
        output: r.opt_text(5)?,
        error: r.opt_text(6)?,
    })
}

fn row_to_approval(mut r: Row) -> Result<PluginApproval, StateError> {
    Ok(PluginApproval {
        name: r.text(0)?,
        sha256: r.text(1)?,
        wit_version: r.opt_text(2)?,
        capabilities: r.text(3)?,
        signer: r.opt_text(4)?,
        file: r.text(5)?,
        approved_at: r.text(6)?,
    })
}

/// Audit events of every run in this process, by action and outcome (`resolve ok`,
/// `network denied`, `sql-refused function`, `secret-reflected withheld`, ...), for the
/// worker's `/metrics`. Only counts: never a GUID, a destination or a detail.
pub fn audit_event_counts() -> Vec<((String, String), u64)> {
    AUDIT_COUNTS
        .lock()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
        .unwrap_or_default()
}

static AUDIT_COUNTS: std::sync::Mutex<std::collections::BTreeMap<(String, String), u64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

fn count_event(action: &str, outcome: &str) {
    if let Ok(mut m) = AUDIT_COUNTS.lock() {
        *m.entry((action.to_string(), outcome.to_string()))
            .or_insert(0) += 1;
    }
}

/// Sees every audit entry a run writes, after redaction (the run's own log is one).
pub trait AuditTap: Send + Sync {
    /// One entry, exactly as it goes to the audit log.
    fn audited(&self, entry: &AuditEntry);
}

/// The audit context of one run: every entry it writes carries the run, the workflow and the
/// plugin digest. Without a state store (ad-hoc runs without credentials) it writes to the log.
#[derive(Clone)]
pub struct RunAudit {
    state: Option<std::sync::Arc<StateStore>>,
    run_id: String,
    workflow_id: Option<String>,
    plugin_sha256: Option<String>,
    tap: Option<std::sync::Arc<dyn AuditTap>>,
}

impl std::fmt::Debug for RunAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunAudit")
            .field("run_id", &self.run_id)
            .field("workflow_id", &self.workflow_id)
            .finish_non_exhaustive()
    }
}

impl RunAudit {
    /// An audit context for `run_id`.
    pub fn new(
        state: Option<std::sync::Arc<StateStore>>,
        run_id: &str,
        workflow_id: Option<&str>,
        plugin_sha256: Option<&str>,
    ) -> Self {
        RunAudit {
            state,
            run_id: run_id.to_string(),
            workflow_id: workflow_id.map(str::to_string),
            plugin_sha256: plugin_sha256.map(str::to_string),
            tap: None,
        }
    }

    /// This context, also handing every entry to `tap`.
    pub fn with_tap(mut self, tap: std::sync::Arc<dyn AuditTap>) -> Self {
        self.tap = Some(tap);
        self
    }

    /// Records one event. `detail` passes through the redactor first.
    pub fn record(
        &self,
        action: &str,
        outcome: &str,
        credential: Option<&str>,
        destination: Option<&str>,
        detail: Option<&str>,
    ) {
        count_event(action, outcome);
        let detail = detail.map(|d| {
            crate::secrets::redact::Redactor::global()
                .redact(d)
                .into_owned()
        });
        let entry = AuditEntry {
            at: now(),
            run_id: Some(self.run_id.clone()),
            workflow_id: self.workflow_id.clone(),
            plugin_sha256: self.plugin_sha256.clone(),
            credential: credential.map(str::to_string),
            destination: destination.map(str::to_string),
            action: action.to_string(),
            outcome: outcome.to_string(),
            detail,
        };
        if let Some(tap) = &self.tap {
            tap.audited(&entry);
        }
        match &self.state {
            Some(state) => {
                if let Err(e) = state.audit(&entry) {
                    tracing::error!("cannot write audit entry ({action} {outcome}): {e}");
                }
            }
            None => tracing::info!(
                action = %entry.action,
                outcome = %entry.outcome,
                destination = ?entry.destination,
                "audit"
            ),
        }
    }
}
