//! The asset contract: one JSON Schema per asset kind (`contract/<version>/<kind>.schema.json`
//! in the repository, compiled into the host) naming every attribute a consumer can rely on,
//! with its type and bounds, under the same names for every engine.
//!
//! The host enforces it on every asset before the filters ([`Contract::enforce`]): a key the
//! contract does not name is dropped and counted, a value of the wrong type or out of bounds
//! drops the asset and is counted. `airlock validate` checks a published run against the same
//! schemas ([`Contract::check`]).
//!
//! The schemas are read by a small interpreter of the JSON Schema keywords they use (`type`,
//! `properties`, `additionalProperties`, `enum`, `minimum`, `maximum`, `maxLength`, `items`,
//! `maxItems`, `maxProperties`, `propertyNames`): enforcement must drop unknown keys rather
//! than only reject, and it runs on every asset, so it works on the raw JSON text and parses
//! only what it checks. A schema using any other keyword fails to load, so no keyword is ever
//! silently ignored.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

use super::asset::AssetKind;

/// The contract version this host enforces and writes into each manifest.
pub const CONTRACT_VERSION: &str = "1.0";

/// The schema files of [`CONTRACT_VERSION`], by kind.
const SCHEMAS: [(AssetKind, &str); 16] = [
    (
        AssetKind::Database,
        include_str!("../../../contract/1.0/database.schema.json"),
    ),
    (
        AssetKind::Schema,
        include_str!("../../../contract/1.0/schema.schema.json"),
    ),
    (
        AssetKind::Table,
        include_str!("../../../contract/1.0/table.schema.json"),
    ),
    (
        AssetKind::View,
        include_str!("../../../contract/1.0/view.schema.json"),
    ),
    (
        AssetKind::MaterializedView,
        include_str!("../../../contract/1.0/materialized_view.schema.json"),
    ),
    (
        AssetKind::Column,
        include_str!("../../../contract/1.0/column.schema.json"),
    ),
    (
        AssetKind::PrimaryKey,
        include_str!("../../../contract/1.0/primary_key.schema.json"),
    ),
    (
        AssetKind::UniqueKey,
        include_str!("../../../contract/1.0/unique_key.schema.json"),
    ),
    (
        AssetKind::ForeignKey,
        include_str!("../../../contract/1.0/foreign_key.schema.json"),
    ),
    (
        AssetKind::CheckConstraint,
        include_str!("../../../contract/1.0/check_constraint.schema.json"),
    ),
    (
        AssetKind::Index,
        include_str!("../../../contract/1.0/index.schema.json"),
    ),
    (
        AssetKind::Trigger,
        include_str!("../../../contract/1.0/trigger.schema.json"),
    ),
    (
        AssetKind::Partition,
        include_str!("../../../contract/1.0/partition.schema.json"),
    ),
    (
        AssetKind::Function,
        include_str!("../../../contract/1.0/function.schema.json"),
    ),
    (
        AssetKind::Procedure,
        include_str!("../../../contract/1.0/procedure.schema.json"),
    ),
    (
        AssetKind::Sequence,
        include_str!("../../../contract/1.0/sequence.schema.json"),
    ),
];

/// JSON types as bits.
const STRING: u8 = 1;
const INTEGER: u8 = 2;
const NUMBER: u8 = 4;
const BOOLEAN: u8 = 8;
const NULL: u8 = 16;
const ARRAY: u8 = 32;
const OBJECT: u8 = 64;

/// What `additionalProperties` says of keys `properties` does not name.
#[derive(Debug, Default)]
enum Additional {
    /// Not given (or `true`): allowed as they are.
    #[default]
    Allowed,
    /// `false`.
    Forbidden,
    /// Allowed when they satisfy the rule.
    Rule(Box<Rule>),
}

/// A `minimum` or `maximum`, exact for integers (f64 cannot tell 2^63 - 1 from 2^63).
#[derive(Debug, Clone, Copy)]
enum Bound {
    Int(i128),
    Float(f64),
}

impl Bound {
    fn of(v: &Value) -> Option<Bound> {
        match v {
            Value::Number(n) => n
                .as_i64()
                .map(|i| Bound::Int(i as i128))
                .or_else(|| n.as_u64().map(|u| Bound::Int(u as i128)))
                .or_else(|| n.as_f64().map(Bound::Float)),
            _ => None,
        }
    }

