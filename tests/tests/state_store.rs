//! The state store, one suite over both backends: every test is written once as a function of
//! a store's location and runs twice, on an embedded SQLite file and on a real PostgreSQL
//! database (a throwaway cluster, a database owned by a password-protected login named in
//! `state.toml` with `password_file`). Stores are opened as a home opens them
//! (`StateStore::open_in_home`) and used as the host uses them: synchronously, from inside a
//! tokio runtime. Then what only one backend has: adopting an SQLite file written before
//! versioned migrations, and on PostgreSQL wrong passwords, reconnection and TLS.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, Weak};

use airlock::state::{
    AuditEntry, CredentialRecord, PluginApproval, PublishClaim, StateError, StateStore,
    WorkflowRecord, SCHEMA_VERSION,
};
use airlock_tests::postgres::{quote_ident, quote_literal, PgCluster};

// ---------------------------------------------------------------------------------------
// Where a test's store lives

/// One PostgreSQL cluster for the tests running at the same time; stopped when the last of
/// them drops it (a static that is never dropped would leave the server running).
fn cluster() -> Arc<PgCluster> {
    static SHARED: Mutex<Weak<PgCluster>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = shared.upgrade() {
        return c;
    }
    let c = Arc::new(PgCluster::start());
    *shared = Arc::downgrade(&c);
    c
}

fn unique() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A home whose state store nobody has opened yet. `open` opens one more handle on it, as
/// another worker would.
enum Place {
    Sqlite {
        home: tempfile::TempDir,
    },
    Postgres {
        cluster: Arc<PgCluster>,
        home: tempfile::TempDir,
        db: String,
        user: String,
        password: String,
    },
}

impl Place {
    fn sqlite() -> Place {
        Place::Sqlite {
            home: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A fresh database owned by a fresh login, named in `<home>/state.toml`; the password is
    /// in a file ending in a newline, as a Kubernetes Secret mount often does.
    fn postgres() -> Place {
        let cluster = cluster();
        let n = unique();
        let user = format!("worker_{n}");
        let password = format!("canary-State-Pa55-{n}-q7Xz");
        let db = format!("state_{n}");
        cluster.create_user(&user, &password);
        cluster.psql(
            "postgres",
            &format!(
                "CREATE DATABASE {} OWNER {}",
                quote_ident(&db),
                quote_ident(&user)
            ),
        );
        let home = tempfile::tempdir().expect("temp dir");
        std::fs::write(home.path().join("state-password"), format!("{password}\n"))
            .expect("password file");
        write_state_toml(
            home.path(),
            &format!(
                "url = \"postgres://{user}@127.0.0.1:{}/{db}\"\npassword_file = \"state-password\"\ntls = \"disable\"\nconnect_timeout_s = 20\n",
                cluster.port()
            ),
        );
        Place::Postgres {
            cluster,
            home,
            db,
            user,
            password,
        }
    }

    fn home(&self) -> &Path {
        match self {
            Place::Sqlite { home } | Place::Postgres { home, .. } => home.path(),
        }
    }

    fn open(&self) -> Result<StateStore, StateError> {
        StateStore::open_in_home(self.home())
    }

    fn store(&self) -> StateStore {
        self.open().expect("the state store opens")
    }

    /// Runs `sql` on the database directly, bypassing the store; the first column of the
    /// first row as text ("" when none).
    fn sql(&self, sql: &str) -> String {
        match self {
            Place::Sqlite { home } => {
                let conn = rusqlite::Connection::open(home.path().join("state.sqlite"))
                    .expect("open the file");
                let mut stmt = conn.prepare(sql).expect("prepare");
                let mut rows = stmt.query([]).expect("query");
                match rows.next().expect("row") {
                    Some(r) => match r.get_ref(0) {
                        Ok(rusqlite::types::ValueRef::Integer(n)) => n.to_string(),
                        Ok(rusqlite::types::ValueRef::Text(t)) => {
                            String::from_utf8_lossy(t).into_owned()
                        }
                        _ => String::new(),
                    },
                    None => String::new(),
                }
            }
            Place::Postgres { cluster, db, .. } => cluster.psql(db, sql).trim().to_string(),
        }
    }
}

fn write_state_toml(home: &Path, text: &str) -> PathBuf {
    let path = home.join("state.toml");
    std::fs::write(&path, text).expect("write state.toml");
    path
}

/// Runs `test` on `place` from inside a tokio runtime, as the host calls the store.
fn run(place: Place, test: fn(&Place)) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async { test(&place) });
}

