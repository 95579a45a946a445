//! HashiCorp Vault / OpenBao, KV version 2 (the same HTTP API).
//!
//! A locator is `PATH` or `PATH#FIELD`, relative to the configured KV mount: `apps/db#password`
//! reads field `password` of `<mount>/data/apps/db`. Without `#FIELD` the secret's only field
//! is used, else its `password` field. Every resolution reads the latest version; nothing is
//! cached but the backend's own auth token.
//!
//! Auth: a token (read from a file or an environment variable named in the config, re-read
//! at every login so an operator can replace it), AppRole, or Kubernetes (a service-account
//! JWT file). A token whose TTL is more than half spent is renewed (`renew-self`) when it is
//! renewable, and replaced by a new login otherwise. A request answered 403 logs in again once
//! (the token may have been revoked) before the backend reports "denied".

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

use super::transport::{Response, Transport, TransportSettings};
use super::{json_string, select_field, split_field, SecretStore, SecretStoreError, SecretString};

/// The `[openbao]` table of `backends.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenBaoConfig {
    /// `https://bao.internal:8200`.
    pub address: String,
    /// Enterprise / OpenBao namespace (`X-Vault-Namespace`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// The KV v2 mount.
    #[serde(default = "default_mount")]
    pub mount: String,
    /// Extra CA certificates (PEM) to trust.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Timeout of one request, in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
    /// Retries of a request that failed to connect, timed out or got 429/5xx (sealed).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// How airlock authenticates.
    pub auth: OpenBaoAuth,
}

/// `[openbao.auth]`: how airlock gets a token.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase", deny_unknown_fields)]
pub enum OpenBaoAuth {
    /// A token kept in a file or an environment variable (never in the config itself).
    Token {
        #[serde(default)]
        token_file: Option<PathBuf>,
        #[serde(default)]
        token_env: Option<String>,
    },
    /// AppRole: a role id and a secret id (from a file or an environment variable).
    Approle {
        #[serde(default = "approle_mount")]
        mount: String,
        role_id: String,
        #[serde(default)]
        secret_id_file: Option<PathBuf>,
        #[serde(default)]
        secret_id_env: Option<String>,
    },
    /// Kubernetes: the pod's service-account JWT.
    Kubernetes {
        #[serde(default = "kubernetes_mount")]
        mount: String,
        role: String,
        #[serde(default = "default_jwt_file")]
        jwt_file: PathBuf,
    },
}

fn default_mount() -> String {
    "secret".into()
}
fn default_timeout() -> u64 {
    10
}
fn default_retries() -> u32 {
    3
}
fn approle_mount() -> String {
    "approle".into()
}
fn kubernetes_mount() -> String {
    "kubernetes".into()
}
fn default_jwt_file() -> PathBuf {
    PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount/token")
}

impl OpenBaoConfig {
    /// Checks what serde cannot and resolves relative paths against `base`.
    pub fn prepare(mut self, base: &std::path::Path) -> Result<Self, String> {
        let url = self.address.trim_end_matches('/').to_string();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(format!(
                "openbao.address `{url}` must start with https:// (or http:// for a local dev server)"
            ));
        }
        self.address = url;
        if self.mount.is_empty() || self.mount.contains("..") {
            return Err("openbao.mount must name a KV v2 mount (e.g. \"secret\")".into());
        }
        if self.timeout_s == 0 || self.timeout_s > 300 {
            return Err("openbao.timeout_s must be 1..=300".into());
        }
        if self.retries > 10 {
            return Err("openbao.retries must be at most 10".into());
        }
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(ca) = self.ca_file.as_mut() {
            abs(ca);
        }
        match &mut self.auth {
            OpenBaoAuth::Token {
                token_file,
                token_env,
            } => {
                if token_file.is_some() == token_env.is_some() {
                    return Err(
                        "openbao.auth (token) needs exactly one of token_file or token_env".into(),
                    );
                }
                if let Some(f) = token_file.as_mut() {
                    abs(f);
                }
            }
            OpenBaoAuth::Approle {
                secret_id_file,
                secret_id_env,
                ..
            } => {
                if secret_id_file.is_some() == secret_id_env.is_some() {
                    return Err("openbao.auth (approle) needs exactly one of secret_id_file or secret_id_env".into());
                }
                if let Some(f) = secret_id_file.as_mut() {
                    abs(f);
                }
            }
            OpenBaoAuth::Kubernetes { jwt_file, .. } => abs(jwt_file),
        }
        Ok(self)
    }
}

