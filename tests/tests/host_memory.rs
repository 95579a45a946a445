//! Host memory bounded in bytes (`limits.host_memory_mb`) and open connections bounded in
//! number (`limits.sql_connections`): hostile plugins that open result sets of large rows and
//! never read them, and plugins that open connections until something breaks, against a real
//! PostgreSQL server and SQLite files.
//!
//! The cases run one after the other inside one test (this binary has no other), so the
//! process's peak resident memory (VmHWM) belongs to them: each memory case asserts the peak
//! grew by less than the budget plus a stated margin over the peak a normal run left.

mod hostile_report;

use airlock::runtime::Runtime;
use airlock_tests::postgres::PgCluster;
use airlock_tests::{read_jsonl, runtime, verify_run_dir, Home, Workspace};
use hostile_report::{assert_host_healthy, peak_rss_mb, run_observed, suite_config, warm, Case};

const READER_PW: &str = "Host-Memory-Reader-Pw-8";

/// What the runtime may add to the peak besides the budget: the compiled plugin, wasmtime's
/// own structures, the plugin's linear memory (`limits.memory_mb = 64` here), allocator slack.
const MARGIN_MB: u64 = 160;

/// A PostgreSQL statement every reader may run whose rows are 256 KiB each: the comment of
/// `public.big`, once per attribute of the catalog (thousands of rows, about 1 GiB a result).
const BIG_ROWS: &str = "SELECT obj_description('public.big'::regclass, 'pg_class') AS big \
                        FROM pg_catalog.pg_attribute";

fn pg() -> PgCluster {
    let server = PgCluster::start();
    server.create_user("reader", READER_PW);
    server.psql(
        "postgres",
        "CREATE TABLE public.big (x int);\n\
         DO $$ BEGIN EXECUTE format('COMMENT ON TABLE public.big IS %L', repeat('x', 262144)); END $$;",
    );
    server
}

fn pg_config(
    ws: &Workspace,
    home: &Home,
    server: &PgCluster,
    options: &str,
    limits: &str,
) -> airlock::config::LoadedConfig {
    let dest = server.endpoint();
    let guid = home.add_password("reader", READER_PW, &[&dest]);
    suite_config(
        ws,
        &format!(
            "endpoint = \"{dest}\"\ndatabase = \"postgres\"\ncredential = \"{guid}\"\n\
             tls = {{ mode = \"disable\", allow_cleartext_password = true }}"
        ),
        &format!("driver = \"postgres\"\n{options}"),
        &format!("[limits]\ndeadline_s = 60\nmemory_mb = 64\n{limits}"),
    )
}

fn probe(report: &airlock::run::RunReport) -> serde_json::Value {
    verify_run_dir(&report.output_dir);
    read_jsonl(&report.output_dir, "database")[0]["attributes"]["extra"].clone()
}

/// Three connections each holding a result of 256 KiB rows unread for four seconds, under a
/// 64 MiB budget: each stream stops 8 MiB ahead of its reader, so the run completes and the
/// host's peak stays within the budget.
async fn unread_streams_stay_within_the_budget(rt: &Runtime, server: &PgCluster, baseline: u64) {
    let mut case = Case::new(
        "pg_unread_streams_stay_within_the_host_memory_budget",
        file!(),
        "opens 3 PostgreSQL connections, runs a statement of thousands of 256 KiB rows on each \
         and never reads them (limits.host_memory_mb = 64)",
        "each stream waits 8 MiB ahead of its reader: the run completes and the host's peak RSS \
         grows by less than the budget plus the margin",
    );
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let options = format!(
        "mode = \"sql-stream-hoard\"\ncount = 3\nsecs = 4\nstatement = {}",
        serde_json::to_string(BIG_ROWS).unwrap()
    );
    let cfg = pg_config(&ws, &home, server, &options, "host_memory_mb = 64\n");
    let (result, _) = run_observed(rt, &cfg, Some(&home)).await;
    let peak = peak_rss_mb();
    let report = result.expect("the run completes");
    let attrs = probe(&report);
    case.actual(format!(
        "completed: {attrs}; peak RSS {baseline} -> {peak} MiB"
    ));
    assert_eq!(attrs["held"], 3, "{attrs}");
    assert!(
        peak < baseline + 64 + MARGIN_MB,
        "peak RSS {peak} MiB, after a normal run {baseline} MiB: more than the 64 MiB budget \
         plus {MARGIN_MB} MiB"
    );
}

