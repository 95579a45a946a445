//! Fault injection on uploads: a loopback TCP proxy (tests/src/faultproxy.rs) between the sink
//! and a real server drops, resets, stalls and truncates connections at random byte offsets
//! of requests and responses — for the S3 sink (moto, plain HTTP) and the HTTPS tenant sink
//! (the loopback tenant of tests/src/tenant.rs, mutual TLS, so faults also hit handshakes).
//! Every run must either complete, with every uploaded object equal (size, SHA-256, records)
//! to what its manifest lists, or fail with no manifest uploaded — and then `airlock upload
//! --resume` must finish it with nothing lost and nothing duplicated. Schedules are seeded, so
//! a failure names the seed that replays it. Together the two matrices inject at least 100
//! faults.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use airlock_tests::faultproxy::{Direction, Fault, FaultProxy, Rng};
use airlock_tests::moto::Moto;
use airlock_tests::s3api::{verify_run_objects, S3Api};
use airlock_tests::tenant::{Pki, Tenant, BASE_PATH};
use airlock_tests::{airlock_command, plugin, run_in, runtime, Home, Workspace};

const BUCKET: &str = "catalog";
const PREFIX: &str = "airlock/faults";
const ACCESS_KEY_ID: &str = "AKIAAIRLOCKFAULTS";
const SECRET_KEY: &str = "s3-faults-secret-Jq4vN8pT2wX6";
const API_KEY: &str = "tenant-faults-key-Vb7mQ2zL9xR4";

/// The server behind the proxy and how to read what a run left there.
enum Server {
    S3 { _moto: Moto, api: S3Api },
    Https { tenant: Tenant, pki: Pki },
}

impl Server {
    async fn s3() -> Server {
        let moto = Moto::start_with_env(&[("S3_UPLOAD_PART_MIN_SIZE", "256")]);
        let api = S3Api::new(&moto.endpoint(), BUCKET);
        api.create_bucket().await;
        Server::S3 { _moto: moto, api }
    }

    async fn https() -> Server {
        let pki = Pki::generate();
        let tenant = Tenant::start(&pki, API_KEY, true).await;
        Server::Https { tenant, pki }
    }

    fn port(&self) -> u16 {
        match self {
            Server::S3 { _moto, .. } => _moto.port(),
            Server::Https { tenant, .. } => tenant.port(),
        }
    }

    fn secret(&self) -> &'static str {
        match self {
            Server::S3 { .. } => SECRET_KEY,
            Server::Https { .. } => API_KEY,
        }
    }

    /// A workspace with the shop database and a home holding the sink's credentials, bound to
    /// the proxy's address; returns the `[sink]` table for a given retry count and timeout.
    fn workspace(&self, proxy_port: u16) -> (Workspace, Home, SinkTable) {
        let ws = Workspace::new();
        let conn = rusqlite::Connection::open(ws.path().join("shop.db")).unwrap();
        conn.execute_batch(airlock::demo::SHOP_SCHEMA).unwrap();
        let home = Home::new(ws.path());
        let destination = format!("127.0.0.1:{proxy_port}");
        let table = match self {
            Server::S3 { .. } => {
                let guid = home.add_password(ACCESS_KEY_ID, SECRET_KEY, &[&destination]);
                SinkTable(format!(
                    "kind = \"s3\"\nbucket = \"{BUCKET}\"\nprefix = \"{PREFIX}\"\n\
                     endpoint = \"http://{destination}\"\nallow_http = true\n\
                     credential = \"{guid}\"\npart_size_kb = 1\n"
                ))
            }
            Server::Https { pki, .. } => {
                let token = |secret: &str| home.add_token(secret, &[&destination]);
                let (api, cert) = (token(API_KEY), token(&pki.client_pem));
                std::fs::write(ws.path().join("tenant-ca.pem"), &pki.ca_pem).unwrap();
                SinkTable(format!(
                    "kind = \"https\"\nurl = \"https://{destination}{BASE_PATH}\"\n\
                     api_key = \"{api}\"\nclient_cert = \"{cert}\"\n\
                     ca_file = \"tenant-ca.pem\"\nsystem_roots = false\n"
                ))
            }
        };
        (ws, home, table)
    }

    /// The uploaded objects of `run_id` by file name (without the manifest).
    async fn objects(&self, run_id: &str) -> Vec<(String, Vec<u8>)> {
        match self {
            Server::S3 { api, .. } => {
                let base = format!("{PREFIX}/{run_id}/");
                let mut out = Vec::new();
                for key in api.list_keys(&base).await {
                    let (body, _) = api.get_object(&key).await;
                    out.push((key[base.len()..].to_string(), body));
                }
                out
            }
            Server::Https { tenant, .. } => {
                let base = format!("{BASE_PATH}/runs/{run_id}/");
                tenant
                    .objects()
                    .into_iter()
                    .filter_map(|(k, v)| k.strip_prefix(&base).map(|f| (f.to_string(), v)))
                    .collect()
            }
        }
    }

    /// Checks the uploaded run: exactly the manifest's files plus the manifest, each equal to
    /// what the manifest says. Returns the manifest.
    async fn verify(&self, run_id: &str, context: &str) -> serde_json::Value {
        let objects = self.objects(run_id).await;
        let manifest: serde_json::Value = serde_json::from_slice(
            &objects
                .iter()
                .find(|(n, _)| n == "manifest.json")
                .unwrap_or_else(|| panic!("{context}: no manifest uploaded"))
                .1,
        )
        .expect("manifest is JSON");
        let files: Vec<String> = airlock_tests::listed_files(&manifest)
            .iter()
            .map(|f| f["path"].as_str().unwrap().to_string())
            .collect();
        let bodies: Vec<Vec<u8>> = files
            .iter()
            .map(|f| {
                objects
                    .iter()
                    .find(|(n, _)| n == f)
                    .unwrap_or_else(|| panic!("{context}: {f} missing"))
                    .1
                    .clone()
            })
            .collect();
        verify_run_objects(&manifest, run_id, &bodies);
        assert_eq!(objects.len(), files.len() + 1, "{context}: extra objects");
        manifest
    }

    async fn has_manifest(&self, run_id: &str) -> bool {
        self.objects(run_id)
            .await
            .iter()
            .any(|(n, _)| n == "manifest.json")
    }
}

