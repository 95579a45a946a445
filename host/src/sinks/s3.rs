//! The S3-compatible object-storage sink, through the `object_store` crate (rustls + ring).
//!
//! Objects are `<prefix>/<run-id>/<file>`; large files go up as multipart uploads, each object
//! is confirmed by size with a HEAD. The spool, journal, retries, resume and "manifest last"
//! are the shared engine's ([`super::remote`]).

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, AwsCredential};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, PutPayload, RetryConfig, StaticCredentialProvider,
    WriteMultipart,
};
use serde::{Deserialize, Serialize};

use super::remote::{ObjectTarget, SinkError, SpoolFile, MANIFEST};
use crate::pipeline::scan::OutboundScanner;
use crate::secrets::SecretString;
use crate::state::RunAudit;

/// The `[sink]` table with `kind = "s3"`. Holds credential GUIDs, never secrets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct S3SinkConfig {
    /// A catalog format written beside the run's own files and listed in its manifest
    /// (`datahub` -> `datahub.json`, `openmetadata` -> `openmetadata.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<crate::formats::CatalogFormat>,
    /// Options of that format (`[sink.catalog]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<crate::formats::CatalogOptions>,
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
    let destination = cfg.destination();
    let usage = crate::home::CredentialUse {
        guid: &cfg.credential,
        setting: "sink.credential",
        destination: Some(&destination),
        purpose: "sink access key",
    };
    let check = |r: &crate::state::CredentialRecord| {
        if r.username.as_deref().is_none_or(str::is_empty) {
            return Err("has no user; its user must be the access key id".to_string());
        }
        Ok(())
    };
    let (record, secret) = home
        .resolve_for(&usage, audit, scanner, check)
        .await
        .map_err(|e| SinkError::Credential(e.to_string()))?;
    let id = record.username.unwrap_or_default();
    Ok(AccessKey { id, secret })
}

/// The hosts an S3 sink may connect to: its endpoint's, or AWS's regional names.
fn s3_hosts(cfg: &S3SinkConfig) -> Vec<String> {
    let destination = cfg.destination();
    let host = destination
        .rsplit_once(':')
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
        .unwrap_or(&destination)
        .to_string();
    if cfg.endpoint.is_some() {
        vec![host]
    } else {
        vec![
            host,
            format!("{}.s3.{}.amazonaws.com", cfg.bucket, cfg.region),
        ]
    }
}

/// Hands object_store the client the host built.
#[derive(Debug)]
struct CheckedConnector(reqwest::Client);

impl object_store::client::HttpConnector for CheckedConnector {
    fn connect(&self, _: &ClientOptions) -> object_store::Result<object_store::client::HttpClient> {
        Ok(object_store::client::HttpClient::new(self.0.clone()))
    }
}

/// The bucket a run goes to, with its request policy.
pub struct S3Target {
    store: AmazonS3,
    cfg: S3SinkConfig,
}

impl S3Target {
    /// Builds the client; `ca_file` must already be resolved against the config's directory.
    pub fn new(cfg: &S3SinkConfig, key: &AccessKey) -> Result<Self, SinkError> {
        // object_store's HTTP client is built here: rustls (ring, TLS 1.2+, the system roots
        // plus ca_file), no proxy, no redirects, and a resolver that reaches only the sink's
        // host, at an address it checked (never a link-local or multicast one).
        let ca_files: Vec<&std::path::Path> =
            cfg.ca_file.iter().map(std::path::Path::new).collect();
        let roots =
            crate::tls::roots(true, &ca_files, "sink.ca_file").map_err(SinkError::Config)?;
        let tls = crate::tls::client_config(roots, None)
            .map_err(|e| SinkError::Config(format!("{e:?}")))?;
        let hosts = s3_hosts(cfg);
        let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
        let client = crate::capabilities::http::policy::operator_client(&hosts)
            .use_preconfigured_tls(tls)
            .https_only(!cfg.allow_http)
            .timeout(Duration::from_secs(cfg.timeout_s.max(1)))
            .connect_timeout(Duration::from_secs(cfg.timeout_s.clamp(1, 30)))
            .build()
            .map_err(|e| SinkError::Config(format!("cannot build the S3 client: {e}")))?;
        let options = ClientOptions::new().with_allow_http(cfg.allow_http);
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
            .with_http_connector(CheckedConnector(client))
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

    /// Puts `bytes` as one object and confirms its size with a HEAD; returns the ETag.
    async fn put_small(
        &self,
        key: &ObjectPath,
        bytes: Vec<u8>,
    ) -> Result<Option<String>, SinkError> {
        let size = bytes.len() as u64;
        self.store
            .put(key, PutPayload::from(bytes))
            .await
            .map_err(store_error)?;
        self.confirm(key, size).await
    }

    /// Streams `file` up in parts of `part` bytes.
    async fn put_multipart(
        &self,
        key: &ObjectPath,
        file: &SpoolFile,
        part: usize,
    ) -> Result<(), SinkError> {
        let upload = self.store.put_multipart(key).await.map_err(store_error)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, part);
        let mut reader = match file.open() {
            Ok(r) => r,
            Err(e) => {
                let _ = writer.abort().await;
                return Err(e);
            }
        };
        let mut buf = vec![0u8; part.min(8 << 20)];
        loop {
            if let Err(e) = writer.wait_for_capacity(4).await {
                // Best effort: do not leave the uploaded parts behind in the bucket.
                let _ = writer.abort().await;
                return Err(store_error(e));
            }
            let n = match reader.read(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(SinkError::Spool(format!("{}: {e}", file.name())));
                }
            };
            if n == 0 {
                break;
            }
            writer.write(&buf[..n]);
        }
        writer.finish().await.map_err(store_error)?;
        Ok(())
    }

    /// Checks with a HEAD that the store holds `size` bytes under `key`; returns the ETag.
    async fn confirm(&self, key: &ObjectPath, size: u64) -> Result<Option<String>, SinkError> {
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

#[async_trait::async_trait]
impl ObjectTarget for S3Target {
    fn url(&self, run_id: &str) -> String {
        self.cfg.url(run_id)
    }

    async fn put(&self, run_id: &str, file: &SpoolFile) -> Result<Option<String>, SinkError> {
        let key = self.path(run_id, file.name());
        let part = self.cfg.part_size_kb.saturating_mul(1024);
        if file.bytes() <= part {
            self.put_small(&key, file.read_all()?).await
        } else {
            self.put_multipart(&key, file, part as usize).await?;
            self.confirm(&key, file.bytes()).await
        }
    }

    async fn commit(&self, run_id: &str, manifest: &[u8]) -> Result<(), SinkError> {
        let key = self.path(run_id, MANIFEST);
        self.put_small(&key, manifest.to_vec()).await.map(|_| ())
    }

    async fn put_failed_log(&self, run_id: &str, log: &[u8]) -> Result<String, SinkError> {
        let key = ObjectPath::from(object_key(
            &self.cfg.prefix,
            "failed",
            &format!("{run_id}.jsonl"),
        ));
        self.put_small(&key, log.to_vec()).await?;
        Ok(format!("s3://{}/{key}", self.cfg.bucket))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

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
}
