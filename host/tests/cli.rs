//! The `airlock` binary as a user runs it: the demo, exit codes, and clear errors that leave
//! no run directory behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn plugin_dir() -> PathBuf {
    let dir = workspace().join("target").join("plugins");
    assert!(
        dir.join("sqlite.wasm").is_file(),
        "run ./scripts/build-plugins before the tests"
    );
    dir
}

fn airlock(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(args)
        .env("AIRLOCK_PLUGIN_DIR", plugin_dir())
        .env(
            "AIRLOCK_CACHE_DIR",
            workspace().join("target").join("test-component-cache"),
        )
        .output()
        .expect("airlock runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The runs in a sink directory (a failed run's log sits beside them in `failed/`).
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "failed")
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn demo_publishes_a_verifiable_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let o = airlock(&["demo", "--dir", dir.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON summary");
    assert_eq!(summary["status"], "complete");
    let run_id = summary["run_id"].as_str().unwrap();
    let run_dir = dir.join("out").join(run_id);
    assert_eq!(Path::new(summary["output_dir"].as_str().unwrap()), run_dir);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("manifest.json")).unwrap()).unwrap();
    let files = manifest["files"].as_array().unwrap();
    assert!(files.len() >= 6, "{manifest}");
    for f in files {
        let bytes = std::fs::read(run_dir.join(f["path"].as_str().unwrap())).unwrap();
        let lines = bytes.iter().filter(|b| **b == b'\n').count() as u64;
        let kind = f["kind"].as_str().unwrap();
        assert_eq!(
            manifest["counts"][kind]["kept"].as_u64(),
            Some(lines),
            "{kind}"
        );
        assert_eq!(f["records"].as_u64(), Some(lines));
        use sha2::Digest;
        assert_eq!(
            f["sha256"].as_str().unwrap(),
            hex::encode(sha2::Sha256::digest(&bytes))
        );
    }
    assert!(manifest["counts"]["table"]["kept"].as_u64().unwrap() >= 20);
    // the demo's exclude rule drops the audit table
    assert_eq!(manifest["counts"]["table"]["dropped_filter"], 1);
}

#[test]
fn human_output_names_the_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let o = airlock(&["demo", "--dir", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("complete"), "{out}");
    assert!(
        out.contains(&format!("output: {}", dir.join("out").display())),
        "{out}"
    );
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn sample_db(dir: &Path) {
    rusqlite::Connection::open(dir.join("db.sqlite"))
        .unwrap()
        .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY);")
        .unwrap();
}

const SINK: &str = "[sink]\nkind = \"local\"\ndir = \"out\"\n";

