//! Why a run failed, and the exit code and kind each failure has.

use crate::config::ConfigError;
use crate::runtime::limits::LimitExceeded;
use crate::runtime::LoadError;

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
    /// The run was stopped before it finished (Ctrl-C, a cancelled trigger, a worker's
    /// shutdown); nothing was published.
    #[error("interrupted: {0}; nothing was published")]
    Interrupted(String),
}

impl RunError {
    /// Exit code of the CLI: 2 for usage and configuration errors, 1 for failed runs.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Config(_)
            | RunError::Load(_)
            | RunError::PluginNotFound { .. }
            | RunError::PluginRefused(_) => 2,
            RunError::Interrupted(_) => 130,
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
            RunError::Interrupted(_) => "interrupted",
        }
    }
}
