//! The inbound secret filter: a plugin never receives a secret of its run.
//!
//! A source may reflect the credential the host logged in with: an API that echoes its
//! request, a table comment or a server log readable through SQL, a login's password verifier.
//! A plugin that received it could re-encode it (reverse it, split it over assets) in ways no
//! outbound scan recognises, so every byte a host capability hands to a plugin passes here
//! first: SQL column names, types, values and error messages, HTTP headers and bodies
//! (streamed bodies included, with a held-back tail so a secret split across two network
//! reads is still found). Each secret the run resolved is searched in every form the outbound
//! scan knows (raw, base64 at every alignment, hex, URL and JSON encodings) and in the
//! verifiers a database stores for the login ([`OutboundScanner::register_login`]). A hit is
//! replaced by [`crate::pipeline::scan::WITHHELD`], counted for the manifest, and audited once per capability and
//! destination as `secret-reflected` (never with the value). With
//! `filters.on_reflected_secret = "fail"` the call fails instead and the run fails.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::OnReflected;
use crate::pipeline::scan::OutboundScanner;
use crate::state::RunAudit;

/// The per-run inbound filter (shared by the SQL and HTTP capabilities).
pub struct InboundFilter {
    scanner: Arc<OutboundScanner>,
    audit: Option<RunAudit>,
    on_reflected: OnReflected,
    hits: AtomicU64,
    /// (capability, destination) pairs already audited.
    audited: Mutex<HashSet<(String, String)>>,
    /// Set by the first hit in `fail` mode: the run fails with it.
    failure: Mutex<Option<String>>,
}

impl std::fmt::Debug for InboundFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundFilter")
            .field("hits", &self.hits())
            .finish_non_exhaustive()
    }
}

/// Why a capability call failed when a reflected secret fails the run.
pub type Reflected = String;

impl InboundFilter {
    /// A filter searching for every secret `scanner` holds (the run registers them as it
    /// resolves them).
    pub fn new(scanner: Arc<OutboundScanner>, audit: Option<RunAudit>, on: OnReflected) -> Self {
        InboundFilter {
            scanner,
            audit,
            on_reflected: on,
            hits: AtomicU64::new(0),
            audited: Mutex::new(HashSet::new()),
            failure: Mutex::new(None),
        }
    }

    /// A filter that knows no secret (describing a plugin, tests).
    pub fn disarmed() -> Self {
        Self::new(
            Arc::new(OutboundScanner::new()),
            None,
            OnReflected::Withhold,
        )
    }

    /// Reflected secrets withheld so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// The failure of the run, if a reflected secret failed it.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    /// The longest form searched for (0 when no secret is known).
    pub(crate) fn longest_form(&self) -> usize {
        self.scanner.longest_form()
    }

    pub(crate) fn scanner(&self) -> &OutboundScanner {
        &self.scanner
    }

    fn hit(
        &self,
        count: usize,
        encoding: &str,
        capability: &str,
        destination: &str,
    ) -> Result<(), Reflected> {
        self.hits.fetch_add(count as u64, Ordering::Relaxed);
        let first = self
            .audited
            .lock()
            .map(|mut seen| seen.insert((capability.to_string(), destination.to_string())))
            .unwrap_or(true);
        if first {
            if let Some(audit) = &self.audit {
                audit.record(
                    "secret-reflected",
                    match self.on_reflected {
                        OnReflected::Withhold => "withheld",
                        OnReflected::Fail => "failed",
                    },
                    None,
                    Some(destination),
                    Some(&format!("{capability} ({encoding})")),
                );
            }
            tracing::warn!(
                capability,
                destination,
                encoding,
                "a source sent a secret of this run back; it was withheld from the plugin"
            );
        }
        match self.on_reflected {
            OnReflected::Withhold => Ok(()),
            OnReflected::Fail => {
                let message = format!(
                    "{destination} sent a secret of this run back through {capability} \
                     ({encoding}); the plugin did not receive it and the run fails because \
                     filters.on_reflected_secret = \"fail\""
                );
                if let Ok(mut f) = self.failure.lock() {
                    f.get_or_insert_with(|| message.clone());
                }
                Err(message)
            }
        }
    }

    /// `bytes` with every secret form withheld.
    pub fn bytes(
        &self,
        bytes: Vec<u8>,
        capability: &str,
        destination: &str,
    ) -> Result<Vec<u8>, Reflected> {
        match self.scanner.withhold(&bytes) {
            None => Ok(bytes),
            Some((clean, encoding, count)) => {
                self.hit(count, encoding, capability, destination)?;
                Ok(clean)
            }
        }
    }

