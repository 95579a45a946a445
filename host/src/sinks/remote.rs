//! The upload engine every remote sink shares (S3-compatible storage, HTTPS tenant).
//!
//! A run is spooled into `<home>/spool/<run-id>/`. Once extraction finished and the manifest is
//! written there, the spool is *sealed* (it survives a crash or Ctrl-C) and its files are put,
//! one by one, through the sink's [`ObjectTarget`]; each confirmed file is appended to the
//! spool's journal with its SHA-256. The manifest goes up last, only after every file is
//! confirmed: it is the commit marker. `airlock upload --resume RUN` puts what the journal does
//! not confirm yet and then the manifest; the spool is removed once the manifest is confirmed.
//!
//! A sink only says how one object is put and how the manifest is committed; the spool, the
//! journal, the resume, the retries (exponential backoff with jitter) and the order are here,
//! and spooled files are read only through [`SpoolFile`].

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::SinkConfig;
use crate::pipeline::manifest::Manifest;
use crate::pipeline::scan::OutboundScanner;
use crate::pipeline::spool::{open_spooled, SpoolKey};
use crate::state::RunAudit;

/// The spool's journal of confirmed uploads.
const JOURNAL: &str = "upload-journal.jsonl";
/// The sink settings the spool was sealed with (GUIDs only), for `upload --resume`.
const SINK_FILE: &str = "sink.json";
/// The run's spool key, wrapped by the home's vault key.
const KEY_FILE: &str = "spool.key";
/// The manifest, written last locally and uploaded last.
pub const MANIFEST: &str = "manifest.json";

/// Why an upload failed. The spool is kept for `airlock upload --resume` unless it says otherwise.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The sink settings are wrong.
    #[error("sink: {0}")]
    Config(String),
    /// A sink credential could not be resolved or may not be used.
    #[error("sink credential: {0}")]
    Credential(String),
    /// The local spool could not be read or written.
    #[error("spool: {0}")]
    Spool(String),
    /// The store refused or did not answer after the retries (retried).
    #[error("upload failed: {0}")]
    Store(String),
    /// The store refused for good (credentials, permissions, TLS trust); not retried.
    #[error("upload refused: {0}")]
    Refused(String),
}

/// Where a remote sink puts a run's objects. Object names are fixed per run (`run_id` and the
/// file name), so putting a file again overwrites it with the same bytes.
#[async_trait::async_trait]
pub trait ObjectTarget: Send + Sync {
    /// Where the objects of `run_id` go, for reports (`s3://bucket/prefix/run-id/`).
    fn url(&self, run_id: &str) -> String;

    /// Puts one spooled file of `run_id` under its name and confirms the store holds it; returns
    /// a tag the store gave it (an ETag), for the journal. A [`SinkError::Store`] is retried.
    async fn put(&self, run_id: &str, file: &SpoolFile) -> Result<Option<String>, SinkError>;

    /// Puts the manifest of `run_id`, the commit marker; called only once every file is
    /// confirmed. A [`SinkError::Store`] is retried.
    async fn commit(&self, run_id: &str, manifest: &[u8]) -> Result<(), SinkError>;

    /// Puts the log of the failed run `run_id` beside the runs (`failed/<run-id>.jsonl`), never
    /// inside one; returns where it went.
    async fn put_failed_log(&self, run_id: &str, log: &[u8]) -> Result<String, SinkError>;
}

/// One file of a sealed spool, as the manifest lists it. The only reader of spooled bytes.
#[derive(Debug, Clone)]
pub struct SpoolFile {
    path: PathBuf,
    name: String,
    bytes: u64,
    sha256: String,
    key: Option<Arc<SpoolKey>>,
}

/// A reader over a spooled file's bytes (decrypted when the spool is encrypted).
pub struct SpoolReader {
    inner: Box<dyn Read + Send>,
}

impl Read for SpoolReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

impl SpoolFile {
    fn new(dir: &Path, name: &str, bytes: u64, sha256: &str, key: Option<Arc<SpoolKey>>) -> Self {
        SpoolFile {
            path: dir.join(name),
            name: name.to_string(),
            bytes,
            sha256: sha256.to_string(),
            key,
        }
    }