    /// `n` compared with the bound.
    fn cmp(self, n: &serde_json::Number) -> std::cmp::Ordering {
        let int = n
            .as_i64()
            .map(|i| i as i128)
            .or_else(|| n.as_u64().map(|u| u as i128));
        match (self, int) {
            (Bound::Int(b), Some(i)) => i.cmp(&b),
            (Bound::Int(b), None) => n
                .as_f64()
                .and_then(|f| f.partial_cmp(&(b as f64)))
                .unwrap_or(std::cmp::Ordering::Greater),
            (Bound::Float(b), _) => n
                .as_f64()
                .and_then(|f| f.partial_cmp(&b))
                .unwrap_or(std::cmp::Ordering::Greater),
        }
    }
}

/// One compiled schema.
#[derive(Debug, Default)]
struct Rule {
    /// Allowed types (bits above); 0 means any.
    types: u8,
    max_length: Option<usize>,
    minimum: Option<Bound>,
    maximum: Option<Bound>,
    allowed: Option<Vec<Value>>,
    items: Option<Box<Rule>>,
    max_items: Option<usize>,
    properties: BTreeMap<String, Rule>,
    additional: Additional,
    max_properties: Option<usize>,
    name_max_length: Option<usize>,
}

impl Rule {
    fn compile(v: &Value, at: &str) -> Result<Rule, String> {
        let obj = v
            .as_object()
            .ok_or_else(|| format!("{at}: a schema must be an object"))?;
        let mut rule = Rule::default();
        let usize_of = |v: &Value, key: &str| {
            v.as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| format!("{at}: `{key}` must be a non-negative integer"))
        };
        for (key, value) in obj {
            match key.as_str() {
                "$schema" | "$id" | "title" | "description" | "$comment" => {}
                "type" => {
                    let names: Vec<&str> = match value {
                        Value::String(s) => vec![s.as_str()],
                        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                        _ => return Err(format!("{at}: `type` must be a string or a list")),
                    };
                    for name in names {
                        rule.types |= match name {
                            "string" => STRING,
                            "integer" => INTEGER,
                            "number" => NUMBER | INTEGER,
                            "boolean" => BOOLEAN,
                            "null" => NULL,
                            "array" => ARRAY,
                            "object" => OBJECT,
                            other => return Err(format!("{at}: unknown type `{other}`")),
                        };
                    }
                }
                "maxLength" => rule.max_length = Some(usize_of(value, key)?),
                "minimum" => {
                    rule.minimum = Some(
                        Bound::of(value)
                            .ok_or_else(|| format!("{at}: `minimum` must be a number"))?,
                    )
                }
                "maximum" => {
                    rule.maximum = Some(
                        Bound::of(value)
                            .ok_or_else(|| format!("{at}: `maximum` must be a number"))?,
                    )
                }
                "enum" => {
                    rule.allowed = Some(
                        value
                            .as_array()
                            .ok_or_else(|| format!("{at}: `enum` must be a list"))?
                            .clone(),
                    )
                }
                "items" => rule.items = Some(Box::new(Rule::compile(value, &format!("{at}[]"))?)),
                "maxItems" => rule.max_items = Some(usize_of(value, key)?),
                "maxProperties" => rule.max_properties = Some(usize_of(value, key)?),
                "propertyNames" => {
                    let names = value
                        .as_object()
                        .ok_or_else(|| format!("{at}: `propertyNames` must be an object"))?;
                    for (k, v) in names {
                        match k.as_str() {
                            "maxLength" => rule.name_max_length = Some(usize_of(v, k)?),
                            other => {
                                return Err(format!(
                                    "{at}: `propertyNames` keyword `{other}` is not supported"
                                ))
                            }
                        }
                    }
                }
                "properties" => {
                    let props = value
                        .as_object()
                        .ok_or_else(|| format!("{at}: `properties` must be an object"))?;
                    for (name, schema) in props {
                        rule.properties.insert(
                            name.clone(),
                            Rule::compile(schema, &format!("{at}.{name}"))?,
                        );
                    }
                }
                "additionalProperties" => {
                    rule.additional = match value {
                        Value::Bool(true) => Additional::Allowed,
                        Value::Bool(false) => Additional::Forbidden,
                        schema => {
                            Additional::Rule(Box::new(Rule::compile(schema, &format!("{at}.*"))?))
                        }
                    }
                }
                other => return Err(format!("{at}: keyword `{other}` is not supported")),
            }
        }
        Ok(rule)
    }

    /// Checks `v`; the error names the attribute by its contract path (`generated.kind`,
    /// `extra.*`), never by a key the plugin chose.
    fn check(&self, v: &Value, at: &str) -> Result<(), String> {
        let ty = type_of(v);
        if self.types != 0 && self.types & ty == 0 {
            return Err(format!(
                "`{at}` is {}, the contract allows {}",
                type_name(ty),
                allowed_types(self.types)
            ));
        }
        if let Some(allowed) = &self.allowed {
            if !allowed.contains(v) {
                return Err(format!(
                    "`{at}` is not one of {}",
                    Value::from(allowed.clone())
                ));
            }
        }
        match v {
            Value::String(s) => self.check_len(s, at)?,
            Value::Number(n) => self.check_number(n, at)?,
            Value::Array(items) => {
                if let Some(max) = self.max_items {
                    if items.len() > max {
                        return Err(format!("`{at}` has {} items, at most {max}", items.len()));
                    }
                }
                if let Some(rule) = &self.items {
                    let inner = format!("{at}[]");
                    for item in items {
                        rule.check(item, &inner)?;
                    }
                }
            }
            Value::Object(map) => {
                if let Some(max) = self.max_properties {
                    if map.len() > max {
                        return Err(format!("`{at}` has {} keys, at most {max}", map.len()));
                    }
                }
                for (key, value) in map {
                    if let Some(max) = self.name_max_length {
                        if key.chars().count() > max {
                            return Err(format!("`{at}` has a key longer than {max} characters"));
                        }
                    }
                    match (self.properties.get(key), &self.additional) {
                        (Some(rule), _) => rule.check(value, &format!("{at}.{key}"))?,
                        (None, Additional::Forbidden) => {
                            return Err(format!("`{at}` has a key the contract does not name"))
                        }
                        (None, Additional::Rule(rule)) => rule.check(value, &format!("{at}.*"))?,
                        (None, Additional::Allowed) => {}
                    }
                }
            }
            Value::Null | Value::Bool(_) => {}
        }
        Ok(())
    }

    fn check_len(&self, s: &str, at: &str) -> Result<(), String> {
        if let Some(max) = self.max_length {
            // A string of at most `max` bytes has at most `max` characters.
            if s.len() > max && s.chars().count() > max {
                return Err(format!("`{at}` is longer than {max} characters"));
            }
        }
        Ok(())
    }

    fn check_number(&self, n: &serde_json::Number, at: &str) -> Result<(), String> {
        let integral = n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0);
        if self.types & NUMBER == 0 && self.types & INTEGER != 0 && !integral {
            return Err(format!("`{at}` is not an integer"));
        }
        if self.minimum.is_some_and(|b| b.cmp(n).is_lt()) {
            return Err(format!("`{at}` is below its minimum"));
        }
        if self.maximum.is_some_and(|b| b.cmp(n).is_gt()) {
            return Err(format!("`{at}` is above its maximum"));
        }
        Ok(())
    }
}

