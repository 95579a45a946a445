//! Workflow configuration: the TOML file an operator writes (and, as JSON, what a workflow
//! stores). Unknown keys are errors that name the key and its line; a config never holds a
//! secret, only credential GUIDs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::runtime::limits::Limits;

// Each part's configuration lives beside the code that uses it; this file composes them.
pub use crate::pipeline::config::{
    FieldActionName, FieldRuleConfig, FilterConfig, OnReflected, OnSecret,
};
pub use crate::sinks::SinkConfig;

/// A whole workflow configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowConfig {
    /// Optional human name of the workflow, copied into the manifest.
    #[serde(default)]
    pub name: Option<String>,
    /// What to extract from, and with which plugin.
    pub source: SourceConfig,
    /// Which assets may leave.
    #[serde(default)]
    pub filters: FilterConfig,
    /// Where the output goes.
    pub sink: SinkConfig,
    /// Sandbox limits for the plugin; every key has a default.
    #[serde(default)]
    pub limits: Limits,
    /// Destinations the host may connect to for the plugin (HTTP); empty denies all.
    #[serde(default, skip_serializing_if = "is_default_network")]
    pub network: crate::capabilities::http::policy::NetworkConfig,
    /// How a run's changes against the workflow's last complete run are reported.
    #[serde(default, skip_serializing_if = "ChangesConfig::is_default")]
    pub changes: ChangesConfig,
}

/// The `[changes]` table: removals are reported only when they cannot be wrong.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChangesConfig {
    /// The fail-safe: when more than this share of the last run's entities would be removed,
    /// no removal is reported (the run says why). Between 0 and 1; default 0.2.
    #[serde(default = "default_max_removed_share")]
    pub max_removed_share: f64,
}

fn default_max_removed_share() -> f64 {
    0.2
}

impl Default for ChangesConfig {
    fn default() -> Self {
        ChangesConfig {
            max_removed_share: default_max_removed_share(),
        }
    }
}

impl ChangesConfig {
    fn is_default(&self) -> bool {
        *self == ChangesConfig::default()
    }
}

fn is_default_network(n: &crate::capabilities::http::policy::NetworkConfig) -> bool {
    *n == crate::capabilities::http::policy::NetworkConfig::default()
}

/// The `[source]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Installed plugin name (looked up in the plugin directory) or a path to a `.wasm` file.
    pub plugin: String,
    /// The plugin's SHA-256 (lowercase hex); a run refuses any other file before compiling it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_sha256: Option<String>,
    /// `host:port` of a network source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Database name, or the file path for SQLite (relative to the config file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Several database names (`["*"]` for all), for engines that have several per server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub databases: Option<Vec<String>>,
    /// GUID of the credential the host logs in with; the plugin sees it only as the slot
    /// `source`. Never a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// TLS settings for network sources (`mode`, `ca_file`, `allow_cleartext_password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::capabilities::sql::TlsSettings>,
    /// How the credential authenticates HTTP requests (`header`, `query`, `aws_region`,
    /// `aws_service`, `allow_cleartext`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<crate::capabilities::http::auth::HttpAuthSettings>,
    /// Directories in which the host may open SQLite files (relative to the config file).
    /// Defaults to the directory of `database`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_dirs: Option<Vec<String>>,
    /// What the plugin may read through SQL beyond the catalog (`allow_relations`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<crate::capabilities::sql::SqlAccessConfig>,
    /// Plugin-specific options, passed to the plugin unchanged.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, serde_json::Value>,
}

/// A configuration error: what is wrong, where, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema.
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A value is present but not acceptable.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// A loaded configuration with the directory relative paths are resolved against.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The parsed configuration.
    pub config: WorkflowConfig,
    /// The directory of the config file.
    pub base_dir: PathBuf,
    /// The stored workflow's id, when the config came from the state store.
    pub workflow_id: Option<String>,
    /// The config file, when the config came from one.
    pub file: Option<PathBuf>,
}

