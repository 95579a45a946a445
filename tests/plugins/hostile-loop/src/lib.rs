//! Hostile plugin: computes forever inside `extract`. The host must stop it at the deadline.

use airlock_sdk::{Connector, Emitter, Error, PluginInfo, Scope};

struct Loop;

impl Connector for Loop {
    type Config = serde_json::Value;

    fn describe() -> PluginInfo {
        PluginInfo::new("hostile-loop", "0.0.0", "loops forever")
    }

    fn extract(_: Self::Config, _: &Scope, _: &mut Emitter) -> Result<(), Error> {
        let mut x: u64 = 1;
        loop {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

airlock_sdk::export_connector!(Loop);
