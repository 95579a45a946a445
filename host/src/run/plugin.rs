//! The plugin of a run: finding it, compiling it under limits, describing it, and turning its
//! traps into run errors.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{redacted, PluginDir, RunError, RunObserver, TracingObserver};
use crate::capabilities::credentials::CredentialSlots;
use crate::capabilities::log::{clean_line, LogLevel, PluginLog};
use crate::capabilities::sql::SqlPolicy;
use crate::config::{ConfigError, LoadedConfig};
use crate::pipeline::manifest::PluginRef;
use crate::pipeline::PipelineError;
use crate::runtime::limits::{LimitExceeded, Limits};
use crate::runtime::state::{HostFailure, RunState};
use crate::runtime::{self, LoadedPlugin, PluginDescription, Runtime};

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

/// A workflow that grants data relations needs a plugin that declares `sql_data_access` (so
/// its approval at `plugin install` showed it); anything else is a configuration error.
pub(super) fn check_data_access(
    cfg: &LoadedConfig,
    sql: &SqlPolicy,
    wasm: &[u8],
) -> Result<(), RunError> {
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

/// Compiles a component that is not cached yet in the same limited child process as
/// `plugin install` (RLIMIT_AS of the default compile memory limit), within what is left of
/// the run's deadline, so a compile-time bomb stops at the deadline like any plugin. A
/// runtime without a compiler (library use) compiles in process when it loads the plugin.
pub(super) async fn compile_in_limited_child(
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

pub(super) fn plugin_ref(plugin: &LoadedPlugin, d: &PluginDescription) -> PluginRef {
    PluginRef {
        name: clean_line(&d.name),
        version: clean_line(&d.version),
        sha256: plugin.sha256.clone(),
        wit_version: plugin.wit_version.clone(),
    }
}

/// Logs what the plugin wrote to stdout/stderr (already capped by the pipes).
pub(super) fn report_captured_output(
    store: &wasmtime::Store<RunState>,
    observer: &dyn RunObserver,
) {
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
pub(super) fn classify_trap(e: &wasmtime::Error, state: &RunState) -> RunError {
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
