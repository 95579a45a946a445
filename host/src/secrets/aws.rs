//! AWS Secrets Manager.
//!
//! Client choice: a small `GetSecretValue` client on `reqwest` (rustls + ring), signed with the
//! official `aws-sigv4` crate. The full SDK (`aws-config` + `aws-sdk-secretsmanager`) pulls in
//! `aws-lc-rs` (a cmake/C build) through its default HTTP client and a large generated crate
//! for one API call; the signer is the part worth not writing ourselves.
//!
//! A locator is `NAME-OR-ARN` or `NAME-OR-ARN#FIELD`. A JSON object secret is mapped to fields
//! (`#password`; without `#FIELD` its only field, else `password`); a plain-text secret is used
//! whole. The version stage is `AWSCURRENT` unless `version_stage` says otherwise.
//!
//! Credentials come from the standard places: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
//! `AWS_SESSION_TOKEN`, else the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE` or
//! `~/.aws/credentials`, profile `AWS_PROFILE` or `default`). They are read at each resolution,
//! so rotated keys are picked up. The region is `region` in the config, else `AWS_REGION` /
//! `AWS_DEFAULT_REGION`.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use zeroize::Zeroizing;

use super::transport::{Transport, TransportSettings};
use super::{json_string, select_field, split_field, SecretStore, SecretStoreError, SecretString};

/// The `[aws]` table of `backends.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// Region, e.g. `eu-west-1` (else `AWS_REGION` / `AWS_DEFAULT_REGION`).
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint override (a VPC endpoint, or a local test server).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The version stage read.
    #[serde(default = "default_stage")]
    pub version_stage: String,
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

fn default_stage() -> String {
    "AWSCURRENT".into()
}
fn default_timeout() -> u64 {
    10
}
fn default_retries() -> u32 {
    3
}

/// An AWS Secrets Manager backend.
pub struct AwsSecretsStore {
    region: String,
    endpoint: String,
    stage: String,
    transport: Transport,
}

impl AwsSecretsStore {
    /// A backend for `config`; relative paths resolve against `base`.
    pub fn new(config: AwsConfig, base: &std::path::Path) -> Result<Self, SecretStoreError> {
        let region = config
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .filter(|r| !r.is_empty())
            .ok_or_else(|| {
                SecretStoreError::Invalid(
                    "aws: no region; set aws.region in backends.toml or AWS_REGION".into(),
                )
            })?;
        let endpoint = config
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://secretsmanager.{region}.amazonaws.com"));
        let endpoint = endpoint.trim_end_matches('/').to_string();
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return Err(SecretStoreError::Invalid(format!(
                "aws.endpoint `{endpoint}` must be an http(s) URL"
            )));
        }
        let ca = config.ca_file.as_ref().map(|p| base.join(p));
        let transport = Transport::new(
            "aws",
            ca.as_deref(),
            TransportSettings {
                timeout: Duration::from_secs(config.timeout_s.clamp(1, 300)),
                retries: config.retries.min(10),
                backoff: Duration::from_millis(200),
                hosts: vec![endpoint.clone()],
            },
        )?;
        Ok(AwsSecretsStore {
            region,
            endpoint,
            stage: config.version_stage,
            transport,
        })
    }
}

/// AWS access keys (the secret key and session token zeroized on drop).
struct AwsKeys {
    access_key: String,
    secret_key: SecretString,
    session_token: Option<SecretString>,
}

fn aws_keys() -> Result<AwsKeys, SecretStoreError> {
    if let (Ok(id), Ok(secret)) = (
        std::env::var("AWS_ACCESS_KEY_ID"),
        std::env::var("AWS_SECRET_ACCESS_KEY"),
    ) {
        return Ok(AwsKeys {
            access_key: id,
            secret_key: SecretString::new(secret),
            session_token: std::env::var("AWS_SESSION_TOKEN")
                .ok()
                .filter(|t| !t.is_empty())
                .map(SecretString::new),
        });
    }
    let file = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".aws/credentials")));
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    let missing = || {
        SecretStoreError::Unavailable(format!(
            "aws: no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or profile `{profile}` in the shared credentials file)"
        ))
    };
    let file = file.ok_or_else(missing)?;
    let text = Zeroizing::new(std::fs::read_to_string(&file).map_err(|_| missing())?);
    let mut in_profile = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = name.trim() == profile;
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if !in_profile {
            continue;
        }
        let v = v.trim().to_string();
        match k.trim() {
            "aws_access_key_id" => id = Some(v),
            "aws_secret_access_key" => secret = Some(SecretString::new(v)),
            "aws_session_token" => token = Some(SecretString::new(v)),
            _ => {}
        }
    }
    match (id, secret) {
        (Some(access_key), Some(secret_key)) => Ok(AwsKeys {
            access_key,
            secret_key,
            session_token: token,
        }),
        _ => Err(missing()),
    }
}

