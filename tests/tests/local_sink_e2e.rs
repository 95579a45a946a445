//! The local sink's retention: `keep_runs = N` keeps the newest N published runs.

use airlock_tests::{plugin, run, runtime, verify_run_dir, Workspace};

#[tokio::test(flavor = "multi_thread")]
async fn keep_runs_removes_the_oldest_published_runs() {
    let ws = Workspace::new();
    rusqlite::Connection::open(ws.path().join("shop.db"))
        .unwrap()
        .execute_batch(airlock::demo::SHOP_SCHEMA)
        .unwrap();
    let cfg = ws.config(&format!(
        "[source]\nplugin = \"{}\"\ndatabase = \"shop.db\"\n\n[sink]\nkind = \"local\"\ndir = \"out\"\nkeep_runs = 2\n",
        plugin("sqlite").display()
    ));
    let mut ids = Vec::new();
    for _ in 0..3 {
        let report = run(&runtime(), &cfg).await.expect("run succeeds");
        ids.push(report.manifest.run_id);
    }
    let mut left = ws.out_entries();
    left.sort();
    assert_eq!(left, ids[1..].to_vec(), "the oldest run was removed");
    for id in &left {
        verify_run_dir(&ws.out().join(id));
    }

    let text = std::fs::read_to_string(ws.path().join("airlock.toml"))
        .unwrap()
        .replace("keep_runs = 2", "keep_runs = 0");
    std::fs::write(ws.path().join("airlock.toml"), text).unwrap();
    let err = airlock::config::LoadedConfig::load(&ws.path().join("airlock.toml")).unwrap_err();
    assert!(err.to_string().contains("keep_runs"), "{err}");
}
