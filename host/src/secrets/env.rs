//! The environment-variable backend. **For development only**: every process of the same user
//! can read another's environment (`/proc/<pid>/environ`), and shells and CI logs tend to keep
//! copies. Use a vault in production.
//!
//! A locator is the variable's name, which must start with the configured prefix
//! (`AIRLOCK_SECRET_` unless `backends.toml` says otherwise), so a registry entry cannot read
//! arbitrary variables of the host process.

use serde::Deserialize;

use super::{SecretStore, SecretStoreError, SecretString};

/// The `[env]` table of `backends.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvConfig {
    /// Variables this backend may read start with this prefix.
    #[serde(default = "default_prefix")]
    pub prefix: String,
}

fn default_prefix() -> String {
    "AIRLOCK_SECRET_".into()
}

/// Secrets read from the host process's environment (development only).
pub struct EnvStore {
    prefix: String,
}

impl EnvStore {
    /// A backend reading variables that start with `prefix`.
    pub fn new(config: &EnvConfig) -> Self {
        EnvStore {
            prefix: config.prefix.clone(),
        }
    }
}

#[async_trait::async_trait]
impl SecretStore for EnvStore {
    fn backend(&self) -> &'static str {
        "env"
    }

    fn check_locator(&self, locator: &str) -> Result<(), SecretStoreError> {
        let ok = !locator.is_empty()
            && locator.len() <= 256
            && locator.starts_with(&self.prefix)
            && locator
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if ok {
            Ok(())
        } else {
            Err(SecretStoreError::Invalid(format!(
                "env locator `{}` must be a variable name (A-Z, 0-9, _) starting with `{}`",
                locator.escape_debug(),
                self.prefix
            )))
        }
    }

    async fn resolve(&self, locator: &str) -> Result<SecretString, SecretStoreError> {
        self.check_locator(locator)?;
        // `var_os` copies the value once into an exactly sized buffer; `into_string` keeps it.
        match std::env::var_os(locator) {
            None => Err(SecretStoreError::NotFound(format!(
                "environment variable {locator} is not set"
            ))),
            Some(v) => match v.into_string() {
                Ok(s) if s.is_empty() => Err(SecretStoreError::NotFound(format!(
                    "environment variable {locator} is empty"
                ))),
                Ok(s) => Ok(SecretString::new(s)),
                Err(v) => {
                    let mut bytes = v.into_encoded_bytes();
                    zeroize::Zeroize::zeroize(&mut bytes);
                    Err(SecretStoreError::Invalid(format!(
                        "environment variable {locator} is not UTF-8"
                    )))
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_prefixed_variables_only() {
        let store = EnvStore::new(&EnvConfig {
            prefix: default_prefix(),
        });
        std::env::set_var("AIRLOCK_SECRET_ENV_UNIT", "canary-env-1");
        assert_eq!(
            store
                .resolve("AIRLOCK_SECRET_ENV_UNIT")
                .await
                .unwrap()
                .expose(),
            "canary-env-1"
        );
        std::env::set_var("AIRLOCK_SECRET_ENV_UNIT", "canary-env-2");
        assert_eq!(
            store
                .resolve("AIRLOCK_SECRET_ENV_UNIT")
                .await
                .unwrap()
                .expose(),
            "canary-env-2"
        );
        assert!(matches!(
            store.resolve("AIRLOCK_SECRET_ENV_UNSET_X").await,
            Err(SecretStoreError::NotFound(_))
        ));
        assert!(matches!(
            store.resolve("HOME").await,
            Err(SecretStoreError::Invalid(_))
        ));
        assert!(store.check_locator("AIRLOCK_SECRET_a-b").is_err());
    }
}