#[async_trait::async_trait]
impl SecretStore for AwsSecretsStore {
    fn backend(&self) -> &'static str {
        "aws"
    }

    fn check_locator(&self, locator: &str) -> Result<(), SecretStoreError> {
        let (id, _) = split_field(locator);
        let ok = !id.is_empty()
            && id.len() <= 2048
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/_+=.@-:".contains(c));
        if ok {
            Ok(())
        } else {
            Err(SecretStoreError::Invalid(format!(
                "aws locator `{}` must be a secret name or ARN, optionally with #FIELD",
                locator.escape_debug()
            )))
        }
    }

    async fn resolve(&self, locator: &str) -> Result<SecretString, SecretStoreError> {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        self.check_locator(locator)?;
        let (id, field) = split_field(locator);
        let keys = aws_keys()?;
        let body =
            serde_json::to_vec(&serde_json::json!({"SecretId": id, "VersionStage": self.stage}))
                .map_err(|e| SecretStoreError::Invalid(format!("aws: request: {e}")))?;
        let url = format!("{}/", self.endpoint);
        let creds = aws_credential_types::Credentials::new(
            keys.access_key.clone(),
            keys.secret_key.expose(),
            keys.session_token.as_ref().map(|t| t.expose().to_string()),
            None,
            "airlock",
        );
        let identity: aws_smithy_runtime_api::client::identity::Identity = creds.into();
        let headers = [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", "secretsmanager.GetSecretValue"),
        ];
        // Signed once: the retries of one resolution stay well inside SigV4's 5-minute window.
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("secretsmanager")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| SecretStoreError::Invalid(format!("aws: cannot sign: {e}")))?;
        let signable = SignableRequest::new(
            "POST",
            &url,
            headers.iter().copied(),
            SignableBody::Bytes(&body),
        )
        .map_err(|e| SecretStoreError::Invalid(format!("aws: cannot sign: {e}")))?;
        let (instructions, _) = sign(signable, &params.into())
            .map_err(|e| SecretStoreError::Invalid(format!("aws: cannot sign: {e}")))?
            .into_parts();
        let mut signed = Vec::new();
        for (name, value) in instructions.headers() {
            let mut v = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
                SecretStoreError::Invalid(format!("aws: unusable signed header {name}"))
            })?;
            v.set_sensitive(true);
            signed.push((name.to_string(), v));
        }
        drop(instructions);
        let build = |client: &reqwest::Client| {
            let mut req = client.post(&url).body(body.clone());
            for (k, v) in headers {
                req = req.header(k, v);
            }
            for (k, v) in &signed {
                req = req.header(k.as_str(), v.clone());
            }
            req
        };
        let resp = self.transport.send("GetSecretValue", build).await?;
        drop(keys);
        if resp.status != 200 {
            #[derive(Deserialize)]
            struct AwsError {
                #[serde(default, rename = "__type")]
                kind: String,
                #[serde(default, alias = "message", rename = "Message")]
                message: String,
            }
            let e = serde_json::from_slice::<AwsError>(&resp.body).unwrap_or(AwsError {
                kind: String::new(),
                message: String::new(),
            });
            let kind = e.kind.rsplit('#').next().unwrap_or("").to_string();
            let text = resp.error_text();
            let msg = e.message.to_ascii_lowercase();
            return Err(match kind.as_str() {
                "ResourceNotFoundException" => SecretStoreError::NotFound(format!(
                    "no secret {id} (stage {}): {text}",
                    self.stage
                )),
                "InvalidRequestException" if msg.contains("delet") => SecretStoreError::NotFound(
                    format!("secret {id} is deleted or scheduled for deletion: {text}"),
                ),
                "AccessDeniedException"
                | "UnrecognizedClientException"
                | "InvalidSignatureException"
                | "ExpiredTokenException"
                | "IncompleteSignature" => {
                    SecretStoreError::Denied(format!("reading {id}: {text}"))
                }
                _ if resp.status == 403 => {
                    SecretStoreError::Denied(format!("reading {id}: {text}"))
                }
                _ => SecretStoreError::Unavailable(format!("reading {id}: {text}")),
            });
        }
        #[derive(Deserialize)]
        struct Value<'a> {
            #[serde(borrow, rename = "SecretString")]
            secret_string: Option<&'a serde_json::value::RawValue>,
        }
        let v: Value<'_> = std::str::from_utf8(&resp.body)
            .ok()
            .and_then(|t| serde_json::from_str(t).ok())
            .ok_or_else(|| SecretStoreError::Invalid(format!("{id}: unexpected response")))?;
        let raw = v.secret_string.ok_or_else(|| {
            SecretStoreError::Invalid(format!(
                "{id} holds a binary secret; airlock reads SecretString values"
            ))
        })?;
        let whole = json_string(raw.get(), id)?;
        if whole.expose().trim_start().starts_with('{') {
            select_field(whole.expose(), field, id)
        } else if let Some(f) = field {
            Err(SecretStoreError::Invalid(format!(
                "{id} is plain text, not JSON: drop #{f} from the locator"
            )))
        } else {
            Ok(whole)
        }
    }
}
