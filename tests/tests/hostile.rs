//! Hostile plugins: each is stopped with the expected error kind, publishes nothing, and leaves
//! the host healthy (a normal run in the same runtime succeeds afterwards).

//! Each case also records itself in `target/hostile-report/` (see `scripts/security-report`).

mod hostile_report;

use std::time::Instant;

use airlock::run::RunError;
use airlock_tests::{plugin, read_jsonl, runtime, verify_run_dir, Workspace};
use hostile_report::{assert_host_healthy, bounded, warm, Case};

/// Runs a loaded config, failing the test if the host hangs.
async fn run(
    rt: &airlock::runtime::Runtime,
    cfg: &airlock::config::LoadedConfig,
) -> Result<airlock::run::RunReport, RunError> {
    bounded(airlock_tests::run(rt, cfg)).await
}

fn empty_db(ws: &Workspace) {
    rusqlite::Connection::open(ws.path().join("db.sqlite"))
        .unwrap()
        .execute_batch("CREATE TABLE t (x INTEGER);")
        .unwrap();
}

#[tokio::test]
async fn endless_loop_is_stopped_at_the_deadline() {
    let mut case = Case::new(
        "endless_loop_is_stopped_at_the_deadline",
        file!(),
        "computes forever in a pure loop (no host calls)",
        "deadline-exceeded at limits.deadline_s = 2; nothing published",
    );
    let rt = runtime();
    let ws = Workspace::new();
    empty_db(&ws);
    let cfg = ws.config_for(
        &plugin("hostile-loop"),
        "db.sqlite",
        "[limits]\ndeadline_s = 2\n",
    );
    warm(&rt, "hostile-loop");
    let started = Instant::now();
    let err = run(&rt, &cfg).await.expect_err("the loop must be stopped");
    case.stopped_after(started.elapsed());
    case.failed(&err);
    assert_eq!(err.kind(), "deadline-exceeded", "{err}");
    assert!(err.to_string().contains("deadline exceeded"), "{err}");
    assert_eq!(err.exit_code(), 1);
    assert!(
        ws.out_entries().is_empty(),
        "nothing published: {:?}",
        ws.out_entries()
    );
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn endless_loop_is_stopped_by_the_cpu_limit() {
    let mut case = Case::new(
        "endless_loop_is_stopped_by_the_cpu_limit",
        file!(),
        "computes forever with a long deadline",
        "cpu-exceeded at limits.cpu_s = 1; nothing published",
    );
    let rt = runtime();
    let ws = Workspace::new();
    empty_db(&ws);
    let cfg = ws.config_for(
        &plugin("hostile-loop"),
        "db.sqlite",
        "[limits]\ndeadline_s = 600\ncpu_s = 1\n",
    );
    warm(&rt, "hostile-loop");
    let started = Instant::now();
    let err = run(&rt, &cfg).await.expect_err("the loop must be stopped");
    case.stopped_after(started.elapsed());
    case.failed(&err);
    assert_eq!(err.kind(), "cpu-exceeded", "{err}");
    assert!(ws.out_entries().is_empty());
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn memory_bomb_is_stopped_at_the_memory_limit() {
    let mut case = Case::new(
        "memory_bomb_is_stopped_at_the_memory_limit",
        file!(),
        "allocates and touches 4 MiB blocks without end",
        "memory-limit naming limits.memory_mb = 64; nothing published",
    );
    let rt = runtime();
    let ws = Workspace::new();
    empty_db(&ws);
    let cfg = ws.config_for(
        &plugin("hostile-membomb"),
        "db.sqlite",
        "[limits]\nmemory_mb = 64\n",
    );
    let err = run(&rt, &cfg).await.expect_err("the bomb must be stopped");
    case.failed(&err);
    assert_eq!(err.kind(), "memory-limit", "{err}");
    assert!(err.to_string().contains("limit is 64 MiB"), "{err}");
    assert!(ws.out_entries().is_empty());
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn panic_after_emits_leaves_no_run_directory() {
    let mut case = Case::new(
        "panic_after_emits_leaves_no_run_directory",
        file!(),
        "emits and flushes 52 valid assets, then panics",
        "plugin-crashed quoting the panic message; no run directory, not even a partial one",
    );
    let rt = runtime();
    let ws = Workspace::new();
    empty_db(&ws);
    let cfg = ws.config_for(&plugin("hostile-panic"), "db.sqlite", "");
    let err = run(&rt, &cfg).await.expect_err("a panic fails the run");
    case.failed(&err);
    assert_eq!(err.kind(), "plugin-crashed", "{err}");
    assert!(
        err.to_string().contains("boom after 52 assets"),
        "panic message surfaces: {err}"
    );
    assert!(
        ws.out_entries().is_empty(),
        "no run directory, not even a partial one: {:?}",
        ws.out_entries()
    );
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn files_env_args_stdin_and_sockets_are_not_granted() {
    let mut case = Case::new(
        "files_env_args_stdin_and_sockets_are_not_granted",
        file!(),
        "reads /etc/passwd, lists / and ., creates /tmp/airlock-escape, reads env, args and stdin, opens TCP/UDP sockets, resolves a name",
        "the run completes; every attempt is denied, env/args/stdin are empty, no file is created",
    );
    let rt = runtime();
    let ws = Workspace::new();
    empty_db(&ws);
    std::env::set_var("AIRLOCK_TEST_CANARY", "canary-value-must-not-leak");
    let cfg = ws.config_for(&plugin("hostile-probe"), "db.sqlite", "");
    let report = run(&rt, &cfg).await.expect("the probe itself completes");
    verify_run_dir(&report.output_dir);
    let assets = read_jsonl(&report.output_dir, "database");
    assert_eq!(assets.len(), 1);
    let a = &assets[0]["attributes"]["extra"];
    case.actual(format!("completed; probe {a}"));
    for key in [
        "read_etc_passwd",
        "read_relative",
        "read_dir_root",
        "read_dir_cwd",
        "create_file",
        "tcp_connect",
        "udp_bind",
        "tcp_listen",
        "dns_lookup",
    ] {
        let v = a[key].as_str().unwrap_or_default();
        assert!(v.starts_with("denied"), "{key} must be denied, got {v:?}");
    }
    assert_eq!(a["env_count"], 0, "no environment variables");
    assert!(a["env_home"].is_null());
    assert_eq!(a["args_count"], 0, "no arguments");
    assert_eq!(a["stdin_bytes"], 0, "stdin is empty");
    assert!(!std::path::Path::new("/tmp/airlock-escape").exists());
    let text = std::fs::read_to_string(report.output_dir.join("database.jsonl")).unwrap();
    assert!(!text.contains("canary-value-must-not-leak"));
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn sql_capability_stays_read_only_and_inside_allowed_dirs() {
    let mut case = Case::new(
        "sql_capability_stays_read_only_and_inside_allowed_dirs",
        file!(),
        "opens SQLite files outside allowed_dirs, by traversal, by URI; writes, ATTACHes, VACUUMs INTO, sets pragmas, loads an extension, runs a runaway query",
        "each is denied (Error::Denied) or limited (runaway: Error::Limit); the database is unchanged and no file is written",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let inside = ws.path().join("data");
    std::fs::create_dir(&inside).unwrap();
    rusqlite::Connection::open(inside.join("db.sqlite"))
        .unwrap()
        .execute_batch("CREATE TABLE t (x INTEGER);")
        .unwrap();
    let outside = tempfile::tempdir().unwrap();
    let outside_db = outside.path().join("secret.sqlite");
    rusqlite::Connection::open(&outside_db)
        .unwrap()
        .execute_batch("CREATE TABLE secret (x TEXT);")
        .unwrap();
    let scratch = outside.path().join("copy.sqlite");
    let cfg = ws.config_for(
        &plugin("hostile-sql"),
        "data/db.sqlite",
        &format!(
            "[source.options]\noutside = \"{}\"\nscratch = \"{}\"\n\n[limits]\nquery_timeout_s = 2\n",
            outside_db.display(),
            scratch.display()
        ),
    );
    let report = run(&rt, &cfg).await.expect("the plugin itself completes");
    let assets = read_jsonl(&report.output_dir, "database");
    let a = &assets[0]["attributes"]["extra"];
    case.actual(format!("completed; probe {a}"));
    let expect = |key: &str, kind: &str| {
        let v = a[key].as_str().unwrap_or_default();
        assert!(
            v.starts_with(&format!("Error::{kind}(")),
            "{key}: expected {kind}, got {v:?}"
        );
    };
    expect("open_outside", "Denied");
    expect("open_traversal", "Denied");
    expect("open_uri", "Denied");
    expect("open_network", "Denied");
    expect("create_table", "Denied");
    expect("insert", "Denied");
    expect("attach", "Denied");
    expect("vacuum_into", "Denied");
    expect("write_pragma", "Denied");
    expect("load_extension", "Denied");
    expect("runaway", "Limit");
    assert_eq!(a["read_ok"], "granted");
    assert!(a["huge_value"] != "granted", "huge values are refused");
    assert!(!scratch.exists(), "VACUUM INTO wrote no file");
    let tables: Vec<String> = {
        let c = rusqlite::Connection::open(inside.join("db.sqlite")).unwrap();
        let mut s = c.prepare("SELECT name FROM sqlite_schema").unwrap();
        s.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(
        tables,
        vec!["t".to_string()],
        "the database was not modified"
    );
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn two_plugins_run_concurrently_and_a_hostile_one_does_not_starve_the_other() {
    let mut case = Case::new(
        "two_plugins_run_concurrently_and_a_hostile_one_does_not_starve_the_other",
        file!(),
        "loops forever while the SQLite connector runs beside it in the same runtime",
        "the loop ends with a limit error; the good run publishes a verified run",
    );
    let rt = runtime();
    let hostile_ws = Workspace::new();
    empty_db(&hostile_ws);
    let hostile_cfg = hostile_ws.config_for(
        &plugin("hostile-loop"),
        "db.sqlite",
        "[limits]\ndeadline_s = 3\n",
    );
    let good_ws = Workspace::new();
    airlock::demo::create_sample_database(&good_ws.path().join("shop.db")).unwrap();
    let good_cfg = good_ws.config_for(&plugin("sqlite"), "shop.db", "");
    warm(&rt, "hostile-loop");
    warm(&rt, "sqlite");
    let started = Instant::now();
    let (bad, good) = tokio::join!(run(&rt, &hostile_cfg), run(&rt, &good_cfg));
    case.stopped_after(started.elapsed());
    case.actual(format!(
        "hostile: {}; good: {}",
        bad.as_ref()
            .err()
            .map(|e| format!("{}: {e}", e.kind()))
            .unwrap_or_else(|| "COMPLETED".into()),
        if good.is_ok() { "published" } else { "FAILED" }
    ));
    assert!(matches!(bad, Err(RunError::Limit(_))), "{:?}", bad.err());
    let good = good.expect("the well-behaved plugin finishes");
    verify_run_dir(&good.output_dir);
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn forged_and_dropped_credential_handles_are_refused() {
    let mut case = Case::new(
        "forged_and_dropped_credential_handles_are_refused",
        file!(),
        "passes a made-up credential handle index, then a dropped handle's index, to sql.open",
        "plugin-crashed for both; the secret is never resolved and no login is attempted",
    );
    let rt = runtime();
    let mut outcomes = Vec::new();
    for mode in ["forge", "after-drop"] {
        let ws = Workspace::new();
        empty_db(&ws);
        let home = airlock_tests::Home::new(ws.path());
        let guid = home.add_password("app", "Canary-forge-55", &["127.0.0.1:1"]);
        let cfg = ws.config(&format!(
            "[source]\nplugin = \"{}\"\nendpoint = \"127.0.0.1:1\"\ndatabase = \"postgres\"\ncredential = \"{guid}\"\n\n[source.options]\nmode = \"{mode}\"\n\n[sink]\nkind = \"local\"\ndir = \"out\"\n",
            plugin("hostile-forge").display()
        ));
        let err = airlock_tests::run_in(&rt, &cfg, &home)
            .await
            .expect_err("a forged handle must not work");
        outcomes.push(format!("{mode}: {}: {err}", err.kind()));
        case.actual(outcomes.join("; "));
        assert_eq!(err.kind(), "plugin-crashed", "{mode}: {err}");
        assert!(ws.out_entries().is_empty(), "{mode}: nothing published");
        let audit = home
            .inner()
            .state()
            .audit_entries(None, Some(&guid))
            .unwrap();
        assert!(
            audit
                .iter()
                .all(|e| e.action != "login" && e.action != "resolve"),
            "{mode}: the host never resolved the secret: {audit:?}"
        );
    }
    assert_host_healthy(&rt).await;
}
