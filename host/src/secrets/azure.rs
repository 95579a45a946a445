//! Azure Key Vault secrets, over the Key Vault REST API with a Microsoft Entra ID (Azure AD)
//! token from the OAuth 2.0 client-credentials grant.
//!
//! A locator is `NAME` (the latest version, read at each resolution) or `NAME/VERSION`,
//! optionally followed by `#FIELD` when the secret's value is a JSON object of fields. Without
//! `#FIELD` the value is used whole.
//!
//! Auth: `POST {authority}/{tenant_id}/oauth2/v2.0/token` with the app registration's client id
//! and secret and scope `https://vault.azure.net/.default`. The client secret is read from the
//! file or environment variable the config names (never from the config itself) at each token
//! request, so an operator can replace it. The access token is kept in memory (zeroized on
//! drop) until shortly before it expires; a read answered 401 fetches a new token once.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use super::openbao::read_secret_source;
use super::transport::{Response, Transport, TransportSettings};
use super::{json_string, select_field, split_field, SecretStore, SecretStoreError, SecretString};

/// The Key Vault REST API version airlock speaks.
pub const API_VERSION: &str = "7.4";
/// The OAuth 2.0 scope of Key Vault.
pub const SCOPE: &str = "https://vault.azure.net/.default";

/// The `[azure]` table of `backends.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    /// The vault, e.g. `https://my-vault.vault.azure.net`.
    pub vault_url: String,
    /// The directory (tenant) id of the app registration.
    pub tenant_id: String,
    /// The app registration's application (client) id.
    pub client_id: String,
    /// A file holding the client secret.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// An environment variable holding the client secret.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// The Entra ID authority (another cloud, or a proxy).
    #[serde(default = "default_authority")]
    pub authority: String,
    /// Extra CA certificates (PEM) to trust.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Timeout of one request, in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
    /// Retries of a request that failed to connect, timed out or got 429/5xx.
    #[serde(default = "default_retries")]
    pub retries: u32,
}

fn default_authority() -> String {
    "https://login.microsoftonline.com".into()
}
fn default_timeout() -> u64 {
    10
}
fn default_retries() -> u32 {
    3
}

impl AzureConfig {
    /// Checks what serde cannot and resolves relative paths against `base`.
    pub fn prepare(mut self, base: &std::path::Path) -> Result<Self, String> {
        for (key, url) in [
            ("vault_url", &mut self.vault_url),
            ("authority", &mut self.authority),
        ] {
            let trimmed = url.trim_end_matches('/').to_string();
            let rest = trimmed.strip_prefix("https://").ok_or_else(|| {
                format!("azure.{key} `{trimmed}` must start with https:// (tokens never travel in clear text)")
            })?;
            if rest.is_empty() || rest.contains(['?', '#', ' ']) {
                return Err(format!("azure.{key} `{trimmed}` is not a base URL"));
            }
            *url = trimmed;
        }
        let id_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        };
        if !id_ok(&self.tenant_id) {
            return Err("azure.tenant_id must be a tenant GUID or domain name".into());
        }
        if !id_ok(&self.client_id) {
            return Err("azure.client_id must be the app registration's client id".into());
        }
        if self.client_secret_file.is_some() == self.client_secret_env.is_some() {
            return Err(
                "azure needs exactly one of client_secret_file or client_secret_env".into(),
            );
        }
        if self.timeout_s == 0 || self.timeout_s > 300 {
            return Err("azure.timeout_s must be 1..=300".into());
        }
        if self.retries > 10 {
            return Err("azure.retries must be at most 10".into());
        }
        for p in [self.ca_file.as_mut(), self.client_secret_file.as_mut()]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(self)
    }
}

/// An access token and when to fetch the next one.
struct AccessToken {
    /// `Bearer <token>`, ready for the `Authorization` header.
    header: reqwest::header::HeaderValue,
    refresh_at: Instant,
}

/// An Azure Key Vault backend.
pub struct AzureKeyVaultStore {
    config: AzureConfig,
    transport: Transport,
    token: Mutex<Option<AccessToken>>,
}

