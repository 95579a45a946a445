//! The embedded encrypted vault: one AES-256-GCM sealed file per secret, under a key kept in a
//! separate key file (created 0600 on first use, or named by `AIRLOCK_VAULT_KEY_FILE`).
//!
//! A sealed file is `nonce (12 bytes) || ciphertext+tag`, with the locator as associated data so
//! a sealed file cannot be swapped for another credential's.

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use zeroize::Zeroizing;

use super::{SecretStore, SecretStoreError, SecretString};

/// Largest secret the vault stores (certificates and keys included).
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

/// The embedded vault.
pub struct EmbeddedVault {
    dir: PathBuf,
    key_file: PathBuf,
}

impl EmbeddedVault {
    /// A vault storing sealed files in `dir` under the key in `key_file`.
    pub fn new(dir: PathBuf, key_file: PathBuf) -> Self {
        EmbeddedVault { dir, key_file }
    }

    fn cipher(&self) -> Result<Aes256Gcm, SecretStoreError> {
        let key = self.load_or_create_key()?;
        Ok(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key[..])))
    }

    fn load_or_create_key(&self) -> Result<Zeroizing<[u8; 32]>, SecretStoreError> {
        let mut key = Zeroizing::new([0u8; 32]);
        match std::fs::File::open(&self.key_file) {
            Ok(mut f) => {
                let mode = f.metadata().map(|m| m.permissions().mode()).unwrap_or(0);
                if mode & 0o077 != 0 {
                    return Err(SecretStoreError::Unavailable(format!(
                        "vault key file {} is readable by others (mode {:o}); run chmod 600 on it",
                        self.key_file.display(),
                        mode & 0o777
                    )));
                }
                f.read_exact(&mut key[..]).map_err(|e| {
                    SecretStoreError::Unavailable(format!(
                        "vault key file {} is unreadable or not 32 bytes: {e}",
                        self.key_file.display()
                    ))
                })?;
                Ok(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let generated = Aes256Gcm::generate_key(OsRng);
                key.copy_from_slice(generated.as_slice());
                if let Some(parent) = self.key_file.parent() {
                    create_private_dir(parent)?;
                }
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&self.key_file)
                    .map_err(|e| io_err("create the vault key file", &self.key_file, e))?;
                f.write_all(&key[..])
                    .and_then(|_| f.sync_all())
                    .map_err(|e| io_err("write the vault key file", &self.key_file, e))?;
                Ok(key)
            }
            Err(e) => Err(io_err("open the vault key file", &self.key_file, e)),
        }
    }

    fn path_of(&self, locator: &str) -> Result<PathBuf, SecretStoreError> {
        let ok = !locator.is_empty()
            && locator.len() <= 128
            && locator
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(SecretStoreError::NotFound(format!(
                "`{}` is not an embedded-vault locator",
                locator.escape_debug()
            )));
        }
        Ok(self.dir.join(format!("{locator}.sealed")))
    }

    /// Seals `secret` under `locator`, replacing any previous value atomically.
    pub fn put(&self, locator: &str, secret: &SecretString) -> Result<(), SecretStoreError> {
        if secret.len() > MAX_SECRET_BYTES {
            return Err(SecretStoreError::Invalid(format!(
                "secret is larger than {MAX_SECRET_BYTES} bytes"
            )));
        }
        let path = self.path_of(locator)?;
        let cipher = self.cipher()?;
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: secret.expose().as_bytes(),
                    aad: locator.as_bytes(),
                },
            )
            .map_err(|_| SecretStoreError::Unavailable("encryption failed".into()))?;
        create_private_dir(&self.dir)?;
        let tmp = self.dir.join(format!(".{locator}.tmp"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io_err("write the vault", &tmp, e))?;
        f.write_all(nonce.as_slice())
            .and_then(|_| f.write_all(&sealed))
            .and_then(|_| f.sync_all())
            .map_err(|e| io_err("write the vault", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io_err("write the vault", &path, e))
    }

    /// Seals a small key (e.g. a run's spool key) under the vault key, bound to `purpose`
    /// (authenticated, not encrypted): nonce || ciphertext. Nothing is written to disk.
    pub fn wrap_key(&self, purpose: &str, key: &[u8; 32]) -> Result<Vec<u8>, SecretStoreError> {
        let cipher = self.cipher()?;
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: key,
                    aad: purpose.as_bytes(),
                },
            )
            .map_err(|_| SecretStoreError::Unavailable("encryption failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens what [`EmbeddedVault::wrap_key`] sealed for `purpose`.
    pub fn unwrap_key(
        &self,
        purpose: &str,
        wrapped: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, SecretStoreError> {
        let bad = || {
            SecretStoreError::Unavailable(format!(
                "cannot open the wrapped key for {purpose}: wrong vault key or tampered file"
            ))
        };
        if wrapped.len() != 12 + 32 + 16 {
            return Err(bad());
        }
        let (nonce, ciphertext) = wrapped.split_at(12);
        let plain = Zeroizing::new(
            self.cipher()?
                .decrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: purpose.as_bytes(),
                    },
                )
                .map_err(|_| bad())?,
        );
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&plain);
        Ok(key)
    }

    /// Removes the sealed file of `locator` (revocation).
    pub fn delete(&self, locator: &str) -> Result<(), SecretStoreError> {
        let path = self.path_of(locator)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("delete from the vault", &path, e)),
        }
    }

    fn open(&self, locator: &str) -> Result<SecretString, SecretStoreError> {
        let path = self.path_of(locator)?;
        let sealed = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SecretStoreError::NotFound(format!(
                    "no secret stored under locator {locator} (revoked or deleted)"
                )))
            }
            Err(e) => return Err(io_err("read the vault", &path, e)),
        };
        if sealed.len() < 12 + 16 {
            return Err(SecretStoreError::Unavailable(format!(
                "sealed file {} is truncated",
                path.display()
            )));
        }
        let (nonce, ciphertext) = sealed.split_at(12);
        let cipher = self.cipher()?;
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: locator.as_bytes(),
                    },
                )
                .map_err(|_| {
                    SecretStoreError::Unavailable(format!(
                        "cannot decrypt {}: wrong vault key or tampered file",
                        path.display()
                    ))
                })?,
        );
        // Copy into an exactly sized buffer; `plain` is zeroized when dropped.
        let text = std::str::from_utf8(&plain)
            .map_err(|_| SecretStoreError::Invalid("stored secret is not UTF-8".into()))?;
        let mut out = String::with_capacity(text.len());
        out.push_str(text);
        Ok(SecretString::new(out))
    }
}

