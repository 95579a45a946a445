//! An optional in-memory cache in front of a backend, for long-running use (many logins a
//! minute against a vault that rate-limits). Off unless `backends.toml` has `[cache] ttl_s`;
//! a TTL above [`MAX_TTL`] is refused, so a rotated or revoked secret is followed within a
//! minute at worst. Cached values are [`SecretString`]s (zeroized when evicted), never written
//! anywhere, and dropped when the backend reports an error for the locator or a login with
//! the value is refused ([`SecretStore::invalidate`]), so the re-resolution after an
//! authentication failure reads the backend again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{SecretStore, SecretStoreError, SecretString};

/// The longest TTL the cache accepts.
pub const MAX_TTL: Duration = Duration::from_secs(60);

/// The `[cache]` table of `backends.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// How long a resolved secret may be reused, in seconds (1..=60; 0 turns the cache off).
    pub ttl_s: u64,
}

impl CacheConfig {
    /// The TTL, `None` when the cache is off; a TTL above a minute is an error.
    pub fn ttl(&self) -> Result<Option<Duration>, String> {
        match self.ttl_s {
            0 => Ok(None),
            s if Duration::from_secs(s) <= MAX_TTL => Ok(Some(Duration::from_secs(s))),
            s => Err(format!(
                "cache.ttl_s = {s} is too long: at most {} seconds, so rotation and revocation take effect within a minute",
                MAX_TTL.as_secs()
            )),
        }
    }
}

/// A backend whose resolutions are reused for a TTL.
pub struct CachedStore {
    inner: Arc<dyn SecretStore>,
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, SecretString)>>,
}

impl CachedStore {
    /// Caches `inner`'s resolutions for `ttl` (at most [`MAX_TTL`]).
    pub fn new(inner: Arc<dyn SecretStore>, ttl: Duration) -> Self {
        CachedStore {
            inner,
            ttl: ttl.min(MAX_TTL),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn with_entries<T>(
        &self,
        f: impl FnOnce(&mut HashMap<String, (Instant, SecretString)>) -> T,
    ) -> T {
        // A poisoned lock only means a panic elsewhere mid-update: the map is still valid.
        let mut guard = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

#[async_trait::async_trait]
impl SecretStore for CachedStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn check_locator(&self, locator: &str) -> Result<(), SecretStoreError> {
        self.inner.check_locator(locator)
    }

    async fn resolve(&self, locator: &str) -> Result<SecretString, SecretStoreError> {
        let now = Instant::now();
        let hit = self.with_entries(|entries| {
            // Expired values are dropped (and zeroized) as soon as anyone looks.
            entries.retain(|_, (at, _)| now.duration_since(*at) < self.ttl);
            entries.get(locator).map(|(_, s)| s.clone())
        });
        if let Some(secret) = hit {
            return Ok(secret);
        }
        match self.inner.resolve(locator).await {
            Ok(secret) => {
                let copy = secret.clone();
                self.with_entries(|entries| {
                    entries.insert(locator.to_string(), (Instant::now(), copy))
                });
                Ok(secret)
            }
            Err(e) => {
                self.invalidate(locator);
                Err(e)
            }
        }
    }

    fn invalidate(&self, locator: &str) {
        self.with_entries(|entries| entries.remove(locator));
        self.inner.invalidate(locator);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A backend that counts reads and returns `value-N` for the N-th read, or an error while
    /// `fail` is set.
    #[derive(Default)]
    struct Counting {
        reads: AtomicUsize,
        fail: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl SecretStore for Counting {
        fn backend(&self) -> &'static str {
            "counting"
        }
        async fn resolve(&self, _locator: &str) -> Result<SecretString, SecretStoreError> {
            let n = self.reads.fetch_add(1, Ordering::SeqCst) + 1;
            if self.fail.load(Ordering::SeqCst) {
                return Err(SecretStoreError::Denied("revoked".into()));
            }
            Ok(SecretString::new(format!("value-{n}")))
        }
    }

    #[test]
    fn ttl_is_off_by_default_and_at_most_a_minute() {
        assert_eq!(CacheConfig { ttl_s: 0 }.ttl().unwrap(), None);
        assert_eq!(
            CacheConfig { ttl_s: 60 }.ttl().unwrap(),
            Some(Duration::from_secs(60))
        );
        let e = CacheConfig { ttl_s: 61 }.ttl().unwrap_err();
        assert!(e.contains("at most 60"), "{e}");
        assert!(toml::from_str::<CacheConfig>("ttl_s = 5\nmax = 3\n").is_err());
    }

    #[tokio::test]
    async fn reuses_within_the_ttl_and_invalidates_on_auth_failure() {
        let inner = Arc::new(Counting::default());
        let cache = CachedStore::new(inner.clone(), Duration::from_secs(60));
        assert_eq!(cache.backend(), "counting");
        assert_eq!(cache.resolve("a").await.unwrap().expose(), "value-1");
        assert_eq!(cache.resolve("a").await.unwrap().expose(), "value-1");
        assert_eq!(inner.reads.load(Ordering::SeqCst), 1);
        // another locator is its own entry
        assert_eq!(cache.resolve("b").await.unwrap().expose(), "value-2");
        // a login refused the value: the re-resolution reads the backend
        cache.invalidate("a");
        assert_eq!(cache.resolve("a").await.unwrap().expose(), "value-3");
        assert_eq!(cache.resolve("b").await.unwrap().expose(), "value-2");
        assert_eq!(inner.reads.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn expired_entries_are_read_again_and_errors_are_not_cached() {
        let inner = Arc::new(Counting::default());
        // A TTL of zero makes every entry expired at once: no sleeping in the test.
        let cache = CachedStore::new(inner.clone(), Duration::ZERO);
        assert_eq!(cache.resolve("a").await.unwrap().expose(), "value-1");
        assert_eq!(cache.resolve("a").await.unwrap().expose(), "value-2");
        assert!(cache.with_entries(|e| e.len()) <= 1);

        let cache = CachedStore::new(inner.clone(), Duration::from_secs(60));
        assert_eq!(cache.resolve("x").await.unwrap().expose(), "value-3");
        cache.invalidate("x");
        inner.fail.store(true, Ordering::SeqCst);
        assert!(matches!(
            cache.resolve("x").await,
            Err(SecretStoreError::Denied(_))
        ));
        assert_eq!(cache.with_entries(|e| e.len()), 0);
        // a revoked secret stays revoked: the failure did not leave a value behind
        assert!(cache.resolve("x").await.is_err());
        inner.fail.store(false, Ordering::SeqCst);
        assert_eq!(cache.resolve("x").await.unwrap().expose(), "value-6");
    }

    #[test]
    fn an_over_long_ttl_is_clamped_even_when_built_directly() {
        let cache = CachedStore::new(Arc::new(Counting::default()), Duration::from_secs(3600));
        assert_eq!(cache.ttl, MAX_TTL);
    }
}
