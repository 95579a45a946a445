//! Field rules: what the host does to the top-level attributes of an asset it keeps — drop the
//! key, mask the value with a fixed token, replace it with a keyed HMAC-SHA256 (joinable, not
//! guessable), truncate a string, or redact matches of a pattern inside a string. Every change
//! is counted per kind, field and action for the manifest.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::asset::AssetKind;
use super::config::{FieldActionName, FieldRuleConfig};

/// What `mask` writes instead of a value.
pub const MASK_TOKEN: &str = "[masked]";
/// What `redact` writes instead of each match.
pub const REDACT_TOKEN: &str = "[redacted]";
/// What `hash` writes before the hex digest.
pub const HASH_PREFIX: &str = "hmac-sha256:";

/// The compiled `filters.fields` rules, applied in order.
#[derive(Debug, Clone, Default)]
pub struct FieldPolicy {
    rules: Vec<FieldRule>,
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct FieldRule {
    field: String,
    kinds: Vec<AssetKind>,
    action: Action,
}

#[derive(Debug, Clone)]
enum Action {
    Drop,
    Mask,
    Hash { key_credential: String },
    Truncate { max_chars: usize },
    Redact { pattern: Regex },
}

/// HMAC keys by credential GUID, resolved at run start; zeroized on drop, never printed.
#[derive(Default)]
pub struct HashKeys(BTreeMap<String, Zeroizing<Vec<u8>>>);

impl HashKeys {
    /// Adds the key of credential `guid`.
    pub fn insert(&mut self, guid: &str, key: Zeroizing<Vec<u8>>) {
        self.0.insert(guid.to_string(), key);
    }

    fn get(&self, guid: &str) -> Option<&[u8]> {
        self.0.get(guid).map(|k| k.as_slice())
    }
}

impl fmt::Debug for HashKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HashKeys({} keys, [redacted])", self.0.len())
    }
}

/// Per field, per action: how many values a rule changed (for one kind).
pub type FieldCounts = BTreeMap<String, BTreeMap<String, u64>>;