fn type_of(v: &Value) -> u8 {
    match v {
        Value::String(_) => STRING,
        Value::Number(n) if n.is_i64() || n.is_u64() => INTEGER,
        Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => INTEGER | NUMBER,
        Value::Number(_) => NUMBER,
        Value::Bool(_) => BOOLEAN,
        Value::Null => NULL,
        Value::Array(_) => ARRAY,
        Value::Object(_) => OBJECT,
    }
}

fn type_name(ty: u8) -> &'static str {
    match ty {
        STRING => "a string",
        BOOLEAN => "a boolean",
        NULL => "null",
        ARRAY => "an array",
        OBJECT => "an object",
        NUMBER => "a fractional number",
        _ => "a number",
    }
}

fn allowed_types(types: u8) -> String {
    let names: Vec<&str> = [
        (STRING, "string"),
        (INTEGER, "integer"),
        (NUMBER, "number"),
        (BOOLEAN, "boolean"),
        (NULL, "null"),
        (ARRAY, "array"),
        (OBJECT, "object"),
    ]
    .into_iter()
    // `number` takes integers too: say it once.
    .filter(|(bit, _)| types & bit != 0 && !(*bit == INTEGER && types & NUMBER != 0))
    .map(|(_, n)| n)
    .collect();
    names.join(" or ")
}