    /// The file name inside the run (`table.jsonl`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its size in bytes, as the manifest says.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Its SHA-256 (lowercase hex), as the manifest says.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    fn spool_error(&self, e: std::io::Error) -> SinkError {
        SinkError::Spool(format!("{}: {e}", self.path.display()))
    }

    /// Opens the file for reading (decrypting an encrypted spool).
    pub fn open(&self) -> Result<SpoolReader, SinkError> {
        let inner =
            open_spooled(&self.path, self.key.as_deref()).map_err(|e| self.spool_error(e))?;
        Ok(SpoolReader { inner })
    }

    /// Reads the whole file (for files small enough to send in one request).
    pub fn read_all(&self) -> Result<Vec<u8>, SinkError> {
        let mut out = Vec::with_capacity(self.bytes.min(64 << 20) as usize);
        self.open()?
            .read_to_end(&mut out)
            .map_err(|e| self.spool_error(e))?;
        Ok(out)
    }

    /// Fills `buf` as far as the file goes; returns how many bytes were read (0 at the end).
    fn read_full(reader: &mut SpoolReader, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match reader.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    /// The file as a stream of chunks of at most `chunk` bytes, for a streamed request body.
    /// A file that ends before its manifest size is an error, not a short upload.
    pub fn stream(
        &self,
        chunk: usize,
    ) -> Result<
        impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
        SinkError,
    > {
        let reader = self.open()?;
        let state = (reader, self.bytes, chunk.max(1));
        Ok(futures_util::stream::unfold(
            Some(state),
            |state| async move {
                let (mut reader, left, chunk) = state?;
                if left == 0 {
                    return None;
                }
                let mut buf = vec![0u8; chunk.min(left as usize)];
                match SpoolFile::read_full(&mut reader, &mut buf) {
                    Ok(0) => Some((
                        Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "the spooled file is shorter than the manifest says",
                        )),
                        None,
                    )),
                    Ok(n) => {
                        buf.truncate(n);
                        Some((
                            Ok(bytes::Bytes::from(buf)),
                            Some((reader, left - n as u64, chunk)),
                        ))
                    }
                    Err(e) => Some((Err(e), None)),
                }
            },
        ))
    }

    /// Checks the file's SHA-256 and size against the manifest.
    fn verify(&self) -> Result<(), SinkError> {
        let mut reader = self.open()?;
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            let n = reader.read(&mut buf).map_err(|e| self.spool_error(e))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            hash.update(&buf[..n]);
        }
        if total != self.bytes || hex::encode(hash.finalize()) != self.sha256 {
            return Err(SinkError::Spool(format!(
                "{}: its size or SHA-256 differs from the manifest's; the spool was changed, run again",
                self.path.display()
            )));
        }
        Ok(())
    }
}

/// What a run's wrapped spool key is bound to.
fn key_purpose(run_id: &str) -> String {
    format!("spool:{run_id}")
}

/// The spool key of a sealed spool in `home`: unwrapped with the vault key, or `None` for a
/// spool written before spools were encrypted (no `spool.key`).
pub fn load_spool_key(
    home: &crate::home::Home,
    dir: &Path,
    run_id: &str,
) -> Result<Option<Arc<SpoolKey>>, SinkError> {
    let path = dir.join(KEY_FILE);
    let wrapped = match std::fs::read(&path) {
        Ok(w) => w,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SinkError::Spool(format!("{}: {e}", path.display()))),
    };
    let key = home
        .vault()
        .unwrap_key(&key_purpose(run_id), &wrapped)
        .map_err(|e| SinkError::Spool(format!("{}: {e}", path.display())))?;
    Ok(Some(Arc::new(SpoolKey::from_bytes(key))))
}

/// The spool root of a home: `<home>/spool`.
pub fn spool_root(home: &crate::home::Home) -> PathBuf {
    home.dir().join("spool")
}

/// A run's local spool for a remote sink; removed on drop unless sealed. Its files are
/// encrypted under a fresh per-run key, which is held in memory and stored on disk only
/// wrapped by the home's vault key (`spool.key`), so `airlock upload --resume` can read them.
#[derive(Debug)]
pub struct RemoteSpool {
    dir: PathBuf,
    sealed: bool,
    key: Arc<SpoolKey>,
}

