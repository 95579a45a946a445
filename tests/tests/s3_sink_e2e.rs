//! The S3 sink against a real S3 API (`moto_server` on 127.0.0.1): a SQLite run uploaded as
//! `<prefix>/<run-id>/<file>` with the manifest last, multipart for files above the part size,
//! an injected failure that leaves no manifest, and `airlock upload --resume` finishing it
//! without uploading confirmed files again.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use airlock_tests::moto::Moto;
use airlock_tests::s3api::S3Api;
use airlock_tests::{airlock_command, plugin, run_in, runtime, Home, Workspace};

const BUCKET: &str = "catalog";
const PREFIX: &str = "airlock/shop";
const ACCESS_KEY_ID: &str = "AKIAAIRLOCKTEST";
const SECRET_KEY: &str = "s3-secret-Xq7pLm2vR9tK4wZ8";

fn moto() -> Moto {
    // Parts of 1 KiB force multipart uploads of small test files; moto accepts them only
    // when its minimum part size is lowered.
    Moto::start_with_env(&[("S3_UPLOAD_PART_MIN_SIZE", "256")])
}

fn build_database(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(airlock::demo::SHOP_SCHEMA).unwrap();
}

/// A workspace with the shop database, a home holding the access key bound to moto's address,
/// and a config uploading to moto with `extra` appended to `[sink]`.
fn setup(moto: &Moto, extra: &str) -> (Workspace, Home, airlock::config::LoadedConfig) {
    setup_at(moto.port(), extra)
}

/// As [`setup`], for an S3 endpoint on 127.0.0.1:`port` (moto, or a proxy in front of it).
fn setup_at(port: u16, extra: &str) -> (Workspace, Home, airlock::config::LoadedConfig) {
    let ws = Workspace::new();
    build_database(&ws.path().join("shop.db"));
    let home = Home::new(ws.path());
    let destination = format!("127.0.0.1:{port}");
    let guid = home.add_password(ACCESS_KEY_ID, SECRET_KEY, &[&destination]);
    let cfg = ws.config(&format!(
        r#"[source]
plugin = "{}"
database = "shop.db"

[sink]
kind = "s3"
bucket = "{BUCKET}"
prefix = "{PREFIX}"
endpoint = "http://127.0.0.1:{port}"
allow_http = true
credential = "{guid}"
part_size_kb = 1
timeout_s = 10
{extra}
"#,
        plugin("sqlite").display(),
    ));
    (ws, home, cfg)
}

fn spool_root(ws: &Workspace) -> PathBuf {
    ws.path().join("airlock-home").join("spool")
}