impl FieldPolicy {
    /// Compiles `filters.fields`; every rule must carry exactly the options its action uses.
    pub fn compile(cfg: &[FieldRuleConfig]) -> Result<Self, String> {
        let mut rules = Vec::new();
        for (i, r) in cfg.iter().enumerate() {
            let at = format!("filters.fields[{i}] (field `{}`)", r.field);
            if r.field.is_empty() {
                return Err(format!("{at}: `field` is empty"));
            }
            let kinds = r
                .kinds
                .iter()
                .map(|k| k.parse::<AssetKind>().map_err(|e| format!("{at}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            let unused = |name: &str, set: bool| {
                if set {
                    Err(format!(
                        "{at}: `{name}` does not apply to action `{}`",
                        r.action.as_str()
                    ))
                } else {
                    Ok(())
                }
            };
            let action = match r.action {
                FieldActionName::Drop | FieldActionName::Mask => {
                    unused("max_chars", r.max_chars.is_some())?;
                    unused("pattern", r.pattern.is_some())?;
                    unused("key_credential", r.key_credential.is_some())?;
                    if r.action == FieldActionName::Drop {
                        Action::Drop
                    } else {
                        Action::Mask
                    }
                }
                FieldActionName::Hash => {
                    unused("max_chars", r.max_chars.is_some())?;
                    unused("pattern", r.pattern.is_some())?;
                    let guid = r.key_credential.clone().ok_or_else(|| {
                        format!("{at}: action `hash` needs `key_credential = \"<credential GUID>\"` (the HMAC key)")
                    })?;
                    Action::Hash {
                        key_credential: guid,
                    }
                }
                FieldActionName::Truncate => {
                    unused("pattern", r.pattern.is_some())?;
                    unused("key_credential", r.key_credential.is_some())?;
                    let max_chars = r
                        .max_chars
                        .ok_or_else(|| format!("{at}: action `truncate` needs `max_chars`"))?;
                    Action::Truncate { max_chars }
                }
                FieldActionName::Redact => {
                    unused("max_chars", r.max_chars.is_some())?;
                    unused("key_credential", r.key_credential.is_some())?;
                    let source = r
                        .pattern
                        .as_deref()
                        .ok_or_else(|| format!("{at}: action `redact` needs `pattern`"))?;
                    let pattern = Regex::new(source).map_err(|e| {
                        format!("{at}: pattern is not a valid regular expression: {e}")
                    })?;
                    if pattern.is_match("") {
                        return Err(format!("{at}: pattern `{source}` matches the empty string"));
                    }
                    Action::Redact { pattern }
                }
            };
            rules.push(FieldRule {
                field: r.field.clone(),
                kinds,
                action,
            });
        }
        Ok(FieldPolicy { rules })
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[FieldRule] {
        &self.rules
    }

    /// Whether any rule applies to `kind`.
    pub fn applies_to(&self, kind: AssetKind) -> bool {
        self.rules.iter().any(|r| r.applies_to(kind))
    }

    /// GUIDs of the credentials whose secrets are HMAC keys.
    pub fn key_credentials(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .rules
            .iter()
            .filter_map(|r| match &r.action {
                Action::Hash { key_credential } => Some(key_credential.clone()),
                _ => None,
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Applies every rule for `kind` to `attrs`, counting what changed into `counts`.
    pub fn apply(
        &self,
        kind: AssetKind,
        attrs: &mut Map<String, Value>,
        keys: &HashKeys,
        counts: &mut FieldCounts,
    ) -> Result<(), String> {
        for rule in self.rules.iter().filter(|r| r.applies_to(kind)) {
            let changed = match (&rule.action, attrs.get_mut(&rule.field)) {
                (_, None) => false,
                (Action::Drop, Some(_)) => {
                    attrs.remove(&rule.field);
                    true
                }
                (_, Some(Value::Null)) => false,
                (Action::Mask, Some(v)) => {
                    *v = Value::String(MASK_TOKEN.into());
                    true
                }
                (Action::Hash { key_credential }, Some(v)) => {
                    let key = keys.get(key_credential).ok_or_else(|| {
                        format!("the HMAC key of credential {key_credential} was not resolved")
                    })?;
                    let mac = match &*v {
                        Value::String(s) => hmac_sha256(key, s.as_bytes()),
                        other => hmac_sha256(key, other.to_string().as_bytes()),
                    };
                    *v = Value::String(format!("{HASH_PREFIX}{}", hex::encode(mac)));
                    true
                }
                (Action::Truncate { max_chars }, Some(Value::String(s))) => {
                    match s.char_indices().nth(*max_chars) {
                        Some((cut, _)) => {
                            s.truncate(cut);
                            true
                        }
                        None => false,
                    }
                }
                (Action::Redact { pattern }, Some(Value::String(s))) => {
                    match pattern.replace_all(s, REDACT_TOKEN) {
                        std::borrow::Cow::Owned(new) => {
                            *s = new;
                            true
                        }
                        std::borrow::Cow::Borrowed(_) => false,
                    }
                }
                // truncate and redact only change strings
                (_, Some(_)) => false,
            };
            if changed {
                *counts
                    .entry(rule.field.clone())
                    .or_default()
                    .entry(rule.action_name().to_string())
                    .or_default() += 1;
            }
        }
        Ok(())
    }
}

impl FieldRule {
    /// Whether the rule applies to assets of `kind`.
    pub fn applies_to(&self, kind: AssetKind) -> bool {
        self.kinds.is_empty() || self.kinds.contains(&kind)
    }

    /// The action's config name.
    pub fn action_name(&self) -> &'static str {
        match self.action {
            Action::Drop => "drop",
            Action::Mask => "mask",
            Action::Hash { .. } => "hash",
            Action::Truncate { .. } => "truncate",
            Action::Redact { .. } => "redact",
        }
    }
}

impl fmt::Display for FieldRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.action_name(), self.field)?;
        match &self.action {
            Action::Truncate { max_chars } => write!(f, " to {max_chars} characters")?,
            Action::Redact { pattern } => write!(f, " matches of `{}`", pattern.as_str())?,
            Action::Hash { key_credential } => {
                write!(f, " (HMAC-SHA256, key credential {key_credential})")?
            }
            Action::Drop | Action::Mask => {}
        }
        if !self.kinds.is_empty() {
            let kinds: Vec<&str> = self.kinds.iter().map(|k| k.as_str()).collect();
            write!(f, " [kinds: {}]", kinds.join(", "))?;
        }
        Ok(())
    }
}

/// HMAC-SHA256 (RFC 2104) over `sha2`, with the padded key blocks zeroized.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = Zeroizing::new([0u8; BLOCK]);
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut ipad = Zeroizing::new([0x36u8; BLOCK]);
    let mut opad = Zeroizing::new([0x5cu8; BLOCK]);
    for i in 0..BLOCK {
        ipad[i] ^= k[i];
        opad[i] ^= k[i];
    }
    let inner = Sha256::new()
        .chain_update(&ipad[..])
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(&opad[..])
        .chain_update(inner)
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    fn rule(field: &str, action: FieldActionName) -> FieldRuleConfig {
        FieldRuleConfig {
            field: field.into(),
            action,
            kinds: Vec::new(),
            max_chars: None,
            pattern: None,
            key_credential: None,
        }
    }

    #[test]
    fn every_action_changes_and_counts() {
        let policy = FieldPolicy::compile(&[
            rule("ddl", FieldActionName::Drop),
            rule("owner", FieldActionName::Mask),
            FieldRuleConfig {
                key_credential: Some("g".into()),
                ..rule("id", FieldActionName::Hash)
            },
            FieldRuleConfig {
                max_chars: Some(3),
                ..rule("note", FieldActionName::Truncate)
            },
            FieldRuleConfig {
                pattern: Some(r"[\w.]+@[\w.]+".into()),
                ..rule("comment", FieldActionName::Redact)
            },
            FieldRuleConfig {
                kinds: vec!["view".into()],
                ..rule("n", FieldActionName::Drop)
            },
        ])
        .unwrap();
        let mut keys = HashKeys::default();
        keys.insert("g", Zeroizing::new(b"Jefe".to_vec()));
        let mut attrs: Map<String, Value> = serde_json::from_str(
            r#"{"ddl":"x","owner":null,"id":"what do ya want for nothing?","note":"héllo","comment":"ask a.b@c.d or e@f","n":1}"#,
        )
        .unwrap();
        let mut counts = FieldCounts::new();
        policy
            .apply(AssetKind::Table, &mut attrs, &keys, &mut counts)
            .unwrap();
        assert_eq!(
            Value::Object(attrs),
            serde_json::json!({
                "owner": null,
                "id": "hmac-sha256:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                "note": "hél",
                "comment": "ask [redacted] or [redacted]",
                "n": 1,
            })
        );
        let want: FieldCounts = serde_json::from_value(serde_json::json!({
            "ddl": {"drop": 1}, "id": {"hash": 1}, "note": {"truncate": 1}, "comment": {"redact": 1}
        }))
        .unwrap();
        assert_eq!(counts, want);
    }

    #[test]
    fn options_must_fit_the_action() {
        let e = FieldPolicy::compile(&[rule("x", FieldActionName::Truncate)]).unwrap_err();
        assert!(e.contains("needs `max_chars`"), "{e}");
        let e = FieldPolicy::compile(&[FieldRuleConfig {
            max_chars: Some(1),
            ..rule("x", FieldActionName::Drop)
        }])
        .unwrap_err();
        assert!(e.contains("`max_chars` does not apply"), "{e}");
        let e = FieldPolicy::compile(&[rule("x", FieldActionName::Hash)]).unwrap_err();
        assert!(e.contains("key_credential"), "{e}");
        let e = FieldPolicy::compile(&[FieldRuleConfig {
            pattern: Some("a*".into()),
            ..rule("x", FieldActionName::Redact)
        }])
        .unwrap_err();
        assert!(e.contains("empty string"), "{e}");
    }
}
