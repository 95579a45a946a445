//! One run: load the plugin, instantiate it inside its limits, describe and extract, pass every
//! asset through the pipeline, and publish the output whole — or publish nothing.
//!
//! The phases live in [`phases`] (load, prepare, extract, publish); `airlock run` and the
//! Temporal worker's activity both enter through [`run_workflow_gated`] and its wrappers, so
//! there is one run and no second copy of one.

pub mod changes;
mod error;
pub mod log;
mod manifest;
mod phases;
mod plugin;
mod prepare;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::capabilities::log::LogLevel;
use crate::config::LoadedConfig;
use crate::pipeline::manifest::Manifest;
use crate::runtime::Runtime;

pub use error::RunError;
pub use plugin::{describe_file, list_plugins, resolve_plugin, PluginListing};

/// Phases of a run, reported to the observer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Loading,
    Extracting,
    Publishing,
}

/// Receives what happens during a run (the CLI draws a progress bar from it).
pub trait RunObserver: Send + Sync {
    /// A new phase started.
    fn phase(&self, _phase: Phase) {}
    /// The plugin reported progress.
    fn progress(&self, _done: u64, _total: Option<u64>) {}
    /// The log of a failed run was kept at `place` (a path, or a remote sink's URL).
    fn kept_log(&self, place: &str) {
        tracing::info!("the failed run's log: {place}");
    }
    /// The plugin wrote a (cleaned, capped) log line.
    fn plugin_log(&self, level: LogLevel, message: &str) {
        match level {
            LogLevel::Trace => tracing::trace!(target: "airlock::plugin", "{message}"),
            LogLevel::Debug => tracing::debug!(target: "airlock::plugin", "{message}"),
            LogLevel::Info => tracing::info!(target: "airlock::plugin", "{message}"),
            LogLevel::Warn => tracing::warn!(target: "airlock::plugin", "{message}"),
            LogLevel::Error => tracing::error!(target: "airlock::plugin", "{message}"),
        }
    }
}

/// Asks a run to stop (Ctrl-C, a cancelled Temporal workflow, the end of a worker's grace
/// period). A stopped run ends as [`RunError::Interrupted`] through the same failure path as
/// any other: it publishes nothing, keeps its log and is recorded as failed. Cheap to clone.
#[derive(Clone, Default)]
pub struct Stop {
    inner: Arc<StopInner>,
}

#[derive(Default)]
struct StopInner {
    reason: std::sync::OnceLock<String>,
    notify: tokio::sync::Notify,
}

impl Stop {
    /// A stop nobody has asked for yet.
    pub fn new() -> Self {
        Stop::default()
    }

    /// Asks the run to stop because of `reason` (the first reason given wins).
    pub fn stop(&self, reason: &str) {
        let _ = self.inner.reason.set(reason.to_string());
        self.inner.notify.notify_waiters();
    }

    /// Waits until [`Stop::stop`] is called; returns its reason.
    pub async fn stopped(&self) -> String {
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(reason) = self.inner.reason.get() {
                return reason.clone();
            }
            notified.await;
        }
    }
}

/// An observer that only forwards plugin log lines to `tracing`.
pub struct TracingObserver;

impl RunObserver for TracingObserver {}

/// Where to find plugins when a config names one without a path: directories searched in order.
#[derive(Debug, Clone)]
pub struct PluginDir(pub Vec<PathBuf>);

impl PluginDir {
    /// `$AIRLOCK_PLUGIN_DIR` when set; otherwise `$XDG_DATA_HOME/airlock/plugins` (or
    /// `~/.local/share/airlock/plugins`) followed by `plugins/` beside the binary's directory
    /// (`target/plugins` for a binary in `target/debug`, where ./scripts/build-plugins puts them).
    pub fn from_env() -> Self {
        if let Some(d) = std::env::var_os("AIRLOCK_PLUGIN_DIR") {
            return PluginDir(vec![PathBuf::from(d)]);
        }
        let mut dirs = Vec::new();
        let base = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
        if let Some(base) = base {
            dirs.push(base.join("airlock").join("plugins"));
        }
        if let Some(bin_dir) = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
        {
            if let Some(up) = bin_dir.parent() {
                dirs.push(up.join("plugins"));
            }
        }
        PluginDir(dirs)
    }

