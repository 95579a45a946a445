//! A credential kept in OpenBao, end to end through a real PostgreSQL server and the real
//! postgres plugin: the run logs in with the secret resolved just in time; a rotation in
//! OpenBao (and on the server) is picked up by the next run; a rotation that lands between
//! resolution and login is recovered by the host's one re-resolution; a secret that is gone
//! fails the run, publishes nothing, names the GUID and the backend, and is audited.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use airlock::capabilities::credentials::CredentialSlots;
use airlock::capabilities::sql::login::{NetworkDriver, SqlLogin};
use airlock::capabilities::sql::{TlsMode, TlsSettings};
use airlock::home::NewCredential;
use airlock::secrets::{SecretStore, SecretStoreError, SecretStores, SecretString};
use airlock::state::RunAudit;
use airlock_tests::openbao::OpenBao;
use airlock_tests::postgres::{quote_literal, PgCluster};
use airlock_tests::{all_files, plugin, run_in, runtime, Home, Workspace};

const FIRST: &str = "Canary-e2e-bao-1!x";
const SECOND: &str = "Canary-e2e-bao-2@y";
const THIRD: &str = "Canary-e2e-bao-3#z";

struct Setup {
    pg: PgCluster,
    bao: OpenBao,
    ws: Workspace,
    home: Home,
    guid: String,
}

fn setup() -> Setup {
    let pg = PgCluster::start();
    pg.create_database("shop");
    pg.psql(
        "shop",
        "CREATE TABLE orders (id int PRIMARY KEY, note text)",
    );
    pg.create_user("app", FIRST);
    let bao = OpenBao::start();
    bao.put("apps/shop", &[("username", "app"), ("password", FIRST)]);
    let token = bao.write_file("token", bao.root_token());
    let ws = Workspace::new();
    let home_dir = ws.path().join("airlock-home");
    std::fs::create_dir_all(&home_dir).unwrap();
    std::fs::write(
        home_dir.join("backends.toml"),
        format!(
            "[openbao]\naddress = \"{}\"\nretries = 1\ntimeout_s = 3\n[openbao.auth]\nmethod = \"token\"\ntoken_file = \"{}\"\n",
            bao.address(),
            token.display()
        ),
    )
    .unwrap();
    let home = Home::new(ws.path());
    let guid = home
        .inner()
        .add_credential_at(
            NewCredential {
                kind: "password".into(),
                username: Some("app".into()),
                engine: Some("postgres".into()),
                destinations: vec![pg.endpoint()],
                description: None,
                privileged: false,
            },
            "openbao",
            "apps/shop#password",
        )
        .expect("credential registered");
    Setup {
        pg,
        bao,
        ws,
        home,
        guid,
    }
}

fn rotate(s: &Setup, to: &str) {
    s.pg.psql(
        "postgres",
        &format!("ALTER ROLE app PASSWORD {}", quote_literal(to)),
    );
    s.bao
        .put("apps/shop", &[("username", "app"), ("password", to)]);
}

