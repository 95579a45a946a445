//! The outbound secret scan: before an asset is spooled, its output line is searched for every
//! secret this run resolved — raw, base64 (standard and URL-safe alphabets, at every alignment
//! inside a longer base64 text), hex (lower and upper case), URL-encoded and JSON-escaped (once
//! and twice). One multi-pattern automaton (`aho-corasick`) searches all forms in one pass.
//!
//! The same scanner is the run's *inbound* filter ([`crate::capabilities::inbound`]): every
//! byte a host capability hands to the plugin is searched for the same forms, plus the
//! verifiers a database stores for a login ([`OutboundScanner::register_login`]), and each hit
//! is replaced by [`WITHHELD`] before the plugin sees it.
//!
//! The scanner belongs to one run: the SQL login registers each secret right after resolving
//! it, and the scanner is dropped with the run. The encoded forms are kept in zeroizing
//! buffers; the automaton's own tables, which encode the same bytes, are freed with the run.

use std::sync::RwLock;

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine;
use zeroize::Zeroizing;

use crate::secrets::SecretString;

/// Forms shorter than this are not searched: they would match ordinary text.
pub const MIN_FORM_BYTES: usize = 4;

/// What replaces a secret the inbound filter finds in what a source sent.
pub const WITHHELD: &str = "[airlock:secret-withheld]";

pub(crate) struct Form {
    pub(crate) bytes: Zeroizing<Vec<u8>>,
    encoding: &'static str,
}

#[derive(Default)]
struct ScanState {
    forms: Vec<Form>,
    automaton: Option<AhoCorasick>,
    longest: usize,
}

/// The per-run outbound scanner.
#[derive(Default)]
pub struct OutboundScanner {
    state: RwLock<ScanState>,
}

impl std::fmt::Debug for OutboundScanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutboundScanner([redacted])")
    }
}

impl OutboundScanner {
    /// An empty scanner.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a resolved secret in every form it could leave in.
    pub fn register(&self, secret: &SecretString) {
        self.register_bytes(secret.expose().as_bytes());
    }

    /// Adds secret bytes in every form they could leave in.
    pub fn register_bytes(&self, secret: &[u8]) {
        if secret.is_empty() {
            return;
        }
        let Ok(mut state) = self.state.write() else {
            return;
        };
        for form in forms_of(secret) {
            if form.bytes.len() >= MIN_FORM_BYTES
                && !state.forms.iter().any(|f| f.bytes[..] == form.bytes[..])
            {
                state.forms.push(form);
            }
        }
        Self::rebuild(&mut state);
    }

