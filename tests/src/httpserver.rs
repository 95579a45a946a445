//! A minimal loopback HTTP/1.1 server for tests of the HTTP capability: every request gets the
//! answer a closure computes from its head (request line and headers); the heads are recorded.
//! Connection-per-request (`connection: close`), plain TCP on 127.0.0.1.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running server; its thread ends with the test process.
pub struct TestServer {
    /// The port on 127.0.0.1.
    pub port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    /// Answers every request with `response(head)`.
    pub fn start(response: impl Fn(&str) -> String + Send + 'static) -> TestServer {
        Self::start_or_hang(move |head| Some(response(head)))
    }

    /// As [`TestServer::start`]; a `None` answer leaves the connection open and silent
    /// (for five minutes), as a server that never answers.
    pub fn start_or_hang(response: impl Fn(&str) -> Option<String> + Send + 'static) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                log.lock().unwrap().push(head.clone());
                match response(&head) {
                    Some(answer) => {
                        let _ = stream.write_all(answer.as_bytes());
                    }
                    None => {
                        std::thread::spawn(move || {
                            std::thread::sleep(Duration::from_secs(300));
                            drop(stream);
                        });
                    }
                }
            }
        });
        TestServer { port, seen }
    }

    /// The heads of the requests served so far.
    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// A `200 OK` text answer.
pub fn ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A `302 Found` to `to`.
pub fn redirect(to: &str) -> String {
    format!(
        "HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )
}