/// The backend's own token and when to renew it.
struct Session {
    token: SecretString,
    /// When to renew (half the TTL); `None` for a token that never expires.
    renew_at: Option<Instant>,
    renewable: bool,
}

/// An OpenBao / Vault KV v2 backend.
pub struct OpenBaoStore {
    config: OpenBaoConfig,
    transport: Transport,
    session: Mutex<Option<Session>>,
}

impl OpenBaoStore {
    /// A backend for `config` (already [`OpenBaoConfig::prepare`]d). Connects lazily.
    pub fn new(config: OpenBaoConfig) -> Result<Self, SecretStoreError> {
        let transport = Transport::new(
            "openbao",
            config.ca_file.as_deref(),
            TransportSettings {
                timeout: Duration::from_secs(config.timeout_s),
                retries: config.retries,
                backoff: Duration::from_millis(200),
                hosts: vec![config.address.clone()],
            },
        )?;
        Ok(OpenBaoStore {
            config,
            transport,
            session: Mutex::new(None),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v1/{path}", self.config.address)
    }

    fn request(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        token: Option<&SecretString>,
    ) -> reqwest::RequestBuilder {
        let mut req = client.request(method, self.url(path));
        if let Some(ns) = &self.config.namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        if let Some(t) = token {
            let mut value = reqwest::header::HeaderValue::from_str(t.expose())
                .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static(""));
            value.set_sensitive(true);
            req = req.header("X-Vault-Token", value);
        }
        req
    }

    /// A token, logging in or renewing first when needed.
    async fn token(&self) -> Result<SecretString, SecretStoreError> {
        let mut guard = self.session.lock().await;
        if let Some(s) = guard.as_mut() {
            match s.renew_at {
                Some(at) if Instant::now() >= at && s.renewable => {
                    match self.renew(&s.token).await {
                        Ok(fresh) => *s = fresh,
                        Err(e) => {
                            tracing::debug!(error = %e, "openbao token renewal failed; logging in again");
                            *guard = None;
                        }
                    }
                }
                Some(at) if Instant::now() >= at => *guard = None,
                _ => {}
            }
        }
        if guard.is_none() {
            *guard = Some(self.login().await?);
        }
        Ok(guard
            .as_ref()
            .map(|s| s.token.clone())
            .unwrap_or_else(|| SecretString::new(String::new())))
    }

    async fn forget_token(&self) {
        *self.session.lock().await = None;
    }

    async fn renew(&self, token: &SecretString) -> Result<Session, SecretStoreError> {
        let resp = self
            .transport
            .send("token renewal", |c| {
                self.request(
                    c,
                    reqwest::Method::POST,
                    "auth/token/renew-self",
                    Some(token),
                )
                .json(&serde_json::json!({}))
            })
            .await?;
        if resp.status != 200 {
            return Err(SecretStoreError::Denied(format!(
                "token renewal refused: {}",
                resp.error_text()
            )));
        }
        auth_session(&resp)
    }

    async fn login(&self) -> Result<Session, SecretStoreError> {
        match &self.config.auth {
            OpenBaoAuth::Token {
                token_file,
                token_env,
            } => {
                let token = read_secret_source(token_file.as_ref(), token_env.as_deref(), "token")?;
                let resp = self
                    .transport
                    .send("token lookup", |c| {
                        self.request(
                            c,
                            reqwest::Method::GET,
                            "auth/token/lookup-self",
                            Some(&token),
                        )
                    })
                    .await?;
                match resp.status {
                    200 => {}
                    401 | 403 => {
                        return Err(SecretStoreError::Denied(
                            "the configured token is invalid, expired or revoked".into(),
                        ))
                    }
                    _ => {
                        return Err(SecretStoreError::Unavailable(format!(
                            "token lookup: {}",
                            resp.error_text()
                        )))
                    }
                }
                #[derive(Deserialize)]
                struct Lookup {
                    data: LookupData,
                }
                #[derive(Deserialize)]
                struct LookupData {
                    #[serde(default)]
                    ttl: u64,
                    #[serde(default)]
                    renewable: bool,
                }
                let l: Lookup = serde_json::from_slice(&resp.body).map_err(|_| {
                    SecretStoreError::Unavailable("token lookup: unexpected response".into())
                })?;
                Ok(Session {
                    token,
                    renew_at: renew_at(l.data.ttl),
                    renewable: l.data.renewable,
                })
            }
            OpenBaoAuth::Approle {
                mount,
                role_id,
                secret_id_file,
                secret_id_env,
            } => {
                let secret_id = read_secret_source(
                    secret_id_file.as_ref(),
                    secret_id_env.as_deref(),
                    "secret_id",
                )?;
                let path = format!("auth/{mount}/login");
                let resp = self
                    .transport
                    .send("approle login", |c| {
                        self.request(c, reqwest::Method::POST, &path, None).json(
                            &serde_json::json!({"role_id": role_id, "secret_id": secret_id.expose()}),
                        )
                    })
                    .await?;
                login_response(&resp, "approle")
            }
            OpenBaoAuth::Kubernetes {
                mount,
                role,
                jwt_file,
            } => {
                let jwt = read_secret_source(Some(jwt_file), None, "service-account JWT")?;
                let path = format!("auth/{mount}/login");
                let resp = self
                    .transport
                    .send("kubernetes login", |c| {
                        self.request(c, reqwest::Method::POST, &path, None)
                            .json(&serde_json::json!({"role": role, "jwt": jwt.expose()}))
                    })
                    .await?;
                login_response(&resp, "kubernetes")
            }
        }
    }

    async fn read(&self, path: &str) -> Result<Response, SecretStoreError> {
        let token = self.token().await?;
        let api = format!("{}/data/{path}", self.config.mount);
        self.transport
            .send("read", |c| {
                self.request(c, reqwest::Method::GET, &api, Some(&token))
            })
            .await
    }
}

fn renew_at(ttl: u64) -> Option<Instant> {
    (ttl > 0).then(|| Instant::now() + Duration::from_secs(ttl / 2))
}

fn login_response(resp: &Response, method: &str) -> Result<Session, SecretStoreError> {
    match resp.status {
        200 => auth_session(resp),
        400 | 401 | 403 => Err(SecretStoreError::Denied(format!(
            "{method} login refused: {}",
            resp.error_text()
        ))),
        _ => Err(SecretStoreError::Unavailable(format!(
            "{method} login: {}",
            resp.error_text()
        ))),
    }
}

/// The `auth` block of a login or renewal response.
fn auth_session(resp: &Response) -> Result<Session, SecretStoreError> {
    #[derive(Deserialize)]
    struct Login<'a> {
        #[serde(borrow)]
        auth: Auth<'a>,
    }
    #[derive(Deserialize)]
    struct Auth<'a> {
        #[serde(borrow)]
        client_token: &'a serde_json::value::RawValue,
        #[serde(default)]
        lease_duration: u64,
        #[serde(default)]
        renewable: bool,
    }
    let text = std::str::from_utf8(&resp.body)
        .map_err(|_| SecretStoreError::Unavailable("login: response is not UTF-8".into()))?;
    let login: Login<'_> = serde_json::from_str(text)
        .map_err(|_| SecretStoreError::Unavailable("login: unexpected response".into()))?;
    Ok(Session {
        token: json_string(login.auth.client_token.get(), "the login response")?,
        renew_at: renew_at(login.auth.lease_duration),
        renewable: login.auth.renewable,
    })
}

