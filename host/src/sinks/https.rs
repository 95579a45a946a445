//! The HTTPS tenant sink: each spooled file is `PUT` to `<url>/runs/<run-id>/<file>` and the
//! manifest last to `<url>/runs/<run-id>/manifest.json`, with the API key from the vault as a
//! bearer token, an optional client certificate from the vault for mutual TLS, and the body's
//! SHA-256 in headers the tenant verifies. reqwest on rustls (ring), TLS 1.2 or 1.3 only.
//!
//! On a 401 the API key is resolved from the vault again (it may have been rotated) and the
//! request is sent once more; a second 401 is final. The spool, journal, retries, resume and
//! "manifest last" are the shared engine's ([`super::remote`]).

use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::remote::{ObjectTarget, SinkError, SpoolFile, MANIFEST};
use crate::pipeline::scan::OutboundScanner;
use crate::secrets::SecretString;
use crate::state::RunAudit;
use crate::tls::{ClientIdentity, TlsSetupError};

/// The header carrying the body's SHA-256 as lowercase hex.
pub const SHA256_HEADER: &str = "x-airlock-sha256";
/// The header carrying the run id.
pub const RUN_HEADER: &str = "x-airlock-run-id";
/// Bytes per chunk of a streamed body.
const CHUNK: usize = 256 * 1024;

/// The `[sink]` table with `kind = "https"`. Holds credential GUIDs, never secrets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpsSinkConfig {
    /// A catalog format written beside the run's own files and listed in its manifest
    /// (`datahub` -> `datahub.json`, `openmetadata` -> `openmetadata.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<crate::formats::CatalogFormat>,
    /// Options of that format (`[sink.catalog]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<crate::formats::CatalogOptions>,
    /// Base URL of the tenant's ingest endpoint (`https://tenant.example.com/api/airlock`);
    /// objects are `PUT` to `<url>/runs/<run-id>/<file>`. `https://` only.
    pub url: String,
    /// GUID of the `token` credential whose secret is the API key.
    pub api_key: String,
    /// The header the API key is sent in: `Authorization` (the default) sends
    /// `Bearer <key>`, any other header the bare key.
    #[serde(default = "default_api_key_header")]
    pub api_key_header: String,
    /// GUID of a credential whose secret is a PEM certificate chain followed by its private
    /// key, presented for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<String>,
    /// CA certificates (PEM bundle) trusted for the tenant, relative to the config; added to
    /// the system roots unless `system_roots = false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Whether the system's root certificates are trusted (default true). With `false` only
    /// `ca_file` is trusted.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub system_roots: bool,
    /// Timeout of one request, in seconds (default 120).
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
    /// Timeout of opening a connection (TCP and TLS), in seconds (default 30).
    #[serde(default = "default_connect_timeout_s")]
    pub connect_timeout_s: u64,
    /// Retries per request on timeouts, connection errors, 408, 429 and 5xx (exponential
    /// backoff with jitter; default 5).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Testing only: fail the first upload attempt after this many files (never the resume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_after_files: Option<u32>,
}

fn default_api_key_header() -> String {
    "Authorization".into()
}
fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}
fn default_timeout_s() -> u64 {
    120
}
fn default_connect_timeout_s() -> u64 {
    30
}
fn default_retries() -> u32 {
    5
}

impl HttpsSinkConfig {
    /// Checks what serde cannot.
    pub fn check(&self) -> Result<(), String> {
        self.base_url()?;
        for (key, value) in [
            ("api_key", Some(&self.api_key)),
            ("client_cert", self.client_cert.as_ref()),
        ] {
            if let Some(v) = value {
                if uuid::Uuid::parse_str(v).is_err() {
                    return Err(format!(
                        "sink.{key} must be a credential GUID (see `airlock credential add`), got `{}`",
                        crate::run::redacted(v)
                    ));
                }
            }
        }
        HeaderName::from_bytes(self.api_key_header.as_bytes()).map_err(|_| {
            format!(
                "sink.api_key_header `{}` is not a header name",
                self.api_key_header
            )
        })?;
        if !self.system_roots && self.ca_file.is_none() {
            return Err(
                "sink.system_roots = false needs sink.ca_file: otherwise no server is trusted"
                    .into(),
            );
        }
        if self.timeout_s == 0 || self.connect_timeout_s == 0 {
            return Err("sink.timeout_s and sink.connect_timeout_s must be at least 1".into());
        }
        Ok(())
    }