/// Each test once per backend: `sqlite::name` and `postgres::name`.
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $test() { super::run(super::Place::sqlite(), super::$test) })*
        }
        mod postgres {
            $(#[test] fn $test() { super::run(super::Place::postgres(), super::$test) })*
        }
    };
}

on_both_backends!(
    credentials_are_registered_rotated_and_revoked,
    workflows_are_stored_and_listed,
    runs_start_finish_and_list_newest_first,
    audit_entries_are_filtered_by_run_and_credential,
    plugin_approvals_are_replaced_by_name,
    publish_claims_are_won_once_taken_over_and_released,
    two_workers_racing_for_a_claim_let_exactly_one_win,
    two_workers_migrate_at_once_and_share_writes,
    migrations_are_recorded_and_a_newer_store_is_refused,
);

// ---------------------------------------------------------------------------------------
// The suite

fn credential(guid: &str, created_at: &str, privileged: bool) -> CredentialRecord {
    CredentialRecord {
        guid: guid.into(),
        kind: "password".into(),
        backend: "embedded".into(),
        locator: format!("loc-{guid}"),
        username: Some("catalog_reader".into()),
        engine: if privileged {
            None
        } else {
            Some("postgres".into())
        },
        destinations: vec!["db.internal:5432".into(), "*.replica.internal:*".into()],
        description: privileged.then(|| "break-glass".to_string()),
        created_at: created_at.into(),
        rotated_at: None,
        revoked_at: None,
        privileged,
    }
}

fn credentials_are_registered_rotated_and_revoked(place: &Place) {
    let store = place.store();
    let b = credential("guid-b", "2024-05-01T10:00:00.000Z", true);
    let a = credential("guid-a", "2024-05-01T09:00:00.000Z", false);
    store.insert_credential(&b).unwrap();
    store.insert_credential(&a).unwrap();
    assert_eq!(store.credential("guid-a").unwrap(), a);
    assert_eq!(store.credential("guid-b").unwrap(), b);
    assert!(store.insert_credential(&a).is_err(), "a GUID is unique");
    let listed = store.credentials().unwrap();
    assert_eq!(listed, vec![a.clone(), b.clone()], "oldest first");
    match store.credential("guid-none") {
        Err(StateError::NotFound(m)) => assert!(m.contains("guid-none"), "{m}"),
        other => panic!("expected NotFound, got {other:?}"),
    }

    store.mark_rotated("guid-a").unwrap();
    let rotated = store.credential("guid-a").unwrap();
    assert!(rotated
        .rotated_at
        .as_deref()
        .is_some_and(|t| t.ends_with('Z')));
    assert!(rotated.revoked_at.is_none());
    assert!(matches!(
        store.mark_rotated("guid-none"),
        Err(StateError::NotFound(_))
    ));

    store.mark_revoked("guid-a").unwrap();
    assert!(store.credential("guid-a").unwrap().revoked_at.is_some());
    assert!(
        matches!(store.mark_revoked("guid-a"), Err(StateError::NotFound(_))),
        "revoking twice is refused"
    );
    assert!(store.credential("guid-b").unwrap().revoked_at.is_none());
}

fn workflows_are_stored_and_listed(place: &Place) {
    let store = place.store();
    let w = |id: &str, name: Option<&str>, at: &str| WorkflowRecord {
        id: id.into(),
        name: name.map(str::to_string),
        config_json: format!("{{\"source\":{{\"plugin\":\"sqlite\",\"id\":\"{id}\"}}}}"),
        base_dir: "/etc/airlock/workflows".into(),
        created_at: at.into(),
    };
    store
        .insert_workflow(&w("wf-2", None, "2024-05-02T00:00:00.000Z"))
        .unwrap();
    store
        .insert_workflow(&w("wf-1", Some("analytics"), "2024-05-01T00:00:00.000Z"))
        .unwrap();
    let one = store.workflow("wf-1").unwrap();
    assert_eq!(one.name.as_deref(), Some("analytics"));
    assert_eq!(one.config_json, w("wf-1", None, "").config_json);
    assert_eq!(one.base_dir, "/etc/airlock/workflows");
    assert_eq!(store.workflow("wf-2").unwrap().name, None);
    let ids: Vec<String> = store
        .workflows()
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(ids, ["wf-1", "wf-2"], "oldest first");
    assert!(matches!(
        store.workflow("wf-none"),
        Err(StateError::NotFound(_))
    ));
}

