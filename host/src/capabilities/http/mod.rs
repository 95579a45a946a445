//! Outbound HTTP for plugins. A plugin opens a client for a base URL with an optional
//! credential handle; the host checks the base against the workflow's network policy and the
//! credential's destinations, resolves the secret itself, and authenticates every request to
//! the base's origin. Redirects are followed by the host, one hop at a time: each hop is
//! checked against the policy again (names and resolved addresses), and authentication is
//! never sent to another origin. Every denial is audited.

pub mod auth;
mod path;
pub mod policy;
mod special;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Url;

use self::auth::{Auth, HttpAuthSettings};
use self::policy::{NetworkPolicy, PolicyResolver, RequestRefusal, RequestShape};
use crate::capabilities::credentials::CredentialBinding;
use crate::capabilities::inbound::{InboundFilter, InboundStream};
use crate::home::destination_matches;
use crate::pipeline::scan::OutboundScanner;
use crate::runtime::budget::{MemoryBudget, Reservation};
use crate::secrets::redact::Redactor;
use crate::secrets::{SecretStoreError, SecretStores};
use crate::state::{RunAudit, StateStore};

/// Redirect hops followed for one request.
const MAX_REDIRECTS: usize = 5;
/// Headers one request may carry.
const MAX_HEADERS: usize = 64;
/// Headers authentication owns; a plugin may not set them.
const FORBIDDEN_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
];
/// Response headers a plugin never sees.
const HIDDEN_RESPONSE_HEADERS: &[&str] = &["set-cookie", "www-authenticate", "proxy-authenticate"];

/// Why an HTTP request failed; messages never contain a secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HttpError {
    /// The workflow or the request is malformed; the message names what.
    #[error("{0}")]
    InvalidConfig(String),
    /// The policy, the credential binding or the host refused the request.
    #[error("{0}")]
    Denied(String),
    /// The destination could not be reached or timed out; a retry may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// The destination answered something unusable.
    #[error("{0}")]
    Source(String),
    /// A size limit was reached.
    #[error("{0}")]
    Limit(String),
}

impl HttpError {
    /// The same error with its message passed through the redactor.
    pub fn redacted(self) -> HttpError {
        let r = Redactor::global();
        let f = |m: String| r.redact(&m).into_owned();
        match self {
            HttpError::InvalidConfig(m) => HttpError::InvalidConfig(f(m)),
            HttpError::Denied(m) => HttpError::Denied(f(m)),
            HttpError::Unavailable(m) => HttpError::Unavailable(f(m)),
            HttpError::Source(m) => HttpError::Source(f(m)),
            HttpError::Limit(m) => HttpError::Limit(f(m)),
        }
    }
}

/// One request from a plugin.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// `GET`, `POST`, `PUT`, `PATCH`, `DELETE` or `HEAD`.
    pub method: String,
    /// Path and query below the client's base URL; starts with `/`.
    pub path_and_query: String,
    /// The plugin's headers (never authentication).
    pub headers: Vec<(String, String)>,
    /// The request body.
    pub body: Vec<u8>,
}

/// The final response of a request.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// HTTP status code.
    pub status: u16,
    /// Headers, without cookies and authentication challenges.
    pub headers: Vec<(String, String)>,
    /// The whole body, bounded by the call limit.
    pub body: Vec<u8>,
}

/// Everything the HTTP capability needs for one run.
pub struct HttpAccess {
    policy: Arc<NetworkPolicy>,
    tls: Option<rustls::ClientConfig>,
    /// With `[network] client_cert`: the TLS settings presenting it, and the destinations
    /// (`host:port` patterns) of its credential, the only origins it is presented to.
    mtls: Option<(rustls::ClientConfig, Vec<String>)>,
    timeout: Duration,
    auth: HttpAuthSettings,
    stores: Option<SecretStores>,
    state: Option<Arc<StateStore>>,
    audit: RunAudit,
    scanner: Option<Arc<OutboundScanner>>,
    /// Every header and body byte passes it before the plugin sees it.
    inbound: Arc<InboundFilter>,
    /// Response bodies being read are charged to the run's host-memory budget.
    budget: Arc<MemoryBudget>,
}

