//! The filter policy end to end with the real SQLite plugin: field rules and the per-kind cap
//! counted exactly in the manifest, case sensitivity per engine, preview (library and binary)
//! publishing nothing, `airlock filters explain`, and the pattern rules: `*` covering a dotted
//! name, patterns that can match nothing refused, unmatched patterns and names confusable with
//! an exclude listed in the manifest and the preview.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use airlock::run::{preview_workflow_in, PluginDir, Stop, TracingObserver};
use airlock_tests::{
    airlock_bin, plugin, plugin_dir, read_jsonl, run, run_in, runtime, verify_run_dir,
    workspace_root, Home, Workspace,
};
use serde_json::{json, Value};

const SCHEMA: &str = "
CREATE TABLE Customers (id INTEGER PRIMARY KEY, email TEXT DEFAULT 'ops@shop.example', note TEXT);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER REFERENCES Customers(id));
CREATE VIEW big_orders AS SELECT id FROM orders WHERE id > 100;
CREATE VIEW contact AS SELECT 'mail sales@shop.example' AS c;
";

fn workspace() -> Workspace {
    let ws = Workspace::new();
    let conn = rusqlite::Connection::open(ws.path().join("shop.db")).unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    ws
}

fn config(ws: &Workspace, filters: &str) -> airlock::config::LoadedConfig {
    ws.config_for(
        &plugin("sqlite"),
        "shop.db",
        &format!("[source.options]\nname = \"shop\"\n\n[filters]\n{filters}"),
    )
}

