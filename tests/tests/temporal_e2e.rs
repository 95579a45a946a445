//! airlock as a service against a real Temporal dev server: the `airlock worker` process
//! runs triggered workflows (the payload is the workflow id alone) exactly as `airlock run
//! --workflow` does; `airlock trigger` and `airlock schedule` start them; cancelling the
//! Temporal workflow publishes nothing; with Temporal down the worker is not ready and a
//! trigger fails clearly; `/metrics` counts the runs; no secret reaches Temporal's history.
//!
//! One dev server for the file; each test has its own task queue, home and worker.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use airlock_tests::temporal::{TemporalDev, TlsFront};
use airlock_tests::{airlock_bin, plugin, plugin_dir, workspace_root, Workspace};

/// A secret the hash rule's key holds: it must appear in no Temporal payload or history.
const CANARY: &str = "Temporal-Canary-Key-4b9e2f";

fn server() -> &'static TemporalDev {
    static SERVER: OnceLock<TemporalDev> = OnceLock::new();
    SERVER.get_or_init(TemporalDev::start)
}

/// One test's home, stored workflow and worker.
struct Service {
    ws: Workspace,
    queue: String,
    worker: Option<Child>,
    health: String,
    stderr: Arc<Mutex<String>>,
    /// Start the worker with `--log-format json`.
    json_logs: bool,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Service {
    fn new(queue: &str) -> Service {
        let ws = Workspace::new();
        airlock::demo::create_sample_database(&ws.path().join("shop.db")).unwrap();
        Service {
            ws,
            queue: format!("{queue}-{}", std::process::id()),
            worker: None,
            health: String::new(),
            stderr: Default::default(),
            json_logs: false,
        }
    }

    fn home(&self) -> PathBuf {
        self.ws.path().join("airlock-home")
    }

    fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(airlock_bin());
        cmd.arg("--home")
            .arg(self.home())
            .args(args)
            .env("AIRLOCK_PLUGIN_DIR", plugin_dir())
            .env(
                "AIRLOCK_CACHE_DIR",
                workspace_root().join("target/test-component-cache"),
            )
            .env("AIRLOCK_TEMPORAL_ADDRESS", server().address())
            .env("AIRLOCK_TEMPORAL_TASK_QUEUE", &self.queue)
            .stdin(Stdio::null());
        cmd.output().expect("airlock runs")
    }

    /// Stores a workflow config; returns its id.
    fn store(&self, config: &str) -> String {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let file = self.ws.path().join(format!("wf-{n}.toml"));
        std::fs::write(&file, config).unwrap();
        let out = self.cli(&["workflow", "create", "--config", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
            .split_whitespace()
            .last()
            .expect("the workflow id")
            .to_string()
    }

    fn sqlite_config(&self, extra: &str) -> String {
        format!(
            "[source]\nplugin = \"sqlite\"\ndatabase = \"{}\"\n\n[source.options]\nname = \"shop\"\n\n\
             [sink]\nkind = \"local\"\ndir = \"{}\"\n{extra}",
            self.ws.path().join("shop.db").display(),
            self.ws.out().display()
        )
    }

    /// Starts `airlock worker` and waits until it serves its endpoints.
    fn start_worker(&mut self) {
        let mut child = Command::new(airlock_bin())
            .arg("--home")
            .arg(self.home())
            .args([
                "worker",
                "--listen",
                "127.0.0.1:0",
                "--shutdown-grace-s",
                "5",
            ])
            .env("AIRLOCK_PLUGIN_DIR", plugin_dir())
            .env(
                "AIRLOCK_CACHE_DIR",
                workspace_root().join("target/test-component-cache"),
            )
            .env("AIRLOCK_TEMPORAL_ADDRESS", server().address())
            .env("AIRLOCK_TEMPORAL_TASK_QUEUE", &self.queue)
            .env("AIRLOCK_LOG", "airlock=info")
            .env(
                "AIRLOCK_LOG_FORMAT",
                if self.json_logs { "json" } else { "text" },
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the worker starts");
        self.health = follow_worker(&mut child, self.stderr.clone());
        self.worker = Some(child);
        let log = self.stderr.clone();
        wait_ready(&self.health, || log.lock().unwrap().clone());
    }

    fn published_runs(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.ws.out())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("manifest.json").is_file())
            .collect()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut w) = self.worker.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

/// Collects a spawned worker's stderr into `log` and returns the health address it prints.
fn follow_worker(child: &mut Child, log: Arc<Mutex<String>>) -> String {
    let stderr = child.stderr.take().expect("the worker's stderr is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    let seen = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.split("health and metrics on ").nth(1) {
                // The message is followed by the event's fields.
                let url: String = url
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '"')
                    .collect();
                let _ = tx.send(url);
            }
            seen.lock().unwrap().push_str(&format!("{line}\n"));
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("the worker did not start: {}", log.lock().unwrap()))
}

