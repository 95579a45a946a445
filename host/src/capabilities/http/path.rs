//! Request paths in one canonical form, so that the base-path and allow-list checks look at
//! the path the server will act on. Percent-encoded unreserved characters (`%61`, `%2e`) are
//! decoded, dot segments removed (RFC 3986 §5.2.4), and a path holding an encoded slash or
//! backslash, a backslash, a control character or a `..` above the root is refused: servers
//! and proxies disagree on what those mean. Path prefixes match whole segments only.

/// Why a path was refused; says what was wrong, never repeats the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the path {0}")]
pub struct PathRefusal(&'static str);

/// The canonical form of an absolute path (no query): what is sent and what is checked.
pub fn normalize(raw: &str) -> Result<String, PathRefusal> {
    if !raw.starts_with('/') {
        return Err(PathRefusal("does not start with `/`"));
    }
    let bytes = raw.as_bytes();
    let mut decoded = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let value = bytes
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(PathRefusal("holds a malformed percent-encoding"))?;
            match value {
                b'/' => return Err(PathRefusal("holds an encoded slash (%2F)")),
                b'\\' => return Err(PathRefusal("holds an encoded backslash (%5C)")),
                v if v < 0x20 || v == 0x7f => {
                    return Err(PathRefusal("holds an encoded control character"))
                }
                v if is_unreserved(v) => decoded.push(char::from(v)),
                v => decoded.push_str(&format!("%{v:02X}")),
            }
            i += 3;
            continue;
        }
        match b {
            b'\\' => return Err(PathRefusal("holds a backslash")),
            b if b < 0x20 || b == 0x7f => return Err(PathRefusal("holds a control character")),
            b'?' | b'#' => return Err(PathRefusal("holds `?` or `#`")),
            b if is_unreserved(b) || is_path_raw(b) => decoded.push(char::from(b)),
            // Anything else (space, quotes, non-ASCII) is sent percent-encoded, as a URL
            // parser would; encoding it here keeps the checked and the sent path equal.
            b => decoded.push_str(&format!("%{b:02X}")),
        }
        i += 1;
    }
    remove_dot_segments(&decoded)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// `/`, sub-delims, `:` and `@`: what a path segment may hold unencoded.
fn is_path_raw(b: u8) -> bool {
    matches!(
        b,
        b'/' | b'!'
            | b'$'
            | b'&'
            | b'\''
            | b'('
            | b')'
            | b'*'
            | b'+'
            | b','
            | b';'
            | b'='
            | b':'
            | b'@'
    )
}

/// RFC 3986 §5.2.4 on an absolute path whose dots are already decoded; a `..` that would
/// climb above the root is refused instead of being dropped.
fn remove_dot_segments(path: &str) -> Result<String, PathRefusal> {
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.into_iter().enumerate() {
        match segment {
            "." => {}
            ".." => {
                if out.pop().is_none() {
                    return Err(PathRefusal("climbs above the root with `..`"));
                }
            }
            s => {
                out.push(s);
                continue;
            }
        }
        // A dot segment at the end leaves a trailing slash, as in the RFC.
        if i == last {
            out.push("");
        }
    }
    Ok(format!("/{}", out.join("/")))
}

/// Whether the canonical `path` lies under the canonical `prefix`, segment by segment:
/// `/api/tenant-a` covers `/api/tenant-a` and `/api/tenant-a/x`, not `/api/tenant-ab`.
pub fn within(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_removed_after_decoding() {
        for (raw, want) in [
            ("/", "/"),
            ("/a/b/c", "/a/b/c"),
            ("/a/./b", "/a/b"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/b/../c", "/a/c"),
            ("/api/tenant-a/../../admin/tenant-b", "/admin/tenant-b"),
            (
                "/api/tenant-a/%2e%2e/%2E%2E/admin/tenant-b",
                "/admin/tenant-b",
            ),
            ("/api/tenant-a/.%2e/x", "/api/x"),
            ("/%61pi/%7Euser", "/api/~user"),
            ("/a%20b/%c3%a9", "/a%20b/%C3%A9"),
            ("/a b/\u{e9}", "/a%20b/%C3%A9"),
            ("/a/.../b", "/a/.../b"),
            ("/a//b", "/a//b"),
        ] {
            assert_eq!(normalize(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for (raw, why) in [
            ("/..", "climbs above the root"),
            ("/a/../../b", "climbs above the root"),
            ("/%2e%2e/etc", "climbs above the root"),
            ("/a%2fb", "encoded slash"),
            ("/a%2Fb", "encoded slash"),
            ("/a%5cb", "encoded backslash"),
            ("/a\\b", "backslash"),
            ("/a\0b", "control character"),
            ("/a%00b", "encoded control character"),
            ("/a%0d%0ab", "encoded control character"),
            ("/a\nb", "control character"),
            ("/a%zz", "malformed"),
            ("/a%2", "malformed"),
            ("/a%+1", "malformed"),
            ("relative", "does not start"),
        ] {
            let err = normalize(raw).expect_err(raw).to_string();
            assert!(err.contains(why), "{raw}: {err}");
        }
    }

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(within("/api/tenant-a", "/api/tenant-a"));
        assert!(within("/api/tenant-a/x", "/api/tenant-a"));
        assert!(within("/api/tenant-a/x", "/api/tenant-a/"));
        assert!(within("/api/tenant-a/", "/api/tenant-a"));
        assert!(!within("/api/tenant-ab", "/api/tenant-a"));
        assert!(!within("/api", "/api/tenant-a"));
        assert!(within("/anything", "/"));
        assert!(within("/anything", ""));
    }
}
