//! A loopback HTTPS tenant for the HTTPS sink's tests: a rustls server on 127.0.0.1 and a free
//! port that stores `PUT` objects, checks the API key, the body's SHA-256 and (when given a
//! client CA) the client certificate, and can be told to answer with a status instead (401
//! once, 5xx n times) or to run a hook before the next request. HTTP/1.1 with keep-alive and
//! `content-length` bodies, which is what the sink sends. Stopped on drop.
//!
//! [`Pki`] makes the certificates: a server CA and a certificate for 127.0.0.1, a client CA and
//! a client certificate, and an unrelated CA with its own client certificate.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Certificates for a tenant test, all PEM.
pub struct Pki {
    /// The CA that signed the server certificate.
    pub ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
    /// The CA the tenant trusts for client certificates.
    pub client_ca_pem: String,
    /// A client certificate signed by `client_ca_pem`, followed by its private key.
    pub client_pem: String,
    /// A CA unrelated to the others.
    pub other_ca_pem: String,
    /// A client certificate signed by `other_ca_pem`, followed by its private key.
    pub stranger_pem: String,
}

fn ca(name: &str) -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let key = rcgen::KeyPair::generate().expect("CA key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let cert = params.self_signed(&key).expect("CA certificate");
    (cert.pem(), rcgen::Issuer::new(params, key))
}

