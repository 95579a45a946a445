//! The outbound secret scan against the real PostgreSQL plugin: a plugin cannot learn a secret,
//! so the source itself holds one — table comments carrying the login password raw, base64,
//! hex, URL-encoded and JSON-escaped. Each form must quarantine the asset and fail the run,
//! publish nothing, and leave an audit entry that names the asset but not the secret.

use airlock_tests::postgres::{quote_literal, PgCluster};
use airlock_tests::{plugin, run_in, runtime, verify_run_dir, Home, Workspace};
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
async fn a_resolved_secret_in_any_form_is_quarantined_and_fails_the_run() {
    let pg = PgCluster::start();
    pg.create_database("vault_db");
    let mut sql = String::from(
        "CREATE TABLE t_clean (id int); COMMENT ON TABLE t_clean IS 'nothing to see';",
    );
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
    let config = |include: &str| {
        ws.config(&format!(
            "[source]\nplugin = \"{}\"\nendpoint = \"{}\"\ndatabase = \"vault_db\"\ncredential = \"{guid}\"\n\
             tls = {{ mode = \"disable\", allow_cleartext_password = true }}\n\n\
             [sink]\nkind = \"local\"\ndir = \"out\"\n\n[filters]\ninclude = [\"{include}\"]\nkinds = [\"table\"]\n",
            plugin("postgres").display(),
            pg.endpoint(),
        ))
    };
    let rt = runtime();

    // The scan does not fire on clean output.
    let report = run_in(&rt, &config("vault_db.public.t_clean"), &home)
        .await
        .expect("a clean run succeeds");
    let manifest = verify_run_dir(&report.output_dir);
    assert_eq!(manifest["counts"]["table"]["kept"], 1);
    assert_eq!(manifest["counts"]["table"]["quarantined"], 0);
    let clean_run = report.output_dir.file_name().unwrap().to_owned();

    for (table, _, encoding) in forms() {
        let err = run_in(&rt, &config(&format!("vault_db.public.{table}")), &home)
            .await
            .expect_err("the run fails");
        assert_eq!(err.kind(), "secret-detected", "{table}: {err}");
        assert_eq!(err.exit_code(), 1);
        let message = err.to_string();
        assert!(
            message.contains(&format!(
                "table vault_db.public.{table} quarantined: its output holds a secret this run resolved ({encoding} form)"
            )),
            "{table}: {message}"
        );
        assert!(!leaked(&message), "{message}");
        // nothing published: only the clean run's directory exists
        let entries = ws.out_entries();
        assert_eq!(
            entries,
            vec![clean_run.to_string_lossy().into_owned()],
            "{table}"
        );
    }

    // one audit entry per quarantined asset, naming it, never the secret
    let audit = home.inner().state().audit_entries(None, None).unwrap();
    let scans: Vec<_> = audit.iter().filter(|e| e.action == "secret-scan").collect();
    assert_eq!(scans.len(), forms().len(), "{audit:?}");
    for ((table, _, _), entry) in forms().iter().zip(&scans) {
        assert_eq!(entry.outcome, "denied");
        let detail = entry.detail.as_deref().unwrap();
        assert!(
            detail.contains(&format!("vault_db.public.{table}")),
            "{detail}"
        );
        assert!(!leaked(detail), "{detail}");
        assert!(entry.run_id.is_some());
    }
    for e in &audit {
        assert!(!leaked(&format!("{e:?}")), "{e:?}");
    }
    // the runs are recorded as failed
    let runs = home.inner().state().runs(100).unwrap();
    assert_eq!(runs.iter().filter(|r| r.status == "failed").count(), 5);
    assert!(runs
        .iter()
        .all(|r| !leaked(r.error.as_deref().unwrap_or(""))));
}