    /// `text` with every secret form withheld.
    pub fn text(
        &self,
        text: String,
        capability: &str,
        destination: &str,
    ) -> Result<String, Reflected> {
        match self.scanner.withhold(text.as_bytes()) {
            None => Ok(text),
            Some((clean, encoding, count)) => {
                self.hit(count, encoding, capability, destination)?;
                // A form of a valid UTF-8 secret (or an ASCII encoding) found in valid UTF-8
                // starts and ends on character boundaries, so this never loses anything.
                Ok(String::from_utf8(clean)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
            }
        }
    }

    /// Whether any secret is known (nothing to search otherwise).
    pub fn is_armed(&self) -> bool {
        self.scanner.is_armed()
    }
}

/// A stream (an HTTP body) passed through the filter piece by piece: the last
/// `longest form - 1` bytes of each piece are held back until the next one arrives, so a
/// secret split across two network reads is found; a form that straddles the boundary holds
/// back from its start.
#[derive(Default)]
pub struct InboundStream {
    carry: Vec<u8>,
}

impl InboundStream {
    /// Filters `piece` (after the held-back bytes); returns what may be handed out now. With
    /// `last`, everything left is returned.
    pub fn push(
        &mut self,
        filter: &InboundFilter,
        piece: &[u8],
        last: bool,
        capability: &str,
        destination: &str,
    ) -> Result<Vec<u8>, Reflected> {
        if !filter.is_armed() && self.carry.is_empty() {
            return Ok(piece.to_vec());
        }
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(piece);
        let hold = filter.longest_form().saturating_sub(1);
        let mut cut = if last {
            buf.len()
        } else {
            buf.len().saturating_sub(hold)
        };
        if let Some(start) = filter.scanner().straddling(&buf, cut) {
            cut = start;
        }
        self.carry = buf.split_off(cut);
        filter.bytes(buf, capability, destination)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::scan::WITHHELD;
    use crate::secrets::SecretString;
    use base64::Engine;

    const SECRET: &str = "pw-Reflect-7d2c9e";

    fn filter(on: OnReflected) -> InboundFilter {
        let scanner = Arc::new(OutboundScanner::new());
        let secret = SecretString::new(SECRET.into());
        scanner.register(&secret);
        scanner.register_login("reader", &secret);
        InboundFilter::new(scanner, None, on)
    }

    fn md5_verifier(password: &str, user: &str) -> String {
        use md5::{Digest, Md5};
        format!(
            "md5{}",
            hex::encode(Md5::digest(format!("{password}{user}")))
        )
    }

    fn native_verifier(password: &str) -> String {
        use sha1::{Digest, Sha1};
        format!(
            "*{}",
            hex::encode_upper(Sha1::digest(Sha1::digest(password)))
        )
    }

    #[test]
    fn every_form_and_verifier_is_withheld() {
        let f = filter(OnReflected::Withhold);
        let b64 = base64::engine::general_purpose::STANDARD;
        let cases = [
            format!("echo: {SECRET}!"),
            format!(
                "Authorization: Basic {}",
                b64.encode(format!("reader:{SECRET}"))
            ),
            format!("x{}y", b64.encode(SECRET)),
            hex::encode(SECRET),
            SECRET.replace('-', "%2D"),
            serde_json::to_string(&serde_json::json!({ "p": SECRET })).unwrap(),
            format!("rolpassword={}", md5_verifier(SECRET, "reader")),
            format!("IDENTIFIED BY PASSWORD '{}'", native_verifier(SECRET)),
            native_verifier(SECRET).to_ascii_lowercase(),
        ];
        for (i, text) in cases.iter().enumerate() {
            let out = f.text(text.clone(), "sql", "db:5432").unwrap();
            assert!(out.contains(WITHHELD), "case {i} not withheld: {out}");
            assert!(!out.contains(SECRET), "case {i}: {out}");
        }
        assert_eq!(f.hits(), cases.len() as u64);
        assert_eq!(f.text("harmless".into(), "sql", "x").unwrap(), "harmless");
        assert!(f.failure().is_none());
    }

    #[test]
    fn fail_mode_fails_the_call_and_the_run() {
        let f = filter(OnReflected::Fail);
        let err = f
            .bytes(SECRET.as_bytes().to_vec(), "http", "api:443")
            .unwrap_err();
        assert!(!err.contains(SECRET));
        assert!(f.failure().unwrap().contains("on_reflected_secret"));
    }

    #[test]
    fn a_secret_split_across_stream_pieces_is_found() {
        let f = filter(OnReflected::Withhold);
        let body = format!(
            "{{\"echo\": \"{SECRET}\", \"pad\": \"{}\"}}",
            "z".repeat(100)
        );
        for split in 1..body.len() {
            let mut stream = InboundStream::default();
            let mut out = stream
                .push(&f, &body.as_bytes()[..split], false, "http", "a")
                .unwrap();
            out.extend(
                stream
                    .push(&f, &body.as_bytes()[split..], false, "http", "a")
                    .unwrap(),
            );
            out.extend(stream.push(&f, b"", true, "http", "a").unwrap());
            let out = String::from_utf8(out).unwrap();
            assert!(!out.contains(SECRET), "split at {split}: {out}");
            assert!(
                out.contains(WITHHELD) && out.ends_with("\"}"),
                "split {split}"
            );
        }
    }

    #[test]
    fn a_disarmed_filter_passes_everything() {
        let f = InboundFilter::disarmed();
        let mut s = InboundStream::default();
        assert_eq!(s.push(&f, b"abc", false, "http", "a").unwrap(), b"abc");
        assert_eq!(f.text(SECRET.into(), "sql", "a").unwrap(), SECRET);
    }
}