    /// The parsed base URL: `https`, a host, no user info, query or fragment.
    pub fn base_url(&self) -> Result<Url, String> {
        let url = Url::parse(&self.url).map_err(|e| format!("sink.url `{}`: {e}", self.url))?;
        if url.scheme() != "https" {
            return Err(format!(
                "sink.url `{}` must start with https:// (the API key and the metadata never travel in clear)",
                self.url
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("sink.url `{}` has no host", self.url));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "sink.url must not hold user info; the API key comes from the credential in sink.api_key ({})",
                crate::run::redacted(url.host_str().unwrap_or_default())
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "sink.url `{}` must not have a query or fragment",
                self.url
            ));
        }
        Ok(url)
    }

    /// `host:port` the uploads go to, for the credentials' destination binding.
    pub fn destination(&self) -> Result<String, SinkError> {
        let url = self.base_url().map_err(SinkError::Config)?;
        let host = url.host_str().unwrap_or_default();
        Ok(format!(
            "{host}:{}",
            url.port_or_known_default().unwrap_or(443)
        ))
    }
}

/// The URL of `file` of `run_id` under `base`: `<base>/runs/<run-id>/<file>`.
pub fn object_url(base: &Url, run_id: &str, file: &str) -> Url {
    let mut url = base.clone();
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().extend(["runs", run_id, file]);
    }
    url
}

/// The tenant a run goes to: a client with the run's TLS identity and the API key.
pub struct HttpsTarget<'a> {
    cfg: HttpsSinkConfig,
    base: Url,
    destination: String,
    client: reqwest::Client,
    header: HeaderName,
    api_key: Mutex<SecretString>,
    home: &'a crate::home::Home,
    audit: RunAudit,
}

