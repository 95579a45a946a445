//! The HTTP capability's network policy and host-side authentication, against loopback test
//! servers written here. Nothing leaves 127.0.0.1: denied destinations are refused before any
//! lookup or connection.

use std::sync::{Arc, Mutex};

use airlock::home::NewCredential;
use airlock::secrets::SecretString;
use airlock_tests::httpserver::{ok, redirect, TestServer};
use airlock_tests::{all_files, plugin, read_jsonl, run_in, runtime, Home, Workspace};

const TOKEN: &str = "tok-3f9a1c7e5b2d4e6f8a0b";

fn token_credential(home: &Home, destinations: &[&str]) -> String {
    home.add_token(TOKEN, destinations)
}

fn with_network(cfg: &str, allow: &[&str]) -> String {
    let list: Vec<String> = allow.iter().map(|a| format!("\"{a}\"")).collect();
    format!("{cfg}\n[network]\nallow = [{}]\n", list.join(", "))
}

/// Network denials audited so far (every run of a test shares its home).
fn network_denials(home: &Home) -> Vec<(String, String)> {
    home.inner()
        .state()
        .audit_entries(None, None)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "network" && e.outcome == "denied")
        .map(|e| {
            (
                e.destination.unwrap_or_default(),
                e.detail.unwrap_or_default(),
            )
        })
        .collect()
}

async fn expect_denied(ws: &Workspace, home: &Home, text: String, needle: &str) -> String {
    let path = ws.path().join("airlock.toml");
    std::fs::write(&path, text).unwrap();
    let cfg = airlock::config::LoadedConfig::load(&path).unwrap();
    let err = run_in(&runtime(), &cfg, home)
        .await
        .expect_err("the request must be denied");
    let message = err.to_string();
    assert!(message.contains("denied"), "{message}");
    assert!(message.contains(needle), "{message}");
    assert!(ws.out_entries().is_empty(), "nothing published");
    message
}

fn probe_toml(base: &str, extra_source: &str) -> String {
    format!(
        "[source]\nplugin = \"{}\"\n{extra_source}\n[source.options]\nbase = \"{base}\"\n\n[sink]\nkind = \"local\"\ndir = \"out\"\n",
        plugin("http-probe").display()
    )
}

#[tokio::test]
async fn requests_outside_the_policy_are_denied_and_audited() {
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let server = TestServer::start(|_| ok("hello"));
    let port = server.port;

    // A host the allow list does not name: refused before any lookup.
    expect_denied(
        &ws,
        &home,
        with_network(
            &probe_toml("http://metadata.example.com/", ""),
            &[&format!("127.0.0.1:{port}")],
        ),
        "metadata.example.com:80 is not allowed",
    )
    .await;

    // The cloud metadata address, even with loopback allowed.
    expect_denied(
        &ws,
        &home,
        with_network(
            &probe_toml("http://169.254.169.254/latest/meta-data", ""),
            &["127.0.0.1:*"],
        ),
        "link-local",
    )
    .await;

    // A permitted name that resolves to loopback, which the policy does not name.
    expect_denied(
        &ws,
        &home,
        with_network(
            &probe_toml(&format!("http://localhost:{port}/"), ""),
            &[&format!("localhost:{port}")],
        ),
        "loopback",
    )
    .await;

    // No [network] table at all: nothing is allowed.
    let path = ws.path().join("airlock.toml");
    std::fs::write(&path, probe_toml(&format!("http://127.0.0.1:{port}/"), "")).unwrap();
    let cfg = airlock::config::LoadedConfig::load(&path).unwrap();
    let err = run_in(&runtime(), &cfg, &home).await.expect_err("denied");
    assert!(err.to_string().contains("[network] allow"), "{err}");
    assert!(
        network_denials(&home).iter().any(
            |(d, m)| d == &format!("127.0.0.1:{port}") && m.contains("no network destinations")
        ),
        "the refusal without an allow list is audited"
    );

    assert!(
        server.requests().is_empty(),
        "no request reached the server"
    );
    let denials = network_denials(&home);
    assert!(
        denials
            .iter()
            .any(|(d, m)| d == "metadata.example.com:80" && m.contains("not allowed")),
        "{denials:?}"
    );
    assert!(
        denials
            .iter()
            .any(|(d, m)| d == "169.254.169.254:80" && m.contains("link-local")),
        "{denials:?}"
    );
    assert!(
        denials
            .iter()
            .any(|(d, m)| d == &format!("localhost:{port}") && m.contains("loopback")),
        "{denials:?}"
    );

    // The same server is reachable once its address is allowed.
    std::fs::write(
        &path,
        with_network(
            &probe_toml(&format!("http://127.0.0.1:{port}/"), ""),
            &[&format!("127.0.0.1:{port}")],
        ),
    )
    .unwrap();
    let cfg = airlock::config::LoadedConfig::load(&path).unwrap();
    let report = run_in(&runtime(), &cfg, &home).await.expect("allowed");
    let probe = read_jsonl(&report.output_dir, "database");
    assert_eq!(probe[0]["attributes"]["extra"]["status"], 200);
    assert_eq!(probe[0]["attributes"]["extra"]["body"], "hello");
}

