//! Secret stores: where secret bytes live, behind one trait, and the types that hold secrets
//! in memory. Backends are registered in one place ([`SecretStores`]).

pub mod embedded;
pub mod redact;
mod secret;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use secret::{SecretError, SecretString};

/// Why a secret could not be resolved. Messages name the locator and backend, never a secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SecretStoreError {
    /// Nothing is stored there (deleted, revoked, never written).
    #[error("not found: {0}")]
    NotFound(String),
    /// The store refused access.
    #[error("denied: {0}")]
    Denied(String),
    /// The store cannot be reached or read right now.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The stored value is not usable.
    #[error("invalid: {0}")]
    Invalid(String),
}

/// A secret-store backend.
#[async_trait::async_trait]
pub trait SecretStore: Send + Sync {
    /// The backend's name as the credential registry records it (e.g. `embedded`).
    fn backend(&self) -> &'static str;

    /// Reads the secret at `locator`, just in time; backends never cache it to disk.
    async fn resolve(&self, locator: &str) -> Result<SecretString, SecretStoreError>;
}

/// The configured backends, by name.
#[derive(Clone, Default)]
pub struct SecretStores {
    stores: BTreeMap<&'static str, Arc<dyn SecretStore>>,
}

impl SecretStores {
    /// Registers a backend under its name.
    pub fn register(&mut self, store: Arc<dyn SecretStore>) {
        self.stores.insert(store.backend(), store);
    }

    /// The backend called `name`.
    pub fn get(&self, name: &str) -> Result<Arc<dyn SecretStore>, SecretStoreError> {
        self.stores.get(name).cloned().ok_or_else(|| {
            SecretStoreError::Unavailable(format!(
                "secret backend `{name}` is not configured (known: {})",
                self.stores.keys().copied().collect::<Vec<_>>().join(", ")
            ))
        })
    }
}