fn names(run_dir: &Path, kind: &str) -> Vec<String> {
    let mut v: Vec<String> = read_jsonl(run_dir, kind)
        .iter()
        .map(|a| a["qualified_name"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn field_rules(key_guid: &str) -> String {
    format!(
        r#"fields = [
  {{ field = "view_definition", action = "drop" }},
  {{ field = "ddl", action = "redact", pattern = "[\\w.]+@[\\w.]+" }},
  {{ field = "data_type", action = "mask", kinds = ["column"] }},
  {{ field = "default", action = "hash", key_credential = "{key_guid}" }},
  {{ field = "ddl", action = "truncate", max_chars = 30 }},
]
max_per_kind = {{ column = 5 }}
"#
    )
}

#[tokio::test]
async fn field_rules_and_caps_are_applied_and_counted_exactly() {
    let ws = workspace();
    let home = Home::new(ws.path());
    let key = "hmac-key-for-joins-5e1f";
    let guid = home.add_password("hmac", key, &["127.0.0.1:1"]);
    let cfg = config(&ws, &field_rules(&guid));
    let report = run_in(&runtime(), &cfg, &home).await.expect("run succeeds");
    let manifest = verify_run_dir(&report.output_dir);
    let dir = &report.output_dir;

    // views: the definition is gone
    for v in read_jsonl(dir, "view") {
        assert_eq!(v["attributes"], json!({}), "{v}");
    }
    // tables: e-mail addresses redacted, then cut to 30 characters
    let tables: Vec<Value> = read_jsonl(dir, "table");
    let ddl = |name: &str| {
        tables
            .iter()
            .find(|t| t["path"][2] == name)
            .unwrap()
            .get("attributes")
            .unwrap()["ddl"]
            .clone()
    };
    assert_eq!(ddl("Customers"), json!("CREATE TABLE Customers (id INT"));
    assert_eq!(ddl("orders"), json!("CREATE TABLE orders (id INTEGE"));
    // columns: 7 emitted, the first 5 kept, data types masked, the one default hashed
    let columns = read_jsonl(dir, "column");
    assert_eq!(columns.len(), 5);
    assert!(columns
        .iter()
        .all(|c| c["attributes"]["data_type"] == "[masked]"));
    let want_hash = format!(
        "hmac-sha256:{}",
        hex::encode(airlock::pipeline::fields::hmac_sha256(
            key.as_bytes(),
            b"'ops@shop.example'"
        ))
    );
    let email = columns
        .iter()
        .find(|c| c["qualified_name"] == "shop.main.Customers.email");
    let hashed_defaults = columns
        .iter()
        .filter(|c| c["attributes"]["default"].is_string())
        .count() as u64;
    if let Some(email) = email {
        assert_eq!(email["attributes"]["default"], json!(want_hash));
    }
    let counts = &manifest["counts"];
    assert_eq!(
        counts["view"],
        json!({"emitted": 2, "kept": 2, "dropped_filter": 0, "dropped_oversize": 0,
               "dropped_kind_limit": 0, "quarantined": 0, "dropped_invalid": 0, "unknown_keys_dropped": 0,
               "fields": {"view_definition": {"drop": 2}}})
    );
    assert_eq!(
        counts["table"],
        json!({"emitted": 2, "kept": 2, "dropped_filter": 0, "dropped_oversize": 0,
               "dropped_kind_limit": 0, "quarantined": 0, "dropped_invalid": 0, "unknown_keys_dropped": 0,
               "fields": {"ddl": {"redact": 1, "truncate": 2}}})
    );
    let mut want_column_fields = json!({"data_type": {"mask": 5}});
    if hashed_defaults > 0 {
        want_column_fields["default"] = json!({ "hash": hashed_defaults });
    }
    assert_eq!(
        counts["column"],
        json!({"emitted": 7, "kept": 5, "dropped_filter": 0, "dropped_oversize": 0,
               "dropped_kind_limit": 2, "quarantined": 0, "dropped_invalid": 0,
               "unknown_keys_dropped": 0, "fields": want_column_fields})
    );
    assert_eq!(manifest["totals"]["dropped_kind_limit"], 2);
    assert_eq!(
        manifest["totals"]["fields"]["ddl"],
        json!({"redact": 1, "truncate": 2})
    );
    assert_eq!(manifest["filter"]["case_sensitive"], false);
    assert_eq!(manifest["filter"]["fields"].as_array().unwrap().len(), 5);
    assert_eq!(manifest["filter"]["max_per_kind"], json!({"column": 5}));
    // neither the key nor an e-mail address left
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!text.contains(key));
        assert!(!text.contains("ops@shop.example"));
        assert!(!text.contains("sales@shop.example"));
    }
    // the key resolution is audited, without the key
    let mut audit = home
        .inner()
        .state()
        .audit_entries(None, Some(&guid))
        .unwrap();
    audit.retain(|e| e.action != "create");
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(
        (audit[0].action.as_str(), audit[0].outcome.as_str()),
        ("resolve", "ok")
    );
}

#[tokio::test]
async fn the_hash_rule_hashes_the_default_when_its_column_is_kept() {
    // The same rules without the cap: every column is kept, so the hash count is exact.
    let ws = workspace();
    let home = Home::new(ws.path());
    let key = "another-key-77aa";
    let guid = home.add_password("hmac", key, &["127.0.0.1:1"]);
    let rules = field_rules(&guid).replace("max_per_kind = { column = 5 }\n", "");
    let report = run_in(&runtime(), &config(&ws, &rules), &home)
        .await
        .expect("run succeeds");
    let manifest = verify_run_dir(&report.output_dir);
    assert_eq!(
        manifest["counts"]["column"]["fields"],
        json!({"data_type": {"mask": 7}, "default": {"hash": 1}})
    );
    let email = read_jsonl(&report.output_dir, "column")
        .into_iter()
        .find(|c| c["qualified_name"] == "shop.main.Customers.email")
        .unwrap();
    assert_eq!(
        email["attributes"]["default"],
        json!(format!(
            "hmac-sha256:{}",
            hex::encode(airlock::pipeline::fields::hmac_sha256(
                key.as_bytes(),
                b"'ops@shop.example'"
            ))
        ))
    );
}