#[tokio::test]
async fn a_redirect_to_a_denied_origin_is_refused_and_audited() {
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let server = TestServer::start(|_| redirect("http://169.254.169.254/latest/meta-data/iam"));
    let port = server.port;
    expect_denied(
        &ws,
        &home,
        with_network(
            &probe_toml(&format!("http://127.0.0.1:{port}/"), ""),
            &[&format!("127.0.0.1:{port}")],
        ),
        &format!("redirect from 127.0.0.1:{port} denied"),
    )
    .await;
    assert_eq!(server.requests().len(), 1, "only the first hop was sent");
    let denials = network_denials(&home);
    assert!(
        denials
            .iter()
            .any(|(d, m)| d == "169.254.169.254:80" && m.contains("redirect")),
        "{denials:?}"
    );
}

#[tokio::test]
async fn authentication_never_follows_a_cross_origin_redirect() {
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let landing = TestServer::start(|_| ok("landed"));
    let landing_port = landing.port;
    let first =
        TestServer::start(move |_| redirect(&format!("http://127.0.0.1:{landing_port}/landing")));
    let port = first.port;
    let guid = token_credential(&home, &[&format!("127.0.0.1:{port}")]);
    let text = with_network(
        &probe_toml(
            &format!("http://127.0.0.1:{port}/api"),
            &format!("credential = \"{guid}\"\nauth = {{ allow_cleartext = true }}"),
        )
        .replace(
            "[source.options]\n",
            "[source.options]\ncredential = true\n",
        ),
        &["127.0.0.1:*"],
    );
    let path = ws.path().join("airlock.toml");
    std::fs::write(&path, text).unwrap();
    let cfg = airlock::config::LoadedConfig::load(&path).unwrap();
    let report = run_in(&runtime(), &cfg, &home).await.expect("runs");
    let probe = read_jsonl(&report.output_dir, "database");
    assert_eq!(probe[0]["attributes"]["extra"]["body"], "landed");
    assert_eq!(probe[0]["attributes"]["extra"]["saw_auth"], false);

    let sent = first.requests();
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0]
            .to_ascii_lowercase()
            .contains(&format!("authorization: bearer {TOKEN}").to_ascii_lowercase()),
        "the host authenticated the request to its own origin: {sent:?}"
    );
    assert!(sent[0].starts_with("GET /api/ "), "{sent:?}");
    let followed = landing.requests();
    assert_eq!(followed.len(), 1);
    assert!(
        !followed[0].to_ascii_lowercase().contains("authorization") && !followed[0].contains(TOKEN),
        "no authentication after the redirect: {followed:?}"
    );
    // The token is in no published file.
    for entry in std::fs::read_dir(&report.output_dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(TOKEN));
    }
}

#[tokio::test]
async fn the_plugin_cannot_set_authentication_headers() {
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let server = TestServer::start(|_| ok("x"));
    let port = server.port;
    let text = with_network(
        &probe_toml(&format!("http://127.0.0.1:{port}/"), "").replace(
            "[source.options]\n",
            "[source.options]\nheader = [\"Authorization\", \"Bearer forged\"]\n",
        ),
        &[&format!("127.0.0.1:{port}")],
    );
    let message = expect_denied(&ws, &home, text, "set by the host").await;
    assert!(message.contains("authorization"), "{message}");
    assert!(server.requests().is_empty());
}

const CLIENT_SECRET: &str = "cs-9d8c7b6a5f4e3d2c1b0a";

/// A loopback OAuth2 token endpoint issuing `at-1`, `at-2`, ... with `expires_in`, and an
/// API that answers 401 to a request carrying a token in `revoked`.
fn oauth_servers(expires_in: u64, revoked: &'static [&'static str]) -> (TestServer, TestServer) {
    let issued = Arc::new(Mutex::new(0u32));
    let tokens = TestServer::start(move |_| {
        let mut n = issued.lock().unwrap();
        *n += 1;
        let body = format!(
            "{{\"access_token\":\"at-{}\",\"token_type\":\"Bearer\",\"expires_in\":{expires_in}}}",
            *n
        );
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    });
    let api = TestServer::start(move |head| {
        if revoked
            .iter()
            .any(|t| head.contains(&format!("Bearer {t}\r\n")))
        {
            "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer error=\"invalid_token\"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string()
        } else {
            ok("api")
        }
    });
    (tokens, api)
}