fn airlock(ws: &Workspace, args: &[&str]) -> Output {
    airlock_command(ws)
        .args(args)
        .output()
        .expect("airlock runs")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_is_uploaded_whole_with_multipart_and_the_manifest() {
    let moto = moto();
    let api = S3Api::new(&moto.endpoint(), BUCKET);
    api.create_bucket().await;
    let (ws, home, cfg) = setup(&moto, "");
    let report = run_in(&runtime(), &cfg, &home).await.expect("run succeeds");
    let run_id = report.manifest.run_id.clone();
    assert_eq!(
        report.output_dir.to_string_lossy(),
        format!("s3://{BUCKET}/{PREFIX}/{run_id}/")
    );
    let manifest = api.verify_uploaded(PREFIX, &run_id).await;
    assert_eq!(
        serde_json::to_value(&report.manifest).unwrap(),
        manifest,
        "the uploaded manifest is the run's"
    );
    assert!(manifest["counts"]["table"]["kept"].as_u64().unwrap() >= 20);

    // column.jsonl is far above the 1 KiB part size: it went up in parts (an S3 multipart
    // ETag ends in -<parts>); the small database.jsonl went up in one PUT.
    let column = report
        .manifest
        .files
        .iter()
        .find(|f| f.kind == "column")
        .expect("columns");
    assert!(column.bytes > 4 * 1024, "{}", column.bytes);
    let (_, etag) = api
        .get_object(&format!("{PREFIX}/{run_id}/column.jsonl"))
        .await;
    let parts: u64 = etag
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or_else(|| panic!("multipart ETag expected, got {etag}"));
    assert_eq!(parts, column.bytes.div_ceil(1024), "one part per KiB");
    let (_, etag) = api
        .get_object(&format!("{PREFIX}/{run_id}/database.jsonl"))
        .await;
    assert!(!etag.contains('-'), "single PUT ETag: {etag}");

    // The spool is gone once the manifest is confirmed; the resolution was audited by GUID.
    assert!(ws.spool_entries().is_empty(), "{:?}", ws.spool_entries());
    let audit = home
        .inner()
        .state()
        .audit_entries(Some(&run_id), None)
        .unwrap();
    let audit = format!("{audit:?}");
    assert!(audit.contains("sink access key"), "{audit}");
    assert!(!audit.contains(SECRET_KEY));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_upload_has_no_manifest_and_resume_finishes_it() {
    let moto = moto();
    let api = S3Api::new(&moto.endpoint(), BUCKET);
    api.create_bucket().await;
    let (ws, home, cfg) = setup(&moto, "fail_after_files = 2");
    let err = run_in(&runtime(), &cfg, &home)
        .await
        .expect_err("the injected failure fails the run");
    assert_eq!(err.kind(), "upload", "{err}");
    let message = err.to_string();
    assert!(message.contains("no manifest was uploaded"), "{message}");
    assert!(!message.contains(SECRET_KEY));

    // The sealed spool stays for the resume; the bucket holds two files and no manifest.
    let spooled = ws.spool_entries();
    assert_eq!(spooled.len(), 1, "{spooled:?}");
    let run_id = spooled[0].clone();
    assert!(message.contains(&format!("airlock upload --resume {run_id}")));
    let base = format!("{PREFIX}/{run_id}/");
    let before = api.list_keys(&base).await;
    assert_eq!(before.len(), 2, "{before:?}");
    assert!(before.iter().all(|k| !k.ends_with("manifest.json")));
    let journal =
        std::fs::read_to_string(spool_root(&ws).join(&run_id).join("upload-journal.jsonl"))
            .unwrap();
    assert_eq!(journal.lines().count(), 2, "{journal}");
    let sealed: serde_json::Value = serde_json::from_slice(
        &std::fs::read(spool_root(&ws).join(&run_id).join("manifest.json")).unwrap(),
    )
    .unwrap();
    let files = airlock_tests::listed_files(&sealed).len();
    assert!(files > 2, "{files}");

    let out = airlock(&ws, &["upload", "--resume", &run_id, "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert_eq!(summary["status"], "complete");
    assert_eq!(summary["skipped"].as_array().unwrap().len(), 2, "{summary}");
    assert_eq!(
        summary["uploaded"].as_array().unwrap().len(),
        files - 2,
        "{summary}"
    );
    let skipped: Vec<String> = before
        .iter()
        .map(|k| k.trim_start_matches(&base).to_string())
        .collect();
    let mut reported: Vec<String> = summary["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    reported.sort();
    assert_eq!(reported, skipped, "the confirmed files were skipped");
    let manifest = api.verify_uploaded(PREFIX, &run_id).await;
    assert_eq!(manifest, sealed, "the spooled manifest went up unchanged");
    assert!(ws.spool_entries().is_empty());
    assert!(
        !stderr.contains(SECRET_KEY) && !String::from_utf8_lossy(&out.stdout).contains(SECRET_KEY)
    );

    // A second resume finds nothing to do and says so.
    let out = airlock(&ws, &["upload", "--resume", &run_id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no sealed spool"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_catalog_format_is_uploaded_with_the_run_and_listed_in_its_manifest() {
    let moto = moto();
    let api = S3Api::new(&moto.endpoint(), BUCKET);
    api.create_bucket().await;
    let (_ws, home, cfg) = setup(
        &moto,
        "format = \"openmetadata\"\n\n[sink.catalog]\nservice = \"warehouse\"",
    );
    let report = run_in(&runtime(), &cfg, &home).await.expect("run succeeds");
    let run_id = report.manifest.run_id.clone();
    let manifest = api.verify_uploaded(PREFIX, &run_id).await;
    assert_eq!(manifest["exports"][0]["path"], "openmetadata.json");
    let (bytes, _) = api
        .get_object(&format!("{PREFIX}/{run_id}/openmetadata.json"))
        .await;
    let requests: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let tables = requests["tables"].as_array().unwrap();
    assert!(tables.len() >= 20, "{}", tables.len());
    assert!(tables.iter().all(|t| t["databaseSchema"]
        .as_str()
        .unwrap()
        .starts_with("warehouse.")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_credential_not_bound_to_the_endpoint_uploads_nothing() {
    let moto = moto();
    let api = S3Api::new(&moto.endpoint(), BUCKET);
    api.create_bucket().await;
    let (ws, home, _) = setup(&moto, "");
    let guid = home.add_password(ACCESS_KEY_ID, SECRET_KEY, &["s3.elsewhere.internal:443"]);
    let text = std::fs::read_to_string(ws.path().join("airlock.toml")).unwrap();
    let start = text.find("credential = \"").unwrap() + "credential = \"".len();
    let text = format!("{}{guid}{}", &text[..start], &text[start + 36..]);
    let cfg = ws.config(&text);
    let err = run_in(&runtime(), &cfg, &home)
        .await
        .expect_err("the destination binding refuses");
    assert_eq!(err.kind(), "credential", "{err}");
    assert!(
        err.to_string().contains("may not be used for 127.0.0.1"),
        "{err}"
    );
    assert!(api.list_keys(PREFIX).await.is_empty());
    assert!(ws.spool_entries().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_fails_before_upload_leaves_nothing_to_resume() {
    let moto = moto();
    let api = S3Api::new(&moto.endpoint(), BUCKET);
    api.create_bucket().await;
    let (ws, home, _) = setup(&moto, "");
    // The database does not exist: the plugin fails, nothing is sealed or uploaded.
    let text = std::fs::read_to_string(ws.path().join("airlock.toml"))
        .unwrap()
        .replace("shop.db", "missing.db");
    let cfg = ws.config(&text);
    run_in(&runtime(), &cfg, &home)
        .await
        .expect_err("the run fails");
    assert!(ws.spool_entries().is_empty(), "{:?}", ws.spool_entries());
    // Only the failed run's log went up, beside the runs, never inside one.
    let keys = api.list_keys(PREFIX).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(
        keys[0].starts_with(&format!("{PREFIX}/failed/")) && keys[0].ends_with(".jsonl"),
        "{keys:?}"
    );
    let (log, _) = api.get_object(&keys[0]).await;
    let log = String::from_utf8(log).unwrap();
    assert!(
        log.lines().last().unwrap().contains("\"run-failed\""),
        "{log}"
    );
    let out = airlock(
        &ws,
        &["upload", "--resume", "0190a1b2-0000-7000-8000-000000000000"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no sealed spool"));
}

/// A loopback HTTP proxy in front of moto that handles one request per connection and, of every
/// three requests, answers one with 503 and drops the connection of another without answering.
struct FaultProxy {
    port: u16,
    faults: Arc<AtomicUsize>,
    forwarded: Arc<AtomicUsize>,
}

async fn fault_proxy(upstream: u16) -> FaultProxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let faults = Arc::new(AtomicUsize::new(0));
    let forwarded = Arc::new(AtomicUsize::new(0));
    let counter = Arc::new(AtomicUsize::new(0));
    let (f, w) = (faults.clone(), forwarded.clone());
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let (f, w) = (f.clone(), w.clone());
            tokio::spawn(async move {
                let _ = proxy_one(conn, upstream, n % 3, &f, &w).await;
            });
        }
    });
    FaultProxy {
        port,
        faults,
        forwarded,
    }
}

async fn proxy_one(
    mut conn: tokio::net::TcpStream,
    upstream: u16,
    mode: usize,
    faults: &AtomicUsize,
    forwarded: &AtomicUsize,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    match mode {
        1 => {
            faults.fetch_add(1, Ordering::SeqCst);
            conn.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )
            .await?;
            return conn.shutdown().await;
        }
        2 => {
            // The whole request arrived; the connection drops without an answer.
            faults.fetch_add(1, Ordering::SeqCst);
            return Ok(());
        }
        _ => {}
    }
    let mut new_head: String = head
        .trim_end()
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    new_head.push_str("connection: close\r\n\r\n");
    let mut up = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await?;
    up.write_all(new_head.as_bytes()).await?;
    up.write_all(&buf[head_end..head_end + length]).await?;
    let mut response = Vec::new();
    up.read_to_end(&mut response).await?;
    let text_head = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| String::from_utf8_lossy(&response[..i]).to_ascii_lowercase())
        .unwrap_or_default();
    if !text_head.contains("\nconnection:") {
        if let Some(i) = response.windows(2).position(|w| w == b"\r\n") {
            response.splice(i + 2..i + 2, b"connection: close\r\n".iter().copied());
        }
    }
    forwarded.fetch_add(1, Ordering::SeqCst);
    conn.write_all(&response).await?;
    conn.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_survive_5xx_and_dropped_connections() {
    let moto = moto();
    let api = S3Api::new(&moto.endpoint(), BUCKET);
    api.create_bucket().await;
    let proxy = fault_proxy(moto.port()).await;
    let (ws, home, cfg) = setup_at(proxy.port, "retries = 8");
    let report = run_in(&runtime(), &cfg, &home)
        .await
        .expect("retries carry the run through the faults");
    let faults = proxy.faults.load(Ordering::SeqCst);
    let forwarded = proxy.forwarded.load(Ordering::SeqCst);
    assert!(faults >= 10, "{faults} faults injected");
    assert!(forwarded > report.manifest.files.len(), "{forwarded}");
    let manifest = api.verify_uploaded(PREFIX, &report.manifest.run_id).await;
    assert_eq!(serde_json::to_value(&report.manifest).unwrap(), manifest);
    assert!(ws.spool_entries().is_empty());
}

/// A test CA and a server certificate for 127.0.0.1 signed by it (PEM).
fn test_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "airlock s3 test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[tokio::test(flavor = "multi_thread")]
async fn https_endpoint_with_a_custom_ca() {
    let pki_dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_pki(pki_dir.path());
    let moto = Moto::start_with(
        &[
            "--ssl-cert",
            cert.to_str().unwrap(),
            "--ssl-key",
            key.to_str().unwrap(),
        ],
        &[("S3_UPLOAD_PART_MIN_SIZE", "256")],
    );
    let base = format!("https://127.0.0.1:{}", moto.port());
    let api = S3Api::with_ca(&base, BUCKET, &std::fs::read(&ca).unwrap());
    api.create_bucket().await;

    // Without the CA the sink refuses the server's certificate: the upload fails, no manifest.
    let (ws, home, _) = setup(&moto, "");
    let text = std::fs::read_to_string(ws.path().join("airlock.toml"))
        .unwrap()
        .replace(&moto.endpoint(), &base)
        .replace("allow_http = true\n", "retries = 0\n");
    let cfg = ws.config(&text);
    let err = run_in(&runtime(), &cfg, &home)
        .await
        .expect_err("an unknown CA is refused");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert_eq!(err.kind(), "upload", "{err}");
    assert!(api.list_keys(PREFIX).await.is_empty());

    // With the test CA as `ca_file` the run goes up over TLS.
    std::fs::copy(&ca, ws.path().join("s3-ca.pem")).unwrap();
    let cfg = ws.config(&text.replace(
        "retries = 0\n",
        "retries = 0\nca_file = \"s3-ca.pem\"\nsse = \"AES256\"\n",
    ));
    let report = run_in(&runtime(), &cfg, &home).await.expect("run succeeds");
    let manifest = api.verify_uploaded(PREFIX, &report.manifest.run_id).await;
    assert_eq!(serde_json::to_value(&report.manifest).unwrap(), manifest);
    let resp = api
        .client
        .head(format!(
            "{base}/{BUCKET}/{PREFIX}/{}/manifest.json",
            report.manifest.run_id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()
            .get("x-amz-server-side-encryption")
            .and_then(|v| v.to_str().ok()),
        Some("AES256"),
        "sse = \"AES256\" reaches the store"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sink_secret_a_source_holds_is_withheld_and_nothing_leaves() {
    let moto = moto();
    let api = S3Api::new(&moto.endpoint(), BUCKET);
    api.create_bucket().await;
    let (ws, home, cfg) = setup(&moto, "");
    // A column default holds the sink's secret key, base64-encoded.
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(SECRET_KEY);
    rusqlite::Connection::open(ws.path().join("shop.db"))
        .unwrap()
        .execute_batch(&format!(
            "CREATE TABLE leak (x TEXT DEFAULT 'token {encoded}');"
        ))
        .unwrap();
    // The secret key is resolved before extraction: the inbound filter withholds it.
    let report = run_in(&runtime(), &cfg, &home)
        .await
        .expect("the plugin never received the key, so the run completes");
    assert!(report.manifest.secrets_withheld >= 1);
    let keys = api.list_keys(PREFIX).await;
    assert!(!keys.is_empty(), "the run was uploaded");
    for key in keys {
        let (body, _) = api.get_object(&key).await;
        let text = String::from_utf8_lossy(&body);
        assert!(
            !text.contains(SECRET_KEY) && !text.contains(&encoded),
            "{key} holds the key"
        );
    }
    assert!(ws.spool_entries().is_empty(), "{:?}", ws.spool_entries());
}

/// A sink endpoint given by name goes through the host's checking resolver: `localhost` is a
/// loopback name the operator configured, so it is allowed, and the upload goes to the address
/// the resolver checked.
#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_named_by_host_name_is_resolved_and_checked_by_the_host() {
    let moto = moto();
    let api = S3Api::new(&moto.endpoint(), BUCKET);
    api.create_bucket().await;
    let (ws, _, _) = setup(&moto, "");
    let home = Home::new(ws.path());
    let guid = home.add_password(
        ACCESS_KEY_ID,
        SECRET_KEY,
        &[&format!("localhost:{}", moto.port())],
    );
    let text = std::fs::read_to_string(ws.path().join("airlock.toml")).unwrap();
    let text = text
        .replace("http://127.0.0.1:", "http://localhost:")
        .lines()
        .map(|l| {
            if l.starts_with("credential = ") {
                format!("credential = \"{guid}\"")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let cfg = ws.config(&text);
    let report = run_in(&runtime(), &cfg, &home).await.expect("run succeeds");
    api.verify_uploaded(PREFIX, &report.manifest.run_id).await;
}
