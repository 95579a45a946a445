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
//! Exclude wins over include. Matching is case-sensitive unless `case_sensitive = false`, or
//! the source engine's identifiers are case-insensitive ([`default_case_sensitive`]).

use std::collections::BTreeMap;
use std::fmt;

use regex::{Regex, RegexBuilder};
use sha2::{Digest, Sha256};

use super::asset::{qualified_name, AssetKind};
use super::fields::FieldPolicy;
use crate::config::{FilterConfig, OnSecret};

/// A compiled filter policy.
#[derive(Debug, Clone)]
pub struct FilterPolicy {
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
    kinds: Vec<AssetKind>,
    case_sensitive: bool,
    fields: FieldPolicy,
    max_per_kind: BTreeMap<AssetKind, u64>,
    on_secret: OnSecret,
    digest: String,
}

/// Whether names of a source are matched case-sensitively when `filters.case_sensitive` is
/// unset. `plugin` is `source.plugin`: a name, or a `.wasm` path whose file stem is the name.
/// SQLite identifiers are case-insensitive (a database cannot hold both `Orders` and
/// `orders`), so SQLite matches case-insensitively; PostgreSQL (quoted names keep their case)
/// and MySQL/MariaDB (table names are case-sensitive on Linux) and every other plugin match
/// case-sensitively.
pub fn default_case_sensitive(plugin: &str) -> bool {
    let stem = std::path::Path::new(plugin)
        .file_stem()
        .map(|s| s.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    stem != "sqlite"
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

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::KeptAll => f.write_str("kept: filters.include is empty, so everything is"),
            Decision::Included(p) => write!(f, "kept: included by `{p}`"),
            Decision::Excluded(p) => write!(f, "dropped: excluded by `{p}`"),
            Decision::NotIncluded => f.write_str("dropped: no include pattern matches"),
            Decision::KindNotAllowed => f.write_str("dropped: its kind is not in filters.kinds"),
        }
    }
}

/// A pattern that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("filters: {0}")]
pub struct FilterError(String);

impl FilterPolicy {
    /// Compiles the `[filters]` table; unset `case_sensitive` means case-sensitive.
    pub fn compile(cfg: &FilterConfig) -> Result<Self, FilterError> {
        Self::compile_for(cfg, "")
    }

