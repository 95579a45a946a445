//! Shared by the hostile-plugin test binaries: the per-case record written to
//! `target/hostile-report/<case>.json` (read by `scripts/security-report` to build the table in
//! SECURITY.md), the host-health check, the memory bound and the "never hangs" bound.

#![allow(dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock::capabilities::log::LogLevel;
use airlock::config::LoadedConfig;
use airlock::run::{PluginDir, RunError, RunObserver, RunReport};
use airlock::runtime::Runtime;
use airlock_tests::{plugin, plugin_dir, run, verify_run_dir, workspace_root, Home, Workspace};

/// Peak resident memory the whole test process may reach, in MiB. Loose on purpose: the
/// cases of one binary run in parallel threads, each plugin may use its own `limits.memory_mb`
/// (64–256 MiB here) plus the host's buffers, and wasmtime reserves address space it does not
/// touch (not counted in RSS). A host that let a plugin allocate without bound would pass it.
pub const PEAK_RSS_BOUND_MB: u64 = 3072;

/// No run of this suite may take longer than this, whatever the plugin does.
pub const NEVER_HANGS: Duration = Duration::from_secs(120);

/// One hostile case: what it attacks, what the host must do, what it did. Written to
/// `target/hostile-report/<name>.json` when dropped — `"passed": false` when the test panicked.
pub struct Case {
    name: &'static str,
    file: &'static str,
    attack: &'static str,
    expected: &'static str,
    actual: String,
    started: Instant,
    stopped_after_ms: Option<u128>,
}

impl Case {
    /// Starts a case; `file` is the test file (`file!()`).
    pub fn new(
        name: &'static str,
        file: &'static str,
        attack: &'static str,
        expected: &'static str,
    ) -> Self {
        Case {
            name,
            file,
            attack,
            expected,
            actual: "(not reached)".into(),
            started: Instant::now(),
            stopped_after_ms: None,
        }
    }

    /// Records what the host actually did (error kind and message, or the run's result).
    pub fn actual(&mut self, text: impl Into<String>) {
        let text: String = text.into();
        self.actual = text.chars().take(400).collect();
    }

    /// Records the actual outcome of a failed run as `<kind>: <message>`.
    pub fn failed(&mut self, err: &RunError) {
        self.actual(format!("{}: {err}", err.kind()));
    }

    /// Records how long the host took to stop a stuck plugin.
    pub fn stopped_after(&mut self, d: Duration) {
        self.stopped_after_ms = Some(d.as_millis());
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        let dir = workspace_root().join("target").join("hostile-report");
        let record = serde_json::json!({
            "name": self.name,
            "file": self.file.rsplit('/').next().unwrap_or(self.file),
            "attack": self.attack,
            "expected": self.expected,
            "actual": self.actual,
            "passed": !std::thread::panicking(),
            "stopped_after_ms": self.stopped_after_ms,
            "elapsed_ms": self.started.elapsed().as_millis() as u64,
            "peak_rss_mb": peak_rss_mb(),
        });
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(
            dir.join(format!("{}.json", self.name)),
            serde_json::to_vec_pretty(&record).unwrap_or_default(),
        );
    }
}

/// The process's peak resident set size (VmHWM), in MiB.
pub fn peak_rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}

/// Asserts the process's peak memory stayed under [`PEAK_RSS_BOUND_MB`].
pub fn assert_memory_bounded() {
    let peak = peak_rss_mb();
    assert!(
        peak < PEAK_RSS_BOUND_MB,
        "peak RSS {peak} MiB exceeds the bound of {PEAK_RSS_BOUND_MB} MiB"
    );
}

/// Runs the real SQLite plugin in `rt` and checks it publishes a verified run: the host is
/// still healthy after the hostile case. Also checks the memory bound.
pub async fn assert_host_healthy(rt: &Runtime) {
    let ws = Workspace::new();
    airlock::demo::create_sample_database(&ws.path().join("shop.db")).unwrap();
    let cfg = ws.config_for(&plugin("sqlite"), "shop.db", "");
    let report = bounded(run(rt, &cfg))
        .await
        .expect("a normal run still succeeds");
    verify_run_dir(&report.output_dir);
    assert_memory_bounded();
}

/// Awaits `fut`, failing the test when it takes longer than [`NEVER_HANGS`].
pub async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(NEVER_HANGS, fut)
        .await
        .unwrap_or_else(|_| panic!("the host hung for more than {NEVER_HANGS:?}"))
}

/// An observer that keeps every plugin log line and counts progress reports.
#[derive(Default)]
pub struct Observed {
    pub lines: Mutex<Vec<String>>,
    pub progress: AtomicU64,
}

impl Observed {
    /// The log lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Progress reports so far.
    pub fn progress_count(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }
}

impl RunObserver for Observed {
    fn progress(&self, _done: u64, _total: Option<u64>) {
        self.progress.fetch_add(1, Ordering::Relaxed);
    }

    fn plugin_log(&self, _level: LogLevel, message: &str) {
        self.lines.lock().unwrap().push(message.to_string());
    }
}

/// Runs `cfg` (credentials from `home`) with an [`Observed`] observer, bounded by
/// [`NEVER_HANGS`].
pub async fn run_observed(
    rt: &Runtime,
    cfg: &LoadedConfig,
    home: Option<&Home>,
) -> (Result<RunReport, RunError>, Arc<Observed>) {
    let observed = Arc::new(Observed::default());
    let result = bounded(airlock::run::run_workflow_in(
        rt,
        cfg,
        &PluginDir::single(plugin_dir()),
        observed.clone(),
        home.map(Home::inner),
    ))
    .await;
    (result, observed)
}

/// A config running the multi-mode hostile plugin: `options` go into `[source.options]`,
/// `source` into `[source]`, `tail` after the sink (`[limits]`, `[filters]`, `[network]`).
pub fn suite_config(ws: &Workspace, source: &str, options: &str, tail: &str) -> LoadedConfig {
    ws.config(&format!(
        "[source]\nplugin = \"{}\"\n{source}\n\n[source.options]\n{options}\n\n[sink]\nkind = \"local\"\ndir = \"out\"\n\n{tail}\n",
        plugin("hostile-suite").display()
    ))
}

/// Loads (and so compiles and caches) a plugin before a timed case, so that the time measured
/// from the start of the run to the host stopping the plugin is not mostly compilation.
pub fn warm(rt: &Runtime, name: &str) {
    rt.load_plugin(&plugin(name)).expect("the plugin loads");
}