/// Reads a credential airlock itself uses from a file or an environment variable (one
/// trailing newline removed), into an exactly sized buffer.
pub(super) fn read_secret_source(
    file: Option<&PathBuf>,
    env: Option<&str>,
    what: &str,
) -> Result<SecretString, SecretStoreError> {
    let raw = match (file, env) {
        (Some(f), _) => {
            let bytes = zeroize::Zeroizing::new(std::fs::read(f).map_err(|e| {
                SecretStoreError::Unavailable(format!(
                    "cannot read the {what} file {}: {e}",
                    f.display()
                ))
            })?);
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| SecretStoreError::Invalid(format!("the {what} file is not UTF-8")))?
                .trim_end_matches(['\n', '\r']);
            let mut s = String::with_capacity(text.len());
            s.push_str(text);
            s
        }
        (None, Some(var)) => std::env::var(var).map_err(|_| {
            SecretStoreError::Unavailable(format!(
                "environment variable {var} (the {what}) is not set"
            ))
        })?,
        (None, None) => {
            return Err(SecretStoreError::Invalid(format!(
                "no source for the {what}"
            )))
        }
    };
    let s = SecretString::new(raw);
    if s.is_empty() {
        return Err(SecretStoreError::Unavailable(format!(
            "the {what} is empty"
        )));
    }
    Ok(s)
}

