//! HTTP through clients the host opens, authenticates and confines to the workflow's network
//! policy. The plugin composes requests; the host adds authentication (basic, bearer / API
//! key, AWS Signature V4), so no header, token or signature is ever visible here.
//!
//! ```ignore
//! use airlock_sdk::http::{pages, Client};
//! let cred = airlock_sdk::credentials::get("source")?;
//! let glue = Client::open("https://glue.us-east-1.amazonaws.com", Some(&cred))?;
//! let target = [("x-amz-target", "AWSGlue.GetDatabases")];
//! for db in pages(|token| {
//!     let page: serde_json::Value = glue.post_json("/", &target, &serde_json::json!({ "NextToken": token }))?.json()?;
//!     Ok((page["DatabaseList"].as_array().cloned().unwrap_or_default(),
//!         page["NextToken"].as_str().map(str::to_string)))
//! }) { let db = db?; }
//! ```

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::__private::airlock::connector::http as wit;
use crate::credentials::Credential;
use crate::Error;

/// One request relative to the client's base URL.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`, `PUT`, `PATCH`, `DELETE` or `HEAD`.
    pub method: String,
    /// Path and query appended to the base URL; starts with `/`.
    pub path_and_query: String,
    /// Request headers (authentication headers are the host's and refused).
    pub headers: Vec<(String, String)>,
    /// Request body.
    pub body: Vec<u8>,
}

