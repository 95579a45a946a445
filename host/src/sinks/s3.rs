//! The S3-compatible object-storage sink, through the `object_store` crate (rustls + ring).
//!
//! A run is spooled into `<home>/spool/<run-id>/`. Once extraction finished and the manifest is
//! written there, the spool is *sealed* (it survives a crash or Ctrl-C) and its files are
//! uploaded as `<prefix>/<run-id>/<file>`; each confirmed upload is appended to the spool's
//! journal with its SHA-256. The manifest goes up last, only after every file is confirmed:
//! it is the commit marker. `airlock upload --resume RUN` uploads what the journal does not
//! confirm yet and then the manifest; the spool is removed once the manifest is confirmed.

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, AwsCredential};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, Certificate, ClientOptions, ObjectStore, PutPayload, RetryConfig,
    StaticCredentialProvider, WriteMultipart,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::pipeline::manifest::Manifest;
use crate::pipeline::scan::OutboundScanner;
use crate::secrets::SecretString;
use crate::state::RunAudit;

/// The spool's journal of confirmed uploads.
const JOURNAL: &str = "upload-journal.jsonl";
/// The sink settings the spool was sealed with (GUIDs only), for `upload --resume`.
const SINK_FILE: &str = "sink.json";
/// The manifest, written last locally and uploaded last.
const MANIFEST: &str = "manifest.json";

/// The `[sink]` table with `kind = "s3"`. Holds credential GUIDs, never secrets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct S3SinkConfig {
    /// The bucket.
    pub bucket: String,
    /// Key prefix; objects are `<prefix>/<run-id>/<file>`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// A custom endpoint (`https://s3.internal:9000`); default: AWS for `region`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The region (default `us-east-1`).
    #[serde(default = "default_region")]
    pub region: String,
    /// GUID of the credential: its user is the access key id, its secret the secret key.
    pub credential: String,
    /// Extra CA certificates (PEM) to trust for the endpoint, relative to the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Permit a plain `http://` endpoint (testing only: the data travels in clear).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_http: bool,
    /// Server-side encryption: `AES256` or `aws:kms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse: Option<ServerSideEncryption>,
    /// The KMS key for `sse = "aws:kms"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse_kms_key_id: Option<String>,
    /// Files larger than this go up in parts of this size (KiB; default 8192).
    #[serde(default = "default_part_size_kb")]
    pub part_size_kb: u64,
    /// Retries per request on timeouts, connection errors and 5xx (exponential backoff with
    /// jitter; default 5).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Timeout of one request, in seconds (default 120).
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
    /// Testing only: fail the first upload attempt after this many files (never the resume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_after_files: Option<u32>,
}

/// Server-side encryption of uploaded objects.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum ServerSideEncryption {
    /// SSE-S3.
    #[serde(rename = "AES256")]
    Aes256,
    /// SSE-KMS with `sse_kms_key_id`.
    #[serde(rename = "aws:kms")]
    Kms,
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_part_size_kb() -> u64 {
    8192
}
fn default_retries() -> u32 {
    5
}
fn default_timeout_s() -> u64 {
    120
}

