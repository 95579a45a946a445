//! Include/exclude on qualified names and the asset-kind allow-list.
//!
//! Pattern syntax (documented in the README):
//! - A plain pattern is a glob over the qualified name: `*` matches within one segment
//!   (no `.`), `**` matches across segments, `?` matches one character of a segment.
//! - A pattern starting with `re:` is a regular expression (the `regex` crate: linear time,
//!   no back-references), always anchored at both ends.
//!
//! An asset is **excluded** when an exclude pattern matches its qualified name or the name
//! of one of its ancestors (excluding a schema drops everything in it).
//! An asset is **included** when the include list is empty, or an include pattern matches
//! its name or an ancestor's name (including a table keeps its columns), or — for globs
//! without `**` — the asset is an ancestor of what the glob can match (including
//! `shop.sales.*` keeps the database `shop` and the schema `shop.sales`).
//! Exclude wins over include. Matching is case-sensitive.

use regex::Regex;
use sha2::{Digest, Sha256};

use super::asset::{qualified_name, AssetKind};
use crate::config::FilterConfig;

/// A compiled filter policy.
#[derive(Debug, Clone)]
pub struct FilterPolicy {
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
    kinds: Vec<AssetKind>,
    digest: String,
}

#[derive(Debug, Clone)]
struct Pattern {
    source: String,
    whole: Regex,
    /// For globs without `**`: `prefixes[k]` matches the first `k + 1` segments.
    prefixes: Vec<Regex>,
}

/// Why an asset was kept or dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Kept: no include patterns.
    KeptAll,
    /// Kept by this include pattern.
    Included(String),
    /// Dropped by this exclude pattern.
    Excluded(String),
    /// Dropped: no include pattern matched.
    NotIncluded,
    /// Dropped: its kind is not in the allow-list.
    KindNotAllowed,
}

impl Decision {
    /// Whether the asset is kept.
    pub fn keeps(&self) -> bool {
        matches!(self, Decision::KeptAll | Decision::Included(_))
    }
}

/// A pattern that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("filters: {0}")]
pub struct FilterError(String);

