//! Credentials end to end through the `airlock` binary, against a real PostgreSQL server: the
//! secret is added from stdin, the workflow names it by GUID, the host logs in, and the secret
//! never appears in any output file, manifest, log (at trace level), error, audit row, the
//! state store or the vault — in raw, base64, hex or URL-encoded form. Rotation is picked up by
//! the next run; revocation and misuse of the handle are denied and audited.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use airlock_tests::postgres::PgCluster;
use airlock_tests::{airlock_bin, all_files, plugin, plugin_dir, workspace_root, Workspace};

struct Cli<'a> {
    home: &'a Path,
    transcript: Vec<u8>,
}

impl Cli<'_> {
    fn run(&mut self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(airlock_bin())
            .arg("--home")
            .arg(self.home)
            .args(args)
            .env("AIRLOCK_PLUGIN_DIR", plugin_dir())
            .env("AIRLOCK_LOG", "trace")
            .env(
                "AIRLOCK_CACHE_DIR",
                workspace_root().join("target/test-component-cache"),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("airlock starts");
        {
            let mut input = child.stdin.take().unwrap();
            if let Some(s) = stdin {
                input.write_all(s.as_bytes()).unwrap();
            }
        }
        let out = child.wait_with_output().unwrap();
        self.transcript.extend_from_slice(&out.stdout);
        self.transcript.extend_from_slice(&out.stderr);
        out
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The forms a secret could leak in.
fn encodings(secret: &str) -> Vec<Vec<u8>> {
    use base64::Engine;
    let mut forms = vec![secret.as_bytes().to_vec()];
    forms.push(
        base64::engine::general_purpose::STANDARD
            .encode(secret)
            .into_bytes(),
    );
    forms.push(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(secret)
            .into_bytes(),
    );
    forms.push(hex::encode(secret).into_bytes());
    forms.push(hex::encode_upper(secret).into_bytes());
    let url: String = secret
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    forms.push(url.into_bytes());
    forms
}

fn assert_absent(haystack: &[u8], secret: &str, what: &str) {
    for form in encodings(secret) {
        assert!(
            !haystack.windows(form.len()).any(|w| w == form.as_slice()),
            "{what} contains the secret (form {})",
            text(&form)
        );
    }
}

fn config(ws: &Workspace, plugin: &Path, port: u16, guid: &str, extra: &str) -> PathBuf {
    let path = ws.path().join("pg.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"pg-canary\"\n\n[source]\nplugin = \"{}\"\nendpoint = \"127.0.0.1:{port}\"\ndatabase = \"shop\"\ncredential = \"{guid}\"\ntls = {{ mode = \"disable\", allow_cleartext_password = true }}\n{extra}\n[sink]\nkind = \"local\"\ndir = \"out\"\n",
            plugin.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn secrets_stay_in_the_vault_through_add_run_rotate_and_revoke() {
    let pg = PgCluster::start();
    let ws = Workspace::new();
    let home = ws.path().join("home");
    let first = "Canary-first-7f3a9c!pw";
    let second = "Canary-second-b81d2e@pw";
    pg.psql("postgres", "CREATE DATABASE shop");
    pg.psql("shop", "CREATE TABLE orders (id int PRIMARY KEY, note text); COMMENT ON TABLE orders IS 'all orders'");
    pg.create_user("app", first);
    let dest = format!("127.0.0.1:{}", pg.port());
    let mut cli = Cli {
        home: &home,
        transcript: Vec::new(),
    };

    // add: the secret comes from stdin, the GUID is printed
    let out = cli.run(
        &[
            "credential",
            "add",
            "--user",
            "app",
            "--destination",
            &dest,
            "--engine",
            "postgres",
        ],
        Some(&format!("{first}\n")),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let guid = text(&out.stdout).trim().to_string();
    assert_eq!(guid.len(), 36, "a GUID: {guid}");

    // test: logs in and says so
    let out = cli.run(
        &[
            "credential",
            "test",
            &guid,
            "--tls-mode",
            "disable",
            "--allow-cleartext-password",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("logged in"));

    // workflow create + run by id
    let cfg = config(&ws, &plugin("postgres"), pg.port(), &guid, "");
    let out = cli.run(
        &["workflow", "create", "--config", cfg.to_str().unwrap()],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let workflow = text(&out.stdout).trim().to_string();
    let out = cli.run(&["workflow", "show", &workflow], None);
    assert!(text(&out.stdout).contains(&guid));
    let out = cli.run(&["run", "--workflow", &workflow, "--json"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["status"], "complete");
    assert!(summary["counts"]["table"]["kept"].as_u64().unwrap() >= 1);
    let run_id = summary["run_id"].as_str().unwrap().to_string();

    // the run's resolution and login are audited under the GUID
    let out = cli.run(&["audit", "--run", &run_id, "--json"], None);
    let entries: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seen: Vec<(String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().into(),
                e["outcome"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(seen.contains(&("resolve".into(), "ok".into())), "{seen:?}");
    assert!(seen.contains(&("login".into(), "ok".into())), "{seen:?}");
    assert!(entries.iter().all(|e| e["credential"] == guid.as_str()));
    assert!(entries
        .iter()
        .all(|e| e["workflow_id"] == workflow.as_str()));
    assert!(entries
        .iter()
        .all(|e| e["plugin_sha256"].as_str().is_some_and(|s| s.len() == 64)));

    // rotate: the server's password changes, the old one stops working, the next run uses
    // the new one
    pg.psql("postgres", &format!("ALTER USER app PASSWORD '{second}'"));
    let out = cli.run(&["run", "--workflow", &workflow], None);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the old password no longer works"
    );
    let err = text(&out.stderr);
    assert!(err.contains("authentication failed"), "{err}");
    let out = cli.run(&["credential", "rotate", &guid], Some(second));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cli.run(&["run", "--workflow", &workflow], None);
    assert!(
        out.status.success(),
        "after rotation: {}",
        text(&out.stderr)
    );

    // a plugin misusing the handle is denied, and each denial is audited
    let exfil = config(
        &ws,
        &plugin("hostile-exfil"),
        pg.port(),
        &guid,
        "[source.options]\nattacker = \"127.0.0.2:5432\"\n",
    );
    let out = cli.run(
        &["run", "--config", exfil.to_str().unwrap(), "--json"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let run_dir = PathBuf::from(summary["output_dir"].as_str().unwrap());
    let line = std::fs::read_to_string(run_dir.join("database.jsonl")).unwrap();
    let asset: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    let a = &asset["attributes"]["extra"];
    for key in [
        "other_slot",
        "attacker_endpoint",
        "metadata_endpoint",
        "undeclared_database",
        "no_handle",
    ] {
        assert!(
            a[key].as_str().unwrap().starts_with("Error::Denied("),
            "{key}: {}",
            a[key]
        );
    }
    assert_eq!(a["declared"], "granted");
    assert_eq!(a["slot"], "source");
    let run_id = summary["run_id"].as_str().unwrap();
    let out = cli.run(&["audit", "--run", run_id, "--json"], None);
    let denials = text(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"outcome\":\"denied\""))
        .count();
    assert!(
        denials >= 3,
        "attacker, metadata and undeclared database are audited: {}",
        text(&out.stdout)
    );

    // revoke: the next run fails naming the GUID, and nothing is published
    let out = cli.run(&["credential", "revoke", &guid], None);
    assert!(out.status.success());
    let runs = || {
        std::fs::read_dir(ws.path().join("out"))
            .map(|d| d.flatten().filter(|e| e.file_name() != "failed").count())
            .unwrap_or(0)
    };
    let before = runs();
    let out = cli.run(&["run", "--workflow", &workflow], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains(&guid) && err.contains("revoked"), "{err}");
    assert_eq!(runs(), before);

    // no secret anywhere: output, manifests, state store, vault, logs, errors, audit
    for file in all_files(ws.path()) {
        let bytes = std::fs::read(&file).unwrap();
        assert_absent(&bytes, first, &file.display().to_string());
        assert_absent(&bytes, second, &file.display().to_string());
    }
    assert_absent(&cli.transcript, first, "CLI output at trace level");
    assert_absent(&cli.transcript, second, "CLI output at trace level");
    assert!(
        text(&cli.transcript).contains("TRACE")
            || text(&cli.transcript).contains("DEBUG")
            || !cli.transcript.is_empty()
    );
}

#[test]
fn a_credential_is_only_used_for_its_bound_destination() {
    let pg = PgCluster::start();
    let ws = Workspace::new();
    let home = ws.path().join("home");
    pg.psql("postgres", "CREATE DATABASE shop");
    pg.create_user("app", "Canary-bound-31c9");
    let mut cli = Cli {
        home: &home,
        transcript: Vec::new(),
    };
    // bound to another port: the workflow's endpoint is not among its destinations
    let out = cli.run(
        &[
            "credential",
            "add",
            "--user",
            "app",
            "--destination",
            "127.0.0.1:1",
        ],
        Some("Canary-bound-31c9"),
    );
    let guid = text(&out.stdout).trim().to_string();
    let cfg = config(&ws, &plugin("postgres"), pg.port(), &guid, "");
    let out = cli.run(&["run", "--config", cfg.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("not bound to"), "{err}");
    let out = cli.run(&["audit", "--credential", &guid, "--json"], None);
    assert!(
        text(&out.stdout).contains("\"outcome\":\"denied\""),
        "{}",
        text(&out.stdout)
    );
    assert!(
        std::fs::read_dir(ws.path().join("out"))
            .map(|d| d.flatten().filter(|e| e.file_name() != "failed").count())
            .unwrap_or(0)
            == 0,
        "nothing published (a failed run's log sits in failed/)"
    );
    assert_absent(&cli.transcript, "Canary-bound-31c9", "CLI output");
}

#[test]
fn credential_test_refuses_a_superuser_unless_it_was_registered_as_privileged() {
    let pg = PgCluster::start();
    let ws = Workspace::new();
    let home = ws.path().join("home");
    let password = "Canary-boss-5e21";
    pg.psql(
        "postgres",
        &format!("CREATE ROLE boss LOGIN SUPERUSER PASSWORD '{password}'"),
    );
    let dest = format!("127.0.0.1:{}", pg.port());
    let mut cli = Cli {
        home: &home,
        transcript: Vec::new(),
    };
    let add = |cli: &mut Cli, extra: &[&str]| {
        let mut args = vec![
            "credential",
            "add",
            "--user",
            "boss",
            "--destination",
            &dest,
            "--engine",
            "postgres",
        ];
        args.extend_from_slice(extra);
        let out = cli.run(&args, Some(password));
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim().to_string()
    };
    let test = |cli: &mut Cli, guid: &str| {
        cli.run(
            &[
                "credential",
                "test",
                guid,
                "--tls-mode",
                "disable",
                "--allow-cleartext-password",
            ],
            None,
        )
    };

    // registered without the flag: the login is refused, naming the privilege and the way out
    let plain = add(&mut cli, &[]);
    let out = test(&mut cli, &plain);
    assert!(!out.status.success(), "a superuser login must be refused");
    let err = text(&out.stderr);
    assert!(err.contains("superuser"), "names the privilege: {err}");
    assert!(
        err.contains("CREATE ROLE"),
        "says how to make a minimal role: {err}"
    );
    assert!(err.contains("--privileged"), "names the flag: {err}");
    let out = cli.run(&["audit", "--credential", &plain, "--json"], None);
    assert!(
        text(&out.stdout).contains("\"outcome\":\"privileged-refused\""),
        "{}",
        text(&out.stdout)
    );

    // registered as privileged on purpose: it logs in, warned about and audited as such
    let flagged = add(&mut cli, &["--privileged"]);
    let out = test(&mut cli, &flagged);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("registered as privileged"),
        "a warning: {}",
        text(&out.stderr)
    );
    let out = cli.run(&["audit", "--credential", &flagged, "--json"], None);
    assert!(
        text(&out.stdout).contains("\"outcome\":\"ok-privileged\""),
        "{}",
        text(&out.stdout)
    );
    let out = cli.run(&["credential", "show", &flagged], None);
    assert!(text(&out.stdout).contains("\"privileged\": true"));

    assert_absent(&cli.transcript, password, "the CLI transcript");
}
