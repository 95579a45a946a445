//! What a plugin asks for, read from its bytes without compiling or running it: the interfaces
//! the component imports (`airlock:connector/sql@0.2.0`, `wasi:io/streams@0.2.6`, ...) and the
//! optional `airlock-capabilities` custom section its author wrote (the destinations it wants).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// The custom section a plugin may carry to declare what it wants beyond its imports.
pub const CAPABILITIES_SECTION: &str = "airlock-capabilities";

/// Plugins larger than this are refused before parsing.
pub const MAX_PLUGIN_BYTES: usize = 256 << 20;

/// A plugin's declared capabilities.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Every interface the component imports, sorted (`airlock:connector/sql@0.2.0`, ...).
    pub imports: Vec<String>,
    /// The `airlock:connector` version the imports name, when they name one.
    pub wit_version: Option<String>,
    /// What the `airlock-capabilities` section declares, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared: Option<Declared>,
}

/// The JSON of the `airlock-capabilities` custom section. Unknown keys are refused so a typo
/// cannot hide a request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declared {
    /// Format of the section (1).
    #[serde(default)]
    pub format: u32,
    /// `host:port` patterns or URL prefixes the plugin wants to reach through the host.
    #[serde(default)]
    pub destinations: Vec<String>,
    /// The plugin reads data relations (business tables) a workflow grants with
    /// `[source.sql] allow_relations`, e.g. to profile or sample; a metadata connector
    /// does not. Shown at `plugin install` for approval.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sql_data_access: bool,
    /// The airlock-sdk version that wrote the section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdk: Option<String>,
    /// The WIT version the SDK builds against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wit: Option<String>,
}

/// Why a file's capabilities could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// Not a component at all.
    #[error(
        "not a WebAssembly component: {0}; build plugins with `cargo build --target wasm32-wasip2`"
    )]
    NotAComponent(String),
    /// The binary is malformed.
    #[error("malformed component: {0}")]
    Malformed(String),
    /// The custom section is not what the format says.
    #[error("the `airlock-capabilities` section is not valid: {0}")]
    BadSection(String),
    /// Too large.
    #[error("the plugin is {0} bytes; plugins larger than 256 MiB are refused")]
    TooLarge(usize),
}

impl Capabilities {
    /// Reads the imports and the custom section of `wasm`. Nothing is compiled or run.
    pub fn read(wasm: &[u8]) -> Result<Self, InspectError> {
        use wasmparser::{Encoding, Parser, Payload};
        if wasm.len() > MAX_PLUGIN_BYTES {
            return Err(InspectError::TooLarge(wasm.len()));
        }
        let mut imports = BTreeSet::new();
        let mut declared: Option<Declared> = None;
        // Nested modules and components are reported inline; each starts with `Version` and
        // ends with `End`. Only the outermost component's imports are the plugin's imports.
        let mut depth = 0usize;
        for payload in Parser::new(0).parse_all(wasm) {
            let payload = payload.map_err(|e| InspectError::Malformed(e.to_string()))?;
            match payload {
                Payload::Version { encoding, .. } => {
                    if depth == 0 && encoding != Encoding::Component {
                        return Err(InspectError::NotAComponent(
                            "it is a core WebAssembly module".into(),
                        ));
                    }
                    depth += 1;
                }
                Payload::End(_) => depth = depth.saturating_sub(1),
                Payload::ComponentImportSection(reader) if depth == 1 => {
                    for import in reader {
                        let import = import.map_err(|e| InspectError::Malformed(e.to_string()))?;
                        // Type imports (`error`, `scope`, ...) only name shapes; everything
                        // else (interfaces, functions) is something the plugin can call.
                        if !matches!(import.ty, wasmparser::ComponentTypeRef::Type(_)) {
                            imports.insert(import.name.name.to_string());
                        }
                    }
                }
                Payload::CustomSection(section) if section.name() == CAPABILITIES_SECTION => {
                    merge_section(&mut declared, section.data())?;
                }
                _ => {}
            }
        }
        if depth == 0 && imports.is_empty() && !wasm.starts_with(b"\0asm") {
            return Err(InspectError::NotAComponent(
                "it does not start with the WebAssembly magic bytes".into(),
            ));
        }
        let wit_version = imports.iter().find_map(|i| {
            i.strip_prefix("airlock:connector/")
                .and_then(|rest| rest.split_once('@'))
                .map(|(_, v)| v.to_string())
        });
        Ok(Capabilities {
            imports: imports.into_iter().collect(),
            wit_version,
            declared,
        })
    }

    /// The `airlock:connector` interfaces imported, without the package (`sql@0.2.0`).
    pub fn connector_interfaces(&self) -> Vec<&str> {
        self.imports
            .iter()
            .filter_map(|i| i.strip_prefix("airlock:connector/"))
            .collect()
    }

    /// Every other import (WASI interfaces: granted nothing unless the host says so).
    pub fn other_imports(&self) -> Vec<&str> {
        self.imports
            .iter()
            .filter(|i| !i.starts_with("airlock:connector/"))
            .map(String::as_str)
            .collect()
    }

