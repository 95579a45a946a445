//! HTTP transport shared by the remote secret backends (OpenBao / Vault, AWS Secrets Manager):
//! rustls with the ring provider and an optional extra CA, no proxies and no redirects (a token
//! never follows a redirect), bounded retries with exponential backoff, and response bodies
//! read into one pre-sized buffer that is zeroized on drop, with the HTTP client's read
//! buffers wiped once they are the last handles to the body's bytes.

use std::path::Path;
use std::time::Duration;

use zeroize::Zeroizing;

use super::SecretStoreError;

/// Largest response body a backend may send.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Settings shared by the remote backends.
#[derive(Debug, Clone)]
pub struct TransportSettings {
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Retries after the first attempt (for connection errors, 429 and 5xx).
    pub retries: u32,
    /// First backoff; doubled after each retry.
    pub backoff: Duration,
    /// The URLs (or bare hosts) the backend is configured with: the client reaches only
    /// their hosts, at addresses its resolver checked (never link-local or multicast ones).
    pub hosts: Vec<String>,
}

/// The host of `url` (`https://vault.corp:8200/v1` -> `vault.corp`), or `url` itself.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host
}

/// A response: status and body (zeroized on drop).
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The whole body.
    pub body: Zeroizing<Vec<u8>>,
}

impl Response {
    /// A short description of an error response: the backend's error strings, never a body
    /// that could hold a secret (only called for non-2xx statuses).
    pub fn error_text(&self) -> String {
        #[derive(serde::Deserialize)]
        struct Errors {
            #[serde(default)]
            errors: Vec<String>,
            #[serde(default, alias = "message")]
            #[serde(rename = "Message")]
            message: Option<String>,
            #[serde(default, rename = "__type")]
            kind: Option<String>,
        }
        let text = match serde_json::from_slice::<Errors>(&self.body) {
            Ok(e) => {
                let mut parts = e.errors;
                parts.extend(e.kind);
                parts.extend(e.message);
                parts.join("; ")
            }
            Err(_) => String::new(),
        };
        let text: String = text.chars().filter(|c| !c.is_control()).take(300).collect();
        if text.is_empty() {
            format!("HTTP {}", self.status)
        } else {
            format!("HTTP {}: {text}", self.status)
        }
    }
}

/// An HTTP client for one backend.
#[derive(Clone)]
pub struct Transport {
    client: reqwest::Client,
    settings: TransportSettings,
    backend: &'static str,
}

impl Transport {
    /// A client trusting the system roots plus the PEM certificates in `ca_file`.
    pub fn new(
        backend: &'static str,
        ca_file: Option<&Path>,
        settings: TransportSettings,
    ) -> Result<Self, SecretStoreError> {
        let hosts: Vec<&str> = settings.hosts.iter().map(|u| host_of(u)).collect();
        let mut builder = crate::capabilities::http::policy::operator_client(&hosts)
            .use_rustls_tls()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)));
        if let Some(ca) = ca_file {
            let pem = std::fs::read(ca).map_err(|e| {
                SecretStoreError::Unavailable(format!(
                    "{backend}: cannot read ca_file {}: {e}",
                    ca.display()
                ))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                SecretStoreError::Invalid(format!(
                    "{backend}: ca_file {} holds no usable PEM certificate: {e}",
                    ca.display()
                ))
            })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(|e| {
            SecretStoreError::Unavailable(format!("{backend}: cannot build the HTTP client: {e}"))
        })?;
        Ok(Transport {
            client,
            settings,
            backend,
        })
    }

    /// Sends the request `build` makes, retrying connection errors, timeouts, 429 and 5xx
    /// (a sealed OpenBao answers 503) with exponential backoff; after the last attempt the
    /// error is `unavailable`. `what` names the request in errors.
    pub async fn send(
        &self,
        what: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Response, SecretStoreError> {
        let attempts = self.settings.retries + 1;
        let mut backoff = self.settings.backoff;
        let mut last = String::new();
        for attempt in 1..=attempts {
            match self.once(&build).await {
                Ok(r) if r.status == 429 || r.status >= 500 => last = r.error_text(),
                Ok(r) => return Ok(r),
                Err(e) => last = e,
            }
            if attempt < attempts {
                tracing::debug!(backend = self.backend, what, attempt, error = %last, "retrying");
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
            }
        }
        Err(SecretStoreError::Unavailable(format!(
            "{} {what}: {last} (gave up after {attempts} attempts)",
            self.backend
        )))
    }

    async fn once(
        &self,
        build: &impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Response, String> {
        let mut resp = build(&self.client).send().await.map_err(describe)?;
        let status = resp.status().as_u16();
        let limit = match resp.content_length() {
            Some(n) if n as usize > MAX_RESPONSE_BYTES => {
                return Err(format!("response of {n} bytes is too large"))
            }
            Some(n) => n as usize,
            None => MAX_RESPONSE_BYTES,
        };
        // The chunks are views of the HTTP client's read buffers, which the response's headers
        // (and for a while the connection) share. Keep them until the response is gone, so
        // they are the last handles, then copy them into one buffer sized up front and wipe
        // each buffer before it is freed: a growing Vec or a dropped read buffer would leave
        // copies of the secret in freed memory.
        let mut chunks: Vec<bytes::Bytes> = Vec::new();
        let mut total = 0usize;
        while let Some(chunk) = resp.chunk().await.map_err(describe)? {
            total += chunk.len();
            chunks.push(chunk);
            if total > limit {
                drop(resp);
                chunks.into_iter().for_each(wipe);
                return Err("response is larger than announced or than 1 MiB".into());
            }
        }
        drop(resp);
        let mut body = Zeroizing::new(Vec::with_capacity(total));
        for chunk in chunks {
            body.extend_from_slice(&chunk);
            wipe(chunk);
        }
        Ok(Response { status, body })
    }
}

/// Zeroizes a response chunk's bytes when this is the last handle to them (it then owns the
/// read buffer); a buffer still shared (a connection reading the next response into it) is
/// left to its other owner.
fn wipe(chunk: bytes::Bytes) {
    use zeroize::Zeroize;
    if let Ok(mut owned) = chunk.try_into_mut() {
        owned.as_mut().zeroize();
    }
}

fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    // The URL holds no secret (tokens travel in headers); the source chain explains why.
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn hosts_of_configured_urls() {
        assert_eq!(host_of("https://vault.corp:8200/v1"), "vault.corp");
        assert_eq!(host_of("http://127.0.0.1:8200"), "127.0.0.1");
        assert_eq!(host_of("https://[::1]:8200/"), "::1");
        assert_eq!(
            host_of("https://login.microsoftonline.com"),
            "login.microsoftonline.com"
        );
        assert_eq!(host_of("https://u@h.example:1/x?y#z"), "h.example");
    }
}
