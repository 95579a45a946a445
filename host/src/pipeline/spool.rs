//! Spooling kept assets to disk: one JSON Lines file per asset kind, hashed as it is written.
//!
//! A spool that waits for an upload can be **encrypted at rest** ([`SpoolKey`]): each file is
//! then an AES-256-GCM STREAM (the `aead` crate's big-endian 32-bit counter construction):
//! a magic, a random 7-byte nonce prefix, and 64 KiB plaintext chunks each sealed with the
//! file's name as associated data; the last chunk is sealed as the last, so a truncated or
//! reordered file does not decrypt. The manifest's sizes and SHA-256 describe the plaintext.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aead::stream::{DecryptorBE32, EncryptorBE32};
use aes_gcm::aead::{KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Key};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::asset::AssetKind;

/// A spooled file as the manifest describes it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct SpooledFile {
    /// File name inside the run directory.
    pub path: String,
    /// Asset kind of every line.
    pub kind: String,
    /// Number of lines (assets).
    pub records: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// Lowercase hex SHA-256 of the file's bytes.
    pub sha256: String,
}

struct KindFile {
    name: String,
    out: SpoolOut,
    hash: Sha256,
    records: u64,
    bytes: u64,
}

/// Writes assets into `dir`, one `<kind>.jsonl` per kind, opened on first use.
pub struct SpoolWriter {
    dir: PathBuf,
    files: BTreeMap<AssetKind, KindFile>,
    key: Option<Arc<SpoolKey>>,
}

impl SpoolWriter {
    /// A writer of plain files into `dir`, which must exist.
    pub fn new(dir: &Path) -> Self {
        SpoolWriter {
            dir: dir.to_path_buf(),
            files: BTreeMap::new(),
            key: None,
        }
    }

    /// A writer of files encrypted under `key` into `dir`, which must exist.
    pub fn encrypted(dir: &Path, key: Arc<SpoolKey>) -> Self {
        SpoolWriter::new(dir).encrypt_under(key)
    }

    /// This writer, encrypting the files it opens from now on under `key`.
    pub fn encrypt_under(mut self, key: Arc<SpoolKey>) -> Self {
        self.key = Some(key);
        self
    }

    /// Appends one line (without the newline) to the file of `kind`.
    pub fn write_line(&mut self, kind: AssetKind, line: &[u8]) -> std::io::Result<()> {
        let f = match self.files.get_mut(&kind) {
            Some(f) => f,
            None => {
                let name = format!("{}.jsonl", kind.as_str());
                let file = File::options()
                    .write(true)
                    .create_new(true)
                    .open(self.dir.join(&name))?;
                let out = match &self.key {
                    None => SpoolOut::Plain(BufWriter::with_capacity(256 * 1024, file)),
                    Some(key) => SpoolOut::Sealed(Box::new(SealingWriter::new(file, key, &name)?)),
                };
                self.files.entry(kind).or_insert(KindFile {
                    name,
                    out,
                    hash: Sha256::new(),
                    records: 0,
                    bytes: 0,
                })
            }
        };
        f.out.write_all(line)?;
        f.out.write_all(b"\n")?;
        f.hash.update(line);
        f.hash.update(b"\n");
        f.records += 1;
        f.bytes += line.len() as u64 + 1;
        Ok(())
    }

    /// Flushes and syncs every file and describes them.
    pub fn finish(self) -> std::io::Result<Vec<SpooledFile>> {
        let mut out = Vec::new();
        for (kind, f) in self.files {
            let file = f.out.finish()?;
            file.sync_all()?;
            out.push(SpooledFile {
                path: f.name,
                kind: kind.as_str().to_string(),
                records: f.records,
                bytes: f.bytes,
                sha256: hex::encode(f.hash.finalize()),
            });
        }
        Ok(out)
    }
}

/// Writes `bytes` as the new file `name` in `dir` (encrypted under `key` when given), synced,
/// and describes it as `kind` with `records` lines; the hash is of the plain bytes, as for
/// every spooled file.
pub fn write_whole(
    dir: &Path,
    name: &str,
    kind: &str,
    records: u64,
    bytes: &[u8],
    key: Option<&SpoolKey>,
) -> std::io::Result<SpooledFile> {
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(dir.join(name))?;
    let mut out = match key {
        None => SpoolOut::Plain(BufWriter::new(file)),
        Some(key) => SpoolOut::Sealed(Box::new(SealingWriter::new(file, key, name)?)),
    };
    out.write_all(bytes)?;
    out.finish()?.sync_all()?;
    Ok(SpooledFile {
        path: name.to_string(),
        kind: kind.to_string(),
        records,
        bytes: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(bytes)),
    })
}