    /// A single directory.
    pub fn single(dir: PathBuf) -> Self {
        PluginDir(vec![dir])
    }
}

/// A finished, published run.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The published run directory.
    pub output_dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// Plugin log lines dropped after `limits.log_lines`.
    pub dropped_log_lines: u64,
    /// Statements the SQL guard checked and the time it took, in microseconds.
    pub sql_guard: (u64, u64),
    /// What the plugin used: its largest linear memory and its CPU time.
    pub plugin_usage: PluginUsage,
}

/// What a plugin used in a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PluginUsage {
    /// The largest linear memory it grew to, in bytes.
    pub peak_memory_bytes: u64,
    /// CPU time it computed (not waiting in host calls), in milliseconds (10 ms resolution).
    pub cpu_ms: u64,
}

/// What a run would publish, from `airlock run --dry-run` / `airlock preview`: the output was
/// spooled to a private temporary directory, read back and deleted; nothing was published.
#[derive(Debug, Clone)]
pub struct PreviewReport {
    /// The manifest the run would have published (status `preview`).
    pub manifest: Manifest,
    /// The first assets of each kind exactly as they would be written.
    pub samples: std::collections::BTreeMap<String, Vec<serde_json::Value>>,
    /// Plugin log lines dropped after `limits.log_lines`.
    pub dropped_log_lines: u64,
}

/// Whether a run publishes or only previews.
#[derive(Debug, Clone, Copy)]
pub(super) enum Mode {
    Publish,
    Preview { samples: usize },
}

pub(super) enum Finished {
    Published(RunReport),
    Preview(PreviewReport),
}

/// Runs a workflow configuration end to end, without credentials.
pub async fn run_workflow(
    runtime: &Runtime,
    cfg: &LoadedConfig,
    plugins: &PluginDir,
    observer: Arc<dyn RunObserver>,
) -> Result<RunReport, RunError> {
    run_workflow_in(runtime, cfg, plugins, observer, None).await
}

/// Decides, right before a run publishes, whether it may: a trigger retried on another
/// worker must publish at most once (the worker's gate claims the trigger in the shared state
/// store). Without a gate every run publishes.
pub trait PublishGate: Send + Sync {
    /// `Ok` to publish; an error (e.g. [`RunError::AlreadyPublished`]) discards this run's
    /// output, published nowhere.
    fn claim(&self, run_id: &str) -> Result<(), RunError>;
    /// Gives a claim back after the publish itself failed, so a retry may publish.
    fn release(&self, run_id: &str);
}

/// Runs a workflow configuration end to end; credentials are resolved from `home`.
pub async fn run_workflow_in(
    runtime: &Runtime,
    cfg: &LoadedConfig,
    plugins: &PluginDir,
    observer: Arc<dyn RunObserver>,
    home: Option<&crate::home::Home>,
) -> Result<RunReport, RunError> {
    run_workflow_gated(runtime, cfg, plugins, observer, home, None, Stop::new()).await
}

/// [`run_workflow_in`], asking `gate` right before publishing and ending early when `stop`
/// is asked to.
pub async fn run_workflow_gated(
    runtime: &Runtime,
    cfg: &LoadedConfig,
    plugins: &PluginDir,
    observer: Arc<dyn RunObserver>,
    home: Option<&crate::home::Home>,
    gate: Option<&dyn PublishGate>,
    stop: Stop,
) -> Result<RunReport, RunError> {
    match run_recorded(
        runtime,
        cfg,
        plugins,
        observer,
        home,
        How {
            mode: Mode::Publish,
            gate,
            stop,
        },
    )
    .await?
    {
        Finished::Published(r) => Ok(r),
        Finished::Preview(_) => Err(RunError::Runtime("a publishing run only previewed".into())),
    }
}

