//! The plugin supply chain through the `airlock` binary: install shows what a plugin asks for
//! and needs approval; the digest and capabilities are recorded and audited; runs use the
//! component the install compiled (in a limited child process) and refuse — before compiling
//! — a plugin whose bytes or requests changed; ed25519 signatures are verified against the
//! home's trusted keys.

mod hostile_report;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use airlock_tests::{airlock_bin, plugin, with_section, Workspace};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// One installation: a home, a plugin directory and a component cache, all private.
struct Env {
    ws: Workspace,
}

impl Env {
    fn new() -> Self {
        let env = Env {
            ws: Workspace::new(),
        };
        let conn = rusqlite::Connection::open(env.ws.path().join("shop.db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL);
             CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);",
        )
        .unwrap();
        env
    }

    fn home(&self) -> PathBuf {
        self.ws.path().join("home")
    }

    fn plugins(&self) -> PathBuf {
        self.ws.path().join("plugins")
    }

    fn cache(&self) -> PathBuf {
        self.ws.path().join("cache")
    }

    /// Runs `airlock --home HOME ARGS` with stdin from /dev/null (not a terminal).
    fn cli(&self, args: &[&str]) -> Output {
        let mut child = Command::new(airlock_bin())
            .arg("--home")
            .arg(self.home())
            .args(args)
            .env("AIRLOCK_PLUGIN_DIR", self.plugins())
            .env("AIRLOCK_CACHE_DIR", self.cache())
            .env("AIRLOCK_LOG", "airlock=debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("airlock starts");
        // Loose "never hangs" bound: everything here takes seconds.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("airlock {args:?} hung");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    }

    /// A file in the workspace holding `bytes`.
    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.ws.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn install(&self, file: &Path, extra: &[&str]) -> Output {
        let mut args = vec!["plugin", "install", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.cli(&args)
    }

    /// A config running the plugin `spec` on the shop database, optionally pinned.
    fn config(&self, spec: &str, pin: Option<&str>) -> String {
        let pin = pin
            .map(|p| format!("plugin_sha256 = \"{p}\"\n"))
            .unwrap_or_default();
        let path = self.ws.path().join("airlock.toml");
        std::fs::write(
            &path,
            format!(
                "[source]\nplugin = \"{spec}\"\n{pin}database = \"shop.db\"\n\n[source.options]\nname = \"shop\"\n\n[sink]\nkind = \"local\"\ndir = \"out\"\n"
            ),
        )
        .unwrap();
        path.to_str().unwrap().to_string()
    }

    fn run(&self, config: &str) -> Output {
        self.cli(&["run", "--config", config, "--json"])
    }

    fn audit(&self) -> Vec<serde_json::Value> {
        let out = self.cli(&["audit", "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
            .collect()
    }

    fn approvals(&self) -> Vec<serde_json::Value> {
        let out = self.cli(&["plugin", "list", "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    fn cache_entries(&self) -> Vec<String> {
        match std::fs::read_dir(self.cache().join("components")) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".cwasm"))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    fn published_runs(&self) -> usize {
        self.ws.out_entries().len()
    }
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn refused_run(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(2),
        "a refused plugin is exit code 2: {}",
        text(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert_eq!(v["error"]["kind"], "plugin-refused", "{v}");
    v["error"]["message"].as_str().unwrap().to_string()
}

fn denied_verifications(env: &Env, actual: &str) -> Vec<serde_json::Value> {
    env.audit()
        .into_iter()
        .filter(|e| {
            e["action"] == "plugin-verify"
                && e["outcome"] == "denied"
                && e["plugin_sha256"] == actual
        })
        .collect()
}

#[test]
fn install_needs_approval_then_runs_use_the_component_compiled_at_install() {
    let env = Env::new();
    let wasm = std::fs::read(plugin("sqlite")).unwrap();
    let digest = sha256(&wasm);
    let file = env.file("shop-source.wasm", &wasm);

    // Not a terminal and no --approve: refused, saying how to approve; nothing installed.
    let out = env.install(&file, &["--name", "shop"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains(&digest), "the digest is shown: {stdout}");
    assert!(
        stdout.contains("airlock:connector/sql@0.2.0"),
        "the capabilities are shown: {stdout}"
    );
    assert!(
        !stdout.contains("airlock:connector/http"),
        "the sqlite plugin does not import http: {stdout}"
    );
    assert!(
        text(&out.stderr).contains("--approve"),
        "{}",
        text(&out.stderr)
    );
    assert!(!env.plugins().join("shop.wasm").exists());
    assert!(env.approvals().is_empty());
    assert!(env.cache_entries().is_empty(), "nothing was compiled");
    assert!(env
        .audit()
        .iter()
        .any(|e| e["action"] == "plugin-install" && e["outcome"] == "denied"));

    // Approved: compiled in the child into the cache, copied, recorded, audited.
    let out = env.install(&file, &["--name", "shop", "--approve"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("plugin_sha256 = \"{digest}\"")));
    assert_eq!(
        std::fs::read(env.plugins().join("shop.wasm")).unwrap(),
        wasm,
        "the installed file is the approved bytes"
    );
    let cached = env.cache_entries();
    assert_eq!(
        cached.len(),
        1,
        "install compiled into the cache: {cached:?}"
    );
    let approvals = env.approvals();
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0]["name"], "shop");
    assert_eq!(approvals[0]["sha256"], digest.as_str());
    let imports = approvals[0]["capabilities"]["imports"].as_array().unwrap();
    assert!(imports.iter().any(|i| i == "airlock:connector/sql@0.2.0"));
    // export_connector! stamps the SDK-built plugin with its airlock-capabilities section.
    assert_eq!(
        approvals[0]["capabilities"]["declared"]["wit"], "0.2.0",
        "{}",
        approvals[0]
    );
    assert!(env.audit().iter().any(|e| e["action"] == "plugin-install"
        && e["outcome"] == "ok"
        && e["plugin_sha256"] == digest.as_str()));

    // A run by name, pinned: verified, loaded from the cache (no compilation), published.
    let config = env.config("shop", Some(&digest));
    let out = env.run(&config);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["status"], "complete");
    assert_eq!(summary["plugin"]["sha256"], digest.as_str());
    assert_eq!(summary["counts"]["table"]["kept"], 2);
    let stderr = text(&out.stderr);
    let loaded = stderr
        .lines()
        .find(|l| l.contains("loaded") && l.contains("from_cache"))
        .unwrap_or_else(|| panic!("the run logs how it loaded the plugin: {stderr}"));
    assert!(
        loaded.contains("from_cache=true"),
        "the run used the component compiled at install: {loaded}"
    );
    assert_eq!(env.cache_entries(), cached, "the run compiled nothing new");
    let run_id = summary["run_id"].as_str().unwrap();
    assert!(env
        .audit()
        .iter()
        .any(|e| e["action"] == "plugin-verify" && e["outcome"] == "ok" && e["run_id"] == run_id));
}

#[test]
fn a_tampered_plugin_is_refused_before_compilation_with_both_digests_and_an_audit_entry() {
    let env = Env::new();
    let wasm = std::fs::read(plugin("sqlite")).unwrap();
    let approved = sha256(&wasm);
    let out = env.install(&env.file("sqlite.wasm", &wasm), &["--approve"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cached = env.cache_entries();

    // One byte changed, in the binary's version field: compiling it would fail with a
    // different error, so the refusal proves the check ran first.
    let mut tampered = wasm.clone();
    tampered[4] ^= 0x01;
    let actual = sha256(&tampered);
    std::fs::write(env.plugins().join("sqlite.wasm"), &tampered).unwrap();
    let message = refused_run(&env.run(&env.config("sqlite", None)));
    assert!(
        message.contains(&approved),
        "expected digest named: {message}"
    );
    assert!(message.contains(&actual), "actual digest named: {message}");
    assert!(
        message.contains("not the version that was approved"),
        "{message}"
    );
    assert!(
        message.contains("airlock plugin install"),
        "says what to do: {message}"
    );
    assert_eq!(denied_verifications(&env, &actual).len(), 1);
    assert_eq!(env.cache_entries(), cached, "nothing was compiled");
    assert_eq!(env.published_runs(), 0, "nothing was published");

    // A byte changed anywhere (here the last one) is just as refused.
    let mut tampered = wasm.clone();
    *tampered.last_mut().unwrap() ^= 0x80;
    let actual = sha256(&tampered);
    std::fs::write(env.plugins().join("sqlite.wasm"), &tampered).unwrap();
    let message = refused_run(&env.run(&env.config("sqlite", None)));
    assert!(
        message.contains(&approved) && message.contains(&actual),
        "{message}"
    );
    assert_eq!(denied_verifications(&env, &actual).len(), 1);

    // The workflow's own pin is checked too, also for a plugin given by path.
    let path_copy = env.file("copy.wasm", &wasm);
    let wrong_pin = "0".repeat(64);
    let config = env.config(path_copy.to_str().unwrap(), Some(&wrong_pin));
    let message = refused_run(&env.run(&config));
    assert!(message.contains(&wrong_pin), "{message}");
    assert!(message.contains(&approved), "{message}");
    assert!(message.contains("source.plugin_sha256"), "{message}");
    assert_eq!(denied_verifications(&env, &approved).len(), 1);

    // The original bytes, pinned correctly, run.
    std::fs::write(env.plugins().join("sqlite.wasm"), &wasm).unwrap();
    let out = env.run(&env.config("sqlite", Some(&approved)));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(env.published_runs(), 1);
    assert_eq!(env.cache_entries(), cached);
}

#[test]
fn capabilities_that_were_not_approved_are_refused() {
    let env = Env::new();
    let sqlite = std::fs::read(plugin("sqlite")).unwrap();
    let out = env.install(
        &env.file("probe.wasm", &sqlite),
        &["--name", "probe", "--approve"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    // A new version that imports http where only sql was approved, dropped into the plugin
    // directory: the run refuses it, naming the interface.
    let http = std::fs::read(plugin("http-probe")).unwrap();
    let actual = sha256(&http);
    std::fs::write(env.plugins().join("probe.wasm"), &http).unwrap();
    let message = refused_run(&env.run(&env.config("probe", None)));
    assert!(
        message.contains("capabilities that were not approved")
            && message.contains("import airlock:connector/http@0.2.0"),
        "{message}"
    );
    let denied = denied_verifications(&env, &actual);
    assert_eq!(denied.len(), 1);
    assert!(denied[0]["detail"]
        .as_str()
        .unwrap()
        .contains("airlock:connector/http@0.2.0"));

    // Installing it over the approved version shows what is new and is refused unapproved.
    let out = env.install(&env.file("http.wasm", &http), &["--name", "probe"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stdout).contains("NEW, not approved before: import airlock:connector/http@0.2.0"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        env.approvals()[0]["sha256"],
        sha256(&sqlite).as_str(),
        "the earlier approval stands"
    );

    // A new version declaring a destination in its `airlock-capabilities` section.
    let declared = with_section(
        &sqlite,
        "airlock-capabilities",
        br#"{"format":1,"destinations":["evil.example:443"]}"#,
    );
    std::fs::write(env.plugins().join("probe.wasm"), &declared).unwrap();
    let message = refused_run(&env.run(&env.config("probe", None)));
    assert!(
        message.contains("destination evil.example:443"),
        "{message}"
    );
    assert_eq!(denied_verifications(&env, &sha256(&declared)).len(), 1);

    // Installed and approved, the declared destination is shown and recorded.
    let out = env.install(
        &env.file("declared.wasm", &declared),
        &["--name", "declared", "--approve"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("destination evil.example:443"));
    let approval = env
        .approvals()
        .into_iter()
        .find(|a| a["name"] == "declared")
        .unwrap();
    assert_eq!(
        approval["capabilities"]["declared"]["destinations"][0],
        "evil.example:443"
    );
}

#[test]
fn signatures_are_verified_against_trusted_keys_when_the_policy_requires_them() {
    let env = Env::new();
    let wasm = std::fs::read(plugin("sqlite")).unwrap();
    let keys = env.ws.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let author = keys.join("author.key");
    let stranger = keys.join("stranger.key");
    let out = env.cli(&["plugin", "keygen", "--out", author.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let author_public = text(&out.stdout).trim().to_string();
    assert!(author_public.starts_with("ed25519:"), "{author_public}");
    let secret = std::fs::read_to_string(&author).unwrap();
    assert!(
        !text(&out.stdout).contains(secret.trim()) && !text(&out.stderr).contains(secret.trim()),
        "keygen never prints the secret key"
    );
    assert!(env
        .cli(&["plugin", "keygen", "--out", stranger.to_str().unwrap()])
        .status
        .success());
    assert!(
        !env.cli(&["plugin", "keygen", "--out", author.to_str().unwrap()])
            .status
            .success(),
        "an existing key is never overwritten"
    );

    // The operator trusts the author's public key and requires signatures.
    let trusted = env.home().join("trusted-keys");
    std::fs::create_dir_all(&trusted).unwrap();
    std::fs::copy(keys.join("author.key.pub"), trusted.join("author.pub")).unwrap();
    std::fs::write(
        env.home().join("plugins.toml"),
        "require_signature = true\n",
    )
    .unwrap();
    let sign = |file: &Path, key: &Path| {
        let out = env.cli(&[
            "plugin",
            "sign",
            file.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    };

    // Signed by the trusted author: installed, the signer recorded.
    let good = env.file("good.wasm", &wasm);
    sign(&good, &author);
    assert!(Path::new(&format!("{}.sig", good.display())).is_file());
    let out = env.install(&good, &["--approve"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("signed by trusted key"));
    let approvals = env.approvals();
    assert_eq!(approvals[0]["signer"], author_public.as_str());

    let refused = |file: &Path, needle: &str| {
        let name = file.file_stem().unwrap().to_str().unwrap().to_string();
        let out = env.install(file, &["--approve"]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(stderr.contains(needle), "expected `{needle}` in: {stderr}");
        assert!(stderr.contains("nothing was installed"), "{stderr}");
        assert!(!env.plugins().join(format!("{name}.wasm")).exists());
        assert!(!env.approvals().iter().any(|a| a["name"] == name.as_str()));
        let digest = sha256(&std::fs::read(file).unwrap());
        assert!(
            env.audit().iter().any(|e| e["action"] == "plugin-install"
                && e["outcome"] == "denied"
                && e["plugin_sha256"] == digest.as_str()),
            "refusal of {name} audited"
        );
    };

    // A bad signature: the signature bytes altered.
    let bad = env.file("bad.wasm", &wasm);
    sign(&bad, &author);
    let sig_path = PathBuf::from(format!("{}.sig", bad.display()));
    let mut sig: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sig_path).unwrap()).unwrap();
    let s = sig["signature"].as_str().unwrap().to_string();
    let flipped = if s.starts_with('A') { "B" } else { "A" };
    sig["signature"] = format!("{flipped}{}", &s[1..]).into();
    std::fs::write(&sig_path, sig.to_string()).unwrap();
    refused(&bad, "bad signature");

    // A valid signature of another file, next to a different plugin.
    let other = env.file(
        "other.wasm",
        &with_section(&wasm, "note", b"a different build"),
    );
    std::fs::copy(
        format!("{}.sig", good.display()),
        format!("{}.sig", other.display()),
    )
    .unwrap();
    refused(&other, "bad signature");

    // Signed by a key the home does not trust.
    let untrusted = env.file("untrusted.wasm", &wasm);
    sign(&untrusted, &stranger);
    refused(&untrusted, "not a trusted key");

    // Unsigned.
    let unsigned = env.file("unsigned.wasm", &wasm);
    refused(&unsigned, "is not signed");
}

#[test]
fn compile_limits_stop_the_child_with_a_clear_error_and_leave_nothing_installed() {
    let env = Env::new();
    let wasm = std::fs::read(plugin("sqlite")).unwrap();
    let file = env.file("slow.wasm", &wasm);

    let out = env.install(&file, &["--approve", "--compile-timeout-s", "0.001"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("did not finish within 0.001 s"), "{stderr}");
    assert!(
        stderr.contains("--compile-timeout-s"),
        "says what to do: {stderr}"
    );

    let out = env.install(&file, &["--approve", "--compile-memory-mb", "16"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("compile memory limit of 16 MiB"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--compile-memory-mb"),
        "says what to do: {stderr}"
    );

    assert!(!env.plugins().join("slow.wasm").exists());
    assert!(env.approvals().is_empty());
    assert!(env.cache_entries().is_empty());
    let failed = env
        .audit()
        .into_iter()
        .filter(|e| e["action"] == "plugin-install" && e["outcome"] == "failed")
        .count();
    assert_eq!(failed, 2, "both failures are audited");

    // The host is fine: the same plugin installs with the default limits.
    let out = env.install(&file, &["--approve"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(env.cache_entries().len(), 1);
}

#[test]
fn a_run_compiles_an_uncached_component_in_the_limited_child_within_its_deadline() {
    let mut case = hostile_report::Case::new(
        "a_compile_time_bomb_run_uncached_stops_at_the_run_deadline",
        file!(),
        "airlock run of a never-installed component that takes tens of seconds to compile \
         (8,000 nested blocks and locals), under limits.deadline_s = 2",
        "compiled in the same limited child as plugin install, killed at the deadline: \
         compile-limit naming limits.deadline_s; nothing cached or published",
    );
    let env = Env::new();
    // A good plugin by path, never installed: compiled in the child, cached, run.
    let wasm = std::fs::read(plugin("sqlite")).unwrap();
    let file = env.file("fresh.wasm", &wasm);
    let out = env.run(&env.config(file.to_str().unwrap(), None));
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("compiling the plugin in a limited child process"),
        "{stderr}"
    );
    assert_eq!(env.cache_entries().len(), 1, "the child cached it");

    // A compile-time bomb under limits.deadline_s = 2: the child is killed at the deadline.
    let bomb = env.file("bomb.wasm", &airlock_tests::slow_to_compile_component(8000));
    let config = env.config(bomb.to_str().unwrap(), None);
    let mut text_cfg = std::fs::read_to_string(&config).unwrap();
    text_cfg.push_str("\n[limits]\ndeadline_s = 2\n");
    std::fs::write(&config, text_cfg).unwrap();
    let started = std::time::Instant::now();
    let out = env.run(&config);
    let elapsed = started.elapsed();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["error"]["kind"], "compile-limit", "{summary}");
    let message = summary["error"]["message"].as_str().unwrap();
    assert!(message.contains("limits.deadline_s"), "{message}");
    assert_eq!(
        env.cache_entries().len(),
        1,
        "nothing of the bomb was cached"
    );
    assert_eq!(env.published_runs(), 1, "only the good run was published");
    case.actual(format!(
        "compile-limit after {:.1} s: {message}",
        elapsed.as_secs_f64()
    ));
    eprintln!("the bomb was stopped after {elapsed:?}");
}

#[test]
fn help_texts_explain_the_supply_chain() {
    let env = Env::new();
    let out = env.cli(&["--help"]);
    let top = text(&out.stdout);
    assert!(top.contains("plugin "), "{top}");
    assert!(
        !top.contains("__compile-plugin"),
        "the child command is hidden"
    );

    let out = env.cli(&["plugin", "--help"]);
    let help = text(&out.stdout);
    for word in ["install", "list", "keygen", "sign"] {
        assert!(help.contains(word), "`{word}` in: {help}");
    }

    let out = env.cli(&["plugin", "install", "--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for needle in [
        "--approve",
        "--name",
        "--signature",
        "--compile-timeout-s",
        "--compile-memory-mb",
        "trusted-keys",
        "require_signature",
        "source.plugin_sha256",
        "child process",
    ] {
        assert!(help.contains(needle), "`{needle}` in: {help}");
    }

    let out = env.cli(&["plugin", "sign", "--help"]);
    let help = text(&out.stdout);
    assert!(
        help.contains("FILE.sig") && help.contains("--key"),
        "{help}"
    );
}

#[test]
fn a_home_that_requires_approval_refuses_plugins_never_approved() {
    let env = Env::new();
    let wasm = std::fs::read(plugin("sqlite")).unwrap();
    let digest = sha256(&wasm);
    let path = env.file("adhoc.wasm", &wasm);
    let config = env.config(path.to_str().unwrap(), None);
    // Without the policy an unapproved ad-hoc plugin runs as before.
    let out = env.run(&config);
    assert!(out.status.success(), "{}", text(&out.stderr));

    std::fs::create_dir_all(env.home()).unwrap();
    std::fs::write(env.home().join("plugins.toml"), "require_approval = true\n").unwrap();
    let message = refused_run(&env.run(&config));
    assert!(
        message.contains("never approved") && message.contains(&digest),
        "{message}"
    );
    assert!(message.contains("airlock plugin install"), "{message}");
    assert_eq!(denied_verifications(&env, &digest).len(), 1);

    // Approved under any name, the same bytes given by path run; a stored workflow too.
    let out = env.install(&path, &["--name", "adhoc", "--approve"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = env.run(&config);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let config = env.config("adhoc", Some(&digest));
    let out = env.cli(&["workflow", "create", "--config", &config]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let workflow = text(&out.stdout).trim().to_string();
    let out = env.cli(&["run", "--workflow", &workflow, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // The stored workflow keeps its pin: a replaced file is refused.
    let other = with_section(&wasm, "note", b"rebuilt");
    std::fs::write(env.plugins().join("adhoc.wasm"), &other).unwrap();
    let out = env.cli(&["run", "--workflow", &workflow, "--json"]);
    let message = refused_run(&out);
    assert!(
        message.contains(&digest) && message.contains(&sha256(&other)),
        "{message}"
    );
    assert!(message.contains("source.plugin_sha256"), "{message}");
}