impl AzureKeyVaultStore {
    /// A backend for `config` (already [`AzureConfig::prepare`]d). Connects lazily.
    pub fn new(config: AzureConfig) -> Result<Self, SecretStoreError> {
        let transport = Transport::new(
            "azure",
            config.ca_file.as_deref(),
            TransportSettings {
                timeout: Duration::from_secs(config.timeout_s),
                retries: config.retries,
                backoff: Duration::from_millis(200),
                hosts: vec![config.authority.clone(), config.vault_url.clone()],
            },
        )?;
        Ok(AzureKeyVaultStore {
            config,
            transport,
            token: Mutex::new(None),
        })
    }

    /// The `Authorization` header value, fetching a token first when none is fresh.
    async fn authorization(&self) -> Result<reqwest::header::HeaderValue, SecretStoreError> {
        let mut guard = self.token.lock().await;
        if let Some(t) = guard.as_ref() {
            if Instant::now() < t.refresh_at {
                return Ok(t.header.clone());
            }
        }
        *guard = None;
        let fresh = self.fetch_token().await?;
        let header = fresh.header.clone();
        *guard = Some(fresh);
        Ok(header)
    }

    async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    async fn fetch_token(&self) -> Result<AccessToken, SecretStoreError> {
        let c = &self.config;
        let secret = read_secret_source(
            c.client_secret_file.as_ref(),
            c.client_secret_env.as_deref(),
            "Azure client secret",
        )?;
        let body = form_body(
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &c.client_id),
                ("scope", SCOPE),
            ],
            ("client_secret", &secret),
        );
        drop(secret);
        let url = format!("{}/{}/oauth2/v2.0/token", c.authority, c.tenant_id);
        let resp = self
            .transport
            .send("token request", |client| {
                client
                    .post(&url)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .header(reqwest::header::ACCEPT, "application/json")
                    .body(body.to_vec())
            })
            .await?;
        drop(body);
        match resp.status {
            200 => {}
            400 | 401 | 403 => {
                return Err(SecretStoreError::Denied(format!(
                    "the Entra ID token endpoint of tenant {} refused client {}: {} (check the client secret and the app registration)",
                    c.tenant_id,
                    c.client_id,
                    azure_error(&resp)
                )))
            }
            _ => {
                return Err(SecretStoreError::Unavailable(format!(
                    "azure token request: {}",
                    azure_error(&resp)
                )))
            }
        }
        #[derive(Deserialize)]
        struct TokenResponse<'a> {
            #[serde(borrow)]
            access_token: &'a serde_json::value::RawValue,
            #[serde(borrow, default)]
            expires_in: Option<&'a serde_json::value::RawValue>,
        }
        let unexpected =
            || SecretStoreError::Unavailable("azure token request: unexpected response".into());
        let text = std::str::from_utf8(&resp.body).map_err(|_| unexpected())?;
        let t: TokenResponse<'_> = serde_json::from_str(text).map_err(|_| unexpected())?;
        // A number in v2.0 responses, a string in some older ones.
        let expires_in: u64 = t
            .expires_in
            .map(|r| r.get().trim_matches('"').parse().unwrap_or(0))
            .unwrap_or(0);
        let token = json_string(t.access_token.get(), "the token response")?;
        if token.is_empty() {
            return Err(unexpected());
        }
        // `Bearer <token>` in one exactly sized buffer, zeroized when dropped.
        let mut value = Zeroizing::new(Vec::with_capacity(7 + token.len()));
        value.extend_from_slice(b"Bearer ");
        value.extend_from_slice(token.expose().as_bytes());
        let mut header = reqwest::header::HeaderValue::from_bytes(&value).map_err(|_| {
            SecretStoreError::Unavailable("azure: the access token is not a valid header".into())
        })?;
        header.set_sensitive(true);
        // Fetch the next token a little before this one expires (at most 5 minutes, at most
        // half its lifetime, before).
        let margin = (expires_in / 2).min(300);
        Ok(AccessToken {
            header,
            refresh_at: Instant::now() + Duration::from_secs(expires_in - margin),
        })
    }

    async fn get(
        &self,
        path: &str,
        authorization: &reqwest::header::HeaderValue,
    ) -> Result<Response, SecretStoreError> {
        let url = format!(
            "{}/secrets/{path}?api-version={API_VERSION}",
            self.config.vault_url
        );
        self.transport
            .send("get secret", |client| {
                client
                    .get(&url)
                    .header(reqwest::header::AUTHORIZATION, authorization.clone())
                    .header(reqwest::header::ACCEPT, "application/json")
            })
            .await
    }
}