impl FilterPolicy {
    /// Compiles the `[filters]` table.
    pub fn compile(cfg: &FilterConfig) -> Result<Self, FilterError> {
        let kinds = cfg
            .kinds
            .iter()
            .map(|k| {
                k.parse::<AssetKind>()
                    .map_err(|e| FilterError(format!("filters.kinds: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let include = cfg
            .include
            .iter()
            .map(|p| Pattern::compile(p).map_err(|e| FilterError(format!("filters.include: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let exclude = cfg
            .exclude
            .iter()
            .map(|p| Pattern::compile(p).map_err(|e| FilterError(format!("filters.exclude: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let canonical = serde_json::to_vec(cfg).unwrap_or_default();
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&canonical)));
        Ok(FilterPolicy {
            include,
            exclude,
            kinds,
            digest,
        })
    }

    /// SHA-256 of the canonical JSON form of the policy, for the manifest.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Asset kinds allowed; empty means all.
    pub fn kinds(&self) -> &[AssetKind] {
        &self.kinds
    }

    /// Decides whether an asset is kept, and why.
    pub fn decide(&self, kind: AssetKind, path: &[String]) -> Decision {
        if !self.kinds.is_empty() && !self.kinds.contains(&kind) {
            return Decision::KindNotAllowed;
        }
        let names: Vec<String> = (1..=path.len())
            .map(|n| qualified_name(&path[..n]))
            .collect();
        for p in &self.exclude {
            if names.iter().any(|n| p.whole.is_match(n)) {
                return Decision::Excluded(p.source.clone());
            }
        }
        if self.include.is_empty() {
            return Decision::KeptAll;
        }
        let own = names.last().map(String::as_str).unwrap_or("");
        for p in &self.include {
            let self_or_ancestor = names.iter().any(|n| p.whole.is_match(n));
            let container = path
                .len()
                .checked_sub(1)
                .and_then(|k| p.prefixes.get(k))
                .is_some_and(|re| re.is_match(own));
            if self_or_ancestor || container {
                return Decision::Included(p.source.clone());
            }
        }
        Decision::NotIncluded
    }
}

impl Pattern {
    fn compile(source: &str) -> Result<Self, String> {
        if source.trim().is_empty() {
            return Err("empty pattern".into());
        }
        if let Some(re) = source.strip_prefix("re:") {
            let whole = Regex::new(&format!("^(?:{re})$")).map_err(|e| {
                format!("pattern `{source}` is not a valid regular expression: {e}")
            })?;
            return Ok(Pattern {
                source: source.to_string(),
                whole,
                prefixes: Vec::new(),
            });
        }
        let whole = Regex::new(&format!("^{}$", glob_to_regex(source)))
            .map_err(|e| format!("pattern `{source}`: {e}"))?;
        let mut prefixes = Vec::new();
        if !source.contains("**") {
            let segments: Vec<&str> = source.split('.').collect();
            for n in 1..segments.len() {
                let re = format!("^{}$", glob_to_regex(&segments[..n].join(".")));
                prefixes.push(Regex::new(&re).map_err(|e| format!("pattern `{source}`: {e}"))?);
            }
        }
        Ok(Pattern {
            source: source.to_string(),
            whole,
            prefixes,
        })
    }
}

fn glob_to_regex(glob: &str) -> String {
    let mut out = String::new();
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                out.push_str(".*");
            }
            '*' => out.push_str("[^.]*"),
            '?' => out.push_str("[^.]"),
            c => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(include: &[&str], exclude: &[&str], kinds: &[&str]) -> FilterPolicy {
        FilterPolicy::compile(&FilterConfig {
            include: include.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            kinds: kinds.iter().map(|s| s.to_string()).collect(),
        })
        .unwrap()
    }

    fn path(s: &str) -> Vec<String> {
        s.split('.').map(str::to_string).collect()
    }

    #[test]
    fn empty_policy_keeps_everything() {
        let p = policy(&[], &[], &[]);
        assert_eq!(
            p.decide(AssetKind::Table, &path("a.b.c")),
            Decision::KeptAll
        );
    }

    #[test]
    fn glob_star_stays_in_one_segment() {
        let p = policy(&["shop.sales.*"], &[], &[]);
        assert!(p
            .decide(AssetKind::Table, &path("shop.sales.orders"))
            .keeps());
        // descendants of an included table are kept
        assert!(p
            .decide(AssetKind::Column, &path("shop.sales.orders.id"))
            .keeps());
        // ancestors of what the glob can match are kept
        assert!(p.decide(AssetKind::Schema, &path("shop.sales")).keeps());
        assert!(p.decide(AssetKind::Database, &path("shop")).keeps());
        // siblings are not
        assert_eq!(
            p.decide(AssetKind::Table, &path("shop.hr.people")),
            Decision::NotIncluded
        );
        assert!(!p.decide(AssetKind::Schema, &path("shop.hr")).keeps());
    }

    #[test]
    fn exclude_wins_and_covers_descendants() {
        let p = policy(&["shop.**"], &["shop.sales.tmp_*"], &[]);
        assert!(p
            .decide(AssetKind::Table, &path("shop.sales.orders"))
            .keeps());
        assert_eq!(
            p.decide(AssetKind::Column, &path("shop.sales.tmp_x.id")),
            Decision::Excluded("shop.sales.tmp_*".into())
        );
    }

    #[test]
    fn regex_patterns_are_anchored() {
        let p = policy(&["re:shop\\.(sales|hr)\\..*"], &[], &[]);
        assert!(p.decide(AssetKind::Table, &path("shop.hr.people")).keeps());
        assert!(!p.decide(AssetKind::Table, &path("xshop.hr.people")).keeps());
        let p = policy(&[], &["re:sales"], &[]);
        // anchored: "sales" alone does not match "shop.sales"
        assert!(p.decide(AssetKind::Schema, &path("shop.sales")).keeps());
    }

    #[test]
    fn kinds_allow_list() {
        let p = policy(&[], &[], &["table"]);
        assert!(p.decide(AssetKind::Table, &path("a.b.c")).keeps());
        assert_eq!(
            p.decide(AssetKind::Column, &path("a.b.c.d")),
            Decision::KindNotAllowed
        );
    }

    #[test]
    fn bad_regex_is_reported() {
        let err = FilterPolicy::compile(&FilterConfig {
            include: vec!["re:(".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("re:("), "{err}");
    }

    #[test]
    fn digest_changes_with_policy() {
        assert_ne!(
            policy(&["a"], &[], &[]).digest(),
            policy(&["b"], &[], &[]).digest()
        );
    }
}