impl<'a> HttpsTarget<'a> {
    /// Resolves the API key (and the client certificate) from `home` and builds the client;
    /// `ca_file` must already be resolved against the config's directory.
    pub async fn connect(
        cfg: &HttpsSinkConfig,
        home: &'a crate::home::Home,
        audit: &RunAudit,
        scanner: Option<&OutboundScanner>,
    ) -> Result<HttpsTarget<'a>, SinkError> {
        cfg.check().map_err(SinkError::Config)?;
        let base = cfg.base_url().map_err(SinkError::Config)?;
        let destination = cfg.destination()?;
        let header = HeaderName::from_bytes(cfg.api_key_header.as_bytes())
            .map_err(|_| SinkError::Config("sink.api_key_header is not a header name".into()))?;
        let api_key = resolve_secret(
            home,
            &cfg.api_key,
            "api_key",
            &destination,
            audit,
            scanner,
            "sink api key",
        )
        .await?;
        let identity = match &cfg.client_cert {
            Some(guid) => {
                let pem = resolve_secret(
                    home,
                    guid,
                    "client_cert",
                    &destination,
                    audit,
                    scanner,
                    "sink client certificate",
                )
                .await?;
                Some(client_identity(guid, &pem)?)
            }
            None => None,
        };
        let tls = client_tls(cfg, identity)?;
        // The client reaches only the tenant's host, at an address the resolver checked, and
        // follows no redirect (one could carry the API key to another server).
        let host = base.host_str().unwrap_or_default().to_string();
        let client = crate::capabilities::http::policy::operator_client(&[host
            .trim_start_matches('[')
            .trim_end_matches(']')])
        .use_preconfigured_tls(tls)
        .https_only(true)
        .timeout(Duration::from_secs(cfg.timeout_s.max(1)))
        .connect_timeout(Duration::from_secs(cfg.connect_timeout_s.max(1)))
        .user_agent(concat!("airlock/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| SinkError::Config(format!("cannot build the HTTPS client: {e}")))?;
        Ok(HttpsTarget {
            cfg: cfg.clone(),
            base,
            destination,
            client,
            header,
            api_key: Mutex::new(api_key),
            home,
            audit: audit.clone(),
        })
    }

    /// The authentication header's value, built in a zeroizing buffer.
    fn auth_value(&self) -> Result<HeaderValue, SinkError> {
        let key = self
            .api_key
            .lock()
            .map_err(|_| SinkError::Credential("the API key lock is poisoned".into()))?;
        let bearer = self.header == reqwest::header::AUTHORIZATION;
        let mut value = Zeroizing::new(String::with_capacity(7 + key.len()));
        if bearer {
            value.push_str("Bearer ");
        }
        value.push_str(key.expose());
        let mut v = HeaderValue::from_bytes(value.as_bytes()).map_err(|_| {
            SinkError::Credential(format!(
                "the API key of credential {} cannot be sent in a header (it holds a line break or control character)",
                self.cfg.api_key
            ))
        })?;
        v.set_sensitive(true);
        Ok(v)
    }

    /// Resolves the API key again (after a 401: it may have been rotated in the vault).
    async fn reresolve(&self) -> Result<(), SinkError> {
        let key = resolve_secret(
            self.home,
            &self.cfg.api_key,
            "api_key",
            &self.destination,
            &self.audit,
            None,
            "sink api key, re-resolved after a 401",
        )
        .await?;
        let mut slot = self
            .api_key
            .lock()
            .map_err(|_| SinkError::Credential("the API key lock is poisoned".into()))?;
        *slot = key;
        Ok(())
    }

    /// PUTs one object; on a 401 re-resolves the API key once and sends it again.
    async fn put_body(
        &self,
        object: &Outgoing<'_>,
        body: &(dyn Fn() -> Result<reqwest::Body, SinkError> + Send + Sync),
    ) -> Result<(), SinkError> {
        let Outgoing {
            url,
            run_id,
            what,
            content_type,
            bytes,
            sha256,
        } = *object;
        let digest = {
            use base64::Engine as _;
            let raw = hex::decode(sha256)
                .map_err(|_| SinkError::Spool(format!("{what}: invalid SHA-256 `{sha256}`")))?;
            format!(
                "sha-256=:{}:",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        };
        let mut reresolved = false;
        loop {
            let response = self
                .client
                .put(url.clone())
                .header(self.header.clone(), self.auth_value()?)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .header(reqwest::header::CONTENT_LENGTH, bytes)
                .header(SHA256_HEADER, sha256)
                .header("content-digest", &digest)
                .header(RUN_HEADER, run_id)
                .body(body()?)
                .send()
                .await
                .map_err(|e| self.request_error(what, e))?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED {
                if reresolved {
                    let message = format!(
                        "the tenant at {} answered 401 Unauthorized to {what} again after the API key was resolved anew; check the key of credential {} (`airlock credential rotate`)",
                        self.destination, self.cfg.api_key
                    );
                    self.audit.record(
                        "login",
                        "denied",
                        Some(&self.cfg.api_key),
                        Some(&self.destination),
                        Some(&message),
                    );
                    return Err(SinkError::Refused(message));
                }
                self.audit.record(
                    "login",
                    "denied",
                    Some(&self.cfg.api_key),
                    Some(&self.destination),
                    Some("401 Unauthorized from the tenant; resolving the API key again"),
                );
                reresolved = true;
                self.reresolve().await?;
                continue;
            }
            return self.check_response(what, sha256, response).await;
        }
    }

    /// Maps the tenant's answer: 2xx confirms (and an echoed SHA-256 must match), 408, 429
    /// and 5xx are retried, every other status is final.
    async fn check_response(
        &self,
        what: &str,
        sha256: &str,
        mut response: reqwest::Response,
    ) -> Result<(), SinkError> {
        let status = response.status();
        if status.is_success() {
            let echoed = response
                .headers()
                .get(SHA256_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_ascii_lowercase);
            return match echoed {
                Some(e) if e != sha256 => Err(SinkError::Store(format!(
                    "{what}: the tenant stored SHA-256 {e}, the spool has {sha256}"
                ))),
                _ => Ok(()),
            };
        }
        // At most a few KiB of the answer are read: it only explains the status.
        let mut head = Vec::new();
        while head.len() < 4096 {
            match response.chunk().await {
                Ok(Some(chunk)) => head.extend_from_slice(&chunk[..chunk.len().min(4096)]),
                _ => break,
            }
        }
        let text = String::from_utf8_lossy(&head);
        let mut detail: String = text.chars().filter(|c| !c.is_control()).take(300).collect();
        if !detail.is_empty() {
            detail = format!(": {}", crate::run::redacted(&detail));
        }
        let message = format!(
            "the tenant at {} answered {status} to {what}{detail}",
            self.destination
        );
        if status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            Err(SinkError::Store(message))
        } else if status.is_redirection() {
            Err(SinkError::Refused(format!(
                "{message}; redirects are not followed (the API key must not go elsewhere): set sink.url to the final address"
            )))
        } else {
            Err(SinkError::Refused(message))
        }
    }

    /// Describes a failed request without its URL, with its causes; TLS trust failures are
    /// final and say what to configure.
    fn request_error(&self, what: &str, e: reqwest::Error) -> SinkError {
        let timeout = e.is_timeout();
        let connect = e.is_connect();
        let e = e.without_url();
        let mut text = e.to_string();
        let mut tls: Option<String> = None;
        let mut canceled = false;
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            canceled |= cause
                .downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_canceled);
            let cause_text = cause.to_string();
            if !text.contains(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
            if let Some(r) = find_rustls_error(cause) {
                tls.get_or_insert_with(|| tls_hint(r));
            }
            source = cause.source();
        }
        let text = crate::run::redacted(&text);
        let dest = &self.destination;
        match tls {
            Some(hint) => SinkError::Refused(format!(
                "TLS with the tenant at {dest} failed ({text}); {hint}"
            )),
            None if timeout => SinkError::Store(format!("{what} to {dest} timed out: {text}")),
            // With TLS 1.3 a tenant that refuses the client certificate says so after the
            // handshake; its alert can end the connection before the request is sent.
            None if canceled => SinkError::Store(format!(
                "the tenant at {dest} closed the connection before {what} was sent ({text}); if it requires mutual TLS, check that sink.client_cert names a certificate it trusts"
            )),
            None if connect => {
                SinkError::Store(format!("cannot connect to the tenant at {dest}: {text}"))
            }
            None => SinkError::Store(format!("{what} to {dest} failed: {text}")),
        }
    }
}