impl RemoteSpool {
    /// Creates `<spool root>/<run-id>/` in `home` with a new spool key.
    pub fn create(home: &crate::home::Home, run_id: &str) -> std::io::Result<Self> {
        let root = spool_root(home);
        std::fs::create_dir_all(&root)?;
        let dir = root.join(run_id);
        std::fs::create_dir(&dir)?;
        let spool = RemoteSpool {
            dir,
            sealed: false,
            key: Arc::new(SpoolKey::generate()),
        };
        let wrapped = home
            .vault()
            .wrap_key(&key_purpose(run_id), spool.key.bytes())
            .map_err(std::io::Error::other)?;
        write_synced(&spool.dir.join(KEY_FILE), &wrapped)?;
        Ok(spool)
    }

    /// The directory files are spooled into.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key the spool's files are encrypted under.
    pub fn key(&self) -> Arc<SpoolKey> {
        self.key.clone()
    }

    /// Writes the sink settings and then the manifest, synced: from here on the spool is kept
    /// until its upload is confirmed.
    pub fn seal(mut self, manifest: &Manifest, sink: &SinkConfig) -> std::io::Result<PathBuf> {
        let mut sink = sink.clone();
        // The fault hook applies to the first attempt only; a resume uploads for real.
        match &mut sink {
            SinkConfig::S3(s3) => s3.fail_after_files = None,
            SinkConfig::Https(https) => https.fail_after_files = None,
            SinkConfig::Local { .. } => {}
        }
        write_synced(
            &self.dir.join(SINK_FILE),
            &serde_json::to_vec_pretty(&sink).map_err(std::io::Error::other)?,
        )?;
        let mut json = serde_json::to_vec_pretty(manifest).map_err(std::io::Error::other)?;
        json.push(b'\n');
        write_synced(&self.dir.join(MANIFEST), &json)?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        self.sealed = true;
        Ok(self.dir.clone())
    }
}

impl Drop for RemoteSpool {
    fn drop(&mut self) {
        if !self.sealed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Runs `attempt` until it succeeds, fails for good, or `retries` more attempts failed, with
/// exponential backoff and full jitter between attempts. Only [`SinkError::Store`] (timeouts,
/// dropped connections, 5xx) is retried. Uploads are idempotent here: object names are fixed
/// per run and the bytes are the spool's.
pub async fn with_retries<T, F, Fut>(retries: u32, mut attempt: F) -> Result<T, SinkError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SinkError>>,
{
    let mut n = 0u32;
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(SinkError::Store(e)) if n < retries => {
                n += 1;
                let cap = 200u64.saturating_mul(1 << n.min(6)).min(15_000);
                let jitter = std::hash::BuildHasher::hash_one(
                    &std::collections::hash_map::RandomState::new(),
                    n,
                ) % cap.max(1);
                tracing::info!("upload attempt {n} failed ({e}); retrying in {jitter} ms");
                tokio::time::sleep(Duration::from_millis(jitter.max(50))).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// One confirmed upload in the journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct JournalEntry {
    file: String,
    sha256: String,
    bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
}

fn read_journal(dir: &Path) -> Result<BTreeMap<String, JournalEntry>, SinkError> {
    let path = dir.join(JOURNAL);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(SinkError::Spool(format!("{}: {e}", path.display()))),
    };
    let mut out = BTreeMap::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(|e| SinkError::Spool(format!("{}: {e}", path.display())))?;
        // A line torn by a crash is ignored: that file is simply uploaded again.
        if let Ok(entry) = serde_json::from_str::<JournalEntry>(&line) {
            out.insert(entry.file.clone(), entry);
        }
    }
    Ok(out)
}

fn append_journal(dir: &Path, entry: &JournalEntry) -> Result<(), SinkError> {
    let path = dir.join(JOURNAL);
    let mut line = serde_json::to_vec(entry).map_err(|e| SinkError::Spool(e.to_string()))?;
    line.push(b'\n');
    let mut f = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| SinkError::Spool(format!("{}: {e}", path.display())))?;
    f.write_all(&line)
        .and_then(|_| f.sync_all())
        .map_err(|e| SinkError::Spool(format!("{}: {e}", path.display())))
}