impl S3SinkConfig {
    /// Checks what serde cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.bucket.trim().is_empty() {
            return Err("sink.bucket is empty".into());
        }
        if uuid::Uuid::parse_str(&self.credential).is_err() {
            return Err(format!(
                "sink.credential must be a credential GUID (see `airlock credential add`), got `{}`",
                crate::run::redacted(&self.credential)
            ));
        }
        if self.part_size_kb == 0 {
            return Err("sink.part_size_kb must be at least 1".into());
        }
        match (self.sse, &self.sse_kms_key_id) {
            (Some(ServerSideEncryption::Kms), None) => {
                return Err("sink.sse = \"aws:kms\" needs sink.sse_kms_key_id".into())
            }
            (Some(ServerSideEncryption::Aes256) | None, Some(_)) => {
                return Err("sink.sse_kms_key_id is only used with sse = \"aws:kms\"".into())
            }
            _ => {}
        }
        if let Some(e) = &self.endpoint {
            if e.starts_with("http://") && !self.allow_http {
                return Err(format!(
                    "sink.endpoint `{e}` is plain HTTP; use https:// (or allow_http = true for testing)"
                ));
            }
            if !e.starts_with("http://") && !e.starts_with("https://") {
                return Err(format!("sink.endpoint `{e}` must start with https://"));
            }
        }
        Ok(())
    }

    /// `host:port` the uploads go to, for the credential's destination binding.
    pub fn destination(&self) -> String {
        match &self.endpoint {
            Some(e) => {
                let (default_port, rest) = match e.strip_prefix("http://") {
                    Some(r) => ("80", r),
                    None => ("443", e.trim_start_matches("https://")),
                };
                let authority = rest.split('/').next().unwrap_or(rest);
                let has_port = authority
                    .rsplit_once(':')
                    .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
                if has_port {
                    authority.to_string()
                } else {
                    format!("{authority}:{default_port}")
                }
            }
            None => format!("s3.{}.amazonaws.com:443", self.region),
        }
    }

    /// Where the objects of `run_id` go, for reports: `s3://bucket/prefix/run-id/`.
    pub fn url(&self, run_id: &str) -> String {
        format!(
            "s3://{}/{}",
            self.bucket,
            object_key(&self.prefix, run_id, "")
        )
    }
}

/// `<prefix>/<run-id>/<file>` (no leading slash; empty prefix: `<run-id>/<file>`).
pub fn object_key(prefix: &str, run_id: &str, file: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        format!("{run_id}/{file}")
    } else {
        format!("{prefix}/{run_id}/{file}")
    }
}

/// Why an upload failed. The spool is kept for `airlock upload --resume` unless it says otherwise.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The sink settings are wrong.
    #[error("sink: {0}")]
    Config(String),
    /// The access key could not be resolved or may not be used.
    #[error("sink credential: {0}")]
    Credential(String),
    /// The local spool could not be read or written.
    #[error("spool: {0}")]
    Spool(String),
    /// The object store refused or did not answer after the retries.
    #[error("upload failed: {0}")]
    Store(String),
    /// The object store refused for good (credentials, permissions, missing bucket).
    #[error("upload refused: {0}")]
    Refused(String),
}

/// The resolved access key pair. The secret is registered with the redactor and the run's
/// outbound scanner.
pub struct AccessKey {
    id: String,
    secret: SecretString,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AccessKey({}, [redacted])", self.id)
    }
}

/// Resolves the sink's credential from the home's secret stores: checks it is not revoked and
/// that the endpoint is one of its destinations, audits the resolution, and registers the
/// secret with the redactor and (during a run) the outbound scanner.
pub async fn resolve_access_key(
    home: Option<&crate::home::Home>,
    cfg: &S3SinkConfig,
    audit: &RunAudit,
    scanner: Option<&OutboundScanner>,
) -> Result<AccessKey, SinkError> {
    let Some(home) = home else {
        return Err(SinkError::Config(
            "an s3 sink needs an airlock home for its credential (use `airlock run`, which opens $AIRLOCK_HOME)".into(),
        ));
    };
    let guid = &cfg.credential;
    let destination = cfg.destination();
    let record = home
        .state()
        .credential(guid)
        .map_err(|e| SinkError::Credential(format!("sink.credential: {e}")))?;
    let fail = |outcome: &str, message: String| {
        audit.record(
            "resolve",
            outcome,
            Some(guid),
            Some(&destination),
            Some(&message),
        );
        SinkError::Credential(message)
    };
    if let Some(at) = &record.revoked_at {
        return Err(fail(
            "denied",
            format!("sink credential {guid} was revoked at {at}"),
        ));
    }
    if !record
        .destinations
        .iter()
        .any(|d| crate::home::destination_matches(d, &destination))
    {
        return Err(fail(
            "denied",
            format!(
                "sink credential {guid} may not be used for {destination} (its destinations: {}); register the endpoint with the credential",
                record.destinations.join(", ")
            ),
        ));
    }
    let Some(id) = record.username.clone().filter(|u| !u.is_empty()) else {
        return Err(fail(
            "failed",
            format!("sink credential {guid} has no user; its user must be the access key id"),
        ));
    };
    let store = home
        .stores()
        .get(&record.backend)
        .map_err(|e| fail("failed", format!("sink credential {guid}: {e}")))?;
    let secret = store.resolve(&record.locator).await.map_err(|e| {
        fail(
            "failed",
            format!(
                "sink credential {guid} cannot be resolved from the `{}` backend: {e}",
                record.backend
            ),
        )
    })?;
    crate::secrets::redact::Redactor::global().register(&secret);
    if let Some(scanner) = scanner {
        scanner.register(&secret);
    }
    audit.record(
        "resolve",
        "ok",
        Some(guid),
        Some(&destination),
        Some("sink access key"),
    );
    Ok(AccessKey { id, secret })
}