impl HttpAccess {
    /// The capability for a run with the workflow's `[network]` and `[source.auth]` tables.
    /// `ca_files` are resolved paths. Without an allow list every request is denied.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        network: &policy::NetworkConfig,
        ca_files: &[PathBuf],
        auth: HttpAuthSettings,
        stores: Option<SecretStores>,
        state: Option<Arc<StateStore>>,
        audit: RunAudit,
        scanner: Option<Arc<OutboundScanner>>,
    ) -> Result<Self, HttpError> {
        let policy = NetworkPolicy::parse(&network.allow).map_err(HttpError::InvalidConfig)?;
        let tls = if policy.is_empty() {
            None
        } else {
            Some(client_tls(ca_files, None)?)
        };
        Ok(HttpAccess {
            policy: Arc::new(policy),
            tls,
            mtls: None,
            timeout: Duration::from_secs(network.timeout_s.unwrap_or(60).max(1)),
            auth,
            stores,
            state,
            audit,
            scanner,
            inbound: Arc::new(InboundFilter::disarmed()),
            budget: MemoryBudget::new(usize::MAX),
        })
    }

    /// Charges response bodies being read to `budget`.
    pub fn with_budget(mut self, budget: Arc<MemoryBudget>) -> Self {
        self.budget = budget;
        self
    }

    /// Passes every response through `inbound` before the plugin sees it.
    pub fn with_inbound(mut self, inbound: Arc<InboundFilter>) -> Self {
        self.inbound = inbound;
        self
    }

    fn deny(
        &self,
        guid: Option<&str>,
        destination: &str,
        action: &str,
        message: String,
    ) -> HttpError {
        self.audit
            .record(action, "denied", guid, Some(destination), Some(&message));
        HttpError::Denied(message)
    }

    /// Audits a request the allow list refused (method, path or operation) and returns the
    /// plugin's `denied` error.
    fn deny_request(
        &self,
        guid: Option<&str>,
        destination: &str,
        refusal: RequestRefusal,
    ) -> HttpError {
        self.audit.record(
            "network",
            "denied",
            guid,
            Some(destination),
            Some(&refusal.audit),
        );
        HttpError::Denied(refusal.message)
    }

    /// Checks a URL's scheme, name and port against the policy (auditing a denial).
    fn check_url(&self, url: &Url, guid: Option<&str>) -> Result<Origin, HttpError> {
        let origin = Origin::of(url).map_err(HttpError::InvalidConfig)?;
        if let Err(why) = self.policy.check_name(&origin.host, origin.port) {
            return Err(self.deny(guid, &origin.address(), "network", why));
        }
        Ok(origin)
    }

    /// Opens a client for `base`, authenticated with `binding` when given.
    pub async fn open(
        self: &Arc<Self>,
        base: &str,
        binding: Option<&CredentialBinding>,
    ) -> Result<HttpClient, HttpError> {
        let shown: String = base.chars().filter(|c| !c.is_control()).take(256).collect();
        let url = Url::parse(base)
            .map_err(|e| HttpError::InvalidConfig(format!("base URL `{shown}`: {e}")))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(HttpError::InvalidConfig(
                "the base URL may not carry user information; bind a credential instead".into(),
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(HttpError::InvalidConfig(format!(
                "base URL `{shown}` may not have a query or fragment"
            )));
        }
        let guid = binding.map(|b| b.record.guid.as_str());
        if self.policy.is_empty() {
            let origin = Origin::of(&url).map_err(HttpError::InvalidConfig)?;
            return Err(self.deny(
                guid,
                &origin.address(),
                "network",
                "the workflow allows no network destinations; add them to [network] allow".into(),
            ));
        }
        let origin = self.check_url(&url, guid)?;
        // The base path in the canonical form requests are checked in; every request stays
        // below it.
        let mut url = url;
        let base_path = path::normalize(url.path()).map_err(|e| {
            self.deny(
                guid,
                &origin.address(),
                "network",
                format!("base URL refused: {e}"),
            )
        })?;
        url.set_path(&base_path);
        if url.path() != base_path {
            return Err(HttpError::InvalidConfig(format!(
                "base URL `{shown}` has a path that cannot be sent unchanged"
            )));
        }
        let auth = match binding {
            None => None,
            Some(binding) => Some(self.authenticate(binding, &origin, &url).await?),
        };
        Ok(HttpClient {
            access: self.clone(),
            base: url,
            origin,
            auth,
            guid: guid.map(str::to_string),
            clients: HashMap::new(),
        })
    }

    async fn authenticate(
        &self,
        binding: &CredentialBinding,
        origin: &Origin,
        url: &Url,
    ) -> Result<Auth, HttpError> {
        let guid = binding.record.guid.as_str();
        let address = origin.address();
        if !binding
            .record
            .destinations
            .iter()
            .any(|d| destination_matches(d, &address))
        {
            return Err(self.deny(
                Some(guid),
                &address,
                "login",
                format!(
                    "credential {guid} is not bound to {address} (its destinations: {})",
                    binding.record.destinations.join(", ")
                ),
            ));
        }
        if url.scheme() != "https" && !self.auth.allow_cleartext {
            return Err(self.deny(
                Some(guid),
                &address,
                "login",
                format!(
                    "refusing to authenticate over cleartext http:// to {address}; use https:// (or source.auth.allow_cleartext = true for a test server)"
                ),
            ));
        }
        // Re-read the record: a credential revoked during the run must not be used again.
        let record = match &self.state {
            Some(state) => state
                .credential(guid)
                .map_err(|e| self.deny(Some(guid), &address, "login", e.to_string()))?,
            None => binding.record.clone(),
        };
        if let Some(at) = &record.revoked_at {
            return Err(self.deny(
                Some(guid),
                &address,
                "login",
                format!("credential {guid} was revoked at {at}"),
            ));
        }
        let Some(stores) = &self.stores else {
            return Err(HttpError::Unavailable(format!(
                "credential {guid}: no secret store is open"
            )));
        };
        let failed = |message: String| {
            self.audit.record(
                "resolve",
                "failed",
                Some(guid),
                Some(&address),
                Some(&message),
            );
            message
        };
        let store = stores
            .get(&record.backend)
            .map_err(|e| HttpError::Unavailable(failed(format!("credential {guid}: {e}"))))?;
        let secret = match store.resolve(&record.locator).await {
            Ok(s) => s,
            Err(e) => {
                let message = failed(format!(
                    "credential {guid} cannot be resolved from the `{}` backend: {e}",
                    record.backend
                ));
                return Err(match e {
                    SecretStoreError::Denied(_) | SecretStoreError::NotFound(_) => {
                        HttpError::Denied(message)
                    }
                    SecretStoreError::Invalid(_) => HttpError::InvalidConfig(message),
                    SecretStoreError::Unavailable(_) => HttpError::Unavailable(message),
                });
            }
        };
        Redactor::global().register(&secret);
        if let Some(scanner) = &self.scanner {
            scanner.register(&secret);
            if let Some(user) = record.username.as_deref() {
                scanner.register_login(user, &secret);
            }
        }
        self.audit
            .record("resolve", "ok", Some(guid), Some(&address), None);
        let auth = Auth::new(binding.kind, record.username.as_deref(), secret, &self.auth)?;
        if let Auth::OAuth2 { token_url, .. } = &auth {
            // The client secret goes to the token endpoint: it must be a destination of the
            // credential and allowed by the policy, like the API itself.
            let token_origin = self.check_url(token_url, Some(guid))?;
            let token_address = token_origin.address();
            if !record
                .destinations
                .iter()
                .any(|d| destination_matches(d, &token_address))
            {
                return Err(self.deny(
                    Some(guid),
                    &token_address,
                    "login",
                    format!("credential {guid} is not bound to the token endpoint {token_address}"),
                ));
            }
            if token_url.scheme() != "https" && !self.auth.allow_cleartext {
                return Err(self.deny(
                    Some(guid),
                    &token_address,
                    "login",
                    format!("refusing to send client credentials over cleartext http:// to {token_address}"),
                ));
            }
        }
        self.audit
            .record("login", "ok", Some(guid), Some(&address), Some("http"));
        Ok(auth)
    }
}

