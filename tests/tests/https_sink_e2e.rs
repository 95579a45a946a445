//! The HTTPS tenant sink against a loopback rustls server (`airlock_tests::tenant`): a SQLite
//! run PUT as `<url>/runs/<run-id>/<file>` over mutual TLS with a test CA, the manifest last;
//! a wrong CA and a missing or untrusted client certificate refused with nothing complete; a
//! 401 that makes the sink resolve the rotated API key once; an interrupted upload resumed by
//! `airlock upload --resume` through 5xx answers; the API key in no artifact.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use airlock::secrets::SecretString;
use airlock_tests::tenant::{Pki, Tenant, BASE_PATH};
use airlock_tests::{plugin, plugin_dir, run_in, runtime, workspace_root, Home, Workspace};
use sha2::Digest;

/// The API key: a canary that must appear in no artifact.
const API_KEY: &str = "tenant-key-CANARY-3f9b7c1d5e2a";
/// The key after a rotation.
const ROTATED_KEY: &str = "tenant-key-ROTATED-8a2e4c6b0d1f";
/// A key the tenant never accepts.
const WRONG_KEY: &str = "tenant-key-WRONG-5c7e9a1b3d0f";

/// A tenant, a workspace with the shop database and a home holding the API key and the client
/// certificate as credentials bound to the tenant's address.
struct Env {
    pki: Pki,
    tenant: Tenant,
    ws: Workspace,
    home: Home,
    api_guid: String,
    cert_guid: String,
}

fn add_token(home: &Home, secret: &str, destination: &str) -> String {
    home.add_token(secret, &[destination])
}