/// A run's local spool for the S3 sink; removed on drop unless sealed.
#[derive(Debug)]
pub struct S3Spool {
    dir: PathBuf,
    sealed: bool,
}

/// The spool root of a home: `<home>/spool`.
pub fn spool_root(home: &crate::home::Home) -> PathBuf {
    home.dir().join("spool")
}

impl S3Spool {
    /// Creates `<root>/<run-id>/`.
    pub fn create(root: &Path, run_id: &str) -> std::io::Result<Self> {
        std::fs::create_dir_all(root)?;
        let dir = root.join(run_id);
        std::fs::create_dir(&dir)?;
        Ok(S3Spool { dir, sealed: false })
    }

    /// The directory files are spooled into.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes the sink settings and then the manifest, synced: from here on the spool is kept
    /// until its upload is confirmed.
    pub fn seal(mut self, manifest: &Manifest, sink: &S3SinkConfig) -> std::io::Result<PathBuf> {
        let mut sink = sink.clone();
        // The fault hook applies to the first attempt only; a resume uploads for real.
        sink.fail_after_files = None;
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

impl Drop for S3Spool {
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

/// The bucket a run goes to, with its request policy.
pub struct S3Target {
    store: AmazonS3,
    cfg: S3SinkConfig,
}

impl S3Target {
    /// Builds the client; `ca_file` must already be resolved against the config's directory.
    pub fn new(cfg: &S3SinkConfig, key: &AccessKey) -> Result<Self, SinkError> {
        let mut options = ClientOptions::new()
            .with_timeout(Duration::from_secs(cfg.timeout_s.max(1)))
            .with_connect_timeout(Duration::from_secs(cfg.timeout_s.clamp(1, 30)))
            .with_allow_http(cfg.allow_http);
        if let Some(ca) = &cfg.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| SinkError::Config(format!("sink.ca_file {ca}: {e}")))?;
            let certs = Certificate::from_pem_bundle(&pem)
                .map_err(|e| SinkError::Config(format!("sink.ca_file {ca}: {e}")))?;
            if certs.is_empty() {
                return Err(SinkError::Config(format!(
                    "sink.ca_file {ca} holds no PEM certificate"
                )));
            }
            for c in certs {
                options = options.with_root_certificate(c);
            }
        }
        let credential = AwsCredential {
            key_id: key.id.clone(),
            secret_key: key.secret.expose().to_string(),
            token: None,
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&cfg.bucket)
            .with_region(&cfg.region)
            .with_credentials(Arc::new(StaticCredentialProvider::new(credential)))
            .with_allow_http(cfg.allow_http)
            .with_client_options(options)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(15),
                    base: 2.0,
                },
                max_retries: cfg.retries as usize,
                retry_timeout: Duration::from_secs(cfg.timeout_s.max(1) * 3),
            });
        if let Some(e) = &cfg.endpoint {
            builder = builder
                .with_endpoint(e.trim_end_matches('/'))
                .with_virtual_hosted_style_request(false);
        }
        match cfg.sse {
            Some(ServerSideEncryption::Aes256) => {
                let key: AmazonS3ConfigKey = "aws_server_side_encryption"
                    .parse()
                    .map_err(|e| SinkError::Config(format!("sink.sse: {e}")))?;
                builder = builder.with_config(key, "AES256");
            }
            Some(ServerSideEncryption::Kms) => {
                builder =
                    builder.with_sse_kms_encryption(cfg.sse_kms_key_id.clone().unwrap_or_default());
            }
            None => {}
        }
        let store = builder
            .build()
            .map_err(|e| SinkError::Config(crate::run::redacted(&e.to_string())))?;
        Ok(S3Target {
            store,
            cfg: cfg.clone(),
        })
    }

    fn path(&self, run_id: &str, file: &str) -> ObjectPath {
        ObjectPath::from(object_key(&self.cfg.prefix, run_id, file))
    }

    /// Uploads one local file and confirms its size with a HEAD; returns the ETag.
    async fn put_file(&self, local: &Path, key: &ObjectPath) -> Result<Option<String>, SinkError> {
        let size = std::fs::metadata(local)
            .map_err(|e| SinkError::Spool(format!("{}: {e}", local.display())))?
            .len();
        let part = self.cfg.part_size_kb.saturating_mul(1024) as usize;
        if size as usize <= part {
            let bytes = std::fs::read(local)
                .map_err(|e| SinkError::Spool(format!("{}: {e}", local.display())))?;
            self.store
                .put(key, PutPayload::from(bytes))
                .await
                .map_err(store_error)?;
        } else {
            let upload = self.store.put_multipart(key).await.map_err(store_error)?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, part);
            let mut file = std::fs::File::open(local)
                .map_err(|e| SinkError::Spool(format!("{}: {e}", local.display())))?;
            let mut buf = vec![0u8; part.min(8 << 20)];
            loop {
                if let Err(e) = writer.wait_for_capacity(4).await {
                    // Best effort: do not leave the uploaded parts behind in the bucket.
                    let _ = writer.abort().await;
                    return Err(store_error(e));
                }
                let n = match file.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = writer.abort().await;
                        return Err(SinkError::Spool(format!("{}: {e}", local.display())));
                    }
                };
                if n == 0 {
                    break;
                }
                writer.write(&buf[..n]);
            }
            writer.finish().await.map_err(store_error)?;
        }
        let meta = self.store.head(key).await.map_err(store_error)?;
        if meta.size != size {
            return Err(SinkError::Store(format!(
                "{key}: the store holds {} bytes, the spool {size}",
                meta.size
            )));
        }
        Ok(meta.e_tag)
    }
}