/// One object about to be PUT.
#[derive(Clone, Copy)]
struct Outgoing<'o> {
    url: &'o Url,
    run_id: &'o str,
    /// The file name, for messages.
    what: &'o str,
    content_type: &'static str,
    bytes: u64,
    /// Lowercase hex.
    sha256: &'o str,
}

/// The rustls error inside `cause`, looking through nested `io::Error`s.
fn find_rustls_error<'e>(
    mut cause: &'e (dyn std::error::Error + 'static),
) -> Option<&'e rustls::Error> {
    loop {
        if let Some(r) = cause.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        cause = cause.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
}

/// What to do about a TLS failure.
fn tls_hint(e: &rustls::Error) -> String {
    use rustls::AlertDescription as A;
    match e {
        rustls::Error::InvalidCertificate(_) => {
            "the tenant's certificate is not trusted for this address: set sink.ca_file to the CA that signed it".into()
        }
        rustls::Error::AlertReceived(
            A::CertificateRequired
            | A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::UnsupportedCertificate
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::AccessDenied,
        ) => "the tenant refused the client certificate: set sink.client_cert to a credential holding a certificate (and key) the tenant trusts".into(),
        rustls::Error::AlertReceived(A::ProtocolVersion) => {
            "the tenant does not speak TLS 1.2 or 1.3".into()
        }
        _ => "check sink.url, sink.ca_file and sink.client_cert".into(),
    }
}

