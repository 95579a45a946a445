//! Include/exclude on asset paths and the asset-kind allow-list.
//!
//! Pattern syntax (documented in the README):
//! - A plain pattern is a glob over the **segments** of an asset path, written like a
//!   qualified name: segments separated by `.`; a segment may be written in double quotes,
//!   `""` standing for one `"`, and must be when the name holds `.`, `"` or a character listed
//!   below (`shop.main."odd.name"`), exactly as [`parse_qualified_name`] reads names.
//!   - `*` matches any run of characters within one segment — any characters, `.` included:
//!     `shop.main.*` matches the table `odd.name` (qualified `shop.main."odd.name"`).
//!   - `?` matches one character of a segment.
//!   - `**`, written as a segment of its own, matches one or more whole segments: `shop.**` is
//!     everything below the database `shop` (not `shop` itself), `**.tmp` every asset named
//!     `tmp` below something. Within a segment `*` already matches anything, so `tmp_**` is an
//!     error.
//!   - Inside a quoted segment `*` and `?` are still wildcards; a literal `*` or `?` needs a
//!     `re:` pattern.
//! - A pattern starting with `re:` is a regular expression (the `regex` crate: linear time,
//!   no back-references) over the qualified name as [`qualified_name`] writes it, always
//!   anchored at both ends.
//!
//! A pattern that can match no asset name is a configuration error, with what to write
//! instead: more segments than the deepest asset path (4: database.schema.table.column, see
//! [`AssetKind::path_len`]; each `**` counts as one), an empty segment (`shop..t`, `shop.`),
//! an unterminated quoted segment, `**` inside a segment, a `re:` expression that matches
//! nothing at all, or a character no name can hold (control characters and the invisible
//! format characters of [`is_invisible_format`], which the pipeline refuses in names).
//! An **unquoted** segment may hold: ASCII letters and digits, `_`, `$`, `#`, `@`, `-`, spaces
//! (not at its start or end), the wildcards `*` and `?`, and any non-ASCII character that is
//! not whitespace. Every other ASCII character (`[`, `]`, `{`, `}`, `(`, `)`, `/`, `\`, `!`,
//! `%`, `'`, the backtick, `,`, `;`, `:`, `=`, `+`, `|`, `^`, `<`, `>`, `&`, `~`) is refused
//! there: they are glob typos (`[abc]`, `{a,b}`, `!x`, SQL's `%`), regular-expression syntax
//! without `re:`, other quoting styles, or path separators (`shop/main`). A name that really
//! holds one is written as a quoted segment: `"shop/main"`.
//!
//! An asset is **excluded** when an exclude pattern matches its path or the path of one of its
//! ancestors (excluding a schema drops everything in it).
//! An asset is **included** when the include list is empty, or an include pattern matches its
//! path or an ancestor's path (including a table keeps its columns), or — for globs without
//! `**` — the asset is an ancestor of what the glob can match (including `shop.sales.*` keeps
//! the database `shop` and the schema `shop.sales`).
//! Exclude wins over include. Matching is case-sensitive unless `case_sensitive = false`, or
//! the source engine's identifiers are case-insensitive ([`default_case_sensitive`]).
//!
//! **Unmatched patterns.** [`FilterPolicy::note_matches`] records which patterns matched the
//! path (or an ancestor's path) of at least one emitted asset, whatever its kind and whatever
//! the other patterns decided; [`FilterPolicy::unmatched`] lists the others for the manifest.
//! Being an ancestor of what an include glob can match does not count as a match.
//!
//! **Confusables.** Exclude is a convenience, not a boundary: a hostile plugin can rename
//! what it emits. [`FilterPolicy::confusable_exclude`] flags a kept asset whose path, compared
//! by Unicode TR39 skeletons (`unicode_security::skeleton`), matches an exclude glob: `аudit`
//! with a Cyrillic `а` against `audit`. Only names or patterns holding a non-ASCII character
//! are compared: pure-ASCII look-alikes (`l`/`1`, `rn`/`m`, `0`/`O`) are common in real
//! names and are not flagged. `re:` patterns are not compared.

use std::collections::BTreeMap;
use std::fmt;

use regex::{Regex, RegexBuilder};
use sha2::{Digest, Sha256};

