//! Every external secret backend through the real `airlock` binary, against a real PostgreSQL
//! server whose password is a canary held by each backend in turn: OpenBao (a `bao server
//! -dev`), AWS Secrets Manager (moto), a Kubernetes secret mount laid out as the kubelet does,
//! the environment, and Azure Key Vault (the loopback HTTPS server of `airlock_tests::azure`,
//! which implements the documented token and get-secret endpoints; no real Key Vault runs
//! here). For each: `credential add --backend NAME --locator ...`, `credential test GUID` logs
//! in, a workflow run publishes, and after a rotation on the server the failing logins are
//! reported. Everything runs at `AIRLOCK_LOG=trace`, and the canary must then be absent from
//! every artifact — CLI output and errors, logs, audit, the state store, the home, spool,
//! output files and manifests — in raw, base64, hex and URL-encoded form.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Output;

use airlock_tests::azure::AzureKeyVault;
use airlock_tests::moto::Moto;
use airlock_tests::openbao::OpenBao;
use airlock_tests::postgres::PgCluster;
use airlock_tests::{airlock_command, all_files, plugin, Workspace};

/// The secret every backend holds: the PostgreSQL password of `app`. Its reserved characters
/// make the URL-encoded and raw forms differ.
const CANARY: &str = "Canary-sweep/7fQ9+x@z%21 k";

const AZ_TENANT: &str = "2b6c1f0e-1d2c-4b3a-9f8e-00000000c0de";
const AZ_CLIENT: &str = "airlock-canary-reader";
const AZ_CLIENT_SECRET: &str = "az-client-secret-for-the-sweep";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The forms a leaked secret could take.
fn leak_forms(secret: &str) -> Vec<Vec<u8>> {
    use base64::Engine;
    let b64 = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let mut forms = vec![secret.as_bytes().to_vec()];
    forms.extend(b64.iter().map(|e| e.encode(secret).into_bytes()));
    forms.push(hex::encode(secret).into_bytes());
    forms.push(hex::encode_upper(secret).into_bytes());
    for upper in [true, false] {
        let url: String = secret
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ if upper => format!("%{b:02X}"),
                _ => format!("%{b:02x}"),
            })
            .collect();
        forms.push(url.into_bytes());
    }
    // form encoding: a space is `+`
    forms.push(
        String::from_utf8(forms.last().cloned().unwrap_or_default())
            .unwrap_or_default()
            .replace("%20", "+")
            .into_bytes(),
    );
    forms
}

/// Fails when `haystack` holds any form of the canary (one pass over it for all forms).
fn assert_absent(finder: &aho_corasick::AhoCorasick, haystack: &[u8], what: &str) {
    if let Some(m) = finder.find(haystack) {
        panic!(
            "{what} contains the canary (as `{}`)",
            text(&haystack[m.start()..m.end()])
        );
    }
}

/// Runs the binary at trace level with the environment the backends need, keeping a
/// transcript of everything it printed.
struct Cli<'a> {
    ws: &'a Workspace,
    transcript: Vec<u8>,
}

impl Cli<'_> {
    fn run(&mut self, args: &[&str]) -> Output {
        let started = std::time::Instant::now();
        let out = airlock_command(self.ws)
            .args(args)
            .env("AIRLOCK_LOG", "trace")
            .env("AIRLOCK_SECRET_SHOP_DB", CANARY)
            // moto accepts any key; these are the standard chain's variables
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("airlock runs");
        self.transcript.extend_from_slice(&out.stdout);
        self.transcript.extend_from_slice(&out.stderr);
        eprintln!("airlock {} ({:.1?})", args.join(" "), started.elapsed());
        out
    }

    fn ok(&mut self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "airlock {} failed: {}",
            args.join(" "),
            text(&out.stderr)
        );
        text(&out.stdout)
    }
}

