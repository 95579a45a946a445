//! The plugin supply chain: what a plugin asks for (read before anything compiles it), the
//! operator's approval recorded with its SHA-256 in the state store, optional ed25519
//! signatures from trusted authors, compilation in a limited child process, and the check a
//! run makes before it compiles or instantiates a plugin.

pub mod compile;
pub mod inspect;
pub mod install;
pub mod signature;
pub mod verify;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use compile::{CompileError, CompileLimits};
pub use inspect::Capabilities;
pub use install::{InstallError, InstallPlan};
pub use verify::PluginRefused;

/// `<home>/plugins.toml`: the home's plugin policy. Every key is optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginPolicy {
    /// `plugin install` refuses plugins without a valid signature by a trusted key.
    #[serde(default)]
    pub require_signature: bool,
    /// Runs refuse plugins that were not installed and approved with `plugin install`.
    #[serde(default)]
    pub require_approval: bool,
    /// Wall-time limit of compiling a plugin at install, in seconds (default 120).
    #[serde(default)]
    pub compile_timeout_s: Option<f64>,
    /// Address-space limit of the compiler process, in MiB (default 4096).
    #[serde(default)]
    pub compile_memory_mb: Option<u64>,
}

/// The policy file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct PolicyError {
    pub path: PathBuf,
    pub reason: String,
}

impl PluginPolicy {
    /// The policy file of the home in `home_dir`.
    pub fn path_for(home_dir: &Path) -> PathBuf {
        home_dir.join("plugins.toml")
    }

    /// The directory of trusted public keys of the home in `home_dir`.
    pub fn trusted_keys_dir(home_dir: &Path) -> PathBuf {
        home_dir.join("trusted-keys")
    }

    /// Loads `<home>/plugins.toml`; a missing file is the default policy. Unknown keys are
    /// errors naming the key and its line.
    pub fn load(home_dir: &Path) -> Result<Self, PolicyError> {
        let path = Self::path_for(home_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => {
                return Err(PolicyError {
                    path,
                    reason: e.to_string(),
                })
            }
        };
        let policy: PluginPolicy = toml::from_str(&text).map_err(|e| PolicyError {
            path: path.clone(),
            reason: e.to_string().trim().replace('\n', " "),
        })?;
        if policy
            .compile_timeout_s
            .is_some_and(|t| t.is_nan() || t <= 0.0)
        {
            return Err(PolicyError {
                path,
                reason: "compile_timeout_s must be a positive number of seconds".into(),
            });
        }
        Ok(policy)
    }

    /// The compile limits this policy sets (defaults for what it leaves out).
    pub fn compile_limits(&self) -> CompileLimits {
        let d = CompileLimits::default();
        CompileLimits {
            time: self
                .compile_timeout_s
                .map(std::time::Duration::from_secs_f64)
                .unwrap_or(d.time),
            memory_mb: self.compile_memory_mb.unwrap_or(d.memory_mb),
        }
    }
}

/// Whether `s` is a valid installed-plugin name: lowercase letters, digits, `-` and `_`,
/// starting with a letter or digit, at most 64 characters.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_defaults_limits_and_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            PluginPolicy::load(dir.path()).unwrap(),
            PluginPolicy::default()
        );
        std::fs::write(
            PluginPolicy::path_for(dir.path()),
            "require_signature = true\ncompile_timeout_s = 2.5\n",
        )
        .unwrap();
        let p = PluginPolicy::load(dir.path()).unwrap();
        assert!(p.require_signature && !p.require_approval);
        let limits = p.compile_limits();
        assert_eq!(limits.time, std::time::Duration::from_millis(2500));
        assert_eq!(limits.memory_mb, CompileLimits::default().memory_mb);
        std::fs::write(
            PluginPolicy::path_for(dir.path()),
            "require_signatures = true\n",
        )
        .unwrap();
        let e = PluginPolicy::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("require_signatures"), "{e}");
        std::fs::write(
            PluginPolicy::path_for(dir.path()),
            "compile_timeout_s = 0\n",
        )
        .unwrap();
        assert!(PluginPolicy::load(dir.path()).is_err());
    }

    #[test]
    fn names() {
        assert!(valid_name("postgres"));
        assert!(valid_name("hostile-loop_2"));
        assert!(!valid_name(""));
        assert!(!valid_name("../evil"));
        assert!(!valid_name("Upper"));
        assert!(!valid_name("-dash"));
        assert!(!valid_name(&"a".repeat(65)));
    }
}
