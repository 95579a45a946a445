//! Spooling kept assets to disk: one JSON Lines file per asset kind, hashed as it is written.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

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
    out: BufWriter<File>,
    hash: Sha256,
    records: u64,
    bytes: u64,
}

/// Writes assets into `dir`, one `<kind>.jsonl` per kind, opened on first use.
pub struct SpoolWriter {
    dir: PathBuf,
    files: BTreeMap<AssetKind, KindFile>,
}

impl SpoolWriter {
    /// A writer into `dir`, which must exist.
    pub fn new(dir: &Path) -> Self {
        SpoolWriter {
            dir: dir.to_path_buf(),
            files: BTreeMap::new(),
        }
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
                self.files.entry(kind).or_insert(KindFile {
                    name,
                    out: BufWriter::with_capacity(256 * 1024, file),
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
            let file = f.out.into_inner().map_err(|e| e.into_error())?;
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
