//! Host implementation of `airlock:connector@0.2.0`: the shared interfaces (see `host_impl`)
//! plus `http`.

use super::bindings::v0_2_0::airlock::connector::{credentials, emit, http, log, sql, types};
use crate::capabilities::http::{HttpBody, HttpClient, HttpError, HttpRequest};

super::host_impl::shared_host_impl!();

/// Streamed response bodies a plugin may hold open at once.
const MAX_OPEN_BODIES: usize = 16;

fn http_error(e: HttpError) -> types::Error {
    match e.redacted() {
        HttpError::InvalidConfig(m) => types::Error::InvalidConfig(m),
        HttpError::Denied(m) => types::Error::Denied(m),
        HttpError::Unavailable(m) => types::Error::Unavailable(m),
        HttpError::Source(m) => types::Error::Source(m),
        HttpError::Limit(m) => types::Error::Limit(m),
    }
}

impl http::Host for RunState {
    async fn open(
        &mut self,
        base: String,
        cred: Option<Resource<CredentialHandle>>,
    ) -> WitResult<Resource<HttpClient>> {
        if base.len() > 2048 {
            return Ok(Err(types::Error::Limit(
                "the base URL is longer than 2048 bytes".into(),
            )));
        }
        let binding = match &cred {
            None => None,
            Some(c) => {
                let slot = self.table.get(c)?.slot.clone();
                match self.credentials.binding(&slot).cloned() {
                    Some(b) => Some(b),
                    None => {
                        return Ok(Err(types::Error::Denied(format!(
                            "no credential is bound to slot `{slot}`"
                        ))))
                    }
                }
            }
        };
        let Some(access) = self.http.clone() else {
            return Ok(Err(types::Error::Denied(
                "outbound HTTP is not enabled for this run; the workflow needs a [network] allow list"
                    .into(),
            )));
        };
        if let Err(message) = self.take_handle("an HTTP client") {
            return Ok(Err(types::Error::Limit(message)));
        }
        match access.open(&base, binding.as_ref()).await {
            Ok(client) => Ok(Ok(self.table.push(client)?)),
            Err(e) => {
                self.release_handle();
                Ok(Err(http_error(e)))
            }
        }
    }
}

impl http::HostClient for RunState {
    async fn send(
        &mut self,
        this: Resource<HttpClient>,
        req: http::Request,
    ) -> WitResult<http::Response> {
        let call_bytes = self.call_bytes;
        let client = self.table.get_mut(&this)?;
        Ok(match client.send(request(req), call_bytes).await {
            Ok(r) => Ok(http::Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
            Err(e) => Err(http_error(e)),
        })
    }

    async fn send_streaming(
        &mut self,
        this: Resource<HttpClient>,
        req: http::Request,
    ) -> WitResult<(http::ResponseHead, Resource<HttpBody>)> {
        let (call_bytes, total) = (self.call_bytes, self.http_stream_bytes);
        if self.http_bodies_open >= MAX_OPEN_BODIES {
            return Ok(Err(types::Error::Limit(format!(
                "more than {MAX_OPEN_BODIES} streamed response bodies open; drop one first"
            ))));
        }
        let client = self.table.get_mut(&this)?;
        let request = request(req);
        match client.send_streaming(request, call_bytes, total).await {
            Ok((status, headers, body)) => {
                if let Err(message) = self.take_handle("a response body") {
                    return Ok(Err(types::Error::Limit(message)));
                }
                let body = self.table.push(body)?;
                self.http_bodies_open += 1;
                Ok(Ok((http::ResponseHead { status, headers }, body)))
            }
            Err(e) => Ok(Err(http_error(e))),
        }
    }

    async fn drop(&mut self, this: Resource<HttpClient>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        self.release_handle();
        Ok(())
    }
}

fn request(req: http::Request) -> HttpRequest {
    HttpRequest {
        method: req.method,
        path_and_query: req.path_and_query,
        headers: req.headers,
        body: req.body,
    }
}

impl http::HostBody for RunState {
    async fn read(&mut self, this: Resource<HttpBody>, max: u32) -> WitResult<Option<Vec<u8>>> {
        let max = (max as usize).min(self.call_bytes);
        let body = self.table.get_mut(&this)?;
        Ok(body.read(max).await.map_err(http_error))
    }

    async fn drop(&mut self, this: Resource<HttpBody>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        self.release_handle();
        self.http_bodies_open = self.http_bodies_open.saturating_sub(1);
        Ok(())
    }
}
