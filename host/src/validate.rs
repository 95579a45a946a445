//! `airlock validate RUN_DIR`: checks a published run the way a consumer relies on it — the
//! manifest, every file's size, hash and line count, the counts per kind, and every asset line
//! against the asset contract version the manifest names.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::pipeline::asset::{qualified_name, AssetKind};
use crate::pipeline::contract::Contract;
use crate::pipeline::manifest::{Manifest, MANIFEST_FORMAT};

/// What validation found.
#[derive(Debug, Default, serde::Serialize)]
pub struct Validation {
    /// The run id the manifest names.
    pub run_id: Option<String>,
    /// The contract version the lines were checked against.
    pub contract: Option<String>,
    /// Asset lines checked.
    pub assets_checked: u64,
    /// The first problems found (at most the limit given), in the order found.
    pub problems: Vec<String>,
    /// Problems found past the limit, counted only.
    pub more_problems: u64,
}

impl Validation {
    /// Whether the run is valid.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, limit: usize, text: String) {
        if self.problems.len() < limit {
            self.problems.push(text);
        } else {
            self.more_problems += 1;
        }
    }
}

/// Validates the published run in `dir`, listing at most `limit` problems.
pub fn validate_run(dir: &Path, limit: usize) -> Validation {
    let limit = limit.max(1);
    let mut v = Validation::default();
    let manifest_path = dir.join("manifest.json");
    let manifest: Manifest = match std::fs::read(&manifest_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(m) => m,
        Err(e) => {
            v.problem(
                limit,
                format!(
                    "{}: not a run's manifest ({e}); a run directory holds manifest.json once it is published whole",
                    manifest_path.display()
                ),
            );
            return v;
        }
    };
    v.run_id = Some(manifest.run_id.clone());
    if manifest.format != MANIFEST_FORMAT {
        v.problem(
            limit,
            format!(
                "manifest format is `{}`, this airlock reads `{MANIFEST_FORMAT}`",
                manifest.format
            ),
        );
    }
    if manifest.status != "complete" {
        v.problem(
            limit,
            format!("manifest status is `{}`, not `complete`", manifest.status),
        );
    }
    let contract = if manifest.contract.is_empty() {
        v.problem(
            limit,
            "the manifest names no asset contract version (a run from before the contract); \
             its lines cannot be checked"
                .into(),
        );
        None
    } else {
        match Contract::of_version(&manifest.contract) {
            Some(c) => Some(c),
            None => {
                v.problem(
                    limit,
                    format!(
                        "the manifest names asset contract {}, this airlock knows {}",
                        manifest.contract,
                        crate::pipeline::contract::CONTRACT_VERSION
                    ),
                );
                None
            }
        }
    };
    v.contract = contract.map(|c| c.version().to_string());

    let mut listed = vec!["manifest.json".to_string()];
    let mut lines_per_kind: BTreeMap<String, u64> = BTreeMap::new();
    for file in manifest.all_files() {
        listed.push(file.path.clone());
        if file.path.contains(['/', '\\']) || file.path.starts_with('.') {
            v.problem(
                limit,
                format!("the manifest lists `{}`, not a file name", file.path),
            );
            continue;
        }
        let path = dir.join(&file.path);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                v.problem(limit, format!("{}: {e}", file.path));
                continue;
            }
        };
        if bytes.len() as u64 != file.bytes {
            v.problem(
                limit,
                format!(
                    "{}: {} bytes, the manifest says {}",
                    file.path,
                    bytes.len(),
                    file.bytes
                ),
            );
        }
        let sha = hex::encode(Sha256::digest(&bytes));
        if sha != file.sha256 {
            v.problem(
                limit,
                format!(
                    "{}: SHA-256 {sha}, the manifest says {}",
                    file.path, file.sha256
                ),
            );
        }
        if file.kind == "log" {
            check_log(&mut v, limit, &file.path, &bytes);
            continue;
        }
        if matches!(file.kind.as_str(), "datahub" | "openmetadata") {
            // A catalog export: its hash and size are checked above; it must be JSON.
            if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
                v.problem(limit, format!("{}: not JSON ({e})", file.path));
            }
            continue;
        }
        let kind: Option<AssetKind> = file.kind.parse().ok();
        if kind.is_none() {
            v.problem(
                limit,
                format!("{}: unknown asset kind `{}`", file.path, file.kind),
            );
        }
        let rewritten: Vec<String> = manifest
            .counts
            .get(&file.kind)
            .map(|c| c.fields.keys().cloned().collect())
            .unwrap_or_default();
        let mut lines = 0u64;
        for (i, line) in bytes.lines().enumerate() {
            lines += 1;
            let at = format!("{}:{}", file.path, i + 1);
            let line = match line {
                Ok(l) => l,
                Err(e) => {
                    v.problem(limit, format!("{at}: {e}"));
                    continue;
                }
            };
            v.assets_checked += 1;
            if let Err(e) = check_line(&line, kind, contract, &rewritten) {
                v.problem(limit, format!("{at}: {e}"));
            }
        }
        if !bytes.is_empty() && !bytes.ends_with(b"\n") {
            v.problem(
                limit,
                format!("{}: the last line is not terminated", file.path),
            );
        }
        if lines != file.records {
            v.problem(
                limit,
                format!(
                    "{}: {lines} lines, the manifest says {}",
                    file.path, file.records
                ),
            );
        }
        *lines_per_kind.entry(file.kind.clone()).or_default() += lines;
    }
    for (kind, counts) in &manifest.counts {
        let lines = lines_per_kind.get(kind).copied().unwrap_or(0);
        if counts.kept != lines {
            v.problem(
                limit,
                format!(
                    "counts.{kind}.kept is {}, the files hold {lines} {kind} lines",
                    counts.kept
                ),
            );
        }
    }
    for kind in lines_per_kind.keys() {
        if !manifest.counts.contains_key(kind) {
            v.problem(limit, format!("the manifest has no counts for {kind}"));
        }
    }
    let totals = Manifest::sum_counts(&manifest.counts);
    if totals.kept != manifest.totals.kept || totals.emitted != manifest.totals.emitted {
        v.problem(
            limit,
            "the manifest's totals are not the sum of its counts".into(),
        );
    }
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !listed.contains(&name) {
                    v.problem(
                        limit,
                        format!("`{name}` is in the run directory but not in the manifest"),
                    );
                }
            }
        }
        Err(e) => v.problem(limit, format!("{}: {e}", dir.display())),
    }
    v
}