#[tokio::test]
async fn sqlite_names_match_case_insensitively_unless_told_otherwise() {
    let ws = workspace();
    let rt = runtime();
    let filters = "include = [\"shop.main.customers\", \"re:shop\\\\.MAIN\\\\.ORDERS\"]\n";
    let report = run(&rt, &config(&ws, filters)).await.expect("run succeeds");
    let manifest = verify_run_dir(&report.output_dir);
    assert_eq!(
        names(&report.output_dir, "table"),
        vec!["shop.main.Customers", "shop.main.orders"]
    );
    assert_eq!(manifest["filter"]["case_sensitive"], false);

    let report = run(
        &rt,
        &config(&ws, &format!("{filters}case_sensitive = true\n")),
    )
    .await
    .expect("run succeeds");
    let manifest = verify_run_dir(&report.output_dir);
    assert!(names(&report.output_dir, "table").is_empty());
    assert_eq!(manifest["counts"]["table"]["dropped_filter"], 2);
    assert_eq!(manifest["filter"]["case_sensitive"], true);
}

#[tokio::test]
async fn preview_publishes_nothing_and_reports_what_a_run_would() {
    let ws = workspace();
    let rt = runtime();
    let cfg = config(
        &ws,
        "exclude = [\"shop.main.contact\"]\nfields = [{ field = \"ddl\", action = \"drop\" }]\n",
    );
    let preview = preview_workflow_in(
        &rt,
        &cfg,
        &PluginDir::single(plugin_dir()),
        Arc::new(TracingObserver),
        None,
        2,
        Stop::new(),
    )
    .await
    .expect("preview succeeds");
    assert!(!ws.out().exists(), "{:?}", ws.out_entries());
    assert_eq!(preview.manifest.status, "preview");
    let report = run(&rt, &cfg).await.expect("run succeeds");
    let manifest = verify_run_dir(&report.output_dir);
    assert_eq!(
        serde_json::to_value(&preview.manifest.counts).unwrap(),
        manifest["counts"]
    );
    assert_eq!(preview.manifest.counts["table"].fields["ddl"]["drop"], 2);
    assert_eq!(preview.manifest.counts["view"].dropped_filter, 1);
    // samples are the first lines of what the run wrote, exactly
    for (kind, samples) in &preview.samples {
        let written = read_jsonl(&report.output_dir, kind);
        assert_eq!(samples[..], written[..written.len().min(2)], "{kind}");
    }
    assert_eq!(preview.samples["column"].len(), 2);
    let bytes: Vec<(String, u64)> = preview
        .manifest
        .files
        .iter()
        .map(|f| (f.kind.clone(), f.bytes))
        .collect();
    let published: Vec<(String, u64)> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_string(),
                f["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(bytes, published);
}

fn airlock(ws: &Workspace, args: &[&str]) -> Output {
    Command::new(airlock_bin())
        .arg("--home")
        .arg(ws.path().join("cli-home"))
        .args(args)
        .env("AIRLOCK_PLUGIN_DIR", plugin_dir())
        .env(
            "AIRLOCK_CACHE_DIR",
            workspace_root().join("target/test-component-cache"),
        )
        .output()
        .expect("airlock runs")
}

#[test]
fn cli_dry_run_and_preview_print_counts_and_publish_nothing() {
    let ws = workspace();
    let cfg = config(
        &ws,
        "exclude = [\"shop.main.contact\"]\nfields = [{ field = \"view_definition\", action = \"mask\" }]\n",
    );
    let _ = cfg;
    let path = ws.path().join("airlock.toml");
    let path = path.to_str().unwrap();
    let o = airlock(&ws, &["run", "--dry-run", "--config", path, "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["status"], "preview");
    assert_eq!(v["published"], false);
    assert_eq!(
        v["counts"]["view"],
        json!({"emitted": 2, "kept": 1, "dropped_filter": 1, "dropped_oversize": 0,
               "dropped_kind_limit": 0, "quarantined": 0, "dropped_invalid": 0, "unknown_keys_dropped": 0,
               "fields": {"view_definition": {"mask": 1}}})
    );
    assert_eq!(v["counts"]["table"]["kept"], 2);
    assert_eq!(
        v["samples"]["view"],
        json!([{"kind": "view", "qualified_name": "shop.main.big_orders",
                "path": ["shop", "main", "big_orders"],
                "attributes": {"view_definition": "[masked]"}}])
    );
    let bytes: u64 = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(v["bytes"], bytes);
    assert!(!ws.out().exists());

    let o = airlock(&ws, &["preview", "--config", path, "--samples", "0"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("nothing was published"), "{text}");
    assert!(
        text.contains("field view.view_definition: mask x1"),
        "{text}"
    );
    let view_row = text
        .lines()
        .find(|l| l.trim_start().starts_with("view "))
        .unwrap_or_default();
    let cells: Vec<&str> = view_row.split_whitespace().collect();
    assert_eq!(cells[..7], ["view", "2", "1", "1", "0", "0", "0"], "{text}");
    assert!(!text.contains("sample "), "{text}");
    assert!(!ws.out().exists());
}

#[test]
fn cli_explains_which_rule_decides() {
    let ws = workspace();
    config(
        &ws,
        "include = [\"shop.main.*\"]\nexclude = [\"shop.main.tmp_*\", \"re:.*\\\\.secret\"]\nkinds = [\"table\", \"view\", \"database\", \"schema\"]\nfields = [{ field = \"view_definition\", action = \"drop\", kinds = [\"view\"] }]\n",
    );
    let path = ws.path().join("airlock.toml");
    let o = airlock(
        &ws,
        &[
            "filters",
            "explain",
            "--config",
            path.to_str().unwrap(),
            "shop.main.ORDERS",
            "shop.main.tmp_1",
            "shop.hr.people",
            "shop.main.secret",
            "shop",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(
        lines,
        vec![
            "shop.main.ORDERS: kept: included by `shop.main.*`",
            "  field rule: drop view_definition [kinds: view]",
            "shop.main.tmp_1: dropped: excluded by `shop.main.tmp_*`",
            "shop.hr.people: dropped: no include pattern matches",
            "shop.main.secret: dropped: excluded by `re:.*\\.secret`",
            "shop: kept: included by `shop.main.*`",
            "  field rule: drop view_definition [kinds: view]",
        ],
        "{text}"
    );
    assert!(text.starts_with("filters (digest sha256:"), "{text}");
    assert!(text
        .lines()
        .next()
        .unwrap()
        .ends_with("case-insensitive matching"));

    let o = airlock(
        &ws,
        &[
            "filters",
            "explain",
            "--config",
            path.to_str().unwrap(),
            "--kind",
            "column",
            "--json",
            "shop.main.orders.id",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["names"],
        json!([{"name": "shop.main.orders.id", "kind": "column",
                "decision": {"kept": false, "rule": "kind-not-allowed", "pattern": null},
                "fields": []}])
    );
}

/// A database whose names test the pattern rules: a table holding a dot, a look-alike of an
/// excluded table (Cyrillic `а`), and the table it looks like.
fn odd_workspace() -> Workspace {
    let ws = Workspace::new();
    let conn = rusqlite::Connection::open(ws.path().join("shop.db")).unwrap();
    conn.execute_batch(
        "CREATE TABLE \"odd.name\" (id INTEGER);
         CREATE TABLE orders (id INTEGER);
         CREATE TABLE audit (who TEXT);
         CREATE TABLE \"\u{0430}udit\" (who TEXT);",
    )
    .unwrap();
    ws
}

#[tokio::test]
async fn star_covers_a_dotted_name_and_unmatched_and_confusable_names_are_listed() {
    let ws = odd_workspace();
    let rt = runtime();
    let cfg = config(
        &ws,
        "exclude = [\"shop.main.odd*\", \"shop.main.audit\", \"shop.main.nosuch\", \"re:nowhere\"]\n",
    );
    let report = run(&rt, &cfg).await.expect("run succeeds");
    let manifest = verify_run_dir(&report.output_dir);
    // `odd*` covers `odd.name` (qualified `shop.main."odd.name"`) and its column
    assert_eq!(
        names(&report.output_dir, "table"),
        vec!["shop.main.orders", "shop.main.\u{0430}udit"]
    );
    assert!(names(&report.output_dir, "column")
        .iter()
        .all(|c| !c.contains("odd")));
    assert_eq!(manifest["counts"]["table"]["dropped_filter"], 2);
    assert_eq!(
        manifest["filter"]["unmatched_patterns"],
        json!([
            "filters.exclude: `shop.main.nosuch`",
            "filters.exclude: `re:nowhere`"
        ])
    );
    // the look-alike is kept, and flagged with its column
    assert_eq!(
        manifest["filter"]["confusable_with_exclude"],
        json!([
            {"kind": "table", "name": "shop.main.\u{0430}udit", "pattern": "shop.main.audit"},
            {"kind": "column", "name": "shop.main.\u{0430}udit.who", "pattern": "shop.main.audit"},
        ])
    );
    assert!(
        manifest["warnings"].as_array().unwrap().iter().any(|w| w
            .as_str()
            .unwrap()
            .contains("confusable with an exclude pattern")),
        "{manifest}"
    );

    // the preview says the same on the terminal
    let path = ws.path().join("airlock.toml");
    let o = airlock(
        &ws,
        &[
            "preview",
            "--config",
            path.to_str().unwrap(),
            "--samples",
            "0",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    for line in [
        "warning: filters.exclude: `shop.main.nosuch` matched no asset",
        "warning: filters.exclude: `re:nowhere` matched no asset",
        "warning: kept table shop.main.\u{0430}udit is confusable with filters.exclude `shop.main.audit`",
    ] {
        assert!(text.contains(line), "{line} not in:\n{text}");
    }
    assert!(
        !text.contains("`shop.main.odd*` matched no asset"),
        "{text}"
    );

    // and `filters explain` for the look-alike
    let o = airlock(
        &ws,
        &[
            "filters",
            "explain",
            "--config",
            path.to_str().unwrap(),
            "shop.main.\u{0430}udit",
            "shop.main.\"odd.name\"",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(
        lines[0],
        "shop.main.\u{0430}udit: kept: filters.include is empty, so everything is"
    );
    assert!(
        lines[1].starts_with("  warning: confusable with filters.exclude `shop.main.audit`"),
        "{text}"
    );
    assert_eq!(
        lines[2],
        "shop.main.\"odd.name\": dropped: excluded by `shop.main.odd*`"
    );
}

#[test]
fn patterns_that_can_match_no_name_fail_the_config_with_what_to_write() {
    let ws = workspace();
    for (key, pattern, needle) in [
        (
            "exclude",
            "[audit",
            "must be written as a quoted segment: `\"[audit\"`",
        ),
        (
            "include",
            "a/b",
            "must be written as a quoted segment: `\"a/b\"`",
        ),
        ("exclude", "shop.main.orders.id.x", "5 segments"),
    ] {
        let path = ws.path().join("airlock.toml");
        std::fs::write(
            &path,
            format!(
                "[source]\nplugin = \"{}\"\ndatabase = \"shop.db\"\n\n[sink]\nkind = \"local\"\ndir = \"out\"\n\n[filters]\n{key} = [\"{pattern}\"]\n",
                plugin("sqlite").display()
            ),
        )
        .unwrap();
        let Err(err) = airlock::config::LoadedConfig::load(&path) else {
            panic!("the config with `{pattern}` is refused");
        };
        let err = err.to_string();
        assert!(err.contains(&format!("filters.{key}")), "{err}");
        assert!(err.contains(&format!("pattern `{pattern}`")), "{err}");
        assert!(err.contains(needle), "{err}");
        // the CLI refuses it as a configuration error, before any plugin runs
        let o = airlock(&ws, &["run", "--config", path.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(stderr.contains(needle), "{stderr}");
        assert!(!ws.out().exists());
    }
}
