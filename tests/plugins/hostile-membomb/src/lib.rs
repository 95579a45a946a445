//! Hostile plugin: allocates and touches memory until something stops it.

use airlock_sdk::{Connector, Emitter, Error, PluginInfo, Scope};

struct Bomb;

impl Connector for Bomb {
    type Config = serde_json::Value;

    fn describe() -> PluginInfo {
        PluginInfo::new("hostile-membomb", "0.0.0", "allocates without bound")
    }

    fn extract(_: Self::Config, _: &Scope, _: &mut Emitter) -> Result<(), Error> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![0xA5; 4 << 20]);
            std::hint::black_box(&hoard);
        }
    }
}

airlock_sdk::export_connector!(Bomb);
