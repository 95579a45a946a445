//! One run: load the plugin, instantiate it inside its limits, describe and extract, pass every
//! asset through the pipeline, and publish the output whole — or publish nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::capabilities::credentials::CredentialSlots;
use crate::capabilities::http::policy::NetworkPolicy;
use crate::capabilities::log::{clean_line, LogLevel, PluginLog};
use crate::capabilities::sql::login::SqlLogin;
use crate::capabilities::sql::SqlPolicy;
use crate::config::{ConfigError, LoadedConfig, SinkConfig};
use crate::pipeline::fields::HashKeys;
use crate::pipeline::filter::FilterPolicy;
use crate::pipeline::manifest::{FilterRef, Manifest, PluginRef, Timings, MANIFEST_FORMAT};
use crate::pipeline::scan::OutboundScanner;
use crate::pipeline::{Pipeline, PipelineError};
use crate::runtime::limits::{LimitExceeded, Limits};
use crate::runtime::state::{HostFailure, RunState};
use crate::runtime::{self, ExtractOutcome, LoadError, LoadedPlugin, PluginDescription, Runtime};
use crate::sinks::local::{LocalSink, StagedRun};
use crate::sinks::remote::{RemoteSink, RemoteSpool, SinkError};

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

/// An observer that only forwards plugin log lines to `tracing`.
pub struct TracingObserver;

impl RunObserver for TracingObserver {}

/// Why a run failed. Every variant means nothing was published.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The plugin could not be found or loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The plugin is not the one the workflow pinned or the operator approved.
    #[error(transparent)]
    PluginRefused(#[from] crate::plugins::PluginRefused),
    /// The plugin could not be found.
    #[error("plugin `{name}` not found: looked for {looked}; build plugins with ./scripts/build-plugins or set --plugin-dir / AIRLOCK_PLUGIN_DIR")]
    PluginNotFound { name: String, looked: String },
    /// A sandbox limit stopped the plugin.
    #[error("plugin stopped: {0}")]
    Limit(LimitExceeded),
    /// The plugin reported an error.
    #[error("plugin failed ({kind}): {message}")]
    PluginFailed { kind: String, message: String },
    /// The plugin trapped (a panic, an invalid memory access, ...).
    #[error("plugin crashed: {0}")]
    PluginCrashed(String),
    /// The plugin emitted malformed output.
    #[error("{0}")]
    InvalidOutput(String),
    /// The output could not be written.
    #[error("cannot write the output: {0}")]
    Output(String),
    /// The runtime could not start.
    #[error("runtime error: {0}")]
    Runtime(String),
    /// The workflow's credential cannot be used (revoked, unknown backend, ...).
    #[error("credential: {0}")]
    Credential(String),
    /// The outbound scan found a secret this run resolved in what would leave.
    #[error("{0}")]
    SecretDetected(String),
    /// A retried trigger was already published by another attempt: this run's output was
    /// discarded (the run named is the one that published).
    #[error("already published by run {0}; this attempt's output was discarded")]
    AlreadyPublished(String),
    /// The object-store upload did not finish; no manifest was uploaded.
    #[error("{0}")]
    Upload(String),
}

impl RunError {
    /// Exit code of the CLI: 2 for usage and configuration errors, 1 for failed runs.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Config(_)
            | RunError::Load(_)
            | RunError::PluginNotFound { .. }
            | RunError::PluginRefused(_) => 2,
            _ => 1,
        }
    }

    /// A stable machine-readable kind, used in `--json` output and tests.
    pub fn kind(&self) -> &'static str {
        match self {
            RunError::Config(_) => "config",
            RunError::Load(LoadError::WitVersion { .. }) => "wit-version",
            RunError::Load(_) => "plugin-load",
            RunError::PluginNotFound { .. } => "plugin-not-found",
            RunError::PluginRefused(_) => "plugin-refused",
            RunError::Limit(LimitExceeded::Deadline(_)) => "deadline-exceeded",
            RunError::Limit(LimitExceeded::Cpu(_)) => "cpu-exceeded",
            RunError::Limit(LimitExceeded::Memory { .. }) => "memory-limit",
            RunError::Limit(LimitExceeded::Table { .. }) => "table-limit",
            RunError::Limit(LimitExceeded::Output(_)) => "output-limit",
            RunError::Limit(LimitExceeded::CallSize(_)) => "call-size-limit",
            RunError::Limit(LimitExceeded::HostMemory(_)) => "host-memory-limit",
            RunError::Limit(LimitExceeded::Compile(_)) => "compile-limit",
            RunError::PluginFailed { .. } => "plugin-error",
            RunError::PluginCrashed(_) => "plugin-crashed",
            RunError::InvalidOutput(_) => "invalid-output",
            RunError::Output(_) => "output",
            RunError::Runtime(_) => "runtime",
            RunError::Credential(_) => "credential",
            RunError::SecretDetected(_) => "secret-detected",
            RunError::AlreadyPublished(_) => "already-published",
            RunError::Upload(_) => "upload",
        }
    }
}

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
enum Mode {
    Publish,
    Preview { samples: usize },
}

