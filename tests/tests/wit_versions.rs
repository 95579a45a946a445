//! The host serves every frozen WIT version: a plugin built against `airlock:connector@0.1.0`
//! without the SDK still runs, next to SDK plugins built against 0.2.0.

use airlock_tests::{plugin, read_jsonl, run, runtime, verify_run_dir, Workspace};

#[tokio::test]
async fn a_plugin_built_against_wit_0_1_0_still_runs() {
    let rt = runtime();
    let loaded = rt.load_plugin(&plugin("legacy-v010")).expect("loads");
    assert_eq!(loaded.wit_version, "0.1.0");
    let ws = Workspace::new();
    let cfg = ws.config(&format!(
        "[source]\nplugin = \"{}\"\n[source.options]\ntables = 7\n\n[sink]\nkind = \"local\"\ndir = \"out\"\n",
        plugin("legacy-v010").display()
    ));
    let report = run(&rt, &cfg).await.expect("the 0.1.0 plugin runs");
    verify_run_dir(&report.output_dir);
    assert_eq!(report.manifest.plugin.wit_version, "0.1.0");
    let tables: Vec<String> = read_jsonl(&report.output_dir, "table")
        .iter()
        .map(|t| t["qualified_name"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = (0..7).map(|i| format!("legacy.main.t{i}")).collect();
    let mut sorted = tables.clone();
    sorted.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(sorted, want);
    assert_eq!(read_jsonl(&report.output_dir, "database").len(), 1);
    assert_eq!(read_jsonl(&report.output_dir, "schema").len(), 1);
}

#[tokio::test]
async fn sdk_plugins_are_built_against_wit_0_2_0() {
    let rt = runtime();
    let loaded = rt.load_plugin(&plugin("sqlite")).expect("loads");
    assert_eq!(loaded.wit_version, "0.2.0");
    let ws = Workspace::new();
    airlock::demo::create_sample_database(&ws.path().join("shop.db")).unwrap();
    let cfg = ws.config_for(&plugin("sqlite"), "shop.db", "");
    let report = run(&rt, &cfg).await.expect("runs");
    assert_eq!(report.manifest.plugin.wit_version, "0.2.0");
    verify_run_dir(&report.output_dir);
}
