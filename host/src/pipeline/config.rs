//! The `[filters]` table: what the pipeline keeps of what a plugin emits, and how.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The `[filters]` table: what the host keeps of what the plugin emits.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Include patterns on qualified names; empty keeps everything.
    #[serde(default)]
    pub include: Vec<String>,
    /// Exclude patterns; an asset matching any is dropped, whatever the includes say.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Asset kinds to keep (e.g. `["table", "column"]`); empty keeps every kind.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Whether name patterns match case-sensitively; unset, the source engine decides
    /// (see [`crate::pipeline::filter::default_case_sensitive`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_sensitive: Option<bool>,
    /// Rules applied to top-level attributes of kept assets, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldRuleConfig>,
    /// At most this many assets of a kind are kept (e.g. `{ column = 100000 }`); the rest are
    /// dropped and counted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub max_per_kind: BTreeMap<String, u64>,
    /// What a resolved secret found in the output does: `fail` (default) fails the run,
    /// `quarantine` drops the asset and continues. Either way the asset never leaves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_secret: Option<OnSecret>,
    /// What a secret of the run that a source sends back does (the plugin never receives it
    /// either way): `withhold` (default) replaces it and goes on, `fail` fails the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_reflected_secret: Option<OnReflected>,
}

/// What a secret found in what a source sent to the plugin does to the run.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnReflected {
    /// Replace it with a marker, count it, audit it, go on (the default).
    #[default]
    Withhold,
    /// Fail the call and the run.
    Fail,
}

/// What a hit of the outbound secret scan does to the run.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnSecret {
    /// Quarantine the asset and fail the run (the default).
    #[default]
    Fail,
    /// Quarantine the asset and go on.
    Quarantine,
}

/// One entry of `filters.fields`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FieldRuleConfig {
    /// The top-level attribute key the rule applies to.
    pub field: String,
    /// `drop`, `mask`, `hash`, `truncate` or `redact`.
    pub action: FieldActionName,
    /// Asset kinds the rule applies to; empty means every kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
    /// `truncate`: characters kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_chars: Option<usize>,
    /// `redact`: the regular expression whose matches are replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// `hash`: GUID of the credential whose secret is the HMAC key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_credential: Option<String>,
}

/// The action of a field rule.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum FieldActionName {
    /// Remove the key.
    Drop,
    /// Replace the value with a fixed token.
    Mask,
    /// Replace the value with its keyed HMAC-SHA256.
    Hash,
    /// Keep the first `max_chars` characters of a string.
    Truncate,
    /// Replace matches of `pattern` inside a string.
    Redact,
}

impl FieldActionName {
    /// The name used in configs and the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldActionName::Drop => "drop",
            FieldActionName::Mask => "mask",
            FieldActionName::Hash => "hash",
            FieldActionName::Truncate => "truncate",
            FieldActionName::Redact => "redact",
        }
    }
}