fn runs_start_finish_and_list_newest_first(place: &Place) {
    let store = place.store();
    let canary = airlock::secrets::SecretString::new("canary-Run-Error-9d2k".into());
    airlock::secrets::redact::Redactor::global().register(&canary);
    store.run_started("run-a", Some("wf-1")).unwrap();
    store.run_started("run-b", None).unwrap();
    store
        .run_finished("run-a", "complete", Some("/out/run-a"), None)
        .unwrap();
    store
        .run_finished(
            "run-b",
            "failed",
            None,
            Some("login failed: server said canary-Run-Error-9d2k"),
        )
        .unwrap();
    let runs = store.runs(10).unwrap();
    let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["run-b", "run-a"], "newest first");
    let (b, a) = (&runs[0], &runs[1]);
    assert_eq!(a.workflow_id.as_deref(), Some("wf-1"));
    assert_eq!(a.status, "complete");
    assert_eq!(a.output.as_deref(), Some("/out/run-a"));
    assert!(a.finished_at.is_some() && a.error.is_none());
    assert_eq!(b.workflow_id, None);
    assert_eq!(b.status, "failed");
    let error = b.error.as_deref().unwrap();
    assert!(
        error.contains("login failed") && !error.contains("canary-Run-Error-9d2k"),
        "the stored error passes the redactor: {error}"
    );
    assert_eq!(store.runs(1).unwrap().len(), 1);
    assert!(
        store.run_started("run-a", None).is_err(),
        "a run id is unique"
    );
}

fn audit_entries_are_filtered_by_run_and_credential(place: &Place) {
    let store = place.store();
    let entry = |run: Option<&str>, cred: Option<&str>, action: &str| AuditEntry {
        run_id: run.map(str::to_string),
        workflow_id: run.map(|_| "wf-1".to_string()),
        plugin_sha256: run.map(|_| "ab".repeat(32)),
        credential: cred.map(str::to_string),
        destination: cred.map(|_| "db.internal:5432".to_string()),
        action: action.into(),
        outcome: "ok".into(),
        detail: Some(format!("{action} detail")),
        ..AuditEntry::default()
    };
    store
        .audit(&entry(Some("r1"), Some("c1"), "resolve"))
        .unwrap();
    store
        .audit(&entry(Some("r2"), Some("c1"), "login"))
        .unwrap();
    store
        .audit(&entry(Some("r1"), Some("c2"), "denied"))
        .unwrap();
    let given = AuditEntry {
        at: "2024-05-01T00:00:00.000Z".into(),
        ..entry(None, None, "create")
    };
    store.audit(&given).unwrap();

    let actions = |run: Option<&str>, cred: Option<&str>| -> Vec<String> {
        store
            .audit_entries(run, cred)
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect()
    };
    assert_eq!(
        actions(None, None),
        ["resolve", "login", "denied", "create"]
    );
    assert_eq!(actions(Some("r1"), None), ["resolve", "denied"]);
    assert_eq!(actions(None, Some("c1")), ["resolve", "login"]);
    assert_eq!(actions(Some("r1"), Some("c1")), ["resolve"]);
    assert!(actions(Some("r3"), None).is_empty());

    let all = store.audit_entries(None, None).unwrap();
    let first = &all[0];
    assert!(!first.at.is_empty(), "an empty `at` is set now");
    assert_eq!(first.workflow_id.as_deref(), Some("wf-1"));
    assert_eq!(
        first.plugin_sha256.as_deref(),
        Some("ab".repeat(32).as_str())
    );
    assert_eq!(first.destination.as_deref(), Some("db.internal:5432"));
    assert_eq!(first.detail.as_deref(), Some("resolve detail"));
    assert_eq!(
        all[3].at, "2024-05-01T00:00:00.000Z",
        "a given `at` is kept"
    );
    assert_eq!(all[3].run_id, None);
}

