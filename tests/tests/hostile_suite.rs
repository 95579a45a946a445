//! The hostile-plugin suite: one attack per test, each through the multi-mode plugin
//! `tests/plugins/hostile-suite` (`[source.options] mode`). Every case states the outcome the
//! host must produce, asserts it, checks that nothing was published and that the same runtime
//! still runs a good plugin, and records itself in `target/hostile-report/` (see
//! `scripts/security-report`). Network cases use servers on 127.0.0.1 started here.

mod hostile_report;

use std::net::{TcpListener, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_tests::httpserver::{self, ok, TestServer};
use airlock_tests::{plugin, read_jsonl, runtime, verify_run_dir, Home, Workspace};
use hostile_report::{
    assert_host_healthy, bounded, run_observed, suite_config, warm, Case, NEVER_HANGS,
};

/// A token the echo server reflects back to the plugin, as a compromised source could.
const TOKEN: &str = "tok-hostile-8c1f4e2a9b7d";

// ---------------------------------------------------------------------------------------------
// Helpers

/// A listener nobody should reach: `touched()` says whether any connection arrived.
struct Canary {
    listener: TcpListener,
}

impl Canary {
    fn start() -> Canary {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Canary { listener }
    }
    fn port(&self) -> u16 {
        self.listener.local_addr().unwrap().port()
    }
    fn touched(&self) -> bool {
        self.listener.accept().is_ok()
    }
}

fn http_ok(body: &str) -> Option<String> {
    Some(ok(body))
}

fn redirect(to: &str) -> Option<String> {
    Some(httpserver::redirect(to))
}

fn token_credential(home: &Home, destinations: &[String]) -> String {
    let destinations: Vec<&str> = destinations.iter().map(String::as_str).collect();
    home.add_token(TOKEN, &destinations)
}

fn empty_db(ws: &Workspace) {
    rusqlite::Connection::open(ws.path().join("db.sqlite"))
        .unwrap()
        .execute_batch("CREATE TABLE t (x INTEGER);")
        .unwrap();
}

/// The attributes of the `probe` asset of a published run.
fn probe_of(report: &airlock::run::RunReport) -> serde_json::Value {
    verify_run_dir(&report.output_dir);
    let assets = read_jsonl(&report.output_dir, "database");
    assert_eq!(assets.len(), 1, "one probe asset");
    assets[0]["attributes"]["extra"].clone()
}

/// Asserts nothing at all is in the sink directory: no run, no staging leftover.
fn assert_nothing_published(ws: &Workspace) {
    assert!(
        ws.out_entries().is_empty(),
        "nothing published: {:?}",
        ws.out_entries()
    );
}

/// The audit log of `guid` shows no secret resolution and no login: the secret was never read.
fn assert_secret_never_read(home: &Home, guid: &str) {
    let audit = home
        .inner()
        .state()
        .audit_entries(None, Some(guid))
        .unwrap();
    assert!(
        !audit
            .iter()
            .any(|e| (e.action == "resolve" || e.action == "login") && e.outcome == "ok"),
        "the host never resolved the secret: {audit:?}"
    );
}

fn with_network(allow: &[String]) -> String {
    let list: Vec<String> = allow.iter().map(|a| format!("\"{a}\"")).collect();
    format!("[network]\nallow = [{}]\n", list.join(", "))
}

// ---------------------------------------------------------------------------------------------
// CPU, memory, stack, tables

#[tokio::test]
async fn endless_loop_around_host_calls_is_stopped_at_the_deadline() {
    let mut case = Case::new(
        "endless_loop_around_host_calls_is_stopped_at_the_deadline",
        file!(),
        "loops forever calling log.progress and credentials.get between tiny computations",
        "deadline-exceeded (limits.deadline_s = 2); nothing published",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(
        &ws,
        "",
        "mode = \"loop-host-calls\"",
        "[limits]\ndeadline_s = 2\n",
    );
    warm(&rt, "hostile-suite");
    let started = Instant::now();
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let took = started.elapsed();
    case.stopped_after(took);
    let err = result.expect_err("the loop must be stopped");
    case.failed(&err);
    assert_eq!(err.kind(), "deadline-exceeded", "{err}");
    assert!(err.to_string().contains("deadline exceeded"), "{err}");
    assert!(took < Duration::from_secs(2) + NEVER_HANGS / 4, "{took:?}");
    assert_nothing_published(&ws);
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn deep_recursion_overflows_the_stack_and_traps_cleanly() {
    let mut case = Case::new(
        "deep_recursion_overflows_the_stack_and_traps_cleanly",
        file!(),
        "recurses without bound",
        "plugin-crashed: stack overflow; host unaffected",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(&ws, "", "mode = \"stack-overflow\"", "");
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let err = result.expect_err("the recursion must trap");
    case.failed(&err);
    assert_eq!(err.kind(), "plugin-crashed", "{err}");
    assert!(err.to_string().contains("stack overflow"), "{err}");
    assert_nothing_published(&ws);
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn one_huge_allocation_is_stopped_at_the_memory_limit() {
    let mut case = Case::new(
        "one_huge_allocation_is_stopped_at_the_memory_limit",
        file!(),
        "allocates 1.5 GiB at once (one memory.grow far past the limit)",
        "memory-limit naming the requested size and limits.memory_mb = 64",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(
        &ws,
        "",
        "mode = \"big-alloc\"\nbytes = 1610612736",
        "[limits]\nmemory_mb = 64\n",
    );
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let err = result.expect_err("the allocation must be refused");
    case.failed(&err);
    assert_eq!(err.kind(), "memory-limit", "{err}");
    assert!(err.to_string().contains("the limit is 64 MiB"), "{err}");
    assert_nothing_published(&ws);
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn a_table_larger_than_the_table_limit_is_refused() {
    let mut case = Case::new(
        "a_table_larger_than_the_table_limit_is_refused",
        file!(),
        "needs a function table larger than limits.table_elements (stable Rust cannot emit table.grow; the limiter checks table creation and growth alike)",
        "table-limit naming limits.table_elements; the plugin never runs",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(
        &ws,
        "",
        "mode = \"normal\"",
        "[limits]\ntable_elements = 4\n",
    );
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let err = result.expect_err("the table must be refused");
    case.failed(&err);
    assert_eq!(err.kind(), "table-limit", "{err}");
    assert!(err.to_string().contains("limits.table_elements"), "{err}");
    assert_nothing_published(&ws);
    assert_host_healthy(&rt).await;
}

// ---------------------------------------------------------------------------------------------
// Output integrity

#[tokio::test]
async fn one_emit_call_beyond_the_call_size_limit_is_refused() {
    let mut case = Case::new(
        "one_emit_call_beyond_the_call_size_limit_is_refused",
        file!(),
        "emits one asset of 2 MiB in a single call with limits.call_bytes = 1 MiB",
        "call-size-limit naming limits.call_bytes; nothing published",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(
        &ws,
        "",
        "mode = \"huge-emit\"\nbytes = 2097152",
        "[limits]\ncall_bytes = 1048576\nasset_kb = 512\n",
    );
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let err = result.expect_err("the call must be refused");
    case.failed(&err);
    assert_eq!(err.kind(), "call-size-limit", "{err}");
    assert!(err.to_string().contains("limits.call_bytes"), "{err}");
    assert_nothing_published(&ws);
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn an_emit_flood_beyond_max_assets_fails_the_run() {
    let mut case = Case::new(
        "an_emit_flood_beyond_max_assets_fails_the_run",
        file!(),
        "emits assets without end (one million tables) with limits.max_assets = 5000",
        "output-limit: more than 5000 assets (limits.max_assets); nothing published",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(
        &ws,
        "",
        "mode = \"emit-flood\"\ncount = 1000000",
        "[limits]\nmax_assets = 5000\n",
    );
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let err = result.expect_err("the flood must be stopped");
    case.failed(&err);
    assert_eq!(err.kind(), "output-limit", "{err}");
    assert!(
        err.to_string()
            .contains("more than 5000 assets (limits.max_assets)"),
        "{err}"
    );
    assert_nothing_published(&ws);
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn an_emit_flood_beyond_max_output_mb_fails_the_run() {
    let mut case = Case::new(
        "an_emit_flood_beyond_max_output_mb_fails_the_run",
        file!(),
        "emits 4 KiB assets without end with limits.max_output_mb = 2",
        "output-limit: more than 2 MiB (limits.max_output_mb); nothing published",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(
        &ws,
        "",
        "mode = \"emit-flood\"\ncount = 100000\npad = 4096",
        "[limits]\nmax_output_mb = 2\n",
    );
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let err = result.expect_err("the flood must be stopped");
    case.failed(&err);
    assert_eq!(err.kind(), "output-limit", "{err}");
    assert!(
        err.to_string()
            .contains("more than 2 MiB (limits.max_output_mb)"),
        "{err}"
    );
    assert_nothing_published(&ws);
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn a_giant_attribute_string_is_dropped_and_counted() {
    let mut case = Case::new(
        "a_giant_attribute_string_is_dropped_and_counted",
        file!(),
        "emits a table whose comment is 512 KiB with limits.asset_kb = 64",
        "the run completes; that asset is dropped and counted as dropped_oversize with a warning; the others are kept",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(
        &ws,
        "",
        "mode = \"giant-attribute\"\nbytes = 524288",
        "[limits]\nasset_kb = 64\n",
    );
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let report = result.expect("an oversize asset is dropped, not fatal");
    let manifest = verify_run_dir(&report.output_dir);
    case.actual(format!(
        "completed; table counts {}",
        manifest["counts"]["table"]
    ));
    assert_eq!(manifest["counts"]["table"]["dropped_oversize"], 1);
    assert_eq!(manifest["counts"]["table"]["kept"], 1);
    let tables = read_jsonl(&report.output_dir, "table");
    assert_eq!(tables[0]["qualified_name"], "db.main.small");
    assert!(
        manifest["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("exceed limits.asset_kb")),
        "{manifest}"
    );
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn a_warning_about_a_filtered_out_asset_is_withheld() {
    let mut case = Case::new(
        "a_warning_about_a_filtered_out_asset_is_withheld",
        file!(),
        "emits a table the filters exclude and returns a warning naming it (in another case) \
         with customer rows",
        "the manifest keeps the warning about the kept table and withholds the other, counted; \
         no customer text is published",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(
        &ws,
        "",
        "mode = \"warn-about-dropped\"",
        "[filters]\nexclude = [\"db.main.secret_*\"]\ncase_sensitive = false\n",
    );
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let report = result.expect("the run completes");
    let manifest = verify_run_dir(&report.output_dir);
    let warnings: Vec<&str> = manifest["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    case.actual(format!("completed; manifest warnings {warnings:?}"));
    assert!(warnings.contains(&"keep_t looks fine"), "{warnings:?}");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("1 plugin warnings withheld: they name assets the filters dropped")),
        "{warnings:?}"
    );
    for f in airlock_tests::all_files(&report.output_dir) {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        assert!(!text.contains("Alice"), "{} carries the rows", f.display());
    }
    assert_host_healthy(&rt).await;
}

/// The table the `smuggle-names` cases try to carry around the filters, in both spellings the
/// plugin uses (the host name swaps `_` for `-`); matched without regard to case.
const SMUGGLED: &str = "secret_payroll_q3";

fn mentions_smuggled(text: &str) -> bool {
    let text = text.to_lowercase();
    text.contains("payroll_q3") || text.contains("payroll-q3")
}

/// Runs `smuggle-names` (with `fail = true` if `fail`) on a workflow that excludes
/// `db.main.secret_*`, and checks that the run's audit trail — the operator's — did see the
/// name, both in the refused statement and in the denied destination, so that a log free of
/// it means the log withheld it and not that the attempts never happened.
async fn smuggle(
    fail: bool,
) -> (
    Workspace,
    Home,
    Result<airlock::run::RunReport, airlock::run::RunError>,
) {
    let rt = runtime();
    let ws = Workspace::new();
    rusqlite::Connection::open(ws.path().join("db.sqlite"))
        .unwrap()
        .execute_batch(&format!(
            "CREATE TABLE keep_t (x INTEGER); CREATE TABLE {SMUGGLED} (salary INTEGER);"
        ))
        .unwrap();
    let home = Home::new(ws.path());
    let cfg = suite_config(
        &ws,
        "database = \"db.sqlite\"",
        &format!(
            "mode = \"smuggle-names\"\ndriver = \"sqlite\"\nname = \"{SMUGGLED}\"\nfail = {fail}"
        ),
        "[filters]\nexclude = [\"db.main.secret_*\"]\n",
    );
    let (result, _) = run_observed(&rt, &cfg, Some(&home)).await;
    let audit = home.inner().state().audit_entries(None, None).unwrap();
    let seen = |action: &str| {
        audit.iter().any(|e| {
            e.action == action
                && mentions_smuggled(&format!(
                    "{} {}",
                    e.destination.as_deref().unwrap_or_default(),
                    e.detail.as_deref().unwrap_or_default()
                ))
        })
    };
    assert!(
        seen("sql-refused"),
        "the refused statement is audited with its relation: {audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|e| e.outcome == "denied" && mentions_smuggled(&format!("{e:?}"))),
        "the denied request is audited with its host: {audit:?}"
    );
    assert_host_healthy(&rt).await;
    (ws, home, result)
}

#[tokio::test]
async fn names_the_filters_exclude_do_not_leave_in_a_complete_runs_log() {
    let mut case = Case::new(
        "names_the_filters_exclude_do_not_leave_in_a_complete_runs_log",
        file!(),
        "puts an excluded table's name into a refused SQL statement, a denied HTTP destination \
         and a warning, emits the table, then finishes",
        "the run completes; its published log records the refusal and the denial without the \
         name, and no published file names the table (the home's audit keeps it)",
    );
    let (_ws, _home, result) = smuggle(false).await;
    let report = result.expect("the run completes");
    let manifest = verify_run_dir(&report.output_dir);
    let log = std::fs::read_to_string(report.output_dir.join("run-log.jsonl")).unwrap();
    let actions: Vec<String> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "audit")
        .map(|e| format!("{} {}", e["action"], e["outcome"]))
        .collect();
    case.actual(format!(
        "completed; {} warnings in the manifest; log audit events {actions:?}",
        manifest["warnings"].as_array().map_or(0, Vec::len)
    ));
    assert!(
        actions.iter().any(|a| a.contains("sql-refused")),
        "the published log records that a statement was refused: {log}"
    );
    assert!(
        actions.iter().any(|a| a.contains("denied")),
        "the published log records that a request was denied: {log}"
    );
    for f in airlock_tests::all_files(&report.output_dir) {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        assert!(
            !mentions_smuggled(&text),
            "{} names the excluded table:\n{text}",
            f.display()
        );
    }
}

#[tokio::test]
async fn names_the_filters_exclude_do_not_leave_in_a_failed_runs_log() {
    let mut case = Case::new(
        "names_the_filters_exclude_do_not_leave_in_a_failed_runs_log",
        file!(),
        "puts an excluded table's name into a refused SQL statement, a denied HTTP destination, \
         a warning and its own error, then fails",
        "source error; nothing published; the log beside the runs (failed/) ends with \
         run-failed and never names the table; the home's copy keeps it for the operator",
    );
    let (ws, home, result) = smuggle(true).await;
    let err = result.expect_err("the plugin fails");
    case.failed(&err);
    assert_eq!(err.kind(), "plugin-error", "{err}");
    assert_nothing_published(&ws);
    let failed = ws.failed_logs();
    assert_eq!(failed.len(), 1, "one failed run's log beside the runs");
    assert!(
        !mentions_smuggled(&failed[0]),
        "the failed log beside the runs names the excluded table:\n{}",
        failed[0]
    );
    let kept: Vec<String> = airlock_tests::all_files(&home.inner().dir().join("logs"))
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert_eq!(kept.len(), 1, "the home keeps the failed run's log");
    assert!(
        mentions_smuggled(&kept[0]),
        "the operator's copy keeps the plugin's error and the refusals:\n{}",
        kept[0]
    );
}

#[tokio::test]
async fn a_warning_flood_is_capped_in_number_and_bytes() {
    let mut case = Case::new(
        "a_warning_flood_is_capped_in_number_and_bytes",
        file!(),
        "returns 50,000 warnings of 2 KiB each (100 MB) under max_output_mb = 1",
        "the run completes; the manifest keeps at most 100 warnings of 512 characters and one line counting the rest; the manifest stays small",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(
        &ws,
        "",
        "mode = \"warning-flood\"\ncount = 50000\ntext = \"customer-row \"\nrepeat = 160",
        "[limits]\nmax_output_mb = 1\n",
    );
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let report = result.expect("a warning flood is capped, not fatal");
    verify_run_dir(&report.output_dir);
    let manifest_len = std::fs::metadata(report.output_dir.join("manifest.json"))
        .unwrap()
        .len();
    let manifest = verify_run_dir(&report.output_dir);
    let warnings = manifest["warnings"].as_array().unwrap();
    case.actual(format!(
        "completed; {} warnings in a manifest of {manifest_len} bytes; last: {}",
        warnings.len(),
        warnings.last().and_then(|w| w.as_str()).unwrap_or_default()
    ));
    assert!(warnings.len() <= 101, "{} warnings", warnings.len());
    assert!(warnings
        .iter()
        .all(|w| w.as_str().unwrap().chars().count() <= 600));
    assert!(
        warnings
            .last()
            .and_then(|w| w.as_str())
            .is_some_and(|w| w.contains("more plugin warnings withheld")),
        "the rest is counted"
    );
    assert!(manifest_len < 128 << 10, "manifest of {manifest_len} bytes");
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn a_giant_path_segment_is_refused() {
    let mut case = Case::new(
        "a_giant_path_segment_is_refused",
        file!(),
        "emits a table whose name is 64 KiB",
        "invalid-output: path segment exceeds 1024 bytes; nothing published",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(&ws, "", "mode = \"giant-segment\"", "");
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let err = result.expect_err("the asset must be refused");
    case.failed(&err);
    assert_eq!(err.kind(), "invalid-output", "{err}");
    assert!(err.to_string().contains("exceeds 1024"), "{err}");
    assert_nothing_published(&ws);
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn attributes_outside_the_asset_contract_are_dropped_and_counted() {
    let mut case = Case::new(
        "attributes_outside_the_asset_contract_are_dropped_and_counted",
        file!(),
        "emits keys the asset contract does not name (one naming a table), a boolean as \
         text, a fractional ordinal, a key given twice and an `extra` nested too deep",
        "the run completes; unknown keys are dropped from the kept asset and counted; the \
         broken assets are dropped and counted, with warnings naming only contract \
         attributes; the run validates against the contract it names",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(&ws, "", "mode = \"break-contract\"", "");
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let report = result.expect("contract problems drop assets, they do not fail the run");
    let manifest = verify_run_dir(&report.output_dir);
    case.actual(format!(
        "completed; table counts {}; column counts {}",
        manifest["counts"]["table"], manifest["counts"]["column"]
    ));
    assert_eq!(manifest["contract"], "1.0");
    let table = &manifest["counts"]["table"];
    assert_eq!(table["unknown_keys_dropped"], 2, "{table}");
    assert_eq!(table["dropped_invalid"], 2, "{table}");
    assert_eq!(table["kept"], 1, "{table}");
    let column = &manifest["counts"]["column"];
    assert_eq!(column["dropped_invalid"], 2, "{column}");
    assert_eq!(column["kept"], 1, "{column}");
    let tables = read_jsonl(&report.output_dir, "table");
    assert_eq!(
        tables[0]["attributes"],
        serde_json::json!({"comment": "kept, without its unknown keys", "row_count_estimate": 3})
    );
    let warnings: Vec<&str> = manifest["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    for says in [
        "dropped 1 column assets breaking asset contract 1.0: `nullable` is a string",
        "dropped 1 column assets breaking asset contract 1.0: `ordinal` is a fractional number",
        "dropped 1 table assets breaking asset contract 1.0: attribute `comment` is given twice",
        "dropped 1 table assets breaking asset contract 1.0: `extra.*.*` is an object",
    ] {
        assert!(
            warnings.iter().any(|w| w.contains(says)),
            "{says}: {warnings:?}"
        );
    }
    // Nothing that leaves names a key or an asset the plugin chose and the contract dropped.
    for file in airlock_tests::all_files(&report.output_dir) {
        let text = std::fs::read_to_string(&file).unwrap();
        for leaked in [
            "secret_payroll",
            "freeform",
            "nullable_as_text",
            "deep_extra",
        ] {
            assert!(!text.contains(leaked), "{} holds {leaked}", file.display());
        }
    }
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn invalid_json_attributes_fail_the_run() {
    let mut case = Case::new(
        "invalid_json_attributes_fail_the_run",
        file!(),
        "emits attributes that are not JSON (an unterminated string)",
        "invalid-output: attributes are not valid JSON, naming the asset; nothing published",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(&ws, "", "mode = \"invalid-json\"", "");
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let err = result.expect_err("the asset must be refused");
    case.failed(&err);
    assert_eq!(err.kind(), "invalid-output", "{err}");
    assert!(
        err.to_string()
            .contains("table db.main.t: attributes are not valid JSON"),
        "{err}"
    );
    assert_nothing_published(&ws);
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn attributes_that_are_not_an_object_fail_the_run() {
    let mut case = Case::new(
        "attributes_that_are_not_an_object_fail_the_run",
        file!(),
        "emits a JSON array as attributes",
        "invalid-output: attributes are not a JSON object; nothing published",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(&ws, "", "mode = \"non-object-json\"", "");
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let err = result.expect_err("the asset must be refused");
    case.failed(&err);
    assert_eq!(err.kind(), "invalid-output", "{err}");
    assert!(err.to_string().contains("not a JSON object"), "{err}");
    assert_nothing_published(&ws);
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn deeply_nested_json_cannot_overflow_the_host_stack() {
    let mut case = Case::new(
        "deeply_nested_json_cannot_overflow_the_host_stack",
        file!(),
        "emits attributes nested 100,000 arrays deep (200 KB), to crash the host's or a consumer's JSON parser",
        "invalid-output: attributes are nested deeper than 64 levels; nothing published",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(&ws, "", "mode = \"nested-json\"\ndepth = 100000", "");
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let err = result.expect_err("the asset must be refused");
    case.failed(&err);
    assert_eq!(err.kind(), "invalid-output", "{err}");
    assert!(
        err.to_string()
            .contains("table db.main.t: attributes are nested deeper than 64 levels"),
        "{err}"
    );
    assert_nothing_published(&ws);
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn assets_claiming_another_database_are_filtered_out() {
    let mut case = Case::new(
        "assets_claiming_another_database_are_filtered_out",
        file!(),
        "with include = [\"good.main.*\"], emits assets of database `other` and segments holding `.` and `\"` that spell `good.main`",
        "the run completes; only good, good.main and good.main.t are written; the rest count as dropped_filter",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(
        &ws,
        "",
        "mode = \"other-database\"",
        "[filters]\ninclude = [\"good.main.*\"]\n",
    );
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let report = result.expect("filtered assets are not fatal");
    let manifest = verify_run_dir(&report.output_dir);
    let mut written: Vec<String> = ["database", "schema", "table"]
        .iter()
        .flat_map(|k| read_jsonl(&report.output_dir, k))
        .map(|a| a["qualified_name"].as_str().unwrap().to_string())
        .collect();
    written.sort();
    case.actual(format!("completed; written {written:?}"));
    assert_eq!(written, vec!["good", "good.main", "good.main.t"]);
    let dropped: u64 = ["database", "schema", "table"]
        .iter()
        .map(|k| {
            manifest["counts"][k]["dropped_filter"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(dropped, 4, "{manifest}");
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn control_characters_in_asset_paths_are_refused() {
    let mut case = Case::new(
        "control_characters_in_asset_paths_are_refused",
        file!(),
        "emits a table named `t\\0\\n../x` (NUL, newline, traversal)",
        "invalid-output: path segment contains a control character; nothing published",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(&ws, "", "mode = \"control-path\"", "");
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let err = result.expect_err("the asset must be refused");
    case.failed(&err);
    assert_eq!(err.kind(), "invalid-output", "{err}");
    assert!(err.to_string().contains("control character"), "{err}");
    assert_nothing_published(&ws);
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn an_excluded_table_renamed_with_a_homoglyph_is_flagged_as_confusable() {
    let mut case = Case::new(
        "an_excluded_table_renamed_with_a_homoglyph_is_flagged_as_confusable",
        file!(),
        "with exclude = [\"db.main.audit\"], emits `audit` and again as `\u{430}udit` (Cyrillic а)",
        "the run completes; `audit` is dropped; the look-alike is kept (exclude is no boundary) and listed in manifest filter.confusable_with_exclude with its column, plus a warning",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(
        &ws,
        "",
        "mode = \"homoglyph-name\"",
        "[filters]\nexclude = [\"db.main.audit\"]\n",
    );
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let report = result.expect("a look-alike name is not fatal");
    let manifest = verify_run_dir(&report.output_dir);
    let tables: Vec<String> = read_jsonl(&report.output_dir, "table")
        .iter()
        .map(|a| a["qualified_name"].as_str().unwrap().to_string())
        .collect();
    let flagged = &manifest["filter"]["confusable_with_exclude"];
    case.actual(format!(
        "completed; tables written {tables:?}; flagged {flagged}"
    ));
    assert_eq!(tables, vec!["db.main.\u{430}udit"]);
    assert_eq!(
        *flagged,
        serde_json::json!([
            {"kind": "table", "name": "db.main.\u{430}udit", "pattern": "db.main.audit"},
            {"kind": "column", "name": "db.main.\u{430}udit.who", "pattern": "db.main.audit"},
        ])
    );
    assert!(
        manifest["warnings"].as_array().unwrap().iter().any(|w| w
            .as_str()
            .unwrap()
            .contains("confusable with an exclude pattern")),
        "{manifest}"
    );
    assert_eq!(manifest["counts"]["table"]["dropped_filter"], 1);
    assert_eq!(manifest["counts"]["column"]["dropped_filter"], 1);
    assert_host_healthy(&rt).await;
}

/// An excluded table emitted again with an invisible character in its name: refused.
async fn invisible_name_case(case: &mut Case, mode: &str, code: &str) {
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(
        &ws,
        "",
        &format!("mode = \"{mode}\""),
        "[filters]\nexclude = [\"db.main.audit\"]\n",
    );
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let err = result.expect_err("the asset must be refused");
    case.failed(&err);
    assert_eq!(err.kind(), "invalid-output", "{err}");
    assert!(
        err.to_string()
            .contains(&format!("invisible format character {code}")),
        "{err}"
    );
    assert_nothing_published(&ws);
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn an_excluded_table_renamed_with_a_zero_width_space_is_refused() {
    let mut case = Case::new(
        "an_excluded_table_renamed_with_a_zero_width_space_is_refused",
        file!(),
        "with exclude = [\"db.main.audit\"], emits the table again as `au\\u{200B}dit` (zero-width space)",
        "invalid-output: path segment contains an invisible format character U+200B; nothing published",
    );
    invisible_name_case(&mut case, "zero-width-name", "U+200B").await;
}

#[tokio::test]
async fn an_excluded_table_renamed_with_a_bidi_override_is_refused() {
    let mut case = Case::new(
        "an_excluded_table_renamed_with_a_bidi_override_is_refused",
        file!(),
        "with exclude = [\"db.main.audit\"], emits the table again as `\\u{202E}tidua` (right-to-left override: shown as `audit`)",
        "invalid-output: path segment contains an invisible format character U+202E; nothing published",
    );
    invisible_name_case(&mut case, "bidi-name", "U+202E").await;
}

#[tokio::test]
async fn an_excluded_table_renamed_with_a_line_separator_is_refused() {
    let mut case = Case::new(
        "an_excluded_table_renamed_with_a_line_separator_is_refused",
        file!(),
        "with exclude = [\"db.main.audit\"], emits the table again as `audit\\u{2028}` (line separator)",
        "invalid-output: path segment contains an invisible format character U+2028; nothing published",
    );
    invisible_name_case(&mut case, "line-separator-name", "U+2028").await;
}

#[tokio::test]
async fn a_dotted_table_name_under_an_excluded_schema_glob_is_excluded() {
    let mut case = Case::new(
        "a_dotted_table_name_under_an_excluded_schema_glob_is_excluded",
        file!(),
        "with exclude = [\"db.main.*\"], emits a table named `odd.name` (qualified `db.main.\"odd.name\"`) and its column",
        "the run completes; `*` covers the whole segment: the table and its column are dropped, counted as dropped_filter",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(
        &ws,
        "",
        "mode = \"dotted-name\"",
        "[filters]\nexclude = [\"db.main.*\"]\n",
    );
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let report = result.expect("filtered assets are not fatal");
    let manifest = verify_run_dir(&report.output_dir);
    let mut written: Vec<String> = ["database", "schema", "table", "column"]
        .iter()
        .flat_map(|k| read_jsonl(&report.output_dir, k))
        .map(|a| a["qualified_name"].as_str().unwrap().to_string())
        .collect();
    written.sort();
    case.actual(format!("completed; written {written:?}"));
    assert_eq!(written, vec!["db", "db.main", "db.other", "db.other.t"]);
    assert_eq!(manifest["counts"]["table"]["dropped_filter"], 1);
    assert_eq!(manifest["counts"]["column"]["dropped_filter"], 1);
    assert_eq!(
        manifest["filter"]["unmatched_patterns"],
        serde_json::json!([])
    );
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn a_path_of_the_wrong_shape_is_refused() {
    let mut case = Case::new(
        "a_path_of_the_wrong_shape_is_refused",
        file!(),
        "emits a table with a one-segment path",
        "invalid-output: a table path must have 3 segments; nothing published",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(&ws, "", "mode = \"wrong-path-shape\"", "");
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let err = result.expect_err("the asset must be refused");
    case.failed(&err);
    assert_eq!(err.kind(), "invalid-output", "{err}");
    assert!(
        err.to_string()
            .contains("a table path must have 3 segments"),
        "{err}"
    );
    assert_nothing_published(&ws);
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn an_abort_after_partial_emits_publishes_nothing() {
    let mut case = Case::new(
        "an_abort_after_partial_emits_publishes_nothing",
        file!(),
        "emits and flushes 20 valid tables, then aborts the process",
        "plugin-crashed; no run directory and no staging leftover",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(&ws, "", "mode = \"abort-after-emits\"", "");
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let err = result.expect_err("an abort fails the run");
    case.failed(&err);
    assert_eq!(err.kind(), "plugin-crashed", "{err}");
    assert_nothing_published(&ws);
    assert_host_healthy(&rt).await;
}

// ---------------------------------------------------------------------------------------------
// Ambient authority through WASI

#[tokio::test]
async fn reading_a_host_file_is_denied() {
    let mut case = Case::new(
        "reading_a_host_file_is_denied",
        file!(),
        "reads a canary file by absolute path and lists its directory, / and .",
        "every attempt denied by WASI (no preopened directory); the canary is in no output",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let canary = ws.path().join("canary.txt");
    std::fs::write(&canary, "canary-file-content-7d1e").unwrap();
    let cfg = suite_config(
        &ws,
        "",
        &format!("mode = \"read-file\"\npath = \"{}\"", canary.display()),
        "",
    );
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let report = result.expect("the probe completes");
    let a = probe_of(&report);
    case.actual(format!("completed; probe {a}"));
    for key in ["result", "list_dir", "list_root", "list_cwd"] {
        let v = a[key].as_str().unwrap();
        assert!(v.starts_with("denied"), "{key}: {v}");
    }
    let text = std::fs::read_to_string(report.output_dir.join("database.jsonl")).unwrap();
    assert!(!text.contains("canary-file-content-7d1e"));
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn writing_a_host_file_is_denied() {
    let mut case = Case::new(
        "writing_a_host_file_is_denied",
        file!(),
        "creates a file by absolute path",
        "denied by WASI; the file does not exist afterwards",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let target = ws.path().join("escaped.txt");
    let cfg = suite_config(
        &ws,
        "",
        &format!("mode = \"write-file\"\npath = \"{}\"", target.display()),
        "",
    );
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let a = probe_of(&result.expect("the probe completes"));
    case.actual(format!("completed; probe {a}"));
    assert!(a["result"].as_str().unwrap().starts_with("denied"), "{a}");
    assert!(!target.exists(), "no file was created");
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn the_environment_is_empty() {
    let mut case = Case::new(
        "the_environment_is_empty",
        file!(),
        "reads every environment variable (the host process has a canary variable set)",
        "zero variables; the canary is in no output",
    );
    std::env::set_var("AIRLOCK_HOSTILE_CANARY", "env-canary-value-3b9f");
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(&ws, "", "mode = \"env\"", "");
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let report = result.expect("the probe completes");
    let a = probe_of(&report);
    case.actual(format!("completed; probe {a}"));
    assert_eq!(a["count"], 0, "{a}");
    let text = std::fs::read_to_string(report.output_dir.join("database.jsonl")).unwrap();
    assert!(!text.contains("env-canary-value-3b9f"));
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn the_arguments_are_empty() {
    let mut case = Case::new(
        "the_arguments_are_empty",
        file!(),
        "reads its command-line arguments (the host's argv would reveal paths and flags)",
        "zero arguments",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(&ws, "", "mode = \"args\"", "");
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let a = probe_of(&result.expect("the probe completes"));
    case.actual(format!("completed; probe {a}"));
    assert_eq!(a["count"], 0, "{a}");
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn stdin_is_empty() {
    let mut case = Case::new(
        "stdin_is_empty",
        file!(),
        "reads stdin to the end (the host's stdin may carry a piped secret)",
        "zero bytes",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(&ws, "", "mode = \"stdin\"", "");
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let a = probe_of(&result.expect("the probe completes"));
    case.actual(format!("completed; probe {a}"));
    assert_eq!(a["bytes"], 0, "{a}");
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn a_wasi_tcp_connection_reaches_no_listener() {
    let mut case = Case::new(
        "a_wasi_tcp_connection_reaches_no_listener",
        file!(),
        "connects with a WASI TCP socket to a listener on 127.0.0.1 and writes to it",
        "denied by WASI (allow_tcp = false); the listener accepts no connection",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let canary = Canary::start();
    let cfg = suite_config(
        &ws,
        "",
        &format!(
            "mode = \"tcp-connect\"\naddr = \"127.0.0.1:{}\"",
            canary.port()
        ),
        "",
    );
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let a = probe_of(&result.expect("the probe completes"));
    case.actual(format!("completed; probe {a}"));
    assert!(a["result"].as_str().unwrap().starts_with("denied"), "{a}");
    assert!(!canary.touched(), "no connection reached the listener");
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn a_wasi_udp_datagram_reaches_no_socket() {
    let mut case = Case::new(
        "a_wasi_udp_datagram_reaches_no_socket",
        file!(),
        "binds a WASI UDP socket and sends a datagram to a socket on 127.0.0.1",
        "denied by WASI (allow_udp = false); nothing arrives",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    sink.set_nonblocking(true).unwrap();
    let cfg = suite_config(
        &ws,
        "",
        &format!(
            "mode = \"udp-send\"\naddr = \"127.0.0.1:{}\"",
            sink.local_addr().unwrap().port()
        ),
        "",
    );
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let a = probe_of(&result.expect("the probe completes"));
    case.actual(format!("completed; probe {a}"));
    assert!(a["result"].as_str().unwrap().starts_with("denied"), "{a}");
    let mut buf = [0u8; 64];
    assert!(sink.recv(&mut buf).is_err(), "no datagram arrived");
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn a_wasi_tcp_listener_cannot_be_opened() {
    let mut case = Case::new(
        "a_wasi_tcp_listener_cannot_be_opened",
        file!(),
        "binds a WASI TCP listener on 0.0.0.0 (a backdoor into the host's network)",
        "denied by WASI",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(&ws, "", "mode = \"tcp-listen\"", "");
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let a = probe_of(&result.expect("the probe completes"));
    case.actual(format!("completed; probe {a}"));
    assert!(a["result"].as_str().unwrap().starts_with("denied"), "{a}");
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn wasi_name_lookups_are_denied() {
    let mut case = Case::new(
        "wasi_name_lookups_are_denied",
        file!(),
        "resolves `localhost` through WASI (DNS is a covert channel out of the network)",
        "denied by WASI (allow_ip_name_lookup = false)",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(&ws, "", "mode = \"dns\"\nname = \"localhost\"", "");
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let a = probe_of(&result.expect("the probe completes"));
    case.actual(format!("completed; probe {a}"));
    assert!(a["result"].as_str().unwrap().starts_with("denied"), "{a}");
    assert_host_healthy(&rt).await;
}

// ---------------------------------------------------------------------------------------------
// sql.open to destinations the workflow did not bind

/// A workflow whose credential is bound to `bound` and whose declared endpoint is `declared`;
/// the plugin opens `target` (with the `source` handle unless `with_cred` is false).
async fn sql_open_denied(
    case: &mut Case,
    declared: &str,
    bound: &str,
    target: &str,
    with_cred: bool,
    tail: &str,
) -> (airlock::run::RunError, Home, String, Workspace) {
    let rt = runtime();
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let guid = home.add_password("reader", "Hostile-Sql-Pw-41", &[bound]);
    let cfg = suite_config(
        &ws,
        &format!(
            "endpoint = \"{declared}\"\ndatabase = \"postgres\"\ncredential = \"{guid}\"\ntls = {{ mode = \"disable\", allow_cleartext_password = true }}"
        ),
        &format!(
            "mode = \"sql-open\"\ndriver = \"postgres\"\naddress = \"{target}\"\ndatabase = \"postgres\"\ncredential = {with_cred}"
        ),
        tail,
    );
    let (result, _) = run_observed(&rt, &cfg, Some(&home)).await;
    let err = result.expect_err("the open must be denied");
    case.failed(&err);
    assert_eq!(err.kind(), "plugin-error", "{err}");
    assert!(err.to_string().contains("plugin failed (denied)"), "{err}");
    assert_nothing_published(&ws);
    assert_secret_never_read(&home, &guid);
    let runs = home.inner().state().runs(10).unwrap();
    assert!(runs.iter().all(|r| r.status == "failed"), "{runs:?}");
    assert_host_healthy(&rt).await;
    (err, home, guid, ws)
}

#[tokio::test]
async fn sql_open_to_an_undeclared_endpoint_is_denied() {
    let mut case = Case::new(
        "sql_open_to_an_undeclared_endpoint_is_denied",
        file!(),
        "sql.open with the workflow's credential to an attacker's listener instead of source.endpoint",
        "plugin-error (denied): not the workflow's source.endpoint; audited; no secret resolved; the listener sees nothing",
    );
    let declared = Canary::start();
    let attacker = Canary::start();
    let d = format!("127.0.0.1:{}", declared.port());
    let a = format!("127.0.0.1:{}", attacker.port());
    let (err, home, guid, _ws) = sql_open_denied(&mut case, &d, &d, &a, true, "").await;
    assert!(
        err.to_string()
            .contains("is not the workflow's source.endpoint"),
        "{err}"
    );
    assert!(!attacker.touched() && !declared.touched());
    let audit = home
        .inner()
        .state()
        .audit_entries(None, Some(&guid))
        .unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "login" && e.outcome == "denied"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn sql_open_to_the_cloud_metadata_address_is_denied() {
    let mut case = Case::new(
        "sql_open_to_the_cloud_metadata_address_is_denied",
        file!(),
        "sql.open with the workflow's credential to 169.254.169.254:5432",
        "plugin-error (denied): not the workflow's source.endpoint; no secret resolved; no connection attempted",
    );
    let declared = Canary::start();
    let d = format!("127.0.0.1:{}", declared.port());
    let (err, _home, _guid, _ws) =
        sql_open_denied(&mut case, &d, &d, "169.254.169.254:5432", true, "").await;
    assert!(err.to_string().contains("169.254.169.254:5432"), "{err}");
    assert!(!declared.touched());
}

#[tokio::test]
async fn sql_open_with_a_credential_not_bound_to_the_endpoint_is_denied() {
    let mut case = Case::new(
        "sql_open_with_a_credential_not_bound_to_the_endpoint_is_denied",
        file!(),
        "the workflow declares an endpoint the credential is not bound to; the plugin opens it",
        "plugin-error (denied): credential is not bound to the endpoint; no secret resolved; the endpoint sees nothing",
    );
    let declared = Canary::start();
    let d = format!("127.0.0.1:{}", declared.port());
    let (err, _home, guid, _ws) =
        sql_open_denied(&mut case, &d, "db.internal:5432", &d, true, "").await;
    assert!(
        err.to_string()
            .contains(&format!("credential {guid} is not bound to {d}")),
        "{err}"
    );
    assert!(!declared.touched());
}

#[tokio::test]
async fn sql_open_through_a_name_resolving_to_loopback_is_denied() {
    let mut case = Case::new(
        "sql_open_through_a_name_resolving_to_loopback_is_denied",
        file!(),
        "endpoint and credential name `localhost:PORT`; the workflow does not allow loopback addresses",
        "plugin-error (denied): network policy refuses the loopback address `localhost` resolves to; no secret resolved; nothing reached",
    );
    let declared = Canary::start();
    let d = format!("localhost:{}", declared.port());
    let (err, _home, _guid, _ws) = sql_open_denied(&mut case, &d, &d, &d, true, "").await;
    assert!(err.to_string().contains("loopback"), "{err}");
    assert!(!declared.touched(), "no connection reached the listener");
}

#[tokio::test]
async fn sql_open_to_a_network_source_without_a_handle_is_denied() {
    let mut case = Case::new(
        "sql_open_to_a_network_source_without_a_handle_is_denied",
        file!(),
        "sql.open to the declared endpoint without a credential handle (hoping for ambient login)",
        "plugin-error (denied): a network source needs a credential handle",
    );
    let declared = Canary::start();
    let d = format!("127.0.0.1:{}", declared.port());
    let (err, _home, _guid, _ws) = sql_open_denied(&mut case, &d, &d, &d, false, "").await;
    assert!(
        err.to_string().contains("needs a credential handle"),
        "{err}"
    );
    assert!(!declared.touched());
}

// ---------------------------------------------------------------------------------------------
// http.open to destinations the workflow did not allow

async fn http_denied(
    case: &mut Case,
    options: &str,
    source: &str,
    allow: &[String],
    home: &Home,
) -> airlock::run::RunError {
    http_denied_by(case, options, source, &with_network(allow), home).await
}

/// As [`http_denied`] with the `[network]` table written out (for table allow entries).
async fn http_denied_by(
    case: &mut Case,
    options: &str,
    source: &str,
    network: &str,
    home: &Home,
) -> airlock::run::RunError {
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(
        &ws,
        source,
        &format!("mode = \"http-get\"\n{options}"),
        network,
    );
    let (result, _) = run_observed(&rt, &cfg, Some(home)).await;
    let err = result.expect_err("the request must be denied");
    case.failed(&err);
    assert_eq!(err.kind(), "plugin-error", "{err}");
    assert!(err.to_string().contains("plugin failed (denied)"), "{err}");
    assert_nothing_published(&ws);
    assert_host_healthy(&rt).await;
    err
}

#[tokio::test]
async fn http_open_to_an_unlisted_destination_is_denied() {
    let mut case = Case::new(
        "http_open_to_an_unlisted_destination_is_denied",
        file!(),
        "http.open to a host name the [network] allow list does not name",
        "plugin-error (denied): not allowed by the workflow's [network] allow list, refused before any lookup; audited",
    );
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let server = TestServer::start_or_hang(|_| http_ok("x"));
    let err = http_denied(
        &mut case,
        "base = \"http://unlisted.example.com/\"",
        "",
        &[format!("127.0.0.1:{}", server.port)],
        &home,
    )
    .await;
    assert!(
        err.to_string().contains(
            "unlisted.example.com:80 is not allowed by the workflow's [network] allow list"
        ),
        "{err}"
    );
    assert!(server.requests().is_empty());
    let audit = home.inner().state().audit_entries(None, None).unwrap();
    assert!(
        audit.iter().any(|e| e.action == "network"
            && e.outcome == "denied"
            && e.destination.as_deref() == Some("unlisted.example.com:80")),
        "{audit:?}"
    );
}

#[tokio::test]
async fn http_open_to_the_cloud_metadata_address_is_denied() {
    let mut case = Case::new(
        "http_open_to_the_cloud_metadata_address_is_denied",
        file!(),
        "http.open to http://169.254.169.254/latest/meta-data with every port of loopback allowed",
        "plugin-error (denied): link-local address; audited",
    );
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let err = http_denied(
        &mut case,
        "base = \"http://169.254.169.254/latest\"\npath = \"/meta-data/iam\"",
        "",
        &["127.0.0.1:*".into()],
        &home,
    )
    .await;
    assert!(err.to_string().contains("link-local"), "{err}");
    let audit = home.inner().state().audit_entries(None, None).unwrap();
    assert!(
        audit.iter().any(|e| e.action == "network"
            && e.outcome == "denied"
            && e.destination.as_deref() == Some("169.254.169.254:80")),
        "{audit:?}"
    );
}

#[tokio::test]
async fn http_open_through_a_name_resolving_to_loopback_is_denied() {
    let mut case = Case::new(
        "http_open_through_a_name_resolving_to_loopback_is_denied",
        file!(),
        "http.open to http://localhost:PORT where the allow list names `localhost:PORT` but no loopback address",
        "plugin-error (denied): loopback address refused after resolution; the server sees nothing",
    );
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let server = TestServer::start_or_hang(|_| http_ok("x"));
    let err = http_denied(
        &mut case,
        &format!("base = \"http://localhost:{}/\"", server.port),
        "",
        &[format!("localhost:{}", server.port)],
        &home,
    )
    .await;
    assert!(err.to_string().contains("loopback"), "{err}");
    assert!(
        server.requests().is_empty(),
        "no request reached the server"
    );
}

/// Asserts a `network` / `denied` audit entry for `destination` whose detail holds `needle`.
fn assert_network_denial(home: &Home, destination: &str, needle: &str) {
    let audit = home.inner().state().audit_entries(None, None).unwrap();
    assert!(
        audit.iter().any(|e| e.action == "network"
            && e.outcome == "denied"
            && e.destination.as_deref() == Some(destination)
            && e.detail.as_deref().is_some_and(|d| d.contains(needle))),
        "{audit:?}"
    );
}

/// An authenticated client to a server whose allow entry is `entry` (TOML, with `{addr}` for
/// the server's address) sends `options`; the request must be refused before it is sent,
/// with `needle` in the error and the audit entry. The server sees nothing.
async fn http_request_refused(case: &mut Case, entry: &str, options: &str, needle: &str) {
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let server = TestServer::start_or_hang(|_| http_ok("tenant data"));
    let addr = format!("127.0.0.1:{}", server.port);
    let guid = token_credential(&home, std::slice::from_ref(&addr));
    let network = format!("[network]\nallow = [{}]\n", entry.replace("{addr}", &addr));
    let err = http_denied_by(
        case,
        &format!("base = \"http://{addr}/\"\ncredential = true\n{options}"),
        &format!("credential = \"{guid}\"\nauth = {{ allow_cleartext = true }}"),
        &network,
        &home,
    )
    .await;
    assert!(err.to_string().contains(needle), "{err}");
    assert!(
        server.requests().is_empty(),
        "the server saw nothing: {:?}",
        server.requests()
    );
    assert_network_denial(&home, &addr, needle);
}

const TENANT_A: &str = "{ dest = \"{addr}\", paths = [\"/api/tenant-a\"] }";

#[tokio::test]
async fn a_dot_segment_path_cannot_escape_its_allowed_prefix() {
    let mut case = Case::new(
        "a_dot_segment_path_cannot_escape_its_allowed_prefix",
        file!(),
        "with paths = [\"/api/tenant-a\"] allowed, sends an authenticated GET /api/tenant-a/../../admin/tenant-b",
        "plugin-error (denied): the normalised path /admin/tenant-b is outside the allowed prefixes; nothing sent; audited",
    );
    http_request_refused(
        &mut case,
        TENANT_A,
        "path = \"/api/tenant-a/../../admin/tenant-b\"",
        "path /admin/tenant-b is outside the path prefixes",
    )
    .await;
}

#[tokio::test]
async fn a_percent_encoded_dot_segment_path_cannot_escape_its_allowed_prefix() {
    let mut case = Case::new(
        "a_percent_encoded_dot_segment_path_cannot_escape_its_allowed_prefix",
        file!(),
        "with paths = [\"/api/tenant-a\"] allowed, sends GET /api/tenant-a/%2e%2e/%2E%2E/admin/tenant-b (dots the URL parser would resolve after the check)",
        "plugin-error (denied): decoded and normalised to /admin/tenant-b, outside the allowed prefixes; nothing sent; audited",
    );
    http_request_refused(
        &mut case,
        TENANT_A,
        "path = \"/api/tenant-a/%2e%2e/%2E%2E/admin/tenant-b\"",
        "path /admin/tenant-b is outside the path prefixes",
    )
    .await;
}

#[tokio::test]
async fn an_encoded_slash_in_a_path_is_refused() {
    let mut case = Case::new(
        "an_encoded_slash_in_a_path_is_refused",
        file!(),
        "with paths = [\"/api/tenant-a\"] allowed, sends GET /api/tenant-a/..%2f..%2fadmin%2ftenant-b (a server or proxy may decode %2F into a separator)",
        "plugin-error (denied): the path holds an encoded slash; nothing sent; audited",
    );
    http_request_refused(
        &mut case,
        TENANT_A,
        "path = \"/api/tenant-a/..%2f..%2fadmin%2ftenant-b\"",
        "encoded slash",
    )
    .await;
}

#[tokio::test]
async fn a_path_prefix_matches_whole_segments_only() {
    let mut case = Case::new(
        "a_path_prefix_matches_whole_segments_only",
        file!(),
        "with paths = [\"/api/tenant-a\"] allowed, sends GET /api/tenant-ab/secrets (a string-prefix match would pass it)",
        "plugin-error (denied): /api/tenant-ab is not below /api/tenant-a; nothing sent; audited",
    );
    http_request_refused(
        &mut case,
        TENANT_A,
        "path = \"/api/tenant-ab/secrets\"",
        "path /api/tenant-ab/secrets is outside the path prefixes",
    )
    .await;
}

#[tokio::test]
async fn a_method_outside_the_allow_entry_is_refused() {
    let mut case = Case::new(
        "a_method_outside_the_allow_entry_is_refused",
        file!(),
        "with methods = [\"GET\"] allowed, sends an authenticated DELETE",
        "plugin-error (denied): method DELETE is not allowed; nothing sent; audited",
    );
    http_request_refused(
        &mut case,
        "{ dest = \"{addr}\", methods = [\"GET\"] }",
        "method = \"DELETE\"\npath = \"/api/tenant-a\"",
        "method DELETE is not allowed",
    )
    .await;
}

#[tokio::test]
async fn an_aws_operation_outside_the_allow_entry_is_refused() {
    let mut case = Case::new(
        "an_aws_operation_outside_the_allow_entry_is_refused",
        file!(),
        "with aws_targets = [\"AWSGlue.GetDatabases\", \"AWSGlue.GetTables\"] allowed, POSTs X-Amz-Target: AWSGlue.DeleteDatabase with the Glue credential",
        "plugin-error (denied): X-Amz-Target AWSGlue.DeleteDatabase is not allowed; nothing sent (never signed); audited",
    );
    http_request_refused(
        &mut case,
        "{ dest = \"{addr}\", methods = [\"POST\"], paths = [\"/\"], aws_targets = [\"AWSGlue.GetDatabases\", \"AWSGlue.GetTables\"] }",
        "method = \"POST\"\ntarget = \"AWSGlue.DeleteDatabase\"",
        "X-Amz-Target AWSGlue.DeleteDatabase is not allowed",
    )
    .await;
}

/// `base` must be refused although `allow` contains its address, and `canary` stays untouched.
async fn special_address_refused(case: &mut Case, canary: &Canary, base: &str, allow: &str) {
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let err = http_denied(
        case,
        &format!("base = \"{base}\""),
        "",
        &[allow.to_string()],
        &home,
    )
    .await;
    assert!(err.to_string().contains("a loopback address"), "{err}");
    assert!(!canary.touched(), "the loopback listener was reached");
    let audit = home.inner().state().audit_entries(None, None).unwrap();
    assert!(
        audit.iter().any(|e| e.action == "network"
            && e.outcome == "denied"
            && e.detail.as_deref().is_some_and(|d| d.contains("loopback"))),
        "{audit:?}"
    );
}

#[tokio::test]
async fn a_catch_all_ipv4_network_does_not_admit_loopback() {
    let mut case = Case::new(
        "a_catch_all_ipv4_network_does_not_admit_loopback",
        file!(),
        "allow = [\"0.0.0.0/0:PORT\"] and http.open to http://127.0.0.1:PORT/ (a listener on loopback)",
        "plugin-error (denied): loopback needs an entry naming it or a network inside 127.0.0.0/8; the listener is never touched; audited",
    );
    let canary = Canary::start();
    let port = canary.port();
    special_address_refused(
        &mut case,
        &canary,
        &format!("http://127.0.0.1:{port}/"),
        &format!("0.0.0.0/0:{port}"),
    )
    .await;
}

#[tokio::test]
async fn a_mapped_loopback_address_is_not_admitted_by_the_ipv6_catch_all() {
    let mut case = Case::new(
        "a_mapped_loopback_address_is_not_admitted_by_the_ipv6_catch_all",
        file!(),
        "allow = [\"::/0:PORT\"] and http.open to http://[::ffff:127.0.0.1]:PORT/ (IPv4-mapped loopback)",
        "plugin-error (denied): checked as 127.0.0.1, a loopback address; the listener is never touched; audited",
    );
    let canary = Canary::start();
    let port = canary.port();
    special_address_refused(
        &mut case,
        &canary,
        &format!("http://[::ffff:127.0.0.1]:{port}/"),
        &format!("::/0:{port}"),
    )
    .await;
}

#[tokio::test]
async fn a_cross_origin_redirect_to_a_forbidden_address_is_refused() {
    let mut case = Case::new(
        "a_cross_origin_redirect_to_a_forbidden_address_is_refused",
        file!(),
        "an allowed server answers 302 to http://169.254.169.254/latest/meta-data/iam",
        "plugin-error (denied): redirect from the allowed origin denied; only the first hop sent",
    );
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let server =
        TestServer::start_or_hang(|_| redirect("http://169.254.169.254/latest/meta-data/iam"));
    let err = http_denied(
        &mut case,
        &format!("base = \"http://127.0.0.1:{}/\"", server.port),
        "",
        &[format!("127.0.0.1:{}", server.port)],
        &home,
    )
    .await;
    assert!(
        err.to_string()
            .contains(&format!("redirect from 127.0.0.1:{} denied", server.port)),
        "{err}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn authentication_does_not_follow_a_cross_origin_redirect() {
    let mut case = Case::new(
        "authentication_does_not_follow_a_cross_origin_redirect",
        file!(),
        "the credential's own server redirects to another allowed origin, to harvest the bearer token",
        "the run completes; the first origin got the token, the second origin's request carries no authorization",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let landing = TestServer::start_or_hang(|_| http_ok("landed"));
    let landing_port = landing.port;
    let first =
        TestServer::start_or_hang(move |_| redirect(&format!("http://127.0.0.1:{landing_port}/x")));
    let guid = token_credential(&home, &[format!("127.0.0.1:{}", first.port)]);
    let cfg = suite_config(
        &ws,
        &format!("credential = \"{guid}\"\nauth = {{ allow_cleartext = true }}"),
        &format!(
            "mode = \"http-get\"\nbase = \"http://127.0.0.1:{}/\"\ncredential = true",
            first.port
        ),
        &with_network(&["127.0.0.1:*".into()]),
    );
    let (result, _) = run_observed(&rt, &cfg, Some(&home)).await;
    let a = probe_of(&result.expect("the redirect is followed"));
    case.actual(format!("completed; probe {a}"));
    assert!(a["result"].as_str().unwrap().contains("landed"), "{a}");
    assert!(first.requests()[0].contains(TOKEN));
    let followed = landing.requests();
    assert_eq!(followed.len(), 1);
    assert!(
        !followed[0].to_ascii_lowercase().contains("authorization") && !followed[0].contains(TOKEN),
        "{followed:?}"
    );
    assert_host_healthy(&rt).await;
}

/// Runs `http-get` against a server answering `response`, with `call_bytes = 1 MiB`.
async fn http_limited(case: &mut Case, options: &str, body: usize) -> (String, usize) {
    let rt = runtime();
    let ws = Workspace::new();
    let server = TestServer::start_or_hang(move |_| http_ok(&"b".repeat(body)));
    let cfg = suite_config(
        &ws,
        "",
        &format!(
            "mode = \"http-get\"\nbase = \"http://127.0.0.1:{}/\"\n{options}",
            server.port
        ),
        &format!(
            "{}\n[limits]\ncall_bytes = 1048576\nasset_kb = 512\n",
            with_network(&[format!("127.0.0.1:{}", server.port)])
        ),
    );
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let err = result.expect_err("the call must be refused");
    case.failed(&err);
    assert_eq!(err.kind(), "plugin-error", "{err}");
    assert!(err.to_string().contains("plugin failed (limit)"), "{err}");
    assert_nothing_published(&ws);
    assert_host_healthy(&rt).await;
    (err.to_string(), server.requests().len())
}

#[tokio::test]
async fn an_http_response_beyond_the_call_size_limit_is_refused() {
    let mut case = Case::new(
        "an_http_response_beyond_the_call_size_limit_is_refused",
        file!(),
        "asks an allowed server for a 4 MiB response with limits.call_bytes = 1 MiB (to make the host buffer it)",
        "plugin-error (limit): response body exceeds the limit of 1048576 bytes; the host stops reading",
    );
    let (message, sent) = http_limited(&mut case, "", 4 << 20).await;
    assert!(
        message.contains("response body exceeds the") && message.contains("1048576 bytes"),
        "{message}"
    );
    assert_eq!(sent, 1);
}

#[tokio::test]
async fn an_http_request_body_beyond_the_call_size_limit_is_refused() {
    let mut case = Case::new(
        "an_http_request_body_beyond_the_call_size_limit_is_refused",
        file!(),
        "sends a 2 MiB request body with limits.call_bytes = 1 MiB",
        "plugin-error (limit): request body exceeds the call limit; nothing is sent",
    );
    let (message, sent) = http_limited(&mut case, "body_bytes = 2097152", 2).await;
    assert!(
        message.contains("request body of 2097152 bytes exceeds the call limit"),
        "{message}"
    );
    assert_eq!(sent, 0, "nothing was sent");
}

// ---------------------------------------------------------------------------------------------
// Credential handles

#[tokio::test]
async fn a_credential_for_an_unbound_slot_is_denied() {
    let mut case = Case::new(
        "a_credential_for_an_unbound_slot_is_denied",
        file!(),
        "credentials.get(\"admin\") when the workflow binds only `source`",
        "plugin-error (denied): no credential is bound to slot `admin`",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let guid = home.add_password("reader", "Hostile-Slot-Pw-9", &["127.0.0.1:1"]);
    let cfg = suite_config(
        &ws,
        &format!("credential = \"{guid}\""),
        "mode = \"other-slot\"\nslot = \"admin\"",
        "",
    );
    let (result, _) = run_observed(&rt, &cfg, Some(&home)).await;
    let err = result.expect_err("the slot must be denied");
    case.failed(&err);
    assert_eq!(err.kind(), "plugin-error", "{err}");
    assert!(
        err.to_string()
            .contains("no credential is bound to slot `admin`"),
        "{err}"
    );
    assert_nothing_published(&ws);
    assert_secret_never_read(&home, &guid);
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn a_credential_handle_used_for_another_destination_is_denied() {
    let mut case = Case::new(
        "a_credential_handle_used_for_another_destination_is_denied",
        file!(),
        "http.open with the `source` handle to an allowed origin the credential is not bound to",
        "plugin-error (denied): credential is not bound to that address; no secret resolved; nothing sent",
    );
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let own = TestServer::start_or_hang(|_| http_ok("own"));
    let other = TestServer::start_or_hang(|_| http_ok("other"));
    let guid = token_credential(&home, &[format!("127.0.0.1:{}", own.port)]);
    let err = http_denied(
        &mut case,
        &format!(
            "base = \"http://127.0.0.1:{}/\"\ncredential = true",
            other.port
        ),
        &format!("credential = \"{guid}\"\nauth = {{ allow_cleartext = true }}"),
        &["127.0.0.1:*".into()],
        &home,
    )
    .await;
    assert!(
        err.to_string().contains(&format!(
            "credential {guid} is not bound to 127.0.0.1:{}",
            other.port
        )),
        "{err}"
    );
    assert!(other.requests().is_empty() && own.requests().is_empty());
    assert_secret_never_read(&home, &guid);
}

async fn trap_case(case: &mut Case, options: &str, database: bool) {
    let rt = runtime();
    let ws = Workspace::new();
    empty_db(&ws);
    let source = if database {
        "database = \"db.sqlite\""
    } else {
        ""
    };
    let cfg = suite_config(&ws, source, options, "");
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let err = result.expect_err("a forged handle must trap");
    case.failed(&err);
    assert_eq!(err.kind(), "plugin-crashed", "{err}");
    assert!(err.to_string().contains("unknown handle index"), "{err}");
    assert_nothing_published(&ws);
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn a_forged_connection_handle_traps() {
    let mut case = Case::new(
        "a_forged_connection_handle_traps",
        file!(),
        "calls connection.query on a made-up handle index",
        "plugin-crashed: unknown handle index (the component's handle table refuses it)",
    );
    trap_case(&mut case, "mode = \"forge-connection\"", false).await;
}

#[tokio::test]
async fn a_forged_http_client_handle_traps() {
    let mut case = Case::new(
        "a_forged_http_client_handle_traps",
        file!(),
        "calls client.send on a made-up handle index",
        "plugin-crashed: unknown handle index",
    );
    trap_case(&mut case, "mode = \"forge-client\"", false).await;
}

#[tokio::test]
async fn a_connection_handle_used_after_drop_traps() {
    let mut case = Case::new(
        "a_connection_handle_used_after_drop_traps",
        file!(),
        "opens a SQLite connection, drops it, and queries through the stale index",
        "plugin-crashed: unknown handle index",
    );
    trap_case(
        &mut case,
        "mode = \"connection-after-drop\"\ndatabase = \"db.sqlite\"",
        true,
    )
    .await;
}

#[tokio::test]
async fn a_flood_of_credential_handles_stays_bounded() {
    let mut case = Case::new(
        "a_flood_of_credential_handles_stays_bounded",
        file!(),
        "calls credentials.get(\"source\") a million times and never drops a handle",
        "plugin-error (limit) at the 257th handle, naming limits.handles; host memory stays under the bound; no secret resolved",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let guid = home.add_password("reader", "Hostile-Flood-Pw-3", &["127.0.0.1:1"]);
    let cfg = suite_config(
        &ws,
        &format!("credential = \"{guid}\""),
        "mode = \"handle-flood\"\ncount = 1000000",
        "[limits]\ndeadline_s = 30\n",
    );
    let before = hostile_report::peak_rss_mb();
    let (result, _) = run_observed(&rt, &cfg, Some(&home)).await;
    let after = hostile_report::peak_rss_mb();
    match &result {
        Ok(r) => case.actual(format!(
            "completed; probe {}; peak RSS {before} -> {after} MiB",
            read_jsonl(&r.output_dir, "database")[0]["attributes"]["extra"]
        )),
        Err(e) => case.actual(format!(
            "{}: {e}; peak RSS {before} -> {after} MiB",
            e.kind()
        )),
    }
    let err = result.expect_err("the handles are bounded");
    assert_eq!(err.kind(), "plugin-error", "{err}");
    assert!(err.to_string().contains("limits.handles"), "{err}");
    assert!(after < hostile_report::PEAK_RSS_BOUND_MB);
    assert_nothing_published(&ws);
    assert_secret_never_read(&home, &guid);
    assert_host_healthy(&rt).await;
}

// ---------------------------------------------------------------------------------------------
// SQL result sizes

#[tokio::test]
async fn an_enormous_row_batch_request_is_capped() {
    let mut case = Case::new(
        "an_enormous_row_batch_request_is_capped",
        file!(),
        "asks rows.next-batch for u32::MAX rows of a 300,000-row result",
        "the run completes; no batch holds more than 10,000 rows; every row arrives",
    );
    let rt = runtime();
    let ws = Workspace::new();
    empty_db(&ws);
    let cfg = suite_config(
        &ws,
        "database = \"db.sqlite\"",
        "mode = \"sql-huge-batch\"\ndatabase = \"db.sqlite\"\nsql = \"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 300000) SELECT x, hex(randomblob(16)) FROM c\"",
        "",
    );
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let a = probe_of(&result.expect("batches are capped, not fatal"));
    case.actual(format!("completed; probe {a}"));
    assert_eq!(a["rows"], 300000, "{a}");
    assert!(a["largest_batch"].as_u64().unwrap() <= 10_000, "{a}");
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn hoarding_query_results_keeps_host_memory_bounded() {
    let mut case = Case::new(
        "hoarding_query_results_keeps_host_memory_bounded",
        file!(),
        "runs a query with ~48 MiB of result 40 times and keeps every rows handle alive (host memory, not plugin memory)",
        "host-memory-limit: the results held open would pass limits.host_memory_mb (256 MiB); the run fails; host memory bounded",
    );
    let rt = runtime();
    let ws = Workspace::new();
    empty_db(&ws);
    let cfg = suite_config(
        &ws,
        "database = \"db.sqlite\"",
        "mode = \"sql-hoard\"\ndatabase = \"db.sqlite\"\ncount = 40\nsql = \"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 1000) SELECT randomblob(50000) FROM c\"",
        "",
    );
    let before = hostile_report::peak_rss_mb();
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let after = hostile_report::peak_rss_mb();
    match &result {
        Ok(_) => case.actual(format!("completed; peak RSS {before} -> {after} MiB")),
        Err(e) => case.actual(format!(
            "{}: {e}; peak RSS {before} -> {after} MiB",
            e.kind()
        )),
    }
    let err = result.expect_err("hoarding must hit a limit");
    assert_eq!(err.kind(), "host-memory-limit", "{err}");
    assert!(err.to_string().contains("limits.host_memory_mb"), "{err}");
    assert_host_healthy(&rt).await;
}

// ---------------------------------------------------------------------------------------------
// stdio, logs, progress

async fn stdio_flood(case: &mut Case, mode: &str) {
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(
        &ws,
        "",
        &format!("mode = \"{mode}\"\nbytes = 268435456"),
        "[limits]\nstdio_kb = 64\n",
    );
    let (result, observed) = run_observed(&rt, &cfg, None).await;
    let report = result.expect("a full pipe is the plugin's problem, not the host's");
    let a = probe_of(&report);
    case.actual(format!("completed; probe {a}"));
    assert!(a["written"].as_u64().unwrap() <= 64 * 1024, "{a}");
    assert!(a["error"].is_string(), "the plugin's write failed: {a}");
    let shown: usize = observed.lines().iter().map(String::len).sum();
    assert!(
        shown <= 200 * (2048 + 16),
        "{shown} bytes of stdio were logged"
    );
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn a_stdout_flood_is_capped() {
    let mut case = Case::new(
        "a_stdout_flood_is_capped",
        file!(),
        "writes 256 MiB to stdout with limits.stdio_kb = 64",
        "the run completes; writes fail (broken pipe) once 64 KiB are buffered; at most 200 cut lines reach the log",
    );
    stdio_flood(&mut case, "stdout-flood").await;
}

#[tokio::test]
async fn a_stderr_flood_is_capped() {
    let mut case = Case::new(
        "a_stderr_flood_is_capped",
        file!(),
        "writes 256 MiB to stderr with limits.stdio_kb = 64",
        "the run completes; writes fail (broken pipe) once 64 KiB are buffered; at most 200 cut lines reach the log",
    );
    stdio_flood(&mut case, "stderr-flood").await;
}

#[tokio::test]
async fn a_log_flood_is_capped_and_counted() {
    let mut case = Case::new(
        "a_log_flood_is_capped_and_counted",
        file!(),
        "writes 200,000 log lines with limits.log_lines = 100",
        "the run completes; 100 lines are shown, 199,900 counted as dropped",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(
        &ws,
        "",
        "mode = \"log-flood\"\ncount = 200000",
        "[limits]\nlog_lines = 100\n",
    );
    let (result, observed) = run_observed(&rt, &cfg, None).await;
    let report = result.expect("log lines past the cap are only counted");
    verify_run_dir(&report.output_dir);
    case.actual(format!(
        "completed; {} lines shown, {} dropped",
        observed.lines().len(),
        report.dropped_log_lines
    ));
    assert_eq!(observed.lines().len(), 100);
    assert_eq!(report.dropped_log_lines, 199_900);
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn giant_log_lines_are_cut() {
    let mut case = Case::new(
        "giant_log_lines_are_cut",
        file!(),
        "writes log lines of 8 MiB each",
        "the run completes; every line shown is cut to 2048 characters and marked [cut]",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(
        &ws,
        "",
        "mode = \"log-flood\"\ncount = 4\nline_bytes = 8388608",
        "",
    );
    let (result, observed) = run_observed(&rt, &cfg, None).await;
    verify_run_dir(&result.expect("long lines are cut").output_dir);
    let lines = observed.lines();
    case.actual(format!(
        "completed; {} lines, longest {} bytes",
        lines.len(),
        lines.iter().map(String::len).max().unwrap_or(0)
    ));
    assert_eq!(lines.len(), 4);
    assert!(lines
        .iter()
        .all(|l| l.len() <= 2048 + 6 && l.ends_with("[cut]")));
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn progress_spam_does_not_hurt_the_host() {
    let mut case = Case::new(
        "progress_spam_does_not_hurt_the_host",
        file!(),
        "reports progress one million times with a bogus total of u64::MAX",
        "the run completes; memory bounded",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(&ws, "", "mode = \"progress-spam\"\ncount = 1000000", "");
    let (result, observed) = run_observed(&rt, &cfg, None).await;
    verify_run_dir(&result.expect("progress is harmless").output_dir);
    case.actual(format!(
        "completed; {} progress reports forwarded",
        observed.progress_count()
    ));
    assert_eq!(observed.progress_count(), 1_000_000);
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn a_huge_error_message_is_cut_and_cleaned() {
    let mut case = Case::new(
        "a_huge_error_message_is_cut_and_cleaned",
        file!(),
        "returns an error of 1 MiB holding terminal escapes and a forged second log line",
        "plugin-error (source) whose message is cut to 2048 characters, without control characters",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(&ws, "", "mode = \"huge-error\"\nbytes = 1048576", "");
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let err = result.expect_err("the plugin's error fails the run");
    case.failed(&err);
    assert_eq!(err.kind(), "plugin-error", "{err}");
    let text = err.to_string();
    assert!(text.len() < 2048 + 100, "{} bytes", text.len());
    assert!(text.ends_with("[cut]"), "{text}");
    assert!(!text.chars().any(char::is_control), "no control characters");
    assert_nothing_published(&ws);
    assert_host_healthy(&rt).await;
}

// ---------------------------------------------------------------------------------------------
// Exfiltration of a secret the source reflected back

/// What the inbound filter puts where a source sent a secret of the run back.
const WITHHELD: &str = "[airlock:secret-withheld]";

/// A token credential whose server echoes the request head (with the host's `authorization`
/// header) as the body: the inbound filter withholds the token, so the plugin tries to get out
/// `via` only what it received.
async fn leak(
    case: &mut Case,
    via: &str,
) -> (
    Result<airlock::run::RunReport, airlock::run::RunError>,
    Arc<hostile_report::Observed>,
    Workspace,
) {
    leak_with(case, via, "").await
}

async fn leak_with(
    case: &mut Case,
    via: &str,
    options: &str,
) -> (
    Result<airlock::run::RunReport, airlock::run::RunError>,
    Arc<hostile_report::Observed>,
    Workspace,
) {
    let rt = runtime();
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let echo = TestServer::start_or_hang(http_ok);
    let guid = token_credential(&home, &[format!("127.0.0.1:{}", echo.port)]);
    let cfg = suite_config(
        &ws,
        &format!("credential = \"{guid}\"\nauth = {{ allow_cleartext = true }}"),
        &format!(
            "mode = \"leak\"\nvia = \"{via}\"\nbase = \"http://127.0.0.1:{}/\"\ncredential = true\n{options}",
            echo.port
        ),
        &with_network(&[format!("127.0.0.1:{}", echo.port)]),
    );
    let (result, observed) = run_observed(&rt, &cfg, Some(&home)).await;
    assert!(
        echo.requests()[0].contains(TOKEN),
        "the source did see the token (the premise of the case)"
    );
    match &result {
        Ok(_) => case.actual("completed"),
        Err(e) => case.failed(e),
    }
    for line in observed.lines() {
        assert!(!line.contains(TOKEN), "log line leaks the token: {line}");
    }
    let audit = home.inner().state().audit_entries(None, None).unwrap();
    for e in &audit {
        assert!(!format!("{e:?}").contains(TOKEN), "{e:?}");
    }
    for r in home.inner().state().runs(10).unwrap() {
        assert!(!r.error.unwrap_or_default().contains(TOKEN));
    }
    // The canary sweep: no file the run left (output, spool, the home with its state store
    // and audit log) holds the token raw, base64 or hex.
    assert_canary_absent(&ws, TOKEN);
    let reflected: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "secret-reflected")
        .collect();
    assert_eq!(
        reflected.len(),
        1,
        "one secret-reflected audit entry: {audit:?}"
    );
    assert_eq!(
        reflected[0].destination.as_deref(),
        Some(format!("127.0.0.1:{}", echo.port).as_str())
    );
    assert_host_healthy(&rt).await;
    (result, observed, ws)
}

/// Asserts no file under the workspace (output, spool, home: state store, audit log, vault)
/// holds `secret` raw, base64 or hex.
fn assert_canary_absent(ws: &Workspace, secret: &str) {
    use base64::Engine;
    let forms = [
        secret.as_bytes().to_vec(),
        base64::engine::general_purpose::STANDARD
            .encode(secret)
            .into_bytes(),
        hex::encode(secret).into_bytes(),
    ];
    let files = airlock_tests::all_files(ws.path());
    assert!(
        files.iter().any(|f| f.ends_with("state.sqlite")),
        "the sweep covers the state store: {files:?}"
    );
    for f in files {
        let bytes = std::fs::read(&f).unwrap_or_default();
        for form in &forms {
            assert!(
                !bytes.windows(form.len()).any(|w| w == form.as_slice()),
                "{} holds the secret",
                f.display()
            );
        }
    }
}

/// Asserts a published run holds no transform of `secret` anywhere, and that the characters
/// the plugin emitted one per asset do not spell it either.
fn assert_no_transform_published(run_dir: &std::path::Path, secret: &str) {
    let forms = airlock_tests::secret_transforms(secret);
    for file in airlock_tests::all_files(run_dir) {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for form in &forms {
            assert!(
                !text.contains(form.as_str()),
                "{} holds a transform of the secret: {form}",
                file.display()
            );
        }
    }
    let tables = read_jsonl(run_dir, "table");
    let mut chars: Vec<(String, String)> = tables
        .iter()
        .filter(|t| t["path"][1] == "c")
        .map(|t| {
            (
                t["path"][2].as_str().unwrap().to_string(),
                t["attributes"]["comment"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    chars.sort();
    let spelled: String = chars.into_iter().map(|(_, c)| c).collect();
    assert!(
        !spelled.contains(secret),
        "one character per asset spells it"
    );
    assert!(
        spelled.starts_with(WITHHELD),
        "the plugin received only the marker: {spelled}"
    );
}

#[tokio::test]
async fn a_secret_written_to_the_log_is_redacted() {
    let mut case = Case::new(
        "a_secret_written_to_the_log_is_redacted",
        file!(),
        "logs a response body in which the source reflected the bearer token",
        "the run completes; the plugin received the marker in place of the token, and logged it",
    );
    let (result, observed, _ws) = leak(&mut case, "log").await;
    let report = result.expect("logging is allowed");
    verify_run_dir(&report.output_dir);
    assert_eq!(report.manifest.secrets_withheld, 1);
    let lines = observed.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("leaking") && l.contains(WITHHELD)),
        "{lines:?}"
    );
}

#[tokio::test]
async fn a_secret_in_an_error_string_is_redacted() {
    let mut case = Case::new(
        "a_secret_in_an_error_string_is_redacted",
        file!(),
        "returns the reflected token inside its error message",
        "plugin-error (source) quoting the marker it received in place of the token",
    );
    let (result, _, ws) = leak(&mut case, "error").await;
    let err = result.expect_err("the plugin's error fails the run");
    assert_eq!(err.kind(), "plugin-error", "{err}");
    assert!(err.to_string().contains(WITHHELD), "{err}");
    assert!(!err.to_string().contains(TOKEN));
    assert_nothing_published(&ws);
}

#[tokio::test]
async fn a_reflected_secret_never_reaches_the_plugin() {
    let mut case = Case::new(
        "a_reflected_secret_never_reaches_the_plugin",
        file!(),
        "emits the response in which the source reflected the bearer token as an attribute",
        "the inbound filter withholds the token: the asset carries the marker, counted in the manifest and audited",
    );
    let (result, _, _ws) = leak(&mut case, "emit").await;
    let report = result.expect("the plugin received no secret, so nothing stops the run");
    let attrs = probe_of(&report);
    assert!(
        attrs["result"].as_str().unwrap().contains(WITHHELD),
        "{attrs}"
    );
    assert_eq!(report.manifest.secrets_withheld, 1);
}

#[tokio::test]
async fn a_reflected_secret_transformed_every_way_is_not_published() {
    let mut case = Case::new(
        "a_reflected_secret_transformed_every_way_is_not_published",
        file!(),
        "takes the bearer token an echoing source reflects and emits it reversed, rot13, base32, \
         case-swapped, %XX-encoded, split over two fields and two assets, one character per asset",
        "the plugin received the marker, not the token: no form or piece of the token is published",
    );
    let (result, _, _ws) = leak(&mut case, "transforms").await;
    let report = result.expect("the run completes");
    verify_run_dir(&report.output_dir);
    assert_no_transform_published(&report.output_dir, TOKEN);
    assert!(report.manifest.secrets_withheld >= 1);
    case.actual(format!(
        "completed; {} reflected occurrences withheld, no transform published",
        report.manifest.secrets_withheld
    ));
}

#[tokio::test]
async fn a_secret_split_across_streamed_reads_is_withheld() {
    let mut case = Case::new(
        "a_secret_split_across_streamed_reads_is_withheld",
        file!(),
        "streams the echoing response in 7-byte reads, so the reflected token crosses reads, and emits transforms of it",
        "the filter holds back a tail between reads: the token is withheld whole; nothing of it published",
    );
    let (result, _, _ws) = leak_with(&mut case, "transforms", "stream = true\npiece = 7").await;
    let report = result.expect("the run completes");
    assert_no_transform_published(&report.output_dir, TOKEN);
    assert!(report.manifest.secrets_withheld >= 1);
    case.actual(format!(
        "completed; {} withheld in the streamed body",
        report.manifest.secrets_withheld
    ));
}

#[tokio::test]
async fn a_reflected_secret_fails_the_run_when_the_workflow_says_so() {
    let mut case = Case::new(
        "a_reflected_secret_fails_the_run_when_the_workflow_says_so",
        file!(),
        "emits what an echoing source sent, under filters.on_reflected_secret = \"fail\"",
        "secret-detected: the call fails, the run fails, nothing published",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let echo = TestServer::start_or_hang(http_ok);
    let guid = token_credential(&home, &[format!("127.0.0.1:{}", echo.port)]);
    let cfg = suite_config(
        &ws,
        &format!("credential = \"{guid}\"\nauth = {{ allow_cleartext = true }}"),
        &format!(
            "mode = \"leak\"\nvia = \"emit\"\nbase = \"http://127.0.0.1:{}/\"\ncredential = true",
            echo.port
        ),
        &format!(
            "{}\n[filters]\non_reflected_secret = \"fail\"",
            with_network(&[format!("127.0.0.1:{}", echo.port)])
        ),
    );
    let (result, _) = run_observed(&rt, &cfg, Some(&home)).await;
    let err = result.expect_err("the reflected secret fails the run");
    case.failed(&err);
    assert_eq!(err.kind(), "secret-detected", "{err}");
    assert!(err.to_string().contains("on_reflected_secret"), "{err}");
    assert!(!err.to_string().contains(TOKEN));
    assert_nothing_published(&ws);
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn a_secret_in_a_panic_message_is_redacted() {
    let mut case = Case::new(
        "a_secret_in_a_panic_message_is_redacted",
        file!(),
        "panics with the reflected token in the message (stderr is quoted in the error)",
        "plugin-crashed; the quoted stderr shows the marker the plugin received in place of the token",
    );
    let (result, _, ws) = leak(&mut case, "panic").await;
    let err = result.expect_err("a panic fails the run");
    assert_eq!(err.kind(), "plugin-crashed", "{err}");
    assert!(err.to_string().contains(WITHHELD), "{err}");
    assert!(!err.to_string().contains(TOKEN));
    assert_nothing_published(&ws);
}

#[tokio::test]
async fn a_secret_written_to_stderr_is_redacted() {
    let mut case = Case::new(
        "a_secret_written_to_stderr_is_redacted",
        file!(),
        "prints the reflected token to stderr, then fails",
        "plugin-error; the stderr line in the log shows the marker the plugin received in place of the token",
    );
    let (result, observed, ws) = leak(&mut case, "stderr").await;
    let err = result.expect_err("the plugin fails");
    assert_eq!(err.kind(), "plugin-error", "{err}");
    let lines = observed.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("[stderr] leaking") && l.contains(WITHHELD)),
        "{lines:?}"
    );
    assert_nothing_published(&ws);
}

// ---------------------------------------------------------------------------------------------
// Waiting past the deadline

#[tokio::test]
async fn a_plugin_sleeping_in_a_host_call_is_stopped_at_the_deadline() {
    let mut case = Case::new(
        "a_plugin_sleeping_in_a_host_call_is_stopped_at_the_deadline",
        file!(),
        "sleeps for an hour through the WASI clock (waiting in the host, where epochs do not interrupt)",
        "deadline-exceeded at limits.deadline_s = 2 plus a quarter second of grace",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let cfg = suite_config(
        &ws,
        "",
        "mode = \"sleep\"\nsecs = 3600",
        "[limits]\ndeadline_s = 2\n",
    );
    warm(&rt, "hostile-suite");
    let started = Instant::now();
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let took = started.elapsed();
    case.stopped_after(took);
    let err = result.expect_err("the sleeper must be stopped");
    case.failed(&err);
    assert_eq!(err.kind(), "deadline-exceeded", "{err}");
    assert!(took < Duration::from_secs(30), "never hangs: {took:?}");
    assert_nothing_published(&ws);
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn a_plugin_waiting_on_a_silent_server_is_stopped_at_the_deadline() {
    let mut case = Case::new(
        "a_plugin_waiting_on_a_silent_server_is_stopped_at_the_deadline",
        file!(),
        "sends an HTTP request to an allowed server that never answers (network timeout 60 s)",
        "deadline-exceeded at limits.deadline_s = 2 plus a quarter second of grace",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let silent = TestServer::start_or_hang(|_| None);
    let cfg = suite_config(
        &ws,
        "",
        &format!(
            "mode = \"http-get\"\nbase = \"http://127.0.0.1:{}/\"",
            silent.port
        ),
        &format!(
            "{}\n[limits]\ndeadline_s = 2\n",
            with_network(&[format!("127.0.0.1:{}", silent.port)])
        ),
    );
    warm(&rt, "hostile-suite");
    let started = Instant::now();
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let took = started.elapsed();
    case.stopped_after(took);
    let err = result.expect_err("the waiting plugin must be stopped");
    case.failed(&err);
    assert_eq!(err.kind(), "deadline-exceeded", "{err}");
    assert!(took < Duration::from_secs(30), "never hangs: {took:?}");
    assert_eq!(silent.requests().len(), 1, "the request did arrive");
    assert_nothing_published(&ws);
    assert_host_healthy(&rt).await;
}

// ---------------------------------------------------------------------------------------------
// Concurrency

async fn concurrent_with_good(case: &mut Case, options: &str, tail: &str, kind: &str) {
    let rt = runtime();
    let bad_ws = Workspace::new();
    let bad_cfg = suite_config(&bad_ws, "", options, tail);
    let good_ws = Workspace::new();
    airlock::demo::create_sample_database(&good_ws.path().join("shop.db")).unwrap();
    let good_cfg = good_ws.config_for(&plugin("sqlite"), "shop.db", "");
    warm(&rt, "hostile-suite");
    warm(&rt, "sqlite");
    let started = Instant::now();
    let ((bad, _), good) = bounded(async {
        tokio::join!(
            run_observed(&rt, &bad_cfg, None),
            airlock_tests::run(&rt, &good_cfg)
        )
    })
    .await;
    case.stopped_after(started.elapsed());
    let err = bad.expect_err("the hostile plugin fails");
    case.actual(format!(
        "hostile: {}: {err}; good: {}",
        err.kind(),
        if good.is_ok() { "published" } else { "FAILED" }
    ));
    assert_eq!(err.kind(), kind, "{err}");
    let good = good.expect("the well-behaved plugin finishes");
    let manifest = verify_run_dir(&good.output_dir);
    assert!(manifest["counts"]["table"]["kept"].as_u64().unwrap() > 0);
    assert!(bad_ws.out_entries().is_empty());
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn a_sleeping_plugin_beside_a_good_one_does_not_block_it() {
    let mut case = Case::new(
        "a_sleeping_plugin_beside_a_good_one_does_not_block_it",
        file!(),
        "runs concurrently with the SQLite connector in one runtime and sleeps in a host call",
        "the hostile run ends deadline-exceeded; the good run publishes a verified run",
    );
    concurrent_with_good(
        &mut case,
        "mode = \"sleep\"\nsecs = 3600",
        "[limits]\ndeadline_s = 3\n",
        "deadline-exceeded",
    )
    .await;
}

#[tokio::test]
async fn a_memory_bomb_beside_a_good_plugin_does_not_hurt_it() {
    let mut case = Case::new(
        "a_memory_bomb_beside_a_good_plugin_does_not_hurt_it",
        file!(),
        "runs concurrently with the SQLite connector in one runtime and allocates 1.5 GiB",
        "the hostile run ends memory-limit; the good run publishes a verified run",
    );
    concurrent_with_good(
        &mut case,
        "mode = \"big-alloc\"\nbytes = 1610612736",
        "[limits]\nmemory_mb = 64\n",
        "memory-limit",
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// SQLite files swapped while they are opened

/// Creates a SQLite file holding one table `table`.
fn db_with_table(path: &std::path::Path, table: &str) {
    rusqlite::Connection::open(path)
        .unwrap()
        .execute_batch(&format!("CREATE TABLE {table} (x INTEGER);"))
        .unwrap();
}

#[tokio::test]
async fn a_sqlite_file_swapped_for_a_link_while_opened_is_never_read_outside() {
    let mut case = Case::new(
        "a_sqlite_file_swapped_for_a_link_while_opened_is_never_read_outside",
        file!(),
        "opens allowed/db.sqlite and allowed/sub/db.sqlite 3,000 times while another process \
         keeps swapping each (the file for a symlink to a database outside allowed_dirs, the \
         directory for a symlink to the outside directory)",
        "no open reads the outside database: each is opened once by descriptor below the \
         allowed directory without following links and SQLite's own file is checked to be it; \
         opens that lose the race are refused",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let allowed = ws.path().join("allowed");
    let outside = ws.path().join("outside");
    std::fs::create_dir_all(allowed.join(".sub-real")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    db_with_table(&allowed.join(".db-real"), "inside_t");
    db_with_table(&allowed.join(".sub-real").join("db.sqlite"), "inside_t");
    db_with_table(&outside.join("db.sqlite"), "outside_t");
    std::os::unix::fs::symlink(outside.join("db.sqlite"), allowed.join(".db-link")).unwrap();
    std::os::unix::fs::symlink(&outside, allowed.join(".sub-link")).unwrap();
    std::fs::rename(allowed.join(".db-real"), allowed.join("db.sqlite")).unwrap();
    std::fs::rename(allowed.join(".sub-real"), allowed.join("sub")).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (stop, a) = (stop.clone(), allowed.clone());
        std::thread::spawn(move || {
            let swap = |x: &str, y: &str| {
                // Two renames: `x` takes the name, the other entry waits aside.
                let _ = std::fs::rename(a.join(y), a.join(format!("{y}.aside")));
                let _ = std::fs::rename(a.join(x), a.join(y));
            };
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                swap(".db-link", "db.sqlite");
                swap("sub.aside", "sub");
                swap(".sub-link", "sub");
                let _ = std::fs::rename(a.join("db.sqlite.aside"), a.join("db.sqlite.real"));
                swap("db.sqlite.real", "db.sqlite");
                let _ = std::fs::rename(a.join("db.sqlite.aside"), a.join(".db-link"));
                let _ = std::fs::rename(a.join("sub.aside"), a.join(".sub-link"));
                swaps += 1;
            }
            swaps
        })
    };
    let cfg = suite_config(
        &ws,
        "database = \"allowed/db.sqlite\"\nallowed_dirs = [\"allowed\"]",
        "mode = \"sqlite-reopen\"\ncount = 3000\naddresses = [\"allowed/db.sqlite\", \"allowed/sub/db.sqlite\"]",
        "[limits]\ndeadline_s = 120\n",
    );
    let (result, _) = run_observed(&rt, &cfg, None).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    let a = probe_of(&result.expect("the plugin reports what it read"));
    case.actual(format!("completed after {swaps} swap rounds; probe {a}"));
    assert!(a["seen"].get("outside_t").is_none(), "read outside: {a}");
    assert!(
        a["seen"]["inside_t"].as_u64().unwrap_or(0) > 0,
        "some opens read the allowed file, so the race ran: {a}"
    );
    assert!(swaps > 0);
    assert_host_healthy(&rt).await;
}

#[tokio::test]
async fn a_sqlite_hard_link_to_an_outside_file_is_refused() {
    let mut case = Case::new(
        "a_sqlite_hard_link_to_an_outside_file_is_refused",
        file!(),
        "opens allowed/db.sqlite, a hard link to a database outside allowed_dirs",
        "denied: a file with more than one hard link is not opened; nothing of it read",
    );
    let rt = runtime();
    let ws = Workspace::new();
    let allowed = ws.path().join("allowed");
    let outside = ws.path().join("outside");
    std::fs::create_dir_all(&allowed).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    db_with_table(&outside.join("secret.sqlite"), "outside_t");
    std::fs::hard_link(outside.join("secret.sqlite"), allowed.join("db.sqlite")).unwrap();
    let cfg = suite_config(
        &ws,
        "database = \"allowed/db.sqlite\"\nallowed_dirs = [\"allowed\"]",
        "mode = \"sqlite-reopen\"\ncount = 1\naddresses = [\"allowed/db.sqlite\"]",
        "",
    );
    let (result, _) = run_observed(&rt, &cfg, None).await;
    let a = probe_of(&result.expect("the plugin reports the refusal"));
    case.actual(format!("completed; probe {a}"));
    assert!(a["seen"].get("outside_t").is_none(), "{a}");
    let errors = a["errors"].to_string();
    assert!(errors.contains("denied") && errors.contains("hard"), "{a}");
    assert_host_healthy(&rt).await;
}