fn config(s: &Setup) -> airlock::config::LoadedConfig {
    s.ws.config(&format!(
        "[source]\nplugin = \"{}\"\nendpoint = \"{}\"\ndatabase = \"shop\"\ncredential = \"{}\"\ntls = {{ mode = \"disable\", allow_cleartext_password = true }}\n\n[sink]\nkind = \"local\"\ndir = \"out\"\n",
        plugin("postgres").display(),
        s.pg.endpoint(),
        s.guid
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn openbao_credential_logs_in_and_rotation_is_picked_up_by_the_next_run() {
    let s = setup();
    let rt = runtime();
    let cfg = config(&s);
    let report = run_in(&rt, &cfg, &s.home).await.expect("first run");
    let tables = airlock_tests::read_jsonl(&report.output_dir, "table");
    assert!(
        tables
            .iter()
            .any(|t| t["qualified_name"] == "shop.public.orders"),
        "{tables:?}"
    );

    rotate(&s, SECOND);
    let report = run_in(&rt, &cfg, &s.home)
        .await
        .expect("run after rotation");
    assert!(report.output_dir.is_dir());
    assert_eq!(s.ws.out_entries().len(), 2);

    // the secret disappears from OpenBao: the run fails naming GUID and backend, publishes
    // nothing, and the failed resolution is audited
    s.bao
        .ok(&["kv", "delete", "-mount=secret", "apps/shop"], None);
    let err = run_in(&rt, &cfg, &s.home)
        .await
        .expect_err("the run fails")
        .to_string();
    assert!(
        err.contains(&s.guid) && err.contains("openbao") && err.contains("deleted"),
        "{err}"
    );
    assert_eq!(s.ws.out_entries().len(), 2, "nothing new was published");
    let audit = s
        .home
        .inner()
        .state()
        .audit_entries(None, Some(&s.guid))
        .unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.action == "resolve" && a.outcome == "failed"),
        "{audit:?}"
    );

    // a sealed vault: "unavailable", bounded, nothing published
    s.bao.put("apps/shop", &[("password", SECOND)]);
    s.bao.seal();
    let started = std::time::Instant::now();
    let err = run_in(&rt, &cfg, &s.home)
        .await
        .expect_err("the run fails")
        .to_string();
    assert!(
        err.contains("unavailable") && err.contains(&s.guid),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(s.ws.out_entries().len(), 2, "nothing new was published");

    // no secret in any file of the workspace (output, manifests, state store) or the audit
    for secret in [FIRST, SECOND] {
        for entry in &audit {
            assert!(!format!("{entry:?}").contains(secret));
        }
        assert!(!err.contains(secret));
        for file in all_files(s.ws.path()) {
            let bytes = std::fs::read(&file).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds a secret",
                file.display()
            );
        }
    }
}

/// Wraps the real OpenBao backend: on the first resolution it reads the current secret and
/// then the operator rotates it (in OpenBao and on the server) before the host logs in — the
/// race the host's re-resolve-once retry is for.
struct RotatesAfterFirstRead {
    inner: Arc<dyn SecretStore>,
    reads: AtomicUsize,
    rotate: Box<dyn Fn() + Send + Sync>,
}

#[async_trait::async_trait]
impl SecretStore for RotatesAfterFirstRead {
    fn backend(&self) -> &'static str {
        "openbao"
    }
    async fn resolve(&self, locator: &str) -> Result<SecretString, SecretStoreError> {
        let secret = self.inner.resolve(locator).await;
        if self.reads.fetch_add(1, Ordering::SeqCst) == 0 {
            (self.rotate)();
        }
        secret
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_between_resolution_and_login_is_recovered_by_one_re_resolution() {
    let s = setup();
    let pg_dir = s.pg.dir().to_path_buf();
    let port = s.pg.port();
    let bao_addr = s.bao.address();
    let root = s.bao.root_token().to_string();
    let inner = s.home.inner().stores().get("openbao").unwrap();
    let store = Arc::new(RotatesAfterFirstRead {
        inner,
        reads: AtomicUsize::new(0),
        rotate: Box::new(move || {
            // the same rotation as `rotate`, from inside the store (no borrow of Setup)
            let pg_bin = std::process::Command::new("sh")
                .arg("-c")
                .arg("ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1")
                .output()
                .unwrap();
            let bin = String::from_utf8_lossy(&pg_bin.stdout).trim().to_string();
            let bin = std::env::var("AIRLOCK_PG_BIN").unwrap_or(bin);
            let out = std::process::Command::new(format!("{bin}/psql"))
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
                .arg(&pg_dir)
                .args([
                    "-p",
                    &port.to_string(),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-c",
                ])
                .arg(format!("ALTER ROLE app PASSWORD {}", quote_literal(THIRD)))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let mut child = std::process::Command::new("bao")
                .args(["kv", "put", "-mount=secret", "apps/shop", "-"])
                .env("BAO_ADDR", &bao_addr)
                .env("BAO_TOKEN", &root)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(format!("{{\"password\":\"{THIRD}\"}}").as_bytes())
                .unwrap();
            assert!(child.wait().unwrap().success());
        }),
    });
    let mut stores = SecretStores::default();
    stores.register(store.clone());
    let record = s.home.inner().state().credential(&s.guid).unwrap();
    let mut slots = CredentialSlots::default();
    slots.bind("source", record).unwrap();
    let binding = slots.binding("source").unwrap().clone();
    let state = s.home.inner().state().clone();
    let login = SqlLogin {
        endpoint: Some(s.pg.endpoint()),
        databases: vec!["shop".into()],
        tls: TlsSettings {
            mode: TlsMode::Disable,
            ca_file: None,
            allow_cleartext_password: true,
        },
        policy: std::sync::Arc::new(
            airlock::capabilities::http::policy::NetworkPolicy::operator_destination(
                "127.0.0.1",
                s.pg.port(),
            ),
        ),
        connect_timeout: Duration::from_secs(10),
        stores,
        state: Some(state.clone()),
        audit: RunAudit::new(Some(state.clone()), "retry-test", None, None),
        scanner: None,
    };
    login
        .open(
            &binding,
            NetworkDriver::Postgres,
            &s.pg.endpoint(),
            Some("shop"),
        )
        .await
        .map(|_| ())
        .expect("the second resolution logs in");
    assert_eq!(
        store.reads.load(Ordering::SeqCst),
        2,
        "resolved exactly twice"
    );
    let audit = state.audit_entries(Some("retry-test"), None).unwrap();
    let seen: Vec<(&str, &str)> = audit
        .iter()
        .map(|a| (a.action.as_str(), a.outcome.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("resolve", "ok"),
            ("login", "failed"),
            ("resolve", "ok"),
            ("login", "ok")
        ]
    );
    assert!(audit[1]
        .detail
        .as_deref()
        .unwrap_or("")
        .contains("authentication failed"));

    // a wrong password that no re-resolution fixes: exactly one retry, then the error
    s.pg.psql(
        "postgres",
        "ALTER ROLE app PASSWORD 'something-else-entirely'",
    );
    let err = login
        .open(
            &binding,
            NetworkDriver::Postgres,
            &s.pg.endpoint(),
            Some("shop"),
        )
        .await
        .err()
        .expect("denied");
    assert!(err.to_string().contains("authentication failed"), "{err}");
    assert_eq!(
        store.reads.load(Ordering::SeqCst),
        4,
        "one retry, not a loop"
    );
}