fn plugin_approvals_are_replaced_by_name(place: &Place) {
    let store = place.store();
    let approval = |name: &str, sha: &str, signer: Option<&str>| PluginApproval {
        name: name.into(),
        sha256: sha.into(),
        wit_version: Some("0.2.0".into()),
        capabilities: "{\"sql\":[\"postgres\"]}".into(),
        signer: signer.map(str::to_string),
        file: format!("/home/plugins/{name}.wasm"),
        approved_at: "2024-05-01T00:00:00.000Z".into(),
    };
    let pg = approval("postgres", &"11".repeat(32), Some("ed25519:abc"));
    let lite = approval("sqlite", &"22".repeat(32), None);
    store.approve_plugin(&pg).unwrap();
    store.approve_plugin(&lite).unwrap();
    assert_eq!(store.plugin_approval("postgres").unwrap(), Some(pg));
    let upgraded = PluginApproval {
        wit_version: None,
        ..approval("postgres", &"33".repeat(32), None)
    };
    store.approve_plugin(&upgraded).unwrap();
    assert_eq!(
        store.plugin_approval("postgres").unwrap(),
        Some(upgraded.clone())
    );
    assert_eq!(store.plugin_approvals().unwrap(), vec![upgraded, lite]);
    assert_eq!(store.plugin_approval("mysql").unwrap(), None);
}

fn publish_claims_are_won_once_taken_over_and_released(place: &Place) {
    let store = place.store();
    store.run_started("r1", None).unwrap();
    assert_eq!(
        store.claim_publish("trigger-1", "r1").unwrap(),
        PublishClaim::Won
    );
    assert_eq!(
        store.claim_publish("trigger-1", "r1").unwrap(),
        PublishClaim::Won,
        "the holder claiming again (a retry of the same run) still holds it"
    );
    assert_eq!(
        store.claim_publish("trigger-1", "r2").unwrap(),
        PublishClaim::Held {
            run_id: "r1".into(),
            status: Some("running".into())
        }
    );
    // A holder whose run is not recorded (yet) is reported without a status.
    assert_eq!(
        store.claim_publish("trigger-2", "r9").unwrap(),
        PublishClaim::Won
    );
    assert_eq!(
        store.claim_publish("trigger-2", "r2").unwrap(),
        PublishClaim::Held {
            run_id: "r9".into(),
            status: None
        }
    );
    assert!(
        store.published_run("trigger-1").unwrap().is_none(),
        "r1 is still running"
    );

    // r1 failed: r2 takes over, once.
    store
        .run_finished("r1", "failed", None, Some("boom"))
        .unwrap();
    assert!(
        !store.take_over_publish("trigger-1", "r7", "r2").unwrap(),
        "r7 never held it"
    );
    assert!(store.take_over_publish("trigger-1", "r1", "r2").unwrap());
    assert!(
        !store.take_over_publish("trigger-1", "r1", "r3").unwrap(),
        "a second take-over from r1 finds the claim changed"
    );
    assert_eq!(
        store.claim_publish("trigger-1", "r1").unwrap(),
        PublishClaim::Held {
            run_id: "r2".into(),
            status: None
        }
    );

    // Only the holder releases.
    store.release_publish("trigger-1", "r1").unwrap();
    assert!(matches!(
        store.claim_publish("trigger-1", "r4").unwrap(),
        PublishClaim::Held { run_id, .. } if run_id == "r2"
    ));

    // The holder completes: a retried trigger finds what it published.
    store.run_started("r2", Some("wf-1")).unwrap();
    assert!(store.published_run("trigger-1").unwrap().is_none());
    store
        .run_finished("r2", "complete", Some("/out/r2"), None)
        .unwrap();
    let published = store
        .published_run("trigger-1")
        .unwrap()
        .expect("r2 published");
    assert_eq!(published.id, "r2");
    assert_eq!(published.output.as_deref(), Some("/out/r2"));
    assert!(store.published_run("trigger-none").unwrap().is_none());

    store.release_publish("trigger-1", "r2").unwrap();
    assert!(store.published_run("trigger-1").unwrap().is_none());
    assert_eq!(
        store.claim_publish("trigger-1", "r4").unwrap(),
        PublishClaim::Won
    );
    assert!(matches!(
        store.claim_publish("", "r4"),
        Err(StateError::Invalid(_))
    ));
}

