//! Redaction of resolved secrets from every text airlock prints or stores: log lines (host and
//! plugin), error messages, warnings.
//!
//! The redactor keeps no secret: it remembers each secret's length and SHA-256, and finds
//! occurrences by hashing every window of that length. Texts that pass through it are short
//! (log lines, errors), so the cost is small, and a memory dump of the redactor reveals nothing
//! a brute force on the hash would not.

use std::borrow::Cow;
use std::sync::{OnceLock, RwLock};

use sha2::{Digest, Sha256};

use super::SecretString;

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

#[derive(Clone, PartialEq, Eq)]
struct Fingerprint {
    len: usize,
    first: u8,
    digest: [u8; 32],
}

fn fingerprint(bytes: &[u8]) -> Fingerprint {
    Fingerprint {
        len: bytes.len(),
        first: bytes[0],
        digest: Sha256::digest(bytes).into(),
    }
}

/// A set of secret fingerprints.
#[derive(Default)]
pub struct Redactor {
    prints: RwLock<Vec<Fingerprint>>,
}

impl Redactor {
    /// The process-wide redactor every output path uses.
    pub fn global() -> &'static Redactor {
        static GLOBAL: OnceLock<Redactor> = OnceLock::new();
        GLOBAL.get_or_init(Redactor::default)
    }

    /// Remembers a secret so later texts have it replaced: raw and in the encoded forms the
    /// outbound scan searches for (base64, hex, URL-encoded, JSON-escaped).
    pub fn register(&self, secret: &SecretString) {
        let bytes = secret.expose().as_bytes();
        if bytes.is_empty() {
            return;
        }
        let mut new = vec![fingerprint(bytes)];
        for form in crate::pipeline::scan::forms_of(bytes) {
            if form.bytes.len() >= crate::pipeline::scan::MIN_FORM_BYTES {
                new.push(fingerprint(&form.bytes));
            }
        }
        if let Ok(mut prints) = self.prints.write() {
            for print in new {
                if !prints.contains(&print) {
                    prints.push(print);
                }
            }
        }
    }

    /// Replaces every registered secret in `text` with `[redacted]`.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let Ok(prints) = self.prints.read() else {
            return Cow::Owned(REDACTED.to_string());
        };
        if prints.is_empty() {
            return Cow::Borrowed(text);
        }
        let bytes = text.as_bytes();
        let mut hits: Vec<(usize, usize)> = Vec::new();
        for p in prints.iter() {
            if p.len > bytes.len() {
                continue;
            }
            let mut i = 0;
            while i + p.len <= bytes.len() {
                if bytes[i] == p.first
                    && <[u8; 32]>::from(Sha256::digest(&bytes[i..i + p.len])) == p.digest
                {
                    hits.push((i, i + p.len));
                    i += p.len;
                } else {
                    i += 1;
                }
            }
        }
        if hits.is_empty() {
            return Cow::Borrowed(text);
        }
        hits.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut pos = 0;
        for (start, end) in hits {
            if start < pos {
                pos = pos.max(end);
                continue;
            }
            // Secrets are valid UTF-8 and so is `text`: matches start and end on char
            // boundaries (UTF-8 is self-synchronizing).
            out.push_str(&text[pos..start]);
            out.push_str(REDACTED);
            pos = end;
        }
        out.push_str(&text[pos..]);
        Cow::Owned(out)
    }
}

/// A `tracing` writer that redacts each formatted event before it reaches stderr.
pub struct RedactingStderr;

/// The per-event buffer of [`RedactingStderr`].
pub struct RedactingLine(Vec<u8>);

impl std::io::Write for RedactingLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactingLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let clean = Redactor::global().redact(&text);
        let _ = std::io::Write::write_all(&mut std::io::stderr(), clean.as_bytes());
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingLine;
    fn make_writer(&'a self) -> Self::Writer {
        RedactingLine(Vec::with_capacity(256))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_every_occurrence() {
        let r = Redactor::default();
        r.register(&SecretString::new("pa55wörd".into()));
        assert_eq!(
            r.redact("login pa55wörd failed; pa55wörd!"),
            "login [redacted] failed; [redacted]!"
        );
        assert_eq!(r.redact("nothing here"), "nothing here");
    }

    #[test]
    fn overlapping_secrets() {
        let r = Redactor::default();
        r.register(&SecretString::new("abcdef".into()));
        r.register(&SecretString::new("cdefgh".into()));
        assert_eq!(r.redact("xxabcdefghxx"), "xx[redacted]xx");
    }

    #[test]
    fn encoded_forms_are_replaced_too() {
        use base64::Engine;
        let secret = "Tok3n/with+odd&chars";
        let r = Redactor::default();
        r.register(&SecretString::new(secret.into()));
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("user:{secret}"));
        let hex = hex::encode(secret);
        let url = "Tok3n%2Fwith%2Bodd%26chars";
        for text in [
            format!("basic {b64}"),
            format!("hex={hex}"),
            format!("url={url}"),
        ] {
            let out = r.redact(&text);
            assert!(out.contains(REDACTED), "{text} -> {out}");
            assert!(!out.contains(&hex) && !out.contains(url), "{out}");
        }
        // The base64 text keeps only the characters that do not depend on the secret.
        let text = format!("basic {b64}");
        let out = r.redact(&text);
        assert!(out.len() < text.len(), "{out}");
    }
}