/// Waits until `/readyz` at `health` answers 200; `context` says more when it never does.
/// Generous: other suites load the two cores while this waits.
fn wait_ready(health: &str, mut context: impl FnMut() -> String) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, body) = get(&format!("{health}/readyz"));
        if status == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the worker never became ready ({status} {body}): {}",
            context()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// GET `url` (plain HTTP on loopback): status and body.
fn get(url: &str) -> (u16, String) {
    let rest = url.trim_start_matches("http://");
    let (addr, path) = rest
        .split_once('/')
        .map(|(a, p)| (a, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    use std::io::Write;
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The value of a Prometheus sample `name{labels}` in `text`, or 0.
fn sample(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} / {}", text(&out.stdout), text(&out.stderr)))
}

#[test]
fn a_trigger_over_mutual_tls_presents_the_client_certificate_held_in_the_secret_store() {
    let pki = airlock_tests::tenant::Pki::generate();
    let front = TlsFront::start(&pki, &server().address());
    let mut svc = Service::new("tls");
    let home = airlock_tests::Home::new(svc.ws.path());
    let cert = home.add_token(&pki.client_pem, &[&front.address]);
    let stranger = home.add_token(&pki.stranger_pem, &[&front.address]);
    let elsewhere = home.add_token(&pki.client_pem, &["127.0.0.1:1"]);
    let ca = svc.ws.path().join("temporal-ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let id = svc.store(&svc.sqlite_config(""));
    // The worker polls the dev server directly; the triggers go through the TLS front.
    svc.start_worker();
    let over_tls = |extra: &[&str]| {
        let mut args = vec![
            "trigger",
            "--workflow",
            &id,
            "--wait",
            "--temporal-address",
            &front.address,
        ];
        args.extend_from_slice(extra);
        svc.cli(&args)
    };
    let ca = ca.to_str().unwrap();
    let mut outputs = Vec::new();

    // No client certificate, a certificate from a CA the server does not trust, the server's
    // CA not trusted by the client: each fails, and says it could not connect.
    for (what, extra) in [
        ("no client certificate", vec!["--tls-ca", ca]),
        (
            "an untrusted client certificate",
            vec!["--tls-ca", ca, "--tls-client-cert", &stranger],
        ),
        (
            "the server's CA not given",
            vec!["--tls-client-cert", &cert],
        ),
    ] {
        let refused = front.refused();
        let out = over_tls(&extra);
        assert!(!out.status.success(), "{what}: the trigger must fail");
        let err = text(&out.stderr);
        assert!(
            err.contains("cannot connect to Temporal") && err.contains("--tls-ca"),
            "{what}: {err}"
        );
        assert!(
            front.refused() > refused,
            "{what}: the handshake was refused: {err}"
        );
        outputs.push(out);
    }
    // A credential not bound to the Temporal address is refused before it is read.
    let out = over_tls(&["--tls-ca", ca, "--tls-client-cert", &elsewhere]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("may not be used for"),
        "{}",
        text(&out.stderr)
    );
    outputs.push(out);
    assert!(svc.published_runs().is_empty(), "nothing ran");

    // With the CA and the client certificate the trigger runs the workflow once.
    let out = over_tls(&["--tls-ca", ca, "--tls-client-cert", &cert, "--json"]);
    assert!(
        out.status.success(),
        "{} {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(json(&out)["trigger"]["outcome"]["already_published"], false);
    assert_eq!(svc.published_runs().len(), 1, "exactly one complete run");
    outputs.push(out);

    // The key was resolved from the secret store, audited by GUID, and printed nowhere.
    let audit = home
        .inner()
        .state()
        .audit_entries(None, Some(&cert))
        .unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "resolve" && e.outcome == "ok"),
        "{audit:?}"
    );
    let key = airlock_tests::key_block(&pki.client_pem);
    let key_line = key.lines().nth(1).expect("a line of the key");
    for out in &outputs {
        for stream in [&out.stdout, &out.stderr] {
            assert!(
                !text(stream).contains(key_line),
                "the client key was printed"
            );
        }
    }
}

#[test]
fn a_trigger_runs_the_stored_workflow_once_and_metrics_count_it() {
    let mut svc = Service::new("trigger");
    let key = {
        let out = {
            let mut cmd = Command::new(airlock_bin());
            cmd.arg("--home")
                .arg(svc.home())
                .args([
                    "credential",
                    "add",
                    "--kind",
                    "password",
                    "--user",
                    "hmac",
                    "--destination",
                    "127.0.0.1:1",
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = cmd.spawn().unwrap();
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(CANARY.as_bytes())
                .unwrap();
            child.wait_with_output().unwrap()
        };
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
            .split_whitespace()
            .last()
            .unwrap()
            .to_string()
    };
    let id = svc.store(&svc.sqlite_config(&format!(
        "\n[filters]\nfields = [{{ field = \"default\", action = \"hash\", key_credential = \"{key}\" }}]\n"
    )));
    svc.start_worker();
    assert_eq!(get(&format!("{}/healthz", svc.health)).0, 200);

    let out = svc.cli(&["trigger", "--workflow", &id, "--wait", "--json"]);
    assert!(
        out.status.success(),
        "{} {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let v = json(&out);
    let outcome = &v["trigger"]["outcome"];
    assert_eq!(outcome["already_published"], false, "{v}");
    assert!(outcome["assets"].as_u64().unwrap() > 100, "{v}");
    let runs = svc.published_runs();
    assert_eq!(runs.len(), 1, "exactly one complete run: {runs:?}");
    assert_eq!(
        runs[0].file_name().unwrap().to_str().unwrap(),
        outcome["run_id"].as_str().unwrap()
    );

    let (status, metrics) = get(&format!("{}/metrics", svc.health));
    assert_eq!(status, 200);
    assert_eq!(
        sample(&metrics, "airlock_runs_total{outcome=\"complete\"}"),
        1.0,
        "{metrics}"
    );
    assert!(
        sample(&metrics, "airlock_assets_published_total{kind=\"table\"}") > 0.0,
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "airlock_worker_slots_in_use"),
        0.0,
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "airlock_plugin_peak_memory_bytes_count"),
        1.0,
        "{metrics}"
    );
    assert!(
        sample(&metrics, "airlock_plugin_peak_memory_bytes_sum") > 1048576.0,
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "airlock_run_duration_seconds_count"),
        1.0,
        "{metrics}"
    );
    // The run resolved the hash key once: audited, and counted (no GUID in the labels).
    assert_eq!(
        sample(
            &metrics,
            "airlock_audit_events_total{action=\"resolve\",outcome=\"ok\"}"
        ),
        1.0,
        "{metrics}"
    );
    // ... and by its backend, the embedded vault.
    assert_eq!(
        sample(
            &metrics,
            "airlock_secret_resolutions_total{backend=\"embedded\",outcome=\"ok\"}"
        ),
        1.0,
        "{metrics}"
    );
    assert!(!metrics.contains(&key), "no GUID in the metrics");

    // The canary (the hash key the run resolved) is in no Temporal payload or history.
    let temporal_id = v["trigger"]["temporal_workflow_id"].as_str().unwrap();
    let history = server().cli(&[
        "workflow",
        "show",
        "--workflow-id",
        temporal_id,
        "--output",
        "json",
    ]);
    assert!(history.status.success(), "{}", text(&history.stderr));
    let history = text(&history.stdout);
    assert!(
        history.contains("airlock-run-workflow"),
        "the history is the run's: {history}"
    );
    use base64::Engine;
    for form in [
        CANARY.to_string(),
        base64::engine::general_purpose::STANDARD.encode(CANARY),
        hex::encode(CANARY),
    ] {
        assert!(!history.contains(&form), "the history holds the canary");
    }
    // The payload of the start was the workflow id alone.
    let input =
        base64::engine::general_purpose::STANDARD.encode(format!("{{\"workflow_id\":\"{id}\"}}"));
    assert!(
        history.contains(&input) || history.contains(&id),
        "{history}"
    );
}

#[test]
fn a_cancelled_trigger_publishes_nothing() {
    let mut svc = Service::new("cancel");
    let id = svc.store(&format!(
        "[source]\nplugin = \"{}\"\ndatabase = \"{}\"\n\n[source.options]\nmode = \"sleep\"\nsecs = 300\n\n\
         [sink]\nkind = \"local\"\ndir = \"{}\"\n",
        plugin("hostile-suite").display(),
        svc.ws.path().join("shop.db").display(),
        svc.ws.out().display()
    ));
    svc.start_worker();
    let out = svc.cli(&["trigger", "--workflow", &id, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let temporal_id = json(&out)["trigger"]["temporal_workflow_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Wait until the run is under way on the worker.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, m) = get(&format!("{}/metrics", svc.health));
        if sample(&m, "airlock_worker_slots_in_use") >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the run never started: {}",
            svc.stderr.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let cancel = server().cli(&["workflow", "cancel", "--workflow-id", &temporal_id]);
    assert!(cancel.status.success(), "{}", text(&cancel.stderr));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, m) = get(&format!("{}/metrics", svc.health));
        if sample(&m, "airlock_runs_total{outcome=\"cancelled\"}") >= 1.0 {
            assert_eq!(sample(&m, "airlock_worker_slots_in_use"), 0.0, "{m}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the run was never cancelled: {m}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let described = server().cli(&[
        "workflow",
        "describe",
        "--workflow-id",
        &temporal_id,
        "--output",
        "json",
    ]);
    assert!(
        text(&described.stdout).contains("CANCELED"),
        "{}",
        text(&described.stdout)
    );
    assert!(svc.published_runs().is_empty(), "nothing published");
    let leftovers: Vec<_> = std::fs::read_dir(svc.ws.out())
        .into_iter()
        .flatten()
        .flatten()
        // A failed run's log sits beside the runs, in failed/.
        .filter(|e| e.file_name() != "failed")
        .collect();
    assert!(leftovers.is_empty(), "no staging left: {leftovers:?}");
    // The stopped run kept its log beside the runs, as any failed run does.
    let failed = svc.ws.failed_logs();
    assert_eq!(failed.len(), 1, "the cancelled run's log is kept");
    let last: serde_json::Value = serde_json::from_str(failed[0].lines().last().unwrap()).unwrap();
    assert_eq!(last["kind"], "interrupted", "{}", failed[0]);
}

#[test]
fn a_schedule_fires_repeatedly_and_can_be_paused_and_deleted() {
    let mut svc = Service::new("schedule");
    let id = svc.store(&svc.sqlite_config(""));
    svc.start_worker();
    let schedule = format!("airlock-test-{}", svc.queue);
    let out = svc.cli(&[
        "schedule",
        "create",
        "--workflow",
        &id,
        "--cron",
        "@every 2s",
        "--id",
        &schedule,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = svc.cli(&["schedule", "list", "--json"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    assert!(
        text(&listed.stdout).contains(&schedule),
        "{}",
        text(&listed.stdout)
    );

    let deadline = Instant::now() + Duration::from_secs(90);
    while svc.published_runs().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the schedule fired {} times",
            svc.published_runs().len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = svc.cli(&["schedule", "pause", &schedule]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = svc.cli(&["schedule", "list", "--json"]);
    let lines: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let ours = lines
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == schedule.as_str())
        .unwrap();
    assert_eq!(ours["paused"], true, "{ours}");
    let out = svc.cli(&["schedule", "delete", &schedule]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn an_unknown_workflow_is_refused_before_anything_is_started() {
    let svc = Service::new("unknown");
    let out = svc.cli(&["trigger", "--workflow", "no-such-workflow"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("unknown workflow no-such-workflow"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&svc.home().display().to_string()),
        "names the home: {stderr}"
    );
}

#[test]
fn with_temporal_down_the_worker_is_not_ready_and_a_trigger_fails_clearly() {
    // Its own server, stopped half-way.
    let mut own = TemporalDev::start();
    let svc = Service::new("down");
    let id = svc.store(&svc.sqlite_config(""));
    // The worker of this test talks to `own`.
    let mut child = Command::new(airlock_bin())
        .arg("--home")
        .arg(svc.home())
        .args([
            "worker",
            "--listen",
            "127.0.0.1:0",
            "--temporal-address",
            &own.address(),
        ])
        .env("AIRLOCK_PLUGIN_DIR", plugin_dir())
        .env("AIRLOCK_TEMPORAL_TASK_QUEUE", &svc.queue)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let health = follow_worker(&mut child, log.clone());
    wait_ready(&health, || {
        format!(
            "{:?}\nthe worker's log: {}\nTemporal's log: {}",
            child.try_wait(),
            log.lock().unwrap(),
            own.log_text()
        )
    });
    own.stop();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (status, body) = loop {
        let r = get(&format!("{health}/readyz"));
        if r.0 == 503 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("Temporal"), "{body}");
    assert_eq!(
        get(&format!("{health}/healthz")).0,
        200,
        "alive all the same"
    );

    let mut cmd = Command::new(airlock_bin());
    let out = cmd
        .arg("--home")
        .arg(svc.home())
        .args([
            "trigger",
            "--workflow",
            &id,
            "--temporal-address",
            &own.address(),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("cannot connect to Temporal at"), "{stderr}");
    assert!(stderr.contains(&own.address()), "{stderr}");
    let _ = child.kill();
    let _ = child.wait();
}

/// Two workers (separate processes and homes) sharing one PostgreSQL state store: 20 triggers
/// each publish exactly once; a worker killed with SIGKILL in the middle of a run has its
/// activity retried on the other worker after the heartbeat timeout, which publishes it once.
#[test]
fn two_workers_on_one_state_store_publish_each_trigger_once_even_when_one_is_killed() {
    use airlock_tests::postgres::PgCluster;
    let pg = PgCluster::start();
    pg.create_user("airlock_state", "Shared-State-Pw-71");
    pg.psql(
        "postgres",
        "CREATE DATABASE airlock_state OWNER airlock_state",
    );
    let mut a = Service::new("pair");
    let mut b = Service::new("pair");
    b.queue = a.queue.clone();
    for svc in [&a, &b] {
        std::fs::create_dir_all(svc.home()).unwrap();
        std::fs::write(svc.home().join("state-password"), "Shared-State-Pw-71\n").unwrap();
        std::fs::write(
            svc.home().join("state.toml"),
            format!(
                "url = \"postgres://airlock_state@127.0.0.1:{}/airlock_state\"\n\
                 password_file = \"state-password\"\ntls = \"disable\"\n",
                pg.port()
            ),
        )
        .unwrap();
    }
    // Stored through worker A's home; worker B sees it in the shared store.
    let quick = a.store(&a.sqlite_config(""));
    let listed = b.cli(&["workflow", "list", "--json"]);
    assert!(
        text(&listed.stdout).contains(&quick),
        "B sees A's workflow: {}",
        text(&listed.stdout)
    );
    a.start_worker();
    b.start_worker();

    let mut ids = Vec::new();
    for _ in 0..20 {
        let out = a.cli(&["trigger", "--workflow", &quick, "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        ids.push(
            json(&out)["trigger"]["temporal_workflow_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    while a.published_runs().len() < 20 {
        assert!(
            Instant::now() < deadline,
            "{} of 20 published; A: {} B: {}",
            a.published_runs().len(),
            a.stderr.lock().unwrap(),
            b.stderr.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    for id in &ids {
        let d = server().cli(&[
            "workflow",
            "describe",
            "--workflow-id",
            id,
            "--output",
            "json",
        ]);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut d = d;
        while !text(&d.stdout).contains("COMPLETED") {
            assert!(Instant::now() < deadline, "{id}: {}", text(&d.stdout));
            std::thread::sleep(Duration::from_millis(300));
            d = server().cli(&[
                "workflow",
                "describe",
                "--workflow-id",
                id,
                "--output",
                "json",
            ]);
        }
    }
    assert_eq!(
        a.published_runs().len(),
        20,
        "exactly one complete run per trigger"
    );
    let done: f64 = [&a, &b]
        .iter()
        .map(|s| {
            sample(
                &get(&format!("{}/metrics", s.health)).1,
                "airlock_runs_total{outcome=\"complete\"}",
            )
        })
        .sum();
    assert_eq!(done, 20.0, "the workers' metrics count every run once");

    // A slow run, and the worker running it killed with SIGKILL half-way.
    let slow = a.store(&format!(
        "[source]\nplugin = \"{}\"\ndatabase = \"{}\"\n\n[source.options]\nmode = \"sleep\"\nsecs = 4\n\n\
         [sink]\nkind = \"local\"\ndir = \"{}\"\n",
        plugin("hostile-suite").display(),
        a.ws.path().join("shop.db").display(),
        a.ws.out().display()
    ));
    let out = a.cli(&["trigger", "--workflow", &slow, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let temporal_id = json(&out)["trigger"]["temporal_workflow_id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let busy = loop {
        let busy = [&a, &b].iter().position(|s| {
            sample(
                &get(&format!("{}/metrics", s.health)).1,
                "airlock_worker_slots_in_use",
            ) >= 1.0
        });
        if let Some(i) = busy {
            break i;
        }
        assert!(Instant::now() < deadline, "the slow run never started");
        std::thread::sleep(Duration::from_millis(100));
    };
    let out_dir = a.ws.out();
    let (victim, survivor) = if busy == 0 {
        (&mut a, &b)
    } else {
        (&mut b, &a)
    };
    let mut child = victim.worker.take().unwrap();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let d = server().cli(&[
            "workflow",
            "describe",
            "--workflow-id",
            &temporal_id,
            "--output",
            "json",
        ]);
        if text(&d.stdout).contains("COMPLETED") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the killed run was not retried: {} / {}",
            text(&d.stdout),
            survivor.stderr.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let published = std::fs::read_dir(&out_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("manifest.json").is_file())
        .count();
    assert_eq!(published, 21, "the slow trigger published exactly once");
    // Both attempts are on record in the shared store: the killed one never finished.
    let home = airlock::home::Home::open(&survivor.home()).unwrap();
    let runs: Vec<_> = home
        .state()
        .runs(100)
        .unwrap()
        .into_iter()
        .filter(|r| r.workflow_id.as_deref() == Some(slow.as_str()))
        .collect();
    assert_eq!(runs.len(), 2, "two attempts: {runs:?}");
    assert_eq!(
        runs.iter().filter(|r| r.status == "complete").count(),
        1,
        "{runs:?}"
    );
    let history = server().cli(&[
        "workflow",
        "show",
        "--workflow-id",
        &temporal_id,
        "--output",
        "json",
    ]);
    // Temporal records the attempt that completed: the second.
    let history = text(&history.stdout);
    assert!(
        history.contains("EVENT_TYPE_ACTIVITY_TASK_STARTED"),
        "{history}"
    );
    assert!(
        history.contains("\"attempt\": 2"),
        "the activity completed on its second attempt: {history}"
    );
}

/// SIGTERM while a run is going: the worker stops being ready, lets the run finish within its
/// grace period (it publishes), then exits 0; with `--log-format json` every line on its stderr
/// is one JSON object.
#[test]
fn sigterm_lets_the_running_run_finish_then_the_worker_exits() {
    let mut svc = Service::new("drain");
    svc.json_logs = true;
    let slow = svc.store(&format!(
        "[source]\nplugin = \"{}\"\ndatabase = \"{}\"\n\n[source.options]\nmode = \"sleep\"\nsecs = 3\n\n\
         [sink]\nkind = \"local\"\ndir = \"{}\"\n",
        plugin("hostile-suite").display(),
        svc.ws.path().join("shop.db").display(),
        svc.ws.out().display()
    ));
    svc.start_worker();
    let out = svc.cli(&["trigger", "--workflow", &slow, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let deadline = Instant::now() + Duration::from_secs(60);
    while sample(
        &get(&format!("{}/metrics", svc.health)).1,
        "airlock_worker_slots_in_use",
    ) < 1.0
    {
        assert!(Instant::now() < deadline, "the run never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut child = svc.worker.take().unwrap();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = get(&format!("{}/readyz", svc.health));
        if status == 503 {
            assert!(body.contains("shutting down"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still ready after SIGTERM: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the worker did not exit");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "exit {status}: {}",
        svc.stderr.lock().unwrap()
    );
    assert_eq!(
        svc.published_runs().len(),
        1,
        "the running run finished and published"
    );
    std::thread::sleep(Duration::from_millis(200));
    let log = svc.stderr.lock().unwrap().clone();
    assert!(log.contains("stopping"), "{log}");
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
    }
}