#[async_trait::async_trait]
impl SecretStore for EmbeddedVault {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn resolve(&self, locator: &str) -> Result<SecretString, SecretStoreError> {
        self.open(locator)
    }
}

fn create_private_dir(dir: &Path) -> Result<(), SecretStoreError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_err("create the vault directory", dir, e))
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> SecretStoreError {
    SecretStoreError::Unavailable(format!("cannot {what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn seals_and_opens() {
        let dir = tempfile::tempdir().unwrap();
        let v = EmbeddedVault::new(dir.path().join("vault"), dir.path().join("key"));
        v.put("abc", &SecretString::new("s3cret-canary".into()))
            .unwrap();
        assert_eq!(v.resolve("abc").await.unwrap().expose(), "s3cret-canary");
        let sealed = std::fs::read(dir.path().join("vault/abc.sealed")).unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"s3cret"));
        let mode = std::fs::metadata(dir.path().join("key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        v.delete("abc").unwrap();
        assert!(matches!(
            v.resolve("abc").await,
            Err(SecretStoreError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn a_swapped_file_does_not_decrypt() {
        let dir = tempfile::tempdir().unwrap();
        let v = EmbeddedVault::new(dir.path().join("vault"), dir.path().join("key"));
        v.put("a", &SecretString::new("one".into())).unwrap();
        v.put("b", &SecretString::new("two".into())).unwrap();
        std::fs::copy(
            dir.path().join("vault/a.sealed"),
            dir.path().join("vault/b.sealed"),
        )
        .unwrap();
        assert!(v.resolve("b").await.is_err());
        assert!(v.resolve("../x").await.is_err());
    }
}