    /// Adds the verifiers a database keeps for the login `user` with password `secret`, which
    /// log in (PostgreSQL `md5`) or are cracked (MySQL/MariaDB `mysql_native_password`) like
    /// the password itself: `md5` + hex(MD5(password ‖ user)), `*` + hex(SHA1(SHA1(password)))
    /// (each also without its prefix, in either case), and base64 of `user:password` as HTTP
    /// basic authentication sends it.
    pub fn register_login(&self, user: &str, secret: &SecretString) {
        use md5::Md5;
        use sha1::{Digest, Sha1};
        let password = secret.expose().as_bytes();
        if password.is_empty() {
            return;
        }
        let mut verifiers: Vec<(Zeroizing<Vec<u8>>, &'static str)> = Vec::new();
        let mut pg = Md5::new();
        pg.update(password);
        pg.update(user.as_bytes());
        let pg = Zeroizing::new(hex::encode(pg.finalize()).into_bytes());
        let native = Sha1::digest(Sha1::digest(password));
        let native = Zeroizing::new(hex::encode_upper(native).into_bytes());
        for (prefix, digest, name) in [
            (&b"md5"[..], pg, "postgres-md5-verifier"),
            (&b"*"[..], native, "mysql-native-verifier"),
        ] {
            let mut lower = Zeroizing::new(digest.to_vec());
            lower.make_ascii_lowercase();
            let mut upper = Zeroizing::new(digest.to_vec());
            upper.make_ascii_uppercase();
            let mut prefixed = Zeroizing::new(prefix.to_vec());
            prefixed.extend_from_slice(&digest);
            verifiers.push((prefixed, name));
            verifiers.push((lower, name));
            verifiers.push((upper, name));
        }
        if !user.is_empty() {
            let mut pair = Zeroizing::new(Vec::with_capacity(user.len() + 1 + password.len()));
            pair.extend_from_slice(user.as_bytes());
            pair.push(b':');
            pair.extend_from_slice(password);
            for engine in [
                &base64::engine::general_purpose::STANDARD,
                &base64::engine::general_purpose::URL_SAFE,
            ] {
                verifiers.push((
                    Zeroizing::new(engine.encode(&pair[..]).into_bytes()),
                    "base64",
                ));
            }
        }
        let Ok(mut state) = self.state.write() else {
            return;
        };
        for (bytes, encoding) in verifiers {
            if !state.forms.iter().any(|f| f.bytes[..] == bytes[..]) {
                state.forms.push(Form { bytes, encoding });
            }
        }
        Self::rebuild(&mut state);
    }

    fn rebuild(state: &mut ScanState) {
        // A DFA: a run has few secrets (tens of forms), and every output line and every byte
        // a source sends is searched. Leftmost-longest, so a replacement takes the longest
        // form at a position (a verifier with its prefix rather than without).
        state.automaton = AhoCorasick::builder()
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .match_kind(MatchKind::LeftmostLongest)
            .build(state.forms.iter().map(|f| &f.bytes[..]))
            .ok();
        state.longest = state.forms.iter().map(|f| f.bytes.len()).max().unwrap_or(0);
    }

    /// Bytes of the longest registered form (0 when none): a stream is searched with this many
    /// bytes minus one held back between pieces.
    pub fn longest_form(&self) -> usize {
        self.state.read().map(|s| s.longest).unwrap_or(0)
    }

    /// Replaces every registered form found in `bytes` with [`WITHHELD`]. `None` when nothing
    /// was found; otherwise the new bytes, the encoding of the first hit and the number of
    /// hits.
    pub fn withhold(&self, bytes: &[u8]) -> Option<(Vec<u8>, &'static str, usize)> {
        let Ok(state) = self.state.read() else {
            // A poisoned lock cannot vouch for anything: withhold everything.
            return Some((WITHHELD.as_bytes().to_vec(), "unknown", 1));
        };
        let automaton = state.automaton.as_ref()?;
        let mut out: Option<Vec<u8>> = None;
        let mut first = "";
        let mut count = 0;
        let mut last = 0;
        for m in automaton.find_iter(bytes) {
            let buf = out.get_or_insert_with(|| Vec::with_capacity(bytes.len()));
            if count == 0 {
                first = state.forms[m.pattern().as_usize()].encoding;
            }
            count += 1;
            buf.extend_from_slice(&bytes[last..m.start()]);
            buf.extend_from_slice(WITHHELD.as_bytes());
            last = m.end();
        }
        let mut buf = out?;
        buf.extend_from_slice(&bytes[last..]);
        Some((buf, first, count))
    }

    /// The start of the first match that begins before `cut` and ends after it, if any: a
    /// stream must hold back from there.
    pub fn straddling(&self, bytes: &[u8], cut: usize) -> Option<usize> {
        let state = self.state.read().ok()?;
        let automaton = state.automaton.as_ref()?;
        automaton
            .find_iter(bytes)
            .find(|m| m.start() < cut && m.end() > cut)
            .map(|m| m.start())
    }

    /// Whether any secret was registered.
    pub fn is_armed(&self) -> bool {
        self.state
            .read()
            .map(|s| !s.forms.is_empty())
            .unwrap_or(true)
    }

    /// The encoding of the first registered secret found in `bytes`, if any.
    pub fn find(&self, bytes: &[u8]) -> Option<&'static str> {
        let Ok(state) = self.state.read() else {
            // A poisoned lock cannot vouch for anything.
            return Some("unknown");
        };
        let automaton = state.automaton.as_ref()?;
        automaton
            .find(bytes)
            .map(|m| state.forms[m.pattern().as_usize()].encoding)
    }
}

fn zeroed(len: usize) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(vec![0u8; len])
}