/// Extracts and filters exactly as a run does, and reports what would leave — counts, field
/// actions, bytes and the first `samples` assets of each kind — without publishing anything.
/// It ends early when `stop` is asked to.
pub async fn preview_workflow_in(
    runtime: &Runtime,
    cfg: &LoadedConfig,
    plugins: &PluginDir,
    observer: Arc<dyn RunObserver>,
    home: Option<&crate::home::Home>,
    samples: usize,
    stop: Stop,
) -> Result<PreviewReport, RunError> {
    match run_recorded(
        runtime,
        cfg,
        plugins,
        observer,
        home,
        How {
            mode: Mode::Preview { samples },
            gate: None,
            stop,
        },
    )
    .await?
    {
        Finished::Preview(r) => Ok(r),
        Finished::Published(_) => Err(RunError::Runtime("a preview published".into())),
    }
}

/// How a run goes: publishing or previewing, the gate it asks before publishing, and what
/// stops it early.
struct How<'a> {
    mode: Mode,
    gate: Option<&'a dyn PublishGate>,
    stop: Stop,
}

async fn run_recorded(
    runtime: &Runtime,
    cfg: &LoadedConfig,
    plugins: &PluginDir,
    observer: Arc<dyn RunObserver>,
    home: Option<&crate::home::Home>,
    how: How<'_>,
) -> Result<Finished, RunError> {
    let How { mode, gate, stop } = how;
    let run_id = uuid::Uuid::now_v7().to_string();
    if let Some(home) = home {
        if let Err(e) = home
            .state()
            .run_started(&run_id, cfg.workflow_id.as_deref())
        {
            tracing::warn!("cannot record run start: {e}");
        }
    }
    let ctx = phases::RunContext {
        runtime,
        cfg,
        home,
        observer,
        run_id: run_id.clone(),
        mode,
        started: std::time::Instant::now(),
        started_at: chrono::Utc::now(),
        log: log::RunLog::new(),
        scanner: Arc::new(crate::pipeline::scan::OutboundScanner::new()),
        stop,
    };
    ctx.log.event(
        "run-started",
        serde_json::json!({
            "run_id": run_id,
            "workflow_id": cfg.workflow_id,
            "workflow": cfg.config.name,
            "plugin": cfg.config.source.plugin,
            "mode": match mode { Mode::Publish => "publish", Mode::Preview { .. } => "preview" },
        }),
    );
    let result = phases::run_inner(&ctx, plugins, gate).await;
    if let Some(home) = home {
        let (status, output, error) = match &result {
            Ok(Finished::Published(r)) => {
                ("complete", Some(r.output_dir.display().to_string()), None)
            }
            Ok(Finished::Preview(_)) => ("preview", None, None),
            Err(e) => ("failed", None, Some(redacted(&e.to_string()))),
        };
        if let Err(e) =
            home.state()
                .run_finished(&run_id, status, output.as_deref(), error.as_deref())
        {
            tracing::warn!("cannot record run end: {e}");
        }
    }
    result
}

/// Passes text through the process-wide redactor.
pub fn redacted(text: &str) -> String {
    crate::secrets::redact::Redactor::global()
        .redact(text)
        .into_owned()
}

/// Compile-time check: a run is a `Send` future, so the worker can run it in a spawned task
/// (a Temporal activity) and several at once.
#[allow(dead_code)]
fn assert_run_future_is_send(
    runtime: &'static Runtime,
    cfg: &'static LoadedConfig,
    plugins: &'static PluginDir,
    home: &'static crate::home::Home,
    gate: &'static (dyn PublishGate + 'static),
) {
    fn is_send<T: Send>(_: T) {}
    is_send(run_workflow_gated(
        runtime,
        cfg,
        plugins,
        Arc::new(TracingObserver),
        Some(home),
        Some(gate),
        Stop::new(),
    ));
}
