//! The statement guard: every statement a plugin sends through `connection.query` is parsed
//! with the engine's grammar before it reaches the server, and passes only as exactly one read
//! query over the engine's catalog relations with allow-listed functions. Deny by default: a
//! parse error, an unknown construct, an unknown function or an unknown relation is a refusal,
//! never a pass. Where the parser allows it, the host sends the statement it re-rendered from
//! the parse tree, not the plugin's text, so the server runs what was checked.
//!
//! Data relations (business tables) pass only when the workflow grants them by name
//! (`[source.sql] allow_relations`).

pub mod mysql;
pub mod postgres;

use std::fmt;

/// What kind of thing a guard refused; the audit log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The engine's parser could not read the statement.
    Unparsable,
    /// More than one statement in one string.
    MultipleStatements,
    /// A statement that is not a plain read query (`SET`, `COPY`, DDL, DML, `CALL`, ...).
    NotARead,
    /// A construct a read query may not use (`SELECT INTO`, `FOR UPDATE`, a data-modifying
    /// CTE, a user variable, ...).
    Construct,
    /// A relation that is neither a catalog relation nor granted by the workflow.
    Relation,
    /// A function that is not on the catalog allow-list.
    Function,
    /// A comment (MySQL/MariaDB executable comments hide statements in comments).
    Comment,
}

impl RefusalKind {
    /// The name used in audit entries and error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalKind::Unparsable => "unparsable",
            RefusalKind::MultipleStatements => "multiple-statements",
            RefusalKind::NotARead => "not-a-read",
            RefusalKind::Construct => "construct",
            RefusalKind::Relation => "relation",
            RefusalKind::Function => "function",
            RefusalKind::Comment => "comment",
        }
    }
}

/// Why a statement was refused. `object` names the relation, function or construct, never a
/// literal value of the statement (those may carry data the plugin wants to smuggle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    /// The relation, function, statement type or construct, as the guard understood it.
    pub object: String,
    /// One sentence for the plugin author: what is not allowed and, where it helps, what to do.
    pub detail: String,
}

impl Refusal {
    /// A refusal of `kind` naming `object`, with a `detail` sentence.
    pub fn new(kind: RefusalKind, object: impl Into<String>, detail: impl Into<String>) -> Self {
        let object: String = object.into();
        // Names come from plugin text: keep them short and printable.
        let object: String = object
            .chars()
            .filter(|c| !c.is_control())
            .take(128)
            .collect();
        Refusal {
            kind,
            object,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "statement refused by the host's SQL guard ({}: `{}`): {}",
            self.kind.as_str(),
            self.object,
            self.detail
        )
    }
}

impl std::error::Error for Refusal {}

/// Data relations a workflow grants (`[source.sql] allow_relations`): patterns of
/// `database.schema.relation`, `*` matching any run of characters within one segment.
/// MySQL/MariaDB name relations `database.database.table`, as their connector's assets do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataGrants {
    patterns: Vec<[String; 3]>,
}

impl DataGrants {
    /// No data relation at all: the default.
    pub fn none() -> Self {
        DataGrants::default()
    }

    /// Parses the workflow's patterns; a pattern that is not three dot-separated, non-empty
    /// segments is an error naming it.
    pub fn new(patterns: &[String]) -> Result<Self, String> {
        let mut out = Vec::new();
        for p in patterns {
            let parts: Vec<&str> = p.split('.').collect();
            match parts.as_slice() {
                [d, s, r] if !d.is_empty() && !s.is_empty() && !r.is_empty() => {
                    out.push([d.to_string(), s.to_string(), r.to_string()])
                }
                _ => {
                    return Err(format!(
                        "source.sql.allow_relations entry `{p}` must be `database.schema.relation` \
                         (use `*` within a segment, e.g. `analytics.public.*`)"
                    ))
                }
            }
        }
        Ok(DataGrants { patterns: out })
    }

    /// Whether no relation is granted.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `database.schema.relation` is granted.
    pub fn allows(&self, database: &str, schema: &str, relation: &str) -> bool {
        self.patterns.iter().any(|[d, s, r]| {
            glob_matches(d, database) && glob_matches(s, schema) && glob_matches(r, relation)
        })
    }
}

/// `*` matches any run of characters (within the one segment it is given); everything else
/// matches itself.
fn glob_matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while ni < n.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_match_whole_segments() {
        let g = DataGrants::new(&["analytics.public.orders".into(), "analytics.sales.*".into()])
            .unwrap();
        assert!(g.allows("analytics", "public", "orders"));
        assert!(!g.allows("analytics", "public", "orders2"));
        assert!(!g.allows("other", "public", "orders"));
        assert!(g.allows("analytics", "sales", "anything"));
        assert!(!g.allows("analytics", "salesx", "a"));
        assert!(DataGrants::new(&["analytics.orders".into()]).is_err());
        assert!(DataGrants::new(&["a..b".into()]).is_err());
        assert!(DataGrants::none().is_empty());
    }

    #[test]
    fn globs() {
        assert!(glob_matches("*", ""));
        assert!(glob_matches("a*c", "abbbc"));
        assert!(!glob_matches("a*c", "abbb"));
        assert!(glob_matches("*x*", "yyxyy"));
    }
}