#[async_trait::async_trait]
impl SecretStore for OpenBaoStore {
    fn backend(&self) -> &'static str {
        "openbao"
    }

    fn check_locator(&self, locator: &str) -> Result<(), SecretStoreError> {
        let (path, _) = split_field(locator);
        let ok = !path.is_empty()
            && path.len() <= 512
            && path.split('/').all(|s| {
                !s.is_empty()
                    && s != "."
                    && s != ".."
                    && s.chars().all(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | '+')
                    })
            });
        if ok {
            Ok(())
        } else {
            Err(SecretStoreError::Invalid(format!(
                "openbao locator `{}` must be PATH[#FIELD] below the KV mount (e.g. apps/db#password)",
                locator.escape_debug()
            )))
        }
    }

    async fn resolve(&self, locator: &str) -> Result<SecretString, SecretStoreError> {
        self.check_locator(locator)?;
        let (path, field) = split_field(locator);
        let shown = format!("{}/{path}", self.config.mount);
        let mut resp = self.read(path).await?;
        if resp.status == 403 || resp.status == 401 {
            // The token may have been revoked or expired since the last login: once more with a
            // fresh login before calling it a denial.
            self.forget_token().await;
            resp = self.read(path).await?;
        }
        match resp.status {
            200 => {}
            401 | 403 => {
                return Err(SecretStoreError::Denied(format!(
                    "permission denied reading {shown} (the policy does not allow it, or the token was revoked): {}",
                    resp.error_text()
                )))
            }
            404 => return Err(not_found(&resp, &shown)),
            _ => {
                return Err(SecretStoreError::Unavailable(format!(
                    "reading {shown}: {}",
                    resp.error_text()
                )))
            }
        }
        #[derive(Deserialize)]
        struct Read<'a> {
            #[serde(borrow)]
            data: Option<ReadData<'a>>,
        }
        #[derive(Deserialize)]
        struct ReadData<'a> {
            #[serde(borrow)]
            data: Option<&'a serde_json::value::RawValue>,
        }
        let text = std::str::from_utf8(&resp.body)
            .map_err(|_| SecretStoreError::Invalid(format!("{shown}: response is not UTF-8")))?;
        let read: Read<'_> = serde_json::from_str(text).map_err(|_| {
            SecretStoreError::Invalid(format!(
                "{shown}: not a KV v2 response (is {} a KV v2 mount?)",
                self.config.mount
            ))
        })?;
        match read.data.and_then(|d| d.data) {
            Some(obj) if obj.get() != "null" => select_field(obj.get(), field, &shown),
            _ => Err(SecretStoreError::NotFound(format!(
                "{shown}: the latest version is deleted or destroyed"
            ))),
        }
    }
}

/// Why a read answered 404: never written, deleted or destroyed.
fn not_found(resp: &Response, shown: &str) -> SecretStoreError {
    #[derive(Deserialize)]
    struct Read {
        data: Option<ReadData>,
    }
    #[derive(Deserialize)]
    struct ReadData {
        metadata: Option<Metadata>,
    }
    #[derive(Deserialize)]
    struct Metadata {
        #[serde(default)]
        deletion_time: String,
        #[serde(default)]
        destroyed: bool,
        #[serde(default)]
        version: u64,
    }
    let meta = serde_json::from_slice::<Read>(&resp.body)
        .ok()
        .and_then(|r| r.data)
        .and_then(|d| d.metadata);
    SecretStoreError::NotFound(match meta {
        Some(m) if m.destroyed => format!("{shown}: version {} was destroyed", m.version),
        Some(m) if !m.deletion_time.is_empty() => format!(
            "{shown}: version {} was deleted at {}",
            m.version, m.deletion_time
        ),
        _ => format!("no secret at {shown}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_needs_one_token_source_and_rejects_unknown_keys() {
        let ok: OpenBaoConfig = toml::from_str(
            "address = \"http://127.0.0.1:8200\"\n[auth]\nmethod = \"token\"\ntoken_env = \"BAO_TOKEN\"\n",
        )
        .unwrap();
        assert!(ok.prepare(std::path::Path::new("/")).is_ok());
        let both: OpenBaoConfig = toml::from_str(
            "address = \"http://x\"\n[auth]\nmethod = \"token\"\ntoken_env = \"A\"\ntoken_file = \"f\"\n",
        )
        .unwrap();
        assert!(both.prepare(std::path::Path::new("/")).is_err());
        let err = toml::from_str::<OpenBaoConfig>(
            "address = \"http://x\"\n[auth]\nmethod = \"token\"\ntoken = \"s.abc\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("token"), "{err}");
    }
}
