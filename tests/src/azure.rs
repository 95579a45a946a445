//! A loopback stand-in for Azure Key Vault and its Microsoft Entra ID token endpoint. No real
//! Key Vault can run on 127.0.0.1, so this HTTPS server (rustls, a throwaway CA made with
//! rcgen) implements the documented endpoints airlock calls, with their documented answers:
//!
//! - `POST /{tenant}/oauth2/v2.0/token` — the OAuth 2.0 client-credentials grant
//!   (`grant_type`, `client_id`, `client_secret`, `scope=https://vault.azure.net/.default`);
//!   `200 {"token_type":"Bearer","expires_in":N,"access_token":...}`, or
//!   `401 {"error":"invalid_client","error_description":"AADSTS7000215: ..."}`.
//! - `GET /secrets/{name}[/{version}]?api-version=7.4` with `Authorization: Bearer <token>` —
//!   `200` secret bundle (`value`, `id`, `attributes`), `401` for a missing, unknown or expired
//!   token, `403 Forbidden / SecretDisabled` for a disabled version, `403 Forbidden /
//!   ForbiddenByRbac` for a secret the caller may not read, `404 SecretNotFound` for a deleted
//!   or never created secret.
//!
//! Every request is served on its own connection (`connection: close`). The server stops
//! listening when dropped.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One version of a secret.
struct Version {
    id: String,
    value: String,
    enabled: bool,
}

#[derive(Default)]
struct State {
    tenant: String,
    client_id: String,
    client_secret: String,
    /// Name -> versions, oldest first; the last is the latest.
    secrets: BTreeMap<String, Vec<Version>>,
    /// Issued access tokens and when they expire.
    tokens: Vec<(String, Instant)>,
    token_lifetime: Duration,
    /// Names whose reads are forbidden.
    denied: Vec<String>,
    /// When set, every request is answered with this status.
    outage: Option<u16>,
    token_requests: usize,
    secret_requests: usize,
    next: u64,
}

/// A running loopback Key Vault.
pub struct AzureKeyVault {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<std::thread::JoinHandle<()>>,
    dir: tempfile::TempDir,
}

/// A self-signed CA (PEM) and an issuer for server certificates.
pub struct TestCa {
    pub pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A server certificate and its key (PEM) for `names` (IP addresses become IP SANs).
    pub fn server_cert(&self, names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("server key");
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let params = rcgen::CertificateParams::new(names).expect("server params");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        (cert.pem(), key.serialize_pem())
    }
}

impl AzureKeyVault {
    /// Starts a vault for `tenant` that accepts `client_id` / `client_secret`.
    pub fn start(tenant: &str, client_id: &str, client_secret: &str) -> AzureKeyVault {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = TestCa::new("airlock test Key Vault CA");
        let key = rcgen::KeyPair::generate().expect("server key");
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("server params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "airlock test Key Vault");
        let cert = params
            .signed_by(&key, &ca.issuer)
            .expect("server certificate");
        std::fs::write(dir.path().join("ca.pem"), &ca.pem).expect("write CA");
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        )
        .expect("server TLS config");
        let tls = Arc::new(tls);

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("local addr").port();
        let state = Arc::new(Mutex::new(State {
            tenant: tenant.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            token_lifetime: Duration::from_secs(3599),
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (state, tls) = (state.clone(), tls.clone());
                    std::thread::spawn(move || serve(stream, tls, state, port));
                }
            })
        };
        AzureKeyVault {
            port,
            state,
            stop,
            acceptor: Some(acceptor),
            dir,
        }
    }

    /// `https://127.0.0.1:<port>`: both the vault URL and the Entra ID authority.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The PEM file of the CA that issued the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Sets a new version of `name` (it becomes the latest); returns the version id.
    pub fn set_secret(&self, name: &str, value: &str) -> String {
        let mut s = self.state.lock().unwrap();
        s.next += 1;
        let id = format!("{:032x}", 0xa2b0_0000_u64 + s.next);
        s.secrets.entry(name.into()).or_default().push(Version {
            id: id.clone(),
            value: value.into(),
            enabled: true,
        });
        id
    }

    /// Disables (or enables) the latest version of `name`.
    pub fn set_enabled(&self, name: &str, enabled: bool) {
        let mut s = self.state.lock().unwrap();
        let v = s
            .secrets
            .get_mut(name)
            .and_then(|v| v.last_mut())
            .expect("secret exists");
        v.enabled = enabled;
    }

    /// Makes reads of `name` fail as the caller's RBAC role would forbid them (403), or lifts
    /// that.
    pub fn set_denied(&self, name: &str, denied: bool) {
        let mut s = self.state.lock().unwrap();
        if denied {
            s.denied.push(name.to_string());
        } else {
            s.denied.retain(|n| n != name);
        }
    }

    /// Deletes `name` with every version.
    pub fn delete_secret(&self, name: &str) {
        self.state.lock().unwrap().secrets.remove(name);
    }

    /// How long new access tokens live.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.state.lock().unwrap().token_lifetime = lifetime;
    }

    /// Forgets every issued access token: they get 401 from now on.
    pub fn revoke_tokens(&self) {
        self.state.lock().unwrap().tokens.clear();
    }

    /// Answers every request with `status` (e.g. 503) until called with `None`.
    pub fn set_outage(&self, status: Option<u16>) {
        self.state.lock().unwrap().outage = status;
    }

    /// Requests to the token endpoint so far.
    pub fn token_requests(&self) -> usize {
        self.state.lock().unwrap().token_requests
    }

    /// Requests to the secrets endpoint so far.
    pub fn secret_requests(&self) -> usize {
        self.state.lock().unwrap().secret_requests
    }
}