use super::asset::{is_invisible_format, qualified_name, AssetKind};
use super::config::{FilterConfig, OnSecret};
use super::fields::FieldPolicy;

/// The most segments an asset path has (a column: database.schema.table.column).
const MAX_PATH_SEGMENTS: usize = 4;

/// A compiled filter policy.
#[derive(Debug, Clone)]
pub struct FilterPolicy {
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
    /// Skeleton matchers of the exclude globs, for [`FilterPolicy::confusable_exclude`].
    confusable: Vec<Confusable>,
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
    matcher: Matcher,
}

#[derive(Debug, Clone)]
enum Matcher {
    /// A glob over path segments.
    Glob(Glob),
    /// A `re:` pattern over the qualified name.
    Regex(Regex),
}

#[derive(Debug, Clone)]
struct Glob {
    segments: Vec<SegmentGlob>,
    /// Whether a segment is `**` (then the glob has no container semantics).
    any_depth: bool,
}

#[derive(Debug, Clone)]
enum SegmentGlob {
    /// `**`: one or more whole segments.
    AnyDepth,
    /// A segment without wildcards, matched case-sensitively.
    Literal(String),
    /// Any other segment, anchored (wildcards, or case-insensitive matching).
    Regex(Regex),
}

/// An exclude glob compiled over skeletons.
#[derive(Debug, Clone)]
struct Confusable {
    /// Index into `exclude`.
    pattern: usize,
    glob: Glob,
    /// The pattern is pure ASCII: only names holding non-ASCII characters are compared.
    ascii: bool,
}

/// Which patterns of a policy matched an asset so far (see [`FilterPolicy::note_matches`]).
#[derive(Debug, Clone, Default)]
pub struct PatternMatches {
    include: Vec<bool>,
    exclude: Vec<bool>,
    /// Patterns not matched yet: nothing left to check at 0.
    pending: usize,
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
        let mut confusable = Vec::new();
        for (i, p) in exclude.iter().enumerate() {
            if matches!(p.matcher, Matcher::Glob(_)) {
                let segments = parse_glob(&p.source).map_err(|e| FilterError(e.to_string()))?;
                let glob = Glob::compile(&segments, case_sensitive, true)
                    .map_err(|e| FilterError(format!("filters.exclude: {e}")))?;
                confusable.push(Confusable {
                    pattern: i,
                    glob,
                    ascii: p.source.is_ascii(),
                });
            }
        }
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
            confusable,
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
        let confusable_with_exclude = if decision.keeps() {
            self.confusable_exclude(&path).map(str::to_string)
        } else {
            None
        };
        Ok(Explanation {
            name: qualified_name(&path),
            kind,
            decision,
            fields,
            confusable_with_exclude,
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
        // Every emitted asset passes here: without patterns, build nothing.
        if self.exclude.is_empty() && self.include.is_empty() {
            return Decision::KeptAll;
        }
        let mut names = Names::new(path);
        for p in &self.exclude {
            if p.matches_self_or_ancestor(path, &mut names) {
                return Decision::Excluded(p.source.clone());
            }
        }
        if self.include.is_empty() {
            return Decision::KeptAll;
        }
        for p in &self.include {
            if p.matches_self_or_ancestor(path, &mut names) || p.contains(path) {
                return Decision::Included(p.source.clone());
            }
        }
        Decision::NotIncluded
    }

    /// A record of which patterns matched, all unmatched, for [`FilterPolicy::note_matches`].
    pub fn pattern_matches(&self) -> PatternMatches {
        PatternMatches {
            include: vec![false; self.include.len()],
            exclude: vec![false; self.exclude.len()],
            pending: self.include.len() + self.exclude.len(),
        }
    }

    /// Notes in `seen` every pattern not yet matched that matches `path` or an ancestor's
    /// path — every one, not only the first that decides. Once every pattern has matched, or
    /// when there are none, this costs one comparison.
    pub fn note_matches(&self, path: &[String], seen: &mut PatternMatches) {
        if seen.pending == 0 {
            return;
        }
        let mut names = Names::new(path);
        let mut newly = 0;
        for (list, flags) in [
            (&self.exclude, &mut seen.exclude),
            (&self.include, &mut seen.include),
        ] {
            for (p, flag) in list.iter().zip(flags.iter_mut()) {
                if !*flag && p.matches_self_or_ancestor(path, &mut names) {
                    *flag = true;
                    newly += 1;
                }
            }
        }
        seen.pending -= newly;
    }

    /// The patterns `seen` never matched, as `filters.include: `p`` / `filters.exclude: `p``.
    pub fn unmatched(&self, seen: &PatternMatches) -> Vec<String> {
        let mut out = Vec::new();
        for (key, list, flags) in [
            ("include", &self.include, &seen.include),
            ("exclude", &self.exclude, &seen.exclude),
        ] {
            for (p, matched) in list.iter().zip(flags) {
                if !matched {
                    out.push(format!("filters.{key}: `{}`", p.source));
                }
            }
        }
        out
    }

    /// The exclude glob that `path` (or an ancestor's path) matches when compared by Unicode
    /// TR39 skeletons, for an asset that is kept: a name that looks like an excluded one. Only
    /// a name or a pattern holding a non-ASCII character is compared (see the module docs).
    pub fn confusable_exclude(&self, path: &[String]) -> Option<&str> {
        if self.confusable.is_empty() {
            return None;
        }
        let ascii = path.iter().all(|s| s.is_ascii());
        if ascii && self.confusable.iter().all(|c| c.ascii) {
            return None;
        }
        let skeletons: Vec<String> = path.iter().map(|s| skeleton(s)).collect();
        self.confusable
            .iter()
            .filter(|c| !(ascii && c.ascii))
            .find(|c| c.glob.matches_self_or_ancestor(&skeletons))
            .map(|c| self.exclude[c.pattern].source.as_str())
    }
}

/// The TR39 skeleton of `s`.
fn skeleton(s: &str) -> String {
    unicode_security::skeleton(s).collect()
}

/// The qualified names of a path and its ancestors, built only when a `re:` pattern asks.
struct Names<'a> {
    path: &'a [String],
    names: Option<Vec<String>>,
}