fn bearer_of(head: &str) -> Option<String> {
    head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("authorization: bearer ")
            .map(|_| l["authorization: bearer ".len()..].trim().to_string())
    })
}

async fn oauth_run(
    expires_in: u64,
    repeat: u32,
    revoked: &'static [&'static str],
) -> (TestServer, TestServer, Workspace, Home) {
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let (tokens, api) = oauth_servers(expires_in, revoked);
    let guid = home
        .inner()
        .add_credential(
            NewCredential {
                kind: "oauth2-client".into(),
                username: Some("airlock-client".into()),
                engine: None,
                destinations: vec![
                    format!("127.0.0.1:{}", api.port),
                    format!("127.0.0.1:{}", tokens.port),
                ],
                description: None,
                privileged: false,
            },
            SecretString::new(CLIENT_SECRET.to_string()),
        )
        .unwrap();
    let text = with_network(
        &probe_toml(
            &format!("http://127.0.0.1:{}/", api.port),
            &format!(
                "credential = \"{guid}\"\nauth = {{ token_url = \"http://127.0.0.1:{}/token\", scope = \"catalog.read\", allow_cleartext = true }}",
                tokens.port
            ),
        )
        .replace(
            "[source.options]\n",
            &format!("[source.options]\ncredential = true\nrepeat = {repeat}\n"),
        ),
        &["127.0.0.1:*"],
    );
    let path = ws.path().join("airlock.toml");
    std::fs::write(&path, text).unwrap();
    let cfg = airlock::config::LoadedConfig::load(&path).unwrap();
    let report = run_in(&runtime(), &cfg, &home).await.expect("runs");
    for entry in std::fs::read_dir(&report.output_dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(
            !text.contains("at-") && !text.contains(CLIENT_SECRET),
            "{text}"
        );
    }
    (tokens, api, ws, home)
}

#[tokio::test]
async fn oauth2_tokens_are_fetched_by_the_host_and_cached() {
    let (tokens, api, _ws, _home) = oauth_run(3600, 3, &[]).await;
    let token_requests = tokens.requests();
    assert_eq!(
        token_requests.len(),
        1,
        "one token for three requests: {token_requests:?}"
    );
    let t = token_requests[0].to_ascii_lowercase();
    assert!(t.starts_with("post /token "), "{t}");
    assert!(
        t.contains("authorization: basic "),
        "client credentials sent to the token endpoint"
    );
    let calls = api.requests();
    assert_eq!(calls.len(), 3);
    for c in &calls {
        assert_eq!(bearer_of(c).as_deref(), Some("at-1"), "{c}");
        assert!(!c.contains(CLIENT_SECRET));
    }
}

#[tokio::test]
async fn oauth2_tokens_are_refreshed_when_they_expire() {
    // expires_in = 0: every token is stale by the next request.
    let (tokens, api, _ws, _home) = oauth_run(0, 2, &[]).await;
    assert_eq!(tokens.requests().len(), 2);
    let bearers: Vec<_> = api.requests().iter().map(|c| bearer_of(c)).collect();
    assert_eq!(
        bearers,
        vec![Some("at-1".to_string()), Some("at-2".to_string())]
    );
}

#[tokio::test]
async fn oauth2_tokens_are_refreshed_on_401() {
    // The API rejects the first token (revoked early): the host fetches a new one and retries
    // once; the plugin sees only the final 200.
    let (tokens, api, ws, home) = oauth_run(3600, 1, &["at-1"]).await;
    assert_eq!(tokens.requests().len(), 2);
    let bearers: Vec<_> = api.requests().iter().map(|c| bearer_of(c)).collect();
    assert_eq!(
        bearers,
        vec![Some("at-1".to_string()), Some("at-2".to_string())]
    );
    let out = std::fs::read_dir(ws.out())
        .unwrap()
        .flatten()
        .find(|e| e.file_name() != "failed")
        .unwrap()
        .path();
    let probe = read_jsonl(&out, "database");
    assert_eq!(probe[0]["attributes"]["extra"]["status"], 200);
    assert_eq!(probe[0]["attributes"]["extra"]["saw_auth"], false);
    let tokens_audited = home
        .inner()
        .state()
        .audit_entries(None, None)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "token" && e.outcome == "ok")
        .count();
    assert_eq!(tokens_audited, 2);
}