    /// Compiles the `[filters]` table for a source read by `plugin` (`source.plugin`), which
    /// decides case sensitivity when the table does not.
    pub fn compile_for(cfg: &FilterConfig, plugin: &str) -> Result<Self, FilterError> {
        let case_sensitive = cfg
            .case_sensitive
            .unwrap_or_else(|| default_case_sensitive(plugin));
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
            .map(|p| {
                Pattern::compile(p, case_sensitive)
                    .map_err(|e| FilterError(format!("filters.include: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let exclude = cfg
            .exclude
            .iter()
            .map(|p| {
                Pattern::compile(p, case_sensitive)
                    .map_err(|e| FilterError(format!("filters.exclude: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let fields = FieldPolicy::compile(&cfg.fields).map_err(FilterError)?;
        let mut max_per_kind = BTreeMap::new();
        for (k, n) in &cfg.max_per_kind {
            let kind = k
                .parse::<AssetKind>()
                .map_err(|e| FilterError(format!("filters.max_per_kind: {e}")))?;
            max_per_kind.insert(kind, *n);
        }
        // The digest covers the resolved case sensitivity, which the engine may have chosen.
        let mut resolved = cfg.clone();
        resolved.case_sensitive = Some(case_sensitive);
        let canonical = serde_json::to_vec(&resolved).unwrap_or_default();
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&canonical)));
        Ok(FilterPolicy {
            include,
            exclude,
            kinds,
            case_sensitive,
            fields,
            max_per_kind,
            on_secret: cfg.on_secret.unwrap_or_default(),
            digest,
        })
    }

    /// Whether name patterns match case-sensitively.
    pub fn case_sensitive(&self) -> bool {
        self.case_sensitive
    }

    /// The field rules.
    pub fn fields(&self) -> &FieldPolicy {
        &self.fields
    }

    /// The cap on kept assets of `kind`, if any.
    pub fn max_for(&self, kind: AssetKind) -> Option<u64> {
        self.max_per_kind.get(&kind).copied()
    }

    /// What a secret found in the output does.
    pub fn on_secret(&self) -> OnSecret {
        self.on_secret
    }

    /// Explains the decision for a qualified name (as the output writes it); without `kind`
    /// the kind allow-list is not consulted.
    pub fn explain(&self, name: &str, kind: Option<AssetKind>) -> Result<Explanation, String> {
        let path = parse_qualified_name(name)?;
        let decision = match kind {
            Some(k) => self.decide(k, &path),
            None => self.decide_path(&path),
        };
        let fields = self
            .fields
            .rules()
            .iter()
            .filter(|r| kind.is_none_or(|k| r.applies_to(k)))
            .map(|r| r.to_string())
            .collect();
        Ok(Explanation {
            name: qualified_name(&path),
            kind,
            decision,
            fields,
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
        self.decide_path(path)
    }

    /// Decides on the name alone (include/exclude), whatever the kind.
    pub fn decide_path(&self, path: &[String]) -> Decision {
        // Every emitted asset passes here: without patterns, build no names.
        if self.exclude.is_empty() && self.include.is_empty() {
            return Decision::KeptAll;
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

/// Why one name is kept or dropped, for `airlock filters explain`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Explanation {
    /// The name as the output writes it.
    pub name: String,
    /// The kind asked about, if any.
    pub kind: Option<AssetKind>,
    /// The decision and the pattern behind it.
    pub decision: Decision,
    /// Field rules that apply to assets of this kind (every rule without a kind).
    pub fields: Vec<String>,
}

impl serde::Serialize for Decision {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let (rule, pattern) = match self {
            Decision::KeptAll => ("include-empty", None),
            Decision::Included(p) => ("include", Some(p)),
            Decision::Excluded(p) => ("exclude", Some(p)),
            Decision::NotIncluded => ("not-included", None),
            Decision::KindNotAllowed => ("kind-not-allowed", None),
        };
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("kept", &self.keeps())?;
        m.serialize_entry("rule", rule)?;
        m.serialize_entry("pattern", &pattern)?;
        m.end()
    }
}

/// Splits a qualified name into its segments: `.` separates them, a segment in double quotes
/// may hold `.` and `""` (one `"`), as [`qualified_name`] writes them.
pub fn parse_qualified_name(name: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = name.chars().peekable();
    loop {
        let mut seg = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        seg.push('"');
                    }
                    Some('"') => break,
                    Some(c) => seg.push(c),
                    None => return Err(format!("`{name}`: unterminated quoted segment")),
                }
            }
            if !matches!(chars.peek(), None | Some('.')) {
                return Err(format!("`{name}`: `.` expected after a quoted segment"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                seg.push(c);
                chars.next();
            }
        }
        if seg.is_empty() {
            return Err(format!("`{name}`: empty segment"));
        }
        out.push(seg);
        match chars.next() {
            Some('.') => continue,
            _ => break,
        }
    }
    Ok(out)
}

fn regex(source: &str, case_sensitive: bool) -> Result<Regex, regex::Error> {
    RegexBuilder::new(source)
        .case_insensitive(!case_sensitive)
        .build()
}

impl Pattern {
    fn compile(source: &str, case_sensitive: bool) -> Result<Self, String> {
        if source.trim().is_empty() {
            return Err("empty pattern".into());
        }
        if let Some(re) = source.strip_prefix("re:") {
            let whole = regex(&format!("^(?:{re})$"), case_sensitive).map_err(|e| {
                format!("pattern `{source}` is not a valid regular expression: {e}")
            })?;
            return Ok(Pattern {
                source: source.to_string(),
                whole,
                prefixes: Vec::new(),
            });
        }
        let whole = regex(&format!("^{}$", glob_to_regex(source)), case_sensitive)
            .map_err(|e| format!("pattern `{source}`: {e}"))?;
        let mut prefixes = Vec::new();
        if !source.contains("**") {
            let segments: Vec<&str> = source.split('.').collect();
            for n in 1..segments.len() {
                let re = format!("^{}$", glob_to_regex(&segments[..n].join(".")));
                prefixes.push(
                    regex(&re, case_sensitive).map_err(|e| format!("pattern `{source}`: {e}"))?,
                );
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
            ..Default::default()
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
    fn case_sensitivity_follows_the_engine_unless_set() {
        let cfg = FilterConfig {
            include: vec!["Shop.Main.ORDERS".into(), "re:shop\\.main\\.cust.*".into()],
            ..Default::default()
        };
        let pg = FilterPolicy::compile_for(&cfg, "postgres").unwrap();
        let lite = FilterPolicy::compile_for(&cfg, "/x/plugins/sqlite.wasm").unwrap();
        assert!(pg.case_sensitive());
        assert!(!lite.case_sensitive());
        assert!(FilterPolicy::compile_for(&cfg, "mysql")
            .unwrap()
            .case_sensitive());
        assert_eq!(
            pg.decide(AssetKind::Table, &path("shop.main.orders")),
            Decision::NotIncluded
        );
        assert_eq!(
            lite.decide(AssetKind::Table, &path("shop.main.orders")),
            Decision::Included("Shop.Main.ORDERS".into())
        );
        assert!(lite
            .decide(AssetKind::Table, &path("SHOP.MAIN.Customers"))
            .keeps());
        assert!(!pg
            .decide(AssetKind::Table, &path("SHOP.MAIN.Customers"))
            .keeps());
        let forced = FilterPolicy::compile_for(
            &FilterConfig {
                case_sensitive: Some(true),
                ..cfg.clone()
            },
            "sqlite",
        )
        .unwrap();
        assert!(!forced
            .decide(AssetKind::Table, &path("shop.main.orders"))
            .keeps());
        assert_ne!(pg.digest(), lite.digest());
    }

    #[test]
    fn qualified_names_parse_back() {
        assert_eq!(
            parse_qualified_name("db.\"a.b\".\"t\"\"x\"").unwrap(),
            vec!["db", "a.b", "t\"x"]
        );
        assert!(parse_qualified_name("db..t").is_err());
        assert!(parse_qualified_name("db.\"open").is_err());
        let p = policy(&["shop.main.*"], &["shop.main.\"odd.name\""], &["table"]);
        let e = p.explain("shop.main.\"odd.name\"", None).unwrap();
        assert_eq!(
            e.decision,
            Decision::Excluded("shop.main.\"odd.name\"".into())
        );
        let e = p
            .explain("shop.main.orders", Some(AssetKind::Column))
            .unwrap();
        assert_eq!(e.decision, Decision::KindNotAllowed);
        assert_eq!(
            p.explain("shop.main.orders", None)
                .unwrap()
                .decision
                .to_string(),
            "kept: included by `shop.main.*`"
        );
    }

    #[test]
    fn digest_changes_with_policy() {
        assert_ne!(
            policy(&["a"], &[], &[]).digest(),
            policy(&["b"], &[], &[]).digest()
        );
    }
}
