//! Host-side authentication of HTTP requests, chosen by the credential's kind. The secret is
//! resolved when the client opens and lives only in zeroizing memory inside the host; the
//! plugin never sees a header, token or signature.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::HttpError;
use crate::capabilities::credentials::CredentialKind;
use crate::secrets::SecretString;

/// `[source.auth]`: how a credential authenticates HTTP requests.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpAuthSettings {
    /// Token credentials: send the token in this header instead of `Authorization: Bearer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Token credentials: send the token as this query parameter instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// AWS access keys: the region requests are signed for (e.g. `us-east-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_region: Option<String>,
    /// AWS access keys: the service requests are signed for (e.g. `glue`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_service: Option<String>,
    /// Allows authenticated requests over plain `http://` (for tests on 127.0.0.1).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_cleartext: bool,
    /// OAuth2 client credentials: the token endpoint (`https://idp.example.com/oauth2/token`).
    /// It must be one of the credential's destinations: the client secret is sent there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// OAuth2 client credentials: the `scope` asked for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// How requests to the client's own origin are authenticated.
pub(crate) enum Auth {
    Basic {
        user: String,
        password: SecretString,
    },
    Bearer(SecretString),
    Header {
        name: reqwest::header::HeaderName,
        token: SecretString,
    },
    Query {
        name: String,
        token: SecretString,
    },
    SigV4 {
        access_key: String,
        secret_key: SecretString,
        region: String,
        service: String,
    },
    /// OAuth2 client credentials: the client secret goes only to `token_url`; the access token
    /// is cached here and refreshed before it expires and once on a 401.
    OAuth2 {
        client_id: String,
        client_secret: SecretString,
        token_url: reqwest::Url,
        scope: Option<String>,
        token: Option<(SecretString, std::time::Instant)>,
    },
}

