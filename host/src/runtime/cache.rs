//! On-disk cache of compiled components, keyed by the SHA-256 of the wasm bytes and the
//! engine's compatibility hash (wasmtime version, target, settings), so a different engine
//! never loads an incompatible artifact.

use std::hash::Hasher;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

/// A directory of precompiled components.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
}

/// Feeds `std::hash::Hash` output into SHA-256 so the engine hash is stable across processes.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl ComponentCache {
    /// A cache in `dir`; `None` disables caching.
    pub fn new(dir: Option<PathBuf>) -> Self {
        ComponentCache { dir }
    }

    /// The default cache directory: `$AIRLOCK_CACHE_DIR`, else `$XDG_CACHE_HOME/airlock`,
    /// else `~/.cache/airlock`, each with `components/` appended.
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(d) = std::env::var_os("AIRLOCK_CACHE_DIR") {
            return Some(PathBuf::from(d).join("components"));
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("airlock").join("components"))
    }

    /// The cache key of `wasm_sha256` for `engine`.
    pub fn key(engine: &Engine, wasm_sha256: &str) -> String {
        let mut h = Sha256Hasher(Sha256::new());
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut h);
        h.0.update(wasm_sha256.as_bytes());
        h.0.update(b"airlock-component-cache-v1");
        hex::encode(h.0.finalize())
    }

    /// The cache directory, if caching is on.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Whether a compiled component for `wasm_sha256` is in the cache.
    pub fn contains(&self, engine: &Engine, wasm_sha256: &str) -> bool {
        self.dir.as_ref().is_some_and(|dir| {
            dir.join(format!("{}.cwasm", Self::key(engine, wasm_sha256)))
                .is_file()
        })
    }

    /// Loads the compiled component from the cache or compiles and stores it.
    /// Returns the component and whether it came from the cache.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
        wasm_sha256: &str,
    ) -> wasmtime::Result<(Component, bool)> {
        let Some(dir) = &self.dir else {
            return Ok((Component::from_binary(engine, wasm)?, false));
        };
        let path = dir.join(format!("{}.cwasm", Self::key(engine, wasm_sha256)));
        if path.is_file() {
            // SAFETY: the file was written by `store` below from `Component::serialize` of the
            // same engine configuration (the key covers it); the cache directory is created
            // private to the user.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => return Ok((c, true)),
                Err(e) => tracing::warn!("ignoring unreadable cache entry {}: {e}", path.display()),
            }
        }
        let component = Component::from_binary(engine, wasm)?;
        if let Err(e) = store(dir, &path, &component) {
            tracing::warn!("cannot cache compiled component in {}: {e}", dir.display());
        }
        Ok((component, false))
    }
}

fn store(dir: &Path, path: &Path, component: &Component) -> std::io::Result<()> {
    create_private_dir(dir)?;
    let bytes = component.serialize().map_err(std::io::Error::other)?;
    let mut tmp = tempfile_in(dir)?;
    tmp.1.write_all(&bytes)?;
    tmp.1.sync_all()?;
    std::fs::rename(&tmp.0, path)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let name = format!(".tmp-{}", uuid::Uuid::now_v7());
    let path = dir.join(name);
    let f = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(&path)?;
    Ok((path, f))
}
