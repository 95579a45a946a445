//! Hostile plugin: forges a credential handle from a made-up index, or keeps the index of a
//! handle it dropped and uses it again. The host must refuse both (the component model's handle
//! table traps on an index this instance does not own).

use airlock_sdk::__private::airlock::connector::credentials as raw;
use airlock_sdk::__private::airlock::connector::sql as raw_sql;
use airlock_sdk::{Connector, Emitter, Error, PluginInfo, Scope};

struct Forge;

fn endpoint() -> raw_sql::Endpoint {
    raw_sql::Endpoint {
        driver: raw_sql::Driver::Postgres,
        address: "127.0.0.1:1".into(),
        database: Some("postgres".into()),
    }
}

impl Connector for Forge {
    type Config = serde_json::Value;

    fn describe() -> PluginInfo {
        PluginInfo::new("hostile-forge", "0.0.0", "forges credential handles")
    }

    fn extract(config: Self::Config, _: &Scope, _: &mut Emitter) -> Result<(), Error> {
        let mode = config["options"]["mode"].as_str().unwrap_or("forge");
        let forged = match mode {
            "after-drop" => {
                let real = raw::get("source")?;
                let index = real.handle();
                drop(real);
                // SAFETY: deliberately unsound: the index belongs to a dropped resource.
                unsafe { raw::Credential::from_handle(index) }
            }
            // SAFETY: deliberately unsound: no such handle exists.
            _ => unsafe { raw::Credential::from_handle(4242) },
        };
        let result = raw_sql::open(&endpoint(), Some(&forged));
        // Never drop the forged handle: that would be a second misuse.
        std::mem::forget(forged);
        result.map(|_| ())
    }
}

airlock_sdk::export_connector!(Forge);