impl<'a> Names<'a> {
    fn new(path: &'a [String]) -> Self {
        Names { path, names: None }
    }

    fn get(&mut self) -> &[String] {
        let path = self.path;
        self.names.get_or_insert_with(|| {
            (1..=path.len())
                .map(|n| qualified_name(&path[..n]))
                .collect()
        })
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
    /// For a kept name: the exclude pattern it is confusable with (see
    /// [`FilterPolicy::confusable_exclude`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confusable_with_exclude: Option<String>,
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
            // The `regex` crate accepted it, so the parser does too; an empty language has
            // no minimum length.
            let hir = regex_syntax::ParserBuilder::new()
                .case_insensitive(!case_sensitive)
                .build()
                .parse(re);
            if hir.is_ok_and(|h| h.properties().minimum_len().is_none()) {
                return Err(format!(
                    "pattern `{source}` is a regular expression that matches nothing at all \
                     (an empty class such as `[^\\s\\S]`?); remove it, or write what it should match"
                ));
            }
            return Ok(Pattern {
                source: source.to_string(),
                matcher: Matcher::Regex(whole),
            });
        }
        let segments = parse_glob(source)?;
        let glob = Glob::compile(&segments, case_sensitive, false)?;
        Ok(Pattern {
            source: source.to_string(),
            matcher: Matcher::Glob(glob),
        })
    }

    /// Whether the pattern matches `path` or one of its ancestors.
    fn matches_self_or_ancestor(&self, path: &[String], names: &mut Names<'_>) -> bool {
        match &self.matcher {
            Matcher::Glob(g) => g.matches_self_or_ancestor(path),
            Matcher::Regex(re) => names.get().iter().any(|n| re.is_match(n)),
        }
    }

    /// Whether `path` is an ancestor of what the pattern can match (globs without `**`).
    fn contains(&self, path: &[String]) -> bool {
        match &self.matcher {
            Matcher::Glob(g) => g.contains(path),
            Matcher::Regex(_) => false,
        }
    }
}

/// One parsed segment of a glob.
#[derive(Debug, Clone, PartialEq, Eq)]
enum GlobSegment {
    /// `**`.
    AnyDepth,
    /// A segment glob: its characters, with `*` and `?` as wildcards.
    Text(String),
}