impl WorkflowConfig {
    /// Parses TOML text; `origin` names the file in error messages.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let config: WorkflowConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: describe_toml_error(&e, text),
        })?;
        config.check()?;
        Ok(config)
    }

    /// Checks what serde cannot: kinds exist, patterns compile, limits are sane.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.source.plugin.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "source.plugin is empty; name an installed plugin (e.g. \"sqlite\") or a .wasm path"
                    .into(),
            ));
        }
        if let Some(pin) = &self.source.plugin_sha256 {
            if pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ConfigError::Invalid(format!(
                    "source.plugin_sha256 `{pin}` is not a SHA-256 (64 hex digits); `airlock plugin install` and `airlock plugin list` print it"
                )));
            }
        }
        crate::pipeline::filter::FilterPolicy::compile(&self.filters)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.limits.check().map_err(ConfigError::Invalid)?;
        self.sink.check().map_err(ConfigError::Invalid)?;
        let share = self.changes.max_removed_share;
        if !(0.0..=1.0).contains(&share) {
            return Err(ConfigError::Invalid(format!(
                "changes.max_removed_share = {share}: it is a share of the last run's entities, \
                 between 0 and 1 (0.2 = 20 %)"
            )));
        }
        Ok(())
    }
}

impl LoadedConfig {
    /// Reads and parses a TOML config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config = WorkflowConfig::from_toml(&text, path)?;
        let base_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let base_dir = std::fs::canonicalize(&base_dir).unwrap_or(base_dir);
        let file = path
            .file_name()
            .map(|name| base_dir.join(name))
            .unwrap_or_else(|| path.to_path_buf());
        Ok(LoadedConfig {
            config,
            base_dir,
            workflow_id: None,
            file: Some(file),
        })
    }

    /// Resolves a config-relative path.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }
}

/// Turns a toml error into one line plus the offending line number and key.
fn describe_toml_error(e: &toml::de::Error, text: &str) -> String {
    let message = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].lines().count().max(1);
            let line = if text[..span.start.min(text.len())].ends_with('\n') {
                line + 1
            } else {
                line
            };
            let snippet = text.lines().nth(line - 1).unwrap_or("").trim();
            format!("line {line}: {message} (at `{snippet}`)")
        }
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[source]
plugin = "sqlite"
database = "shop.db"

[sink]
kind = "local"
dir = "out"
"#;

    #[test]
    fn parses_minimal_config() {
        let c = WorkflowConfig::from_toml(GOOD, Path::new("w.toml")).unwrap();
        assert_eq!(c.source.plugin, "sqlite");
        assert_eq!(c.limits.memory_mb, 256);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let text = GOOD.replace(
            "database = \"shop.db\"",
            "database = \"shop.db\"\ndatabse = 1",
        );
        let err = WorkflowConfig::from_toml(&text, Path::new("w.toml")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("databse"), "{msg}");
        assert!(msg.contains("line 5"), "{msg}");
        assert!(msg.contains("w.toml"), "{msg}");
    }

    #[test]
    fn unknown_key_of_an_allow_table_names_key_and_line() {
        let text = format!(
            "{GOOD}\n[network]\nallow = [\n  \"a.example.com:443\",\n  {{ dest = \"b.example.com:443\", method = [\"GET\"] }},\n]\n"
        );
        let err = WorkflowConfig::from_toml(&text, Path::new("w.toml")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unknown field `method`"), "{msg}");
        assert!(msg.contains("line 13"), "{msg}");
    }

    #[test]
    fn missing_section_is_an_error() {
        let err = WorkflowConfig::from_toml("[source]\nplugin = \"x\"\n", Path::new("w.toml"))
            .unwrap_err();
        assert!(err.to_string().contains("sink"), "{err}");
    }

    #[test]
    fn unknown_kind_is_an_error() {
        let text = format!("{GOOD}\n[filters]\nkinds = [\"tabel\"]\n");
        let err = WorkflowConfig::from_toml(&text, Path::new("w.toml")).unwrap_err();
        assert!(err.to_string().contains("tabel"), "{err}");
    }
}