async fn env() -> Env {
    let pki = Pki::generate();
    let tenant = Tenant::start(&pki, API_KEY, true).await;
    let ws = Workspace::new();
    let conn = rusqlite::Connection::open(ws.path().join("shop.db")).unwrap();
    conn.execute_batch(airlock::demo::SHOP_SCHEMA).unwrap();
    let home = Home::new(ws.path());
    let destination = format!("127.0.0.1:{}", tenant.port());
    let api_guid = add_token(&home, API_KEY, &destination);
    let cert_guid = add_token(&home, &pki.client_pem, &destination);
    std::fs::write(ws.path().join("tenant-ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(ws.path().join("other-ca.pem"), &pki.other_ca_pem).unwrap();
    Env {
        pki,
        tenant,
        ws,
        home,
        api_guid,
        cert_guid,
    }
}

impl Env {
    /// A config uploading to the tenant with `sink` appended to `[sink]`.
    fn config_with(&self, sink: &str) -> airlock::config::LoadedConfig {
        self.ws.config(&format!(
            r#"[source]
plugin = "{}"
database = "shop.db"

[sink]
kind = "https"
url = "{}"
api_key = "{}"
timeout_s = 20
{sink}
"#,
            plugin("sqlite").display(),
            self.tenant.url(),
            self.api_guid,
        ))
    }

    /// The config of a working setup: the test CA only, the client certificate, `extra`.
    fn config(&self, extra: &str) -> airlock::config::LoadedConfig {
        self.config_with(&format!(
            "ca_file = \"tenant-ca.pem\"\nsystem_roots = false\nclient_cert = \"{}\"\n{extra}",
            self.cert_guid
        ))
    }

    fn home_dir(&self) -> PathBuf {
        self.ws.path().join("airlock-home")
    }

    /// The objects the tenant holds for `run_id`, by file name.
    fn run_objects(&self, run_id: &str) -> BTreeMap<String, Vec<u8>> {
        let base = format!("{BASE_PATH}/runs/{run_id}/");
        self.tenant
            .objects()
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix(&base).map(|f| (f.to_string(), v)))
            .collect()
    }

    /// Checks the uploaded run: exactly the manifest's files plus the manifest, each object's
    /// size, SHA-256 and records equal to the manifest's, the manifest PUT once and after every
    /// file; returns the manifest.
    fn verify_uploaded(&self, run_id: &str) -> serde_json::Value {
        let objects = self.run_objects(run_id);
        let manifest: serde_json::Value =
            serde_json::from_slice(objects.get("manifest.json").expect("manifest uploaded"))
                .expect("manifest is JSON");
        let mut expected: Vec<String> = airlock_tests::listed_files(&manifest)
            .iter()
            .map(|f| f["path"].as_str().unwrap().to_string())
            .collect();
        let bodies: Vec<Vec<u8>> = expected
            .iter()
            .map(|name| {
                objects
                    .get(name)
                    .unwrap_or_else(|| panic!("{name} uploaded"))
                    .clone()
            })
            .collect();
        airlock_tests::s3api::verify_run_objects(&manifest, run_id, &bodies);
        expected.push("manifest.json".to_string());
        expected.sort();
        assert_eq!(objects.keys().cloned().collect::<Vec<_>>(), expected);
        let base = format!("{BASE_PATH}/runs/{run_id}/");
        let stored: Vec<String> = self
            .tenant
            .log()
            .into_iter()
            .filter(|l| l.method == "PUT" && l.status == 201 && l.path.starts_with(&base))
            .map(|l| l.path[base.len()..].to_string())
            .collect();
        assert_eq!(
            stored.last().map(String::as_str),
            Some("manifest.json"),
            "{stored:?}"
        );
        assert_eq!(
            stored.iter().filter(|p| *p == "manifest.json").count(),
            1,
            "{stored:?}"
        );
        manifest
    }

    /// Asserts that `secret` (raw or base64) is in no file of the workspace (home, state
    /// store, audit log, vault, spool), no object the tenant holds and none of `texts`.
    fn assert_absent(&self, secret: &str, texts: &[&str]) {
        use base64::Engine as _;
        let forms = [
            secret.as_bytes().to_vec(),
            base64::engine::general_purpose::STANDARD
                .encode(secret)
                .into_bytes(),
        ];
        let contains = |hay: &[u8]| forms.iter().any(|f| hay.windows(f.len()).any(|w| w == f));
        let files = airlock_tests::all_files(self.ws.path());
        for path in &files {
            let bytes = std::fs::read(path).unwrap();
            assert!(!contains(&bytes), "the secret is in {}", path.display());
        }
        assert!(
            files.len() > 3,
            "the workspace holds the home: {} files",
            files.len()
        );
        for (path, body) in self.tenant.objects() {
            assert!(!contains(&body), "the secret is in the uploaded {path}");
        }
        for text in texts {
            assert!(!contains(text.as_bytes()), "the secret is in: {text}");
        }
    }

    fn audit(&self, run_id: &str) -> String {
        let entries = self
            .home
            .inner()
            .state()
            .audit_entries(Some(run_id), None)
            .unwrap();
        format!("{entries:?}")
    }

    /// `airlock upload --resume RUN --json` with debug logs; returns (exit code, stdout, stderr).
    async fn resume(&self, run_id: &str) -> (Option<i32>, String, String) {
        let bin = workspace_root().join("target/debug/airlock");
        assert!(bin.is_file(), "build it with `cargo build -p airlock-host`");
        let out = tokio::process::Command::new(bin)
            .arg("--home")
            .arg(self.home_dir())
            .args(["upload", "--resume", run_id, "--json"])
            .env("AIRLOCK_PLUGIN_DIR", plugin_dir())
            .env("AIRLOCK_LOG", "debug")
            .env(
                "AIRLOCK_CACHE_DIR",
                workspace_root().join("target/test-component-cache"),
            )
            .output()
            .await
            .expect("airlock runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// SHA-256 of every file in a spool directory, by name.
/// The SHA-256 of each spooled data file's plaintext. The files are encrypted at rest: each
/// must not start like JSON, and decrypts with the run's key unwrapped from the vault.
fn spool_hashes(home: &Home, dir: &Path, run_id: &str) -> BTreeMap<String, String> {
    use std::io::Read;
    let key = airlock::sinks::remote::load_spool_key(home.inner(), dir, run_id)
        .unwrap()
        .expect("the spool has a wrapped key");
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "jsonl") && !p.ends_with("upload-journal.jsonl")
        })
        .map(|p| {
            let raw = std::fs::read(&p).unwrap();
            assert!(!raw.starts_with(b"{"), "{} is plaintext", p.display());
            let mut plain = Vec::new();
            airlock::pipeline::spool::open_spooled(&p, Some(&key))
                .unwrap()
                .read_to_end(&mut plain)
                .unwrap();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                hex::encode(sha2::Sha256::digest(&plain)),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_goes_up_over_mutual_tls_with_every_sha256_and_the_manifest_last() {
    let env = env().await;
    let report = run_in(&runtime(), &env.config(""), &env.home)
        .await
        .expect("run succeeds");
    let run_id = report.manifest.run_id.clone();
    assert_eq!(
        report.output_dir.to_string_lossy(),
        format!("{}/runs/{run_id}/", env.tenant.url())
    );
    let manifest = env.verify_uploaded(&run_id);
    assert_eq!(
        serde_json::to_value(&report.manifest).unwrap(),
        manifest,
        "the uploaded manifest is the run's"
    );
    assert!(manifest["counts"]["table"]["kept"].as_u64().unwrap() >= 20);
    let log = env.tenant.log();
    assert_eq!(log.len(), airlock_tests::listed_files(&manifest).len() + 1);
    assert!(
        log.iter().all(|l| l.status == 201 && l.client_cert),
        "every PUT was authorized over mutual TLS: {log:?}"
    );
    assert!(env.tenant.handshake_failures().is_empty());

    // The spool is gone once the manifest is confirmed; both resolutions were audited by GUID.
    assert!(
        env.ws.spool_entries().is_empty(),
        "{:?}",
        env.ws.spool_entries()
    );
    let audit = env.audit(&run_id);
    assert!(audit.contains("sink api key"), "{audit}");
    assert!(audit.contains("sink client certificate"), "{audit}");
    assert!(audit.contains(&env.api_guid) && audit.contains(&env.cert_guid));
    env.assert_absent(API_KEY, &[&audit]);
    env.assert_absent(airlock_tests::key_block(&env.pki.client_pem), &[&audit]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_fails_before_upload_puts_only_its_log_beside_the_runs() {
    let env = env().await;
    // The working config (written to airlock.toml) on a database that does not exist: the
    // plugin fails before anything is sealed.
    env.config("");
    let text = std::fs::read_to_string(env.ws.path().join("airlock.toml")).unwrap();
    let cfg = env.ws.config(&text.replace("shop.db", "missing.db"));
    let err = run_in(&runtime(), &cfg, &env.home)
        .await
        .expect_err("the run fails");
    assert_eq!(err.kind(), "plugin-error", "{err}");
    let objects = env.tenant.objects();
    let keys: Vec<&String> = objects.keys().collect();
    assert_eq!(keys.len(), 1, "only the failed run's log went up: {keys:?}");
    assert!(
        keys[0].starts_with(&format!("{BASE_PATH}/failed/")) && keys[0].ends_with(".jsonl"),
        "{keys:?}"
    );
    let log = String::from_utf8(objects[keys[0]].clone()).unwrap();
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "run-failed", "{log}");
    assert_eq!(last["kind"], "plugin-error", "{log}");
    assert!(last.get("error").is_none(), "the message stays home: {log}");
    assert!(
        env.tenant
            .log()
            .iter()
            .all(|l| l.status == 201 && l.client_cert),
        "the log went up authorized, over mutual TLS: {:?}",
        env.tenant.log()
    );
    assert!(env.ws.spool_entries().is_empty());
    assert!(!log.contains(&env.api_guid) && !log.contains(&env.cert_guid));
    env.assert_absent(API_KEY, &[&log]);
    env.assert_absent(airlock_tests::key_block(&env.pki.client_pem), &[&log]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_ca_is_refused_and_nothing_is_complete() {
    let env = env().await;
    // The unrelated CA, on top of the system roots: the tenant's certificate is not trusted.
    let cfg = env.config_with(&format!(
        "ca_file = \"other-ca.pem\"\nclient_cert = \"{}\"\nretries = 3\n",
        env.cert_guid
    ));
    let err = run_in(&runtime(), &cfg, &env.home)
        .await
        .expect_err("an untrusted server certificate is refused");
    assert_eq!(err.kind(), "upload", "{err}");
    let message = err.to_string();
    assert!(message.contains("certificate"), "{message}");
    assert!(message.contains("sink.ca_file"), "{message}");
    assert!(message.contains("no manifest was uploaded"), "{message}");
    // No request reached the tenant, and a trust failure is final: one handshake, no retries.
    // The server notes the failed handshake when the client's alert arrives, which may be just
    // after the client gave up: wait for it, then a little longer for any retry.
    let waited = std::time::Instant::now();
    while env.tenant.handshake_failures().is_empty()
        && waited.elapsed() < std::time::Duration::from_secs(5)
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(env.tenant.log().is_empty(), "{:?}", env.tenant.log());
    assert!(env.tenant.objects().is_empty());
    assert_eq!(
        env.tenant.handshake_failures().len(),
        1,
        "{:?}",
        env.tenant.handshake_failures()
    );
    // The sealed spool stays for a resume and confirms nothing.
    let spooled = env.ws.spool_entries();
    assert_eq!(spooled.len(), 1, "{spooled:?}");
    let spool = env.home_dir().join("spool").join(&spooled[0]);
    assert!(spool.join("manifest.json").is_file());
    assert!(!spool.join("upload-journal.jsonl").exists());
    env.assert_absent(API_KEY, &[&message]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_untrusted_client_certificate_is_refused() {
    let env = env().await;
    let stranger = add_token(
        &env.home,
        &env.pki.stranger_pem,
        &format!("127.0.0.1:{}", env.tenant.port()),
    );
    for (what, client_cert) in [
        ("no client certificate", String::new()),
        (
            "a client certificate from an unrelated CA",
            format!("client_cert = \"{stranger}\"\n"),
        ),
    ] {
        let failures_before = env.tenant.handshake_failures().len();
        let cfg = env.config_with(&format!(
            "ca_file = \"tenant-ca.pem\"\nsystem_roots = false\nretries = 1\n{client_cert}"
        ));
        let err = run_in(&runtime(), &cfg, &env.home).await.expect_err(what);
        assert_eq!(err.kind(), "upload", "{what}: {err}");
        let message = err.to_string();
        assert!(message.contains("sink.client_cert"), "{what}: {message}");
        assert!(message.contains("no manifest was uploaded"), "{message}");
        // The tenant refused the handshake, once per attempt at most (a refusal the sink
        // recognises is final; one that ends the connection before the request was sent is
        // retried).
        // The tenant records a refusal after it sent its alert, which the client may read
        // first (TLS 1.3 checks the client's certificate after the client finished): wait.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while env.tenant.handshake_failures().len() == failures_before
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let failures = env.tenant.handshake_failures().len() - failures_before;
        assert!(
            (1..=2).contains(&failures),
            "{what}: {:?}",
            env.tenant.handshake_failures()
        );
        env.assert_absent(API_KEY, &[&message]);
    }
    // The tenant never answered a request, let alone stored one.
    assert!(env.tenant.log().is_empty(), "{:?}", env.tenant.log());
    assert!(env.tenant.objects().is_empty());
    let failures = env.tenant.handshake_failures().join("\n");
    assert!(failures.contains("certificate"), "{failures}");
    // A certificate with somebody else's key is refused before extraction starts.
    let client_pem = &env.pki.client_pem;
    let cert_only = &client_pem[..client_pem.find("-----BEGIN PRIVATE KEY-----").unwrap()];
    let mismatched = add_token(
        &env.home,
        &format!(
            "{cert_only}{}",
            airlock_tests::key_block(&env.pki.stranger_pem)
        ),
        &format!("127.0.0.1:{}", env.tenant.port()),
    );
    let cfg = env.config_with(&format!(
        "ca_file = \"tenant-ca.pem\"\nsystem_roots = false\nclient_cert = \"{mismatched}\"\n"
    ));
    let err = run_in(&runtime(), &cfg, &env.home)
        .await
        .expect_err("a key that does not match the certificate");
    assert_eq!(err.kind(), "credential", "{err}");
    assert!(err.to_string().contains("does not belong"), "{err}");
    env.assert_absent(
        airlock_tests::key_block(&env.pki.stranger_pem),
        &[&err.to_string()],
    );

    // Both refused runs stay sealed, neither confirmed a file.
    let spooled = env.ws.spool_entries();
    assert_eq!(spooled.len(), 2, "{spooled:?}");
    for run in spooled {
        let journal = env
            .home_dir()
            .join("spool")
            .join(run)
            .join("upload-journal.jsonl");
        assert!(!journal.exists());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_401_re_resolves_the_rotated_key_once_and_succeeds() {
    let env = env().await;
    // The key is rotated at the tenant; the vault is rotated only once the run has resolved the
    // old key and sent its first request, so the sink meets the 401 in the middle of the run.
    env.tenant.accept_keys(&[ROTATED_KEY]);
    let (home_dir, guid) = (env.home_dir(), env.api_guid.clone());
    env.tenant.before_next_request(move || {
        airlock::home::Home::open(&home_dir)
            .expect("home opens")
            .rotate(&guid, SecretString::new(ROTATED_KEY.to_string()))
            .expect("rotated");
    });
    let report = run_in(&runtime(), &env.config(""), &env.home)
        .await
        .expect("the rotated key is re-resolved and the run goes up");
    let run_id = report.manifest.run_id.clone();
    env.verify_uploaded(&run_id);
    let statuses: Vec<u16> = env.tenant.log().iter().map(|l| l.status).collect();
    assert_eq!(statuses[0], 401, "{statuses:?}");
    assert!(statuses[1..].iter().all(|s| *s == 201), "{statuses:?}");
    let audit = env.audit(&run_id);
    assert!(audit.contains("re-resolved after a 401"), "{audit}");
    assert!(
        audit.contains("401 Unauthorized from the tenant"),
        "{audit}"
    );

    // Rotated in the vault to a key the tenant does not know: one re-resolution, a second
    // 401, and the run fails without a manifest.
    env.home
        .inner()
        .rotate(&env.api_guid, SecretString::new(WRONG_KEY.to_string()))
        .unwrap();
    let before = env.tenant.log().len();
    let err = run_in(&runtime(), &env.config(""), &env.home)
        .await
        .expect_err("a key the tenant refuses twice fails the upload");
    assert_eq!(err.kind(), "upload", "{err}");
    let message = err.to_string();
    assert!(message.contains("401"), "{message}");
    assert!(message.contains(&env.api_guid), "{message}");
    let after: Vec<u16> = env.tenant.log()[before..]
        .iter()
        .map(|l| l.status)
        .collect();
    assert_eq!(after, vec![401, 401], "one re-resolution, then refused");
    let spooled = env.ws.spool_entries();
    assert_eq!(spooled.len(), 1, "{spooled:?}");
    let failed_run = spooled[0].clone();
    assert!(env.run_objects(&failed_run).is_empty());

    // Rotated back between attempts: the resume resolves the key anew and finishes the run.
    env.home
        .inner()
        .rotate(&env.api_guid, SecretString::new(ROTATED_KEY.to_string()))
        .unwrap();
    let (code, stdout, stderr) = env.resume(&failed_run).await;
    assert_eq!(code, Some(0), "{stderr}");
    env.verify_uploaded(&failed_run);
    assert!(env.ws.spool_entries().is_empty());
    for key in [API_KEY, ROTATED_KEY, WRONG_KEY] {
        env.assert_absent(key, &[&message, &stdout, &stderr, &audit]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_upload_resumes_through_5xx_and_skips_confirmed_files() {
    let env = env().await;
    let err = run_in(
        &runtime(),
        &env.config("retries = 5\nfail_after_files = 2\n"),
        &env.home,
    )
    .await
    .expect_err("the injected failure fails the run");
    assert_eq!(err.kind(), "upload", "{err}");
    let message = err.to_string();
    let spooled = env.ws.spool_entries();
    assert_eq!(spooled.len(), 1, "{spooled:?}");
    let run_id = spooled[0].clone();
    assert!(
        message.contains(&format!("airlock upload --resume {run_id}")),
        "{message}"
    );
    // Two files are at the tenant and in the journal; no manifest.
    let confirmed: Vec<String> = env.run_objects(&run_id).into_keys().collect();
    assert_eq!(confirmed.len(), 2, "{confirmed:?}");
    assert!(!confirmed.contains(&"manifest.json".to_string()));
    let spool = env.home_dir().join("spool").join(&run_id);
    let journal = std::fs::read_to_string(spool.join("upload-journal.jsonl")).unwrap();
    assert_eq!(journal.lines().count(), 2, "{journal}");
    let hashes = spool_hashes(&env.home, &spool, &run_id);
    assert!(hashes.len() > 2, "{hashes:?}");

    // The resume meets three 503s, retries with backoff, and sends each file once in all.
    env.tenant.fail_next(503, 3);
    let (code, stdout, stderr) = env.resume(&run_id).await;
    assert_eq!(code, Some(0), "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("JSON summary");
    assert_eq!(summary["status"], "complete");
    let mut skipped: Vec<String> = summary["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    skipped.sort();
    assert_eq!(skipped, confirmed, "the confirmed files were skipped");
    assert_eq!(
        summary["uploaded"].as_array().unwrap().len(),
        hashes.len() - 2,
        "{summary}"
    );
    env.verify_uploaded(&run_id);
    let objects = env.run_objects(&run_id);
    for (name, sha) in &hashes {
        let body = objects.get(name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(
            &hex::encode(sha2::Sha256::digest(body)),
            sha,
            "{name}: the object is the spool's"
        );
    }
    let log = env.tenant.log();
    assert_eq!(log.iter().filter(|l| l.status == 503).count(), 3);
    for name in hashes.keys() {
        let path = format!("{BASE_PATH}/runs/{run_id}/{name}");
        let stored = log
            .iter()
            .filter(|l| l.path == path && l.status == 201)
            .count();
        assert_eq!(stored, 1, "{name} was stored once");
    }
    assert!(env.ws.spool_entries().is_empty());
    assert!(
        stderr.contains("retrying"),
        "the debug log shows the retries"
    );
    env.assert_absent(API_KEY, &[&message, &stdout, &stderr, &env.audit(&run_id)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_key_a_source_holds_is_withheld_and_nothing_leaves() {
    let env = env().await;
    // A column default holds the sink's API key, base64-encoded: the key is resolved before
    // extraction, so the inbound filter withholds it from the plugin.
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(API_KEY);
    rusqlite::Connection::open(env.ws.path().join("shop.db"))
        .unwrap()
        .execute_batch(&format!(
            "CREATE TABLE leak (x TEXT DEFAULT 'token {encoded}');"
        ))
        .unwrap();
    let report = run_in(&runtime(), &env.config(""), &env.home)
        .await
        .expect("the plugin never received the key, so the run completes");
    assert!(
        report.manifest.secrets_withheld >= 1,
        "{:?}",
        report.manifest
    );
    let run_id = report.manifest.run_id.clone();
    env.verify_uploaded(&run_id);
    assert!(
        env.ws.spool_entries().is_empty(),
        "{:?}",
        env.ws.spool_entries()
    );
    // Only the database itself holds the key.
    std::fs::remove_file(env.ws.path().join("shop.db")).unwrap();
    env.assert_absent(API_KEY, &[&env.audit(&run_id)]);
}

#[tokio::test(flavor = "multi_thread")]
#[should_panic(expected = "the secret is in")]
async fn the_artifact_check_finds_a_planted_key() {
    let env = env().await;
    let nested = env.home_dir().join("spool").join("planted");
    std::fs::create_dir_all(&nested).unwrap();
    std::fs::write(nested.join("x.jsonl"), format!("{{\"k\":\"{API_KEY}\"}}\n")).unwrap();
    env.assert_absent(API_KEY, &[]);
}