/// Where one kind's lines go: a plain file, or an encrypting stream.
enum SpoolOut {
    Plain(BufWriter<File>),
    Sealed(Box<SealingWriter>),
}

impl SpoolOut {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            SpoolOut::Plain(w) => w.write_all(bytes),
            SpoolOut::Sealed(w) => w.write_all(bytes),
        }
    }

    fn finish(self) -> std::io::Result<File> {
        match self {
            SpoolOut::Plain(w) => w.into_inner().map_err(|e| e.into_error()),
            SpoolOut::Sealed(w) => (*w).finish(),
        }
    }
}

/// Plaintext bytes per sealed chunk.
const CHUNK: usize = 64 * 1024;
/// AES-GCM tag bytes after each chunk.
const TAG: usize = 16;
/// The first bytes of an encrypted spool file.
const MAGIC: &[u8; 8] = b"ALSPOOL1";
/// Nonce prefix bytes of the STREAM construction (12-byte nonce minus the 5-byte counter).
const PREFIX: usize = 7;

/// A run's spool key: 32 random bytes, zeroized on drop, never written to disk unwrapped.
pub struct SpoolKey(Zeroizing<[u8; 32]>);

impl SpoolKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let generated = Aes256Gcm::generate_key(OsRng);
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(generated.as_slice());
        SpoolKey(key)
    }

    /// A key from its bytes (e.g. unwrapped from the vault).
    pub fn from_bytes(key: Zeroizing<[u8; 32]>) -> Self {
        SpoolKey(key)
    }

    /// The key bytes, for wrapping.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.0[..]))
    }
}

impl std::fmt::Debug for SpoolKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpoolKey([redacted])")
    }
}

fn crypt_error(what: &str, name: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("spool file {name}: {what}"),
    )
}

/// Encrypts a stream of bytes into `file` chunk by chunk.
struct SealingWriter {
    file: BufWriter<File>,
    stream: EncryptorBE32<Aes256Gcm>,
    buf: Zeroizing<Vec<u8>>,
    name: String,
}

impl SealingWriter {
    fn new(file: File, key: &SpoolKey, name: &str) -> std::io::Result<Self> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let prefix = &nonce[..PREFIX];
        let mut file = BufWriter::with_capacity(CHUNK + TAG, file);
        file.write_all(MAGIC)?;
        file.write_all(prefix)?;
        Ok(SealingWriter {
            file,
            stream: EncryptorBE32::from_aead(key.cipher(), prefix.into()),
            buf: Zeroizing::new(Vec::with_capacity(CHUNK)),
            name: name.to_string(),
        })
    }

    fn write_all(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let take = (CHUNK - self.buf.len()).min(bytes.len());
            self.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.buf.len() == CHUNK {
                let sealed = self
                    .stream
                    .encrypt_next(Payload {
                        msg: &self.buf,
                        aad: self.name.as_bytes(),
                    })
                    .map_err(|_| crypt_error("encryption failed", &self.name))?;
                self.file.write_all(&sealed)?;
                self.buf.clear();
            }
        }
        Ok(())
    }

    fn finish(self) -> std::io::Result<File> {
        let SealingWriter {
            mut file,
            stream,
            buf,
            name,
        } = self;
        let sealed = stream
            .encrypt_last(Payload {
                msg: &buf,
                aad: name.as_bytes(),
            })
            .map_err(|_| crypt_error("encryption failed", &name))?;
        file.write_all(&sealed)?;
        file.into_inner().map_err(|e| e.into_error())
    }
}