/// Every form of `secret` worth searching for.
pub(crate) fn forms_of(secret: &[u8]) -> Vec<Form> {
    let mut out = vec![Form {
        bytes: Zeroizing::new(secret.to_vec()),
        encoding: "raw",
    }];
    // base64: the characters that depend only on the secret's bytes, for each of the three
    // alignments the secret can have inside a longer encoded text.
    for (engine, name) in [
        (&base64::engine::general_purpose::STANDARD, "base64"),
        (&base64::engine::general_purpose::URL_SAFE, "base64url"),
    ] {
        for shift in 0..3usize {
            let mut input = zeroed(shift + secret.len());
            input[shift..].copy_from_slice(secret);
            let mut encoded = zeroed(base64::encoded_len(input.len(), true).unwrap_or(0));
            let Ok(n) = engine.encode_slice(&input[..], &mut encoded[..]) else {
                continue;
            };
            let start = (8 * shift).div_ceil(6);
            let end = (8 * (shift + secret.len()) / 6).min(n);
            if start < end {
                out.push(Form {
                    bytes: Zeroizing::new(encoded[start..end].to_vec()),
                    encoding: name,
                });
            }
        }
    }
    let mut hex = zeroed(secret.len() * 2);
    if hex::encode_to_slice(secret, &mut hex[..]).is_ok() {
        let mut upper = Zeroizing::new(hex.to_vec());
        upper.make_ascii_uppercase();
        out.push(Form {
            bytes: hex,
            encoding: "hex",
        });
        out.push(Form {
            bytes: upper,
            encoding: "hex",
        });
    }
    // Encoders differ in what they leave alone: every non-alphanumeric byte, RFC 3986's
    // unreserved set, Python's `quote` (also `/`), JavaScript's `encodeURIComponent`.
    for keep in [&b""[..], b"-._~", b"-._~/", b"-_.!~*'()"] {
        for upper in [true, false] {
            for plus in [false, true] {
                let encoded = url_encode(secret, keep, upper, plus);
                if encoded[..] != *secret {
                    out.push(Form {
                        bytes: encoded,
                        encoding: "url-encoded",
                    });
                }
            }
        }
    }
    let once = json_escape(secret);
    if once[..] != *secret {
        let twice = json_escape(&once);
        out.push(Form {
            bytes: once,
            encoding: "json-escaped",
        });
        out.push(Form {
            bytes: twice,
            encoding: "json-escaped",
        });
    }
    out
}

fn url_encode(input: &[u8], keep: &[u8], upper: bool, plus_for_space: bool) -> Zeroizing<Vec<u8>> {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut out = Zeroizing::new(Vec::with_capacity(input.len() * 3));
    for &b in input {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            out.push(b);
        } else if b == b' ' && plus_for_space {
            out.push(b'+');
        } else {
            out.extend_from_slice(&[b'%', digits[(b >> 4) as usize], digits[(b & 15) as usize]]);
        }
    }
    out
}

/// Escapes as `serde_json` writes strings: `"` and `\` and control characters.
fn json_escape(input: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(input.len() * 6));
    for &b in input {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..=0x1f => {
                let digits = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    digits[(b >> 4) as usize],
                    digits[(b & 15) as usize],
                ]);
            }
            _ => out.push(b),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr\"et/pa ss\\wörd";

    fn scanner() -> OutboundScanner {
        let s = OutboundScanner::new();
        s.register(&SecretString::new(SECRET.to_string()));
        s
    }

    #[test]
    fn finds_every_form_inside_other_text() {
        let s = scanner();
        let b64 = base64::engine::general_purpose::STANDARD;
        let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let url: String = SECRET
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let cases = [
            (format!("x{SECRET}y"), "raw"),
            (format!("x{}y", b64.encode(SECRET)), "base64"),
            // at another alignment inside a longer encoded text
            (b64.encode(format!("ab{SECRET}cd")), "base64"),
            (b64url.encode(format!("a{SECRET}")), "base64url"),
            (format!("x{}y", hex::encode(SECRET)), "hex"),
            (format!("x{}y", hex::encode_upper(SECRET)), "hex"),
            (format!("x{url}y"), "url-encoded"),
            (format!("x{}y", url.replace("%2F", "/")), "url-encoded"),
            (serde_json::to_string(SECRET).unwrap(), "json-escaped"),
            (
                serde_json::to_string(&serde_json::to_string(SECRET).unwrap()).unwrap(),
                "json-escaped",
            ),
        ];
        for (text, encoding) in cases {
            let got = s.find(text.as_bytes()).unwrap_or("none");
            // a URL-safe fragment without `-` or `_` is also a standard one
            assert!(
                got == encoding || (encoding == "base64url" && got == "base64"),
                "{text}: {got}"
            );
        }
        assert_eq!(s.find(b"nothing of the sort"), None);
    }

    #[test]
    fn empty_scanner_finds_nothing() {
        let s = OutboundScanner::new();
        assert!(!s.is_armed());
        assert_eq!(s.find(b"anything"), None);
        s.register(&SecretString::new(String::new()));
        assert!(!s.is_armed());
    }
}