/// What enforcement made of an asset's attributes.
#[derive(Debug, PartialEq)]
pub enum Enforced {
    /// Every key is in the contract and every value fits: the text is kept as it is.
    Unchanged,
    /// `dropped` keys the contract does not name were removed: the attributes to keep.
    Trimmed { json: String, dropped: u64 },
}

/// The compiled contract of one version.
#[derive(Debug)]
pub struct Contract {
    version: &'static str,
    kinds: BTreeMap<AssetKind, Rule>,
}

impl Contract {
    /// The contract this host enforces.
    pub fn current() -> &'static Contract {
        static CURRENT: OnceLock<Contract> = OnceLock::new();
        CURRENT.get_or_init(|| {
            let mut kinds = BTreeMap::new();
            for (kind, text) in SCHEMAS {
                let value: Value = serde_json::from_str(text)
                    .unwrap_or_else(|e| panic!("contract {CONTRACT_VERSION} {kind}: {e}"));
                let rule = Rule::compile(&value, kind.as_str())
                    .unwrap_or_else(|e| panic!("contract {CONTRACT_VERSION}: {e}"));
                kinds.insert(kind, rule);
            }
            Contract {
                version: CONTRACT_VERSION,
                kinds,
            }
        })
    }

    /// The contract of `version`, if this host knows it.
    pub fn of_version(version: &str) -> Option<&'static Contract> {
        (version == CONTRACT_VERSION).then(Contract::current)
    }

    /// Its version.
    pub fn version(&self) -> &'static str {
        self.version
    }

    /// The attribute names the contract gives `kind`.
    pub fn attributes(&self, kind: AssetKind) -> impl Iterator<Item = &str> {
        self.kinds[&kind].properties.keys().map(String::as_str)
    }

    /// Enforces the contract on the attributes (`raw`, a JSON object's text) of a `kind`
    /// asset: `Err` names the first problem (the asset must be dropped); keys the contract
    /// does not name are removed. A key given twice is a problem: consumers would disagree on
    /// which value counts.
    pub fn enforce(&self, kind: AssetKind, raw: &str) -> Result<Enforced, String> {
        let rule = &self.kinds[&kind];
        let Entries(entries) =
            serde_json::from_str(raw).map_err(|_| "the attributes are not a JSON object")?;
        // Most assets have a dozen keys: a linear look back is cheaper than a hash set.
        let mut seen =
            (entries.len() > 32).then(|| std::collections::HashSet::with_capacity(entries.len()));
        let mut dropped = 0u64;
        for (i, (key, value)) in entries.iter().enumerate() {
            let known = rule.properties.get(key.as_ref());
            let repeated = match seen.as_mut() {
                Some(set) => !set.insert(key.as_ref()),
                None => entries[..i].iter().any(|(k, _)| k == key),
            };
            if repeated {
                return Err(match known {
                    Some(_) => format!("attribute `{key}` is given twice"),
                    None => "an attribute key is given twice".to_string(),
                });
            }
            match known {
                Some(r) => check_raw(r, key, value)?,
                None => dropped += 1,
            }
        }
        if dropped == 0 {
            return Ok(Enforced::Unchanged);
        }
        let mut json = String::with_capacity(raw.len());
        json.push('{');
        for (key, value) in entries
            .iter()
            .filter(|(k, _)| rule.properties.contains_key(k.as_ref()))
        {
            if json.len() > 1 {
                json.push(',');
            }
            json.push_str(&serde_json::to_string(key.as_ref()).expect("a string serialises"));
            json.push(':');
            json.push_str(value.get());
        }
        json.push('}');
        Ok(Enforced::Trimmed { json, dropped })
    }

    /// Checks published attributes: every key named, every value fitting. Keys in
    /// `rewritten` were changed by the run's field rules (masked, hashed, ...) and are only
    /// required to be named.
    pub fn check(
        &self,
        kind: AssetKind,
        attributes: &serde_json::Map<String, Value>,
        rewritten: &dyn Fn(&str) -> bool,
    ) -> Result<(), String> {
        let rule = &self.kinds[&kind];
        for (key, value) in attributes {
            match rule.properties.get(key) {
                Some(_) if rewritten(key) => {}
                Some(r) => r.check(value, key)?,
                None => return Err("an attribute key the contract does not name".into()),
            }
        }
        Ok(())
    }
}

