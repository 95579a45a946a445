//! Test harness: locates the freshly built plugins, creates throwaway workspaces and runs
//! workflows through the library exactly as the CLI does.

pub mod azure;
pub mod catalogs;
pub mod faultproxy;
pub mod httpserver;
pub mod mariadb;
pub mod moto;
pub mod openbao;
pub mod postgres;
pub mod s3api;
pub mod temporal;
pub mod tenant;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use airlock::config::LoadedConfig;
use airlock::run::{self, PluginDir, RunError, RunReport, TracingObserver};
use airlock::runtime::Runtime;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The directory ./scripts/build-plugins fills.
pub fn plugin_dir() -> PathBuf {
    std::env::var_os("AIRLOCK_TEST_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target").join("plugins"))
}

/// The path of a built plugin; panics with the fix when it is missing.
pub fn plugin(name: &str) -> PathBuf {
    let p = plugin_dir().join(format!("{name}.wasm"));
    assert!(
        p.is_file(),
        "{} is missing: run ./scripts/build-plugins (./scripts/test does) before the tests",
        p.display()
    );
    p
}

/// A runtime with a component cache private to the test binary's target dir.
pub fn runtime() -> Runtime {
    let cache = workspace_root().join("target").join("test-component-cache");
    Runtime::new(Some(cache)).expect("runtime starts")
}

/// A throwaway directory holding a config, its database and its output.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

impl Workspace {
    pub fn new() -> Self {
        Workspace {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `airlock.toml` with `text` and loads it.
    pub fn config(&self, text: &str) -> LoadedConfig {
        let path = self.path().join("airlock.toml");
        std::fs::write(&path, text).expect("write config");
        LoadedConfig::load(&path).expect("config loads")
    }

    /// A config running `plugin` (a path) on `database` with extra TOML appended.
    pub fn config_for(&self, plugin: &Path, database: &str, extra: &str) -> LoadedConfig {
        self.config(&format!(
            "[source]\nplugin = \"{}\"\ndatabase = \"{database}\"\n\n[sink]\nkind = \"local\"\ndir = \"out\"\n\n{extra}",
            plugin.display()
        ))
    }

    /// The output directory of the default config.
    pub fn out(&self) -> PathBuf {
        self.path().join("out")
    }

    /// Entries of the output directory (runs and anything else left behind).
    pub fn out_entries(&self) -> Vec<String> {
        match std::fs::read_dir(self.out()) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                // Failed runs' logs sit beside the runs, in `failed/`: see `failed_logs`.
                .filter(|n| n != "failed")
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The logs failed runs left beside the runs (`out/failed/<run-id>.jsonl`), as text; each
    /// is JSON Lines that starts with `run-started` and ends with `run-failed`.
    pub fn failed_logs(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.out().join("failed")) else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok())
            .map(|e| {
                let text = std::fs::read_to_string(e.path()).expect("failed log readable");
                let events: Vec<serde_json::Value> = text
                    .lines()
                    .map(|l| serde_json::from_str(l).expect("log line is JSON"))
                    .collect();
                assert_eq!(events.first().unwrap()["event"], "run-started", "{text}");
                assert_eq!(events.last().unwrap()["event"], "run-failed", "{text}");
                text
            })
            .collect()
    }
}

/// Runs a loaded config.
pub async fn run(runtime: &Runtime, cfg: &LoadedConfig) -> Result<RunReport, RunError> {
    run::run_workflow(
        runtime,
        cfg,
        &PluginDir::single(plugin_dir()),
        Arc::new(TracingObserver),
    )
    .await
}

/// Reads one JSONL output file as JSON values (empty when the file does not exist).
pub fn read_jsonl(run_dir: &Path, kind: &str) -> Vec<serde_json::Value> {
    let path = run_dir.join(format!("{kind}.jsonl"));
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .lines()
            .map(|l| serde_json::from_str(l).expect("valid JSON line"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Every file a published manifest lists: the asset files, then the run's log (which every
/// complete run publishes: its first event is `run-started`).
pub fn listed_files(manifest: &serde_json::Value) -> Vec<serde_json::Value> {
    let mut files = manifest["files"].as_array().expect("files array").clone();
    let log = &manifest["log"];
    assert_eq!(
        log["path"], "run-log.jsonl",
        "a complete run lists its log: {manifest}"
    );
    assert_eq!(log["kind"], "log");
    files.push(log.clone());
    // Catalog exports (`[sink] format`).
    if let Some(exports) = manifest["exports"].as_array() {
        files.extend(exports.iter().cloned());
    }
    files
}

/// The private-key block of a PEM bundle (a certificate chain followed by its key), as a
/// client-certificate credential's secret holds it.
pub fn key_block(pem: &str) -> &str {
    &pem[pem
        .find("-----BEGIN PRIVATE KEY-----")
        .expect("a key block")..]
}

/// Checks a published run directory: every file's line count and SHA-256 match the manifest,
/// every file is listed, manifest counts equal the lines, and `airlock validate` finds every
/// line within the asset contract the manifest names. Returns the manifest.
pub fn verify_run_dir(run_dir: &Path) -> serde_json::Value {
    use sha2::Digest;
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(run_dir.join("manifest.json")).expect("manifest.json exists"),
    )
    .expect("manifest is JSON");
    assert_eq!(manifest["status"], "complete");
    let files = listed_files(&manifest);
    let mut listed = vec!["manifest.json".to_string()];
    for f in &files {
        let name = f["path"].as_str().expect("path");
        listed.push(name.to_string());
        let bytes = std::fs::read(run_dir.join(name)).expect("listed file exists");
        assert_eq!(
            bytes.len() as u64,
            f["bytes"].as_u64().unwrap(),
            "{name} bytes"
        );
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&bytes)),
            f["sha256"].as_str().unwrap(),
            "{name} sha256"
        );
        if f["kind"] == "datahub" || f["kind"] == "openmetadata" {
            // A catalog export: one JSON document, not lines.
            serde_json::from_slice::<serde_json::Value>(&bytes).expect("an export is JSON");
            continue;
        }
        let lines = bytes.iter().filter(|b| **b == b'\n').count() as u64;
        assert_eq!(lines, f["records"].as_u64().unwrap(), "{name} records");
        let kind = f["kind"].as_str().unwrap();
        if kind == "log" {
            let first = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
            let first: serde_json::Value = serde_json::from_slice(first).expect("log line is JSON");
            assert_eq!(first["event"], "run-started", "{name}");
            continue;
        }
        assert_eq!(
            manifest["counts"][kind]["kept"].as_u64().unwrap(),
            lines,
            "{kind} kept count equals lines"
        );
    }
    let mut present: Vec<String> = std::fs::read_dir(run_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    present.sort();
    listed.sort();
    assert_eq!(
        present, listed,
        "run directory holds exactly the listed files"
    );
    // What `airlock validate` checks: every line against the asset contract it names.
    let validation = airlock::validate::validate_run(run_dir, 20);
    assert!(
        validation.ok(),
        "{} does not validate: {:#?}",
        run_dir.display(),
        validation.problems
    );
    assert_eq!(
        manifest["contract"],
        airlock::pipeline::contract::CONTRACT_VERSION
    );
    manifest
}

/// A credential home for tests: a state store and an embedded vault inside a workspace.
/// `add_password` registers a password credential bound to `destinations` (`host:port`) and
/// returns its GUID, for `credential = "<guid>"` in a config.
pub struct Home {
    inner: airlock::home::Home,
}

impl Home {
    /// Opens (creating) a home in `dir`.
    pub fn new(dir: &Path) -> Self {
        Home {
            inner: airlock::home::Home::open(&dir.join("airlock-home")).expect("home opens"),
        }
    }