impl Request {
    /// A request without headers or body.
    pub fn new(method: &str, path_and_query: &str) -> Self {
        Request {
            method: method.to_string(),
            path_and_query: path_and_query.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

/// The final response of a request (the host follows redirects).
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Response headers (lowercase names).
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text (invalid sequences replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// This response when its status is 2xx, else a `source` error with the status and the
    /// start of the body.
    pub fn error_for_status(self) -> Result<Self, Error> {
        if (200..300).contains(&self.status) {
            Ok(self)
        } else {
            let text: String = self.text().chars().take(300).collect();
            Err(Error::Source(format!("HTTP {}: {text}", self.status)))
        }
    }

    /// Parses a 2xx body as JSON; any other status is an error.
    pub fn json<T: DeserializeOwned>(self) -> Result<T, Error> {
        let ok = self.error_for_status()?;
        serde_json::from_slice(&ok.body)
            .map_err(|e| Error::Source(format!("response is not the expected JSON: {e}")))
    }
}

/// A client for one base URL, opened by the host.
pub struct Client(wit::Client);

impl Client {
    /// Asks the host to open a client for `base` (`https://host[:port][/prefix]`). The host
    /// checks it against the workflow's network policy and authenticates with `credential`.
    pub fn open(base: &str, credential: Option<&Credential>) -> Result<Self, Error> {
        wit::open(base, credential.map(|c| &c.0)).map(Client)
    }

    /// Sends a request and returns the final response, whatever its status.
    pub fn send(&self, req: Request) -> Result<Response, Error> {
        let r = self.0.send(&wit::Request {
            method: req.method,
            path_and_query: req.path_and_query,
            headers: req.headers,
            body: req.body,
        })?;
        Ok(Response {
            status: r.status,
            headers: r.headers,
            body: r.body,
        })
    }

    /// Sends a request and returns as soon as the response head arrived; the body is read in
    /// pieces from [`StreamingResponse::body`] (which implements [`std::io::Read`], so e.g.
    /// `serde_json::from_reader` or line-by-line reading work on it). Use it for bodies larger
    /// than the run's per-call limit; the host bounds the whole body by `limits.http_stream_mb`.
    pub fn send_streaming(&self, req: Request) -> Result<StreamingResponse, Error> {
        let (head, body) = self.0.send_streaming(&wit::Request {
            method: req.method,
            path_and_query: req.path_and_query,
            headers: req.headers,
            body: req.body,
        })?;
        Ok(StreamingResponse {
            status: head.status,
            headers: head.headers,
            body: Body {
                inner: body,
                buf: Vec::new(),
                pos: 0,
                done: false,
                error: None,
            },
        })
    }

    /// `GET path_and_query`.
    pub fn get(&self, path_and_query: &str) -> Result<Response, Error> {
        self.send(Request::new("GET", path_and_query))
    }

    /// `POST path_and_query` with `body` as JSON and extra `headers`.
    pub fn post_json<B: Serialize>(
        &self,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: &B,
    ) -> Result<Response, Error> {
        self.send(json_post(path_and_query, headers, body)?)
    }

    /// As [`Client::post_json`], with the response body streamed (see
    /// [`Client::send_streaming`]): for answers larger than the per-call limit.
    pub fn post_json_streaming<B: Serialize>(
        &self,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: &B,
    ) -> Result<StreamingResponse, Error> {
        self.send_streaming(json_post(path_and_query, headers, body)?)
    }
}

/// A `POST` of `body` as JSON with extra `headers` (`content-type: application/json` unless
/// one is given).
fn json_post<B: Serialize>(
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: &B,
) -> Result<Request, Error> {
    let body =
        serde_json::to_vec(body).map_err(|e| Error::InvalidConfig(format!("request body: {e}")))?;
    let mut req = Request::new("POST", path_and_query).body(body);
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        req = req.header("content-type", "application/json");
    }
    for (k, v) in headers {
        req = req.header(k, v);
    }
    Ok(req)
}

/// A response whose body is streamed from the host.
pub struct StreamingResponse {
    /// HTTP status code.
    pub status: u16,
    /// Response headers (lowercase names).
    pub headers: Vec<(String, String)>,
    /// The body, read in pieces.
    pub body: Body,
}

impl StreamingResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Parses a 2xx body as JSON straight from the stream; any other status is an error.
    pub fn json<T: DeserializeOwned>(self) -> Result<T, Error> {
        if !(200..300).contains(&self.status) {
            return Err(Error::Source(format!("HTTP {}", self.status)));
        }
        let mut body = self.body;
        let value = serde_json::from_reader(&mut body);
        if let Some(e) = body.error.take() {
            return Err(e);
        }
        value.map_err(|e| Error::Source(format!("response is not the expected JSON: {e}")))
    }
}

/// Pieces asked of the host at a time.
const READ_SIZE: u32 = 256 * 1024;

/// A streamed response body. Reading it with [`std::io::Read`] turns a host error into an
/// `io::Error`; [`Body::chunk`] keeps the host's error.
pub struct Body {
    inner: wit::Body,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
    error: Option<Error>,
}

impl Body {
    /// The next piece of the body (at most `max` bytes), or `None` at its end.
    pub fn chunk(&mut self, max: u32) -> Result<Option<Vec<u8>>, Error> {
        if self.pos < self.buf.len() {
            let end = self.buf.len().min(self.pos + max.max(1) as usize);
            let out = self.buf[self.pos..end].to_vec();
            self.pos = end;
            return Ok(Some(out));
        }
        if self.done {
            return Ok(None);
        }
        let piece = self.inner.read(max)?;
        if piece.is_none() {
            self.done = true;
        }
        Ok(piece)
    }
}

impl std::io::Read for Body {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.buf.len() {
            if self.done || out.is_empty() {
                return Ok(0);
            }
            match self.inner.read(READ_SIZE) {
                Ok(Some(piece)) => {
                    self.buf = piece;
                    self.pos = 0;
                }
                Ok(None) => {
                    self.done = true;
                    return Ok(0);
                }
                Err(e) => {
                    let text = match &e {
                        Error::InvalidConfig(m)
                        | Error::Denied(m)
                        | Error::Unavailable(m)
                        | Error::Source(m)
                        | Error::Limit(m) => m.clone(),
                    };
                    self.error = Some(e);
                    return Err(std::io::Error::other(text));
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Iterates over the items of a paginated API. `fetch` gets the continuation token (`None`
/// for the first page) and returns a page's items and the next token (`None` or empty at the
/// end). A token that repeats is an error rather than an endless loop.
pub fn pages<T, F>(fetch: F) -> Pages<T, F>
where
    F: FnMut(Option<String>) -> Result<(Vec<T>, Option<String>), Error>,
{
    Pages {
        fetch,
        buffer: std::collections::VecDeque::new(),
        next: None,
        seen: std::collections::HashSet::new(),
        started: false,
        done: false,
    }
}

/// The iterator [`pages`] returns.
pub struct Pages<T, F> {
    fetch: F,
    buffer: std::collections::VecDeque<T>,
    next: Option<String>,
    seen: std::collections::HashSet<String>,
    started: bool,
    done: bool,
}

impl<T, F> Iterator for Pages<T, F>
where
    F: FnMut(Option<String>) -> Result<(Vec<T>, Option<String>), Error>,
{
    type Item = Result<T, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.buffer.pop_front() {
                return Some(Ok(item));
            }
            if self.done || (self.started && self.next.is_none()) {
                return None;
            }
            self.started = true;
            match (self.fetch)(self.next.take()) {
                Ok((items, token)) => {
                    self.buffer.extend(items);
                    match token.filter(|t| !t.is_empty()) {
                        Some(t) if !self.seen.insert(t.clone()) => {
                            self.done = true;
                            return Some(Err(Error::Source(
                                "the API returned the same page token twice".into(),
                            )));
                        }
                        t => self.next = t,
                    }
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