enum Finished {
    Published(RunReport),
    Preview(PreviewReport),
}

/// Where a run spools: the sink's staging directory, or a private temporary one (preview).
enum Staging {
    Sink(StagedRun),
    Spool(RemoteSpool),
    Temp(tempfile::TempDir),
}

impl Staging {
    fn dir(&self) -> &Path {
        match self {
            Staging::Sink(s) => s.dir(),
            Staging::Spool(s) => s.dir(),
            Staging::Temp(t) => t.path(),
        }
    }
}

/// Resolves `source.plugin`: a path when it ends in `.wasm` or contains a slash, otherwise
/// `<plugin dir>/<name>.wasm`.
pub fn resolve_plugin(
    spec: &str,
    base_dir: &Path,
    plugins: &PluginDir,
) -> Result<PathBuf, RunError> {
    let path = if spec.ends_with(".wasm") || spec.contains('/') {
        let p = Path::new(spec);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base_dir.join(p)
        }
    } else {
        let candidates: Vec<PathBuf> = plugins
            .0
            .iter()
            .map(|d| d.join(format!("{spec}.wasm")))
            .collect();
        return candidates
            .iter()
            .find(|p| p.is_file())
            .cloned()
            .ok_or_else(|| RunError::PluginNotFound {
                name: spec.to_string(),
                looked: candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
    };
    if !path.is_file() {
        return Err(RunError::PluginNotFound {
            name: spec.to_string(),
            looked: path.display().to_string(),
        });
    }
    Ok(path)
}

/// The SQL policy of a config: allowed SQLite directories default to the database's directory.
fn sql_policy(cfg: &LoadedConfig, limits: &Limits) -> Result<SqlPolicy, RunError> {
    let grants = crate::capabilities::sql::guard::DataGrants::new(
        cfg.config
            .source
            .sql
            .as_ref()
            .map(|s| s.allow_relations.as_slice())
            .unwrap_or_default(),
    )
    .map_err(|e| RunError::Config(ConfigError::Invalid(e)))?;
    let dirs: Vec<PathBuf> = match &cfg.config.source.allowed_dirs {
        Some(dirs) => dirs.iter().map(|d| cfg.resolve(d)).collect(),
        None => match &cfg.config.source.database {
            Some(db) => cfg
                .resolve(db)
                .parent()
                .map(Path::to_path_buf)
                .into_iter()
                .collect(),
            None => Vec::new(),
        },
    };
    // Only a SQLite workflow (no network endpoint) gets file access: a network engine's
    // `database` is a name, never a path next to the config.
    let dirs = if cfg.config.source.endpoint.is_some() {
        Vec::new()
    } else {
        dirs
    };
    let mut sqlite_dirs = Vec::new();
    for d in dirs {
        let canonical = std::fs::canonicalize(&d).map_err(|e| {
            RunError::Config(ConfigError::Invalid(format!(
                "source.allowed_dirs: {}: {e}",
                d.display()
            )))
        })?;
        sqlite_dirs.push(canonical);
    }
    Ok(SqlPolicy {
        base_dir: cfg.base_dir.clone(),
        sqlite_dirs,
        query_timeout: Duration::from_secs(limits.query_timeout_s),
        result_bytes: limits.max_output_mb.saturating_mul(1 << 20).min(256 << 20) as usize,
        call_bytes: limits.call_bytes,
        grants,
        audit: None,
        guard_stats: Default::default(),
        budget: crate::runtime::budget::MemoryBudget::of_mb(limits.host_memory_mb),
    })
}

/// A workflow that grants data relations needs a plugin that declares `sql_data_access` (so
/// its approval at `plugin install` showed it); anything else is a configuration error.
fn check_data_access(cfg: &LoadedConfig, sql: &SqlPolicy, wasm: &[u8]) -> Result<(), RunError> {
    if sql.grants.is_empty() {
        return Ok(());
    }
    let declared = crate::plugins::inspect::Capabilities::read(wasm)
        .ok()
        .and_then(|c| c.declared)
        .is_some_and(|d| d.sql_data_access);
    if declared {
        Ok(())
    } else {
        Err(RunError::Config(ConfigError::Invalid(format!(
            "source.sql.allow_relations grants data relations, but plugin `{}` does not declare \
             `sql_data_access` in its capabilities; a metadata connector reads only the catalog \
             (remove the grant, or use a plugin built to read data)",
            cfg.config.source.plugin
        ))))
    }
}

/// The JSON the plugin receives: the `[source]` table without host-only keys.
fn plugin_config_json(cfg: &LoadedConfig) -> String {
    let s = &cfg.config.source;
    let mut map = serde_json::Map::new();
    if let Some(e) = &s.endpoint {
        map.insert("endpoint".into(), e.clone().into());
    }
    if let Some(d) = &s.database {
        map.insert("database".into(), d.clone().into());
    }
    if let Some(d) = &s.databases {
        map.insert("databases".into(), d.clone().into());
    }
    map.insert(
        "options".into(),
        serde_json::Value::Object(s.options.clone().into_iter().collect()),
    );
    serde_json::Value::Object(map).to_string()
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
    run_workflow_gated(runtime, cfg, plugins, observer, home, None).await
}

/// [`run_workflow_in`], asking `gate` right before publishing.
pub async fn run_workflow_gated(
    runtime: &Runtime,
    cfg: &LoadedConfig,
    plugins: &PluginDir,
    observer: Arc<dyn RunObserver>,
    home: Option<&crate::home::Home>,
    gate: Option<&dyn PublishGate>,
) -> Result<RunReport, RunError> {
    match run_recorded(runtime, cfg, plugins, observer, home, Mode::Publish, gate).await? {
        Finished::Published(r) => Ok(r),
        Finished::Preview(_) => Err(RunError::Runtime("a publishing run only previewed".into())),
    }
}

/// Extracts and filters exactly as a run does, and reports what would leave — counts, field
/// actions, bytes and the first `samples` assets of each kind — without publishing anything.
pub async fn preview_workflow_in(
    runtime: &Runtime,
    cfg: &LoadedConfig,
    plugins: &PluginDir,
    observer: Arc<dyn RunObserver>,
    home: Option<&crate::home::Home>,
    samples: usize,
) -> Result<PreviewReport, RunError> {
    match run_recorded(
        runtime,
        cfg,
        plugins,
        observer,
        home,
        Mode::Preview { samples },
        None,
    )
    .await?
    {
        Finished::Preview(r) => Ok(r),
        Finished::Published(_) => Err(RunError::Runtime("a preview published".into())),
    }
}

async fn run_recorded(
    runtime: &Runtime,
    cfg: &LoadedConfig,
    plugins: &PluginDir,
    observer: Arc<dyn RunObserver>,
    home: Option<&crate::home::Home>,
    mode: Mode,
    gate: Option<&dyn PublishGate>,
) -> Result<Finished, RunError> {
    let run_id = uuid::Uuid::now_v7().to_string();
    if let Some(home) = home {
        if let Err(e) = home
            .state()
            .run_started(&run_id, cfg.workflow_id.as_deref())
        {
            tracing::warn!("cannot record run start: {e}");
        }
    }
    let result = run_inner(runtime, cfg, plugins, observer, home, &run_id, mode, gate).await;
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
/// Plugin warnings kept in the manifest: at most this many ...
const MAX_PLUGIN_WARNINGS: usize = 100;
/// ... of at most this many characters each ...
const MAX_WARNING_CHARS: usize = 512;
/// ... and this many bytes in all.
const MAX_PLUGIN_WARNING_BYTES: usize = 32 << 10;

/// The plugin's warnings as the manifest carries them: control characters replaced, redacted,
/// a warning naming an asset the filters dropped withheld (`dropped`), each clipped, and
/// capped in number and bytes, with closing lines counting what was withheld. (The manifest
/// is then scanned for secrets like every asset.)
fn plugin_warnings(warnings: &[String], dropped: &crate::pipeline::DroppedNames) -> Vec<String> {
    let mut kept = Vec::new();
    let mut bytes = 0usize;
    let mut naming_dropped = 0usize;
    let mut withheld = 0usize;
    for w in warnings {
        if kept.len() == MAX_PLUGIN_WARNINGS || bytes >= MAX_PLUGIN_WARNING_BYTES {
            // Past the caps the rest is only counted (not even read).
            withheld += 1;
            continue;
        }
        let mut line = redacted(&clean_line(w));
        if dropped.withholds(&line) || dropped.withholds(w) {
            naming_dropped += 1;
            continue;
        }
        if line.chars().count() > MAX_WARNING_CHARS {
            line = line.chars().take(MAX_WARNING_CHARS).collect::<String>() + "…";
        }
        if bytes + line.len() > MAX_PLUGIN_WARNING_BYTES {
            bytes = MAX_PLUGIN_WARNING_BYTES;
            withheld += 1;
            continue;
        }
        bytes += line.len();
        kept.push(line);
    }
    if naming_dropped > 0 {
        kept.push(format!(
            "{naming_dropped} plugin warnings withheld: they name assets the filters dropped"
        ));
    }
    if withheld > 0 {
        kept.push(format!(
            "{withheld} more plugin warnings withheld (the manifest keeps at most \
             {MAX_PLUGIN_WARNINGS} warnings of {MAX_WARNING_CHARS} characters, \
             {} KiB in all)",
            MAX_PLUGIN_WARNING_BYTES >> 10
        ));
    }
    kept
}

pub fn redacted(text: &str) -> String {
    crate::secrets::redact::Redactor::global()
        .redact(text)
        .into_owned()
}

/// Binds the workflow's credential to the slot `source` and prepares network logins.
fn credentials_for(
    cfg: &LoadedConfig,
    limits: &Limits,
    home: Option<&crate::home::Home>,
    audit: crate::state::RunAudit,
    scanner: &Arc<OutboundScanner>,
) -> Result<(CredentialSlots, Option<SqlLogin>), RunError> {
    let source = &cfg.config.source;
    let Some(guid) = &source.credential else {
        return Ok((CredentialSlots::default(), None));
    };
    let Some(home) = home else {
        return Err(RunError::Config(ConfigError::Invalid(
            "source.credential is set but no airlock home is open (use `airlock run`, which opens $AIRLOCK_HOME)".into(),
        )));
    };
    let record = home
        .state()
        .credential(guid)
        .map_err(|e| RunError::Config(ConfigError::Invalid(format!("source.credential: {e}"))))?;
    if let Some(at) = &record.revoked_at {
        let message = format!(
            "credential {guid} was revoked at {at}; bind another credential to the workflow"
        );
        audit.record(
            "resolve",
            "denied",
            Some(guid),
            source.endpoint.as_deref(),
            Some(&message),
        );
        return Err(RunError::Credential(message));
    }
    let mut slots = CredentialSlots::default();
    slots.bind("source", record).map_err(RunError::Credential)?;
    let mut databases: Vec<String> = source.database.iter().cloned().collect();
    databases.extend(source.databases.iter().flatten().cloned());
    let mut tls = source.tls.clone().unwrap_or_default();
    if let Some(ca) = &tls.ca_file {
        tls.ca_file = Some(cfg.resolve(&ca.to_string_lossy()));
    }
    let policy = sql_network_policy(cfg)?;
    let login = SqlLogin {
        endpoint: source.endpoint.clone(),
        databases,
        tls,
        policy: Arc::new(policy),
        connect_timeout: Duration::from_secs(limits.query_timeout_s.min(30)),
        stores: home.stores().clone(),
        state: Some(home.state().clone()),
        audit,
        scanner: Some(scanner.clone()),
    };
    Ok((slots, Some(login)))
}

/// The network policy of SQL logins: the workflow's `[network] allow` plus its declared
/// `source.endpoint`, which therefore needs no allow entry of its own.
fn sql_network_policy(cfg: &LoadedConfig) -> Result<NetworkPolicy, RunError> {
    let invalid = |m: String| RunError::Config(ConfigError::Invalid(m));
    let mut policy = NetworkPolicy::parse(&cfg.config.network.allow).map_err(invalid)?;
    if let Some(endpoint) = &cfg.config.source.endpoint {
        let (host, port) = crate::home::parse_host_port(endpoint)
            .map_err(|e| invalid(format!("source.endpoint: {e}")))?;
        policy.declare(&host, port);
    }
    Ok(policy)
}

/// Resolves the HMAC keys of the policy's `hash` rules from the home's secret stores, once at
/// run start. Each key is a resolved secret like a login password: audited, registered with
/// the redactor and the outbound scanner, and held only in zeroizing buffers.
async fn resolve_hash_keys(
    policy: &FilterPolicy,
    home: Option<&crate::home::Home>,
    audit: &crate::state::RunAudit,
    scanner: &OutboundScanner,
) -> Result<HashKeys, RunError> {
    let mut keys = HashKeys::default();
    let guids = policy.fields().key_credentials();
    if guids.is_empty() {
        return Ok(keys);
    }
    let Some(home) = home else {
        return Err(RunError::Config(ConfigError::Invalid(
            "filters.fields: a `hash` rule names key_credential but no airlock home is open (use `airlock run`, which opens $AIRLOCK_HOME)".into(),
        )));
    };
    for guid in guids {
        let usage = crate::home::CredentialUse {
            guid: &guid,
            setting: "filters.fields key_credential",
            destination: None,
            purpose: "filters.fields hash key",
        };
        let (_, secret) = home
            .resolve_for(&usage, audit, Some(scanner), |_| Ok(()))
            .await
            .map_err(|e| match e {
                crate::home::ResolveError::Unknown(m) => RunError::Config(ConfigError::Invalid(m)),
                e => RunError::Credential(e.to_string()),
            })?;
        keys.insert(
            &guid,
            zeroize::Zeroizing::new(secret.expose().as_bytes().to_vec()),
        );
    }
    Ok(keys)
}

/// Compiles a component that is not cached yet in the same limited child process as
/// `plugin install` (RLIMIT_AS of the default compile memory limit), within what is left of
/// the run's deadline, so a compile-time bomb stops at the deadline like any plugin. A
/// runtime without a compiler (library use) compiles in process when it loads the plugin.
async fn compile_in_limited_child(
    runtime: &Runtime,
    wasm: &[u8],
    limits: &Limits,
    started: Instant,
) -> Result<(), RunError> {
    use crate::plugins::compile::{compile_in_child, CompileError, CompileLimits};
    let Some(program) = runtime.compiler() else {
        return Ok(());
    };
    if runtime.is_cached(&hex::encode(Sha256::digest(wasm))) {
        return Ok(());
    }
    let deadline = Duration::from_secs(limits.deadline_s);
    let left = deadline.saturating_sub(started.elapsed());
    let compile = CompileLimits {
        time: left.max(Duration::from_millis(1)),
        ..CompileLimits::default()
    };
    tracing::info!(
        "compiling the plugin in a limited child process (at most {:.1} s, {} MiB)",
        compile.time.as_secs_f64(),
        compile.memory_mb
    );
    match compile_in_child(program, wasm, runtime.cache_dir(), compile).await {
        Ok(_) => Ok(()),
        Err(CompileError::TimeLimit { .. }) => {
            Err(RunError::Limit(LimitExceeded::Compile(format!(
                "compiling the plugin did not finish within the run's deadline of {} s \
             (limits.deadline_s), so the compiler process was killed; a component that takes \
             this long may be a compile-time bomb. If you trust it, install it with `airlock \
             plugin install` (which compiles it once, under --compile-timeout-s) or raise \
             limits.deadline_s",
                limits.deadline_s
            ))))
        }
        Err(e @ CompileError::MemoryLimit { .. }) => {
            Err(RunError::Limit(LimitExceeded::Compile(e.to_string())))
        }
        // Not a valid connector: the child compiled what it could (into the cache) within the
        // limits, and loading it here names the exact reason with the plugin's path.
        Err(CompileError::Rejected(_)) => Ok(()),
        Err(e) => Err(RunError::Runtime(e.to_string())),
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_inner(
    runtime: &Runtime,
    cfg: &LoadedConfig,
    plugins: &PluginDir,
    observer: Arc<dyn RunObserver>,
    home: Option<&crate::home::Home>,
    run_id: &str,
    mode: Mode,
    gate: Option<&dyn PublishGate>,
) -> Result<Finished, RunError> {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let run_id = run_id.to_string();
    let config = &cfg.config;
    let limits = config.limits.clone();
    let policy = FilterPolicy::compile_for(&config.filters, &config.source.plugin)
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
    let mut sql = sql_policy(cfg, &limits)?;

    observer.phase(Phase::Loading);
    let plugin_path = resolve_plugin(&config.source.plugin, &cfg.base_dir, plugins)?;
    // Read once: the bytes checked against the pin and the approval are the bytes compiled.
    let wasm = std::fs::read(&plugin_path).map_err(|source| LoadError::Read {
        path: plugin_path.clone(),
        source,
    })?;
    crate::plugins::verify::check(
        &config.source.plugin,
        &plugin_path,
        &wasm,
        config.source.plugin_sha256.as_deref(),
        home,
        &crate::state::RunAudit::new(
            home.map(|h| h.state().clone()),
            &run_id,
            cfg.workflow_id.as_deref(),
            Some(&hex::encode(Sha256::digest(&wasm))),
        ),
    )?;
    check_data_access(cfg, &sql, &wasm)?;
    compile_in_limited_child(runtime, &wasm, &limits, started).await?;
    let plugin = runtime.load_plugin_bytes(&plugin_path, &wasm)?;
    drop(wasm);
    tracing::debug!(
        from_cache = plugin.from_cache,
        "plugin {} loaded",
        plugin_path.display()
    );
    let load_ms = started.elapsed().as_millis() as u64;
    let audit = crate::state::RunAudit::new(
        home.map(|h| h.state().clone()),
        &run_id,
        cfg.workflow_id.as_deref(),
        Some(&plugin.sha256),
    );
    sql.audit = Some(audit.clone());
    let guard_stats = sql.guard_stats.clone();
    let host_budget = sql.budget.clone();
    let scanner = Arc::new(OutboundScanner::new());
    let inbound = Arc::new(crate::capabilities::inbound::InboundFilter::new(
        scanner.clone(),
        Some(audit.clone()),
        config.filters.on_reflected_secret.unwrap_or_default(),
    ));
    let hash_keys = resolve_hash_keys(&policy, home, &audit, &scanner).await?;
    let (slots, login) = credentials_for(cfg, &limits, home, audit.clone(), &scanner)?;
    let http = crate::capabilities::http::HttpAccess::for_run(
        cfg,
        home,
        audit.clone(),
        &scanner,
        &inbound,
    )
    .await
    .map_err(|e| match e {
        crate::capabilities::http::HttpError::Denied(m) => RunError::Credential(m),
        e => RunError::Config(ConfigError::Invalid(e.to_string())),
    })?
    .map(|h| h.with_budget(host_budget.clone()));
    // A remote sink's credentials are resolved before extraction: the scan then catches them too.
    let remote = RemoteSink::prepare(
        &config.sink,
        |p| cfg.resolve(p),
        home,
        &audit,
        Some(&scanner),
    )
    .await
    .map_err(|e| match e {
        SinkError::Config(m) => RunError::Config(ConfigError::Invalid(m)),
        e => RunError::Credential(e.to_string()),
    })?;

    let staged = match (mode, &config.sink, home) {
        (Mode::Publish, SinkConfig::Local { dir, .. }, _) => {
            let sink = LocalSink::new(cfg.resolve(dir));
            Staging::Sink(
                sink.stage(&run_id)
                    .map_err(|e| RunError::Output(format!("{}: {e}", sink.dir().display())))?,
            )
        }
        (Mode::Publish, SinkConfig::S3(_) | SinkConfig::Https(_), Some(home)) => {
            let root = crate::sinks::remote::spool_root(home);
            Staging::Spool(
                RemoteSpool::create(home, &run_id)
                    .map_err(|e| RunError::Output(format!("{}: {e}", root.display())))?,
            )
        }
        (Mode::Publish, SinkConfig::S3(_) | SinkConfig::Https(_), None) => {
            return Err(RunError::Config(ConfigError::Invalid(
                "a remote sink needs an airlock home".into(),
            )))
        }
        (Mode::Preview { .. }, _, _) => Staging::Temp(
            tempfile::Builder::new()
                .prefix("airlock-preview-")
                .tempdir()
                .map_err(|e| RunError::Output(format!("preview spool: {e}")))?,
        ),
    };

    let spool_key = match &staged {
        Staging::Spool(spool) => Some(spool.key()),
        _ => None,
    };
    let pipeline = Pipeline::new(policy.clone(), &limits, staged.dir())
        .with_spool_key(spool_key.clone())
        .with_scanner(scanner.clone(), audit.clone())
        .with_hash_keys(hash_keys);
    let state = RunState::new(
        &limits,
        sql,
        slots,
        Some(pipeline),
        PluginLog::new(observer.clone(), limits.log_lines),
    )
    .with_login(login)
    .with_http(http)
    .with_inbound(inbound.clone());
    let mut store = runtime.new_store(state);

    observer.phase(Phase::Extracting);
    let extract_started = Instant::now();
    let config_json = plugin_config_json(cfg);
    // Plugins push name patterns down case-sensitively; under case-insensitive matching they
    // get none, so they cannot skip what the host would keep. The host enforces either way.
    let (include, exclude) = if policy.case_sensitive() {
        (
            config.filters.include.clone(),
            config.filters.exclude.clone(),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let kinds = policy.kinds().to_vec();
    // The epoch callback stops a computing plugin at the deadline; this timeout also stops one
    // that waits inside a host call, a quarter second later (well inside the promised
    // "deadline plus one second", even on a loaded machine).
    let grace = Duration::from_secs(limits.deadline_s) + Duration::from_millis(250);
    let outcome = tokio::time::timeout(grace, async {
        let instance = runtime.instantiate(&plugin, &mut store).await?;
        let description = runtime::describe(&instance, &mut store).await?;
        let outcome = runtime::extract(
            &instance,
            &mut store,
            &config_json,
            include,
            exclude,
            &kinds,
        )
        .await?;
        Ok::<_, wasmtime::Error>((description, outcome))
    })
    .await;
    let extract_ms = extract_started.elapsed().as_millis() as u64;
    report_captured_output(&store, observer.as_ref());

    // A host-memory budget the plugin exhausted fails the run, whatever the plugin made of
    // the failed call: the rows it did not get would be missing from a "complete" run.
    if let Some(exceeded) = host_budget.exceeded() {
        return Err(RunError::Limit(LimitExceeded::HostMemory(exceeded)));
    }
    // A reflected secret under `on_reflected_secret = "fail"` decides the run whatever the
    // plugin made of the failed call.
    if let Some(reflected) = inbound.failure() {
        return Err(RunError::SecretDetected(format!(
            "inbound secret filter: {reflected}"
        )));
    }
    let (description, warnings) = match outcome {
        Err(_elapsed) => return Err(RunError::Limit(LimitExceeded::Deadline(limits.deadline_s))),
        Ok(Err(trap)) => return Err(classify_trap(&trap, store.data())),
        Ok(Ok((_, ExtractOutcome::PluginError { kind, message }))) => {
            return Err(RunError::PluginFailed {
                kind: kind.to_string(),
                message: redacted(&clean_line(&message)),
            })
        }
        Ok(Ok((description, ExtractOutcome::Finished { warnings }))) => (description, warnings),
    };
    if let Some(failure) = &store.data().failure {
        return Err(RunError::InvalidOutput(failure.clone()));
    }

    observer.phase(Phase::Publishing);
    let publish_started = Instant::now();
    let dropped_log_lines = store.data().log.dropped();
    let plugin_usage = PluginUsage {
        peak_memory_bytes: store.data().limiter.peak_memory as u64,
        cpu_ms: store.data().cpu_ticks * crate::runtime::EPOCH_TICK_MS,
    };
    let sql_guard = guard_stats.totals();
    let pipeline = store
        .data_mut()
        .pipeline
        .take()
        .ok_or_else(|| RunError::Runtime("pipeline missing after extraction".into()))?;
    drop(store);
    let output = pipeline.finish().map_err(|e| match e {
        PipelineError::Io(e) => RunError::Output(e.to_string()),
        other => RunError::InvalidOutput(other.to_string()),
    })?;
    let mut all_warnings = plugin_warnings(&warnings, &output.dropped_names);
    drop(warnings);
    all_warnings.extend(output.warnings);
    let config_json_full = serde_json::to_vec(config).unwrap_or_default();
    let mut manifest = Manifest {
        format: MANIFEST_FORMAT.to_string(),
        run_id: run_id.clone(),
        status: "complete".to_string(),
        workflow: config.name.clone(),
        config_sha256: hex::encode(Sha256::digest(&config_json_full)),
        plugin: plugin_ref(&plugin, &description),
        filter: FilterRef {
            digest: policy.digest().to_string(),
            include: config.filters.include.clone(),
            exclude: config.filters.exclude.clone(),
            kinds: config.filters.kinds.clone(),
            case_sensitive: policy.case_sensitive(),
            fields: config.filters.fields.clone(),
            max_per_kind: config.filters.max_per_kind.clone(),
            on_secret: policy.on_secret(),
            unmatched_patterns: output.unmatched_patterns,
            confusable_with_exclude: output.confusables,
            confusable_not_listed: output.confusables_not_listed,
        },
        started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        finished_at: String::new(),
        timings_ms: Timings {
            load: load_ms,
            extract: extract_ms,
            publish: 0,
            total: 0,
        },
        totals: Manifest::sum_counts(&output.counts),
        counts: output.counts,
        files: output.files,
        secrets_withheld: inbound.hits(),
        warnings: all_warnings,
    };
    manifest.timings_ms.publish = publish_started.elapsed().as_millis() as u64;
    manifest.timings_ms.total = started.elapsed().as_millis() as u64;
    manifest.finished_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    // The manifest leaves too (warnings quote the plugin): it is scanned like every asset.
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    if let Some(encoding) = scanner.find(&manifest_bytes) {
        let detail =
            format!("manifest withheld: it holds a secret this run resolved ({encoding} form)");
        audit.record("secret-scan", "denied", None, None, Some(&detail));
        return Err(RunError::SecretDetected(format!(
            "outbound secret scan: {detail}; the run fails"
        )));
    }
    // The gate decides last, after everything that can fail before publishing did not.
    let gate = match (&mode, gate) {
        (Mode::Publish, Some(g)) => {
            g.claim(&run_id)?;
            Some(g)
        }
        _ => None,
    };
    let released = |e: RunError| {
        if let Some(g) = gate {
            g.release(&run_id);
        }
        e
    };
    match (staged, mode) {
        (Staging::Spool(spool), _) => {
            let Some(remote) = &remote else {
                return Err(RunError::Runtime("remote sink without settings".into()));
            };
            let dir = spool
                .seal(&manifest, remote.config())
                .map_err(|e| released(RunError::Output(format!("spool: {e}"))))?;
            let uploaded = remote.upload(&dir, &run_id, spool_key).await.map_err(|e| {
                released(RunError::Upload(format!(
                    "{e}; no manifest was uploaded. Finish it with `airlock upload --resume {run_id}`"
                )))
            })?;
            Ok(Finished::Published(RunReport {
                output_dir: PathBuf::from(uploaded.url),
                manifest,
                dropped_log_lines,
                sql_guard,
                plugin_usage,
            }))
        }
        (Staging::Sink(staged), _) => {
            let sink_dir = staged
                .dir()
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let output_dir = staged
                .publish(&manifest)
                .map_err(|e| released(RunError::Output(format!("{sink_dir}: {e}"))))?;
            if let SinkConfig::Local {
                keep_runs: Some(keep),
                ..
            } = &config.sink
            {
                // Retention never fails a published run; a leftover run is only a warning.
                if let Err(e) = LocalSink::new(PathBuf::from(&sink_dir)).prune(*keep as usize) {
                    tracing::warn!("sink.keep_runs: cannot remove old runs in {sink_dir}: {e}");
                }
            }
            Ok(Finished::Published(RunReport {
                output_dir,
                manifest,
                dropped_log_lines,
                sql_guard,
                plugin_usage,
            }))
        }
        (Staging::Temp(tmp), mode) => {
            let n = match mode {
                Mode::Preview { samples } => samples,
                Mode::Publish => 0,
            };
            manifest.status = "preview".to_string();
            let samples = read_samples(tmp.path(), &manifest, n)
                .map_err(|e| RunError::Output(format!("preview spool: {e}")))?;
            Ok(Finished::Preview(PreviewReport {
                manifest,
                samples,
                dropped_log_lines,
            }))
        }
    }
}

/// The first `n` lines of each spooled file, as JSON.
fn read_samples(
    dir: &Path,
    manifest: &Manifest,
    n: usize,
) -> std::io::Result<std::collections::BTreeMap<String, Vec<serde_json::Value>>> {
    use std::io::BufRead;
    let mut out = std::collections::BTreeMap::new();
    for f in &manifest.files {
        let file = std::io::BufReader::new(std::fs::File::open(dir.join(&f.path))?);
        let mut lines = Vec::new();
        for line in file.lines().take(n) {
            lines.push(serde_json::from_str(&line?).map_err(std::io::Error::other)?);
        }
        out.insert(f.kind.clone(), lines);
    }
    Ok(out)
}

fn plugin_ref(plugin: &LoadedPlugin, d: &PluginDescription) -> PluginRef {
    PluginRef {
        name: clean_line(&d.name),
        version: clean_line(&d.version),
        sha256: plugin.sha256.clone(),
        wit_version: plugin.wit_version.clone(),
    }
}

/// Logs what the plugin wrote to stdout/stderr (already capped by the pipes).
fn report_captured_output(store: &wasmtime::Store<RunState>, observer: &dyn RunObserver) {
    let (out, err) = store.data().captured_output();
    for (name, bytes) in [("stdout", out), ("stderr", err)] {
        for line in String::from_utf8_lossy(&bytes).lines().take(200) {
            if !line.trim().is_empty() {
                observer.plugin_log(
                    LogLevel::Debug,
                    &redacted(&format!("[{name}] {}", clean_line(line))),
                );
            }
        }
    }
}

/// Turns a trap into the run error that explains it.
fn classify_trap(e: &wasmtime::Error, state: &RunState) -> RunError {
    if let Some(l) = e.downcast_ref::<LimitExceeded>() {
        return RunError::Limit(l.clone());
    }
    if let Some(f) = e.downcast_ref::<HostFailure>() {
        return match f {
            HostFailure::Limit(l) => RunError::Limit(l.clone()),
            HostFailure::Pipeline(PipelineError::Limit(l)) => RunError::Limit(l.clone()),
            HostFailure::Pipeline(PipelineError::Io(io)) => RunError::Output(io.to_string()),
            HostFailure::Pipeline(PipelineError::SecretDetected(m)) => {
                RunError::SecretDetected(m.clone())
            }
            HostFailure::Pipeline(p) => RunError::InvalidOutput(p.to_string()),
        };
    }
    if let Some(l) = &state.limiter.hit {
        return RunError::Limit(l.clone());
    }
    let what = match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::UnreachableCodeReached) => {
            "it aborted (a Rust plugin panicked)".to_string()
        }
        Some(wasmtime::Trap::StackOverflow) => "stack overflow".to_string(),
        Some(t) => t.to_string(),
        // A host-side refusal (e.g. an unknown resource handle) is the root cause; the
        // outer context is only wasmtime's "error while executing at wasm backtrace".
        None => format!("{}", e.root_cause())
            .lines()
            .next()
            .unwrap_or("unknown error")
            .to_string(),
    };
    let (_, stderr) = state.captured_output();
    let tail: Vec<String> = String::from_utf8_lossy(&stderr)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(clean_line)
        .collect();
    let tail = redacted(&tail[tail.len().saturating_sub(3)..].join(" | "));
    if tail.is_empty() {
        RunError::PluginCrashed(what)
    } else {
        let tail: String = tail.chars().take(600).collect();
        RunError::PluginCrashed(format!("{what}; plugin stderr: {tail}"))
    }
}

/// One entry of `airlock plugins list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginListing {
    /// The file.
    pub file: PathBuf,
    /// SHA-256 of the file, when it could be read.
    pub sha256: Option<String>,
    /// The WIT version, when the plugin loaded.
    pub wit_version: Option<String>,
    /// What the plugin says about itself, when it loaded.
    pub description: Option<PluginDescription>,
    /// Why it could not be described.
    pub error: Option<String>,
}

/// Loads and describes every `.wasm` file in `dir`, each in its own limited store.
pub async fn list_plugins(runtime: &Runtime, dir: &Path) -> std::io::Result<Vec<PluginListing>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        out.push(describe_file(runtime, &file).await);
    }
    Ok(out)
}

/// Loads and describes one plugin file.
pub async fn describe_file(runtime: &Runtime, file: &Path) -> PluginListing {
    let mut listing = PluginListing {
        file: file.to_path_buf(),
        sha256: None,
        wit_version: None,
        description: None,
        error: None,
    };
    let plugin = match runtime.load_plugin(file) {
        Ok(p) => p,
        Err(e) => {
            listing.error = Some(e.to_string());
            return listing;
        }
    };
    listing.sha256 = Some(plugin.sha256.clone());
    listing.wit_version = Some(plugin.wit_version.clone());
    let limits = Limits {
        deadline_s: 10,
        cpu_s: 10,
        ..Limits::default()
    };
    let state = RunState::new(
        &limits,
        SqlPolicy {
            base_dir: PathBuf::from("/nonexistent"),
            sqlite_dirs: Vec::new(),
            query_timeout: Duration::from_secs(1),
            result_bytes: 1 << 20,
            call_bytes: limits.call_bytes,
            grants: Default::default(),
            audit: None,
            guard_stats: Default::default(),
            budget: crate::runtime::budget::MemoryBudget::of_mb(limits.host_memory_mb),
        },
        CredentialSlots::default(),
        None,
        PluginLog::new(Arc::new(TracingObserver), 100),
    );
    let mut store = runtime.new_store(state);
    let described = tokio::time::timeout(Duration::from_secs(11), async {
        let instance = runtime.instantiate(&plugin, &mut store).await?;
        runtime::describe(&instance, &mut store).await
    })
    .await;
    match described {
        Ok(Ok(d)) => listing.description = Some(d),
        Ok(Err(e)) => listing.error = Some(classify_trap(&e, store.data()).to_string()),
        Err(_) => listing.error = Some("describe did not finish within 10 s".into()),
    }
    listing
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
    ));
}
