//! `manifest.json`: what a run produced, written last as the commit marker of the output.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::spool::SpooledFile;
use super::KindCounts;

/// The manifest format identifier.
pub const MANIFEST_FORMAT: &str = "airlock-manifest/1";

/// The manifest of one published run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// The asset contract version every asset line was checked against
    /// (`contract/<version>/` in the repository); empty in runs from before the contract.
    #[serde(default)]
    pub contract: String,
    /// The run's id (a UUIDv7, so ids sort by start time).
    pub run_id: String,
    /// `complete`: a manifest exists only for runs that finished and were published whole.
    pub status: String,
    /// The workflow's name, when the config gives one.
    pub workflow: Option<String>,
    /// SHA-256 of the workflow configuration as JSON.
    pub config_sha256: String,
    /// The plugin that produced the output.
    pub plugin: PluginRef,
    /// The filter policy applied.
    pub filter: FilterRef,
    /// When the run started (RFC 3339, UTC).
    pub started_at: String,
    /// When the output was published (RFC 3339, UTC).
    pub finished_at: String,
    /// Durations of the phases, in milliseconds.
    pub timings_ms: Timings,
    /// Counts per asset kind.
    pub counts: BTreeMap<String, KindCounts>,
    /// Counts over all kinds.
    pub totals: KindCounts,
    /// The output files with their sizes and SHA-256.
    pub files: Vec<SpooledFile>,
    /// Secrets of this run a source sent back, withheld from the plugin by the inbound
    /// filter (each occurrence counted; none of them reached the plugin).
    #[serde(default)]
    pub secrets_withheld: u64,
    /// Non-fatal problems reported by the plugin or the pipeline.
    pub warnings: Vec<String>,
    /// The run's own log (`run-log.jsonl`, kind `log`): start, connections and their outcome,
    /// counts, warnings and denials, redacted and scanned like every asset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<SpooledFile>,
    /// The run in a catalog's format (`[sink] format`), written beside its own files: kind
    /// `datahub` or `openmetadata`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<SpooledFile>,
    /// What changed since the workflow's last complete run (absent without a state store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Changes>,
}

/// The plugin that ran.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PluginRef {
    /// Name the plugin reports.
    pub name: String,
    /// Version the plugin reports.
    pub version: String,
    /// SHA-256 of the `.wasm` file.
    pub sha256: String,
    /// The `airlock:connector` WIT version the plugin was built against.
    pub wit_version: String,
}

/// The filter policy applied to the output.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FilterRef {
    /// SHA-256 of the canonical policy.
    pub digest: String,
    /// Include patterns.
    pub include: Vec<String>,
    /// Exclude patterns.
    pub exclude: Vec<String>,
    /// Allowed asset kinds (empty: all).
    pub kinds: Vec<String>,
    /// Whether name patterns matched case-sensitively.
    #[serde(default = "yes")]
    pub case_sensitive: bool,
    /// Field rules, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<super::config::FieldRuleConfig>,
    /// Caps on kept assets per kind.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub max_per_kind: BTreeMap<String, u64>,
    /// What a secret found by the outbound scan does (`fail` or `quarantine`).
    #[serde(default)]
    pub on_secret: super::config::OnSecret,
    /// Include and exclude patterns that matched no emitted asset's name (or an ancestor's),
    /// as ``filters.exclude: `pattern` ``: a typo, or a source that changed.
    #[serde(default)]
    pub unmatched_patterns: Vec<String>,
    /// Kept assets whose names are confusable with an exclude pattern by Unicode TR39
    /// skeletons (`аudit` with a Cyrillic `а` against `audit`), at most 100.
    #[serde(default)]
    pub confusable_with_exclude: Vec<ConfusableName>,
    /// Further kept assets confusable with an exclude pattern, counted only.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub confusable_not_listed: u64,
}

/// A kept asset whose name looks like one an exclude pattern drops.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConfusableName {
    /// Its kind.
    pub kind: String,
    /// Its qualified name.
    pub name: String,
    /// The exclude pattern it is confusable with.
    pub pattern: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn yes() -> bool {
    true
}

/// Phase durations in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Timings {
    /// Loading (and compiling, when not cached) the plugin.
    pub load: u64,
    /// The plugin's `describe` and `extract`.
    pub extract: u64,
    /// Finishing the spool and publishing.
    pub publish: u64,
    /// The whole run.
    pub total: u64,
}

impl Manifest {
    /// Every file of the run beside the manifest: the asset files, the log, then the catalog
    /// exports.
    pub fn all_files(&self) -> impl Iterator<Item = &SpooledFile> {
        self.files
            .iter()
            .chain(self.log.iter())
            .chain(self.exports.iter())
    }

    /// Sums the per-kind counts.
    pub fn sum_counts(counts: &BTreeMap<String, KindCounts>) -> KindCounts {
        counts.values().fold(KindCounts::default(), |mut acc, c| {
            acc.add(c);
            acc
        })
    }
}

/// One added or removed entity.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Changed {
    /// Its kind.
    pub kind: String,
    /// Its qualified name.
    pub name: String,
}

/// The manifest's `changes`: what changed since the workflow's last complete run (see
/// `run::changes`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Changes {
    /// The run compared with: the workflow's last complete run (`null` for its first).
    pub compared_with: Option<String>,
    /// Entities this run published that the last did not (at most 10,000 listed).
    pub added: Vec<Changed>,
    /// How many were added.
    pub added_count: u64,
    /// Entities the last run published that this one did not, and the catalog may mark
    /// removed (at most 10,000 listed; empty when `removals_suppressed`).
    pub removed: Vec<Changed>,
    /// How many are removed.
    pub removed_count: u64,
    /// Why no removal is reported, when none is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removals_suppressed: Option<String>,
    /// Entities missing from this run but kept (not removed) because an object above them
    /// was `unreadable`.
    #[serde(default)]
    pub kept_under_unreadable: u64,
}
