//! The state store's schema, as an ordered list of migrations. Each store records the versions
//! it has in `schema_migrations`; opening a store applies the ones it lacks, in one transaction
//! (on PostgreSQL under an advisory lock, so workers starting together do not race). A store
//! at a version this binary does not know was written by a newer airlock and is refused, not
//! changed.

use super::StateError;

/// One step of the schema, written once per backend.
pub(super) struct Migration {
    pub version: i64,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

/// The schema version this binary writes and understands.
pub const SCHEMA_VERSION: i64 = 4;

/// Every migration, oldest first; versions are 1, 2, 3, ...
pub(super) const MIGRATIONS: &[Migration] = &[
    // 1: the tables as the first releases created them.
    Migration {
        version: 1,
        sqlite: r#"
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
"#,
        // Keys and times sort byte-wise, as in SQLite, whatever the database's collation.
        postgres: r#"
CREATE TABLE credentials (
    guid TEXT COLLATE "C" PRIMARY KEY,
    kind TEXT NOT NULL,
    backend TEXT NOT NULL,
    locator TEXT NOT NULL,
    username TEXT,
    engine TEXT,
    destinations TEXT NOT NULL,
    description TEXT,
    created_at TEXT COLLATE "C" NOT NULL,
    rotated_at TEXT,
    revoked_at TEXT
);
CREATE TABLE workflows (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT,
    config_json TEXT NOT NULL,
    base_dir TEXT NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL
);
CREATE TABLE runs (
    id TEXT COLLATE "C" PRIMARY KEY,
    workflow_id TEXT,
    started_at TEXT COLLATE "C" NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,
    output TEXT,
    error TEXT
);
CREATE TABLE audit (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
CREATE INDEX audit_run ON audit(run_id);
CREATE INDEX audit_credential ON audit(credential);
CREATE TABLE plugin_approvals (
    name TEXT COLLATE "C" PRIMARY KEY,
    sha256 TEXT NOT NULL,
    wit_version TEXT,
    capabilities TEXT NOT NULL,
    signer TEXT,
    file TEXT NOT NULL,
    approved_at TEXT NOT NULL
);
"#,
    },
    // 2: credentials registered as privileged on purpose (`credential add --privileged`).
    Migration {
        version: 2,
        sqlite: "ALTER TABLE credentials ADD COLUMN privileged INTEGER NOT NULL DEFAULT 0;",
        postgres: "ALTER TABLE credentials ADD COLUMN privileged BOOLEAN NOT NULL DEFAULT FALSE;",
    },
    // 3: who may publish the run of a trigger (`StateStore::claim_publish`).
    Migration {
        version: 3,
        sqlite: "CREATE TABLE publish_claims (key TEXT PRIMARY KEY, run_id TEXT NOT NULL, claimed_at TEXT NOT NULL);",
        postgres: r#"CREATE TABLE publish_claims (key TEXT COLLATE "C" PRIMARY KEY, run_id TEXT NOT NULL, claimed_at TEXT NOT NULL);"#,
    },
    // 4: what each workflow's last complete run published (`StateStore::published_set`),
    // which the next run's added and removed entities are reported against.
    Migration {
        version: 4,
        sqlite: "CREATE TABLE published_sets (workflow_key TEXT PRIMARY KEY, run_id TEXT NOT NULL, plugin_sha256 TEXT NOT NULL, filter_digest TEXT NOT NULL, names TEXT NOT NULL, recorded_at TEXT NOT NULL);",
        postgres: r#"CREATE TABLE published_sets (workflow_key TEXT COLLATE "C" PRIMARY KEY, run_id TEXT NOT NULL, plugin_sha256 TEXT NOT NULL, filter_digest TEXT NOT NULL, names TEXT NOT NULL, recorded_at TEXT NOT NULL);"#,
    },
];

/// The table that records the applied versions (the same on both backends).
pub(super) const SCHEMA_MIGRATIONS: &str =
    "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)";

/// The migrations a store at `current` still needs, after refusing a store newer than this
/// binary.
pub(super) fn pending(
    current: Option<i64>,
    location: &str,
) -> Result<impl Iterator<Item = &'static Migration>, StateError> {
    let current = current.unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(StateError::Schema(format!(
            "the state store {location} is at schema version {current}, newer than this airlock \
             understands (up to {SCHEMA_VERSION}); it was left unchanged. Run the airlock \
             version that wrote it (every worker sharing a store must be at least that new)"
        )));
    }
    Ok(MIGRATIONS.iter().filter(move |m| m.version > current))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_and_end_at_the_schema_version() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1);
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(SCHEMA_VERSION));
        assert_eq!(pending(None, "x").unwrap().count(), MIGRATIONS.len());
        assert_eq!(pending(Some(SCHEMA_VERSION), "x").unwrap().count(), 0);
        let e = pending(Some(SCHEMA_VERSION + 1), "x").err().unwrap();
        assert!(e.to_string().contains("newer"), "{e}");
    }
}