/// Mutual TLS for the HTTP capability: `[network] client_cert` names a credential holding a
/// PEM certificate and key; the host presents it only to origins among that credential's
/// destinations. The tenant (tests/src/tenant.rs) requires a client certificate signed by its
/// client CA and answers an authorized GET with 405.
#[tokio::test(flavor = "multi_thread")]
async fn client_certificates_are_presented_only_to_their_bound_destinations() {
    use airlock_tests::tenant::{Pki, Tenant};
    let pki = Pki::generate();
    let tenant = Tenant::start(&pki, TOKEN, true).await;
    let address = format!("127.0.0.1:{}", tenant.port());
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    std::fs::write(ws.path().join("tenant-ca.pem"), &pki.ca_pem).unwrap();
    let token = token_credential(&home, &[&address]);
    let cert = |destination: &str| home.add_token(&pki.client_pem, &[destination]);
    let config = |client_cert: Option<&str>| {
        let mut text = with_network(
            &probe_toml(&tenant.url(), &format!("credential = \"{token}\"\n")).replace(
                "[source.options]\n",
                "[source.options]\ncredential = true\n",
            ),
            &[&address],
        );
        text.push_str("ca_files = [\"tenant-ca.pem\"]\n");
        if let Some(guid) = client_cert {
            text.push_str(&format!("client_cert = \"{guid}\"\n"));
        }
        let path = ws.path().join("airlock.toml");
        std::fs::write(&path, text).unwrap();
        airlock::config::LoadedConfig::load(&path).unwrap()
    };

    // Bound to the tenant: presented, the handshake succeeds and the bearer key is accepted.
    let bound = cert(&address);
    let report = run_in(&runtime(), &config(Some(&bound)), &home)
        .await
        .expect("mutual TLS succeeds");
    let probe = read_jsonl(&report.output_dir, "database");
    assert_eq!(probe[0]["attributes"]["extra"]["status"], 405, "{probe:?}");
    let log = tenant.log();
    assert!(
        !log.is_empty() && log.iter().all(|l| l.client_cert),
        "{log:?}"
    );
    let audit = home
        .inner()
        .state()
        .audit_entries(None, Some(&bound))
        .unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "resolve" && e.outcome == "ok"),
        "{audit:?}"
    );

    // Without one, or with one bound elsewhere (so never presented), the tenant refuses the
    // handshake and nothing reaches it.
    let elsewhere = cert("tenant.example.com:443");
    for client_cert in [None, Some(elsewhere.as_str())] {
        let before = tenant.log().len();
        let err = run_in(&runtime(), &config(client_cert), &home)
            .await
            .expect_err("the tenant requires a client certificate");
        assert_eq!(err.kind(), "plugin-error", "{err}");
        assert_eq!(tenant.log().len(), before, "no request was served");
    }
    // The certificate's private key is in no artifact.
    let key = &pki.client_pem[pki.client_pem.find("-----BEGIN PRIVATE KEY-----").unwrap()..];
    let key_line = key.lines().nth(1).unwrap();
    for entry in all_files(ws.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes
                .windows(key_line.len())
                .any(|w| w == key_line.as_bytes()),
            "{} holds the client key",
            entry.display()
        );
    }
}

/// A client opened for `/api/tenant-a` with the credential cannot reach another tenant:
/// dot segments (plain or percent-encoded) cannot climb out of the base path, encoded slashes
/// are refused, and what is sent is the normalised path. Nothing forbidden reaches the server.
#[tokio::test]
async fn request_paths_stay_below_the_base_path() {
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let server = TestServer::start(|_| ok("tenant-a"));
    let port = server.port;
    let guid = token_credential(&home, &[&format!("127.0.0.1:{port}")]);
    let config = |path: &str| {
        with_network(
            &probe_toml(
                &format!("http://127.0.0.1:{port}/api/tenant-a"),
                &format!("credential = \"{guid}\"\nauth = {{ allow_cleartext = true }}"),
            )
            .replace(
                "[source.options]\n",
                &format!("[source.options]\ncredential = true\npath = \"{path}\"\n"),
            ),
            &[&format!("127.0.0.1:{port}")],
        )
    };
    for (path, needle) in [
        ("/../../admin/tenant-b", "climbs above the root"),
        ("/%2e%2e/%2E%2E/admin/tenant-b", "climbs above the root"),
        ("/..%2f..%2fadmin", "encoded slash"),
        ("/x%5c..%5cadmin", "encoded backslash"),
        ("/x%00", "encoded control character"),
    ] {
        let message = expect_denied(&ws, &home, config(path), needle).await;
        assert!(message.contains("base path /api/tenant-a"), "{message}");
    }
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    assert!(
        network_denials(&home)
            .iter()
            .filter(|(d, m)| d == &format!("127.0.0.1:{port}") && m.contains("request refused"))
            .count()
            == 5,
        "{:?}",
        network_denials(&home)
    );

    // Inside the base path, dots and encoded unreserved characters are resolved before the
    // request is sent.
    let path = ws.path().join("airlock.toml");
    std::fs::write(&path, config("/x/../%76%31/./items")).unwrap();
    let cfg = airlock::config::LoadedConfig::load(&path).unwrap();
    run_in(&runtime(), &cfg, &home).await.expect("allowed");
    let sent = server.requests();
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].starts_with("GET /api/tenant-a/v1/items "),
        "{sent:?}"
    );
}