#[async_trait::async_trait]
impl ObjectTarget for HttpsTarget<'_> {
    fn url(&self, run_id: &str) -> String {
        let mut url = object_url(&self.base, run_id, "").to_string();
        if !url.ends_with('/') {
            url.push('/');
        }
        url
    }

    async fn put(&self, run_id: &str, file: &SpoolFile) -> Result<Option<String>, SinkError> {
        let url = object_url(&self.base, run_id, file.name());
        let content_type = if file.name().ends_with(".jsonl") {
            "application/x-ndjson"
        } else {
            "application/octet-stream"
        };
        let body = || file.stream(CHUNK).map(reqwest::Body::wrap_stream);
        let object = Outgoing {
            url: &url,
            run_id,
            what: file.name(),
            content_type,
            bytes: file.bytes(),
            sha256: file.sha256(),
        };
        self.put_body(&object, &body).await?;
        Ok(None)
    }

    async fn commit(&self, run_id: &str, manifest: &[u8]) -> Result<(), SinkError> {
        use sha2::Digest;
        let url = object_url(&self.base, run_id, MANIFEST);
        let sha256 = hex::encode(sha2::Sha256::digest(manifest));
        let bytes = bytes::Bytes::copy_from_slice(manifest);
        let body = || Ok(reqwest::Body::from(bytes.clone()));
        let object = Outgoing {
            url: &url,
            run_id,
            what: MANIFEST,
            content_type: "application/json",
            bytes: manifest.len() as u64,
            sha256: &sha256,
        };
        self.put_body(&object, &body).await
    }

    async fn put_failed_log(&self, run_id: &str, log: &[u8]) -> Result<String, SinkError> {
        use sha2::Digest;
        let mut url = self.base.clone();
        let name = format!("{run_id}.jsonl");
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(["failed", &name]);
        }
        let sha256 = hex::encode(sha2::Sha256::digest(log));
        let bytes = bytes::Bytes::copy_from_slice(log);
        let body = || Ok(reqwest::Body::from(bytes.clone()));
        let object = Outgoing {
            url: &url,
            run_id,
            what: &name,
            content_type: "application/x-ndjson",
            bytes: log.len() as u64,
            sha256: &sha256,
        };
        self.put_body(&object, &body).await?;
        Ok(url.to_string())
    }
}

/// Resolves the sink credential `guid` named by `sink.{field}` for `destination`.
async fn resolve_secret(
    home: &crate::home::Home,
    guid: &str,
    field: &str,
    destination: &str,
    audit: &RunAudit,
    scanner: Option<&OutboundScanner>,
    purpose: &str,
) -> Result<SecretString, SinkError> {
    let setting = format!("sink.{field}");
    let usage = crate::home::CredentialUse {
        guid,
        setting: &setting,
        destination: Some(destination),
        purpose,
    };
    let check = |r: &crate::state::CredentialRecord| {
        if field == "api_key" && r.kind != "token" {
            return Err(format!(
                "is a `{}` credential; the API key must be a `token` credential",
                r.kind
            ));
        }
        Ok(())
    };
    home.resolve_for(&usage, audit, scanner, check)
        .await
        .map(|(_, secret)| secret)
        .map_err(|e| SinkError::Credential(e.to_string()))
}

/// Parses the PEM secret of the `client_cert` credential. Errors never quote the PEM.
fn client_identity(guid: &str, pem: &SecretString) -> Result<ClientIdentity, SinkError> {
    ClientIdentity::from_pem(pem).map_err(|what| {
        SinkError::Credential(format!(
            "the secret of sink.client_cert credential {guid} {what}; it must be the PEM certificate chain followed by its PEM private key"
        ))
    })
}

