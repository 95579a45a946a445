//! Write airlock connector plugins.
//!
//! A connector implements [`Connector`] and exports it with [`export_connector!`]:
//!
//! ```ignore
//! use airlock_sdk::{Connector, Emitter, Error, PluginInfo, Scope, AssetKind, Capability};
//!
//! struct Hello;
//!
//! impl Connector for Hello {
//!     type Config = serde_json::Value;
//!     fn describe() -> PluginInfo {
//!         PluginInfo::new("hello", env!("CARGO_PKG_VERSION"), "says hello")
//!             .kinds(&[AssetKind::Database])
//!     }
//!     fn extract(_config: Self::Config, _scope: &Scope, out: &mut Emitter) -> Result<(), Error> {
//!         out.emit(AssetKind::Database, ["hello"], serde_json::json!({}))
//!     }
//! }
//!
//! airlock_sdk::export_connector!(Hello);
//! ```
//!
//! The plugin runs in a sandbox: it has no files, no environment, no sockets. It reaches a
//! source only through the host's capabilities ([`sql`], [`http`], [`credentials`]) and hands its output
//! to the host through the [`Emitter`], which batches assets across the boundary.

// Lets the generated bindings name this crate by its public path from inside it too.
extern crate self as airlock_sdk;

mod emit;
pub mod http;
pub mod log;
mod scope;
pub mod sql;

pub use emit::Emitter;

/// Generated bindings; not part of the public API.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub mod __private {
    pub use wit_bindgen;

    wit_bindgen::generate!({
        world: "connector",
        path: "../wit/v0.2.0",
        pub_export_macro: true,
        export_macro_name: "__export_connector_world",
        default_bindings_module: "airlock_sdk::__private",
        runtime_path: "airlock_sdk::__private::wit_bindgen::rt",
    });

    pub use self::airlock::connector::types as wit_types;

    /// Called by the code [`export_connector!`](crate::export_connector) generates.
    pub fn describe<C: crate::Connector>() -> wit_types::PluginInfo {
        C::describe().into_wit()
    }

    /// Called by the code [`export_connector!`](crate::export_connector) generates.
    pub fn extract<C: crate::Connector>(
        config_json: String,
        scope: wit_types::Scope,
    ) -> Result<wit_types::Summary, wit_types::Error> {
        let config: C::Config = serde_json::from_str(&config_json)
            .map_err(|e| crate::Error::InvalidConfig(format!("plugin configuration: {e}")))?;
        let scope = crate::Scope {
            include: scope.include,
            exclude: scope.exclude,
            kinds: scope.kinds,
        };
        let mut out = crate::Emitter::new();
        C::extract(config, &scope, &mut out)?;
        out.flush()?;
        Ok(wit_types::Summary {
            assets_emitted: out.emitted(),
            warnings: out.take_warnings(),
        })
    }
}

/// The kind of a metadata asset; it fixes the shape of the asset's path.
pub use __private::wit_types::AssetKind;
/// A capability a plugin asks the host for.
pub use __private::wit_types::Capability;
/// The error type every plugin function returns; messages must never contain secrets.
pub use __private::wit_types::Error;

/// Filters the host will enforce on every emitted asset; a plugin may push them down into its
/// queries to do less work. Pushing down is an optimisation: the host filters again.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Include patterns; empty means everything.
    pub include: Vec<String>,
    /// Exclude patterns; exclude wins.
    pub exclude: Vec<String>,
    /// Wanted asset kinds; empty means every kind.
    pub kinds: Vec<AssetKind>,
}

impl Scope {
    /// Whether the host will keep assets of `kind` at all.
    pub fn wants(&self, kind: AssetKind) -> bool {
        self.kinds.is_empty() || self.kinds.contains(&kind)
    }
}

/// What a plugin says about itself; built with [`PluginInfo::new`] and the builder methods.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    name: String,
    version: String,
    description: String,
    capabilities: Vec<Capability>,
    kinds: Vec<AssetKind>,
    config_schema_json: Option<String>,
}

impl PluginInfo {
    /// Starts a description with the plugin's name, version and one line for humans.
    pub fn new(name: &str, version: &str, description: &str) -> Self {
        PluginInfo {
            name: name.to_string(),
            version: version.to_string(),
            description: description.to_string(),
            capabilities: Vec::new(),
            kinds: Vec::new(),
            config_schema_json: None,
        }
    }

    /// Declares the capabilities the plugin will use.
    pub fn capabilities(mut self, caps: &[Capability]) -> Self {
        self.capabilities = caps.to_vec();
        self
    }

    /// Declares the asset kinds the plugin can emit.
    pub fn kinds(mut self, kinds: &[AssetKind]) -> Self {
        self.kinds = kinds.to_vec();
        self
    }

    /// Attaches a JSON Schema for the plugin's options.
    pub fn config_schema(mut self, schema: serde_json::Value) -> Self {
        self.config_schema_json = Some(schema.to_string());
        self
    }

    fn into_wit(self) -> __private::wit_types::PluginInfo {
        __private::wit_types::PluginInfo {
            name: self.name,
            version: self.version,
            description: self.description,
            capabilities: self.capabilities,
            kinds: self.kinds,
            config_schema_json: self.config_schema_json,
        }
    }
}