/// The `[sink]` table of a workspace, without retries and timeout.
struct SinkTable(String);

impl SinkTable {
    fn config(&self, retries: u32, timeout_s: u64) -> String {
        format!(
            "[source]\nplugin = \"{}\"\ndatabase = \"shop.db\"\n\n[sink]\n{}retries = {retries}\ntimeout_s = {timeout_s}\n",
            plugin("sqlite").display(),
            self.0
        )
    }
}

/// Nothing of `run_id` is marked complete: no manifest object, and the state store does not
/// record the run as complete.
async fn assert_not_published(server: &Server, home: &Home, run_id: &str, context: &str) {
    assert!(
        !server.has_manifest(run_id).await,
        "{context}: a failed upload left a manifest"
    );
    let runs = home.inner().state().runs(1000).unwrap();
    assert!(
        runs.iter()
            .filter(|r| r.id == run_id)
            .all(|r| r.status != "complete"),
        "{context}: the state store marks the failed run complete"
    );
}

/// `airlock upload --resume RUN` with no faults planned; it must complete.
async fn resume(ws: &Workspace, proxy: &FaultProxy, run_id: &str, secret: &str, context: &str) {
    proxy.set_plan([]);
    let out = tokio::task::spawn_blocking({
        let mut cmd = airlock_command(ws);
        cmd.args(["upload", "--resume", run_id, "--json"]);
        move || cmd.output().expect("airlock runs")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{context}: resume failed: {stderr}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert_eq!(summary["status"], "complete", "{context}: {summary}");
    assert!(!stderr.contains(secret) && !String::from_utf8_lossy(&out.stdout).contains(secret));
}

/// Runs uploads through random faults until `target` faults fired; returns the number that
/// fired.
async fn fault_matrix(server: Server, seed: u64, target: usize) -> usize {
    let upstream: SocketAddr = format!("127.0.0.1:{}", server.port()).parse().unwrap();
    let proxy = FaultProxy::start(upstream).await;
    let (ws, home, sink) = server.workspace(proxy.port());
    let rt = runtime();
    let mut rng = Rng::new(seed);
    let (mut completed, mut resumed, mut runs) = (0, 0, 0);
    let mut all_runs = Vec::new();
    while proxy.stats().injected() < target {
        runs += 1;
        assert!(
            runs <= 150,
            "only {} faults fired in 150 runs",
            proxy.stats().injected()
        );
        let context = format!("seed {seed:#x}, run {runs}");
        let retries = [0u32, 1, 3, 8][rng.below(4) as usize];
        // A stall costs a client timeout (2 s); keep them to one run in eight.
        let stall = (rng.below(8) == 0).then_some(Duration::from_secs(30));
        let plan: Vec<Fault> = (0..1 + rng.below(3))
            .map(|_| rng.fault(6 * 1024, 1200, stall))
            .collect();
        proxy.set_plan(plan.clone());
        let cfg = ws.config(&sink.config(retries, 2));
        let started = Instant::now();
        let result = run_in(&rt, &cfg, &home).await;
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "{context}: a run under faults must never hang"
        );
        let run_id = match result {
            Ok(report) => {
                completed += 1;
                let run_id = report.manifest.run_id.clone();
                let manifest = server.verify(&run_id, &context).await;
                assert_eq!(
                    serde_json::to_value(&report.manifest).unwrap(),
                    manifest,
                    "{context}"
                );
                run_id
            }
            Err(e) => {
                assert_eq!(e.kind(), "upload", "{context} ({plan:?}): {e}");
                assert!(!e.to_string().contains(server.secret()), "{context}");
                let spooled = ws.spool_entries();
                assert_eq!(spooled.len(), 1, "{context}: {spooled:?}");
                let run_id = spooled[0].clone();
                assert_not_published(&server, &home, &run_id, &context).await;
                resume(&ws, &proxy, &run_id, server.secret(), &context).await;
                server.verify(&run_id, &context).await;
                resumed += 1;
                run_id
            }
        };
        all_runs.push(run_id);
        assert!(
            ws.spool_entries().is_empty(),
            "{context}: spool left behind"
        );
    }

    // Every run holds the same records: nothing was lost or duplicated, whatever the faults
    // did (`verify` already checked each run has exactly its manifest's objects).
    let mut first: Option<serde_json::Value> = None;
    for run_id in &all_runs {
        let manifest = server.verify(run_id, run_id).await;
        match &first {
            None => first = Some(manifest["counts"].clone()),
            Some(c) => assert_eq!(c, &manifest["counts"], "run {run_id} holds other records"),
        }
    }
    let stats = proxy.stats();
    eprintln!(
        "{runs} runs: {completed} completed through the faults, {resumed} failed and resumed; \
         faults fired: {} drops, {} resets, {} stalls, {} truncations",
        stats.dropped.load(Ordering::SeqCst),
        stats.reset.load(Ordering::SeqCst),
        stats.stalled.load(Ordering::SeqCst),
        stats.truncated.load(Ordering::SeqCst),
    );
    assert!(
        resumed > 0 && completed > 0,
        "{completed} completed, {resumed} resumed"
    );
    stats.injected()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_uploads_under_random_faults_complete_or_publish_nothing() {
    let fired = fault_matrix(Server::s3().await, 0x5eed_0001, 60).await;
    assert!(fired >= 60, "{fired}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_uploads_under_random_faults_complete_or_publish_nothing() {
    let fired = fault_matrix(Server::https().await, 0x5eed_0002, 50).await;
    assert!(fired >= 50, "{fired}");
}

/// `airlock run` killed with SIGKILL in the middle of its upload publishes nothing; the
/// sealed spool survives and `airlock upload --resume` finishes the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_upload_publishes_nothing_and_resumes() {
    let server = Server::s3().await;
    let upstream: SocketAddr = format!("127.0.0.1:{}", server.port()).parse().unwrap();
    let proxy = FaultProxy::start(upstream).await;
    let (ws, home, sink) = server.workspace(proxy.port());
    // The first upload request reaches the server, but its answer stalls; the client would
    // wait 60 s for it.
    proxy.set_plan([Fault::Stall {
        dir: Direction::Response,
        at: 0,
        hold: Duration::from_secs(120),
    }]);
    let config = ws.path().join("killed.toml");
    std::fs::write(&config, sink.config(0, 60)).unwrap();
    let mut child = airlock_command(&ws)
        .args(["run", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("airlock starts");
    let started = Instant::now();
    while proxy.stats().stalled.load(Ordering::SeqCst) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the upload never reached the stall"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("airlock exited before the stall: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().expect("SIGKILL");
    let status = child.wait().unwrap();
    assert!(!status.success());

    let spooled = ws.spool_entries();
    assert_eq!(spooled.len(), 1, "{spooled:?}");
    let run_id = spooled[0].clone();
    assert_not_published(&server, &home, &run_id, "killed run").await;
    resume(&ws, &proxy, &run_id, SECRET_KEY, "killed run").await;
    let manifest = server.verify(&run_id, "killed run").await;
    assert!(manifest["counts"]["table"]["kept"].as_u64().unwrap() > 0);
    assert!(ws.spool_entries().is_empty());
}