/// What an upload did.
#[derive(Debug, Clone, Serialize)]
pub struct UploadReport {
    /// Where the run went (`s3://bucket/prefix/run-id/`, `https://tenant/.../runs/run-id/`).
    pub url: String,
    /// Files uploaded by this call.
    pub uploaded: Vec<String>,
    /// Files the journal already confirmed (same SHA-256), skipped.
    pub skipped: Vec<String>,
    /// The manifest read from the spool.
    pub manifest: Manifest,
}

/// Uploads a sealed spool: every file the journal does not confirm with its manifest SHA-256,
/// then the manifest, then removes the spool. The manifest is never uploaded before every file
/// is confirmed; any failure leaves the spool for `airlock upload --resume`.
pub async fn upload_sealed(
    target: &dyn ObjectTarget,
    dir: &Path,
    run_id: &str,
    key: Option<Arc<SpoolKey>>,
    retries: u32,
    fail_after_files: Option<u32>,
) -> Result<UploadReport, SinkError> {
    let manifest_path = dir.join(MANIFEST);
    let manifest_bytes = std::fs::read(&manifest_path).map_err(|e| {
        SinkError::Spool(format!(
            "{}: {e}; the run's extraction did not finish, so there is nothing to upload (run it again)",
            manifest_path.display()
        ))
    })?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| SinkError::Spool(format!("{}: {e}", manifest_path.display())))?;
    if manifest.run_id != run_id || manifest.status != "complete" {
        return Err(SinkError::Spool(format!(
            "{} is not the complete manifest of run {run_id}",
            manifest_path.display()
        )));
    }
    let journal = read_journal(dir)?;
    let mut report = UploadReport {
        url: target.url(run_id),
        uploaded: Vec::new(),
        skipped: Vec::new(),
        manifest: manifest.clone(),
    };
    for file in manifest.all_files() {
        if file.path.contains('/') || file.path == MANIFEST {
            return Err(SinkError::Spool(format!(
                "the manifest names an unexpected file `{}`",
                file.path
            )));
        }
        if journal
            .get(&file.path)
            .is_some_and(|j| j.sha256 == file.sha256 && j.bytes == file.bytes)
        {
            report.skipped.push(file.path.clone());
            continue;
        }
        let spooled = SpoolFile::new(dir, &file.path, file.bytes, &file.sha256, key.clone());
        spooled.verify()?;
        if fail_after_files.is_some_and(|n| report.uploaded.len() >= n as usize) {
            return Err(SinkError::Store(format!(
                "injected failure after {} files (sink.fail_after_files)",
                report.uploaded.len()
            )));
        }
        let etag = with_retries(retries, || target.put(run_id, &spooled)).await?;
        append_journal(
            dir,
            &JournalEntry {
                file: file.path.clone(),
                sha256: file.sha256.clone(),
                bytes: file.bytes,
                etag,
            },
        )?;
        report.uploaded.push(file.path.clone());
    }
    // Every file is confirmed: the commit marker goes up last.
    with_retries(retries, || target.commit(run_id, &manifest_bytes)).await?;
    let _ = std::fs::remove_dir_all(dir);
    Ok(report)
}

/// A remote sink ready for a run: its target built and its credentials resolved.
pub struct RemoteSink<'a> {
    config: SinkConfig,
    target: Box<dyn ObjectTarget + 'a>,
    retries: u32,
    fail_after_files: Option<u32>,
    credential: String,
    destination: String,
}