impl Glob {
    /// `skeletons`: compile the literal characters as their TR39 skeletons.
    fn compile(
        segments: &[GlobSegment],
        case_sensitive: bool,
        skeletons: bool,
    ) -> Result<Self, String> {
        let mut out = Vec::with_capacity(segments.len());
        for seg in segments {
            out.push(match seg {
                GlobSegment::AnyDepth => SegmentGlob::AnyDepth,
                GlobSegment::Text(text) => {
                    let literal = !text.contains(['*', '?']);
                    if literal && case_sensitive {
                        SegmentGlob::Literal(if skeletons {
                            skeleton(text)
                        } else {
                            text.clone()
                        })
                    } else {
                        let re = format!("^{}$", segment_regex(text, skeletons));
                        SegmentGlob::Regex(
                            RegexBuilder::new(&re)
                                .case_insensitive(!case_sensitive)
                                .dot_matches_new_line(true)
                                .build()
                                .map_err(|e| format!("segment `{text}`: {e}"))?,
                        )
                    }
                }
            });
        }
        Ok(Glob {
            any_depth: out.iter().any(|s| matches!(s, SegmentGlob::AnyDepth)),
            segments: out,
        })
    }

    fn matches_self_or_ancestor(&self, path: &[String]) -> bool {
        if self.any_depth {
            (1..=path.len()).any(|n| matches_segments(&self.segments, &path[..n]))
        } else {
            // Without `**` the glob matches exactly as many segments as it has.
            let n = self.segments.len();
            n <= path.len() && matches_segments(&self.segments, &path[..n])
        }
    }

    fn contains(&self, path: &[String]) -> bool {
        !self.any_depth
            && path.len() < self.segments.len()
            && matches_segments(&self.segments[..path.len()], path)
    }
}

impl SegmentGlob {
    fn matches(&self, segment: &str) -> bool {
        match self {
            SegmentGlob::AnyDepth => true,
            SegmentGlob::Literal(s) => s == segment,
            SegmentGlob::Regex(re) => re.is_match(segment),
        }
    }
}

/// Whether the segment globs match all of `path`.
fn matches_segments(globs: &[SegmentGlob], path: &[String]) -> bool {
    match globs.split_first() {
        None => path.is_empty(),
        Some((SegmentGlob::AnyDepth, rest)) => {
            (1..=path.len()).any(|n| matches_segments(rest, &path[n..]))
        }
        Some((g, rest)) => {
            path.first().is_some_and(|s| g.matches(s)) && matches_segments(rest, &path[1..])
        }
    }
}

/// The regex (unanchored) of one segment glob: `*` any run, `?` one character, the rest
/// literal (as skeletons with `skeletons`).
fn segment_regex(text: &str, skeletons: bool) -> String {
    let mut out = String::new();
    let mut literal = String::new();
    let flush = |literal: &mut String, out: &mut String| {
        if !literal.is_empty() {
            let text = if skeletons {
                skeleton(literal)
            } else {
                literal.clone()
            };
            out.push_str(&regex::escape(&text));
            literal.clear();
        }
    };
    for c in text.chars() {
        match c {
            '*' => {
                flush(&mut literal, &mut out);
                out.push_str(".*");
            }
            '?' => {
                flush(&mut literal, &mut out);
                out.push('.');
            }
            c => literal.push(c),
        }
    }
    flush(&mut literal, &mut out);
    out
}

/// The segment written quoted, for hints.
fn quoted(segment: &str) -> String {
    format!("\"{}\"", segment.replace('"', "\"\""))
}

