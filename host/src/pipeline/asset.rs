//! Asset kinds as the host understands them, path shapes and qualified names.

use std::fmt;
use std::str::FromStr;

/// The kind of a metadata asset (mirrors the WIT `asset-kind`, independent of WIT versions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AssetKind {
    Database,
    Schema,
    Table,
    View,
    MaterializedView,
    Column,
    PrimaryKey,
    UniqueKey,
    ForeignKey,
    CheckConstraint,
    Index,
    Trigger,
    Partition,
    Function,
    Procedure,
    Sequence,
}

impl AssetKind {
    /// Every kind, in a stable order.
    pub const ALL: [AssetKind; 16] = [
        AssetKind::Database,
        AssetKind::Schema,
        AssetKind::Table,
        AssetKind::View,
        AssetKind::MaterializedView,
        AssetKind::Column,
        AssetKind::PrimaryKey,
        AssetKind::UniqueKey,
        AssetKind::ForeignKey,
        AssetKind::CheckConstraint,
        AssetKind::Index,
        AssetKind::Trigger,
        AssetKind::Partition,
        AssetKind::Function,
        AssetKind::Procedure,
        AssetKind::Sequence,
    ];

    /// The snake_case name used in configs, file names and the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            AssetKind::Database => "database",
            AssetKind::Schema => "schema",
            AssetKind::Table => "table",
            AssetKind::View => "view",
            AssetKind::MaterializedView => "materialized_view",
            AssetKind::Column => "column",
            AssetKind::PrimaryKey => "primary_key",
            AssetKind::UniqueKey => "unique_key",
            AssetKind::ForeignKey => "foreign_key",
            AssetKind::CheckConstraint => "check_constraint",
            AssetKind::Index => "index",
            AssetKind::Trigger => "trigger",
            AssetKind::Partition => "partition",
            AssetKind::Function => "function",
            AssetKind::Procedure => "procedure",
            AssetKind::Sequence => "sequence",
        }
    }

    /// How many segments the path of this kind has.
    pub fn path_len(self) -> usize {
        match self {
            AssetKind::Database => 1,
            AssetKind::Schema => 2,
            AssetKind::Table
            | AssetKind::View
            | AssetKind::MaterializedView
            | AssetKind::Function
            | AssetKind::Procedure
            | AssetKind::Sequence => 3,
            AssetKind::Column
            | AssetKind::PrimaryKey
            | AssetKind::UniqueKey
            | AssetKind::ForeignKey
            | AssetKind::CheckConstraint
            | AssetKind::Index
            | AssetKind::Trigger
            | AssetKind::Partition => 4,
        }
    }
}

impl fmt::Display for AssetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for AssetKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl FromStr for AssetKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        AssetKind::ALL
            .into_iter()
            .find(|k| k.as_str() == norm)
            .ok_or_else(|| {
                let known: Vec<&str> = AssetKind::ALL.iter().map(|k| k.as_str()).collect();
                format!(
                    "unknown asset kind `{s}`; known kinds: {}",
                    known.join(", ")
                )
            })
    }
}

/// Whether `c` is an invisible format character or a line/paragraph separator: Unicode general
/// category Cf (zero-width space and joiners U+200B–U+200D, word joiner U+2060, BOM U+FEFF,
/// bidi controls U+200E/U+200F, U+202A–U+202E, U+2066–U+2069, U+061C, soft hyphen U+00AD, tag
/// characters, ...), Zl (U+2028) or Zp (U+2029). A name holding one can look like another
/// name, or reorder how the text around it is shown, so asset paths holding one are refused.
pub fn is_invisible_format(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    // ASCII has none (its controls are Cc, refused separately).
    !c.is_ascii()
        && matches!(
            c.general_category(),
            GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
        )
}

/// The qualified name of a path: segments joined with `.`; a segment that contains `.` or `"`
/// is written in double quotes with `"` doubled, as SQL does.
pub fn qualified_name(path: &[String]) -> String {
    let mut out = String::new();
    for (i, seg) in path.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_segment(&mut out, seg);
    }
    out
}

fn push_segment(out: &mut String, seg: &str) {
    if seg.contains(['.', '"']) {
        out.push('"');
        out.push_str(&seg.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(seg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for k in AssetKind::ALL {
            assert_eq!(k.as_str().parse::<AssetKind>().unwrap(), k);
        }
        assert_eq!(
            "materialized-view".parse::<AssetKind>().unwrap(),
            AssetKind::MaterializedView
        );
        assert!("tabel".parse::<AssetKind>().is_err());
    }

    #[test]
    fn qualified_names_quote_dots() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(qualified_name(&p(&["db", "main", "t"])), "db.main.t");
        assert_eq!(
            qualified_name(&p(&["db", "a.b", "t\"x"])),
            "db.\"a.b\".\"t\"\"x\""
        );
        assert_eq!(qualified_name(&p(&["db", "a\"."])), "db.\"a\"\".\"");
    }

    #[test]
    fn invisible_format_characters_are_recognised() {
        for c in [
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{2060}',
            '\u{FEFF}',
            '\u{202A}',
            '\u{202E}',
            '\u{2066}',
            '\u{2069}',
            '\u{200E}',
            '\u{200F}',
            '\u{061C}',
            '\u{00AD}',
            '\u{2028}',
            '\u{2029}',
            '\u{E0041}',
        ] {
            assert!(is_invisible_format(c), "U+{:04X}", c as u32);
        }
        for c in ['a', ' ', '$', 'é', 'а', '\u{0301}', '日', '\u{00A0}', '-'] {
            assert!(!is_invisible_format(c), "U+{:04X}", c as u32);
        }
    }
}
