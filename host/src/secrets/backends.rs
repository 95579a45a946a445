//! `backends.toml`: which external secret backends a home may use and how to reach them. It
//! lives in the home (`<home>/backends.toml`) unless `$AIRLOCK_BACKENDS` names another file.
//! It never holds a secret: tokens and keys are named by file or environment variable.
//! Unknown keys are errors that name the key and its line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::aws::{AwsConfig, AwsSecretsStore};
use super::azure::{AzureConfig, AzureKeyVaultStore};
use super::cache::{CacheConfig, CachedStore};
use super::env::{EnvConfig, EnvStore};
use super::k8s::{KubernetesConfig, KubernetesStore};
use super::openbao::{OpenBaoConfig, OpenBaoStore};
use super::{SecretStore, SecretStores};

/// The whole `backends.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendsConfig {
    /// HashiCorp Vault / OpenBao KV v2.
    #[serde(default)]
    pub openbao: Option<OpenBaoConfig>,
    /// AWS Secrets Manager.
    #[serde(default)]
    pub aws: Option<AwsConfig>,
    /// Kubernetes secret mounts.
    #[serde(default)]
    pub kubernetes: Option<KubernetesConfig>,
    /// Environment variables (development only).
    #[serde(default)]
    pub env: Option<EnvConfig>,
    /// Azure Key Vault.
    #[serde(default)]
    pub azure: Option<AzureConfig>,
    /// An optional cache of resolved secrets in front of every backend configured here (off
    /// by default).
    #[serde(default)]
    pub cache: Option<CacheConfig>,
}

/// `backends.toml` is unusable.
#[derive(Debug, thiserror::Error)]
#[error("backends config {path}: {message}")]
pub struct BackendsError {
    pub path: PathBuf,
    pub message: String,
}

impl BackendsConfig {
    /// `$AIRLOCK_BACKENDS`, else `<home>/backends.toml`.
    pub fn path_for(home: &Path) -> PathBuf {
        std::env::var_os("AIRLOCK_BACKENDS")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join("backends.toml"))
    }

    /// Reads the file; a missing default file means "only the embedded vault", a missing
    /// file named by `$AIRLOCK_BACKENDS` is an error.
    pub fn load(path: &Path, required: bool) -> Result<Self, BackendsError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Self::default())
            }
            Err(e) => {
                return Err(BackendsError {
                    path: path.to_path_buf(),
                    message: format!("cannot read: {e}"),
                })
            }
        };
        Self::from_toml(&text, path)
    }

    /// Parses TOML text; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self, BackendsError> {
        toml::from_str(text).map_err(|e| BackendsError {
            path: origin.to_path_buf(),
            message: describe(&e, text),
        })
    }

    /// Builds and registers every configured backend; relative paths resolve against `base`
    /// (the config file's directory). Nothing connects yet.
    pub fn register(self, stores: &mut SecretStores, origin: &Path) -> Result<(), BackendsError> {
        let base = origin.parent().unwrap_or(Path::new("."));
        let fail = |message: String| BackendsError {
            path: origin.to_path_buf(),
            message,
        };
        let ttl = match &self.cache {
            Some(c) => c.ttl().map_err(fail)?,
            None => None,
        };
        let mut add = |store: Arc<dyn SecretStore>| match ttl {
            Some(ttl) => stores.register(Arc::new(CachedStore::new(store, ttl))),
            None => stores.register(store),
        };
        if let Some(c) = self.openbao {
            let c = c.prepare(base).map_err(fail)?;
            add(Arc::new(
                OpenBaoStore::new(c).map_err(|e| fail(e.to_string()))?,
            ));
        }
        if let Some(c) = self.aws {
            add(Arc::new(
                AwsSecretsStore::new(c, base).map_err(|e| fail(e.to_string()))?,
            ));
        }
        if let Some(mut c) = self.kubernetes {
            if c.dir.is_relative() {
                c.dir = base.join(&c.dir);
            }
            add(Arc::new(KubernetesStore::new(&c)));
        }
        if let Some(c) = self.env {
            tracing::warn!("the `env` secret backend is enabled: it is meant for development only");
            add(Arc::new(EnvStore::new(&c)));
        }
        if let Some(c) = self.azure {
            let c = c.prepare(base).map_err(fail)?;
            add(Arc::new(
                AzureKeyVaultStore::new(c).map_err(|e| fail(e.to_string()))?,
            ));
        }
        if let Some(ttl) = ttl {
            tracing::info!(
                ttl_s = ttl.as_secs(),
                "resolved secrets are cached in memory for the configured TTL"
            );
        }
        Ok(())
    }
}

