//! Secrets a source holds and secrets a plugin was given, end to end.
//!
//! - The inbound filter against the real PostgreSQL plugin: the source holds the login
//!   password in table comments, raw, base64, hex, URL-encoded and JSON-escaped. The plugin
//!   receives the marker instead in every form; the run publishes no form of the password and
//!   audits the reflection (`secret-reflected`) without it.
//! - The outbound scan (the second line) with a plugin that emits what the operator put into
//!   `[source.options]`, which no capability filters: a resolved secret in any form there
//!   quarantines the asset and fails the run, publishes nothing, and leaves an audit entry that
//!   names the asset but not the secret.

use airlock_tests::postgres::{quote_literal, PgCluster};
use airlock_tests::{plugin, read_jsonl, run_in, runtime, verify_run_dir, Home, Workspace};
use base64::Engine;

/// Has `"` and `\` (JSON escapes them), a space, `/` and a non-ASCII letter (URL-encoded).
const PASSWORD: &str = "Sc4n \"me\"/pl\\ease-ü91";

fn forms() -> Vec<(&'static str, String, &'static str)> {
    let url: String = PASSWORD
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let json = serde_json::to_string(PASSWORD).unwrap();
    vec![
        // Raw in the source, the output line JSON-escapes it.
        ("t_raw", format!("password is {PASSWORD}!"), "json-escaped"),
        (
            "t_b64",
            format!(
                "basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("reader:{PASSWORD}"))
            ),
            "base64",
        ),
        ("t_hex", format!("0x{}", hex::encode(PASSWORD)), "hex"),
        (
            "t_url",
            format!("postgres://reader:{url}@db/x"),
            "url-encoded",
        ),
        ("t_json", format!("{{\"password\":{json}}}"), "json-escaped"),
    ]
}

/// Every form the secret could be written in, to prove it appears nowhere.
fn leaked(text: &str) -> bool {
    forms().iter().any(|(_, f, _)| text.contains(f.as_str()))
        || text.contains(PASSWORD)
        || text.contains(&hex::encode(PASSWORD))
        || text.contains(&base64::engine::general_purpose::STANDARD.encode(PASSWORD))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reflected_secret_in_any_form_is_withheld_from_the_plugin() {
    let pg = PgCluster::start();
    pg.create_database("vault_db");
    let mut sql = String::new();
    for (table, comment, _) in forms() {
        sql.push_str(&format!(
            "CREATE TABLE {table} (id int); COMMENT ON TABLE {table} IS {};",
            quote_literal(&comment)
        ));
    }
    pg.psql("vault_db", &sql);
    pg.create_user("reader", PASSWORD);
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let guid = home.add_password("reader", PASSWORD, &[&pg.endpoint()]);
    let cfg = ws.config(&format!(
        "[source]\nplugin = \"{}\"\nendpoint = \"{}\"\ndatabase = \"vault_db\"\ncredential = \"{guid}\"\n\
         tls = {{ mode = \"disable\", allow_cleartext_password = true }}\n\n\
         [sink]\nkind = \"local\"\ndir = \"out\"\n\n[filters]\nkinds = [\"table\"]\n",
        plugin("postgres").display(),
        pg.endpoint(),
    ));
    let report = run_in(&runtime(), &cfg, &home)
        .await
        .expect("the plugin received no secret, so the run completes");
    verify_run_dir(&report.output_dir);
    assert!(
        report.manifest.secrets_withheld >= forms().len() as u64,
        "every comment held the password: {}",
        report.manifest.secrets_withheld
    );
    let tables = read_jsonl(&report.output_dir, "table");
    for (table, _, _) in forms() {
        let t = tables
            .iter()
            .find(|t| t["path"][2] == table)
            .unwrap_or_else(|| panic!("{table} is published"));
        let comment = t["attributes"]["comment"].as_str().unwrap_or_default();
        assert!(
            comment.contains("[airlock:secret-withheld]"),
            "{table}: {comment}"
        );
    }
    for f in airlock_tests::all_files(&ws.out()) {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        assert!(!leaked(&text), "{} holds the password", f.display());
    }
    let audit = home.inner().state().audit_entries(None, None).unwrap();
    let reflected: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "secret-reflected")
        .collect();
    assert_eq!(
        reflected.len(),
        1,
        "audited once per capability and destination"
    );
    assert_eq!(reflected[0].outcome, "withheld");
    for e in &audit {
        assert!(!leaked(&format!("{e:?}")), "{e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolved_secret_the_plugin_was_given_is_quarantined_and_fails_the_run() {
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    rusqlite::Connection::open(ws.path().join("db.sqlite"))
        .unwrap()
        .execute_batch("CREATE TABLE t (x INTEGER);")
        .unwrap();
    // A hash key is resolved at the start of the run, so the scan knows it.
    let guid = home.add_password("hmac", PASSWORD, &["127.0.0.1:1"]);
    let config = |value: &str| {
        ws.config(&format!(
            "[source]\nplugin = \"{}\"\ndatabase = \"db.sqlite\"\n\n[source.options]\n\
             mode = \"emit-option\"\nvalue = {}\n\n[sink]\nkind = \"local\"\ndir = \"out\"\n\n\
             [filters]\nfields = [{{ field = \"default\", action = \"hash\", key_credential = \"{guid}\" }}]\n",
            plugin("hostile-suite").display(),
            serde_json::to_string(value).unwrap(),
        ))
    };
    let rt = runtime();
    let clean = run_in(&rt, &config("nothing to see"), &home)
        .await
        .expect("a clean run succeeds");
    verify_run_dir(&clean.output_dir);
    let clean_run = clean.output_dir.file_name().unwrap().to_owned();
    for (name, value, encoding) in forms() {
        let err = run_in(&rt, &config(&value), &home)
            .await
            .expect_err("the run fails");
        assert_eq!(err.kind(), "secret-detected", "{name}: {err}");
        assert_eq!(err.exit_code(), 1);
        let message = err.to_string();
        assert!(
            message.contains(&format!(
                "database probe quarantined: its output holds a secret this run resolved ({encoding} form)"
            )),
            "{name}: {message}"
        );
        assert!(!leaked(&message), "{message}");
        let logs = ws.failed_logs();
        assert!(!logs.is_empty(), "{name}: the failed run left its log");
        assert!(logs.iter().all(|l| !leaked(l)), "{name}: {logs:?}");
        assert_eq!(
            ws.out_entries(),
            vec![clean_run.to_string_lossy().into_owned()],
            "{name}: nothing published"
        );
    }
    let audit = home.inner().state().audit_entries(None, None).unwrap();
    let scans: Vec<_> = audit.iter().filter(|e| e.action == "secret-scan").collect();
    assert_eq!(scans.len(), forms().len(), "{audit:?}");
    for entry in &scans {
        assert_eq!(entry.outcome, "denied");
        assert!(entry.detail.as_deref().unwrap().contains("probe"));
    }
    for e in &audit {
        assert!(!leaked(&format!("{e:?}")), "{e:?}");
    }
    let runs = home.inner().state().runs(100).unwrap();
    assert_eq!(runs.iter().filter(|r| r.status == "failed").count(), 5);
    assert!(runs
        .iter()
        .all(|r| !leaked(r.error.as_deref().unwrap_or(""))));
}
