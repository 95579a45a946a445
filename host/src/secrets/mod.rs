//! Secret stores: where secret bytes live, behind one trait, and the types that hold secrets
//! in memory. Backends are registered in one place ([`SecretStores`]); which external backends
//! exist and how to reach them is the home's `backends.toml` ([`backends`]).

pub mod aws;
pub mod azure;
pub mod backends;
pub mod cache;
pub mod embedded;
pub mod env;
pub mod k8s;
pub mod openbao;
pub mod redact;
mod secret;
pub mod transport;

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

    /// Checks a locator's syntax when a credential is registered (no network access).
    fn check_locator(&self, _locator: &str) -> Result<(), SecretStoreError> {
        Ok(())
    }

    /// Forgets anything held for `locator` (a cached value): a login refused it, so the next
    /// resolution must read the backend. Backends without a cache ignore it.
    fn invalidate(&self, _locator: &str) {}
}

/// The configured backends, by name.
#[derive(Clone, Default)]
pub struct SecretStores {
    stores: BTreeMap<&'static str, Arc<dyn SecretStore>>,
}

impl SecretStores {
    /// Registers a backend under its name. Its resolutions are counted (see
    /// [`resolution_counts`]).
    pub fn register(&mut self, store: Arc<dyn SecretStore>) {
        self.stores
            .insert(store.backend(), Arc::new(Counted { inner: store }));
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

    /// The names of the configured backends.
    pub fn names(&self) -> Vec<&'static str> {
        self.stores.keys().copied().collect()
    }
}

/// Secret resolutions in this process by backend and outcome (`ok`, `not-found`, `denied`,
/// `unavailable`, `invalid`), for the worker's `/metrics`. Only counts: never a locator.
pub fn resolution_counts() -> Vec<((&'static str, &'static str), u64)> {
    RESOLUTIONS
        .lock()
        .map(|m| m.iter().map(|(k, v)| (*k, *v)).collect())
        .unwrap_or_default()
}

type Counts = BTreeMap<(&'static str, &'static str), u64>;
static RESOLUTIONS: std::sync::Mutex<Counts> = std::sync::Mutex::new(BTreeMap::new());

/// A backend whose resolutions are counted in [`resolution_counts`].
struct Counted {
    inner: Arc<dyn SecretStore>,
}

#[async_trait::async_trait]
impl SecretStore for Counted {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn resolve(&self, locator: &str) -> Result<SecretString, SecretStoreError> {
        let result = self.inner.resolve(locator).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(SecretStoreError::NotFound(_)) => "not-found",
            Err(SecretStoreError::Denied(_)) => "denied",
            Err(SecretStoreError::Unavailable(_)) => "unavailable",
            Err(SecretStoreError::Invalid(_)) => "invalid",
        };
        if let Ok(mut m) = RESOLUTIONS.lock() {
            *m.entry((self.inner.backend(), outcome)).or_insert(0) += 1;
        }
        result
    }

    fn check_locator(&self, locator: &str) -> Result<(), SecretStoreError> {
        self.inner.check_locator(locator)
    }

    fn invalidate(&self, locator: &str) {
        self.inner.invalidate(locator)
    }
}

/// Splits a `path#field` locator.
pub fn split_field(locator: &str) -> (&str, Option<&str>) {
    match locator.rsplit_once('#') {
        Some((path, field)) if !field.is_empty() => (path, Some(field)),
        Some((path, _)) => (path, None),
        None => (locator, None),
    }
}

/// Picks a field of a secret's JSON object: `field` when given, else the only field, else
/// `password`. `object` is the raw JSON text of the object (borrowed, not copied).
pub fn select_field(
    object: &str,
    field: Option<&str>,
    what: &str,
) -> Result<SecretString, SecretStoreError> {
    use std::borrow::Cow;
    use std::collections::BTreeMap;
    let map: BTreeMap<Cow<'_, str>, &serde_json::value::RawValue> = serde_json::from_str(object)
        .map_err(|_| {
            SecretStoreError::Invalid(format!(
                "the secret at {what} is not a JSON object of fields"
            ))
        })?;
    let raw = match field {
        Some(f) => map.get(f).copied().ok_or_else(|| {
            SecretStoreError::NotFound(format!("the secret at {what} has no field `{f}`"))
        })?,
        None if map.len() == 1 => map.values().next().copied().ok_or_else(|| {
            SecretStoreError::NotFound(format!("the secret at {what} has no fields"))
        })?,
        None => map.get("password").copied().ok_or_else(|| {
            SecretStoreError::Invalid(format!(
                "the secret at {what} has {} fields and none is `password`; name one as LOCATOR#FIELD",
                map.len()
            ))
        })?,
    };
    json_string(raw.get(), what)
}

/// A JSON string literal as a secret, copied once into an exactly sized buffer when it holds
/// no escapes (the usual case); escaped strings are decoded by serde_json.
pub fn json_string(raw: &str, what: &str) -> Result<SecretString, SecretStoreError> {
    let not_text = || SecretStoreError::Invalid(format!("the secret at {what} is not a string"));
    let inner = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .ok_or_else(not_text)?;
    if !inner.contains('\\') {
        let mut out = String::with_capacity(inner.len());
        out.push_str(inner);
        return Ok(SecretString::new(out));
    }
    serde_json::from_str::<String>(raw)
        .map(SecretString::new)
        .map_err(|_| not_text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_selected() {
        let obj = r#"{"username":"u","password":"p\"w"}"#;
        assert_eq!(select_field(obj, None, "x").unwrap().expose(), "p\"w");
        assert_eq!(
            select_field(obj, Some("username"), "x").unwrap().expose(),
            "u"
        );
        assert!(matches!(
            select_field(obj, Some("nope"), "x"),
            Err(SecretStoreError::NotFound(_))
        ));
        assert_eq!(
            select_field(r#"{"k":"v"}"#, None, "x").unwrap().expose(),
            "v"
        );
        assert!(select_field(r#"{"a":"1","b":"2"}"#, None, "x").is_err());
        assert!(select_field(r#"{"a":1}"#, Some("a"), "x").is_err());
        assert_eq!(split_field("a/b#c"), ("a/b", Some("c")));
        assert_eq!(split_field("a/b"), ("a/b", None));
    }
}