/// One line: the message, the line number and the line.
fn describe(e: &toml::de::Error, text: &str) -> String {
    let message = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let snippet = text.lines().nth(line - 1).unwrap_or("").trim();
            format!("line {line}: {message} (at `{snippet}`)")
        }
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_name_key_and_line() {
        let text = "[kubernetes]\ndir = \"/x\"\n\n[openbao]\naddress = \"http://127.0.0.1:1\"\nnamespase = \"a\"\n[openbao.auth]\nmethod = \"token\"\ntoken_env = \"T\"\n";
        let err = BackendsConfig::from_toml(text, Path::new("b.toml")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("namespase"), "{msg}");
        assert!(msg.contains("line 6"), "{msg}");
        assert!(msg.contains("b.toml"), "{msg}");
        let err = BackendsConfig::from_toml("[vault]\n", Path::new("b.toml")).unwrap_err();
        assert!(err.to_string().contains("vault"), "{err}");
    }

    #[test]
    fn registers_configured_backends() {
        let text = "[kubernetes]\ndir = \"mnt\"\n[env]\n[openbao]\naddress = \"http://127.0.0.1:1\"\n[openbao.auth]\nmethod = \"approle\"\nrole_id = \"r\"\nsecret_id_file = \"sid\"\n[aws]\nregion = \"eu-west-1\"\n[azure]\nvault_url = \"https://v.vault.azure.net\"\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret_file = \"azure-secret\"\n";
        let cfg = BackendsConfig::from_toml(text, Path::new("/etc/airlock/b.toml")).unwrap();
        let mut stores = SecretStores::default();
        cfg.register(&mut stores, Path::new("/etc/airlock/b.toml"))
            .unwrap();
        assert_eq!(
            stores.names(),
            ["aws", "azure", "env", "kubernetes", "openbao"]
        );
        let bad = BackendsConfig::from_toml(
            "[openbao]\naddress = \"ftp://x\"\n[openbao.auth]\nmethod = \"token\"\ntoken_env = \"T\"\n",
            Path::new("b.toml"),
        )
        .unwrap();
        let err = bad
            .register(&mut SecretStores::default(), Path::new("b.toml"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("https://"), "{err}");
    }

    #[test]
    fn the_cache_is_optional_and_bounded() {
        let with = |cache: &str| {
            BackendsConfig::from_toml(
                &format!("{cache}[kubernetes]\ndir = \"/mnt\"\n"),
                Path::new("b.toml"),
            )
            .unwrap()
            .register(&mut SecretStores::default(), Path::new("b.toml"))
        };
        assert!(with("").is_ok());
        assert!(with("[cache]\nttl_s = 60\n").is_ok());
        let err = with("[cache]\nttl_s = 61\n").unwrap_err().to_string();
        assert!(err.contains("ttl_s") && err.contains("60"), "{err}");
        let err = BackendsConfig::from_toml("[cache]\nttl = 5\n", Path::new("b.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("ttl"), "{err}");
    }

    #[test]
    fn azure_keys_are_checked() {
        let err = BackendsConfig::from_toml(
            "[azure]\nvault_url = \"https://v\"\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"x\"\n",
            Path::new("b.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("client_secret") && err.contains("line 5"),
            "{err}"
        );
        let cfg = BackendsConfig::from_toml(
            "[azure]\nvault_url = \"http://v\"\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret_env = \"X\"\n",
            Path::new("b.toml"),
        )
        .unwrap();
        let err = cfg
            .register(&mut SecretStores::default(), Path::new("b.toml"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("https://"), "{err}");
    }
}