/// The same under a 16 MiB budget: the third stream cannot have its 8 MiB, so the run fails
/// with the host-memory limit and publishes nothing.
async fn an_exhausted_budget_fails_the_run(rt: &Runtime, server: &PgCluster, baseline: u64) {
    let mut case = Case::new(
        "pg_exhausted_host_memory_budget_fails_the_run",
        file!(),
        "opens 3 PostgreSQL connections of unread 256 KiB rows under limits.host_memory_mb = 16",
        "host-memory-limit naming limits.host_memory_mb; nothing published; peak RSS within \
         the budget plus the margin",
    );
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let options = format!(
        "mode = \"sql-stream-hoard\"\ncount = 3\nsecs = 4\nstatement = {}",
        serde_json::to_string(BIG_ROWS).unwrap()
    );
    let cfg = pg_config(&ws, &home, server, &options, "host_memory_mb = 16\n");
    let (result, _) = run_observed(rt, &cfg, Some(&home)).await;
    let peak = peak_rss_mb();
    let err = result.expect_err("the budget fails the run");
    case.failed(&err);
    assert_eq!(err.kind(), "host-memory-limit", "{err}");
    assert!(err.to_string().contains("limits.host_memory_mb"), "{err}");
    assert!(ws.out_entries().is_empty(), "nothing published");
    assert!(peak < baseline + 16 + MARGIN_MB, "peak RSS {peak} MiB");
}

/// Forty PostgreSQL logins asked for at once: the fifth is refused before its secret is
/// resolved, so the run holds at most four server slots and did four resolutions.
async fn pg_connection_flood_is_capped(rt: &Runtime, server: &PgCluster) {
    let mut case = Case::new(
        "pg_connection_flood_is_capped",
        file!(),
        "opens 40 PostgreSQL connections and keeps them all (the server allows 100)",
        "the fifth sql.open is refused with a limit error naming limits.sql_connections before \
         any secret resolution or login: 4 connections, 4 resolutions",
    );
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let cfg = pg_config(
        &ws,
        &home,
        server,
        "mode = \"sql-open-flood\"\ncount = 40",
        "",
    );
    let (result, _) = run_observed(rt, &cfg, Some(&home)).await;
    let report = result.expect("the plugin reports what it got");
    let attrs = probe(&report);
    let resolutions = home
        .inner()
        .state()
        .audit_entries(None, None)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "resolve")
        .count();
    case.actual(format!(
        "completed: {attrs}; {resolutions} secret resolutions"
    ));
    assert_eq!(attrs["opened"], 4, "{attrs}");
    let refusal = attrs["refusal"].as_str().unwrap();
    assert!(
        refusal.starts_with("limit:") && refusal.contains("limits.sql_connections"),
        "{refusal}"
    );
    assert_eq!(resolutions, 4, "one resolution per admitted login");
}

/// 1,500 SQLite opens of one file, all kept: the fifth is refused, so neither memory nor the
/// process's file descriptors follow the plugin.
async fn sqlite_open_flood_is_capped(rt: &Runtime, baseline: u64) {
    let mut case = Case::new(
        "sqlite_open_flood_is_capped",
        file!(),
        "opens the workflow's SQLite file 1,500 times and keeps every connection",
        "the fifth sql.open is refused naming limits.sql_connections; open descriptors and peak \
         RSS stay flat",
    );
    let ws = Workspace::new();
    airlock::demo::create_sample_database(&ws.path().join("shop.db")).unwrap();
    let cfg = suite_config(
        &ws,
        "database = \"shop.db\"",
        "mode = \"sql-open-flood\"\ndriver = \"sqlite\"\ncount = 1500",
        "[limits]\ndeadline_s = 60\n",
    );
    let fds_before = open_fds();
    let (result, _) = run_observed(rt, &cfg, None).await;
    let fds_after = open_fds();
    let peak = peak_rss_mb();
    let report = result.expect("the plugin reports what it got");
    let attrs = probe(&report);
    case.actual(format!(
        "completed: {attrs}; open descriptors {fds_before} -> {fds_after}; peak RSS {baseline} -> {peak} MiB"
    ));
    assert_eq!(attrs["opened"], 4, "{attrs}");
    assert!(
        attrs["refusal"]
            .as_str()
            .unwrap()
            .contains("limits.sql_connections"),
        "{attrs}"
    );
    assert!(
        fds_after <= fds_before + 8,
        "descriptors {fds_before} -> {fds_after}"
    );
    assert!(peak < baseline + 256 + MARGIN_MB, "peak RSS {peak} MiB");
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test]
async fn host_memory_and_connections_are_bounded() {
    let rt = runtime();
    let server = pg();
    // A normal run first: the compiled plugins and the runtime are then part of the baseline.
    assert_host_healthy(&rt).await;
    warm(&rt, "hostile-suite");
    let baseline = peak_rss_mb();
    unread_streams_stay_within_the_budget(&rt, &server, baseline).await;
    an_exhausted_budget_fails_the_run(&rt, &server, baseline).await;
    pg_connection_flood_is_capped(&rt, &server).await;
    sqlite_open_flood_is_capped(&rt, baseline).await;
    assert_host_healthy(&rt).await;
}