    /// Registers a password credential and returns its GUID.
    pub fn add_password(&self, user: &str, password: &str, destinations: &[&str]) -> String {
        self.inner
            .add_password_credential(user, password, destinations)
            .expect("credential added")
    }

    /// Registers a password credential registered as privileged on purpose (`credential add
    /// --privileged`) and returns its GUID.
    pub fn add_privileged_password(
        &self,
        user: &str,
        password: &str,
        destinations: &[&str],
    ) -> String {
        self.inner
            .add_privileged_password_credential(user, password, destinations)
            .expect("credential added")
    }

    /// Registers a `token` credential (an API key, a bearer token, a PEM certificate and key)
    /// bound to `destinations` and returns its GUID.
    pub fn add_token(&self, secret: &str, destinations: &[&str]) -> String {
        self.inner
            .add_credential(
                airlock::home::NewCredential {
                    kind: "token".into(),
                    username: None,
                    engine: None,
                    destinations: destinations.iter().map(|d| d.to_string()).collect(),
                    description: None,
                    privileged: false,
                },
                airlock::secrets::SecretString::new(secret.to_string()),
            )
            .expect("credential added")
    }

    /// The library home.
    pub fn inner(&self) -> &airlock::home::Home {
        &self.inner
    }
}

/// Runs a loaded config whose credentials live in `home`.
pub async fn run_in(
    runtime: &Runtime,
    cfg: &LoadedConfig,
    home: &Home,
) -> Result<RunReport, RunError> {
    run::run_workflow_in(
        runtime,
        cfg,
        &PluginDir::single(plugin_dir()),
        Arc::new(TracingObserver),
        Some(&home.inner),
    )
    .await
}

/// The `airlock` binary of this build (`cargo build -p airlock-host`; `./scripts/test` and
/// `cargo test --workspace` build it).
pub fn airlock_bin() -> PathBuf {
    let bin = workspace_root().join("target/debug/airlock");
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build -p airlock-host` (./scripts/test does)",
        bin.display()
    );
    bin
}

/// An `airlock` command for the home inside `ws`, finding plugins in the build's plugin
/// directory and sharing one component cache across tests.
pub fn airlock_command(ws: &Workspace) -> std::process::Command {
    let mut cmd = std::process::Command::new(airlock_bin());
    cmd.arg("--home")
        .arg(ws.path().join("airlock-home"))
        .env("AIRLOCK_PLUGIN_DIR", plugin_dir())
        .env(
            "AIRLOCK_CACHE_DIR",
            workspace_root().join("target/test-component-cache"),
        );
    cmd
}

/// Every regular file under `dir`, recursively, for searching artifacts; symbolic links are
/// not followed (what they point to inside `dir` is listed where it really is). A missing
/// `dir` has no files.
pub fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => out.extend(all_files(&e.path())),
            Ok(t) if t.is_file() => out.push(e.path()),
            _ => {}
        }
    }
    out
}

impl Workspace {
    /// The run ids with a spool in this workspace's home (`airlock-home/spool/`).
    pub fn spool_entries(&self) -> Vec<String> {
        std::fs::read_dir(self.path().join("airlock-home").join("spool"))
            .into_iter()
            .flatten()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }
}

/// `wasm` with a custom section appended (valid anywhere in a component).
pub fn with_section(wasm: &[u8], name: &str, data: &[u8]) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
    let mut payload = Vec::new();
    leb(name.len(), &mut payload);
    payload.extend_from_slice(name.as_bytes());
    payload.extend_from_slice(data);
    let mut out = wasm.to_vec();
    out.push(0);
    leb(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
}

/// Every transform the hostile-suite plugin applies to a secret it received (`emit_transforms`),
/// of `secret`, plus its base64: what no output may hold when a source reflected `secret`.
pub fn secret_transforms(secret: &str) -> Vec<String> {
    use base64::Engine;
    let rot13: String = secret
        .chars()
        .map(|c| match c {
            'a'..='z' => (((c as u8 - b'a' + 13) % 26) + b'a') as char,
            'A'..='Z' => (((c as u8 - b'A' + 13) % 26) + b'A') as char,
            c => c,
        })
        .collect();
    let swapped: String = secret
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    let pct: String = secret.bytes().map(|b| format!("%{b:02X}")).collect();
    let b32 = base32(secret.as_bytes());
    let half = secret.len() / 2;
    vec![
        secret.to_string(),
        secret.chars().rev().collect(),
        rot13,
        b32,
        swapped,
        pct,
        secret[..half].to_string(),
        secret[half..].to_string(),
        base64::engine::general_purpose::STANDARD.encode(secret),
    ]
}

/// RFC 4648 base32 without padding (as the plugin writes it).
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut out, mut buffer, mut bits) = (String::new(), 0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn leb128(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn wasm_section(id: u8, content: &[u8], out: &mut Vec<u8>) {
    out.push(id);
    leb128(content.len(), out);
    out.extend_from_slice(content);
}

/// A component whose one core function takes the compiler time that grows with the square of
/// `n` (`n` i64 locals, `n` nested blocks, a `br_table` to all of them, and locals changed
/// after every block, so every merge carries many values): a compile-time bomb of a few MB.
/// It exports nothing, so once compiled it is refused as not being a connector.
pub fn slow_to_compile_component(n: usize) -> Vec<u8> {
    let mut body = Vec::new();
    body.push(1);
    leb128(n, &mut body);
    body.push(0x7e); // n locals of type i64
    for _ in 0..n {
        body.extend_from_slice(&[0x02, 0x40]); // block
    }
    body.extend_from_slice(&[0x20, 0x00, 0xa7, 0x0e]); // local.get 0; i32.wrap_i64; br_table
    leb128(n - 1, &mut body);
    for k in 0..n {
        leb128(k, &mut body);
    }
    let step = (n / 50).max(1);
    for _ in 0..n {
        body.extend_from_slice(&[0x0b]); // end
        for i in (0..n).step_by(step) {
            body.push(0x20);
            leb128(i, &mut body);
            body.extend_from_slice(&[0x42, 0x01, 0x7c, 0x21]); // i64.const 1; i64.add; local.set
            leb128(i, &mut body);
        }
    }
    body.push(0x0b);
    let mut code = vec![1];
    leb128(body.len(), &mut code);
    code.extend_from_slice(&body);
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    wasm_section(1, &[1, 0x60, 0, 0], &mut module);
    wasm_section(3, &[1, 0], &mut module);
    wasm_section(10, &code, &mut module);
    let mut component = b"\0asm\x0d\0\x01\0".to_vec();
    wasm_section(1, &module, &mut component);
    component
}