/// Checks one attribute's raw value, parsing only what the rule needs.
fn check_raw(rule: &Rule, key: &str, raw: &RawValue) -> Result<(), String> {
    let text = raw.get();
    let ty = match text.as_bytes().first() {
        Some(b'n') => NULL,
        Some(b't' | b'f') => BOOLEAN,
        Some(b'"') => STRING,
        _ => 0,
    };
    match ty {
        NULL | BOOLEAN if rule.allowed.is_none() => {
            if rule.types != 0 && rule.types & ty == 0 {
                return Err(format!(
                    "`{key}` is {}, the contract allows {}",
                    type_name(ty),
                    allowed_types(rule.types)
                ));
            }
            Ok(())
        }
        STRING if rule.allowed.is_none() && !text.contains('\\') => {
            if rule.types != 0 && rule.types & STRING == 0 {
                return Err(format!(
                    "`{key}` is a string, the contract allows {}",
                    allowed_types(rule.types)
                ));
            }
            rule.check_len(&text[1..text.len() - 1], key)
        }
        _ => {
            let value: Value = serde_json::from_str(text).map_err(|e| format!("`{key}`: {e}"))?;
            rule.check(&value, key)
        }
    }
}

/// An object's entries in order, keys borrowed where they hold no escape, values as raw text.
struct Entries<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<'de>, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(Key(k)) = map.next_key()? {
                    out.push((k, map.next_value()?));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A key, borrowed from the input unless it had to be unescaped.