fn two_workers_racing_for_a_claim_let_exactly_one_win(place: &Place) {
    let workers = [Arc::new(place.store()), Arc::new(place.store())];
    const CLAIMERS: usize = 8;
    let start = Arc::new(Barrier::new(CLAIMERS));
    let handles: Vec<_> = (0..CLAIMERS)
        .map(|i| {
            let store = workers[i % 2].clone();
            let start = start.clone();
            std::thread::spawn(move || {
                let run_id = format!("run-{i}");
                start.wait();
                (
                    run_id.clone(),
                    store.claim_publish("nightly-42", &run_id).unwrap(),
                )
            })
        })
        .collect();
    let outcomes: Vec<(String, PublishClaim)> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    let winners: Vec<&String> = outcomes
        .iter()
        .filter(|(_, c)| *c == PublishClaim::Won)
        .map(|(r, _)| r)
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    for (_, claim) in &outcomes {
        if let PublishClaim::Held { run_id, .. } = claim {
            assert_eq!(run_id, winners[0], "every loser names the winner");
        }
    }
}

fn two_workers_migrate_at_once_and_share_writes(place: &Place) {
    // Nobody has opened this store: both workers create its schema at the same moment.
    let start = Barrier::new(2);
    let (a, b) = std::thread::scope(|s| {
        let open = || {
            start.wait();
            place.open()
        };
        let a = s.spawn(open);
        let b = s.spawn(open);
        (a.join().unwrap(), b.join().unwrap())
    });
    let (a, b) = (a.expect("worker A opens"), b.expect("worker B opens"));
    assert_eq!(a.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(
        place.sql("SELECT count(*) FROM schema_migrations"),
        SCHEMA_VERSION.to_string(),
        "each migration applied once"
    );

    a.insert_credential(&credential(
        "guid-shared",
        "2024-05-01T00:00:00.000Z",
        false,
    ))
    .unwrap();
    assert_eq!(
        b.credential("guid-shared").unwrap().username.as_deref(),
        Some("catalog_reader")
    );
    b.mark_revoked("guid-shared").unwrap();
    assert!(a.credential("guid-shared").unwrap().revoked_at.is_some());
    b.audit(&AuditEntry {
        credential: Some("guid-shared".into()),
        action: "revoke".into(),
        outcome: "ok".into(),
        ..AuditEntry::default()
    })
    .unwrap();
    assert_eq!(a.audit_entries(None, Some("guid-shared")).unwrap().len(), 1);
    a.run_started("run-on-a", None).unwrap();
    assert_eq!(b.runs(5).unwrap()[0].id, "run-on-a");
}

fn migrations_are_recorded_and_a_newer_store_is_refused(place: &Place) {
    let store = place.store();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    let versions: Vec<String> = (1..=SCHEMA_VERSION).map(|v| v.to_string()).collect();
    assert_eq!(
        place.sql("SELECT string_agg(CAST(version AS TEXT), ',') FROM (SELECT version FROM schema_migrations ORDER BY version) v"),
        versions.join(",")
    );
    store
        .insert_credential(&credential("guid-kept", "2024-05-01T00:00:00.000Z", false))
        .unwrap();
    drop(store);
    // Opening again applies nothing.
    assert_eq!(place.store().schema_version().unwrap(), SCHEMA_VERSION);

    let future = SCHEMA_VERSION + 1;
    place.sql(&format!(
        "INSERT INTO schema_migrations (version, applied_at) VALUES ({future}, '2099-01-01T00:00:00.000Z')"
    ));
    let message = match place.open() {
        Err(e @ StateError::Schema(_)) => e.to_string(),
        Err(e) => panic!("expected a schema error, got {e}"),
        Ok(_) => panic!("a store at version {future} was opened"),
    };
    assert!(
        message.contains(&format!("version {future}")) && message.contains("newer"),
        "{message}"
    );
    assert!(message.contains("unchanged"), "{message}");
    assert_eq!(
        place.sql("SELECT count(*) FROM credentials"),
        "1",
        "nothing was touched"
    );

    place.sql(&format!(
        "DELETE FROM schema_migrations WHERE version = {future}"
    ));
    assert_eq!(
        place.store().credential("guid-kept").unwrap().guid,
        "guid-kept"
    );
}

// ---------------------------------------------------------------------------------------
// SQLite only: files written before versioned migrations

/// The schema of the first releases (no `privileged`, no `schema_migrations`).
const FIRST_RELEASE_SCHEMA: &str = "
CREATE TABLE credentials (guid TEXT PRIMARY KEY, kind TEXT NOT NULL, backend TEXT NOT NULL,
    locator TEXT NOT NULL, username TEXT, engine TEXT, destinations TEXT NOT NULL, description TEXT,
    created_at TEXT NOT NULL, rotated_at TEXT, revoked_at TEXT);
CREATE TABLE workflows (id TEXT PRIMARY KEY, name TEXT, config_json TEXT NOT NULL,
    base_dir TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE runs (id TEXT PRIMARY KEY, workflow_id TEXT, started_at TEXT NOT NULL,
    finished_at TEXT, status TEXT NOT NULL, output TEXT, error TEXT);
CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, run_id TEXT,
    workflow_id TEXT, plugin_sha256 TEXT, credential TEXT, destination TEXT, action TEXT NOT NULL,
    outcome TEXT NOT NULL, detail TEXT);
CREATE TABLE plugin_approvals (name TEXT PRIMARY KEY, sha256 TEXT NOT NULL, wit_version TEXT,
    capabilities TEXT NOT NULL, signer TEXT, file TEXT NOT NULL, approved_at TEXT NOT NULL);
INSERT INTO credentials VALUES ('guid-old', 'password', 'embedded', 'loc', 'app', 'postgres',
    '[\"db:5432\"]', NULL, '2023-01-01T00:00:00.000Z', NULL, NULL);
INSERT INTO runs VALUES ('run-old', NULL, '2023-01-01T00:00:00.000Z', NULL, 'complete', '/out', NULL);
";

#[test]
fn an_sqlite_file_from_before_versioned_migrations_is_brought_up_to_date() {
    for (label, extra) in [
        ("first release (no privileged column)", ""),
        (
            "privileged added ad hoc",
            "ALTER TABLE credentials ADD COLUMN privileged INTEGER NOT NULL DEFAULT 0;
             INSERT INTO credentials VALUES ('guid-priv', 'password', 'embedded', 'loc2', 'root',
                 NULL, '[\"db:5432\"]', NULL, '2023-02-01T00:00:00.000Z', NULL, NULL, 1);",
        ),
    ] {
        let place = Place::sqlite();
        {
            let conn = rusqlite::Connection::open(place.home().join("state.sqlite")).unwrap();
            conn.execute_batch(FIRST_RELEASE_SCHEMA).unwrap();
            conn.execute_batch(extra).unwrap();
        }
        let store = place.store();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION, "{label}");
        assert_eq!(
            place.sql("SELECT count(*) FROM schema_migrations"),
            SCHEMA_VERSION.to_string(),
            "{label}"
        );
        let old = store.credential("guid-old").unwrap();
        assert!(!old.privileged, "{label}");
        assert_eq!(old.destinations, ["db:5432"], "{label}");
        if !extra.is_empty() {
            assert!(store.credential("guid-priv").unwrap().privileged, "{label}");
        }
        // the new tables work on the adopted file
        let mut fresh = credential("guid-new", "2024-01-01T00:00:00.000Z", true);
        fresh.engine = None;
        store.insert_credential(&fresh).unwrap();
        assert!(store.credential("guid-new").unwrap().privileged, "{label}");
        assert_eq!(
            store.claim_publish("k", "run-old").unwrap(),
            PublishClaim::Won
        );
        assert_eq!(
            store.published_run("k").unwrap().unwrap().id,
            "run-old",
            "{label}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// PostgreSQL only: logins, the URL, reconnection, TLS

/// Every error text must be free of every password the test knows.
fn assert_free_of(message: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!message.contains(s), "a password leaked: {message}");
    }
}

#[test]
fn a_wrong_password_fails_without_showing_either_password() {
    let place = Place::postgres();
    let Place::Postgres { password, home, .. } = &place else {
        unreachable!()
    };
    let wrong = "canary-Wrong-Pa55-4tY";
    std::fs::write(home.path().join("state-password"), wrong).unwrap();
    let err = match place.open() {
        Err(e) => e,
        Ok(_) => panic!("a wrong password logged in"),
    };
    let (text, debug) = (err.to_string(), format!("{err:?}"));
    assert!(matches!(err, StateError::Unavailable { .. }), "{debug}");
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(
        text.contains("postgres://worker_"),
        "the error names the store: {text}"
    );
    assert_free_of(&text, &[wrong, password]);
    assert_free_of(&debug, &[wrong, password]);

    // The same through the environment variable.
    let env = format!("AIRLOCK_TEST_STATE_PASSWORD_{}", unique());
    std::env::set_var(&env, wrong);
    let toml = std::fs::read_to_string(home.path().join("state.toml")).unwrap();
    write_state_toml(
        home.path(),
        &toml.replace(
            "password_file = \"state-password\"",
            &format!("password_env = \"{env}\""),
        ),
    );
    let err = place.open().err().expect("a wrong password is refused");
    assert_free_of(&format!("{err} {err:?}"), &[wrong, password]);
    std::env::set_var(&env, password);
    assert!(
        place.open().is_ok(),
        "the right password from password_env logs in"
    );
}

#[test]
fn a_url_holding_a_password_is_refused_before_connecting() {
    let home = tempfile::tempdir().unwrap();
    let path = write_state_toml(
        home.path(),
        "# shared store\nurl = \"postgres://app:canary-Url-Pa55-8u@127.0.0.1:1/state\"\n",
    );
    let err = StateStore::open_in_home(home.path())
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(matches!(err, StateError::Config(_)), "{err:?}");
    assert_free_of(&text, &["canary-Url-Pa55-8u"]);
    assert_free_of(&format!("{err:?}"), &["canary-Url-Pa55-8u"]);
    assert!(
        text.contains(&path.display().to_string()),
        "names the file: {text}"
    );
    assert!(
        text.contains("line 2") && text.contains("url"),
        "names key and line: {text}"
    );
    assert!(
        text.contains("password_file") && text.contains("password_env"),
        "{text}"
    );
}

#[test]
fn an_unreachable_store_fails_with_an_error_naming_it() {
    let home = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    write_state_toml(
        home.path(),
        &format!("url = \"postgres://app@127.0.0.1:{port}/state\"\ntls = \"disable\"\nconnect_timeout_s = 5\n"),
    );
    let err = StateStore::open_in_home(home.path())
        .err()
        .expect("nothing listens");
    let text = err.to_string();
    assert!(matches!(err, StateError::Unavailable { .. }), "{err:?}");
    assert!(
        text.contains(&format!("postgres://app@127.0.0.1:{port}/state")),
        "{text}"
    );
}

#[test]
fn a_dropped_connection_is_replaced_at_the_next_request() {
    let place = Place::postgres();
    let Place::Postgres { cluster, user, .. } = &place else {
        unreachable!()
    };
    run_in_runtime(|| {
        let store = place.store();
        store.run_started("before", None).unwrap();
        let terminate = format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = {}",
            quote_literal(user)
        );
        assert_eq!(cluster.psql("postgres", &terminate).trim(), "1");
        wait_until_gone(cluster, user);
        // a read on the dead connection is retried once on a new one
        assert_eq!(store.runs(5).unwrap()[0].id, "before");
        assert_eq!(cluster.psql("postgres", &terminate).trim(), "1");
        wait_until_gone(cluster, user);
        // a write after the drop was noticed logs in again first
        std::thread::sleep(std::time::Duration::from_millis(300));
        store.run_started("after", None).unwrap();
        let ids: Vec<String> = store.runs(5).unwrap().into_iter().map(|r| r.id).collect();
        assert!(ids.contains(&"after".to_string()), "{ids:?}");
    });
}

