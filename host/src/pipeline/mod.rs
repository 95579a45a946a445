//! The data-minimization pipeline: validate -> include/exclude and kinds -> field rules ->
//! size limits (bytes per asset, assets per kind) -> secret scan -> spool, with counts for the
//! manifest.
//!
//! Every asset a plugin emits passes through [`Pipeline::accept`] inside the `emit` host call,
//! so nothing reaches the output that the host has not checked.

pub mod asset;
pub mod config;
pub mod contract;
pub mod fields;
pub mod filter;
pub mod manifest;
pub mod scan;
pub mod spool;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::runtime::limits::{LimitExceeded, Limits};
use crate::state::RunAudit;
use asset::{is_invisible_format, qualified_name, AssetKind};
use config::OnSecret;
use fields::{FieldCounts, HashKeys};
use filter::{FilterPolicy, PatternMatches};
use manifest::ConfusableName;
use scan::OutboundScanner;
use spool::{SpoolWriter, SpooledFile};

/// Maximum bytes of one path segment.
const MAX_SEGMENT_BYTES: usize = 1024;
/// Maximum assets in one emit call.
const MAX_BATCH_ASSETS: usize = 100_000;
/// Kept names confusable with an exclude pattern listed in the manifest; the rest are counted.
const MAX_CONFUSABLES_LISTED: usize = 100;

/// An asset as it arrives from a plugin, before any check.
#[derive(Debug, Clone)]
pub struct EmittedAsset {
    /// Its kind.
    pub kind: AssetKind,
    /// Its path; the shape depends on the kind.
    pub path: Vec<String>,
    /// Its attributes; must be a JSON object.
    pub attributes_json: String,
}

/// Per-kind counts for the manifest.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct KindCounts {
    /// Assets the plugin emitted.
    pub emitted: u64,
    /// Assets written to the output.
    pub kept: u64,
    /// Assets dropped by include/exclude or the kind allow-list.
    pub dropped_filter: u64,
    /// Assets dropped because they exceeded `limits.asset_kb` (after field rules).
    pub dropped_oversize: u64,
    /// Assets dropped because `filters.max_per_kind` of their kind were already kept.
    #[serde(default)]
    pub dropped_kind_limit: u64,
    /// Assets withheld because their output held a secret resolved by the run.
    #[serde(default)]
    pub quarantined: u64,
    /// Assets dropped because an attribute had the wrong type or was out of the asset
    /// contract's bounds (see the manifest's warnings for which).
    #[serde(default)]
    pub dropped_invalid: u64,
    /// Attribute keys the asset contract does not name, dropped from the assets (which were
    /// kept).
    #[serde(default)]
    pub unknown_keys_dropped: u64,
    /// Values changed by field rules: field -> action (`drop`, `mask`, `hash`, `truncate`,
    /// `redact`) -> number of assets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: FieldCounts,
}

impl KindCounts {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &KindCounts) {
        self.emitted += other.emitted;
        self.kept += other.kept;
        self.dropped_filter += other.dropped_filter;
        self.dropped_oversize += other.dropped_oversize;
        self.dropped_kind_limit += other.dropped_kind_limit;
        self.quarantined += other.quarantined;
        self.dropped_invalid += other.dropped_invalid;
        self.unknown_keys_dropped += other.unknown_keys_dropped;
        for (field, actions) in &other.fields {
            let mine = self.fields.entry(field.clone()).or_default();
            for (action, n) in actions {
                *mine.entry(action.clone()).or_default() += n;
            }
        }
    }
}

/// Why the pipeline refused a batch; every variant fails the run.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The plugin emitted something malformed.
    #[error("plugin emitted an invalid asset: {0}")]
    Invalid(String),
    /// A run limit was hit.
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
    /// Writing the spool failed (full disk, permissions, ...).
    #[error("cannot write the output spool: {0}")]
    Io(#[from] std::io::Error),
    /// The outbound scan found a secret resolved by this run; the asset was quarantined.
    #[error("{0}")]
    SecretDetected(String),
    /// The filter policy cannot be applied (e.g. an HMAC key is missing).
    #[error("filters: {0}")]
    Policy(String),
}