/// `application/x-www-form-urlencoded` body with `secret` last, in one buffer sized up front
/// (zeroized on drop).
fn form_body(fields: &[(&str, &str)], secret: (&str, &SecretString)) -> Zeroizing<Vec<u8>> {
    let size: usize = fields
        .iter()
        .map(|(k, v)| k.len() + 3 * v.len() + 2)
        .sum::<usize>()
        + secret.0.len()
        + 3 * secret.1.len()
        + 2;
    let mut out = Zeroizing::new(Vec::with_capacity(size));
    let mut push = |k: &str, v: &[u8], first: bool| {
        if !first {
            out.push(b'&');
        }
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        for &b in v {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'*') {
                out.push(b);
            } else {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
            }
        }
    };
    for (i, (k, v)) in fields.iter().enumerate() {
        push(k, v.as_bytes(), i == 0);
    }
    push(secret.0, secret.1.expose().as_bytes(), fields.is_empty());
    out
}

/// An Azure error body (`{"error":{"code","message","innererror":{"code"}}}` from Key Vault,
/// `{"error","error_description"}` from Entra ID) as one short line; never a secret.
fn azure_error(resp: &Response) -> String {
    let (code, inner, message) = error_parts(resp);
    let text: String = [code, inner, message]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(": ")
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect();
    if text.is_empty() {
        format!("HTTP {}", resp.status)
    } else {
        format!("HTTP {}: {text}", resp.status)
    }
}

/// `(code, inner code, message)` of an Azure error body.
fn error_parts(resp: &Response) -> (String, String, String) {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Error {
        Vault {
            #[serde(default)]
            code: String,
            #[serde(default)]
            message: String,
            #[serde(default)]
            innererror: Option<Inner>,
        },
        Entra(String),
    }
    #[derive(Deserialize)]
    struct Inner {
        #[serde(default)]
        code: String,
    }
    #[derive(Deserialize)]
    struct Body {
        error: Option<Error>,
        #[serde(default)]
        error_description: String,
    }
    match serde_json::from_slice::<Body>(&resp.body) {
        Ok(Body {
            error:
                Some(Error::Vault {
                    code,
                    message,
                    innererror,
                }),
            ..
        }) => (
            code,
            innererror.map(|i| i.code).unwrap_or_default(),
            message,
        ),
        Ok(Body {
            error: Some(Error::Entra(code)),
            error_description,
        }) => (
            code,
            String::new(),
            // Entra ID appends trace and correlation ids on further lines.
            error_description
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
        ),
        _ => Default::default(),
    }
}