fn store_error(e: object_store::Error) -> SinkError {
    // The causes say what went wrong (e.g. "invalid peer certificate: UnknownIssuer").
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    let text = crate::run::redacted(&text);
    match e {
        object_store::Error::NotFound { .. }
        | object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. }
        | object_store::Error::NotSupported { .. }
        | object_store::Error::InvalidPath { .. } => SinkError::Refused(text),
        _ => SinkError::Store(text),
    }
}

/// Runs `attempt` until it succeeds, fails for good, or `retries` more attempts failed, with
/// exponential backoff and full jitter between attempts. Each request inside is already retried
/// by `object_store` on 5xx; this outer loop also covers what it does not retry (a connection
/// that drops in the middle of a PUT). Uploads are idempotent here: object names are fixed per
/// run and the bytes are the spool's.
async fn with_retries<T, F, Fut>(retries: u32, mut attempt: F) -> Result<T, SinkError>
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

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    Ok(hex::encode(hash.finalize()))
}

/// What an upload did.
#[derive(Debug, Clone, Serialize)]
pub struct UploadReport {
    /// `s3://bucket/prefix/run-id/`.
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
    target: &S3Target,
    dir: &Path,
    run_id: &str,
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
        url: target.cfg.url(run_id),
        uploaded: Vec::new(),
        skipped: Vec::new(),
        manifest: manifest.clone(),
    };
    for file in &manifest.files {
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
        let local = dir.join(&file.path);
        let sha = sha256_file(&local)
            .map_err(|e| SinkError::Spool(format!("{}: {e}", local.display())))?;
        if sha != file.sha256 {
            return Err(SinkError::Spool(format!(
                "{}: its SHA-256 differs from the manifest's; the spool was changed, run again",
                local.display()
            )));
        }
        if fail_after_files.is_some_and(|n| report.uploaded.len() >= n as usize) {
            return Err(SinkError::Store(format!(
                "injected failure after {} files (sink.fail_after_files)",
                report.uploaded.len()
            )));
        }
        let key = target.path(run_id, &file.path);
        let etag = with_retries(target.cfg.retries, || target.put_file(&local, &key)).await?;
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
    let manifest_key = target.path(run_id, MANIFEST);
    let meta = with_retries(target.cfg.retries, || async {
        target
            .store
            .put(&manifest_key, PutPayload::from(manifest_bytes.clone()))
            .await
            .map_err(store_error)?;
        target.store.head(&manifest_key).await.map_err(store_error)
    })
    .await?;
    if meta.size != manifest_bytes.len() as u64 {
        return Err(SinkError::Store(format!(
            "{manifest_key}: the store holds {} bytes, the spool {}",
            meta.size,
            manifest_bytes.len()
        )));
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(report)
}

/// `airlock upload --resume RUN`: finishes the upload of a sealed spool in `home`.
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
    let cfg: S3SinkConfig = serde_json::from_slice(&text)
        .map_err(|e| SinkError::Spool(format!("{}: {e}", sink_path.display())))?;
    cfg.check().map_err(SinkError::Config)?;
    let audit = RunAudit::new(Some(home.state().clone()), run_id, None, None);
    let key = resolve_access_key(Some(home), &cfg, &audit, None).await?;
    let target = S3Target::new(&cfg, &key)?;
    let report = upload_sealed(&target, &dir, run_id, None).await?;
    audit.record(
        "upload",
        "ok",
        Some(&cfg.credential),
        Some(&cfg.destination()),
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

    fn cfg() -> S3SinkConfig {
        serde_json::from_value(serde_json::json!({
            "bucket": "b",
            "credential": "4f0c9a6e-2b1d-4c7e-9a55-0d1f3e8b7c21",
        }))
        .unwrap()
    }

    #[test]
    fn keys_and_destinations() {
        assert_eq!(object_key("/a/b/", "r", "t.jsonl"), "a/b/r/t.jsonl");
        assert_eq!(object_key("", "r", "t.jsonl"), "r/t.jsonl");
        let mut c = cfg();
        assert_eq!(c.destination(), "s3.us-east-1.amazonaws.com:443");
        c.endpoint = Some("https://s3.internal/".into());
        assert_eq!(c.destination(), "s3.internal:443");
        c.endpoint = Some("http://127.0.0.1:9000".into());
        assert!(c.check().unwrap_err().contains("plain HTTP"));
        c.allow_http = true;
        c.check().unwrap();
        assert_eq!(c.destination(), "127.0.0.1:9000");
        c.sse = Some(ServerSideEncryption::Kms);
        assert!(c.check().unwrap_err().contains("sse_kms_key_id"));
        c.credential = "AKIAEXAMPLE".into();
        assert!(c.check().unwrap_err().contains("GUID"));
    }

    #[test]
    fn s3_sink_config_parses_and_names_unknown_keys() {
        let text = r#"
[source]
plugin = "sqlite"
database = "shop.db"

[sink]
kind = "s3"
bucket = "catalog"
credential = "4f0c9a6e-2b1d-4c7e-9a55-0d1f3e8b7c21"
sse = "aws:kms"
sse_kms_key_id = "alias/airlock"
"#;
        let c = crate::config::WorkflowConfig::from_toml(text, Path::new("w.toml")).unwrap();
        let crate::config::SinkConfig::S3(s3) = &c.sink else {
            panic!("an s3 sink")
        };
        assert_eq!(s3.sse, Some(ServerSideEncryption::Kms));
        assert_eq!((s3.part_size_kb, s3.retries), (8192, 5));
        let bad = text.replace("sse = ", "secret_key = \"x\"\nsse = ");
        let e = crate::config::WorkflowConfig::from_toml(&bad, Path::new("w.toml")).unwrap_err();
        assert!(e.to_string().contains("secret_key"), "{e}");
        // Inside the tagged `[sink]` table serde reports the table's line.
        assert!(e.to_string().contains("line 6"), "{e}");
    }

    #[test]
    fn unsealed_spool_is_removed() {
        let root = tempfile::tempdir().unwrap();
        let spool = S3Spool::create(root.path(), "r1").unwrap();
        std::fs::write(spool.dir().join("table.jsonl"), "{}\n").unwrap();
        drop(spool);
        assert!(!root.path().join("r1").exists());
    }
}