/// The per-run pipeline state.
pub struct Pipeline {
    policy: FilterPolicy,
    spool: SpoolWriter,
    counts: BTreeMap<AssetKind, KindCounts>,
    max_assets: u64,
    max_bytes: u64,
    asset_bytes: usize,
    call_bytes: usize,
    total_assets: u64,
    total_bytes: u64,
    warnings: Vec<String>,
    hash_keys: HashKeys,
    scanner: Arc<OutboundScanner>,
    audit: Option<RunAudit>,
    matched: PatternMatches,
    confusables: Vec<ConfusableName>,
    confusables_not_listed: u64,
    dropped_names: DroppedNames,
    /// Why assets broke the contract: (kind, problem) -> assets, the first
    /// [`MAX_CONTRACT_PROBLEMS`] distinct problems.
    contract_problems: BTreeMap<(AssetKind, String), u64>,
    /// What the run published of the kinds a catalog keeps as entities, for comparing with
    /// the workflow's last complete run.
    entities: Entities,
}

/// The kinds whose published names a run records: a catalog's entities (containers and
/// datasets); a removal is reported only for these.
pub const ENTITY_KINDS: [AssetKind; 5] = [
    AssetKind::Database,
    AssetKind::Schema,
    AssetKind::Table,
    AssetKind::View,
    AssetKind::MaterializedView,
];

/// The entities a run published: qualified name -> kind, and the paths the plugin reported
/// it could not read below (`unreadable`).
#[derive(Debug, Clone, Default)]
pub struct Entities {
    /// Qualified name -> kind, of every kept asset of the [`ENTITY_KINDS`].
    pub names: BTreeMap<String, AssetKind>,
    /// Paths of kept assets whose `unreadable` attribute is set.
    pub unreadable: Vec<Vec<String>>,
}

/// Distinct contract problems the manifest's warnings describe; the rest are only counted.
const MAX_CONTRACT_PROBLEMS: usize = 20;

/// The names (last path segment) of assets the filters dropped or the scan quarantined, so
/// that the plugin's warnings cannot carry them out ([`DroppedNames::withholds`]). Bounded:
/// past [`DroppedNames::MAX_BYTES`] of names every plugin warning is withheld instead.
#[derive(Debug, Default, Clone)]
pub struct DroppedNames {
    names: std::collections::HashSet<String>,
    bytes: usize,
    overflow: bool,
    case_sensitive: bool,
    matcher: std::sync::OnceLock<Option<aho_corasick::AhoCorasick>>,
}

impl DroppedNames {
    /// Names (in bytes) kept before every warning is withheld instead.
    pub const MAX_BYTES: usize = 8 << 20;
    /// Shorter names are not matched (they would match ordinary words).
    pub const MIN_CHARS: usize = 3;

    fn note(&mut self, path: &[String]) {
        if self.overflow {
            return;
        }
        let Some(name) = path.last() else { return };
        if name.chars().count() < Self::MIN_CHARS || self.names.contains(name) {
            return;
        }
        self.bytes += name.len();
        if self.bytes > Self::MAX_BYTES {
            self.overflow = true;
            self.names.clear();
            return;
        }
        self.names.insert(name.clone());
    }

    /// Whether `warning` must be withheld: it names a dropped asset (case-insensitively when
    /// the filters match so), or too many names were dropped to check.
    pub fn withholds(&self, warning: &str) -> bool {
        if self.overflow {
            return true;
        }
        if self.names.is_empty() {
            return false;
        }
        let matcher = self.matcher.get_or_init(|| {
            let fold = |n: &String| {
                if self.case_sensitive {
                    n.clone()
                } else {
                    n.to_lowercase()
                }
            };
            aho_corasick::AhoCorasick::new(self.names.iter().map(fold)).ok()
        });
        match matcher {
            Some(m) if self.case_sensitive => m.is_match(warning),
            Some(m) => m.is_match(&warning.to_lowercase()),
            // cannot check: withhold
            None => true,
        }
    }
}