#[async_trait::async_trait]
impl SecretStore for AzureKeyVaultStore {
    fn backend(&self) -> &'static str {
        "azure"
    }

    fn check_locator(&self, locator: &str) -> Result<(), SecretStoreError> {
        let (path, _) = split_field(locator);
        let mut parts = path.split('/');
        let name = parts.next().unwrap_or("");
        let version = parts.next();
        let name_ok = !name.is_empty()
            && name.len() <= 127
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        let version_ok = version.is_none_or(|v| {
            !v.is_empty() && v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric())
        });
        if name_ok && version_ok && parts.next().is_none() {
            Ok(())
        } else {
            Err(SecretStoreError::Invalid(format!(
                "azure locator `{}` must be NAME or NAME/VERSION (letters, digits, -), optionally with #FIELD",
                locator.escape_debug()
            )))
        }
    }

    async fn resolve(&self, locator: &str) -> Result<SecretString, SecretStoreError> {
        self.check_locator(locator)?;
        let (path, field) = split_field(locator);
        let shown = format!("secret {path} in Azure Key Vault {}", self.config.vault_url);
        let mut resp = self.get(path, &self.authorization().await?).await?;
        if resp.status == 401 {
            // The token expired early or was revoked: once more with a new one.
            self.forget_token().await;
            resp = self.get(path, &self.authorization().await?).await?;
        }
        match resp.status {
            200 => {}
            401 => {
                self.forget_token().await;
                return Err(SecretStoreError::Denied(format!(
                    "reading {shown}: a fresh access token was refused: {}",
                    azure_error(&resp)
                )));
            }
            403 if error_parts(&resp).1 == "SecretDisabled" => {
                return Err(SecretStoreError::NotFound(format!(
                    "{shown} is disabled (enable it or register another version)"
                )))
            }
            403 => {
                return Err(SecretStoreError::Denied(format!(
                    "reading {shown}: the vault's access policy or RBAC role does not allow it: {}",
                    azure_error(&resp)
                )))
            }
            404 => {
                return Err(SecretStoreError::NotFound(format!(
                    "no {shown} (deleted, or never created): {}",
                    azure_error(&resp)
                )))
            }
            _ => {
                return Err(SecretStoreError::Unavailable(format!(
                    "reading {shown}: {}",
                    azure_error(&resp)
                )))
            }
        }
        #[derive(Deserialize)]
        struct Bundle<'a> {
            #[serde(borrow)]
            value: Option<&'a serde_json::value::RawValue>,
            #[serde(default)]
            attributes: Option<Attributes>,
        }
        #[derive(Deserialize)]
        struct Attributes {
            #[serde(default = "enabled")]
            enabled: bool,
        }
        fn enabled() -> bool {
            true
        }
        let text = std::str::from_utf8(&resp.body)
            .map_err(|_| SecretStoreError::Invalid(format!("{shown}: response is not UTF-8")))?;
        let bundle: Bundle<'_> = serde_json::from_str(text).map_err(|_| {
            SecretStoreError::Invalid(format!("{shown}: not a Key Vault secret bundle"))
        })?;
        if bundle.attributes.is_some_and(|a| !a.enabled) {
            return Err(SecretStoreError::NotFound(format!("{shown} is disabled")));
        }
        let raw = bundle
            .value
            .ok_or_else(|| SecretStoreError::NotFound(format!("{shown} has no value")))?;
        let whole = json_string(raw.get(), &shown)?;
        match field {
            Some(f) => select_field(whole.expose(), Some(f), &shown),
            None => Ok(whole),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Result<AzureConfig, String> {
        toml::from_str::<AzureConfig>(&format!(
            "vault_url = \"https://v.vault.azure.net/\"\ntenant_id = \"t-1\"\nclient_id = \"c-1\"\n{extra}"
        ))
        .map_err(|e| e.to_string())?
        .prepare(std::path::Path::new("/etc/airlock"))
    }

    #[test]
    fn config_is_checked() {
        let c = config("client_secret_file = \"azure-secret\"\n").unwrap();
        assert_eq!(c.vault_url, "https://v.vault.azure.net");
        assert_eq!(
            c.client_secret_file.unwrap(),
            PathBuf::from("/etc/airlock/azure-secret")
        );
        assert!(config("").unwrap_err().contains("exactly one"));
        assert!(
            config("client_secret_env = \"A\"\nclient_secret_file = \"f\"\n")
                .unwrap_err()
                .contains("exactly one")
        );
        // the secret itself is not a key
        let e = config("client_secret = \"s3cr3t\"\n").unwrap_err();
        assert!(e.contains("client_secret"), "{e}");
        let e = config("client_secret_env = \"A\"\nauthority = \"http://login\"\n").unwrap_err();
        assert!(e.contains("https://"), "{e}");
    }

    #[test]
    fn locators() {
        let store =
            AzureKeyVaultStore::new(config("client_secret_env = \"A\"\n").unwrap()).unwrap();
        for ok in [
            "db-password",
            "db/0123abcd",
            "db#password",
            "db/0123abcd#user",
        ] {
            assert!(store.check_locator(ok).is_ok(), "{ok}");
        }
        for bad in ["", "db/", "a/b/c", "../x", "db?x=1", "db_pw", "db/ver-1"] {
            assert!(store.check_locator(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn form_body_encodes_every_reserved_byte() {
        let body = form_body(
            &[("a", "x y"), ("scope", SCOPE)],
            ("client_secret", &SecretString::new("p&=+/%~é".into())),
        );
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            "a=x%20y&scope=https%3A%2F%2Fvault.azure.net%2F.default&client_secret=p%26%3D%2B%2F%25%7E%C3%A9"
        );
        assert!(body.capacity() >= body.len());
    }
}