/// Why an unquoted pattern character cannot be part of a name there, with what to write.
fn refused_char_hint(c: char, segment: &str) -> Option<String> {
    let why = match c {
        '[' | ']' => "there are no character classes (use `?` or `*`, or a `re:` pattern)",
        '{' | '}' | ',' => {
            "there are no alternatives (write one pattern per name, or a `re:` pattern)"
        }
        '/' | '\\' => "segments are separated by `.`, not by `/` or `\\`",
        '!' => "there is no negation (list the name in filters.exclude instead)",
        '%' => "the wildcard is `*` (SQL's `%` is not one)",
        '\'' | '`' => "names are quoted with double quotes only",
        '(' | ')' | '|' | '+' | '^' => "a regular expression needs the `re:` prefix",
        ';' | ':' | '=' | '<' | '>' | '&' | '~' => "it is no part of the glob syntax",
        _ => return None,
    };
    Some(format!(
        "segment `{segment}` holds `{c}`, which an unquoted segment cannot: {why}; a name \
         that holds `{c}` must be written as a quoted segment: `{}`",
        quoted(segment)
    ))
}

/// Parses a glob into segments, refusing what can match no asset name (see the module docs).
fn parse_glob(source: &str) -> Result<Vec<GlobSegment>, String> {
    let err = |why: String| format!("pattern `{source}`: {why}");
    let mut out = Vec::new();
    let mut chars = source.chars().peekable();
    loop {
        let segment = if chars.peek() == Some(&'"') {
            chars.next();
            let mut seg = String::new();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        seg.push('"');
                    }
                    Some('"') => break,
                    Some(c) => seg.push(c),
                    None => {
                        return Err(err(format!(
                            "the quoted segment `\"{seg}` is not terminated; end it with `\"` \
                             (write `\"\"` for a `\"` inside it)"
                        )))
                    }
                }
            }
            if !matches!(chars.peek(), None | Some('.')) {
                return Err(err(format!(
                    "`.` or the end expected after the quoted segment `{}`; a quoted \
                     segment is a whole segment (`a.\"b.c\".d`)",
                    quoted(&seg)
                )));
            }
            if seg.is_empty() {
                return Err(err(
                    "empty quoted segment `\"\"`: no name is empty; write `*` for any name".into(),
                ));
            }
            GlobSegment::Text(seg)
        } else {
            let mut seg = String::new();
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                seg.push(c);
                chars.next();
            }
            if seg.is_empty() {
                return Err(err(
                    "empty segment (two dots in a row, or a dot at the start or end): no name \
                     is empty; write `*` for any one segment, `**` for any number"
                        .into(),
                ));
            }
            if seg == "**" {
                GlobSegment::AnyDepth
            } else {
                check_unquoted(&seg).map_err(err)?;
                GlobSegment::Text(seg)
            }
        };
        if let GlobSegment::Text(text) = &segment {
            if let Some(c) = text
                .chars()
                .find(|&c| c.is_control() || is_invisible_format(c))
            {
                return Err(err(format!(
                    "segment `{}` holds U+{:04X}, a control or invisible format character \
                     that no asset name may hold (the pipeline refuses such names); remove it",
                    text.escape_debug(),
                    c as u32
                )));
            }
        }
        out.push(segment);
        match chars.next() {
            Some('.') => continue,
            _ => break,
        }
    }
    if out.len() > MAX_PATH_SEGMENTS {
        return Err(err(format!(
            "{} segments, but the deepest asset path has {MAX_PATH_SEGMENTS} \
             (database.schema.table.column), so it can match no name; a name holding `.` is \
             written as a quoted segment (`shop.main.\"odd.name\"`)",
            out.len()
        )));
    }
    Ok(out)
}