/// A connector plugin.
pub trait Connector {
    /// The plugin's configuration: the workflow's `[source]` table, as JSON.
    type Config: serde::de::DeserializeOwned;

    /// Describes the plugin without touching any source.
    fn describe() -> PluginInfo;

    /// Extracts metadata and hands every asset to `out`.
    fn extract(config: Self::Config, scope: &Scope, out: &mut Emitter) -> Result<(), Error>;
}

/// Credential handles: opaque references to secrets the host holds.
pub mod credentials {
    use crate::__private::airlock::connector::credentials as wit;
    use crate::Error;

    /// The kind of secret behind a credential handle.
    pub use wit::CredentialKind;

    /// An opaque handle to a credential the workflow bound to a slot. It can be passed to
    /// [`crate::sql::Connection::open`] or [`crate::http::Client::open`]; it never reveals
    /// the secret.
    pub struct Credential(pub(crate) wit::Credential);

    impl Credential {
        /// The kind of secret behind the handle.
        pub fn kind(&self) -> CredentialKind {
            self.0.kind()
        }
        /// The slot name the workflow gave the credential.
        pub fn slot(&self) -> String {
            self.0.slot()
        }
    }

    /// Returns the credential the workflow bound to `slot`, e.g. `"source"`.
    pub fn get(slot: &str) -> Result<Credential, Error> {
        wit::get(slot).map(Credential)
    }
}

/// The `airlock-capabilities` custom section [`export_connector!`] writes into a plugin: JSON
/// the host reads at `airlock plugin install`, before compiling anything, and shows for
/// approval. Not part of the public API.
#[doc(hidden)]
pub mod __capabilities {
    const PREFIX: &str = concat!(
        "{\"format\":1,\"sdk\":\"",
        env!("CARGO_PKG_VERSION"),
        "\",\"wit\":\"0.2.0\",\"destinations\":["
    );
    const SUFFIX: &str = "]}";

    /// The section's length for `destinations`.
    pub const fn len(destinations: &[&str]) -> usize {
        let mut n = PREFIX.len() + SUFFIX.len();
        let mut i = 0;
        while i < destinations.len() {
            // Quotes, and a comma before every entry but the first.
            n += destinations[i].len() + 2 + if i > 0 { 1 } else { 0 };
            i += 1;
        }
        n
    }

    const fn put(out: &mut [u8], mut at: usize, s: &[u8]) -> usize {
        let mut j = 0;
        while j < s.len() {
            out[at] = s[j];
            at += 1;
            j += 1;
        }
        at
    }

    /// The section's bytes for `destinations`; `N` is [`len`] of them.
    pub const fn bytes<const N: usize>(destinations: &[&str]) -> [u8; N] {
        let mut out = [0u8; N];
        let mut at = put(&mut out, 0, PREFIX.as_bytes());
        let mut i = 0;
        while i < destinations.len() {
            let d = destinations[i].as_bytes();
            let mut k = 0;
            while k < d.len() {
                assert!(
                    d[k] != b'"' && d[k] != b'\\' && d[k] >= 0x20,
                    "a destination may not contain quotes, backslashes or control characters"
                );
                k += 1;
            }
            if i > 0 {
                at = put(&mut out, at, b",");
            }
            at = put(&mut out, at, b"\"");
            at = put(&mut out, at, d);
            at = put(&mut out, at, b"\"");
            i += 1;
        }
        put(&mut out, at, SUFFIX.as_bytes());
        out
    }
}

/// Exports a [`Connector`] implementation as the plugin's component exports, and stamps the
/// plugin with an `airlock-capabilities` section (SDK and WIT version, and the destinations
/// it declares) that operators see and approve at `airlock plugin install`:
///
/// ```ignore
/// airlock_sdk::export_connector!(MySource);
/// airlock_sdk::export_connector!(Glue, destinations = ["glue.*.amazonaws.com:443"]);
/// ```
#[macro_export]
macro_rules! export_connector {
    ($connector:ty) => {
        $crate::export_connector!($connector, destinations = []);
    };
    ($connector:ty, destinations = [$($destination:literal),* $(,)?]) => {
        #[doc(hidden)]
        #[cfg(target_family = "wasm")]
        #[used]
        #[link_section = "airlock-capabilities"]
        static __AIRLOCK_CAPABILITIES: [u8; $crate::__capabilities::len(&[$($destination),*])] =
            $crate::__capabilities::bytes(&[$($destination),*]);

        #[doc(hidden)]
        pub struct __AirlockConnectorExport;

        impl $crate::__private::Guest for __AirlockConnectorExport {
            fn describe() -> $crate::__private::wit_types::PluginInfo {
                $crate::__private::describe::<$connector>()
            }
            fn extract(
                config_json: ::std::string::String,
                scope: $crate::__private::wit_types::Scope,
            ) -> ::std::result::Result<
                $crate::__private::wit_types::Summary,
                $crate::__private::wit_types::Error,
            > {
                $crate::__private::extract::<$connector>(config_json, scope)
            }
        }

        $crate::__private::__export_connector_world!(__AirlockConnectorExport with_types_in $crate::__private);
    };
}