#[derive(Serialize)]
struct OutputLine<'a> {
    kind: &'static str,
    qualified_name: &'a str,
    path: &'a [String],
    attributes: &'a serde_json::value::RawValue,
}

impl Pipeline {
    /// A pipeline that spools kept assets into `spool_dir`.
    pub fn new(policy: FilterPolicy, limits: &Limits, spool_dir: &Path) -> Self {
        Pipeline {
            matched: policy.pattern_matches(),
            confusables: Vec::new(),
            confusables_not_listed: 0,
            dropped_names: DroppedNames {
                case_sensitive: policy.case_sensitive(),
                ..Default::default()
            },
            policy,
            spool: SpoolWriter::new(spool_dir),
            counts: BTreeMap::new(),
            max_assets: limits.max_assets,
            max_bytes: limits.max_output_mb.saturating_mul(1 << 20),
            asset_bytes: limits.asset_kb.saturating_mul(1024),
            call_bytes: limits.call_bytes,
            total_assets: 0,
            total_bytes: 0,
            warnings: Vec::new(),
            hash_keys: HashKeys::default(),
            scanner: Arc::new(OutboundScanner::new()),
            audit: None,
            contract_problems: BTreeMap::new(),
            entities: Entities::default(),
        }
    }

    /// Spools into encrypted files under `key` instead (see [`spool`]); before any asset.
    pub fn with_spool_key(mut self, key: Option<std::sync::Arc<spool::SpoolKey>>) -> Self {
        if let Some(key) = key {
            self.spool = self.spool.encrypt_under(key);
        }
        self
    }

    /// Scans every output line with `scanner` (which the run's logins feed) and audits hits.
    pub fn with_scanner(mut self, scanner: Arc<OutboundScanner>, audit: RunAudit) -> Self {
        self.scanner = scanner;
        self.audit = Some(audit);
        self
    }

    /// The HMAC keys of the policy's `hash` rules.
    pub fn with_hash_keys(mut self, keys: HashKeys) -> Self {
        self.hash_keys = keys;
        self
    }

    fn warn(&mut self, message: String) {
        if self.warnings.len() < 100 {
            self.warnings.push(message);
        }
    }

    /// The filter policy in force.
    pub fn policy(&self) -> &FilterPolicy {
        &self.policy
    }

    /// Checks, filters and spools one batch. Any error fails the run.
    pub fn accept(&mut self, batch: Vec<EmittedAsset>) -> Result<(), PipelineError> {
        if batch.len() > MAX_BATCH_ASSETS {
            return Err(LimitExceeded::CallSize(format!(
                "one emit call carried {} assets; the maximum is {MAX_BATCH_ASSETS}",
                batch.len()
            ))
            .into());
        }
        let batch_bytes: usize = batch.iter().map(asset_size).sum();
        if batch_bytes > self.call_bytes {
            return Err(LimitExceeded::CallSize(format!(
                "one emit call carried {batch_bytes} bytes; limits.call_bytes is {}",
                self.call_bytes
            ))
            .into());
        }
        for asset in batch {
            self.accept_one(asset)?;
        }
        Ok(())
    }