fn client_cert(issuer: &rcgen::Issuer<'static, rcgen::KeyPair>, name: &str) -> String {
    let key = rcgen::KeyPair::generate().expect("client key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, issuer).expect("client certificate");
    format!("{}{}", cert.pem(), key.serialize_pem())
}

impl Pki {
    /// Generates a fresh set.
    pub fn generate() -> Pki {
        let (ca_pem, server_ca) = ca("airlock tenant test CA");
        let key = rcgen::KeyPair::generate().expect("server key");
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("server params");
        let cert = params
            .signed_by(&key, &server_ca)
            .expect("server certificate");
        let (client_ca_pem, client_ca) = ca("airlock tenant client CA");
        let (other_ca_pem, other_ca) = ca("an unrelated CA");
        Pki {
            ca_pem,
            server_cert_pem: cert.pem(),
            server_key_pem: key.serialize_pem(),
            client_ca_pem,
            client_pem: client_cert(&client_ca, "airlock agent"),
            other_ca_pem,
            stranger_pem: client_cert(&other_ca, "a stranger"),
        }
    }
}

impl Pki {
    /// A TLS acceptor presenting the server certificate for 127.0.0.1 and offering `alpn`.
    /// With `require_client_cert` the handshake needs a client certificate signed by
    /// `client_ca_pem`.
    pub fn acceptor(&self, require_client_cert: bool, alpn: &[u8]) -> tokio_rustls::TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("TLS versions");
        let builder = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(self.client_ca_pem.as_bytes()) {
                roots.add(c.expect("client CA PEM")).expect("client CA");
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let certs = CertificateDer::pem_slice_iter(self.server_cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("server certificate PEM");
        let key = PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes()).expect("key PEM");
        let mut config = builder
            .with_single_cert(certs, key)
            .expect("server certificate");
        config.alpn_protocols = vec![alpn.to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

/// One request the tenant answered.
#[derive(Debug, Clone)]
pub struct Logged {
    /// `PUT`, `GET`, ...
    pub method: String,
    /// The request path (`/api/runs/<run-id>/<file>`, or `/api/failed/<run-id>.jsonl`).
    pub path: String,
    /// The status answered.
    pub status: u16,
    /// Whether the connection presented a client certificate.
    pub client_cert: bool,
}

type Hook = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct State {
    keys: Vec<String>,
    fail: VecDeque<u16>,
    hook: Option<Hook>,
    objects: BTreeMap<String, Vec<u8>>,
    log: Vec<Logged>,
    handshake_failures: Vec<String>,
}

/// A running tenant.
pub struct Tenant {
    port: u16,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

/// The path every object is stored under.
pub const BASE_PATH: &str = "/api";

impl Tenant {
    /// Starts a tenant serving `pki`'s server certificate and accepting `api_key` as
    /// `Authorization: Bearer`. With `require_client_cert` the TLS handshake needs a client
    /// certificate signed by `pki.client_ca_pem`.
    pub async fn start(pki: &Pki, api_key: &str, require_client_cert: bool) -> Tenant {
        let acceptor = pki.acceptor(require_client_cert, b"http/1.1");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("local address").port();
        let state = Arc::new(Mutex::new(State {
            keys: vec![api_key.to_string()],
            ..State::default()
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let state = shared.clone();
                tokio::spawn(async move {
                    match acceptor.accept(tcp).into_fallible().await {
                        Ok(tls) => serve(tls, &state).await,
                        Err((e, tcp)) => {
                            lock(&state).handshake_failures.push(e.to_string());
                            linger(tcp).await;
                        }
                    }
                });
            }
        });
        Tenant { port, state, task }
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://127.0.0.1:<port>/api`, the sink's `url`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}{BASE_PATH}", self.port)
    }

    /// From now on only `keys` are accepted.
    pub fn accept_keys(&self, keys: &[&str]) {
        lock(&self.state).keys = keys.iter().map(|k| k.to_string()).collect();
    }

    /// Answers the next `n` requests with `status` (before checking anything).
    pub fn fail_next(&self, status: u16, n: usize) {
        lock(&self.state)
            .fail
            .extend(std::iter::repeat_n(status, n));
    }

    /// Runs `hook` when the next request has arrived, before it is answered.
    pub fn before_next_request(&self, hook: impl FnOnce() + Send + 'static) {
        lock(&self.state).hook = Some(Box::new(hook));
    }

    /// The stored objects by path.
    pub fn objects(&self) -> BTreeMap<String, Vec<u8>> {
        lock(&self.state).objects.clone()
    }

    /// Every answered request, in order.
    pub fn log(&self) -> Vec<Logged> {
        lock(&self.state).log.clone()
    }

    /// Why TLS handshakes failed, in order.
    pub fn handshake_failures(&self) -> Vec<String> {
        lock(&self.state).handshake_failures.clone()
    }
}

impl Drop for Tenant {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// After a refused handshake, reads what the client still sends until it closes (bounded),
/// so the connection ends with a FIN after the alert rather than a reset that could reach the
/// client before the alert does.
async fn linger(mut tcp: tokio::net::TcpStream) {
    let drain = async {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = tcp.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drain).await;
}

/// One parsed request.
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 256 << 20;

/// Serves requests on one connection until it closes or a request is malformed.
async fn serve(
    mut conn: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    state: &Mutex<State>,
) {
    let client_cert = conn
        .get_ref()
        .1
        .peer_certificates()
        .is_some_and(|c| !c.is_empty());
    let mut buf = Vec::new();
    loop {
        let request = match read_request(&mut conn, &mut buf).await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(status) => {
                let _ = respond(&mut conn, status, &[]).await;
                return;
            }
        };
        let (status, extra) = answer(&request, state);
        lock(state).log.push(Logged {
            method: request.method.clone(),
            path: request.path.clone(),
            status,
            client_cert,
        });
        if respond(&mut conn, status, &extra).await.is_err() {
            return;
        }
    }
}

/// Decides the answer to one request and stores a valid object.
fn answer(request: &Request, state: &Mutex<State>) -> (u16, Vec<(String, String)>) {
    let hook = lock(state).hook.take();
    if let Some(hook) = hook {
        hook();
    }
    let mut st = lock(state);
    if let Some(status) = st.fail.pop_front() {
        return (status, Vec::new());
    }
    let authorized = request
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|key| st.keys.iter().any(|k| k == key));
    if !authorized {
        return (401, vec![("www-authenticate".into(), "Bearer".into())]);
    }
    if request.method != "PUT" {
        return (405, Vec::new());
    }
    // Runs go under `runs/`; a failed run's log beside them, under `failed/`.
    if !request.path.starts_with(&format!("{BASE_PATH}/runs/"))
        && !request.path.starts_with(&format!("{BASE_PATH}/failed/"))
    {
        return (404, Vec::new());
    }
    let sha = hex::encode(sha2::Sha256::digest(&request.body));
    let digest = {
        use base64::Engine as _;
        format!(
            "sha-256=:{}:",
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&request.body))
        )
    };
    if request.header("x-airlock-sha256") != Some(sha.as_str())
        || request.header("content-digest") != Some(digest.as_str())
    {
        return (400, Vec::new());
    }
    st.objects
        .insert(request.path.clone(), request.body.clone());
    (201, vec![("x-airlock-sha256".into(), sha)])
}

/// Reads one request; `Ok(None)` when the connection closed between requests, `Err(status)`
/// for a request that cannot be served.
async fn read_request<S: tokio::io::AsyncRead + Unpin>(
    conn: &mut S,
    buf: &mut Vec<u8>,
) -> Result<Option<Request>, u16> {
    let mut chunk = vec![0u8; 64 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(431);
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let path = first.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if headers.iter().any(|(k, _)| k == "transfer-encoding") {
        return Err(411);
    }
    let length: usize = match headers.iter().find(|(k, _)| k == "content-length") {
        Some((_, v)) => v.parse().map_err(|_| 400u16)?,
        None if method == "PUT" || method == "POST" => return Err(411),
        None => 0,
    };
    if length > MAX_BODY {
        return Err(413);
    }
    while buf.len() < head_end + length {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = buf[head_end..head_end + length].to_vec();
    buf.drain(..head_end + length);
    Ok(Some(Request {
        method,
        path,
        headers,
        body,
    }))
}

async fn respond<S: tokio::io::AsyncWrite + Unpin>(
    conn: &mut S,
    status: u16,
    headers: &[(String, String)],
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut head = format!("HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).await?;
    conn.flush().await
}