impl<'a> RemoteSink<'a> {
    /// For a remote `sink` (`None` for a local one): resolves its credentials from `home`
    /// (audited; registered with the redactor and, during a run, the outbound `scanner`) and
    /// builds its client. `resolve` turns a config-relative path into one the host can open.
    pub async fn prepare(
        sink: &SinkConfig,
        resolve: impl Fn(&str) -> PathBuf,
        home: Option<&'a crate::home::Home>,
        audit: &RunAudit,
        scanner: Option<&OutboundScanner>,
    ) -> Result<Option<RemoteSink<'a>>, SinkError> {
        let absolute = |p: &Option<String>| p.as_ref().map(|p| resolve(p).display().to_string());
        match sink {
            SinkConfig::Local { .. } => Ok(None),
            SinkConfig::S3(s3) => {
                let mut s3 = s3.clone();
                s3.ca_file = absolute(&s3.ca_file);
                let key = super::s3::resolve_access_key(home, &s3, audit, scanner).await?;
                let target = super::s3::S3Target::new(&s3, &key)?;
                Ok(Some(RemoteSink {
                    retries: s3.retries,
                    fail_after_files: s3.fail_after_files,
                    credential: s3.credential.clone(),
                    destination: s3.destination(),
                    config: SinkConfig::S3(s3),
                    target: Box::new(target),
                }))
            }
            SinkConfig::Https(https) => {
                let mut https = https.clone();
                https.ca_file = absolute(&https.ca_file);
                let Some(home) = home else {
                    return Err(SinkError::Config(
                        "an https sink needs an airlock home for its credentials (use `airlock run`, which opens $AIRLOCK_HOME)".into(),
                    ));
                };
                let target =
                    super::https::HttpsTarget::connect(&https, home, audit, scanner).await?;
                Ok(Some(RemoteSink {
                    retries: https.retries,
                    fail_after_files: https.fail_after_files,
                    credential: https.api_key.clone(),
                    destination: https.destination()?,
                    config: SinkConfig::Https(https),
                    target: Box::new(target),
                }))
            }
        }
    }

    /// The settings the spool is sealed with (paths made absolute; GUIDs only).
    pub fn config(&self) -> &SinkConfig {
        &self.config
    }

    /// Uploads the sealed spool `dir` of `run_id` (its files encrypted under `key`), the
    /// manifest last.
    pub async fn upload(
        &self,
        dir: &Path,
        run_id: &str,
        key: Option<Arc<SpoolKey>>,
    ) -> Result<UploadReport, SinkError> {
        upload_sealed(
            self.target.as_ref(),
            dir,
            run_id,
            key,
            self.retries,
            self.fail_after_files,
        )
        .await
    }
}

impl RemoteSink<'_> {
    /// Puts the log of the failed run `run_id` beside the runs, with the sink's retries.
    pub async fn put_failed_log(&self, run_id: &str, log: &[u8]) -> Result<String, SinkError> {
        with_retries(self.retries, || self.target.put_failed_log(run_id, log)).await
    }
}

