//! The local sink: `keep_runs = N` keeps the newest N published runs, and a run that is
//! stopped (Ctrl-C, a cancelled trigger) publishes nothing, keeps its log and is recorded as
//! failed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock::run::{run_workflow_gated, PluginDir, Stop, TracingObserver};
use airlock_tests::{
    airlock_command, plugin, plugin_dir, run, runtime, verify_run_dir, Home, Workspace,
};

/// A workspace whose config runs the hostile suite's `sleep` mode for five minutes.
fn sleeping_run(ws: &Workspace) -> airlock::config::LoadedConfig {
    ws.config(&format!(
        "[source]\nplugin = \"{}\"\ndatabase = \"none\"\n\n[source.options]\nmode = \"sleep\"\nsecs = 300\n\n\
         [sink]\nkind = \"local\"\ndir = \"out\"\n",
        plugin("hostile-suite").display()
    ))
}

/// What a stopped run leaves: no run and no staging in out/, one log in out/failed/ that ends
/// with run-failed of kind "interrupted", the home's copy of it, and the run recorded failed.
fn assert_interrupted(ws: &Workspace, home: &airlock::home::Home) {
    assert!(ws.out_entries().is_empty(), "{:?}", ws.out_entries());
    let failed = ws.failed_logs();
    assert_eq!(failed.len(), 1, "one log beside the runs");
    let last: serde_json::Value = serde_json::from_str(failed[0].lines().last().unwrap()).unwrap();
    assert_eq!(last["kind"], "interrupted", "{}", failed[0]);
    let kept = airlock_tests::all_files(&home.dir().join("logs"));
    assert_eq!(kept.len(), 1, "the home keeps the log: {kept:?}");
    let runs = home.state().runs(10).unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, "failed", "{runs:?}");
    assert!(
        runs[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("interrupted"),
        "{runs:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_run_publishes_nothing_and_keeps_its_log() {
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let cfg = sleeping_run(&ws);
    let rt = runtime();
    let stop = Stop::new();
    let stopper = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            stop.stop("the test stopped it");
        })
    };
    let started = Instant::now();
    let result = run_workflow_gated(
        &rt,
        &cfg,
        &PluginDir::single(plugin_dir()),
        Arc::new(TracingObserver),
        Some(home.inner()),
        None,
        stop,
    )
    .await;
    stopper.await.unwrap();
    let err = result.expect_err("a stopped run fails");
    assert_eq!(err.kind(), "interrupted", "{err}");
    assert_eq!(err.exit_code(), 130);
    assert!(err.to_string().contains("the test stopped it"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(240),
        "the run waited for the plugin's sleep to end"
    );
    assert_interrupted(&ws, home.inner());
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_a_run_which_then_keeps_its_log_and_exits_130() {
    let ws = Workspace::new();
    let _ = sleeping_run(&ws);
    drop(Home::new(ws.path()));
    let child = airlock_command(&ws)
        .arg("run")
        .arg("--config")
        .arg(ws.path().join("airlock.toml"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("airlock starts");
    // SIGINT once the plugin is running: its run is then recorded as started in the home.
    let home_dir = ws.path().join("airlock-home");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let running = airlock::home::Home::open(&home_dir)
            .ok()
            .and_then(|h| h.state().runs(1).ok())
            .is_some_and(|r| !r.is_empty());
        if running {
            break;
        }
        assert!(Instant::now() < deadline, "the run never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    let pid = child.id().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(stderr.contains("nothing was published"), "{stderr}");
    let home = airlock::home::Home::open(&home_dir).unwrap();
    assert_interrupted(&ws, &home);
}

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
