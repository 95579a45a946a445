//! Filter pushdown helpers on [`Scope`]: may a plugin skip a whole part of the source? The host
//! filters every emitted asset again, so these answers only have to be *conservative*: they
//! say "skip" only when the host would drop everything under the path anyway. They follow the
//! host's pattern syntax (globs: `*` within a segment, `**` across segments, `?` one character
//! of a segment; `re:` regular expressions, which these helpers never use to skip anything),
//! matched against the qualified name text: `*` and `?` stop at `.` and `"` here, while the host
//! matches them per segment (where they also cover the `.` of a quoted `"odd.name"`), so these
//! helpers only ever exclude less than the host.

use crate::Scope;

impl Scope {
    /// Whether the host drops `path` and everything under it because an exclude glob matches
    /// its qualified name or an ancestor's. Case-sensitive, so a source whose names the host
    /// compares case-insensitively is only ever under-excluded here.
    pub fn excludes(&self, path: &[&str]) -> bool {
        let names = qualified_names(path);
        self.exclude
            .iter()
            .filter(|p| !p.starts_with("re:"))
            .any(|p| names.iter().any(|n| glob_matches(p, n, false)))
    }

    /// Whether something at or under `path` may be kept by the include list (always true when
    /// it is empty). False only when every include pattern is a glob that provably matches
    /// neither `path`, its ancestors, nor anything below it. Case-insensitive, so it never
    /// says false for a name the host would include.
    pub fn may_include_under(&self, path: &[&str]) -> bool {
        if self.include.is_empty() {
            return true;
        }
        if path.iter().any(|s| s.contains(['.', '"'])) {
            return true;
        }
        self.include.iter().any(|p| may_match_under(p, path))
    }

    /// Whether a plugin may skip listing what is under `path`: it is excluded, or nothing at
    /// or under it can be included.
    pub fn skips(&self, path: &[&str]) -> bool {
        self.excludes(path) || !self.may_include_under(path)
    }
}

/// The qualified names of `path` and of each of its ancestors, quoted as the host writes them.
fn qualified_names(path: &[&str]) -> Vec<String> {
    let mut out = Vec::with_capacity(path.len());
    let mut name = String::new();
    for (i, seg) in path.iter().enumerate() {
        if i > 0 {
            name.push('.');
        }
        if seg.contains(['.', '"']) {
            name.push('"');
            name.push_str(&seg.replace('"', "\"\""));
            name.push('"');
        } else {
            name.push_str(seg);
        }
        out.push(name.clone());
    }
    out
}

/// Whether include pattern `p` may match `path` (segments without `.` or `"`), an ancestor, or
/// something below it.
fn may_match_under(p: &str, path: &[&str]) -> bool {
    if p.starts_with("re:") || p.contains("**") || p.contains('"') {
        return true;
    }
    // Without `**`, a glob's dots line up with the name's dots: segment k of the pattern can
    // only match segment k of a name.
    let segments: Vec<&str> = p.split('.').collect();
    for (k, seg) in segments.iter().enumerate() {
        match path.get(k) {
            // The pattern is longer than the path: it may match something below it.
            None => return true,
            Some(name) if !glob_matches(seg, name, true) => return false,
            Some(_) => {}
        }
    }
    // The pattern matches `path` or one of its ancestors: everything below is included.
    true
}

/// Whether glob `pattern` matches all of `text`: `**` any run of characters but a newline, `*`
/// any run without `.` or `"`, `?` one character other than those, anything else literally.
/// (Stopping at `"` too keeps `**.tmp?` from matching `a."b.tmp"`, which the host keeps.) Linear in
/// memory, O(pattern × text) in time.
fn glob_matches(pattern: &str, text: &str, ignore_case: bool) -> bool {
    #[derive(Clone, Copy)]
    enum Tok {
        AnyRun,
        SegRun,
        One,
        Lit(char),
    }
    let fold = |c: char| {
        if ignore_case {
            c.to_lowercase().next().unwrap_or(c)
        } else {
            c
        }
    };
    let mut toks = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        toks.push(match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                Tok::AnyRun
            }
            '*' => Tok::SegRun,
            '?' => Tok::One,
            c => Tok::Lit(fold(c)),
        });
    }
    let text: Vec<char> = text.chars().map(fold).collect();
    // reach[j]: the tokens so far can match text[..j].
    let mut reach = vec![false; text.len() + 1];
    reach[0] = true;
    for tok in toks {
        let mut next = vec![false; text.len() + 1];
        for j in 0..=text.len() {
            match tok {
                Tok::AnyRun | Tok::SegRun => {
                    let stop = |c: char| match tok {
                        Tok::AnyRun => c == '\n',
                        _ => c == '.' || c == '"',
                    };
                    next[j] = reach[j] || (j > 0 && next[j - 1] && !stop(text[j - 1]));
                }
                Tok::One => next[j] = j > 0 && reach[j - 1] && !matches!(text[j - 1], '.' | '"'),
                Tok::Lit(c) => next[j] = j > 0 && reach[j - 1] && text[j - 1] == c,
            }
        }
        reach = next;
    }
    reach[text.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(include: &[&str], exclude: &[&str]) -> Scope {
        Scope {
            include: include.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            kinds: Vec::new(),
        }
    }

    #[test]
    fn globs_follow_the_host_syntax() {
        assert!(glob_matches("a.*", "a.b", false));
        assert!(!glob_matches("a.*", "a.b.c", false));
        assert!(glob_matches("a.**", "a.b.c", false));
        assert!(glob_matches("a.b?", "a.bc", false));
        assert!(!glob_matches("a?b", "a.b", false));
        assert!(!glob_matches("A.b", "a.b", false));
        assert!(glob_matches("A.b", "a.b", true));
        assert!(glob_matches("*", "", false));
        assert!(!glob_matches("a", "ab", false));
        assert!(!glob_matches("a", "ba", false));
        // a quoted segment's closing quote is no character of a segment glob
        assert!(!glob_matches("**.tmp?", "a.\"b.tmp\"", false));
        assert!(!glob_matches("**.t*", "a.\"b.t\"", false));
        assert!(glob_matches("a.\"b.c\".*", "a.\"b.c\".d", false));
    }

    #[test]
    fn skipping_is_conservative() {
        let s = scope(&[], &["lake.tmp_*", "re:.*"]);
        assert!(s.skips(&["lake", "tmp_1"]));
        assert!(s.skips(&["lake", "tmp_1", "t"]), "under an excluded schema");
        assert!(!s.skips(&["lake", "sales"]), "a regex never skips");
        assert!(!s.skips(&["lake", "TMP_1"]), "exclusion is case-sensitive");

        let s = scope(&["lake.sales.*", "lake.hr"], &[]);
        assert!(!s.skips(&["lake", "sales"]));
        assert!(
            !s.skips(&["lake", "SALES"]),
            "inclusion is case-insensitive"
        );
        assert!(!s.skips(&["lake", "hr"]));
        assert!(s.skips(&["lake", "ops"]));
        assert!(s.skips(&["other", "sales"]));
        assert!(
            !scope(&["lake"], &[]).skips(&["lake", "ops"]),
            "the catalog is included"
        );
        assert!(!scope(&["**.orders"], &[]).skips(&["lake", "ops"]));
        assert!(!scope(&["re:lake\\.ops.*"], &[]).skips(&["lake", "ops"]));
        assert!(!scope(&["lake.\"o.ps\".*"], &[]).skips(&["lake", "ops"]));
        assert!(!scope(&["lake.o*"], &[]).skips(&["lake", "ops"]));
        assert!(!scope(&[], &[]).skips(&["lake", "ops"]));
    }
}
