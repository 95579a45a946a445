//! A throwaway AWS-compatible Secrets Manager for tests: `moto_server` (`pip install
//! 'moto[server]'`) on 127.0.0.1 and a free port, killed on drop. Secrets are created and
//! rotated through its HTTP API (moto ignores signatures), as an operator's tooling would.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running moto server.
pub struct Moto {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Moto {
    /// Starts `moto_server` and waits until it answers.
    pub fn start() -> Moto {
        Self::start_with_env(&[])
    }

    /// Starts `moto_server` with extra environment (e.g. `S3_UPLOAD_PART_MIN_SIZE`).
    pub fn start_with_env(env: &[(&str, &str)]) -> Moto {
        Self::start_with(&[], env)
    }

    /// Starts `moto_server` with extra arguments (e.g. `--ssl-cert`) and environment.
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Moto {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let log_path = dir.path().join(format!("moto-{port}.log"));
            let log = std::fs::File::create(&log_path).expect("log file");
            let mut child = Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .args(args)
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log handle"))
                .stderr(log)
                .spawn()
                .expect("moto_server runs (pip install 'moto[server]'; ./scripts/setup does)");
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                // Over TLS a plaintext request gets no HTTP answer: there the listening
                // socket is what is waited for.
                let tls = args.contains(&"--ssl-cert");
                let ready = if tls {
                    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                } else {
                    answers_http(port)
                };
                if ready {
                    return Moto {
                        child,
                        port,
                        _dir: dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
            last = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("moto_server did not start:\n{last}");
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Calls Secrets Manager action `action` (e.g. `CreateSecret`) with a JSON body; returns
    /// the status and the response JSON.
    pub async fn call(&self, action: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let resp = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
            .post(format!("{}/", self.endpoint()))
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", format!("secretsmanager.{action}"))
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0",
            )
            .body(body.to_string())
            .send()
            .await
            .expect("moto answers");
        let status = resp.status().as_u16();
        let json = resp.json().await.unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    /// Calls Glue action `action` (e.g. `CreateTable`) with a JSON body; returns the status
    /// and the response JSON. moto routes by the service named in the signature's scope.
    pub async fn glue_call(
        &self,
        client: &reqwest::Client,
        action: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let resp = client
            .post(format!("{}/", self.endpoint()))
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", format!("AWSGlue.{action}"))
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/glue/aws4_request, SignedHeaders=host, Signature=0",
            )
            .body(body.to_string())
            .send()
            .await
            .expect("moto answers");
        let status = resp.status().as_u16();
        let json = resp.json().await.unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    /// Creates secret `name` holding `value` (a string; JSON text for field mapping).
    pub async fn create_secret(&self, name: &str, value: &str) {
        let (status, body) = self
            .call(
                "CreateSecret",
                serde_json::json!({"Name": name, "SecretString": value}),
            )
            .await;
        assert_eq!(status, 200, "CreateSecret: {body}");
    }

    /// Rotates `name` to `value` (PutSecretValue moves AWSCURRENT to the new version).
    pub async fn put_secret_value(&self, name: &str, value: &str) {
        let (status, body) = self
            .call(
                "PutSecretValue",
                serde_json::json!({"SecretId": name, "SecretString": value}),
            )
            .await;
        assert_eq!(status, 200, "PutSecretValue: {body}");
    }

    /// Deletes `name` (scheduled, with the minimum recovery window, or at once with `force`).
    pub async fn delete_secret(&self, name: &str, force: bool) {
        let body = if force {
            serde_json::json!({"SecretId": name, "ForceDeleteWithoutRecovery": true})
        } else {
            serde_json::json!({"SecretId": name, "RecoveryWindowInDays": 7})
        };
        let (status, body) = self.call("DeleteSecret", body).await;
        assert_eq!(status, 200, "DeleteSecret: {body}");
    }
}

impl Drop for Moto {
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

/// Whether an HTTP server answers on `port`: a listening socket alone is not enough, the
/// server may still reset connections while it starts (seen under load).
fn answers_http(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && &head == b"HTTP/"
}