/// Checks the characters of an unquoted segment (not `**`).
fn check_unquoted(seg: &str) -> Result<(), String> {
    if seg.contains("**") {
        return Err(format!(
            "segment `{seg}` holds `**`, which stands for whole segments and must be a segment \
             of its own (`shop.**`); within a segment `*` already matches any characters \
             (write `{}`)",
            seg.replace("**", "*")
        ));
    }
    if seg.starts_with(' ') || seg.ends_with(' ') {
        return Err(format!(
            "segment `{seg}` starts or ends with a space (a typo after a `.`?); a name that \
             does must be written as a quoted segment: `{}`",
            quoted(seg)
        ));
    }
    for c in seg.chars() {
        let accepted = if c.is_ascii() {
            c.is_ascii_alphanumeric() || matches!(c, '_' | '$' | '#' | '@' | '-' | ' ' | '*' | '?')
        } else {
            !c.is_whitespace()
        };
        if accepted {
            continue;
        }
        if c == '"' {
            return Err(format!(
                "segment `{seg}` holds `\"`, which only opens a quoted segment; a name that \
                 holds `\"` must be written as a quoted segment with `\"\"` for it: `{}`",
                quoted(seg)
            ));
        }
        if c.is_control() || is_invisible_format(c) {
            // Reported by the caller, whether quoted or not.
            continue;
        }
        return Err(refused_char_hint(c, seg).unwrap_or_else(|| {
            format!(
                "segment `{seg}` holds U+{:04X} `{c}`, which an unquoted segment cannot; a \
                 name that holds it must be written as a quoted segment: `{}`",
                c as u32,
                quoted(seg)
            )
        }));
    }
    Ok(())
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

    fn segs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn compile_err(include: &[&str], exclude: &[&str]) -> String {
        FilterPolicy::compile(&FilterConfig {
            include: include.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .unwrap_err()
        .to_string()
    }

    #[test]
    fn star_matches_one_whole_segment_whatever_it_holds() {
        let p = policy(&[], &["shop.main.*"], &[]);
        for name in ["odd.name", "a\"b", "x.y.z", "orders"] {
            assert_eq!(
                p.decide(AssetKind::Table, &segs(&["shop", "main", name])),
                Decision::Excluded("shop.main.*".into()),
                "{name}"
            );
        }
        // its columns go with it, through the ancestor
        assert!(!p
            .decide(AssetKind::Column, &segs(&["shop", "main", "odd.name", "c"]))
            .keeps());
        // the schema itself and other schemas stay
        assert!(p.decide(AssetKind::Schema, &path("shop.main")).keeps());
        assert!(p
            .decide(AssetKind::Table, &segs(&["shop", "main.x", "t"]))
            .keeps());
        // `?` is one character of a segment, `.` included
        let p = policy(&[], &["shop.main.t?"], &[]);
        assert!(!p
            .decide(AssetKind::Table, &segs(&["shop", "main", "t."]))
            .keeps());
        assert!(p
            .decide(AssetKind::Table, &segs(&["shop", "main", "t"]))
            .keeps());
        assert!(p
            .decide(AssetKind::Table, &segs(&["shop", "main", "t.x"]))
            .keeps());
        // an include glob keeps a dotted name and the containers above it
        let p = policy(&["shop.main.*"], &[], &[]);
        assert!(p
            .decide(AssetKind::Table, &segs(&["shop", "main", "odd.name"]))
            .keeps());
        assert!(p.decide(AssetKind::Database, &path("shop")).keeps());
        assert!(!p
            .decide(AssetKind::Table, &segs(&["shop.main", "x", "y"]))
            .keeps());
    }

    #[test]
    fn double_star_is_one_or_more_whole_segments() {
        let p = policy(&["shop.**"], &["**.tmp", "a.**.z"], &[]);
        assert!(p.decide(AssetKind::Schema, &path("shop.x")).keeps());
        assert!(p.decide(AssetKind::Column, &path("shop.x.y.z")).keeps());
        // `shop.**` is what is below `shop`, not `shop` itself (and has no containers)
        assert_eq!(
            p.decide(AssetKind::Database, &path("shop")),
            Decision::NotIncluded
        );
        for excluded in ["shop.tmp", "shop.x.tmp", "shop.x.tmp.c"] {
            assert!(
                !p.decide(AssetKind::Table, &path(excluded)).keeps(),
                "{excluded}"
            );
        }
        let p = policy(&[], &["a.**.z"], &[]);
        assert!(!p.decide(AssetKind::Table, &path("a.b.z")).keeps());
        assert!(!p.decide(AssetKind::Column, &path("a.b.c.z")).keeps());
        assert!(p.decide(AssetKind::Schema, &path("a.z")).keeps());
        let p = policy(&[], &["**"], &[]);
        assert!(!p.decide(AssetKind::Database, &path("x")).keeps());
    }

    #[test]
    fn quoted_pattern_segments_read_like_qualified_names() {
        let p = policy(
            &[],
            &["shop.\"a.b\".*", "db.s.\"x\"\"y\"", "db.\"odd.*\".t"],
            &[],
        );
        assert!(!p
            .decide(AssetKind::Table, &segs(&["shop", "a.b", "t"]))
            .keeps());
        assert!(p
            .decide(AssetKind::Table, &segs(&["shop", "a", "b"]))
            .keeps());
        assert!(!p
            .decide(AssetKind::Table, &segs(&["db", "s", "x\"y"]))
            .keeps());
        // wildcards stay wildcards inside quotes
        assert!(!p
            .decide(AssetKind::Table, &segs(&["db", "odd.one", "t"]))
            .keeps());
        // quoting a name without `.` is allowed
        let p = policy(&[], &["db.\"main\".\"[audit\""], &[]);
        assert!(!p.decide(AssetKind::Table, &path("db.main.[audit")).keeps());
    }

    #[test]
    fn case_insensitive_segments() {
        let p = FilterPolicy::compile_for(
            &FilterConfig {
                exclude: vec!["Shop.MAIN.Odd*".into()],
                ..Default::default()
            },
            "sqlite",
        )
        .unwrap();
        assert!(!p
            .decide(AssetKind::Table, &segs(&["shop", "main", "odd.NAME"]))
            .keeps());
        assert!(p.decide(AssetKind::Table, &path("shop.main.even")).keeps());
    }

    #[test]
    fn patterns_that_can_match_no_name_are_refused_with_what_to_write() {
        let cases: &[(&str, &[&str])] = &[
            (
                "[audit",
                &[
                    "filters.exclude",
                    "`[audit`",
                    "character classes",
                    "`\"[audit\"`",
                ],
            ),
            ("shop/main", &["`/`", "separated by `.`", "`\"shop/main\"`"]),
            ("shop.main.{a,b}", &["alternatives", "`\"{a,b}\"`"]),
            ("a\\b", &["`\\`", "`\"a\\b\"`"]),
            ("!shop.x", &["negation"]),
            ("shop.main.tmp%", &["SQL's `%`"]),
            ("shop.`odd.name`", &["double quotes"]),
            ("shop.(a|b)", &["`re:` prefix"]),
            (
                "a.b.c.d.e",
                &["5 segments", "deepest asset path has 4", "quoted segment"],
            ),
            ("a.**.b.c.d", &["5 segments"]),
            ("shop..t", &["empty segment", "`*`"]),
            ("shop.", &["empty segment"]),
            (".shop", &["empty segment"]),
            ("shop.\"open", &["not terminated"]),
            ("shop.\"a\"b", &["`.` or the end expected"]),
            ("shop.\"\"", &["empty quoted segment"]),
            ("sh\"op", &["only opens a quoted segment", "`\"sh\"\"op\"`"]),
            ("shop.tmp_**", &["must be a segment of its own", "`tmp_*`"]),
            (
                "shop. main",
                &["starts or ends with a space", "`\" main\"`"],
            ),
            ("shop.au\u{200B}dit", &["U+200B", "invisible"]),
            ("shop.\"au\u{202E}dit\"", &["U+202E"]),
            ("shop.\u{00A0}x", &["U+00A0"]),
            ("re:[^\\s\\S]", &["matches nothing at all"]),
            ("re:(", &["not a valid regular expression"]),
        ];
        for (pattern, needles) in cases {
            let err = compile_err(&[], &[pattern]);
            for needle in *needles {
                assert!(err.contains(needle), "{pattern}: `{needle}` not in: {err}");
            }
            let err = compile_err(&[pattern], &[]);
            assert!(err.contains("filters.include"), "{err}");
        }
    }

    #[test]
    fn real_names_are_accepted_unquoted() {
        let p = policy(
            &[
                "ora.SYS.V$SESSION",
                "mssql.dbo.#tmp",
                "my-project.data_set@eu.t",
                "mssql.dbo.Order Details",
                "shop.ventes.année_été",
                "販売.主要.注文",
                "shop.main.\"weird/name\"",
                "re:a\\.b",
            ],
            &[],
            &[],
        );
        assert!(p
            .decide(AssetKind::Table, &path("mssql.dbo.Order Details"))
            .keeps());
        assert!(p
            .decide(AssetKind::Table, &segs(&["shop", "main", "weird/name"]))
            .keeps());
        assert!(p.decide(AssetKind::Table, &path("販売.主要.注文")).keeps());
    }

    #[test]
    fn unmatched_patterns_are_listed_and_every_exclude_counts() {
        let p = policy(
            &["shop.main.*", "nope.*", "re:shop\\.hr(\\..*)?"],
            &["shop.main.secret", "shop.main.sec*", "zzz", "re:.*\\.tmp"],
            &["table"],
        );
        let mut seen = p.pattern_matches();
        for (kind, name) in [
            (AssetKind::Database, segs(&["shop"])),
            (AssetKind::Table, segs(&["shop", "main", "secret"])),
            (AssetKind::Table, segs(&["shop", "main", "orders"])),
            // a kind outside the allow-list still counts for the name patterns
            (AssetKind::Column, segs(&["shop", "main", "tmp", "c"])),
        ] {
            p.note_matches(&name, &mut seen);
            let _ = p.decide(kind, &name);
        }
        assert_eq!(
            p.unmatched(&seen),
            vec![
                "filters.include: `nope.*`",
                "filters.include: `re:shop\\.hr(\\..*)?`",
                "filters.exclude: `zzz`",
            ]
        );
        // the database `shop` is a container of `shop.main.*`, which is no match
        let mut seen = p.pattern_matches();
        p.note_matches(&segs(&["shop"]), &mut seen);
        assert!(p
            .unmatched(&seen)
            .contains(&"filters.include: `shop.main.*`".to_string()));
        // no patterns: nothing to note, nothing unmatched
        let p = policy(&[], &[], &[]);
        let mut seen = p.pattern_matches();
        p.note_matches(&path("a.b.c"), &mut seen);
        assert!(p.unmatched(&seen).is_empty());
    }

    #[test]
    fn kept_names_confusable_with_an_exclude_are_flagged() {
        let p = policy(
            &[],
            &["shop.main.audit", "shop.main.tmp_*", "re:.*secret"],
            &[],
        );
        // Cyrillic а in place of a
        let homoglyph = segs(&["shop", "main", "\u{0430}udit"]);
        assert!(p.decide(AssetKind::Table, &homoglyph).keeps());
        assert_eq!(p.confusable_exclude(&homoglyph), Some("shop.main.audit"));
        // through an ancestor too: the columns of the look-alike table
        let column = segs(&["shop", "main", "\u{0430}udit", "id"]);
        assert_eq!(p.confusable_exclude(&column), Some("shop.main.audit"));
        // a glob's literal parts compare by skeleton (fullwidth ｔ for t); what its wildcard
        // covers may be anything, and is excluded by the glob itself
        assert!(!p
            .decide(AssetKind::Table, &segs(&["shop", "main", "tmp_\u{03BF}ld"]))
            .keeps());
        let fullwidth = segs(&["shop", "main", "\u{FF54}mp_1"]);
        assert_eq!(p.confusable_exclude(&fullwidth), Some("shop.main.tmp_*"));
        // pure-ASCII look-alikes are not flagged (l for i)
        assert_eq!(p.confusable_exclude(&path("shop.main.audlt")), None);
        // names unlike any pattern are not flagged
        assert_eq!(
            p.confusable_exclude(&segs(&["shop", "main", "ventes_été"])),
            None
        );
        // explain says so for a kept name, and not for the excluded one itself
        let e = p.explain("shop.main.\u{0430}udit", None).unwrap();
        assert!(e.decision.keeps());
        assert_eq!(
            e.confusable_with_exclude.as_deref(),
            Some("shop.main.audit")
        );
        let e = p.explain("shop.main.audit", None).unwrap();
        assert_eq!(e.confusable_with_exclude, None);
        // a non-ASCII pattern is compared with ASCII names too
        let p = policy(&[], &["shop.main.\u{0430}udit"], &[]);
        assert_eq!(
            p.confusable_exclude(&path("shop.main.audit")),
            Some("shop.main.\u{0430}udit")
        );
        // without exclude globs there is nothing to compare
        let p = policy(&[], &["re:.*x"], &[]);
        assert_eq!(p.confusable_exclude(&homoglyph), None);
    }

    #[test]
    fn digest_changes_with_policy() {
        assert_ne!(
            policy(&["a"], &[], &[]).digest(),
            policy(&["b"], &[], &[]).digest()
        );
    }
}