    fn accept_one(&mut self, asset: EmittedAsset) -> Result<(), PipelineError> {
        let size = asset_size(&asset);
        self.total_assets += 1;
        self.total_bytes += size as u64;
        if self.total_assets > self.max_assets {
            return Err(LimitExceeded::Output(format!(
                "the plugin emitted more than {} assets (limits.max_assets)",
                self.max_assets
            ))
            .into());
        }
        if self.total_bytes > self.max_bytes {
            return Err(LimitExceeded::Output(format!(
                "the plugin emitted more than {} MiB (limits.max_output_mb)",
                self.max_bytes >> 20
            ))
            .into());
        }
        validate_path(asset.kind, &asset.path)?;
        let kind = asset.kind;
        self.counts.entry(kind).or_default().emitted += 1;
        let name = qualified_name(&asset.path);
        // Validate without building a map: the raw text is checked to be one JSON value
        // and an object.
        let attributes: &serde_json::value::RawValue =
            match serde_json::from_str(&asset.attributes_json) {
                Ok(raw) => raw,
                Err(e) => {
                    return Err(PipelineError::Invalid(format!(
                        "{kind} {name}: attributes are not valid JSON ({e})"
                    )))
                }
            };
        if !attributes.get().trim_start().starts_with('{') {
            return Err(PipelineError::Invalid(format!(
                "{kind} {name}: attributes are not a JSON object"
            )));
        }
        // The contract before the filters: what the filters and field rules see is what a
        // consumer may rely on. Problems name contract attributes only, never a key or an
        // asset the plugin chose (the asset may be one the filters drop).
        let trimmed;
        let attributes = match contract::Contract::current().enforce(kind, attributes.get()) {
            Ok(contract::Enforced::Unchanged) => attributes,
            Ok(contract::Enforced::Trimmed { json, dropped }) => {
                self.counts.entry(kind).or_default().unknown_keys_dropped += dropped;
                trimmed = serde_json::value::RawValue::from_string(json)
                    .map_err(|e| PipelineError::Invalid(format!("{kind}: {e}")))?;
                trimmed.as_ref()
            }
            Err(problem) => {
                self.counts.entry(kind).or_default().dropped_invalid += 1;
                let key = (kind, problem);
                if let Some(n) = self.contract_problems.get_mut(&key) {
                    *n += 1;
                } else if self.contract_problems.len() < MAX_CONTRACT_PROBLEMS {
                    self.contract_problems.insert(key, 1);
                }
                self.dropped_names.note(&asset.path);
                return Ok(());
            }
        };
        self.policy.note_matches(&asset.path, &mut self.matched);
        if !self.policy.decide(kind, &asset.path).keeps() {
            self.counts.entry(kind).or_default().dropped_filter += 1;
            self.dropped_names.note(&asset.path);
            return Ok(());
        }
        if let Some(max) = self.policy.max_for(kind) {
            let counts = self.counts.entry(kind).or_default();
            if counts.kept >= max {
                counts.dropped_kind_limit += 1;
                if counts.dropped_kind_limit == 1 {
                    self.warn(format!(
                        "kept the first {max} {kind} assets (filters.max_per_kind); the rest are dropped and counted"
                    ));
                }
                return Ok(());
            }
        }
        // Rewrite the attributes when a field rule applies, when the text has line breaks
        // (one asset stays one line), and when the run has secrets to scan for and the text
        // has escapes: the canonical form leaves no `\u` escapes a secret could hide behind
        // (text without a backslash is already in that form). Keys keep the plugin's order
        // either way (serde_json's `preserve_order`). Field changes count only for assets
        // that are written.
        let mut changed = FieldCounts::new();
        let rewritten;
        let attributes = if self.policy.fields().applies_to(kind)
            || (self.scanner.is_armed() && attributes.get().contains('\\'))
            || attributes.get().contains(['\n', '\r'])
        {
            let mut map: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(attributes.get())
                    .map_err(|e| PipelineError::Invalid(format!("{kind} {name}: {e}")))?;
            self.policy
                .fields()
                .apply(kind, &mut map, &self.hash_keys, &mut changed)
                .map_err(PipelineError::Policy)?;
            rewritten = serde_json::value::to_raw_value(&map)
                .map_err(|e| PipelineError::Invalid(format!("{kind} {name}: {e}")))?;
            rewritten.as_ref()
        } else {
            attributes
        };
        let size = attributes.get().len() + asset.path.iter().map(String::len).sum::<usize>();
        if size > self.asset_bytes {
            self.counts.entry(kind).or_default().dropped_oversize += 1;
            self.warn(format!(
                "dropped {kind} {name}: {size} bytes exceed limits.asset_kb"
            ));
            return Ok(());
        }
        let line = serde_json::to_vec(&OutputLine {
            kind: kind.as_str(),
            qualified_name: &name,
            path: &asset.path,
            attributes,
        })
        .map_err(|e| PipelineError::Invalid(format!("{kind} {name}: {e}")))?;
        if let Some(encoding) = self.scanner.find(&line) {
            return self.quarantine(kind, &name, encoding);
        }
        self.spool.write_line(kind, &line)?;
        if ENTITY_KINDS.contains(&kind) {
            if attributes.get().contains("\"unreadable\"") {
                let map: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(attributes.get()).unwrap_or_default();
                if map.get("unreadable").is_some_and(|v| !v.is_null()) {
                    self.entities.unreadable.push(asset.path.clone());
                }
            }
            self.entities.names.insert(name.clone(), kind);
        }
        let counts = self.counts.entry(kind).or_default();
        counts.kept += 1;
        counts.add(&KindCounts {
            fields: changed,
            ..KindCounts::default()
        });
        // Exclude is no boundary against a plugin that renames: say when what is written
        // looks like what an exclude pattern meant to drop.
        if let Some(pattern) = self.policy.confusable_exclude(&asset.path) {
            if self.confusables.len() < MAX_CONFUSABLES_LISTED {
                self.confusables.push(ConfusableName {
                    kind: kind.as_str().to_string(),
                    name,
                    pattern: pattern.to_string(),
                });
            } else {
                self.confusables_not_listed += 1;
            }
        }
        Ok(())
    }