    /// The destinations the custom section declares.
    pub fn destinations(&self) -> &[String] {
        self.declared
            .as_ref()
            .map(|d| d.destinations.as_slice())
            .unwrap_or(&[])
    }

    /// What `self` asks for that `approved` did not: imports (the version is part of the
    /// request) and declared destinations.
    pub fn not_in(&self, approved: &Capabilities) -> Vec<String> {
        let mut out: Vec<String> = self
            .imports
            .iter()
            .filter(|i| !approved.imports.contains(i))
            .map(|i| format!("import {i}"))
            .collect();
        out.extend(
            self.destinations()
                .iter()
                .filter(|d| !approved.destinations().contains(d))
                .map(|d| format!("destination {d}")),
        );
        let wants_data = |c: &Capabilities| c.declared.as_ref().is_some_and(|d| d.sql_data_access);
        if wants_data(self) && !wants_data(approved) {
            out.push("sql data access".to_string());
        }
        out
    }

    /// Lines for humans: one per capability, the important ones first.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for i in self.connector_interfaces() {
            let name = i.split('@').next().unwrap_or(i);
            let what = match name {
                "sql" => "open database connections through the host, with credential handles",
                "http" => "send HTTP requests through the host (within the workflow's [network] allow list)",
                "credentials" => "ask for opaque credential handles by slot (never the secret)",
                "emit" => "hand assets to the host's filter pipeline",
                "log" => "write log lines and progress",
                "types" => "shared types",
                _ => "an interface this host may not know",
            };
            lines.push(format!("airlock:connector/{i}: {what}"));
        }
        let (wasi, other): (Vec<&str>, Vec<&str>) = self
            .other_imports()
            .into_iter()
            .partition(|i| i.starts_with("wasi:"));
        if !wasi.is_empty() {
            let names: Vec<&str> = wasi.iter().map(|i| &i[5..]).collect();
            lines.push(format!(
                "wasi: {} (the host grants no files, environment, arguments, stdin or sockets)",
                names.join(", ")
            ));
        }
        for i in other {
            lines.push(format!("{i}: an import this host does not provide"));
        }
        if self.declared.as_ref().is_some_and(|d| d.sql_data_access) {
            lines.push(
                "sql data access: read business tables the workflow grants ([source.sql] allow_relations), not only the catalog"
                    .to_string(),
            );
        }
        for d in self.destinations() {
            lines.push(format!("destination {d} (declared by the plugin)"));
        }
        lines
    }
}

/// Merges one section's data: a JSON object, or several (a linker concatenates sections of the
/// same name).
fn merge_section(into: &mut Option<Declared>, data: &[u8]) -> Result<(), InspectError> {
    let stream = serde_json::Deserializer::from_slice(data).into_iter::<Declared>();
    for value in stream {
        let d = value.map_err(|e| InspectError::BadSection(e.to_string()))?;
        if d.format > 1 {
            return Err(InspectError::BadSection(format!(
                "format {} is newer than this host understands (1); upgrade airlock",
                d.format
            )));
        }
        let merged = into.get_or_insert_with(Declared::default);
        merged.format = merged.format.max(d.format);
        for dest in d.destinations {
            if !merged.destinations.contains(&dest) {
                merged.destinations.push(dest);
            }
        }
        merged.sql_data_access |= d.sql_data_access;
        merged.sdk = merged.sdk.take().or(d.sdk);
        merged.wit = merged.wit.take().or(d.wit);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_imports_and_section_of_a_component() {
        let wasm = wat::parse_str(
            r#"(component
                (import "airlock:connector/sql@0.2.0" (instance))
                (import "wasi:io/streams@0.2.6" (instance))
                (core module
                    (@custom "airlock-capabilities" "{\"format\":1,\"destinations\":[\"db.internal:5432\"]}")
                )
            )"#,
        )
        .unwrap();
        let caps = Capabilities::read(&wasm).unwrap();
        assert_eq!(
            caps.imports,
            ["airlock:connector/sql@0.2.0", "wasi:io/streams@0.2.6"]
        );
        assert_eq!(caps.wit_version.as_deref(), Some("0.2.0"));
        assert_eq!(caps.destinations(), ["db.internal:5432"]);
        let mut fewer = caps.clone();
        fewer.imports.retain(|i| !i.contains("sql"));
        fewer.declared = None;
        assert_eq!(
            caps.not_in(&fewer),
            [
                "import airlock:connector/sql@0.2.0",
                "destination db.internal:5432"
            ]
        );
        assert!(fewer.not_in(&caps).is_empty());
    }

    #[test]
    fn refuses_modules_garbage_and_bad_sections() {
        let module = wat::parse_str("(module)").unwrap();
        assert!(matches!(
            Capabilities::read(&module),
            Err(InspectError::NotAComponent(_))
        ));
        assert!(Capabilities::read(b"not wasm at all").is_err());
        let bad = wat::parse_str(
            r#"(component (core module (@custom "airlock-capabilities" "{\"sneaky\":1}")))"#,
        )
        .unwrap();
        assert!(matches!(
            Capabilities::read(&bad),
            Err(InspectError::BadSection(_))
        ));
    }
}