/// `airlock upload --resume RUN`: finishes the upload of a sealed spool in `home`, whichever
/// remote sink it was sealed for.
pub async fn resume_upload(
    home: &crate::home::Home,
    run_id: &str,
) -> Result<UploadReport, SinkError> {
    if uuid::Uuid::parse_str(run_id).is_err() {
        return Err(SinkError::Config(format!("`{run_id}` is not a run id")));
    }
    let dir = spool_root(home).join(run_id);
    let sink_path = dir.join(SINK_FILE);
    let text = std::fs::read(&sink_path).map_err(|e| {
        SinkError::Spool(format!(
            "no sealed spool for run {run_id} ({}: {e}); either its upload finished, or its extraction did not (run the workflow again)",
            sink_path.display()
        ))
    })?;
    // Spools sealed before the sink kind was recorded hold bare S3 settings.
    let sink: SinkConfig = serde_json::from_slice(&text)
        .or_else(|e| {
            serde_json::from_slice::<super::s3::S3SinkConfig>(&text)
                .map(SinkConfig::S3)
                .map_err(|_| e)
        })
        .map_err(|e| SinkError::Spool(format!("{}: {e}", sink_path.display())))?;
    sink.check().map_err(SinkError::Config)?;
    let audit = RunAudit::new(Some(home.state().clone()), run_id, None, None);
    let Some(remote) =
        RemoteSink::prepare(&sink, |p: &str| PathBuf::from(p), Some(home), &audit, None).await?
    else {
        return Err(SinkError::Config(format!(
            "run {run_id} was spooled for a local sink; there is nothing to upload"
        )));
    };
    let key = load_spool_key(home, &dir, run_id)?;
    let report = upload_sealed(
        remote.target.as_ref(),
        &dir,
        run_id,
        key,
        remote.retries,
        None,
    )
    .await?;
    audit.record(
        "upload",
        "ok",
        Some(&remote.credential),
        Some(&remote.destination),
        Some(&format!(
            "resumed: {} uploaded, {} already confirmed",
            report.uploaded.len(),
            report.skipped.len()
        )),
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsealed_spool_is_removed() {
        let root = tempfile::tempdir().unwrap();
        let home = crate::home::Home::open(root.path()).unwrap();
        let spool = RemoteSpool::create(&home, "r1").unwrap();
        std::fs::write(spool.dir().join("table.jsonl"), "{}\n").unwrap();
        drop(spool);
        assert!(!spool_root(&home).join("r1").exists());
    }

    #[test]
    fn spool_files_are_encrypted_and_the_key_is_wrapped_by_the_vault() {
        use crate::pipeline::asset::AssetKind;
        use crate::pipeline::spool::SpoolWriter;
        let root = tempfile::tempdir().unwrap();
        let home = crate::home::Home::open(root.path()).unwrap();
        let spool = RemoteSpool::create(&home, "r2").unwrap();
        let mut w = SpoolWriter::encrypted(spool.dir(), spool.key());
        w.write_line(AssetKind::Table, br#"{"name":"customers_secretive"}"#)
            .unwrap();
        let files = w.finish().unwrap();
        let raw = std::fs::read(spool.dir().join("table.jsonl")).unwrap();
        assert!(
            !raw.windows(9).any(|w| w == b"customers"),
            "no plaintext on disk"
        );
        let wrapped = std::fs::read(spool.dir().join(KEY_FILE)).unwrap();
        assert!(!wrapped.windows(32).any(|w| w == spool.key().bytes()));
        // The key comes back from the vault, and only for its own run.
        let key = load_spool_key(&home, spool.dir(), "r2").unwrap().unwrap();
        assert_eq!(key.bytes(), spool.key().bytes());
        assert!(load_spool_key(&home, spool.dir(), "r3").is_err());
        let f = &files[0];
        let spooled = SpoolFile::new(spool.dir(), &f.path, f.bytes, &f.sha256, Some(key));
        spooled.verify().unwrap();
        assert_eq!(
            spooled.read_all().unwrap(),
            b"{\"name\":\"customers_secretive\"}\n"
        );
        // Without the key the bytes are not the manifest's.
        assert!(
            SpoolFile::new(spool.dir(), &f.path, f.bytes, &f.sha256, None)
                .verify()
                .is_err()
        );
    }

    #[test]
    fn a_changed_spool_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.jsonl"), "{}\n").unwrap();
        let sha = hex::encode(Sha256::digest(b"{}\n"));
        SpoolFile::new(dir.path(), "t.jsonl", 3, &sha, None)
            .verify()
            .unwrap();
        let e = SpoolFile::new(dir.path(), "t.jsonl", 4, &sha, None)
            .verify()
            .unwrap_err();
        assert!(e.to_string().contains("differs"), "{e}");
        std::fs::write(dir.path().join("t.jsonl"), "{}}").unwrap();
        assert!(SpoolFile::new(dir.path(), "t.jsonl", 3, &sha, None)
            .verify()
            .is_err());
    }

    #[tokio::test]
    async fn a_stream_yields_the_file_and_fails_when_it_is_short() {
        use futures_util::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        std::fs::write(dir.path().join("t.jsonl"), &data).unwrap();
        let f = SpoolFile::new(dir.path(), "t.jsonl", data.len() as u64, "", None);
        let chunks: Vec<_> = f.stream(4096).unwrap().collect().await;
        assert_eq!(chunks.len(), 3);
        let joined: Vec<u8> = chunks
            .into_iter()
            .flat_map(|c| c.unwrap().to_vec())
            .collect();
        assert_eq!(joined, data);
        let short = SpoolFile::new(dir.path(), "t.jsonl", data.len() as u64 + 1, "", None);
        let last = short.stream(4096).unwrap().collect::<Vec<_>>().await;
        assert!(last.last().unwrap().is_err());
    }
}