/// Scheme, host and port: what decides whether authentication may be sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    fn of(url: &Url) -> Result<Origin, String> {
        let scheme = url.scheme().to_string();
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "only http:// and https:// URLs are allowed, not {scheme}://"
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| "the URL has no host".to_string())?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| "the URL has no port".to_string())?;
        Ok(Origin { scheme, host, port })
    }

    fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The host side of a plugin's `client` resource.
pub struct HttpClient {
    access: Arc<HttpAccess>,
    base: Url,
    origin: Origin,
    auth: Option<Auth>,
    guid: Option<String>,
    /// One reqwest client per origin, each with a resolver bound to that origin's port.
    clients: HashMap<Origin, (reqwest::Client, DenialSlot)>,
}

/// Where an origin's resolver leaves the reason it refused every address.
type DenialSlot = Arc<Mutex<Option<String>>>;

impl HttpClient {
    /// The client's base path without a trailing slash (`""` for the root).
    fn base_path(&self) -> &str {
        self.base.path().trim_end_matches('/')
    }

    /// The base path as shown in messages.
    fn shown_base(&self) -> &str {
        match self.base_path() {
            "" => "/",
            p => p,
        }
    }

    /// Makes sure an OAuth2 client holds a live access token: fetched at first use, again
    /// before it expires, and at once when `force` (the API answered 401).
    async fn ensure_token(&mut self, force: bool) -> Result<(), HttpError> {
        let (header, url, scope) = match &self.auth {
            Some(Auth::OAuth2 {
                client_id,
                client_secret,
                token_url,
                scope,
                token,
            }) => {
                if !force
                    && token
                        .as_ref()
                        .is_some_and(|(_, until)| std::time::Instant::now() < *until)
                {
                    return Ok(());
                }
                (
                    Auth::basic_header(client_id, client_secret)?,
                    token_url.clone(),
                    scope.clone(),
                )
            }
            _ => return Ok(()),
        };
        let guid = self.guid.clone();
        let origin = self.access.check_url(&url, guid.as_deref())?;
        let address = origin.address();
        let (client, denied) = self.client_for(&origin)?;
        let mut form = vec![("grant_type", "client_credentials".to_string())];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        let result = client
            .post(url)
            .header(reqwest::header::AUTHORIZATION, header)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await;
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => {
                if let Some(why) = denied.lock().ok().and_then(|mut d| d.take()) {
                    return Err(self.access.deny(guid.as_deref(), &address, "network", why));
                }
                return Err(HttpError::Unavailable(format!(
                    "OAuth2 token endpoint {address}: {}",
                    describe(e)
                )));
            }
        };
        let status = resp.status().as_u16();
        let mut body = zeroize::Zeroizing::new(Vec::with_capacity(64 * 1024));
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| HttpError::Unavailable(describe(e)))?
        {
            if body.len() + chunk.len() > body.capacity() {
                return Err(HttpError::Source(
                    "the OAuth2 token response is too large".into(),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        if status != 200 {
            let message = format!(
                "the OAuth2 token endpoint {address} refused the client credentials (HTTP {status})"
            );
            self.access.audit.record(
                "token",
                "failed",
                guid.as_deref(),
                Some(&address),
                Some(&message),
            );
            return Err(HttpError::Denied(message));
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
            HttpError::Source(format!(
                "the OAuth2 token endpoint {address} did not answer with an access_token"
            ))
        })?;
        let token = crate::secrets::SecretString::new(parsed.access_token);
        Redactor::global().register(&token);
        if let Some(scanner) = &self.access.scanner {
            scanner.register(&token);
        }
        let lifetime = parsed.expires_in.unwrap_or(3600);
        // Refresh a little before the server's expiry.
        let margin = (lifetime / 2).min(30);
        let until = std::time::Instant::now() + Duration::from_secs(lifetime - margin);
        self.access
            .audit
            .record("token", "ok", guid.as_deref(), Some(&address), None);
        if let Some(Auth::OAuth2 { token: slot, .. }) = &mut self.auth {
            *slot = Some((token, until));
        }
        Ok(())
    }

    fn client_for(&mut self, origin: &Origin) -> Result<(reqwest::Client, DenialSlot), HttpError> {
        if let Some(c) = self.clients.get(origin) {
            return Ok(c.clone());
        }
        let denied = Arc::new(Mutex::new(None));
        let resolver = PolicyResolver {
            policy: self.access.policy.clone(),
            port: origin.port,
            denied: denied.clone(),
        };
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.access.timeout)
            .connect_timeout(self.access.timeout.min(Duration::from_secs(10)))
            .dns_resolver(Arc::new(resolver));
        let address = origin.address();
        let tls = match &self.access.mtls {
            Some((mtls, bound)) if bound.iter().any(|d| destination_matches(d, &address)) => {
                Some(mtls)
            }
            _ => self.access.tls.as_ref(),
        };
        if let Some(tls) = tls {
            builder = builder.use_preconfigured_tls(tls.clone());
        }
        let client = builder
            .build()
            .map_err(|e| HttpError::Unavailable(format!("cannot build the HTTP client: {e}")))?;
        self.clients
            .insert(origin.clone(), (client.clone(), denied.clone()));
        Ok((client, denied))
    }

    /// Sends one request; `max_bytes` bounds the request and the response body.
    pub async fn send(
        &mut self,
        req: HttpRequest,
        max_bytes: usize,
    ) -> Result<HttpResponse, HttpError> {
        let head = self
            .send_head(req, max_bytes)
            .await
            .map_err(HttpError::redacted)?;
        let headers = self.inbound_headers(&head)?;
        let mut body = self.body(head, max_bytes as u64);
        let mut out = Vec::new();
        let mut held = Reservation::none();
        while let Some(chunk) = body.read(max_bytes).await? {
            held.grow(&self.access.budget, chunk.len(), "an HTTP response body")
                .map_err(HttpError::Limit)?;
            out.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            status: body.status,
            headers,
            body: out,
        })
    }

    /// Sends one request and returns once the response head arrived; the body is read from
    /// the returned [`HttpBody`], bounded in total by `max_total` bytes. `max_bytes` bounds
    /// the request body.
    pub async fn send_streaming(
        &mut self,
        req: HttpRequest,
        max_bytes: usize,
        max_total: u64,
    ) -> Result<(u16, Vec<(String, String)>, HttpBody), HttpError> {
        let head = self
            .send_head(req, max_bytes)
            .await
            .map_err(HttpError::redacted)?;
        let headers = self.inbound_headers(&head)?;
        let body = self.body(head, max_total);
        Ok((body.status, headers, body))
    }

    /// The response headers as the plugin may see them: every name and value through the
    /// inbound secret filter.
    fn inbound_headers(&self, head: &Head) -> Result<Vec<(String, String)>, HttpError> {
        let filter = &self.access.inbound;
        let destination = destination_of(head.resp.url());
        if !filter.is_armed() {
            return Ok(head.headers.clone());
        }
        head.headers
            .iter()
            .map(|(k, v)| {
                Ok((
                    filter
                        .text(k.clone(), "http headers", &destination)
                        .map_err(HttpError::Denied)?,
                    filter
                        .text(v.clone(), "http headers", &destination)
                        .map_err(HttpError::Denied)?,
                ))
            })
            .collect()
    }

    fn body(&self, head: Head, max_total: u64) -> HttpBody {
        HttpBody {
            destination: destination_of(head.resp.url()),
            status: head.status,
            resp: head.resp,
            ready: Vec::new(),
            offset: 0,
            read: 0,
            max_total,
            done: false,
            inbound: self.access.inbound.clone(),
            stream: InboundStream::default(),
            budget: self.access.budget.clone(),
            held: Reservation::none(),
        }
    }

    /// Sends one request (following redirects, authenticating at its own origin) and returns
    /// the final response's head; its body is not read yet.
    async fn send_head(&mut self, req: HttpRequest, max_bytes: usize) -> Result<Head, HttpError> {
        let mut method = match req.method.to_ascii_uppercase().as_str() {
            m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD") => {
                reqwest::Method::from_bytes(m.as_bytes())
                    .map_err(|_| HttpError::InvalidConfig("bad method".into()))?
            }
            _ => {
                return Err(HttpError::InvalidConfig(format!(
                    "HTTP method `{}` is not allowed (GET, POST, PUT, PATCH, DELETE, HEAD)",
                    req.method.chars().take(16).collect::<String>()
                )))
            }
        };
        let pq = &req.path_and_query;
        if !pq.starts_with('/')
            || pq.starts_with("//")
            || pq.chars().any(|c| c.is_control() || c == '#')
        {
            return Err(HttpError::InvalidConfig(
                "path-and-query must start with a single `/` and hold no control characters or fragment".into(),
            ));
        }
        if req.body.len() > max_bytes {
            return Err(HttpError::Limit(format!(
                "request body of {} bytes exceeds the call limit of {max_bytes} bytes",
                req.body.len()
            )));
        }
        if req.headers.len() > MAX_HEADERS {
            return Err(HttpError::Limit(format!(
                "more than {MAX_HEADERS} request headers"
            )));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &req.headers {
            let lower = name.to_ascii_lowercase();
            if FORBIDDEN_HEADERS.contains(&lower.as_str())
                || lower.starts_with("proxy-")
                || self.auth.as_ref().is_some_and(|a| a.owns_header(&lower))
            {
                return Err(HttpError::Denied(format!(
                    "header `{}` is set by the host, not the plugin",
                    lower.chars().take(64).collect::<String>()
                )));
            }
            let n = HeaderName::from_bytes(lower.as_bytes())
                .map_err(|_| HttpError::InvalidConfig("invalid header name".into()))?;
            let v = HeaderValue::from_str(value).map_err(|_| {
                HttpError::InvalidConfig(format!("invalid value for header `{lower}`"))
            })?;
            headers.append(n, v);
        }
        let guid = self.guid.clone();
        // The base path and the request's path are combined here, after normalising the
        // request's path on its own: a `..` cannot climb out of the base path, and what is
        // checked is what is sent.
        let (rel, query) = match pq.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (pq.as_str(), None),
        };
        let rel = path::normalize(rel).map_err(|e| {
            self.access.deny(
                guid.as_deref(),
                &self.origin.address(),
                "network",
                format!(
                    "request refused: {e} (below the base path {})",
                    self.shown_base()
                ),
            )
        })?;
        let full = format!("{}{rel}", self.base.path().trim_end_matches('/'));
        let mut url = Url::parse(&format!(
            "{}://{}{full}{}",
            self.origin.scheme,
            self.origin.address(),
            query.map(|q| format!("?{q}")).unwrap_or_default()
        ))
        .map_err(|e| HttpError::InvalidConfig(format!("request URL: {e}")))?;
        if url.path() != full || !path::within(&full, self.base_path()) {
            return Err(self.access.deny(
                guid.as_deref(),
                &self.origin.address(),
                "network",
                "request refused: its path changes when parsed as a URL".into(),
            ));
        }
        let mut body = req.body;
        let mut refreshed = false;
        for hop in 0..=MAX_REDIRECTS {
            let origin = self.access.check_url(&url, guid.as_deref())?;
            // Every hop is checked against the methods, paths and operations its allow
            // entries permit, before anything is sent.
            let targets: Vec<&str> = headers
                .get_all("x-amz-target")
                .iter()
                .map(|v| v.to_str().unwrap_or("\u{fffd}"))
                .collect();
            let shape = RequestShape {
                method: method.as_str(),
                path: url.path(),
                aws_targets: &targets,
            };
            if let Err(refusal) =
                self.access
                    .policy
                    .check_request(&origin.host, origin.port, &shape)
            {
                let refusal = if hop > 0 {
                    RequestRefusal {
                        message: format!("redirect denied: {}", refusal.message),
                        audit: format!("redirect denied: {}", refusal.audit),
                    }
                } else {
                    refusal
                };
                return Err(self
                    .access
                    .deny_request(guid.as_deref(), &origin.address(), refusal));
            }
            let (client, denied) = self.client_for(&origin)?;
            let mut send_url = url.clone();
            let mut send_headers = headers.clone();
            // Authentication only ever goes to the origin the client was opened for.
            if origin == self.origin {
                self.ensure_token(false).await?;
                if let Some(auth) = &self.auth {
                    auth.apply(&mut send_url, method.as_str(), &mut send_headers, &body)?;
                }
            }
            if let Ok(mut d) = denied.lock() {
                *d = None;
            }
            let result = client
                .request(method.clone(), send_url)
                .headers(send_headers)
                .body(body.clone())
                .send()
                .await;
            let resp = match result {
                Ok(r) => r,
                Err(e) => {
                    let why = denied.lock().ok().and_then(|mut d| d.take());
                    if let Some(why) = why {
                        return Err(self.access.deny(
                            guid.as_deref(),
                            &origin.address(),
                            "network",
                            why,
                        ));
                    }
                    return Err(HttpError::Unavailable(describe(e)));
                }
            };
            let status = resp.status().as_u16();
            if status == 401
                && origin == self.origin
                && !refreshed
                && matches!(self.auth, Some(Auth::OAuth2 { .. }))
            {
                // The token was revoked or expired early: fetch a new one and retry once.
                refreshed = true;
                self.ensure_token(true).await?;
                continue;
            }
            if matches!(status, 301 | 302 | 303 | 307 | 308) {
                let Some(location) = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                else {
                    return Err(HttpError::Source(format!(
                        "redirect {status} without a Location"
                    )));
                };
                let mut next = url
                    .join(location)
                    .map_err(|e| HttpError::Source(format!("redirect to an invalid URL: {e}")))?;
                if hop == MAX_REDIRECTS {
                    return Err(HttpError::Source(format!(
                        "more than {MAX_REDIRECTS} redirects"
                    )));
                }
                let next_origin = Origin::of(&next).map_err(|why| {
                    self.access.deny(
                        guid.as_deref(),
                        &origin.address(),
                        "network",
                        format!("redirect from {} denied: {why}", origin.address()),
                    )
                })?;
                if let Err(why) = self
                    .access
                    .policy
                    .check_name(&next_origin.host, next_origin.port)
                {
                    return Err(self.access.deny(
                        guid.as_deref(),
                        &next_origin.address(),
                        "network",
                        format!("redirect from {} denied: {why}", origin.address()),
                    ));
                }
                // The target's path is normalised like a request's; on the client's own
                // origin (where authentication is sent) it must stay below the base path.
                let canonical = path::normalize(next.path()).map_err(|e| {
                    self.access.deny(
                        guid.as_deref(),
                        &next_origin.address(),
                        "network",
                        format!("redirect from {} denied: {e}", origin.address()),
                    )
                })?;
                next.set_path(&canonical);
                if next.path() != canonical
                    || (next_origin == self.origin && !path::within(&canonical, self.base_path()))
                {
                    return Err(self.access.deny(
                        guid.as_deref(),
                        &next_origin.address(),
                        "network",
                        format!(
                            "redirect from {} denied: its target path is outside the client's base path {}",
                            origin.address(),
                            self.shown_base()
                        ),
                    ));
                }
                if status == 303
                    || ((status == 301 || status == 302) && method == reqwest::Method::POST)
                {
                    method = reqwest::Method::GET;
                    body = Vec::new();
                    headers.remove(reqwest::header::CONTENT_TYPE);
                }
                url = next;
                continue;
            }
            let mut out_headers = Vec::new();
            for (k, v) in resp.headers() {
                if HIDDEN_RESPONSE_HEADERS.contains(&k.as_str()) {
                    continue;
                }
                if let Ok(v) = v.to_str() {
                    out_headers.push((k.as_str().to_string(), v.to_string()));
                }
            }
            return Ok(Head {
                status,
                headers: out_headers,
                resp,
            });
        }
        Err(HttpError::Source(format!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }
}