    /// Withholds an asset whose output holds a resolved secret, audits it (naming the asset,
    /// never the secret) and fails the run unless `filters.on_secret = "quarantine"`.
    fn quarantine(
        &mut self,
        kind: AssetKind,
        name: &str,
        encoding: &str,
    ) -> Result<(), PipelineError> {
        self.counts.entry(kind).or_default().quarantined += 1;
        if let Ok(path) = filter::parse_qualified_name(name) {
            self.dropped_names.note(&path);
        }
        let shown = if self.scanner.find(name.as_bytes()).is_some() {
            "(name withheld: it holds the secret)"
        } else {
            name
        };
        let detail = format!(
            "{kind} {shown} quarantined: its output holds a secret this run resolved ({encoding} form); it was not written"
        );
        if let Some(audit) = &self.audit {
            audit.record("secret-scan", "denied", None, None, Some(&detail));
        }
        self.warn(detail.clone());
        match self.policy.on_secret() {
            OnSecret::Quarantine => Ok(()),
            OnSecret::Fail => Err(PipelineError::SecretDetected(format!(
                "outbound secret scan: {detail}; the run fails (filters.on_secret = \"fail\")"
            ))),
        }
    }

    /// Finishes the spool: flushed, synced and hashed files plus the counts.
    pub fn finish(mut self) -> Result<PipelineOutput, PipelineError> {
        let confusable = self.confusables.len() as u64 + self.confusables_not_listed;
        if confusable > 0 {
            // past the cap of `warn`: this one is always said
            self.warnings.push(format!(
                "{confusable} kept assets have names confusable with an exclude pattern \
                 (filter.confusable_with_exclude): a plugin may have renamed what the pattern \
                 meant to drop; filters.include is the boundary, not filters.exclude"
            ));
        }
        for ((kind, problem), n) in &self.contract_problems {
            self.warnings.push(format!(
                "dropped {n} {kind} assets breaking asset contract {}: {problem}",
                contract::CONTRACT_VERSION
            ));
        }
        let files = self.spool.finish()?;
        Ok(PipelineOutput {
            unmatched_patterns: self.policy.unmatched(&self.matched),
            confusables: self.confusables,
            confusables_not_listed: self.confusables_not_listed,
            files,
            counts: self
                .counts
                .into_iter()
                .map(|(k, v)| (k.as_str().to_string(), v))
                .collect(),
            warnings: self.warnings,
            dropped_names: self.dropped_names,
            entities: self.entities,
        })
    }
}