/// Reads a spooled file: plain when `key` is `None`, else decrypted (and authenticated) chunk
/// by chunk. A tampered, truncated or swapped encrypted file is an `InvalidData` error.
pub fn open_spooled(path: &Path, key: Option<&SpoolKey>) -> std::io::Result<Box<dyn Read + Send>> {
    let file = File::open(path)?;
    let Some(key) = key else {
        return Ok(Box::new(std::io::BufReader::with_capacity(
            256 * 1024,
            file,
        )));
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut file = std::io::BufReader::with_capacity(CHUNK + TAG, file);
    let mut head = [0u8; 8 + PREFIX];
    file.read_exact(&mut head)
        .map_err(|_| crypt_error("not an encrypted spool file", &name))?;
    if &head[..8] != MAGIC {
        return Err(crypt_error("not an encrypted spool file", &name));
    }
    Ok(Box::new(OpeningReader {
        stream: Some(DecryptorBE32::from_aead(key.cipher(), head[8..].into())),
        file,
        sealed: vec![0u8; CHUNK + TAG + 1],
        carried: 0,
        plain: Zeroizing::new(Vec::new()),
        pos: 0,
        name,
    }))
}

struct OpeningReader {
    file: std::io::BufReader<File>,
    stream: Option<DecryptorBE32<Aes256Gcm>>,
    /// One sealed chunk plus one byte of look-ahead (to know whether it is the last).
    sealed: Vec<u8>,
    /// Look-ahead bytes already in `sealed[0]` from the previous read.
    carried: usize,
    plain: Zeroizing<Vec<u8>>,
    pos: usize,
    name: String,
}

impl OpeningReader {
    /// Decrypts the next chunk into `plain`; false at the end of the stream.
    fn refill(&mut self) -> std::io::Result<bool> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(false);
        };
        let mut filled = self.carried;
        while filled < self.sealed.len() {
            let n = self.file.read(&mut self.sealed[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        let aad = self.name.as_bytes();
        let plain = if filled == self.sealed.len() {
            // A full chunk and more follows: not the last one.
            let p = stream
                .decrypt_next(Payload {
                    msg: &self.sealed[..CHUNK + TAG],
                    aad,
                })
                .map_err(|_| crypt_error("tampered, truncated or wrong key", &self.name))?;
            self.sealed[0] = self.sealed[CHUNK + TAG];
            self.carried = 1;
            p
        } else {
            let stream = self.stream.take().expect("stream present");
            stream
                .decrypt_last(Payload {
                    msg: &self.sealed[..filled],
                    aad,
                })
                .map_err(|_| crypt_error("tampered, truncated or wrong key", &self.name))?
        };
        self.plain = Zeroizing::new(plain);
        self.pos = 0;
        Ok(true)
    }
}

impl Read for OpeningReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.plain.len() {
            if !self.refill()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.plain.len() - self.pos);
        out[..n].copy_from_slice(&self.plain[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool(dir: &Path, key: Option<Arc<SpoolKey>>, lines: usize) -> Vec<SpooledFile> {
        let mut w = match key {
            Some(k) => SpoolWriter::encrypted(dir, k),
            None => SpoolWriter::new(dir),
        };
        for i in 0..lines {
            let line = format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(i % 300));
            w.write_line(AssetKind::Table, line.as_bytes()).unwrap();
        }
        w.finish().unwrap()
    }

    fn read_all(path: &Path, key: Option<&SpoolKey>) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        open_spooled(path, key)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn encrypted_files_read_back_as_the_plain_ones() {
        for lines in [0, 1, 700, 2000] {
            let plain_dir = tempfile::tempdir().unwrap();
            let sealed_dir = tempfile::tempdir().unwrap();
            let key = Arc::new(SpoolKey::generate());
            let a = spool(plain_dir.path(), None, lines);
            let b = spool(sealed_dir.path(), Some(key.clone()), lines);
            assert_eq!(a, b, "the manifest describes the plaintext");
            if lines == 0 {
                continue;
            }
            let plain = std::fs::read(plain_dir.path().join("table.jsonl")).unwrap();
            let path = sealed_dir.path().join("table.jsonl");
            let raw = std::fs::read(&path).unwrap();
            assert!(raw.starts_with(MAGIC));
            assert!(
                !raw.windows(8).any(|w| w == b"\"pad\":\"x"),
                "no plaintext on disk"
            );
            assert_eq!(read_all(&path, Some(&key)).unwrap(), plain);
            assert_eq!(hex::encode(Sha256::digest(&plain)), b[0].sha256);
        }
    }

    #[test]
    fn tampering_truncation_and_a_wrong_key_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = Arc::new(SpoolKey::generate());
        spool(dir.path(), Some(key.clone()), 2000);
        let path = dir.path().join("table.jsonl");
        let good = std::fs::read(&path).unwrap();
        assert!(good.len() > 2 * (CHUNK + TAG), "several chunks");
        let refused = |bytes: &[u8], key: &SpoolKey| {
            std::fs::write(&path, bytes).unwrap();
            let e = read_all(&path, Some(key)).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
        };
        let mut flipped = good.clone();
        flipped[100] ^= 1;
        refused(&flipped, &key);
        // Cut at a chunk boundary: the earlier chunk was not sealed as the last one.
        refused(&good[..8 + PREFIX + CHUNK + TAG], &key);
        refused(&good[..good.len() - 1], &key);
        refused(&good, &SpoolKey::generate());
        // Another file's bytes under this name (the name is authenticated).
        std::fs::write(&path, &good).unwrap();
        let other = dir.path().join("column.jsonl");
        std::fs::copy(&path, &other).unwrap();
        assert!(read_all(&other, Some(&key)).is_err());
        assert!(format!("{:?}", key).contains("redacted"));
    }
}