fn run_in_runtime(f: impl FnOnce()) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async { f() });
}

fn wait_until_gone(cluster: &PgCluster, user: &str) {
    let count = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = {}",
        quote_literal(user)
    );
    for _ in 0..100 {
        if cluster.psql("postgres", &count).trim() == "0" {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the terminated backend of {user} did not go away");
}

use airlock_tests::azure::TestCa;

#[test]
fn tls_verify_full_trusts_ca_file_and_refuses_another_ca() {
    let right = TestCa::new("state store CA");
    let other = TestCa::new("someone else's CA");
    let (cert, key) = right.server_cert(&["127.0.0.1"]);
    let pg = PgCluster::start_tls(&cert, &key);
    let password = "canary-Tls-Pa55-2w";
    pg.create_user("tls_worker", password);
    pg.psql("postgres", "CREATE DATABASE tls_state OWNER tls_worker");
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("pw"), password).unwrap();
    std::fs::write(home.path().join("ca.pem"), &right.pem).unwrap();
    std::fs::write(home.path().join("other-ca.pem"), &other.pem).unwrap();
    let url = format!(
        "url = \"postgres://tls_worker@127.0.0.1:{}/tls_state\"\npassword_file = \"pw\"\n",
        pg.port()
    );

    run_in_runtime(|| {
        // verify-full is the default
        write_state_toml(home.path(), &format!("{url}ca_file = \"ca.pem\"\n"));
        let store = StateStore::open_in_home(home.path()).expect("verified TLS logs in");
        store.run_started("over-tls", None).unwrap();
        assert_eq!(store.runs(1).unwrap()[0].id, "over-tls");
        let ssl = pg.psql(
            "postgres",
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.usename = 'tls_worker'",
        );
        assert_eq!(ssl.trim(), "t", "the store's connection is TLS");
        drop(store);

        write_state_toml(
            home.path(),
            &format!("{url}tls = \"verify-full\"\nca_file = \"other-ca.pem\"\n"),
        );
        let err = StateStore::open_in_home(home.path())
            .err()
            .expect("an untrusted server is refused");
        let text = err.to_string();
        assert!(text.contains("certificate"), "{text}");
        assert_free_of(&text, &[password]);

        // require: encrypted, certificate not checked
        write_state_toml(home.path(), &format!("{url}tls = \"require\"\n"));
        assert!(StateStore::open_in_home(home.path()).is_ok());

        // the server refuses logins without TLS
        write_state_toml(home.path(), &format!("{url}tls = \"disable\"\n"));
        let err = StateStore::open_in_home(home.path())
            .err()
            .expect("hostnossl reject");
        assert_free_of(&format!("{err} {err:?}"), &[password]);
    });
}