/// A secret volume as the kubelet writes it: `..<timestamp>/password`, `..data` pointing at
/// it, and `password` -> `..data/password`.
fn kubelet_mount(dir: &Path, value: &str) {
    let ts = "..2026_01_01_00_00_00.1";
    std::fs::create_dir_all(dir.join(ts)).unwrap();
    std::fs::write(dir.join(ts).join("password"), value).unwrap();
    symlink(ts, dir.join("..data")).unwrap();
    symlink("..data/password", dir.join("password")).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn every_backend_logs_in_through_the_binary_and_leaves_no_trace_of_the_secret() {
    let pg = PgCluster::start();
    pg.create_database("shop");
    pg.psql(
        "shop",
        "CREATE TABLE orders (id int PRIMARY KEY, note text); COMMENT ON TABLE orders IS 'all orders'",
    );
    pg.create_user("app", CANARY);
    let dest = format!("127.0.0.1:{}", pg.port());
    let ws = Workspace::new();
    let home = ws.path().join("airlock-home");
    std::fs::create_dir_all(&home).unwrap();

    // The canary goes into each backend the way an operator's tooling would put it there.
    let bao = OpenBao::start();
    bao.put("apps/shop", &[("username", "app"), ("password", CANARY)]);
    let bao_token = bao.write_file("token", bao.root_token());
    let moto = Moto::start();
    moto.create_secret(
        "prod/shop",
        &serde_json::json!({"username": "app", "password": CANARY}).to_string(),
    )
    .await;
    let k8s = ws.path().join("k8s-mount");
    kubelet_mount(&k8s, &format!("{CANARY}\n"));
    let kv = AzureKeyVault::start(AZ_TENANT, AZ_CLIENT, AZ_CLIENT_SECRET);
    kv.set_secret("shop-password", CANARY);
    let az_secret = ws.path().join("azure-client-secret");
    std::fs::write(&az_secret, AZ_CLIENT_SECRET).unwrap();

    std::fs::write(
        home.join("backends.toml"),
        format!(
            "[openbao]\naddress = \"{}\"\nretries = 1\n[openbao.auth]\nmethod = \"token\"\ntoken_file = \"{}\"\n\n\
             [aws]\nregion = \"us-east-1\"\nendpoint = \"{}\"\nretries = 1\n\n\
             [kubernetes]\ndir = \"{}\"\n\n\
             [env]\nprefix = \"AIRLOCK_SECRET_SHOP_\"\n\n\
             [azure]\nvault_url = \"{url}\"\nauthority = \"{url}\"\ntenant_id = \"{AZ_TENANT}\"\nclient_id = \"{AZ_CLIENT}\"\nclient_secret_file = \"{}\"\nca_file = \"{}\"\nretries = 1\n",
            bao.address(),
            bao_token.display(),
            moto.endpoint(),
            k8s.display(),
            az_secret.display(),
            kv.ca_file().display(),
            url = kv.url(),
        ),
    )
    .unwrap();

    let backends = [
        ("openbao", "apps/shop#password"),
        ("aws", "prod/shop#password"),
        ("kubernetes", "password"),
        ("env", "AIRLOCK_SECRET_SHOP_DB"),
        ("azure", "shop-password"),
    ];
    let mut cli = Cli {
        ws: &ws,
        transcript: Vec::new(),
    };
    let mut guids = Vec::new();
    for (backend, locator) in backends {
        let guid = cli
            .ok(&[
                "credential",
                "add",
                "--backend",
                backend,
                "--locator",
                locator,
                "--user",
                "app",
                "--destination",
                &dest,
                "--engine",
                "postgres",
            ])
            .trim()
            .to_string();
        assert_eq!(guid.len(), 36, "{backend}: a GUID, got {guid}");
        let shown = cli.ok(&["credential", "show", &guid]);
        assert!(
            shown.contains(backend) && shown.contains(locator),
            "{shown}"
        );

        let out = cli.ok(&[
            "credential",
            "test",
            &guid,
            "--tls-mode",
            "disable",
            "--allow-cleartext-password",
        ]);
        assert!(out.contains("logged in"), "{backend}: {out}");

        let config = ws.path().join(format!("{backend}.toml"));
        std::fs::write(
            &config,
            format!(
                "name = \"canary-{backend}\"\n\n[source]\nplugin = \"{}\"\nendpoint = \"{dest}\"\ndatabase = \"shop\"\ncredential = \"{guid}\"\ntls = {{ mode = \"disable\", allow_cleartext_password = true }}\n\n[network]\nallow = [\"{dest}\"]\n\n[sink]\nkind = \"local\"\ndir = \"out\"\n",
                plugin("postgres").display()
            ),
        )
        .unwrap();
        let out = cli.ok(&["run", "--config", config.to_str().unwrap(), "--json"]);
        let summary: serde_json::Value = serde_json::from_str(&out).expect("JSON summary");
        assert_eq!(summary["status"], "complete", "{backend}: {summary}");
        assert!(
            summary["counts"]["table"]["kept"].as_u64().unwrap_or(0) >= 1,
            "{backend}: {summary}"
        );
        let audit = cli.ok(&["audit", "--credential", &guid, "--json"]);
        assert!(
            audit.contains("\"action\":\"resolve\"") && audit.contains("\"outcome\":\"ok\""),
            "{backend}: the resolution is audited: {audit}"
        );
        guids.push((backend, guid));
    }
    assert!(kv.token_requests() >= 1 && kv.secret_requests() >= 2);

    // The password is rotated on the server only: every backend still resolves the old value,
    // the login is refused (after one re-resolution), and the error names the GUID.
    pg.psql(
        "postgres",
        "ALTER ROLE app PASSWORD 'rotated-elsewhere-9d2'",
    );
    for (backend, guid) in &guids {
        let out = cli.run(&[
            "credential",
            "test",
            guid,
            "--tls-mode",
            "disable",
            "--allow-cleartext-password",
        ]);
        assert_eq!(out.status.code(), Some(1), "{backend}");
        let err = text(&out.stderr);
        assert!(err.contains("authentication failed"), "{backend}: {err}");
    }
    // A locator that resolves nowhere: a clear error naming the backend and the GUID.
    let missing = cli
        .ok(&[
            "credential",
            "add",
            "--backend",
            "azure",
            "--locator",
            "no-such-secret",
            "--user",
            "app",
            "--destination",
            &dest,
            "--engine",
            "postgres",
        ])
        .trim()
        .to_string();
    let out = cli.run(&[
        "credential",
        "test",
        &missing,
        "--tls-mode",
        "disable",
        "--allow-cleartext-password",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&missing) && err.contains("azure") && err.contains("no-such-secret"),
        "{err}"
    );
    cli.ok(&["credential", "list", "--json"]);
    cli.ok(&["audit", "--json"]);

    // The sweep: the transcript (stdout, stderr, trace logs, errors, audit listings) and
    // every file airlock wrote (home with state store and vault, spool, output, manifests).
    let finder = aho_corasick::AhoCorasick::new(leak_forms(CANARY)).unwrap();
    // The detector itself works: it finds the mounted secret and an encoded copy.
    assert!(finder
        .find(&std::fs::read(k8s.join("password")).unwrap())
        .is_some());
    assert!(finder
        .find(format!("x={}&", hex::encode(CANARY)).as_bytes())
        .is_some());
    let transcript = text(&cli.transcript);
    assert!(
        transcript.contains("TRACE") || transcript.contains("trace"),
        "the sweep must see trace-level logs"
    );
    eprintln!("transcript: {} bytes", cli.transcript.len());
    assert_absent(
        &finder,
        &cli.transcript,
        "the CLI transcript at trace level",
    );
    let files = all_files(ws.path());
    assert!(
        files.iter().any(|f| f.ends_with("manifest.json")),
        "the runs published: {files:?}"
    );
    let mut swept = 0;
    for file in files {
        if file.starts_with(&k8s) {
            continue; // the mounted secret itself
        }
        assert_absent(
            &finder,
            &std::fs::read(&file).unwrap(),
            &file.display().to_string(),
        );
        swept += 1;
    }
    assert!(swept >= 5, "swept {swept} files");
}
