//! Detached ed25519 signatures over a plugin's SHA-256, and the trusted public keys of a home.
//!
//! Files:
//! - secret key (`airlock plugin keygen`, mode 0600): one line `ed25519-secret:<base64 seed>`;
//! - public key (`<key>.pub`): one line `ed25519:<base64 key>` and an optional comment;
//! - signature (`<plugin>.wasm.sig`): JSON `{"format", "sha256", "key", "signature"}`;
//! - trusted keys: every `*.pub` file in `<home>/trusted-keys/`.
//!
//! The signed message is `airlock-plugin-signature/1\n` followed by the lowercase hex SHA-256,
//! so a signature cannot be replayed as a signature over anything else.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The signature format and the domain-separation prefix of the signed message.
pub const SIGNATURE_FORMAT: &str = "airlock-plugin-signature/1";

const SECRET_PREFIX: &str = "ed25519-secret:";
const PUBLIC_PREFIX: &str = "ed25519:";

/// A signature problem; never contains key material beyond public keys.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A key or signature file is not in the expected format.
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },
    /// The signature does not verify.
    #[error("bad signature in {path}: {reason}; the plugin or its signature was altered, or it was signed for another file")]
    Bad { path: PathBuf, reason: String },
    /// Signed, but not by a trusted key.
    #[error("{path} is signed by {key}, which is not a trusted key; if you trust its author, copy their public key file into {trusted_dir}")]
    Untrusted {
        path: PathBuf,
        key: String,
        trusted_dir: PathBuf,
    },
}

/// A detached signature file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetachedSignature {
    /// [`SIGNATURE_FORMAT`].
    pub format: String,
    /// Lowercase hex SHA-256 of the signed plugin.
    pub sha256: String,
    /// The signer's public key, `ed25519:<base64>`.
    pub key: String,
    /// Base64 of the 64-byte signature.
    pub signature: String,
}

fn message(sha256: &str) -> Vec<u8> {
    format!("{SIGNATURE_FORMAT}\n{sha256}").into_bytes()
}

/// `ed25519:<base64>` of a public key.
pub fn public_key_text(key: &VerifyingKey) -> String {
    format!(
        "{PUBLIC_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(key.as_bytes())
    )
}

/// Parses `ed25519:<base64>` (the first word of a line).
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let word = text.split_whitespace().next().unwrap_or("");
    let b64 = word
        .strip_prefix(PUBLIC_PREFIX)
        .ok_or_else(|| format!("a public key starts with `{PUBLIC_PREFIX}`"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("public key is not base64: {e}"))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| "an ed25519 public key is 32 bytes".to_string())?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| format!("not an ed25519 public key: {e}"))
}

/// Creates a new key pair: the secret key in `secret_path` (created 0600, never overwritten)
/// and the public key in `secret_path` + `.pub`. Returns the public key text.
pub fn generate(secret_path: &Path, comment: &str) -> Result<String, SignatureError> {
    use aes_gcm::aead::rand_core::RngCore;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut seed = Zeroizing::new([0u8; 32]);
    aes_gcm::aead::OsRng.fill_bytes(seed.as_mut());
    let key = SigningKey::from_bytes(&seed);
    let public = public_key_text(&key.verifying_key());
    let pub_path = pub_path_of(secret_path);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SignatureError::Io { path, source }
    };
    if pub_path.exists() {
        return Err(SignatureError::Io {
            path: pub_path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "already exists"),
        });
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(secret_path)
        .map_err(io(secret_path))?;
    let encoded = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(seed.as_ref()));
    let mut line = Zeroizing::new(String::with_capacity(128));
    line.push_str(SECRET_PREFIX);
    line.push_str(&encoded);
    line.push('\n');
    f.write_all(line.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(io(secret_path))?;
    let comment = comment.replace(['\n', '\r'], " ");
    let line = if comment.trim().is_empty() {
        format!("{public}\n")
    } else {
        format!("{public} {}\n", comment.trim())
    };
    std::fs::write(&pub_path, line).map_err(io(&pub_path))?;
    Ok(public)
}

/// `KEY.pub` beside `KEY`.
pub fn pub_path_of(secret_path: &Path) -> PathBuf {
    let mut s = secret_path.as_os_str().to_os_string();
    s.push(".pub");
    PathBuf::from(s)
}

/// `FILE.sig` beside `FILE`.
pub fn sig_path_of(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_os_string();
    s.push(".sig");
    PathBuf::from(s)
}