/// What the pipeline produced.
#[derive(Debug, Clone)]
pub struct PipelineOutput {
    /// The spooled files.
    pub files: Vec<SpooledFile>,
    /// Counts per asset kind.
    pub counts: BTreeMap<String, KindCounts>,
    /// Problems worth telling the operator.
    pub warnings: Vec<String>,
    /// Include and exclude patterns that matched no emitted asset (see
    /// [`FilterPolicy::unmatched`]).
    pub unmatched_patterns: Vec<String>,
    /// Kept assets whose names are confusable with an exclude pattern, the first
    /// [`MAX_CONFUSABLES_LISTED`].
    pub confusables: Vec<ConfusableName>,
    /// Further such assets, counted.
    pub confusables_not_listed: u64,
    /// Names of the assets that were dropped, which plugin warnings may not carry.
    pub dropped_names: DroppedNames,
    /// The entities the run published.
    pub entities: Entities,
}

fn asset_size(a: &EmittedAsset) -> usize {
    a.attributes_json.len() + a.path.iter().map(String::len).sum::<usize>()
}

fn validate_path(kind: AssetKind, path: &[String]) -> Result<(), PipelineError> {
    if path.len() != kind.path_len() {
        return Err(PipelineError::Invalid(format!(
            "a {kind} path must have {} segments, got {}",
            kind.path_len(),
            path.len()
        )));
    }
    for seg in path {
        if seg.is_empty() {
            return Err(PipelineError::Invalid(format!(
                "{kind} path has an empty segment"
            )));
        }
        if seg.len() > MAX_SEGMENT_BYTES {
            return Err(PipelineError::Invalid(format!(
                "{kind} path segment of {} bytes exceeds {MAX_SEGMENT_BYTES}",
                seg.len()
            )));
        }
        if seg.chars().any(char::is_control) {
            return Err(PipelineError::Invalid(format!(
                "{kind} path segment contains a control character"
            )));
        }
        // Invisible characters make a name look like another (a zero-width space inside an
        // excluded name) or reorder how it is shown (bidi controls): refused like controls.
        if let Some(c) = seg.chars().find(|&c| is_invisible_format(c)) {
            return Err(PipelineError::Invalid(format!(
                "{kind} path segment contains an invisible format character U+{:04X} \
                 (Unicode general category Cf, Zl or Zp)",
                c as u32
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::config::{FilterConfig, OnSecret};
    use super::*;

    fn asset(kind: AssetKind, path: &str, attrs: &str) -> EmittedAsset {
        EmittedAsset {
            kind,
            path: path.split('.').map(str::to_string).collect(),
            attributes_json: attrs.to_string(),
        }
    }

    fn pipeline(dir: &Path, limits: &Limits, exclude: &[&str]) -> Pipeline {
        let policy = FilterPolicy::compile(&FilterConfig {
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .unwrap();
        Pipeline::new(policy, limits, dir)
    }

    #[test]
    fn counts_and_files_agree() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = pipeline(dir.path(), &Limits::default(), &["db.s.secret_*"]);
        p.accept(vec![
            asset(AssetKind::Table, "db.s.a", "{}"),
            asset(AssetKind::Table, "db.s.secret_b", "{}"),
            asset(AssetKind::Column, "db.s.a.id", r#"{"ordinal":1}"#),
        ])
        .unwrap();
        let out = p.finish().unwrap();
        assert_eq!(out.counts["table"].emitted, 2);
        assert_eq!(out.counts["table"].kept, 1);
        assert_eq!(out.counts["table"].dropped_filter, 1);
        let table = out.files.iter().find(|f| f.kind == "table").unwrap();
        let text = std::fs::read_to_string(dir.path().join(&table.path)).unwrap();
        assert_eq!(text.lines().count() as u64, table.records);
        assert!(text.contains("\"qualified_name\":\"db.s.a\""));
    }

    #[test]
    fn pretty_printed_attributes_stay_on_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = pipeline(dir.path(), &Limits::default(), &[]);
        p.accept(vec![asset(
            AssetKind::Table,
            "db.s.t",
            "{\n  \"comment\": \"x\\ny\"\r\n}",
        )])
        .unwrap();
        let out = p.finish().unwrap();
        let text = std::fs::read_to_string(dir.path().join(&out.files[0].path)).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains(r#""attributes":{"comment":"x\ny"}"#),
            "{text}"
        );
    }

    #[test]
    fn invalid_assets_fail() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = pipeline(dir.path(), &Limits::default(), &[]);
        let e = p
            .accept(vec![asset(AssetKind::Table, "db.s", "{}")])
            .unwrap_err();
        assert!(e.to_string().contains("3 segments"), "{e}");
        let e = p
            .accept(vec![asset(AssetKind::Table, "db.s.t", "[1]")])
            .unwrap_err();
        assert!(e.to_string().contains("not a JSON object"), "{e}");
        let e = p
            .accept(vec![asset(AssetKind::Table, "db.s.t", "{")])
            .unwrap_err();
        assert!(e.to_string().contains("not valid JSON"), "{e}");
    }

    #[test]
    fn invisible_format_characters_in_paths_fail() {
        for (name, code) in [
            ("au\u{200B}dit", "U+200B"),
            ("audit\u{202E}txt", "U+202E"),
            ("au\u{2028}dit", "U+2028"),
            ("\u{FEFF}audit", "U+FEFF"),
            ("au\u{00AD}dit", "U+00AD"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let mut p = pipeline(dir.path(), &Limits::default(), &[]);
            let e = p
                .accept(vec![EmittedAsset {
                    kind: AssetKind::Table,
                    path: vec!["db".into(), "s".into(), name.into()],
                    attributes_json: "{}".into(),
                }])
                .unwrap_err();
            assert!(matches!(e, PipelineError::Invalid(_)), "{e}");
            assert!(e.to_string().contains(code), "{e}");
            assert!(e.to_string().contains("invisible format character"), "{e}");
        }
    }

    #[test]
    fn unmatched_patterns_and_confusable_names_reach_the_output() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = pipeline(
            dir.path(),
            &Limits::default(),
            &["db.s.audit", "db.s.secret", "db.s.typo"],
        );
        let mut batch = vec![
            asset(AssetKind::Table, "db.s.audit", "{}"),
            asset(AssetKind::Table, "db.s.secret", "{}"),
        ];
        for i in 0..(MAX_CONFUSABLES_LISTED + 2) {
            // Cyrillic а: kept, flagged (through the table for its columns)
            batch.push(EmittedAsset {
                kind: AssetKind::Column,
                path: vec![
                    "db".into(),
                    "s".into(),
                    "\u{0430}udit".into(),
                    format!("c{i}"),
                ],
                attributes_json: "{}".into(),
            });
        }
        p.accept(batch).unwrap();
        let out = p.finish().unwrap();
        assert_eq!(out.unmatched_patterns, vec!["filters.exclude: `db.s.typo`"]);
        assert_eq!(out.counts["column"].kept, MAX_CONFUSABLES_LISTED as u64 + 2);
        assert_eq!(out.confusables.len(), MAX_CONFUSABLES_LISTED);
        assert_eq!(out.confusables_not_listed, 2);
        assert_eq!(
            out.confusables[0],
            ConfusableName {
                kind: "column".into(),
                name: "db.s.\u{0430}udit.c0".into(),
                pattern: "db.s.audit".into(),
            }
        );
        assert!(
            out.warnings
                .iter()
                .any(|w| w.starts_with("102 kept assets have names confusable")),
            "{:?}",
            out.warnings
        );
    }

    #[test]
    fn kind_caps_and_secret_quarantine_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let policy = FilterPolicy::compile(&FilterConfig {
            max_per_kind: [("column".to_string(), 2)].into_iter().collect(),
            on_secret: Some(OnSecret::Quarantine),
            ..Default::default()
        })
        .unwrap();
        let scanner = Arc::new(OutboundScanner::new());
        scanner.register(&crate::secrets::SecretString::new("hunter22".into()));
        let audit = RunAudit::new(None, "r", None, None);
        let mut p = Pipeline::new(policy, &Limits::default(), dir.path())
            .with_scanner(scanner.clone(), audit.clone());
        p.accept(vec![
            asset(AssetKind::Column, "db.s.t.a", "{}"),
            // `\u0068` is `h`: the canonical rewrite undoes the escape before the scan
            asset(
                AssetKind::Column,
                "db.s.t.b",
                r#"{"comment":"pw \u0068unter22"}"#,
            ),
            asset(AssetKind::Column, "db.s.t.c", "{}"),
            asset(AssetKind::Column, "db.s.t.d", "{}"),
            asset(AssetKind::Table, "db.s.aHVudGVyMjI", "{}"),
        ])
        .unwrap();
        let out = p.finish().unwrap();
        let c = &out.counts["column"];
        assert_eq!(
            (c.emitted, c.kept, c.quarantined, c.dropped_kind_limit),
            (4, 2, 1, 1)
        );
        assert_eq!(out.counts["table"].quarantined, 1);
        assert_eq!(out.counts["table"].kept, 0);
        assert!(
            out.warnings.iter().any(|w| w.contains("(name withheld")),
            "{:?}",
            out.warnings
        );
        assert!(out.warnings.iter().all(|w| !w.contains("hunter22")));

        // the default fails the run
        let dir = tempfile::tempdir().unwrap();
        let policy = FilterPolicy::compile(&FilterConfig::default()).unwrap();
        let mut p =
            Pipeline::new(policy, &Limits::default(), dir.path()).with_scanner(scanner, audit);
        let e = p
            .accept(vec![asset(
                AssetKind::Table,
                "db.s.t",
                r#"{"comment":"68756e7465723232"}"#,
            )])
            .unwrap_err();
        assert!(matches!(e, PipelineError::SecretDetected(_)), "{e}");
        assert!(e.to_string().contains("(hex form)"), "{e}");

        // A secret hidden behind `\u` escapes is caught: text with escapes is rewritten to
        // the canonical form before the scan.
        let dir = tempfile::tempdir().unwrap();
        let policy = FilterPolicy::compile(&FilterConfig::default()).unwrap();
        let scanner = Arc::new(OutboundScanner::new());
        scanner.register(&crate::secrets::SecretString::new("hunter22".into()));
        let mut p = Pipeline::new(policy, &Limits::default(), dir.path())
            .with_scanner(scanner, RunAudit::new(None, "t", None, None));
        p.accept(vec![asset(
            AssetKind::Table,
            "db.s.ok",
            r#"{"comment":"tab\there","row_count_estimate":1}"#,
        )])
        .unwrap();
        let escaped: String = "hunter22"
            .chars()
            .map(|c| format!("\\u{:04x}", c as u32))
            .collect();
        let e = p
            .accept(vec![asset(
                AssetKind::Table,
                "db.s.t",
                &format!(r#"{{"comment":"{escaped}"}}"#),
            )])
            .unwrap_err();
        assert!(matches!(e, PipelineError::SecretDetected(_)), "{e}");
    }

    #[test]
    fn limits_are_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_assets: 2,
            asset_kb: 1,
            ..Limits::default()
        };
        let mut p = pipeline(dir.path(), &limits, &[]);
        let big = format!("{{\"comment\":\"{}\"}}", "a".repeat(2000));
        p.accept(vec![asset(AssetKind::Table, "db.s.big", &big)])
            .unwrap();
        p.accept(vec![asset(AssetKind::Table, "db.s.t", "{}")])
            .unwrap();
        let e = p
            .accept(vec![asset(AssetKind::Table, "db.s.u", "{}")])
            .unwrap_err();
        assert!(
            matches!(e, PipelineError::Limit(LimitExceeded::Output(_))),
            "{e}"
        );
        let out = p.finish().unwrap();
        assert_eq!(out.counts["table"].dropped_oversize, 1);
        assert_eq!(out.counts["table"].kept, 1);
    }
}