/// The final response's status and visible headers; the body is still unread.
struct Head {
    status: u16,
    headers: Vec<(String, String)>,
    resp: reqwest::Response,
}

/// `host:port` of a URL, as the audit log names destinations.
fn destination_of(url: &Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// The body of a response, read in pieces, bounded in total, and passed through the inbound
/// secret filter (with a held-back tail, so a secret split across network reads is found).
pub struct HttpBody {
    resp: reqwest::Response,
    status: u16,
    destination: String,
    /// Filtered bytes not handed out yet (from `offset`).
    ready: Vec<u8>,
    offset: usize,
    /// Bytes received from the network.
    read: u64,
    max_total: u64,
    done: bool,
    inbound: Arc<InboundFilter>,
    stream: InboundStream,
    /// `ready` charged to the run's host-memory budget.
    budget: Arc<MemoryBudget>,
    held: Reservation,
}

impl HttpBody {
    fn too_large(&self) -> HttpError {
        HttpError::Limit(format!(
            "response body exceeds the limit of {} bytes",
            self.max_total
        ))
    }

    /// Up to `max` bytes of the body, or `None` at its end. A body longer than the total
    /// limit is a `limit` error (detected from `Content-Length` before anything is read).
    pub async fn read(&mut self, max: usize) -> Result<Option<Vec<u8>>, HttpError> {
        if self.read == 0
            && self
                .resp
                .content_length()
                .is_some_and(|n| n > self.max_total)
        {
            return Err(self.too_large());
        }
        let max = max.max(1);
        while self.offset >= self.ready.len() {
            if self.done {
                return Ok(None);
            }
            let chunk = self
                .resp
                .chunk()
                .await
                .map_err(|e| HttpError::Unavailable(describe(e)).redacted())?;
            let last = chunk.is_none();
            let chunk = chunk.unwrap_or_default();
            if self.read + chunk.len() as u64 > self.max_total {
                return Err(self.too_large());
            }
            self.read += chunk.len() as u64;
            self.done = last;
            // The previous piece is handed out: give back its charge, then charge this one
            // (with room for what the filter holds back and replaces).
            self.held = Reservation::none();
            self.ready = Vec::new();
            self.held = self
                .budget
                .try_reserve(chunk.len() * 2, "a streamed HTTP response body")
                .map_err(HttpError::Limit)?;
            self.ready = self
                .stream
                .push(&self.inbound, &chunk, last, "http body", &self.destination)
                .map_err(HttpError::Denied)?;
            self.offset = 0;
        }
        let n = (self.ready.len() - self.offset).min(max);
        let out = self.ready[self.offset..self.offset + n].to_vec();
        self.offset += n;
        Ok(Some(out))
    }
}

/// A reqwest error without its URL (a query may hold an API key) and with its causes.
fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// rustls with the ring provider, TLS 1.2 and 1.3, the system roots plus `ca_files`, and the
/// client identity for mutual TLS if the workflow names one.
fn client_tls(
    ca_files: &[PathBuf],
    identity: Option<crate::tls::ClientIdentity>,
) -> Result<rustls::ClientConfig, HttpError> {
    let files: Vec<&std::path::Path> = ca_files.iter().map(PathBuf::as_path).collect();
    let roots =
        crate::tls::roots(true, &files, "network.ca_files").map_err(HttpError::InvalidConfig)?;
    crate::tls::client_config(roots, identity).map_err(|e| match e {
        crate::tls::TlsSetupError::Setup(m) => HttpError::InvalidConfig(m),
        crate::tls::TlsSetupError::Identity(m) => {
            HttpError::Denied(format!("network.client_cert: {m}"))
        }
    })
}

impl HttpAccess {
    /// The capability for one run of `cfg` (with an empty allow list it denies everything).
    /// A `[network] client_cert` is resolved now, audited like every resolution.
    pub async fn for_run(
        cfg: &crate::config::LoadedConfig,
        home: Option<&crate::home::Home>,
        audit: RunAudit,
        scanner: &Arc<OutboundScanner>,
        inbound: &Arc<InboundFilter>,
    ) -> Result<Option<Self>, HttpError> {
        let network = &cfg.config.network;
        if network.allow.is_empty() && !network.ca_files.is_empty() {
            return Err(HttpError::InvalidConfig(
                "network.ca_files is set but network.allow is empty".into(),
            ));
        }
        // Even without an allow list the capability exists, so that a refused request is
        // audited like every other denial.
        let ca_files: Vec<PathBuf> = network.ca_files.iter().map(|f| cfg.resolve(f)).collect();
        let mut access = HttpAccess::new(
            network,
            &ca_files,
            cfg.config.source.auth.clone().unwrap_or_default(),
            home.map(|h| h.stores().clone()),
            home.map(|h| h.state().clone()),
            audit.clone(),
            Some(scanner.clone()),
        )?
        .with_inbound(inbound.clone());
        if let Some(guid) = &network.client_cert {
            if network.allow.is_empty() {
                return Err(HttpError::InvalidConfig(
                    "network.client_cert is set but network.allow is empty".into(),
                ));
            }
            let Some(home) = home else {
                return Err(HttpError::InvalidConfig(
                    "network.client_cert needs an airlock home (use `airlock run`, which opens $AIRLOCK_HOME)".into(),
                ));
            };
            let usage = crate::home::CredentialUse {
                guid,
                setting: "network.client_cert",
                destination: None,
                purpose: "network client certificate",
            };
            let (record, pem) = home
                .resolve_for(&usage, &audit, Some(scanner), |_| Ok(()))
                .await
                .map_err(|e| HttpError::Denied(e.to_string()))?;
            let identity = crate::tls::ClientIdentity::from_pem(&pem).map_err(|what| {
                HttpError::Denied(format!(
                    "the secret of network.client_cert credential {guid} {what}; it must be the PEM certificate chain followed by its PEM private key"
                ))
            })?;
            access.mtls = Some((client_tls(&ca_files, Some(identity))?, record.destinations));
        }
        Ok(Some(access))
    }
}