#[test]
fn unknown_config_key_is_a_usage_error_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(
        tmp.path(),
        "w.toml",
        &format!(
            "[source]\nplugin = \"sqlite\"\ndatabase = \"db.sqlite\"\npasword = \"x\"\n\n{SINK}"
        ),
    );
    let o = airlock(&["run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("pasword") && e.contains("line 4"), "{e}");
    assert!(entries(tmp.path()).iter().all(|n| n != "out"));
}

#[test]
fn missing_config_file_is_a_usage_error() {
    let o = airlock(&["run", "--config", "/nonexistent/airlock.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/nonexistent/airlock.toml"));
}

#[test]
fn missing_database_fails_the_run_and_publishes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(
        tmp.path(),
        "w.toml",
        &format!("[source]\nplugin = \"sqlite\"\ndatabase = \"missing.db\"\n\n{SINK}"),
    );
    let o = airlock(&["run", "--config", cfg.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("missing.db") && e.contains("nothing was published"),
        "{e}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["status"], "failed");
    assert_eq!(summary["error"]["kind"], "plugin-error");
    assert!(entries(&tmp.path().join("out")).is_empty());
    // The failed run's log is kept beside the runs, and the CLI says where.
    let logs: Vec<_> = std::fs::read_dir(tmp.path().join("out/failed"))
        .expect("failed/ holds the run's log")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let log = std::fs::read_to_string(&logs[0]).unwrap();
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    // Beside the runs it says what failed, not the plugin's message (the home's copy has it).
    assert_eq!(last["event"], "run-failed", "{log}");
    assert_eq!(last["kind"], "plugin-error", "{log}");
    assert!(last.get("error").is_none(), "{log}");
    assert!(
        e.contains(&format!("the failed run's log: {}", logs[0].display())),
        "{e}"
    );
}

#[test]
fn database_outside_allowed_dirs_is_denied() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    sample_db(&other);
    let cfg = write(
        tmp.path(),
        "w.toml",
        &format!(
            "[source]\nplugin = \"sqlite\"\ndatabase = \"other/db.sqlite\"\nallowed_dirs = [\"data\"]\n\n{SINK}"
        ),
    );
    let o = airlock(&["run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("denied") && e.contains("outside the allowed directories"),
        "{e}"
    );
    assert!(entries(&tmp.path().join("out")).is_empty());
}

#[test]
fn a_file_that_is_not_a_component_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    sample_db(tmp.path());
    write(tmp.path(), "fake.wasm", "definitely not wasm");
    // a core module, not a component
    std::fs::write(tmp.path().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    for (plugin, expect) in [
        ("fake.wasm", "does not start with the WebAssembly magic"),
        ("core.wasm", "core WebAssembly module, not a component"),
    ] {
        let cfg = write(
            tmp.path(),
            "w.toml",
            &format!("[source]\nplugin = \"./{plugin}\"\ndatabase = \"db.sqlite\"\n\n{SINK}"),
        );
        let o = airlock(&["run", "--config", cfg.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{plugin}");
        let e = stderr(&o);
        assert!(e.contains(expect), "{plugin}: {e}");
        assert!(entries(&tmp.path().join("out")).is_empty());
    }
}

#[test]
fn a_component_for_another_wit_version_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    sample_db(tmp.path());
    let wasm = wat::parse_str(
        r#"(component
             (import "airlock:connector/log@0.9.0" (instance))
           )"#,
    )
    .unwrap();
    std::fs::write(tmp.path().join("future.wasm"), wasm).unwrap();
    let cfg = write(
        tmp.path(),
        "w.toml",
        &format!("[source]\nplugin = \"./future.wasm\"\ndatabase = \"db.sqlite\"\n\n{SINK}"),
    );
    let o = airlock(&["run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("airlock:connector@0.9.0") && e.contains("serves 0.2.0, 0.1.0"),
        "{e}"
    );
}

#[test]
fn unknown_plugin_name_says_where_it_looked() {
    let tmp = tempfile::tempdir().unwrap();
    sample_db(tmp.path());
    let cfg = write(
        tmp.path(),
        "w.toml",
        &format!("[source]\nplugin = \"nosuch\"\ndatabase = \"db.sqlite\"\n\n{SINK}"),
    );
    let o = airlock(&["run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("nosuch") && e.contains("build-plugins"), "{e}");
}

#[test]
fn plugins_list_shows_name_version_digest_and_wit_version() {
    let o = airlock(&["plugins", "list", "--json"]);
    let listings: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let sqlite = listings
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["file"].as_str().unwrap().ends_with("/sqlite.wasm"))
        .expect("sqlite listed");
    assert_eq!(sqlite["description"]["name"], "sqlite");
    assert_eq!(sqlite["wit_version"], "0.2.0");
    assert_eq!(sqlite["sha256"].as_str().unwrap().len(), 64);
    assert!(sqlite["description"]["capabilities"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("sql")));
    let text = airlock(&["plugins", "list"]);
    let out = String::from_utf8_lossy(&text.stdout);
    assert!(out.contains("sqlite") && out.contains("0.1.0"), "{out}");
}

#[test]
fn help_documents_exit_codes() {
    let o = airlock(&["--help"]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("Exit codes") && out.contains("usage or configuration error"),
        "{out}"
    );
    let o = airlock(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
}