/// rustls with the ring provider, TLS 1.2 and 1.3, the system roots (unless
/// `system_roots = false`) plus `ca_file`, and the client identity if any.
fn client_tls(
    cfg: &HttpsSinkConfig,
    identity: Option<ClientIdentity>,
) -> Result<rustls::ClientConfig, SinkError> {
    let ca_files: Vec<&std::path::Path> = cfg.ca_file.iter().map(std::path::Path::new).collect();
    let roots = crate::tls::roots(cfg.system_roots, &ca_files, "sink.ca_file")
        .map_err(SinkError::Config)?;
    crate::tls::client_config(roots, identity).map_err(|e| match e {
        TlsSetupError::Setup(m) => SinkError::Config(m),
        TlsSetupError::Identity(m) => SinkError::Credential(format!("sink.client_cert: {m}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg() -> HttpsSinkConfig {
        serde_json::from_value(serde_json::json!({
            "url": "https://tenant.example.com/api/airlock/",
            "api_key": "4f0c9a6e-2b1d-4c7e-9a55-0d1f3e8b7c21",
        }))
        .unwrap()
    }

    #[test]
    fn urls_and_destinations() {
        let c = cfg();
        c.check().unwrap();
        assert_eq!(c.destination().unwrap(), "tenant.example.com:443");
        let base = c.base_url().unwrap();
        assert_eq!(
            object_url(&base, "r1", "table.jsonl").as_str(),
            "https://tenant.example.com/api/airlock/runs/r1/table.jsonl"
        );
        let mut c = cfg();
        c.url = "https://127.0.0.1:8443".into();
        assert_eq!(c.destination().unwrap(), "127.0.0.1:8443");
        assert_eq!(
            object_url(&c.base_url().unwrap(), "r1", MANIFEST).as_str(),
            "https://127.0.0.1:8443/runs/r1/manifest.json"
        );
    }

    #[test]
    fn bad_settings_say_what_to_fix() {
        let mut c = cfg();
        c.url = "http://127.0.0.1:8080".into();
        assert!(c.check().unwrap_err().contains("https://"));
        c.url = "https://user:pw@tenant.example.com".into();
        let e = c.check().unwrap_err();
        assert!(e.contains("user info") && !e.contains("pw"), "{e}");
        c.url = "https://tenant.example.com/?token=x".into();
        assert!(c.check().unwrap_err().contains("query"));
        let mut c = cfg();
        c.api_key = "sk-live-123".into();
        let e = c.check().unwrap_err();
        assert!(e.contains("GUID"), "{e}");
        let mut c = cfg();
        c.system_roots = false;
        assert!(c.check().unwrap_err().contains("ca_file"));
        c.ca_file = Some("ca.pem".into());
        c.check().unwrap();
        c.api_key_header = "bad header".into();
        assert!(c.check().unwrap_err().contains("api_key_header"));
    }

    #[test]
    fn https_sink_config_parses_and_names_unknown_keys() {
        let text = r#"
[source]
plugin = "sqlite"
database = "shop.db"

[sink]
kind = "https"
url = "https://tenant.example.com/api"
api_key = "4f0c9a6e-2b1d-4c7e-9a55-0d1f3e8b7c21"
client_cert = "5f0c9a6e-2b1d-4c7e-9a55-0d1f3e8b7c21"
"#;
        let c = crate::config::WorkflowConfig::from_toml(text, Path::new("w.toml")).unwrap();
        let crate::config::SinkConfig::Https(h) = &c.sink else {
            panic!("an https sink")
        };
        assert_eq!(h.api_key_header, "Authorization");
        assert!(h.system_roots);
        assert_eq!((h.retries, h.timeout_s, h.connect_timeout_s), (5, 120, 30));
        let bad = text.replace("client_cert = ", "token = \"x\"\nclient_cert = ");
        let e = crate::config::WorkflowConfig::from_toml(&bad, Path::new("w.toml")).unwrap_err();
        assert!(e.to_string().contains("token"), "{e}");
        let bad = text.replace("https://tenant", "http://tenant");
        let e = crate::config::WorkflowConfig::from_toml(&bad, Path::new("w.toml")).unwrap_err();
        assert!(e.to_string().contains("https://"), "{e}");
    }

    #[test]
    fn a_client_identity_error_never_quotes_the_pem() {
        let pem = SecretString::new(
            "-----BEGIN CERTIFICATE-----\nnot base64 SECRETCANARY\n-----END CERTIFICATE-----\n"
                .into(),
        );
        let e = client_identity("g", &pem).err().unwrap().to_string();
        assert!(!e.contains("SECRETCANARY"), "{e}");
        let e = client_identity("g", &SecretString::new("SECRETCANARY".into()))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("CERTIFICATE") && !e.contains("SECRETCANARY"),
            "{e}"
        );
    }
}