/// Reads a secret key file into pre-sized, zeroized buffers (a growing buffer would leave
/// copies of the key in freed memory).
fn read_secret(path: &Path) -> Result<SigningKey, SignatureError> {
    use std::io::Read;
    let io = |source| SignatureError::Io {
        path: path.to_path_buf(),
        source,
    };
    let format = |reason: &str| SignatureError::Format {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len() as usize;
    if len > 1024 {
        return Err(format(
            "not an airlock secret key (made by `airlock plugin keygen`)",
        ));
    }
    let mut text = Zeroizing::new(Vec::with_capacity(1025));
    file.by_ref()
        .take(1024)
        .read_to_end(&mut text)
        .map_err(io)?;
    let line = std::str::from_utf8(&text)
        .map_err(|_| format("not an airlock secret key (made by `airlock plugin keygen`)"))?;
    let b64 = line
        .trim()
        .strip_prefix(SECRET_PREFIX)
        .ok_or_else(|| format("not an airlock secret key (made by `airlock plugin keygen`)"))?;
    let mut buf = Zeroizing::new([0u8; 64]);
    let n = base64::engine::general_purpose::STANDARD
        .decode_slice(b64, buf.as_mut())
        .map_err(|_| format("the secret key is not base64"))?;
    if n != 32 {
        return Err(format("an ed25519 secret key is 32 bytes"));
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    seed.copy_from_slice(&buf[..32]);
    Ok(SigningKey::from_bytes(&seed))
}

/// Signs the SHA-256 `sha256` with the secret key in `key_path`.
pub fn sign(sha256: &str, key_path: &Path) -> Result<DetachedSignature, SignatureError> {
    let key = read_secret(key_path)?;
    let signature = key.sign(&message(sha256));
    Ok(DetachedSignature {
        format: SIGNATURE_FORMAT.to_string(),
        sha256: sha256.to_string(),
        key: public_key_text(&key.verifying_key()),
        signature: base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()),
    })
}

/// The trusted public keys: every `*.pub` file in `dir` (none when it does not exist).
pub fn trusted_keys(dir: &Path) -> Result<Vec<VerifyingKey>, SignatureError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(SignatureError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut keys = Vec::new();
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pub"))
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|source| SignatureError::Io {
            path: path.clone(),
            source,
        })?;
        let key = parse_public_key(text.trim())
            .map_err(|reason| SignatureError::Format { path, reason })?;
        keys.push(key);
    }
    Ok(keys)
}

/// Checks the signature file `sig_path` against the plugin digest and the trusted keys.
/// Returns the signer's public key text.
pub fn verify(
    sig_path: &Path,
    sha256: &str,
    trusted: &[VerifyingKey],
    trusted_dir: &Path,
) -> Result<String, SignatureError> {
    let bad = |reason: String| SignatureError::Bad {
        path: sig_path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(sig_path).map_err(|source| SignatureError::Io {
        path: sig_path.to_path_buf(),
        source,
    })?;
    if bytes.len() > 64 << 10 {
        return Err(bad("the file is larger than any signature".into()));
    }
    let sig: DetachedSignature =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a signature file: {e}")))?;
    if sig.format != SIGNATURE_FORMAT {
        return Err(bad(format!(
            "unknown format `{}` (expected {SIGNATURE_FORMAT})",
            sig.format
        )));
    }
    if sig.sha256 != sha256 {
        return Err(bad(format!(
            "it signs sha256 {}, the plugin's sha256 is {sha256}",
            sig.sha256
        )));
    }
    let key = parse_public_key(&sig.key).map_err(bad)?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&sig.signature)
        .map_err(|e| bad(format!("signature is not base64: {e}")))?;
    let raw: [u8; 64] = raw
        .try_into()
        .map_err(|_| bad("an ed25519 signature is 64 bytes".into()))?;
    let signature = Signature::from_bytes(&raw);
    key.verify_strict(&message(sha256), &signature)
        .map_err(|_| bad("the signature does not match the key and digest".into()))?;
    if !trusted.contains(&key) {
        return Err(SignatureError::Untrusted {
            path: sig_path.to_path_buf(),
            key: sig.key,
            trusted_dir: trusted_dir.to_path_buf(),
        });
    }
    Ok(public_key_text(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify_round_trip_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("author.key");
        let public = generate(&key, "author@example").unwrap();
        assert!(generate(&key, "again").is_err(), "never overwrites a key");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&key).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let trusted_dir = dir.path().join("trusted");
        std::fs::create_dir(&trusted_dir).unwrap();
        std::fs::copy(pub_path_of(&key), trusted_dir.join("author.pub")).unwrap();
        let trusted = trusted_keys(&trusted_dir).unwrap();
        assert_eq!(trusted.len(), 1);

        let digest = "ab".repeat(32);
        let sig = sign(&digest, &key).unwrap();
        assert_eq!(sig.key, public);
        let sig_path = dir.path().join("p.wasm.sig");
        std::fs::write(&sig_path, serde_json::to_vec(&sig).unwrap()).unwrap();
        assert_eq!(
            verify(&sig_path, &digest, &trusted, &trusted_dir).unwrap(),
            public
        );
        // Another digest: refused.
        let other = "cd".repeat(32);
        assert!(matches!(
            verify(&sig_path, &other, &trusted, &trusted_dir),
            Err(SignatureError::Bad { .. })
        ));
        // A signature claiming the other digest but made for the first: refused.
        let mut forged = sig.clone();
        forged.sha256 = other.clone();
        std::fs::write(&sig_path, serde_json::to_vec(&forged).unwrap()).unwrap();
        assert!(matches!(
            verify(&sig_path, &other, &trusted, &trusted_dir),
            Err(SignatureError::Bad { .. })
        ));
        // Untrusted key.
        std::fs::write(&sig_path, serde_json::to_vec(&sig).unwrap()).unwrap();
        assert!(matches!(
            verify(&sig_path, &digest, &[], &trusted_dir),
            Err(SignatureError::Untrusted { .. })
        ));
    }
}