struct Key<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enforce(kind: AssetKind, raw: &str) -> Result<Enforced, String> {
        Contract::current().enforce(kind, raw)
    }

    #[test]
    fn every_kind_has_a_schema_that_compiles_with_an_extra_object() {
        let c = Contract::current();
        for kind in AssetKind::ALL {
            assert!(c.attributes(kind).any(|a| a == "extra"), "{kind}");
        }
        assert!(c.attributes(AssetKind::Column).any(|a| a == "data_type"));
    }

    #[test]
    fn an_unsupported_keyword_fails_to_compile() {
        let e =
            Rule::compile(&serde_json::json!({"type": "object", "oneOf": []}), "x").unwrap_err();
        assert!(e.contains("oneOf"), "{e}");
        let e = Rule::compile(&serde_json::json!({"type": "strng"}), "x").unwrap_err();
        assert!(e.contains("strng"), "{e}");
    }

    #[test]
    fn conforming_attributes_are_kept_as_they_are() {
        let raw = r#"{"ordinal":1,"data_type":"integer","nullable":false,"default":null,
            "generated":{"kind":"stored","expression":"a + 1"},"identity":"always",
            "comment":"caf\u00e9","extra":{"attnum":3,"flags":["a","b"],"o":{"k":1}}}"#;
        assert_eq!(enforce(AssetKind::Column, raw), Ok(Enforced::Unchanged));
    }

    #[test]
    fn unknown_keys_are_dropped_and_counted_in_order() {
        let raw = r#"{"zz":1,"data_type":"text","secret_name":{"x":[1]},"nullable":true}"#;
        match enforce(AssetKind::Column, raw).unwrap() {
            Enforced::Trimmed { json, dropped } => {
                assert_eq!(dropped, 2);
                assert_eq!(json, r#"{"data_type":"text","nullable":true}"#);
            }
            other => panic!("{other:?}"),
        }
        // An escaped key is compared unescaped.
        let raw = r#"{"d\u0061ta_type":"text","n\u0000":1}"#;
        match enforce(AssetKind::Column, raw).unwrap() {
            Enforced::Trimmed { json, dropped } => {
                assert_eq!(dropped, 1);
                assert_eq!(json, r#"{"data_type":"text"}"#);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wrong_types_and_bounds_fail_the_asset_naming_only_contract_attributes() {
        for (kind, raw, says) in [
            (
                AssetKind::Column,
                r#"{"nullable":"yes"}"#,
                "`nullable` is a string",
            ),
            (AssetKind::Column, r#"{"ordinal":1.5}"#, "`ordinal`"),
            (AssetKind::Column, r#"{"ordinal":0}"#, "below its minimum"),
            (
                AssetKind::Column,
                r#"{"data_type":7}"#,
                "`data_type` is a number",
            ),
            (
                AssetKind::Column,
                r#"{"identity":"sometimes"}"#,
                "`identity` is not one of",
            ),
            (
                AssetKind::Column,
                r#"{"generated":{"kind":"stored","how":"x"}}"#,
                "`generated` has a key",
            ),
            (
                AssetKind::Column,
                r#"{"generated":"stored"}"#,
                "`generated` is a string",
            ),
            (
                AssetKind::ForeignKey,
                r#"{"referenced_columns":[null]}"#,
                "`referenced_columns[]` is null",
            ),
            (
                AssetKind::Table,
                r#"{"row_count_estimate":-1}"#,
                "below its minimum",
            ),
            (
                AssetKind::Table,
                r#"{"extra":{"secret_payroll":{"deep":{"er":1}}}}"#,
                "`extra.*.*` is an object",
            ),
            (AssetKind::Table, r#"{"extra":"x"}"#, "`extra` is a string"),
            (
                AssetKind::Column,
                r#"{"comment":"a","comment":"b"}"#,
                "`comment` is given twice",
            ),
            (
                AssetKind::Column,
                r#"{"secret_x":1,"secret_x":2}"#,
                "an attribute key is given twice",
            ),
        ] {
            let e = enforce(kind, raw).expect_err(raw);
            assert!(e.contains(says), "{raw}: {e}");
            assert!(!e.contains("secret"), "a plugin-chosen key is named: {e}");
        }
        let long = format!(r#"{{"data_type":"{}"}}"#, "é".repeat(1025));
        assert!(enforce(AssetKind::Column, &long)
            .unwrap_err()
            .contains("longer than 1024"));
        let fits = format!(r#"{{"data_type":"{}"}}"#, "é".repeat(1024));
        assert_eq!(enforce(AssetKind::Column, &fits), Ok(Enforced::Unchanged));
        let many: Vec<String> = (0..65).map(|i| format!(r#""k{i}":1"#)).collect();
        let raw = format!(r#"{{"extra":{{{}}}}}"#, many.join(","));
        assert!(enforce(AssetKind::Table, &raw)
            .unwrap_err()
            .contains("at most 64"));
    }

    #[test]
    fn a_key_given_twice_is_found_among_many() {
        let mut keys: Vec<String> = (0..40).map(|i| format!(r#""k{i}":1"#)).collect();
        keys.push(r#""comment":"a""#.into());
        keys.push(r#""comment":"b""#.into());
        let raw = format!("{{{}}}", keys.join(","));
        let e = enforce(AssetKind::Table, &raw).unwrap_err();
        assert!(e.contains("`comment` is given twice"), "{e}");
        keys.truncate(41);
        let raw = format!("{{{}}}", keys.join(","));
        assert!(matches!(
            enforce(AssetKind::Table, &raw),
            Ok(Enforced::Trimmed { dropped: 40, .. })
        ));
    }

    #[test]
    fn integers_keep_their_full_range() {
        for raw in [
            r#"{"max_value":9223372036854775807}"#,
            r#"{"min_value":-9223372036854775808}"#,
        ] {
            assert_eq!(
                enforce(AssetKind::Sequence, raw),
                Ok(Enforced::Unchanged),
                "{raw}"
            );
        }
        assert!(enforce(AssetKind::Sequence, r#"{"max_value":9223372036854775808}"#).is_err());
    }

    #[test]
    fn check_allows_rewritten_fields_but_no_unknown_key() {
        let c = Contract::current();
        let map = |v: Value| v.as_object().unwrap().clone();
        let hashed = map(serde_json::json!({"nullable": "hmac-sha256:ab"}));
        assert!(c.check(AssetKind::Column, &hashed, &|_| false).is_err());
        assert!(c
            .check(AssetKind::Column, &hashed, &|k| k == "nullable")
            .is_ok());
        let unknown = map(serde_json::json!({"x": 1}));
        assert!(c.check(AssetKind::Column, &unknown, &|_| true).is_err());
    }
}