impl Auth {
    /// The authentication for a credential of `kind` with `user` and `secret`.
    pub(crate) fn new(
        kind: CredentialKind,
        user: Option<&str>,
        secret: SecretString,
        settings: &HttpAuthSettings,
    ) -> Result<Auth, HttpError> {
        match kind {
            CredentialKind::Password => Ok(Auth::Basic {
                user: user.unwrap_or_default().to_string(),
                password: secret,
            }),
            CredentialKind::Token => match (&settings.header, &settings.query) {
                (Some(_), Some(_)) => Err(HttpError::InvalidConfig(
                    "source.auth: set either `header` or `query`, not both".into(),
                )),
                (Some(h), None) => {
                    let name =
                        reqwest::header::HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                            HttpError::InvalidConfig(format!(
                                "source.auth.header `{h}` is not a header name"
                            ))
                        })?;
                    Ok(Auth::Header {
                        name,
                        token: secret,
                    })
                }
                (None, Some(q)) => Ok(Auth::Query {
                    name: q.clone(),
                    token: secret,
                }),
                (None, None) => Ok(Auth::Bearer(secret)),
            },
            CredentialKind::AwsAccessKey => {
                let (Some(region), Some(service)) = (&settings.aws_region, &settings.aws_service)
                else {
                    return Err(HttpError::InvalidConfig(
                        "an AWS access key needs source.auth.aws_region and source.auth.aws_service"
                            .into(),
                    ));
                };
                let Some(access_key) = user.filter(|u| !u.is_empty()) else {
                    return Err(HttpError::InvalidConfig(
                        "an AWS access key credential needs the access key id as its user (--user)"
                            .into(),
                    ));
                };
                Ok(Auth::SigV4 {
                    access_key: access_key.to_string(),
                    secret_key: secret,
                    region: region.clone(),
                    service: service.clone(),
                })
            }
            CredentialKind::Oauth2Client => {
                let Some(url) = &settings.token_url else {
                    return Err(HttpError::InvalidConfig(
                        "an OAuth2 client credential needs source.auth.token_url".into(),
                    ));
                };
                let token_url = reqwest::Url::parse(url).map_err(|e| {
                    HttpError::InvalidConfig(format!("source.auth.token_url `{url}`: {e}"))
                })?;
                let Some(client_id) = user.filter(|u| !u.is_empty()) else {
                    return Err(HttpError::InvalidConfig(
                        "an OAuth2 client credential needs the client id as its user (--user)"
                            .into(),
                    ));
                };
                Ok(Auth::OAuth2 {
                    client_id: client_id.to_string(),
                    client_secret: secret,
                    token_url,
                    scope: settings.scope.clone(),
                    token: None,
                })
            }
            CredentialKind::KeyPair => Err(HttpError::Denied(
                "a key-pair credential cannot authenticate HTTP requests".into(),
            )),
        }
    }

    /// `Basic base64(user:password)`, built in zeroizing buffers.
    pub(crate) fn basic_header(
        user: &str,
        password: &SecretString,
    ) -> Result<reqwest::header::HeaderValue, HttpError> {
        use base64::Engine as _;
        let mut plain = Zeroizing::new(String::with_capacity(user.len() + 1 + password.len()));
        plain.push_str(user);
        plain.push(':');
        plain.push_str(password.expose());
        let mut value = Zeroizing::new(String::with_capacity(6 + plain.len() * 4 / 3 + 4));
        value.push_str("Basic ");
        base64::engine::general_purpose::STANDARD.encode_string(plain.as_bytes(), &mut value);
        let mut v = reqwest::header::HeaderValue::from_bytes(value.as_bytes()).map_err(|_| {
            HttpError::InvalidConfig("the credential's secret cannot be sent in a header".into())
        })?;
        v.set_sensitive(true);
        Ok(v)
    }

    /// A header name the plugin may not set because this authentication owns it.
    pub(crate) fn owns_header(&self, name: &str) -> bool {
        match self {
            Auth::Header { name: h, .. } => h.as_str().eq_ignore_ascii_case(name),
            _ => false,
        }
    }

    /// Adds the authentication to a request about to be sent. `headers` are the request's
    /// headers (the signature covers them), `body` its body.
    pub(crate) fn apply(
        &self,
        url: &mut reqwest::Url,
        method: &str,
        headers: &mut reqwest::header::HeaderMap,
        body: &[u8],
    ) -> Result<(), HttpError> {
        use reqwest::header::{HeaderValue, AUTHORIZATION};
        let sensitive = |bytes: &[u8]| -> Result<HeaderValue, HttpError> {
            let mut v = HeaderValue::from_bytes(bytes).map_err(|_| {
                HttpError::InvalidConfig(
                    "the credential's secret cannot be sent in a header".into(),
                )
            })?;
            v.set_sensitive(true);
            Ok(v)
        };
        match self {
            Auth::Basic { user, password } => {
                headers.insert(AUTHORIZATION, Auth::basic_header(user, password)?);
            }
            Auth::OAuth2 { token, .. } => {
                let Some((token, _)) = token else {
                    return Err(HttpError::Unavailable("no OAuth2 access token".into()));
                };
                let mut value = Zeroizing::new(String::with_capacity(7 + token.len()));
                value.push_str("Bearer ");
                value.push_str(token.expose());
                headers.insert(AUTHORIZATION, sensitive(value.as_bytes())?);
            }
            Auth::Bearer(token) => {
                let mut value = Zeroizing::new(String::with_capacity(7 + token.len()));
                value.push_str("Bearer ");
                value.push_str(token.expose());
                headers.insert(AUTHORIZATION, sensitive(value.as_bytes())?);
            }
            Auth::Header { name, token } => {
                headers.insert(name.clone(), sensitive(token.expose().as_bytes())?);
            }
            Auth::Query { name, token } => {
                url.query_pairs_mut().append_pair(name, token.expose());
            }
            Auth::SigV4 {
                access_key,
                secret_key,
                region,
                service,
            } => {
                use aws_sigv4::http_request::{
                    sign, SignableBody, SignableRequest, SigningSettings,
                };
                let cannot = |e: &dyn std::fmt::Display| {
                    HttpError::InvalidConfig(format!("cannot sign the request: {e}"))
                };
                let creds = aws_credential_types::Credentials::new(
                    access_key.clone(),
                    secret_key.expose(),
                    None,
                    None,
                    "airlock",
                );
                let identity: aws_smithy_runtime_api::client::identity::Identity = creds.into();
                let params = aws_sigv4::sign::v4::SigningParams::builder()
                    .identity(&identity)
                    .region(region)
                    .name(service)
                    .time(std::time::SystemTime::now())
                    .settings(SigningSettings::default())
                    .build()
                    .map_err(|e| cannot(&e))?;
                let pairs: Vec<(&str, &str)> = headers
                    .iter()
                    .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
                    .collect();
                let signable = SignableRequest::new(
                    method,
                    url.as_str(),
                    pairs.into_iter(),
                    SignableBody::Bytes(body),
                )
                .map_err(|e| cannot(&e))?;
                let (instructions, _) = sign(signable, &params.into())
                    .map_err(|e| cannot(&e))?
                    .into_parts();
                let mut signed = Vec::new();
                for (name, value) in instructions.headers() {
                    let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                        .map_err(|e| cannot(&e))?;
                    signed.push((name, sensitive(value.as_bytes())?));
                }
                drop(instructions);
                for (name, value) in signed {
                    headers.insert(name, value);
                }
            }
        }
        Ok(())
    }
}
