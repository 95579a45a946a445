//! Test plugin: opens a client for `options.base` (with the `source` credential when
//! `options.credential` is true), sends `GET options.path` and emits the response as the
//! database asset `probe` (`status`, `body`, and whether any header the plugin saw looked
//! like authentication). A failure is returned as the plugin's error, unchanged.

use airlock_sdk::http::Client;
use airlock_sdk::{
    credentials, AssetKind, Capability, Connector, Emitter, Error, PluginInfo, Scope,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Config {
    options: Options,
}

#[derive(Deserialize)]
struct Options {
    base: String,
    #[serde(default = "root")]
    path: String,
    #[serde(default)]
    credential: bool,
    /// A header to set on the request (to prove the host refuses auth headers).
    #[serde(default)]
    header: Option<(String, String)>,
    /// How many times to send the request (the last response is emitted).
    #[serde(default)]
    repeat: Option<u32>,
}

fn root() -> String {
    "/".into()
}

struct Probe;

impl Connector for Probe {
    type Config = Config;

    fn describe() -> PluginInfo {
        PluginInfo::new("http-probe", "0.1.0", "one HTTP request")
            .capabilities(&[Capability::Http])
            .kinds(&[AssetKind::Database])
    }

    fn extract(config: Config, _scope: &Scope, out: &mut Emitter) -> Result<(), Error> {
        let o = config.options;
        let cred = if o.credential {
            Some(credentials::get("source")?)
        } else {
            None
        };
        let client = Client::open(&o.base, cred.as_ref())?;
        let mut req = airlock_sdk::http::Request::new("GET", &o.path);
        if let Some((k, v)) = &o.header {
            req = req.header(k, v);
        }
        let mut resp = client.send(req.clone())?;
        for _ in 1..o.repeat.unwrap_or(1) {
            resp = client.send(req.clone())?;
        }
        let saw_auth = resp.headers.iter().any(|(k, _)| {
            k.eq_ignore_ascii_case("authorization") || k.eq_ignore_ascii_case("www-authenticate")
        });
        out.emit(
            AssetKind::Database,
            ["probe"],
            // Under `extra`: the asset contract names no probe attributes.
            serde_json::json!({"extra": {"status": resp.status, "body": resp.text(), "saw_auth": saw_auth}}),
        )
    }
}

airlock_sdk::export_connector!(Probe);