fn check_line(
    line: &str,
    kind: Option<AssetKind>,
    contract: Option<&Contract>,
    rewritten: &[String],
) -> Result<(), String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Line {
        kind: String,
        qualified_name: String,
        path: Vec<String>,
        attributes: serde_json::Map<String, serde_json::Value>,
    }
    let l: Line = serde_json::from_str(line).map_err(|e| format!("not an asset line: {e}"))?;
    let Some(kind) = kind else { return Ok(()) };
    if l.kind != kind.as_str() {
        return Err(format!("kind `{}` in the {kind} file", l.kind));
    }
    if l.path.len() != kind.path_len() {
        return Err(format!(
            "a {kind} path has {} segments, this one {}",
            kind.path_len(),
            l.path.len()
        ));
    }
    if qualified_name(&l.path) != l.qualified_name {
        return Err("qualified_name does not match path".into());
    }
    if let Some(c) = contract {
        c.check(kind, &l.attributes, &|k| rewritten.iter().any(|r| r == k))
            .map_err(|e| format!("{} {}: {e}", kind, l.qualified_name))?;
    }
    Ok(())
}

fn check_log(v: &mut Validation, limit: usize, name: &str, bytes: &[u8]) {
    let mut first = true;
    for (i, line) in bytes.lines().enumerate() {
        let Ok(line) = line else {
            v.problem(limit, format!("{name}:{}: not UTF-8", i + 1));
            return;
        };
        match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(event) => {
                if first && event["event"] != "run-started" {
                    v.problem(limit, format!("{name}: does not start with run-started"));
                }
            }
            Err(e) => v.problem(limit, format!("{name}:{}: not JSON ({e})", i + 1)),
        }
        first = false;
    }
}