/// A redirect the host follows is held to the same rules: on the client's own origin (where
/// the credential is sent) it may not leave the base path, and its path is normalised and
/// checked against the allow entry's prefixes on any origin.
#[tokio::test]
async fn redirects_are_normalised_and_kept_below_the_base_path_and_allowed_prefixes() {
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let escape = TestServer::start(|head| {
        if head.starts_with("GET /api/tenant-a/ ") {
            redirect("/api/tenant-a/%2e%2e/tenant-b/secrets")
        } else {
            ok("should never be reached")
        }
    });
    let port = escape.port;
    let guid = token_credential(&home, &[&format!("127.0.0.1:{port}")]);
    let text = with_network(
        &probe_toml(
            &format!("http://127.0.0.1:{port}/api/tenant-a/"),
            &format!("credential = \"{guid}\"\nauth = {{ allow_cleartext = true }}"),
        )
        .replace(
            "[source.options]\n",
            "[source.options]\ncredential = true\n",
        ),
        &[&format!("127.0.0.1:{port}")],
    );
    expect_denied(
        &ws,
        &home,
        text,
        "outside the client's base path /api/tenant-a",
    )
    .await;
    let sent = escape.requests();
    assert_eq!(sent.len(), 1, "only the first hop was sent: {sent:?}");

    // Another origin (no credential) whose allow entry restricts paths: a redirect to a
    // path outside them is refused before it is sent.
    let landing = TestServer::start(|_| ok("landed"));
    let landing_port = landing.port;
    let first = TestServer::start(move |_| {
        redirect(&format!(
            "http://127.0.0.1:{landing_port}/public/../private/x"
        ))
    });
    let text = format!(
        "{}\n[network]\nallow = [\"127.0.0.1:{}\", {{ dest = \"127.0.0.1:{landing_port}\", paths = [\"/public\"] }}]\n",
        probe_toml(&format!("http://127.0.0.1:{}/", first.port), ""),
        first.port
    );
    expect_denied(
        &ws,
        &home,
        text,
        "path /private/x is outside the path prefixes",
    )
    .await;
    assert_eq!(first.requests().len(), 1);
    assert!(landing.requests().is_empty(), "{:?}", landing.requests());
    assert!(
        network_denials(&home).iter().any(
            |(d, m)| d == &format!("127.0.0.1:{landing_port}") && m.contains("redirect denied")
        ),
        "{:?}",
        network_denials(&home)
    );
}

/// A table entry's methods are enforced on the plugin's requests (http-probe sends GET).
#[tokio::test]
async fn a_table_entry_refuses_methods_it_does_not_list() {
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let server = TestServer::start(|_| ok("x"));
    let port = server.port;
    let text = format!(
        "{}\n[network]\nallow = [{{ dest = \"127.0.0.1:{port}\", methods = [\"POST\"] }}]\n",
        probe_toml(&format!("http://127.0.0.1:{port}/"), "")
    );
    expect_denied(&ws, &home, text, "method GET is not allowed").await;
    assert!(server.requests().is_empty());
    assert!(
        network_denials(&home)
            .iter()
            .any(|(d, m)| d == &format!("127.0.0.1:{port}") && m.contains("method GET")),
        "{:?}",
        network_denials(&home)
    );
    // GET listed: the same request goes through.
    let text = format!(
        "{}\n[network]\nallow = [{{ dest = \"127.0.0.1:{port}\", methods = [\"GET\", \"HEAD\"], paths = [\"/\"] }}]\n",
        probe_toml(&format!("http://127.0.0.1:{port}/"), "")
    );
    let path = ws.path().join("airlock.toml");
    std::fs::write(&path, text).unwrap();
    let cfg = airlock::config::LoadedConfig::load(&path).unwrap();
    run_in(&runtime(), &cfg, &home).await.expect("allowed");
    assert_eq!(server.requests().len(), 1);
}
