//! The state store (embedded SQLite): the credential registry, workflows, runs and the audit
//! log. It never holds a secret: a leaked state store reveals GUIDs, locators and destinations
//! only.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

/// A state-store failure.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The database failed.
    #[error("state store: {0}")]
    Db(#[from] rusqlite::Error),
    /// Something asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A request is not acceptable.
    #[error("{0}")]
    Invalid(String),
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS credentials (
    guid TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    backend TEXT NOT NULL,
    locator TEXT NOT NULL,
    username TEXT,
    engine TEXT,
    destinations TEXT NOT NULL,
    description TEXT,
    created_at TEXT NOT NULL,
    rotated_at TEXT,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS workflows (
    id TEXT PRIMARY KEY,
    name TEXT,
    config_json TEXT NOT NULL,
    base_dir TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    workflow_id TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,
    output TEXT,
    error TEXT
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    run_id TEXT,
    workflow_id TEXT,
    plugin_sha256 TEXT,
    credential TEXT,
    destination TEXT,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS audit_run ON audit(run_id);
CREATE INDEX IF NOT EXISTS audit_credential ON audit(credential);
CREATE TABLE IF NOT EXISTS plugin_approvals (
    name TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    wit_version TEXT,
    capabilities TEXT NOT NULL,
    signer TEXT,
    file TEXT NOT NULL,
    approved_at TEXT NOT NULL
);
"#;

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

/// The state store.
pub struct StateStore {
    conn: Mutex<rusqlite::Connection>,
}

/// Now, as stored: RFC 3339 UTC with milliseconds.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl StateStore {
    /// Opens (creating) the store at `path`, created 0600.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let existed = path.exists();
        let conn = rusqlite::Connection::open(path)?;
        if !existed {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(SCHEMA)?;
        migrate(&conn)?;
        Ok(StateStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        // A poisoned lock only means another thread panicked mid-statement; SQLite keeps the
        // database consistent, so keep going.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a credential record.
    pub fn insert_credential(&self, c: &CredentialRecord) -> Result<(), StateError> {
        self.conn().execute(
            "INSERT INTO credentials (guid, kind, backend, locator, username, engine, destinations, description, created_at, rotated_at, revoked_at, privileged)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                c.guid,
                c.kind,
                c.backend,
                c.locator,
                c.username,
                c.engine,
                serde_json::to_string(&c.destinations).unwrap_or_else(|_| "[]".into()),
                c.description,
                c.created_at,
                c.rotated_at,
                c.revoked_at,
                c.privileged
            ],
        )?;
        Ok(())
    }

    /// The credential `guid`.
    pub fn credential(&self, guid: &str) -> Result<CredentialRecord, StateError> {
        self.conn()
            .query_row(
                "SELECT guid, kind, backend, locator, username, engine, destinations, description, created_at, rotated_at, revoked_at, privileged
                 FROM credentials WHERE guid = ?1",
                [guid],
                row_to_credential,
            )
            .optional()?
            .ok_or_else(|| {
                StateError::NotFound(format!(
                    "unknown credential {guid}; list them with `airlock credential list`"
                ))
            })
    }

    /// Every credential, oldest first.
    pub fn credentials(&self) -> Result<Vec<CredentialRecord>, StateError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT guid, kind, backend, locator, username, engine, destinations, description, created_at, rotated_at, revoked_at, privileged
             FROM credentials ORDER BY created_at, guid",
        )?;
        let rows = stmt.query_map([], row_to_credential)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Marks a credential rotated now.
    pub fn mark_rotated(&self, guid: &str) -> Result<(), StateError> {
        let n = self.conn().execute(
            "UPDATE credentials SET rotated_at = ?2 WHERE guid = ?1",
            params![guid, now()],
        )?;
        if n == 0 {
            return Err(StateError::NotFound(format!("unknown credential {guid}")));
        }
        Ok(())
    }

    /// Marks a credential revoked now.
    pub fn mark_revoked(&self, guid: &str) -> Result<(), StateError> {
        let n = self.conn().execute(
            "UPDATE credentials SET revoked_at = ?2 WHERE guid = ?1 AND revoked_at IS NULL",
            params![guid, now()],
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
        self.conn().execute(
            "INSERT INTO workflows (id, name, config_json, base_dir, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![w.id, w.name, w.config_json, w.base_dir, w.created_at],
        )?;
        Ok(())
    }

    /// The workflow `id`.
    pub fn workflow(&self, id: &str) -> Result<WorkflowRecord, StateError> {
        self.conn()
            .query_row(
                "SELECT id, name, config_json, base_dir, created_at FROM workflows WHERE id = ?1",
                [id],
                row_to_workflow,
            )
            .optional()?
            .ok_or_else(|| {
                StateError::NotFound(format!(
                    "unknown workflow {id}; list them with `airlock workflow list`"
                ))
            })
    }

    /// Every workflow, oldest first.
    pub fn workflows(&self) -> Result<Vec<WorkflowRecord>, StateError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, name, config_json, base_dir, created_at FROM workflows ORDER BY created_at, id",
        )?;
        let rows = stmt.query_map([], row_to_workflow)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Records a run's start.
    pub fn run_started(&self, id: &str, workflow_id: Option<&str>) -> Result<(), StateError> {
        self.conn().execute(
            "INSERT INTO runs (id, workflow_id, started_at, status) VALUES (?1, ?2, ?3, 'running')",
            params![id, workflow_id, now()],
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
        self.conn().execute(
            "UPDATE runs SET finished_at = ?2, status = ?3, output = ?4, error = ?5 WHERE id = ?1",
            params![id, now(), status, output, error],
        )?;
        Ok(())
    }

    /// Recent runs, newest first.
    pub fn runs(&self, limit: u32) -> Result<Vec<RunRecord>, StateError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, workflow_id, started_at, finished_at, status, output, error FROM runs ORDER BY started_at DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit], |r| {
            Ok(RunRecord {
                id: r.get(0)?,
                workflow_id: r.get(1)?,
                started_at: r.get(2)?,
                finished_at: r.get(3)?,
                status: r.get(4)?,
                output: r.get(5)?,
                error: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Records (replacing any earlier one) the approval of an installed plugin.
    pub fn approve_plugin(&self, p: &PluginApproval) -> Result<(), StateError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO plugin_approvals (name, sha256, wit_version, capabilities, signer, file, approved_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![p.name, p.sha256, p.wit_version, p.capabilities, p.signer, p.file, p.approved_at],
        )?;
        Ok(())
    }

    /// The approval of the plugin `name`, if it was installed.
    pub fn plugin_approval(&self, name: &str) -> Result<Option<PluginApproval>, StateError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT name, sha256, wit_version, capabilities, signer, file, approved_at
                 FROM plugin_approvals WHERE name = ?1",
                [name],
                row_to_approval,
            )
            .optional()?)
    }

    /// Every approved plugin, by name.
    pub fn plugin_approvals(&self) -> Result<Vec<PluginApproval>, StateError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT name, sha256, wit_version, capabilities, signer, file, approved_at
             FROM plugin_approvals ORDER BY name",
        )?;
        let rows = stmt.query_map([], row_to_approval)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Appends an audit entry (its `at` is set now when empty).
    pub fn audit(&self, e: &AuditEntry) -> Result<(), StateError> {
        let at = if e.at.is_empty() { now() } else { e.at.clone() };
        self.conn().execute(
            "INSERT INTO audit (at, run_id, workflow_id, plugin_sha256, credential, destination, action, outcome, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                at,
                e.run_id,
                e.workflow_id,
                e.plugin_sha256,
                e.credential,
                e.destination,
                e.action,
                e.outcome,
                e.detail
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
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT at, run_id, workflow_id, plugin_sha256, credential, destination, action, outcome, detail
             FROM audit WHERE (?1 IS NULL OR run_id = ?1) AND (?2 IS NULL OR credential = ?2) ORDER BY id",
        )?;
        let rows = stmt.query_map(params![run_id, credential], |r| {
            Ok(AuditEntry {
                at: r.get(0)?,
                run_id: r.get(1)?,
                workflow_id: r.get(2)?,
                plugin_sha256: r.get(3)?,
                credential: r.get(4)?,
                destination: r.get(5)?,
                action: r.get(6)?,
                outcome: r.get(7)?,
                detail: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

fn row_to_credential(r: &rusqlite::Row<'_>) -> rusqlite::Result<CredentialRecord> {
    let destinations: String = r.get(6)?;
    Ok(CredentialRecord {
        guid: r.get(0)?,
        kind: r.get(1)?,
        backend: r.get(2)?,
        locator: r.get(3)?,
        username: r.get(4)?,
        engine: r.get(5)?,
        destinations: serde_json::from_str(&destinations).unwrap_or_default(),
        description: r.get(7)?,
        created_at: r.get(8)?,
        rotated_at: r.get(9)?,
        revoked_at: r.get(10)?,
        privileged: r.get::<_, Option<bool>>(11)?.unwrap_or(false),
    })
}

/// Brings a store written by an earlier version up to this schema.
fn migrate(conn: &rusqlite::Connection) -> Result<(), StateError> {
    let has_privileged = conn
        .prepare("SELECT 1 FROM pragma_table_info('credentials') WHERE name = 'privileged'")?
        .exists([])?;
    if !has_privileged {
        conn.execute_batch(
            "ALTER TABLE credentials ADD COLUMN privileged INTEGER NOT NULL DEFAULT 0",
        )?;
    }
    Ok(())
}

fn row_to_approval(r: &rusqlite::Row<'_>) -> rusqlite::Result<PluginApproval> {
    Ok(PluginApproval {
        name: r.get(0)?,
        sha256: r.get(1)?,
        wit_version: r.get(2)?,
        capabilities: r.get(3)?,
        signer: r.get(4)?,
        file: r.get(5)?,
        approved_at: r.get(6)?,
    })
}

fn row_to_workflow(r: &rusqlite::Row<'_>) -> rusqlite::Result<WorkflowRecord> {
    Ok(WorkflowRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        config_json: r.get(2)?,
        base_dir: r.get(3)?,
        created_at: r.get(4)?,
    })
}

/// The audit context of one run: every entry it writes carries the run, the workflow and the
/// plugin digest. Without a state store (ad-hoc runs without credentials) it writes to the log.
#[derive(Clone)]
pub struct RunAudit {
    state: Option<std::sync::Arc<StateStore>>,
    run_id: String,
    workflow_id: Option<String>,
    plugin_sha256: Option<String>,
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
        }
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