// ---------------------------------------------------------------------------------------
// Through the binary: two homes ("machines") share one PostgreSQL store

/// The forms a password could leak in: raw, base64, hex.
fn leak_forms(secret: &str) -> Vec<Vec<u8>> {
    use base64::Engine;
    vec![
        secret.as_bytes().to_vec(),
        base64::engine::general_purpose::STANDARD
            .encode(secret)
            .into_bytes(),
        hex::encode(secret).into_bytes(),
    ]
}

#[test]
fn two_homes_share_the_registry_and_the_trace_log_never_shows_the_password() {
    let place = Place::postgres();
    let Place::Postgres { password, home, .. } = &place else {
        unreachable!()
    };
    let toml = std::fs::read_to_string(home.path().join("state.toml")).unwrap();
    let password_file = home.path().join("state-password");
    // A second machine: its own home (and vault), the same store, the password mounted elsewhere.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("mounted-password"), password).unwrap();
    write_state_toml(
        other.path(),
        &toml.replace("\"state-password\"", "\"mounted-password\""),
    );
    let mut transcript = Vec::new();
    let mut airlock = |home: &Path, args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new(airlock_tests::airlock_bin())
            .arg("--home")
            .arg(home)
            .args(args)
            .env("AIRLOCK_LOG", "trace")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("airlock starts");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        transcript.extend_from_slice(&out.stdout);
        transcript.extend_from_slice(&out.stderr);
        assert!(
            out.status.success(),
            "airlock {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    let guid = airlock(
        home.path(),
        &[
            "credential",
            "add",
            "--user",
            "app",
            "--destination",
            "db.internal:5432",
        ],
        "canary-Db-Secret-3e\n",
    )
    .trim()
    .to_string();
    let listed = airlock(other.path(), &["credential", "list", "--json"], "");
    assert!(
        listed.contains(&guid),
        "the other home sees the GUID: {listed}"
    );
    airlock(other.path(), &["credential", "revoke", &guid], "");
    let audit = airlock(home.path(), &["audit", "--credential", &guid, "--json"], "");
    assert!(
        audit.contains("\"create\"") && audit.contains("\"revoke\""),
        "one audit log for both homes: {audit}"
    );
    assert!(
        !other.path().join("state.sqlite").exists() && !home.path().join("state.sqlite").exists(),
        "no embedded store was created"
    );

    for form in leak_forms(password) {
        assert!(
            !transcript.windows(form.len()).any(|w| w == form.as_slice()),
            "the trace log shows the state store password"
        );
    }
    for dir in [home.path(), other.path()] {
        for file in airlock_tests::all_files(dir) {
            if file == password_file || file == other.path().join("mounted-password") {
                continue;
            }
            let bytes = std::fs::read(&file).unwrap();
            assert!(
                !bytes
                    .windows(password.len())
                    .any(|w| w == password.as_bytes()),
                "{} holds the state store password",
                file.display()
            );
        }
    }
}
