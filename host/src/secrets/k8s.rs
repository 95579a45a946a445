//! Kubernetes secret mounts: a directory with one file per key, re-read on every resolution.
//!
//! The kubelet writes a secret volume as `<dir>/..<timestamp>/<key>` files, points the symlink
//! `<dir>/..data` at the newest timestamped directory, and links `<dir>/<key>` to
//! `..data/<key>`. On rotation it writes a new timestamped directory, renames a new symlink
//! over `..data` (atomic), then removes the old directory. Opening `<dir>/<key>` resolves the
//! whole chain in one `open`, so a read sees the old or the new file, never a mix; the only
//! race is the old directory being removed between the kernel resolving `..data` and the key,
//! which gives `ENOENT` and is retried.
//!
//! A locator is `KEY`, or `SUBDIR/KEY` when several secrets are mounted under `dir`.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroizing;

use super::{SecretStore, SecretStoreError, SecretString};
use crate::secrets::embedded::MAX_SECRET_BYTES;

/// The `[kubernetes]` table of `backends.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// The directory the secret (or secrets, one subdirectory each) is mounted at.
    pub dir: PathBuf,
}

/// Secrets read from a mounted Kubernetes secret volume.
pub struct KubernetesStore {
    dir: PathBuf,
}

impl KubernetesStore {
    /// A backend reading key files under `config.dir`.
    pub fn new(config: &KubernetesConfig) -> Self {
        KubernetesStore {
            dir: config.dir.clone(),
        }
    }

    fn read_once(&self, path: &std::path::Path) -> std::io::Result<Zeroizing<Vec<u8>>> {
        let mut file = std::fs::File::open(path)?;
        let len = file.metadata()?.len() as usize;
        if len > MAX_SECRET_BYTES {
            return Err(std::io::Error::other(format!(
                "larger than {MAX_SECRET_BYTES} bytes"
            )));
        }
        // Sized from the open file (the one we read): no reallocation, no stray copies.
        let mut buf = Zeroizing::new(vec![0u8; len]);
        file.read_exact(&mut buf)?;
        Ok(buf)
    }
}

#[async_trait::async_trait]
impl SecretStore for KubernetesStore {
    fn backend(&self) -> &'static str {
        "kubernetes"
    }

    fn check_locator(&self, locator: &str) -> Result<(), SecretStoreError> {
        let segments: Vec<&str> = locator.split('/').collect();
        let ok = !locator.is_empty()
            && locator.len() <= 512
            && segments.len() <= 2
            && segments.iter().all(|s| {
                !s.is_empty()
                    && !s.starts_with('.')
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            });
        if ok {
            Ok(())
        } else {
            Err(SecretStoreError::Invalid(format!(
                "kubernetes locator `{}` must be KEY or SUBDIR/KEY (letters, digits, - _ .; not starting with .)",
                locator.escape_debug()
            )))
        }
    }

    async fn resolve(&self, locator: &str) -> Result<SecretString, SecretStoreError> {
        self.check_locator(locator)?;
        let path = self.dir.join(locator);
        let mut attempt = 0;
        let bytes = loop {
            match self.read_once(&path) {
                Ok(b) => break b,
                // The kubelet may have removed the old timestamped directory between the kernel
                // following `..data` and the key: the next open sees the new one.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempt < 5 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(2 * attempt)).await;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(SecretStoreError::NotFound(format!(
                        "no key file {} (is the secret mounted, and the key spelled right?)",
                        path.display()
                    )))
                }
                Err(e) => {
                    return Err(SecretStoreError::Unavailable(format!(
                        "cannot read key file {}: {e}",
                        path.display()
                    )))
                }
            }
        };
        let mut text = std::str::from_utf8(&bytes)
            .map_err(|_| SecretStoreError::Invalid(format!("{} is not UTF-8", path.display())))?;
        // A key file written with `echo` ends with a newline that is not part of the secret.
        text = text.strip_suffix('\n').unwrap_or(text);
        text = text.strip_suffix('\r').unwrap_or(text);
        if text.is_empty() {
            return Err(SecretStoreError::NotFound(format!(
                "key file {} is empty",
                path.display()
            )));
        }
        let mut out = String::with_capacity(text.len());
        out.push_str(text);
        Ok(SecretString::new(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// Writes a timestamped directory and swaps `..data` to it exactly as the kubelet does
    /// (new symlink `..data_tmp`, renamed over `..data`), then removes the old directory.
    fn kubelet_write(dir: &Path, generation: u32, value: &str) {
        let ts = format!("..2024_01_01_00_00_{generation:02}.{generation}");
        std::fs::create_dir(dir.join(&ts)).unwrap();
        std::fs::write(dir.join(&ts).join("password"), value).unwrap();
        std::fs::write(dir.join(&ts).join("username"), "app").unwrap();
        let old = std::fs::read_link(dir.join("..data")).ok();
        symlink(&ts, dir.join("..data_tmp")).unwrap();
        std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
        for key in ["password", "username"] {
            if std::fs::symlink_metadata(dir.join(key)).is_err() {
                symlink(format!("..data/{key}"), dir.join(key)).unwrap();
            }
        }
        if let Some(old) = old {
            std::fs::remove_dir_all(dir.join(old)).unwrap();
        }
    }

    #[tokio::test]
    async fn follows_the_atomic_data_swap_without_errors_or_mixes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let old = "canary-k8s-OLD-".repeat(40);
        let new = "canary-k8s-NEW-".repeat(40);
        kubelet_write(&dir, 0, &old);
        let store = KubernetesStore::new(&KubernetesConfig { dir: dir.clone() });
        assert_eq!(store.resolve("password").await.unwrap().expose(), old);

        let stop = Arc::new(AtomicBool::new(false));
        let swaps = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let swapper = {
            let (dir, stop, swaps, old, new) = (
                dir.clone(),
                stop.clone(),
                swaps.clone(),
                old.clone(),
                new.clone(),
            );
            std::thread::spawn(move || {
                let mut g = 1;
                while !stop.load(Ordering::Relaxed) {
                    kubelet_write(&dir, g % 100, if g % 2 == 1 { &new } else { &old });
                    swaps.fetch_add(1, Ordering::Relaxed);
                    g += 1;
                }
            })
        };
        // Read until the swapper has swapped often and both values were seen, however busy
        // the machine is (bounded so a broken swapper cannot hang the test).
        let (mut saw_old, mut saw_new, mut reads) = (0, 0, 0u64);
        while reads < 3000 || swaps.load(Ordering::Relaxed) < 20 || saw_old == 0 || saw_new == 0 {
            assert!(reads < 5_000_000, "the swapper made no progress");
            reads += 1;
            let v = store.resolve("password").await.expect("never an error");
            match v.expose() {
                s if s == old => saw_old += 1,
                s if s == new => saw_new += 1,
                _ => panic!("a resolution returned a mix of old and new"),
            }
        }
        stop.store(true, Ordering::Relaxed);
        swapper.join().unwrap();
        assert!(saw_old > 0 && saw_new > 0, "old {saw_old}, new {saw_new}");

        assert!(matches!(
            store.resolve("nokey").await,
            Err(SecretStoreError::NotFound(_))
        ));
        assert!(store.resolve("../etc/passwd").await.is_err());
        assert!(store.resolve("..data/password").await.is_err());
    }
}