impl Drop for AzureKeyVault {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        // Once joined, the listening socket is closed: new connections are refused.
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn serve(stream: TcpStream, tls: Arc<rustls::ServerConfig>, state: Arc<Mutex<State>>, port: u16) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(conn) = rustls::ServerConnection::new(tls) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, stream);
    let mut reader = BufReader::new(&mut tls);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => head.push(line.trim_end().to_string()),
        }
    }
    let length: usize = head
        .iter()
        .filter_map(|h| h.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length.min(1 << 20)];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    drop(reader);
    let (status, extra, json) = answer(&head, &body, &state, port);
    let text = json.to_string();
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = tls.write_all(response.as_bytes());
    let _ = tls.flush();
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

fn header<'a>(head: &'a [String], name: &str) -> Option<&'a str> {
    head.iter()
        .filter_map(|h| h.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// Decodes `application/x-www-form-urlencoded`.
fn form(body: &[u8]) -> BTreeMap<String, String> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (b[i], hex) {
                (b'+', _) => out.push(b' '),
                (b'%', Some(v)) => {
                    out.push(v);
                    i += 2;
                }
                (c, _) => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn vault_error(code: &str, message: &str, inner: Option<&str>) -> serde_json::Value {
    let mut e = serde_json::json!({"code": code, "message": message});
    if let Some(inner) = inner {
        e["innererror"] = serde_json::json!({"code": inner});
    }
    serde_json::json!({ "error": e })
}

fn answer(
    head: &[String],
    body: &[u8],
    state: &Mutex<State>,
    port: u16,
) -> (u16, &'static str, serde_json::Value) {
    let mut s = state.lock().unwrap();
    let request_line = head.first().cloned().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if let Some(status) = s.outage {
        if path.starts_with("/secrets/") {
            s.secret_requests += 1;
        } else {
            s.token_requests += 1;
        }
        return (
            status,
            "",
            vault_error("ServiceUnavailable", "The service is unavailable.", None),
        );
    }
    // POST /{tenant}/oauth2/v2.0/token
    if method == "POST" && path == format!("/{}/oauth2/v2.0/token", s.tenant) {
        s.token_requests += 1;
        let f = form(body);
        let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
        if get("grant_type") != "client_credentials"
            || get("scope") != "https://vault.azure.net/.default"
        {
            return (
                400,
                "",
                serde_json::json!({"error": "invalid_request", "error_description": "AADSTS900144: The request body must contain the parameters grant_type and scope.\r\nTrace ID: 0"}),
            );
        }
        if get("client_id") != s.client_id || get("client_secret") != s.client_secret {
            return (
                401,
                "",
                serde_json::json!({"error": "invalid_client", "error_description": format!("AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.\r\nTrace ID: 1\r\nCorrelation ID: 2", s.client_id), "error_codes": [7000215]}),
            );
        }
        s.next += 1;
        let token = format!(
            "eyJ0eXAi.test-access-token-{}.{}",
            s.next,
            std::process::id()
        );
        let lifetime = s.token_lifetime;
        s.tokens.push((token.clone(), Instant::now() + lifetime));
        return (
            200,
            "",
            serde_json::json!({"token_type": "Bearer", "expires_in": lifetime.as_secs(), "ext_expires_in": lifetime.as_secs(), "access_token": token}),
        );
    }
    // GET /secrets/{name}[/{version}]?api-version=7.4
    if let Some(rest) = path.strip_prefix("/secrets/") {
        s.secret_requests += 1;
        if method != "GET" {
            return (405, "", vault_error("BadParameter", "method", None));
        }
        if !query.split('&').any(|q| q == "api-version=7.4") {
            return (
                400,
                "",
                vault_error(
                    "BadParameter",
                    "The request URI contains an invalid api-version.",
                    None,
                ),
            );
        }
        let now = Instant::now();
        let authorized = header(head, "authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .is_some_and(|t| s.tokens.iter().any(|(k, exp)| k == t && *exp > now));
        if !authorized {
            return (
                401,
                "www-authenticate: Bearer authorization=\"https://login.microsoftonline.com/t\", resource=\"https://vault.azure.net\"\r\n",
                vault_error("Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.", None),
            );
        }
        let (name, version) = match rest.split_once('/') {
            Some((n, v)) if !v.is_empty() => (n, Some(v)),
            Some((n, _)) => (n, None),
            None => (rest, None),
        };
        let not_found = || {
            (
                404,
                "",
                vault_error(
                    "SecretNotFound",
                    &format!("A secret with (name/id) {name} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command."),
                    None,
                ),
            )
        };
        if s.denied.iter().any(|n| n == name) {
            return (
                403,
                "",
                vault_error(
                    "Forbidden",
                    &format!("Caller is not authorized to perform action on resource. If role assignments were recently changed, please wait several minutes for role assignments to become effective. Action: 'Microsoft.KeyVault/vaults/secrets/getSecret/action' Resource: '/secrets/{name}'"),
                    Some("ForbiddenByRbac"),
                ),
            );
        }
        let Some(versions) = s.secrets.get(name) else {
            return not_found();
        };
        let v = match version {
            Some(id) => versions.iter().find(|v| v.id == id),
            None => versions.last(),
        };
        let Some(v) = v else { return not_found() };
        if !v.enabled {
            return (
                403,
                "",
                vault_error(
                    "Forbidden",
                    "Operation get is not allowed on a disabled secret.",
                    Some("SecretDisabled"),
                ),
            );
        }
        return (
            200,
            "",
            serde_json::json!({
                "value": v.value,
                "id": format!("https://127.0.0.1:{port}/secrets/{name}/{}", v.id),
                "attributes": {"enabled": true, "created": 1700000000, "updated": 1700000000, "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90},
                "tags": {}
            }),
        );
    }
    (404, "", vault_error("NotFound", "no such endpoint", None))
}
