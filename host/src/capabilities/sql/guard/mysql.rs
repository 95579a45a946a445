//! The MySQL / MariaDB statement guard.
//!
//! A plugin's statement reaches the server only if it is exactly one plain read query over
//! catalog relations (or relations the workflow grants), built from constructs on this
//! module's allow-lists. Everything else is refused; the host then sends the statement as
//! re-rendered from the checked parse tree, never the plugin's own text.
//!
//! # Why
//!
//! `START TRANSACTION READ ONLY` / `SET SESSION TRANSACTION READ ONLY` do not make a MySQL or
//! MariaDB session harmless: DDL and DCL still run (with an implicit commit), `LOAD_FILE()`
//! and `SELECT ... INTO OUTFILE/DUMPFILE` read and write server files, `SLEEP`, `BENCHMARK`
//! and `GET_LOCK` hold the server, user variables (`@x := ...`) keep state, and executable
//! comments (`/*! ... */`, `/*M!100100 ... */`) hide statements from naive parsers.
//!
//! # What passes
//!
//! 1. **Lexically** (checked on the raw text, then on `sqlparser`'s tokens): no comment of any
//!    kind (`--`, `#`, `/* */`, which includes `/*! */`, `/*M! */` and `/*+ */`), no backslash
//!    anywhere (so MySQL's backslash escapes and `NO_BACKSLASH_ESCAPES` cannot make the server
//!    read a string differently from the guard), no `"` outside quotes (a string or an
//!    identifier depending on `ANSI_QUOTES`), no `@` outside quotes (user and system variables),
//!    no control characters, no non-ASCII outside quotes, no `;` except one trailing. Only
//!    these tokens: unquoted ASCII words, backquoted identifiers, `'single-quoted'` strings,
//!    plain decimal numbers, `?` placeholders and `, . ( ) = <> != < > <= >= <=> + - * / %`.
//!    Hex, bit, national and charset-introduced literals, `||`, `&&`, `!`, `:=`, bitwise
//!    operators and JSON arrows are refused. Unquoted `INTO`, `OUTFILE`, `DUMPFILE`,
//!    `PROCEDURE` and `LOCK` are refused before parsing.
//! 2. **One statement, a query**: `SELECT`, set operations (`UNION`, `EXCEPT`, `INTERSECT`) and
//!    non-recursive `WITH` of those. Any other statement (`SHOW`, `SET`, `DESCRIBE`, `EXPLAIN`,
//!    DDL, DML, `GRANT`, `CALL`, `DO`, `HANDLER`, `LOAD`, `INSTALL`, `LOCK`, `KILL`, ...) is a
//!    `not-a-read` refusal. No `INTO`, no locking clause, no select modifiers, no hints.
//! 3. **The whole parse tree** is walked with explicit matches on every node type; each
//!    expression, table factor and clause variant not named on the allow-list is refused.
//! 4. **Relations** must be qualified: `information_schema.<T>` for `T` in [`CATALOG_TABLES`]
//!    (case-insensitive), or a data relation `db.table` the workflow grants as `db.db.table`
//!    (`[source.sql] allow_relations`). The system schemas `mysql`, `performance_schema` and
//!    `sys` are refused even when a grant pattern matches them. An unqualified name passes
//!    only as a reference to a common table expression in scope (compared exactly; a CTE is
//!    not visible in its own body, nor outside the query that defines it) or as `DUAL`.
//! 5. **Functions** are called by unquoted, unqualified names from [`FUNCTIONS`]; `CAST` and
//!    `CONVERT` only to the types named in the module, `COLLATE`/`USING` with a plain name.
//!    Unquoted words MySQL evaluates as functions without parentheses (`CURRENT_USER`,
//!    `CURRENT_TIMESTAMP`, ...) are refused as column names; backquoted they are columns.
//! 6. **Limits**: at most [`MAX_STATEMENT_BYTES`] bytes and [`MAX_TOKENS`] tokens, at most
//!    [`MAX_DEPTH`] nested levels (parentheses, subqueries, expressions; a left-deep chain of
//!    binary operators such as `a AND b AND c ...` or of set operations counts once). The check runs on its own thread with
//!    a large stack, so no statement can overflow the caller's stack (parsing, walking,
//!    rendering and dropping a deep tree are all bounded and happen there).
//! 7. **Re-rendering**: the statement returned is the checked tree's `Display` output; it is
//!    checked again from scratch and must parse back to the same tree and render to the same
//!    text, or the statement is refused.
//!
//! Refusals name the statement type, relation, function or construct, never a literal value.

use sqlparser::ast::{
    BinaryOperator, CastKind, CharacterLength, Cte, DataType, Distinct, Expr, Function,
    FunctionArg, FunctionArgExpr, FunctionArgumentClause, FunctionArgumentList, FunctionArguments,
    GroupByExpr, Ident, InTarget, Join, JoinConstraint, JoinOperator, LimitClause, LockType,
    ObjectName, ObjectNamePart, Offset, OffsetRows, OrderBy, OrderByExpr, OrderByKind,
    OrderByOptions, OrderBySort, Query, Select, SelectFlavor, SelectItem,
    SelectItemQualifiedWildcardKind, SelectModifiers, SetExpr, SetOperator, SetQuantifier,
    Statement, TableAlias, TableAliasColumnDef, TableFactor, TableWithJoins, TimezoneInfo,
    UnaryOperator, Value, WildcardAdditionalOptions, With,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

use super::{DataGrants, Refusal, RefusalKind};

/// The longest statement accepted, in bytes.
pub const MAX_STATEMENT_BYTES: usize = 256 * 1024;
/// The most tokens (not counting whitespace) a statement may have.
pub const MAX_TOKENS: usize = 32 * 1024;
/// The deepest nesting accepted (parentheses, subqueries, nested expressions).
pub const MAX_DEPTH: usize = 200;
/// `sqlparser`'s own recursion limit: above [`MAX_DEPTH`], so that the walker's count decides
/// for anything the parser accepts, but bounded.
const PARSER_RECURSION_LIMIT: usize = MAX_DEPTH + 50;
/// Stack of the thread the check runs on. Only touched pages are used; a tree as deep as
/// [`MAX_TOKENS`] allows (a long chain of binary operators) needs a few MiB in a debug build.
const GUARD_STACK_BYTES: usize = 64 << 20;

/// The `information_schema` tables a plugin may read: the catalog of schemas, tables, columns,
/// views, keys, indexes, routines, triggers, partitions, events, character sets, collations,
/// engines, sequences, spatial reference systems and object-level privileges. Left out on
/// purpose, among others: `PROCESSLIST` (other sessions' statement texts), `*_VARIABLES`,
/// `*_STATUS`, `INNODB_*`, `OPTIMIZER_TRACE`, `*_STATISTICS` (MariaDB user and client
/// statistics), `QUERY_CACHE_INFO` (cached statement texts), `USER_PRIVILEGES`,
/// `APPLICABLE_ROLES`, `ENABLED_ROLES` (account-level facts, not catalog), `FILES`,
/// `PLUGINS`, `COLUMN_STATISTICS` (MySQL histograms hold data values).
pub const CATALOG_TABLES: &[&str] = &[
    "SCHEMATA",
    "TABLES",
    "COLUMNS",
    "VIEWS",
    "STATISTICS",
    "KEY_COLUMN_USAGE",
    "REFERENTIAL_CONSTRAINTS",
    "TABLE_CONSTRAINTS",
    "CHECK_CONSTRAINTS",
    "ROUTINES",
    "PARAMETERS",
    "TRIGGERS",
    "PARTITIONS",
    "EVENTS",
    "COLLATIONS",
    "CHARACTER_SETS",
    "COLLATION_CHARACTER_SET_APPLICABILITY",
    "ENGINES",
    // MariaDB: a sequence's definition (start, bounds, increment, cycle), not its current
    // value, which only the sequence table itself holds.
    "SEQUENCES",
    "COLUMN_PRIVILEGES",
    "TABLE_PRIVILEGES",
    "SCHEMA_PRIVILEGES",
    // MariaDB (OpenGIS): reference data and the list of geometry columns.
    "SPATIAL_REF_SYS",
    "GEOMETRY_COLUMNS",
];

/// Schemas whose tables are never readable, whatever the workflow grants.
const SYSTEM_SCHEMAS: &[&str] = &["mysql", "performance_schema", "sys"];

/// Functions a statement may call (by unquoted, unqualified name, any case). All are pure and
/// read nothing but their arguments (`DATABASE()`/`SCHEMA()`: the current database's name,
/// `VERSION()`: the server's version).
pub const FUNCTIONS: &[&str] = &[
    "CONCAT",
    "CONCAT_WS",
    "GROUP_CONCAT",
    "COALESCE",
    "IFNULL",
    "NULLIF",
    "IF",
    "GREATEST",
    "LEAST",
    "LOWER",
    "UPPER",
    "LCASE",
    "UCASE",
    "LENGTH",
    "CHAR_LENGTH",
    "CHARACTER_LENGTH",
    "SUBSTRING",
    "SUBSTR",
    "SUBSTRING_INDEX",
    "LEFT",
    "RIGHT",
    "REPLACE",
    "TRIM",
    "LTRIM",
    "RTRIM",
    "LOCATE",
    "INSTR",
    "FIND_IN_SET",
    "JSON_ARRAYAGG",
    "JSON_OBJECTAGG",
    "JSON_OBJECT",
    "JSON_ARRAY",
    "JSON_QUOTE",
    "COUNT",
    "MIN",
    "MAX",
    "SUM",
    "AVG",
    "DATABASE",
    "SCHEMA",
    "VERSION",
];

/// Words MySQL or MariaDB evaluate as functions even without parentheses, so an unquoted
/// column reference of that name is a function call (`CURRENT_USER` is the login's name).
const NILADIC_WORDS: &[&str] = &[
    "CURRENT_USER",
    "CURRENT_ROLE",
    "CURRENT_DATE",
    "CURRENT_TIME",
    "CURRENT_TIMESTAMP",
    "LOCALTIME",
    "LOCALTIMESTAMP",
    "UTC_DATE",
    "UTC_TIME",
    "UTC_TIMESTAMP",
    "SYSDATE",
    "ROWNUM",
    "USER",
    "SESSION_USER",
    "SYSTEM_USER",
    "DEFAULT",
];

/// Target types of `CAST(x AS T)` / `CONVERT(x, T)`, for messages.
const CAST_TYPES: &str = "CHAR[(n)], BINARY[(n)], SIGNED [INTEGER], UNSIGNED [INTEGER], \
                          DECIMAL[(p[,s])], JSON, DATE, DATETIME[(n)], TIME[(n)]";

/// Unquoted words refused before parsing: they only ever introduce a write or a lock
/// (`SELECT ... INTO OUTFILE/DUMPFILE/@var`, `PROCEDURE ANALYSE`, `LOCK IN SHARE MODE`).
const REFUSED_WORDS: &[&str] = &["INTO", "OUTFILE", "DUMPFILE", "PROCEDURE", "LOCK"];

/// Checks one plugin statement; returns the statement the host sends instead (re-rendered from
/// the checked AST).
pub fn check(statement: &str, grants: &DataGrants) -> Result<String, Refusal> {
    if statement.len() > MAX_STATEMENT_BYTES {
        return Err(too_large());
    }
    // Parsing, walking, rendering, comparing and dropping a parse tree all recurse; on a
    // thread of its own with a large stack no statement can overflow the caller's stack, and
    // a panic inside the parser becomes a refusal.
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("sql-guard-mysql".into())
            .stack_size(GUARD_STACK_BYTES)
            .spawn_scoped(scope, || check_here(statement, grants));
        match spawned {
            Ok(handle) => handle.join().unwrap_or_else(|_| {
                Err(Refusal::new(
                    RefusalKind::Unparsable,
                    "statement",
                    "the SQL guard failed on this statement; it was not sent",
                ))
            }),
            Err(_) => Err(Refusal::new(
                RefusalKind::Unparsable,
                "statement",
                "the SQL guard could not start its checking thread; the statement was not sent",
            )),
        }
    })
}

/// [`check`] on the current thread.
fn check_here(statement: &str, grants: &DataGrants) -> Result<String, Refusal> {
    let (query, rendered) = check_once(statement, grants)?;
    let consistency = |why: &str| {
        Refusal::new(
            RefusalKind::Construct,
            "re-rendered statement",
            format!(
                "the statement as the host re-renders it {why}; write it in plain MySQL syntax"
            ),
        )
    };
    let (again, rerendered) = check_once(&rendered, grants)
        .map_err(|r| consistency(&format!("is refused ({}: `{}`)", r.kind.as_str(), r.object)))?;
    if again != query || rerendered != rendered {
        return Err(consistency("does not parse back to the same statement"));
    }
    Ok(rendered)
}

/// One full check of `text`: the checked query and its rendering.
fn check_once(text: &str, grants: &DataGrants) -> Result<(Box<Query>, String), Refusal> {
    if text.len() > MAX_STATEMENT_BYTES {
        return Err(too_large());
    }
    let facts = scan_raw(text)?;
    let dialect = MySqlDialect {};
    let tokens = Tokenizer::new(&dialect, text).tokenize().map_err(|e| {
        Refusal::new(
            RefusalKind::Unparsable,
            "statement",
            format!(
                "the statement cannot be tokenized as MySQL (line {}, column {})",
                e.location.line, e.location.column
            ),
        )
    })?;
    check_tokens(&tokens)?;
    if facts.at_sign {
        return Err(variable());
    }
    let mut statements = Parser::new(&dialect)
        .with_recursion_limit(PARSER_RECURSION_LIMIT)
        .try_with_sql(text)
        .and_then(|mut p| p.parse_statements())
        .map_err(parse_refusal)?;
    if statements.len() > 1 {
        return Err(multiple());
    }
    let Some(statement) = statements.pop() else {
        return Err(Refusal::new(
            RefusalKind::Unparsable,
            "statement",
            "the statement is empty",
        ));
    };
    let Statement::Query(query) = statement else {
        return Err(not_a_read("statement"));
    };
    Walker {
        grants,
        ctes: Vec::new(),
        depth: 0,
    }
    .query(&query)?;
    let rendered = query.to_string();
    Ok((query, rendered))
}

fn too_large() -> Refusal {
    Refusal::new(
        RefusalKind::Construct,
        "statement size",
        format!("a statement may have at most {MAX_STATEMENT_BYTES} bytes and {MAX_TOKENS} tokens"),
    )
}

fn multiple() -> Refusal {
    Refusal::new(
        RefusalKind::MultipleStatements,
        ";",
        "send one statement per query (a single trailing `;` is allowed)",
    )
}

fn not_a_read(kind: &str) -> Refusal {
    Refusal::new(
        RefusalKind::NotARead,
        kind,
        "only SELECT queries (with UNION/EXCEPT/INTERSECT and non-recursive WITH) may be sent \
         to a MySQL source; read the catalog from information_schema instead",
    )
}

fn construct(object: impl Into<String>, detail: impl Into<String>) -> Refusal {
    Refusal::new(RefusalKind::Construct, object, detail)
}

fn depth_refusal() -> Refusal {
    construct(
        "nesting depth",
        format!("a statement may nest at most {MAX_DEPTH} levels deep"),
    )
}

/// A parser error as a refusal; only its position is kept (its message may quote a literal).
fn parse_refusal(e: ParserError) -> Refusal {
    let message = match e {
        ParserError::RecursionLimitExceeded => return depth_refusal(),
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
    };
    let position = message
        .rfind(" at Line: ")
        .map(|i| &message[i + 4..])
        .filter(|p| {
            p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | ':' | ','))
        })
        .map(|p| format!(" ({p})"))
        .unwrap_or_default();
    Refusal::new(
        RefusalKind::Unparsable,
        "statement",
        format!(
            "the statement is not a query the guard's MySQL grammar can read{position}; only \
             plain SELECT queries are accepted"
        ),
    )
}

/// Checks the raw text the way MySQL's lexer sees quotes: no comment outside quotes, no
/// backslash or control character anywhere, no `"`, `@` or non-ASCII character outside
/// quotes, every quote closed. `sqlparser` expands `/*! ... */` into tokens, so comments must
/// be found here, before its tokenizer runs.
fn scan_raw(text: &str) -> Result<RawFacts, Refusal> {
    #[derive(PartialEq)]
    enum Quote {
        None,
        Single,
        Back,
    }
    let mut state = Quote::None;
    let mut facts = RawFacts { at_sign: false };
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            return Err(construct(
                "backslash",
                "backslashes are escape characters in MySQL strings (unless \
                 NO_BACKSLASH_ESCAPES); none may appear in a statement",
            ));
        }
        if c.is_control() && !matches!(c, '\t' | '\n' | '\r') {
            return Err(construct(
                "control character",
                "control characters other than tab and newline may not appear in a statement",
            ));
        }
        match state {
            Quote::Single => {
                if c == '\'' {
                    state = Quote::None;
                }
            }
            Quote::Back => {
                if c == '`' {
                    state = Quote::None;
                }
            }
            Quote::None => {
                let next = chars.peek().copied();
                match c {
                    '\'' => state = Quote::Single,
                    '`' => state = Quote::Back,
                    '"' => {
                        return Err(construct(
                            "double-quoted string",
                            "`\"` quotes a string or an identifier depending on the server's \
                             ANSI_QUOTES mode; use 'single quotes' for strings and `backquotes` \
                             for identifiers",
                        ))
                    }
                    '@' => facts.at_sign = true,
                    '#' => return Err(comment("#")),
                    '-' if next == Some('-') => return Err(comment("--")),
                    '*' if next == Some('/') => return Err(comment("*/")),
                    '/' if next == Some('*') => {
                        let rest = &chars.clone().skip(1).take(2).collect::<String>();
                        let object = if rest.starts_with('!') {
                            "/*!"
                        } else if rest.starts_with("M!") || rest.starts_with("m!") {
                            "/*M!"
                        } else if rest.starts_with('+') {
                            "/*+"
                        } else {
                            "/*"
                        };
                        return Err(comment(object));
                    }
                    c if !c.is_ascii() => {
                        return Err(construct(
                            "non-ASCII character",
                            "non-ASCII characters may appear only inside 'strings' and \
                             `quoted identifiers`",
                        ))
                    }
                    _ => {}
                }
            }
        }
    }
    if state != Quote::None {
        return Err(Refusal::new(
            RefusalKind::Unparsable,
            "statement",
            "the statement ends inside a quoted string or identifier",
        ));
    }
    Ok(facts)
}

/// What [`scan_raw`] found that is refused only after the token pass (so that `SET @x = 1`
/// is named by its statement type).
struct RawFacts {
    /// An `@` outside quotes: a user or system variable.
    at_sign: bool,
}

fn variable() -> Refusal {
    construct(
        "variable",
        "user and system variables (`@x`, `@@x`) may not be used",
    )
}

fn comment(object: &str) -> Refusal {
    Refusal::new(
        RefusalKind::Comment,
        object,
        "comments are not allowed (MySQL and MariaDB run the content of /*! ... */ and \
         /*M! ... */ comments)",
    )
}

/// The token pass: the leading keyword, the allow-list of token types, `;`, nesting of
/// parentheses and the token count.
fn check_tokens(tokens: &[Token]) -> Result<(), Refusal> {
    let significant: Vec<&Token> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_) | Token::EOF))
        .collect();
    if significant.len() > MAX_TOKENS {
        return Err(too_large());
    }
    match significant.iter().find(|t| !matches!(t, Token::LParen)) {
        None => {
            return Err(Refusal::new(
                RefusalKind::Unparsable,
                "statement",
                "the statement is empty",
            ))
        }
        Some(Token::Word(w)) if w.quote_style.is_none() => {
            let word = w.value.to_ascii_uppercase();
            if word != "SELECT" && word != "WITH" {
                return Err(not_a_read(&word));
            }
        }
        Some(_) => return Err(not_a_read("statement")),
    }
    let mut depth = 0usize;
    for (i, token) in tokens.iter().enumerate() {
        match token {
            Token::EOF
            | Token::Whitespace(Whitespace::Space | Whitespace::Tab | Whitespace::Newline) => {}
            Token::Whitespace(_) => return Err(comment("comment")),
            Token::Word(w) => match w.quote_style {
                None => {
                    let v = &w.value;
                    if v.contains('@') {
                        return Err(variable());
                    }
                    let plain = v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        && !v.starts_with(|c: char| c.is_ascii_digit());
                    if !plain {
                        return Err(construct(
                            "identifier",
                            "unquoted words must be ASCII letters, digits and `_`, not \
                             starting with a digit; quote other identifiers with backquotes",
                        ));
                    }
                    let upper = v.to_ascii_uppercase();
                    if let Some(word) = REFUSED_WORDS.iter().find(|r| **r == upper) {
                        return Err(construct(
                            *word,
                            "SELECT ... INTO, PROCEDURE and locking reads are not allowed",
                        ));
                    }
                }
                Some('`') => {}
                Some(_) => {
                    return Err(construct(
                        "quoted identifier",
                        "quote identifiers with backquotes",
                    ))
                }
            },
            Token::Number(n, long) => {
                if *long || !plain_number(n) {
                    return Err(construct(
                        "numeric literal",
                        "numbers must be plain decimals such as `12` or `1.5`",
                    ));
                }
            }
            Token::SingleQuotedString(_) => {}
            Token::Placeholder(p) => {
                if p != "?" {
                    return Err(construct("placeholder", "parameters are written `?`"));
                }
            }
            Token::LParen => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(depth_refusal());
                }
            }
            Token::RParen => depth = depth.saturating_sub(1),
            Token::SemiColon => {
                let trailing = tokens[i + 1..]
                    .iter()
                    .all(|t| matches!(t, Token::Whitespace(_) | Token::EOF));
                if !trailing {
                    return Err(multiple());
                }
            }
            Token::Comma
            | Token::Period
            | Token::Eq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq
            | Token::Spaceship
            | Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::Mod => {}
            other => {
                return Err(construct(
                    token_name(other),
                    "this token is not allowed in a statement sent to a MySQL source",
                ))
            }
        }
    }
    Ok(())
}

/// `123` or `123.45`.
fn plain_number(n: &str) -> bool {
    let mut parts = n.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && parts.next().is_none_or(digits)
}

/// A refused token's name for a refusal, without any literal content.
fn token_name(token: &Token) -> String {
    let name = match token {
        Token::DoubleQuotedString(_) => "double-quoted string",
        Token::NationalStringLiteral(_) | Token::NationalQuoteDelimitedStringLiteral(_) => {
            "national string literal"
        }
        Token::HexStringLiteral(_) => "hex literal",
        Token::SingleQuotedByteStringLiteral(_)
        | Token::DoubleQuotedByteStringLiteral(_)
        | Token::TripleSingleQuotedByteStringLiteral(_)
        | Token::TripleDoubleQuotedByteStringLiteral(_) => "bit or byte string literal",
        Token::EscapedStringLiteral(_) => "escaped string literal",
        Token::TripleSingleQuotedString(_)
        | Token::TripleDoubleQuotedString(_)
        | Token::DollarQuotedString(_)
        | Token::SingleQuotedRawStringLiteral(_)
        | Token::DoubleQuotedRawStringLiteral(_)
        | Token::TripleSingleQuotedRawStringLiteral(_)
        | Token::TripleDoubleQuotedRawStringLiteral(_)
        | Token::QuoteDelimitedStringLiteral(_)
        | Token::UnicodeStringLiteral(_) => "string literal",
        Token::CopyData { .. } => "COPY data",
        Token::AtSign | Token::AtAt | Token::AtQuestion | Token::AtArrow | Token::AtDashAt => {
            "variable"
        }
        Token::Assignment => ":=",
        Token::StringConcat => "||",
        Token::Overlap => "&&",
        Token::CustomBinaryOperator(_) => "operator",
        Token::Char(c) if c.is_ascii_punctuation() => return format!("character `{c}`"),
        Token::Char(_) => "character",
        other => {
            // Operators and punctuation only: their text is the operator itself.
            let text = other.to_string();
            if text.len() <= 4 && text.chars().all(|c| c.is_ascii_punctuation()) {
                return text;
            }
            "token"
        }
    };
    name.to_string()
}

/// The allow-list walk over a parsed query.
struct Walker<'g> {
    grants: &'g DataGrants,
    /// Names of the common table expressions in scope, innermost last.
    ctes: Vec<String>,
    /// Current nesting depth.
    depth: usize,
}

type Checked = Result<(), Refusal>;

impl Walker<'_> {
    fn enter(&mut self) -> Checked {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            Err(depth_refusal())
        } else {
            Ok(())
        }
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn query(&mut self, query: &Query) -> Checked {
        self.enter()?;
        let Query {
            with,
            body,
            order_by,
            limit_clause,
            fetch,
            locks,
            for_clause,
            settings,
            format_clause,
            pipe_operators,
        } = query;
        if let Some(lock) = locks.first() {
            let object = match lock.lock_type {
                LockType::Update => "FOR UPDATE",
                LockType::Share => "FOR SHARE",
            };
            return Err(construct(object, "locking reads are not allowed"));
        }
        if fetch.is_some() {
            return Err(construct("FETCH", "use LIMIT"));
        }
        if for_clause.is_some() || settings.is_some() || format_clause.is_some() {
            return Err(construct("query clause", "this query clause is not MySQL"));
        }
        if !pipe_operators.is_empty() {
            return Err(construct("pipe operator", "pipe syntax is not MySQL"));
        }
        let mark = self.ctes.len();
        if let Some(with) = with {
            self.with(with)?;
        }
        self.set_expr(body)?;
        if let Some(order_by) = order_by {
            self.order_by(order_by)?;
        }
        if let Some(limit) = limit_clause {
            self.limit(limit)?;
        }
        // The query's common table expressions are not visible outside it.
        self.ctes.truncate(mark);
        self.leave();
        Ok(())
    }

    fn with(&mut self, with: &With) -> Checked {
        let With {
            with_token: _,
            recursive,
            cte_tables,
        } = with;
        if *recursive {
            return Err(construct(
                "WITH RECURSIVE",
                "recursive common table expressions are not allowed",
            ));
        }
        for cte in cte_tables {
            let Cte {
                alias,
                query,
                from,
                materialized,
                closing_paren_token: _,
            } = cte;
            if from.is_some() || materialized.is_some() {
                return Err(construct("CTE option", "this CTE syntax is not MySQL"));
            }
            self.table_alias(alias)?;
            // A non-recursive CTE sees the ones before it, not itself: its own name inside
            // its body is a base table of the current database.
            self.query(query)?;
            self.ctes.push(alias.name.value.clone());
        }
        Ok(())
    }

    fn set_expr(&mut self, set: &SetExpr) -> Checked {
        self.enter()?;
        // A chain of set operations (`a UNION b UNION c ...`) is left-deep: walk its left
        // spine iteratively so that its length does not count as nesting.
        let mut operands: Vec<&SetExpr> = Vec::new();
        let mut current = set;
        while let SetExpr::SetOperation {
            left,
            op,
            set_quantifier,
            right,
        } = current
        {
            match op {
                SetOperator::Union | SetOperator::Except | SetOperator::Intersect => {}
                SetOperator::Minus => {
                    return Err(construct("MINUS", "use EXCEPT"));
                }
            }
            match set_quantifier {
                SetQuantifier::All | SetQuantifier::Distinct | SetQuantifier::None => {}
                _ => {
                    return Err(construct(
                        "set quantifier",
                        "only UNION [ALL | DISTINCT] forms are allowed",
                    ))
                }
            }
            operands.push(right);
            current = left;
        }
        operands.push(current);
        for operand in operands.into_iter().rev() {
            match operand {
                SetExpr::Select(select) => self.select(select)?,
                SetExpr::Query(query) => self.query(query)?,
                SetExpr::SetOperation { .. } => self.set_expr(operand)?,
                SetExpr::Insert(_) => return Err(not_a_read("INSERT")),
                SetExpr::Update(_) => return Err(not_a_read("UPDATE")),
                SetExpr::Delete(_) => return Err(not_a_read("DELETE")),
                SetExpr::Merge(_) => return Err(not_a_read("MERGE")),
                SetExpr::Values(_) => return Err(construct("VALUES", "use SELECT")),
                SetExpr::Table(_) => return Err(construct("TABLE", "use SELECT")),
            }
        }
        self.leave();
        Ok(())
    }

    fn select(&mut self, select: &Select) -> Checked {
        let Select {
            select_token: _,
            optimizer_hints,
            distinct,
            select_modifiers,
            top,
            top_before_distinct: _,
            projection,
            exclude,
            into,
            from,
            lateral_views,
            prewhere,
            selection,
            connect_by,
            group_by,
            cluster_by,
            distribute_by,
            sort_by,
            having,
            named_window,
            qualify,
            window_before_qualify: _,
            value_table_mode,
            flavor,
        } = select;
        if into.is_some() {
            return Err(construct("INTO", "SELECT ... INTO is not allowed"));
        }
        if !optimizer_hints.is_empty() {
            return Err(construct(
                "optimizer hint",
                "optimizer hints are not allowed",
            ));
        }
        if let Some(Distinct::On(_)) = distinct {
            return Err(construct("DISTINCT ON", "DISTINCT ON is not MySQL"));
        }
        if select_modifiers
            .as_ref()
            .is_some_and(|m| *m != SelectModifiers::default())
        {
            return Err(construct(
                "SELECT modifier",
                "SELECT modifiers (HIGH_PRIORITY, STRAIGHT_JOIN, SQL_*) are not allowed",
            ));
        }
        let foreign = top.is_some()
            || exclude.is_some()
            || !lateral_views.is_empty()
            || prewhere.is_some()
            || !connect_by.is_empty()
            || !cluster_by.is_empty()
            || !distribute_by.is_empty()
            || !sort_by.is_empty()
            || qualify.is_some()
            || value_table_mode.is_some()
            || !matches!(flavor, SelectFlavor::Standard);
        if foreign {
            return Err(construct(
                "SELECT clause",
                "this SELECT clause is not MySQL",
            ));
        }
        if !named_window.is_empty() {
            return Err(construct("WINDOW", "window functions are not allowed"));
        }
        for table in from {
            self.table_with_joins(table)?;
        }
        for item in projection {
            self.select_item(item)?;
        }
        if let Some(selection) = selection {
            self.expr(selection)?;
        }
        match group_by {
            GroupByExpr::Expressions(exprs, modifiers) => {
                if !modifiers.is_empty() {
                    return Err(construct(
                        "GROUP BY modifier",
                        "WITH ROLLUP and other GROUP BY modifiers are not allowed",
                    ));
                }
                for e in exprs {
                    self.expr(e)?;
                }
            }
            GroupByExpr::All(_) => {
                return Err(construct("GROUP BY ALL", "GROUP BY ALL is not MySQL"));
            }
        }
        if let Some(having) = having {
            self.expr(having)?;
        }
        Ok(())
    }

    fn select_item(&mut self, item: &SelectItem) -> Checked {
        match item {
            SelectItem::UnnamedExpr(e) => self.expr(e),
            SelectItem::ExprWithAlias { expr, alias } => {
                plain_ident(alias)?;
                self.expr(expr)
            }
            SelectItem::Wildcard(options) => wildcard_options(options),
            SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(n), o) => {
                let parts = ident_parts(n)?;
                if parts.is_empty() || parts.len() > 2 {
                    return Err(construct("qualified wildcard", "write `t.*` or `db.t.*`"));
                }
                wildcard_options(o)
            }
            _ => Err(construct(
                "select item",
                "this select-list item is not allowed",
            )),
        }
    }

    fn table_with_joins(&mut self, table: &TableWithJoins) -> Checked {
        let TableWithJoins { relation, joins } = table;
        self.table_factor(relation)?;
        for join in joins {
            let Join {
                relation,
                global,
                join_operator,
            } = join;
            if *global {
                return Err(construct("GLOBAL JOIN", "GLOBAL JOIN is not MySQL"));
            }
            self.table_factor(relation)?;
            match join_operator {
                JoinOperator::Join(c)
                | JoinOperator::Inner(c)
                | JoinOperator::Left(c)
                | JoinOperator::LeftOuter(c)
                | JoinOperator::Right(c)
                | JoinOperator::RightOuter(c)
                | JoinOperator::CrossJoin(c) => self.join_constraint(c)?,
                _ => {
                    return Err(construct(
                        "join type",
                        "only [INNER | CROSS | LEFT [OUTER] | RIGHT [OUTER]] JOIN are allowed",
                    ))
                }
            }
        }
        Ok(())
    }

    fn join_constraint(&mut self, constraint: &JoinConstraint) -> Checked {
        match constraint {
            JoinConstraint::On(e) => self.expr(e),
            JoinConstraint::Using(names) => {
                for name in names {
                    if ident_parts(name)?.len() != 1 {
                        return Err(construct("USING", "USING takes column names"));
                    }
                }
                Ok(())
            }
            JoinConstraint::Natural | JoinConstraint::None => Ok(()),
            JoinConstraint::UsingAlias(..) => Err(construct("USING", "USING ... AS is not MySQL")),
        }
    }

    fn table_factor(&mut self, factor: &TableFactor) -> Checked {
        self.enter()?;
        match factor {
            TableFactor::Table {
                name,
                alias,
                args,
                with_hints,
                version,
                with_ordinality,
                partitions,
                json_path,
                sample,
                index_directives,
                inheritance,
            } => {
                if args.is_some() {
                    return Err(construct(
                        "table function",
                        "table functions are not allowed",
                    ));
                }
                if !index_directives.is_empty() || !with_hints.is_empty() {
                    return Err(construct("index hint", "index hints are not allowed"));
                }
                if !partitions.is_empty() {
                    return Err(construct("PARTITION", "partition selection is not allowed"));
                }
                if version.is_some()
                    || *with_ordinality
                    || json_path.is_some()
                    || sample.is_some()
                    || inheritance.is_some()
                {
                    return Err(construct(
                        "table clause",
                        "this table clause is not allowed",
                    ));
                }
                self.relation(name, alias.is_some())?;
                if let Some(alias) = alias {
                    self.table_alias(alias)?;
                }
            }
            TableFactor::Derived {
                lateral,
                subquery,
                alias,
                sample,
            } => {
                if *lateral {
                    return Err(construct(
                        "LATERAL",
                        "LATERAL derived tables are not allowed",
                    ));
                }
                if sample.is_some() {
                    return Err(construct(
                        "table clause",
                        "this table clause is not allowed",
                    ));
                }
                self.query(subquery)?;
                if let Some(alias) = alias {
                    self.table_alias(alias)?;
                }
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                if alias.is_some() {
                    return Err(construct(
                        "nested join alias",
                        "a parenthesised join may not have an alias",
                    ));
                }
                self.table_with_joins(table_with_joins)?;
            }
            other => {
                let object = match other {
                    TableFactor::JsonTable { .. } => "JSON_TABLE",
                    TableFactor::TableFunction { .. } | TableFactor::Function { .. } => {
                        "table function"
                    }
                    _ => "table expression",
                };
                return Err(construct(
                    object,
                    "only catalog tables, granted tables, CTEs, derived tables and joins may \
                     appear in FROM",
                ));
            }
        }
        self.leave();
        Ok(())
    }

    fn table_alias(&mut self, alias: &TableAlias) -> Checked {
        let TableAlias {
            explicit: _,
            name,
            columns,
            at,
        } = alias;
        plain_ident(name)?;
        if at.is_some() {
            return Err(construct("alias", "this alias syntax is not MySQL"));
        }
        for TableAliasColumnDef { name, data_type } in columns {
            plain_ident(name)?;
            if data_type.is_some() {
                return Err(construct("alias", "column aliases take no type"));
            }
        }
        Ok(())
    }

    /// A relation in FROM: a catalog table, a granted data relation, a CTE in scope or DUAL.
    fn relation(&mut self, name: &ObjectName, has_alias: bool) -> Checked {
        let parts = ident_parts(name)?;
        match parts.as_slice() {
            [only] => {
                if only.quote_style.is_none() && only.value.eq_ignore_ascii_case("DUAL") {
                    if has_alias {
                        return Err(construct("alias", "DUAL takes no alias"));
                    }
                    return Ok(());
                }
                // Exact comparison: a name the server might not take for the CTE is refused.
                if self.ctes.contains(&only.value) {
                    return Ok(());
                }
                Err(Refusal::new(
                    RefusalKind::Relation,
                    only.value.clone(),
                    "qualify relations with their database (`information_schema.TABLES`, \
                     `db.table`): an unqualified name reads the connection's current database",
                ))
            }
            [db, table] => {
                let (db, table) = (&db.value, &table.value);
                let object = format!("{db}.{table}");
                if db.eq_ignore_ascii_case("information_schema") {
                    if CATALOG_TABLES.iter().any(|t| t.eq_ignore_ascii_case(table)) {
                        return Ok(());
                    }
                    return Err(Refusal::new(
                        RefusalKind::Relation,
                        object,
                        format!(
                            "this information_schema table is not on the guard's catalog \
                             list ({})",
                            CATALOG_TABLES.join(", ")
                        ),
                    ));
                }
                if SYSTEM_SCHEMAS.iter().any(|s| s.eq_ignore_ascii_case(db)) {
                    return Err(Refusal::new(
                        RefusalKind::Relation,
                        object,
                        "the system schemas mysql, performance_schema and sys are never \
                         readable by a plugin",
                    ));
                }
                if self.grants.allows(db, db, table) {
                    return Ok(());
                }
                Err(Refusal::new(
                    RefusalKind::Relation,
                    object,
                    format!(
                        "`{db}.{table}` is a data relation the workflow does not grant; add \
                         `{db}.{db}.{table}` to [source.sql] allow_relations to let the \
                         plugin read it"
                    ),
                ))
            }
            _ => Err(Refusal::new(
                RefusalKind::Relation,
                parts
                    .iter()
                    .map(|p| p.value.as_str())
                    .collect::<Vec<_>>()
                    .join("."),
                "MySQL relations are named `database.table`",
            )),
        }
    }

    fn order_by(&mut self, order_by: &OrderBy) -> Checked {
        let OrderBy { kind, interpolate } = order_by;
        if interpolate.is_some() {
            return Err(construct("INTERPOLATE", "INTERPOLATE is not MySQL"));
        }
        match kind {
            OrderByKind::Expressions(exprs) => self.order_by_exprs(exprs),
            OrderByKind::All(_) => Err(construct("ORDER BY ALL", "ORDER BY ALL is not MySQL")),
        }
    }

    fn order_by_exprs(&mut self, exprs: &[OrderByExpr]) -> Checked {
        for OrderByExpr {
            expr,
            options,
            with_fill,
        } in exprs
        {
            let OrderByOptions { sort, nulls_first } = options;
            if matches!(sort, Some(OrderBySort::Using(_)))
                || nulls_first.is_some()
                || with_fill.is_some()
            {
                return Err(construct(
                    "ORDER BY option",
                    "ORDER BY takes expressions with ASC or DESC",
                ));
            }
            self.expr(expr)?;
        }
        Ok(())
    }

    fn limit(&mut self, limit: &LimitClause) -> Checked {
        match limit {
            LimitClause::LimitOffset {
                limit,
                offset,
                limit_by,
            } => {
                if !limit_by.is_empty() {
                    return Err(construct("LIMIT BY", "LIMIT BY is not MySQL"));
                }
                if let Some(limit) = limit {
                    limit_value(limit)?;
                }
                if let Some(Offset { value, rows }) = offset {
                    if !matches!(rows, OffsetRows::None) {
                        return Err(construct("OFFSET", "write OFFSET n"));
                    }
                    limit_value(value)?;
                }
                Ok(())
            }
            LimitClause::OffsetCommaLimit { offset, limit } => {
                limit_value(offset)?;
                limit_value(limit)
            }
        }
    }

    fn expr(&mut self, expr: &Expr) -> Checked {
        self.enter()?;
        self.expr_inner(expr)?;
        self.leave();
        Ok(())
    }

    fn expr_inner(&mut self, expr: &Expr) -> Checked {
        match expr {
            Expr::Identifier(ident) => {
                plain_ident(ident)?;
                if ident.quote_style.is_none()
                    && NILADIC_WORDS
                        .iter()
                        .any(|w| w.eq_ignore_ascii_case(&ident.value))
                {
                    return Err(Refusal::new(
                        RefusalKind::Function,
                        ident.value.clone(),
                        "this word is a function call in MySQL and not on the guard's \
                         allow-list; backquote it to name a column",
                    ));
                }
                Ok(())
            }
            Expr::CompoundIdentifier(parts) => {
                if parts.len() < 2 || parts.len() > 3 {
                    return Err(construct(
                        "column reference",
                        "columns are named `col`, `t.col` or `db.t.col`",
                    ));
                }
                for part in parts {
                    plain_ident(part)?;
                }
                let last = &parts[parts.len() - 1].value;
                // MariaDB's Oracle mode reads `seq.nextval` as a sequence increment.
                if ["NEXTVAL", "CURRVAL", "LASTVAL"]
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(last))
                {
                    return Err(construct(
                        "sequence access",
                        "sequences may not be advanced",
                    ));
                }
                Ok(())
            }
            Expr::IsNull(e)
            | Expr::IsNotNull(e)
            | Expr::IsTrue(e)
            | Expr::IsNotTrue(e)
            | Expr::IsFalse(e)
            | Expr::IsNotFalse(e)
            | Expr::Nested(e) => self.expr(e),
            Expr::In {
                expr,
                target,
                negated: _,
                global,
            } => {
                if *global {
                    return Err(construct("GLOBAL IN", "GLOBAL IN is not MySQL"));
                }
                self.expr(expr)?;
                match target {
                    InTarget::List(list) => {
                        for e in list {
                            self.expr(e)?;
                        }
                        Ok(())
                    }
                    InTarget::Subquery(q) => self.query(q),
                    _ => Err(construct("IN", "IN takes a list or a subquery")),
                }
            }
            Expr::Between {
                expr,
                negated: _,
                low,
                high,
            } => {
                self.expr(expr)?;
                self.expr(low)?;
                self.expr(high)
            }
            Expr::BinaryOp { .. } => self.binary_chain(expr),
            Expr::Like {
                negated: _,
                any,
                expr,
                pattern,
                escape_char,
            } => {
                if *any {
                    return Err(construct("LIKE ANY", "LIKE ANY is not MySQL"));
                }
                self.expr(expr)?;
                self.expr(pattern)?;
                match escape_char.as_deref() {
                    None => Ok(()),
                    Some(Expr::Value(v)) if matches!(v.value, Value::SingleQuotedString(_)) => {
                        Ok(())
                    }
                    Some(_) => Err(construct("ESCAPE", "ESCAPE takes a string literal")),
                }
            }
            Expr::UnaryOp { op, expr } => match op {
                UnaryOperator::Plus | UnaryOperator::Minus | UnaryOperator::Not => self.expr(expr),
                other => Err(construct(
                    format!("operator {other}"),
                    "only unary + - and NOT are allowed",
                )),
            },
            Expr::Value(v) => literal(&v.value),
            Expr::Cast {
                kind,
                expr,
                data_type,
                format,
            } => {
                if !matches!(kind, CastKind::Cast) || format.is_some() {
                    return Err(construct("cast", "write CAST(x AS type)"));
                }
                cast_type(data_type)?;
                self.expr(expr)
            }
            Expr::Convert {
                is_try,
                expr,
                data_type,
                charset,
                target_before_value,
                styles,
            } => {
                if *is_try || *target_before_value || !styles.is_empty() {
                    return Err(construct(
                        "CONVERT",
                        "write CONVERT(x, type) or CONVERT(x USING charset)",
                    ));
                }
                match (data_type, charset) {
                    (Some(data_type), None) => cast_type(data_type)?,
                    (None, Some(charset)) => plain_name(charset, "CONVERT ... USING")?,
                    _ => {
                        return Err(construct(
                            "CONVERT",
                            "write CONVERT(x, type) or CONVERT(x USING charset)",
                        ))
                    }
                }
                self.expr(expr)
            }
            Expr::Collate { expr, collation } => {
                plain_name(collation, "COLLATE")?;
                self.expr(expr)
            }
            Expr::Case {
                case_token: _,
                end_token: _,
                operand,
                conditions,
                else_result,
            } => {
                if let Some(operand) = operand {
                    self.expr(operand)?;
                }
                for when in conditions {
                    self.expr(&when.condition)?;
                    self.expr(&when.result)?;
                }
                if let Some(e) = else_result {
                    self.expr(e)?;
                }
                Ok(())
            }
            Expr::Exists {
                subquery,
                negated: _,
            } => self.query(subquery),
            Expr::Subquery(q) => self.query(q),
            Expr::Tuple(list) => {
                for e in list {
                    self.expr(e)?;
                }
                Ok(())
            }
            Expr::Function(f) => self.function(f),
            Expr::Substring {
                expr,
                substring_from,
                substring_for,
                special: _,
                shorthand: _,
            } => {
                self.expr(expr)?;
                if let Some(e) = substring_from {
                    self.expr(e)?;
                }
                if let Some(e) = substring_for {
                    self.expr(e)?;
                }
                Ok(())
            }
            Expr::Trim {
                trim_where: _,
                trim_what,
                expr,
                trim_characters,
            } => {
                if trim_characters.is_some() {
                    return Err(construct(
                        "TRIM",
                        "write TRIM([BOTH|LEADING|TRAILING] x FROM y)",
                    ));
                }
                if let Some(e) = trim_what {
                    self.expr(e)?;
                }
                self.expr(expr)
            }
            Expr::Position { expr, r#in } => {
                self.expr(expr)?;
                self.expr(r#in)
            }
            other => Err(construct(
                expr_name(other),
                "this expression is not on the guard's allow-list",
            )),
        }
    }

    /// A binary operation and the chain of binary operations down its left side
    /// (`a AND b AND c ...`, `a + b - c ...` are left-deep), walked iteratively so that a long
    /// condition does not count as deep nesting.
    fn binary_chain(&mut self, expr: &Expr) -> Checked {
        let mut rights: Vec<&Expr> = Vec::new();
        let mut current = expr;
        while let Expr::BinaryOp { left, op, right } = current {
            binary_operator(op)?;
            rights.push(right);
            current = left;
        }
        self.expr(current)?;
        for right in rights.into_iter().rev() {
            self.expr(right)?;
        }
        Ok(())
    }

    fn function(&mut self, function: &Function) -> Checked {
        let Function {
            name,
            uses_odbc_syntax,
            parameters,
            args,
            within_group,
            filter,
            null_treatment,
            over,
        } = function;
        let ident = match name.0.as_slice() {
            [ObjectNamePart::Identifier(ident)] => ident,
            parts => {
                let object = parts
                    .iter()
                    .map(|p| match p {
                        ObjectNamePart::Identifier(i) => i.value.clone(),
                        ObjectNamePart::Function(f) => f.name.value.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join(".");
                return Err(Refusal::new(
                    RefusalKind::Function,
                    object,
                    "qualified function names call stored functions, which run arbitrary code",
                ));
            }
        };
        if ident.quote_style.is_some() {
            return Err(Refusal::new(
                RefusalKind::Function,
                ident.value.clone(),
                "function names may not be quoted",
            ));
        }
        let upper = ident.value.to_ascii_uppercase();
        if !FUNCTIONS.contains(&upper.as_str()) {
            return Err(Refusal::new(
                RefusalKind::Function,
                ident.value.clone(),
                format!(
                    "this function is not on the guard's allow-list ({})",
                    FUNCTIONS.join(", ")
                ),
            ));
        }
        if over.is_some() {
            return Err(construct("OVER", "window functions are not allowed"));
        }
        if *uses_odbc_syntax
            || !matches!(parameters, FunctionArguments::None)
            || !within_group.is_empty()
            || filter.is_some()
            || null_treatment.is_some()
        {
            return Err(construct(
                "function syntax",
                "call functions as name(arguments)",
            ));
        }
        let FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: _,
            args,
            clauses,
        }) = args
        else {
            return Err(construct(
                "function syntax",
                "call functions as name(arguments)",
            ));
        };
        for arg in args {
            match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => self.expr(e)?,
                FunctionArg::Unnamed(FunctionArgExpr::Wildcard) if upper == "COUNT" => {}
                _ => {
                    return Err(construct(
                        "function argument",
                        "function arguments are expressions (and `*` for COUNT)",
                    ))
                }
            }
        }
        for clause in clauses {
            match clause {
                FunctionArgumentClause::OrderBy(exprs) if upper == "GROUP_CONCAT" => {
                    self.order_by_exprs(exprs)?
                }
                FunctionArgumentClause::Separator(v)
                    if upper == "GROUP_CONCAT"
                        && matches!(v.value, Value::SingleQuotedString(_)) => {}
                _ => {
                    return Err(construct(
                        "function clause",
                        "only GROUP_CONCAT's ORDER BY and SEPARATOR clauses are allowed",
                    ))
                }
            }
        }
        Ok(())
    }
}

/// An identifier used as a name (column, alias): unquoted or backquoted.
fn plain_ident(ident: &Ident) -> Checked {
    match ident.quote_style {
        None | Some('`') => Ok(()),
        Some(_) => Err(construct(
            "quoted identifier",
            "quote identifiers with backquotes; aliases may not be strings",
        )),
    }
}

/// The identifiers of a name; a function part is refused.
fn ident_parts(name: &ObjectName) -> Result<Vec<&Ident>, Refusal> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => plain_ident(ident).map(|()| ident),
            ObjectNamePart::Function(_) => Err(construct(
                "table function",
                "table functions are not allowed",
            )),
        })
        .collect()
}

/// A charset or collation name: one unquoted word.
fn plain_name(name: &ObjectName, what: &str) -> Checked {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(ident)] if ident.quote_style.is_none() => Ok(()),
        _ => Err(construct(
            what,
            "character set and collation names are single unquoted words",
        )),
    }
}

fn wildcard_options(options: &WildcardAdditionalOptions) -> Checked {
    let WildcardAdditionalOptions {
        wildcard_token: _,
        opt_ilike,
        opt_exclude,
        opt_except,
        opt_replace,
        opt_rename,
        opt_alias,
    } = options;
    if opt_ilike.is_some()
        || opt_exclude.is_some()
        || opt_except.is_some()
        || opt_replace.is_some()
        || opt_rename.is_some()
        || opt_alias.is_some()
    {
        return Err(construct(
            "wildcard option",
            "`*` takes no options in MySQL",
        ));
    }
    Ok(())
}

fn literal(value: &Value) -> Checked {
    match value {
        Value::Number(_, false)
        | Value::SingleQuotedString(_)
        | Value::Boolean(_)
        | Value::Null => Ok(()),
        Value::Placeholder(p) if p == "?" => Ok(()),
        _ => Err(construct(
            "literal",
            "literals are decimal numbers, 'strings', TRUE, FALSE, NULL and `?` parameters",
        )),
    }
}

fn limit_value(expr: &Expr) -> Checked {
    match expr {
        Expr::Value(v) if matches!(&v.value, Value::Number(_, false)) => Ok(()),
        Expr::Value(v) if matches!(&v.value, Value::Placeholder(p) if p == "?") => Ok(()),
        _ => Err(construct(
            "LIMIT expression",
            "LIMIT and OFFSET take a number or a `?` parameter",
        )),
    }
}

fn binary_operator(op: &BinaryOperator) -> Checked {
    match op {
        BinaryOperator::Plus
        | BinaryOperator::Minus
        | BinaryOperator::Multiply
        | BinaryOperator::Divide
        | BinaryOperator::Modulo
        | BinaryOperator::MyIntegerDivide
        | BinaryOperator::Gt
        | BinaryOperator::Lt
        | BinaryOperator::GtEq
        | BinaryOperator::LtEq
        | BinaryOperator::Spaceship
        | BinaryOperator::Eq
        | BinaryOperator::NotEq
        | BinaryOperator::And
        | BinaryOperator::Or
        | BinaryOperator::Xor => Ok(()),
        other => {
            let text = other.to_string();
            let object = if text.len() <= 12
                && text
                    .chars()
                    .all(|c| c.is_ascii_punctuation() || c.is_ascii_uppercase() || c == ' ')
            {
                format!("operator {text}")
            } else {
                "operator".to_string()
            };
            Err(construct(
                object,
                "operators are arithmetic, comparison, AND, OR, XOR and NOT",
            ))
        }
    }
}

fn cast_type(data_type: &DataType) -> Checked {
    let allowed = match data_type {
        DataType::Char(None) | DataType::Binary(_) | DataType::Decimal(_) => true,
        DataType::Char(Some(CharacterLength::IntegerLength { unit, .. })) => unit.is_none(),
        DataType::Signed
        | DataType::SignedInteger
        | DataType::Unsigned
        | DataType::UnsignedInteger
        | DataType::JSON
        | DataType::Date
        | DataType::Datetime(_) => true,
        DataType::Time(_, TimezoneInfo::None) => true,
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(construct(
            "cast type",
            format!("CAST and CONVERT may only convert to {CAST_TYPES}"),
        ))
    }
}

/// A refused expression's name for a refusal, without any literal content.
fn expr_name(expr: &Expr) -> &'static str {
    match expr {
        Expr::Prefixed { .. } => "charset introducer",
        Expr::TypedString(_) => "typed literal",
        Expr::Interval(_) => "INTERVAL",
        Expr::MatchAgainst { .. } => "MATCH ... AGAINST",
        Expr::AnyOp { .. } => "ANY",
        Expr::AllOp { .. } => "ALL",
        Expr::RLike { .. } => "REGEXP",
        Expr::ILike { .. } => "ILIKE",
        Expr::SimilarTo { .. } => "SIMILAR TO",
        Expr::JsonAccess { .. } | Expr::CompoundFieldAccess { .. } => "field access",
        Expr::MemberOf(_) => "MEMBER OF",
        Expr::Extract { .. } => "EXTRACT",
        Expr::Ceil { .. } => "CEIL",
        Expr::Floor { .. } => "FLOOR",
        Expr::Overlay { .. } => "OVERLAY",
        Expr::AtTimeZone { .. } => "AT TIME ZONE",
        Expr::IsDistinctFrom(..) | Expr::IsNotDistinctFrom(..) => "IS DISTINCT FROM",
        Expr::IsUnknown(_) | Expr::IsNotUnknown(_) => "IS UNKNOWN",
        Expr::GroupingSets(_) | Expr::Cube(_) | Expr::Rollup(_) => "grouping set",
        Expr::Wildcard(_) | Expr::QualifiedWildcard(..) => "wildcard",
        Expr::Array(_) | Expr::Map(_) | Expr::Struct { .. } | Expr::Dictionary(_) => "collection",
        Expr::Lambda(_) => "lambda",
        _ => "expression",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> DataGrants {
        DataGrants::none()
    }

    fn pass(sql: &str) -> String {
        match check(sql, &none()) {
            Ok(rendered) => rendered,
            Err(r) => panic!("refused `{sql}`: {r}"),
        }
    }

    #[track_caller]
    fn refused(sql: &str, kind: RefusalKind, object: &str) {
        refused_with(sql, &none(), kind, object);
    }

    #[track_caller]
    fn refused_with(sql: &str, grants: &DataGrants, kind: RefusalKind, object: &str) {
        match check(sql, grants) {
            Ok(rendered) => panic!("passed `{sql}` as `{rendered}`"),
            Err(r) => {
                assert_eq!((r.kind, r.object.as_str()), (kind, object), "`{sql}`: {r}");
                // Refusals never carry the statement's string literals.
                for secret in ["/etc/passwd", "/tmp/x", "secret"] {
                    assert!(
                        !r.detail.contains(secret) && !r.object.contains(secret),
                        "{r}"
                    );
                }
            }
        }
    }

    /// The plugin's `Selection` (plugins/mysql/src/lib.rs), producing the same conditions.
    #[derive(Default)]
    struct Selection {
        only: Option<Vec<String>>,
        skip_databases: Vec<String>,
        skip_objects_of: Vec<String>,
        skip_tables: Vec<(String, String)>,
    }

    const SYSTEM_SCHEMAS_SQL: &str = "'information_schema', 'mysql', 'performance_schema', 'sys'";

    impl Selection {
        fn condition(&self, schema: &str, table: Option<&str>, objects: bool) -> String {
            let mut parts: Vec<String> = Vec::new();
            let exact = format!("CAST({schema} AS BINARY)");
            let in_list = |column: &str, names: &[String], negate: bool| {
                let marks = vec!["?"; names.len()].join(", ");
                format!("{column} {}IN ({marks})", if negate { "NOT " } else { "" })
            };
            match &self.only {
                Some(list) if list.is_empty() => parts.push("1 = 0".to_string()),
                Some(list) => {
                    parts.push(in_list(schema, list, false));
                    parts.push(in_list(&exact, list, false));
                }
                None => parts.push(format!("{exact} NOT IN ({SYSTEM_SCHEMAS_SQL})")),
            }
            if !self.skip_databases.is_empty() {
                parts.push(in_list(&exact, &self.skip_databases, true));
            }
            if objects && !self.skip_objects_of.is_empty() {
                parts.push(in_list(&exact, &self.skip_objects_of, true));
            }
            if let (Some(table), true) = (table, objects) {
                for _ in &self.skip_tables {
                    parts.push(format!("NOT ({exact} = ? AND CAST({table} AS BINARY) = ?)"));
                }
            }
            parts.join(" AND ")
        }
    }

    /// Every statement the MySQL connector sends, for one selection.
    fn connector_statements(selection: &Selection) -> Vec<String> {
        let mut out = Vec::new();
        let cond = selection.condition("SCHEMA_NAME", None, false);
        out.push(format!(
            "SELECT SCHEMA_NAME AS db, DEFAULT_CHARACTER_SET_NAME AS charset, \
         DEFAULT_COLLATION_NAME AS collation \
         FROM information_schema.SCHEMATA WHERE {cond} ORDER BY CAST(SCHEMA_NAME AS BINARY)"
        ));
        let cond = selection.condition("TABLE_SCHEMA", Some("TABLE_NAME"), true);
        out.push(format!(
            "SELECT TABLE_SCHEMA AS db, TABLE_NAME AS name, TABLE_TYPE AS type, ENGINE AS engine, \
         TABLE_ROWS AS row_count, TABLE_COMMENT AS comment \
         FROM information_schema.TABLES WHERE TABLE_TYPE <> 'VIEW' AND {cond} \
         ORDER BY CAST(TABLE_SCHEMA AS BINARY), CAST(TABLE_NAME AS BINARY)"
        ));
        out.push(format!(
            "SELECT TABLE_SCHEMA AS db, TABLE_NAME AS name, VIEW_DEFINITION AS definition \
         FROM information_schema.VIEWS WHERE {cond} \
         ORDER BY CAST(TABLE_SCHEMA AS BINARY), CAST(TABLE_NAME AS BINARY)"
        ));
        out.push(format!(
            "SELECT TABLE_SCHEMA AS db, TABLE_NAME AS tbl, COLUMN_NAME AS col, \
         SEQ_IN_INDEX AS pos \
         FROM information_schema.STATISTICS \
         WHERE INDEX_NAME = 'PRIMARY' AND {cond} \
         ORDER BY CAST(TABLE_SCHEMA AS BINARY), CAST(TABLE_NAME AS BINARY)"
        ));
        out.push(format!(
            "SELECT TABLE_SCHEMA AS db, TABLE_NAME AS tbl, COLUMN_NAME AS name, \
         ORDINAL_POSITION AS ordinal, COLUMN_TYPE AS data_type, IS_NULLABLE AS nullable, \
         COLUMN_DEFAULT AS dflt, COLUMN_COMMENT AS comment \
         FROM information_schema.COLUMNS WHERE {cond} \
         ORDER BY CAST(TABLE_SCHEMA AS BINARY), CAST(TABLE_NAME AS BINARY), ORDINAL_POSITION"
        ));
        let rc_cond = selection.condition("CONSTRAINT_SCHEMA", Some("TABLE_NAME"), true);
        out.push(format!(
            "SELECT CONSTRAINT_SCHEMA AS db, TABLE_NAME AS tbl, CONSTRAINT_NAME AS name, \
                 UPDATE_RULE AS on_update, DELETE_RULE AS on_delete \
                 FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE {rc_cond} \
                 ORDER BY CAST(CONSTRAINT_SCHEMA AS BINARY), CAST(TABLE_NAME AS BINARY), \
                 CAST(CONSTRAINT_NAME AS BINARY)"
        ));
        out.push(format!(
            "SELECT TABLE_SCHEMA AS db, TABLE_NAME AS tbl, CONSTRAINT_NAME AS name, \
         COLUMN_NAME AS col, ORDINAL_POSITION AS pos, \
         REFERENCED_TABLE_SCHEMA AS ref_schema, REFERENCED_TABLE_NAME AS ref_table, \
         REFERENCED_COLUMN_NAME AS ref_col \
         FROM information_schema.KEY_COLUMN_USAGE WHERE {cond} \
         ORDER BY CAST(TABLE_SCHEMA AS BINARY), CAST(TABLE_NAME AS BINARY), \
         CAST(CONSTRAINT_NAME AS BINARY), ORDINAL_POSITION"
        ));
        out.push(format!(
            "SELECT TABLE_SCHEMA AS db, TABLE_NAME AS tbl, INDEX_NAME AS name, \
         NON_UNIQUE AS non_unique, SEQ_IN_INDEX AS seq, COLUMN_NAME AS col, \
         INDEX_TYPE AS index_type \
         FROM information_schema.STATISTICS WHERE {cond} \
         ORDER BY CAST(TABLE_SCHEMA AS BINARY), CAST(TABLE_NAME AS BINARY), \
         CAST(INDEX_NAME AS BINARY), SEQ_IN_INDEX"
        ));
        out
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn selections() -> Vec<Selection> {
        vec![
            // databases = ["*"], no filters
            Selection::default(),
            // one database
            Selection {
                only: Some(names(&["shop"])),
                ..Selection::default()
            },
            // several databases, every kind of exclusion
            Selection {
                only: Some(names(&["shop", "crm", "analytics"])),
                skip_databases: names(&["old"]),
                skip_objects_of: names(&["crm"]),
                skip_tables: vec![
                    ("shop".into(), "secrets".into()),
                    ("shop".into(), "audit".into()),
                ],
            },
            // every database, with exclusions
            Selection {
                only: None,
                skip_databases: names(&["tmp", "scratch"]),
                skip_objects_of: names(&["x"]),
                skip_tables: vec![("a".into(), "b".into())],
            },
            // the include filters select nothing
            Selection {
                only: Some(Vec::new()),
                ..Selection::default()
            },
        ]
    }

    #[test]
    fn every_connector_statement_passes_and_renders_stably() {
        let mut count = 0;
        for selection in selections() {
            for sql in connector_statements(&selection) {
                let rendered = pass(&sql);
                // Same placeholders, same text apart from whitespace.
                assert_eq!(
                    sql.matches('?').count(),
                    rendered.matches('?').count(),
                    "{sql}"
                );
                let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
                assert_eq!(squash(&sql), squash(&rendered));
                // The rendering passes again, unchanged.
                assert_eq!(pass(&rendered), rendered);
                count += 1;
            }
        }
        assert_eq!(count, 40);
    }

    #[test]
    fn a_connector_statement_with_many_exclusions_passes() {
        // A long AND chain is not deep nesting.
        let selection = Selection {
            only: Some((0..500).map(|i| format!("db{i}")).collect()),
            skip_tables: (0..400).map(|i| ("db1".into(), format!("t{i}"))).collect(),
            ..Selection::default()
        };
        for sql in connector_statements(&selection) {
            let rendered = pass(&sql);
            assert_eq!(sql.matches('?').count(), rendered.matches('?').count());
        }
    }

    #[test]
    fn rendering_keeps_placeholders_and_backquotes() {
        let rendered = pass(
            "SELECT `TABLE_NAME` AS `näme`, 'ü''x' FROM information_schema.`TABLES` \
             WHERE `TABLE_SCHEMA` = ? LIMIT ?, ?;",
        );
        assert_eq!(
            rendered,
            "SELECT `TABLE_NAME` AS `näme`, 'ü''x' FROM information_schema.`TABLES` \
             WHERE `TABLE_SCHEMA` = ? LIMIT ?, ?"
        );
    }

    #[test]
    fn useful_reads_pass() {
        for sql in [
            "SELECT 1",
            "SELECT VERSION(), DATABASE(), SCHEMA()",
            "select count(*) from INFORMATION_SCHEMA.tables",
            "(SELECT TABLE_NAME FROM information_schema.TABLES) UNION ALL \
             (SELECT TABLE_NAME FROM information_schema.VIEWS) ORDER BY 1 LIMIT 10",
            "WITH t AS (SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES), \
             u AS (SELECT * FROM t) SELECT COUNT(DISTINCT TABLE_SCHEMA) FROM u",
            "SELECT c.TABLE_NAME, GROUP_CONCAT(c.COLUMN_NAME ORDER BY c.ORDINAL_POSITION \
             SEPARATOR ',') FROM information_schema.COLUMNS AS c \
             JOIN information_schema.TABLES t ON t.TABLE_NAME = c.TABLE_NAME \
             AND t.TABLE_SCHEMA = c.TABLE_SCHEMA GROUP BY c.TABLE_NAME HAVING COUNT(*) > 1",
            "SELECT d.n FROM (SELECT TABLE_NAME AS n FROM information_schema.TABLES) AS d \
             WHERE d.n LIKE ? AND EXISTS (SELECT 1 FROM information_schema.COLUMNS c \
             WHERE c.TABLE_NAME = d.n)",
            "SELECT IF(IS_NULLABLE = 'YES', 1, 0), COALESCE(COLUMN_DEFAULT, ''), \
             CONVERT(COLUMN_NAME USING utf8mb4), CAST(ORDINAL_POSITION AS UNSIGNED), \
             SUBSTRING(COLUMN_TYPE, 1, 3), TRIM(BOTH ' ' FROM COLUMN_COMMENT), \
             CASE WHEN NUMERIC_PRECISION IS NULL THEN 0 ELSE 1 END, \
             COLUMN_NAME COLLATE utf8mb4_bin, JSON_OBJECT('n', COLUMN_NAME) \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA IN (SELECT SCHEMA_NAME \
             FROM information_schema.SCHEMATA) AND ORDINAL_POSITION BETWEEN 1 AND 10",
            "SELECT 1 FROM DUAL",
            "SELECT * FROM information_schema.SEQUENCES",
        ] {
            let rendered = pass(sql);
            assert_eq!(pass(&rendered), rendered);
        }
    }

    #[test]
    fn granted_relations_pass_and_others_are_named() {
        let grants = DataGrants::new(&["shop.shop.orders".to_string()]).unwrap();
        assert_eq!(
            check("SELECT id FROM shop.orders", &grants).unwrap(),
            "SELECT id FROM shop.orders"
        );
        let r = check("SELECT id FROM shop.customers", &grants).unwrap_err();
        assert_eq!(
            (r.kind, r.object.as_str()),
            (RefusalKind::Relation, "shop.customers")
        );
        assert!(r.detail.contains("shop.shop.customers"), "{r}");
        assert!(r.detail.contains("allow_relations"), "{r}");
        refused_with(
            "SELECT o.id FROM shop.orders o JOIN shop.customers c ON c.id = o.customer",
            &grants,
            RefusalKind::Relation,
            "shop.customers",
        );
        // A grant never opens the system schemas.
        let all = DataGrants::new(&["*.*.*".to_string()]).unwrap();
        refused_with(
            "SELECT * FROM mysql.user",
            &all,
            RefusalKind::Relation,
            "mysql.user",
        );
        refused_with("SELECT * FROM SYS.x", &all, RefusalKind::Relation, "SYS.x");
        // Nor unqualified names.
        refused_with(
            "SELECT * FROM orders",
            &all,
            RefusalKind::Relation,
            "orders",
        );
    }

    #[test]
    fn cte_scoping() {
        // A CTE is not visible in its own body: there `t` is a table of the current database.
        refused(
            "WITH t AS (SELECT * FROM t) SELECT * FROM t",
            RefusalKind::Relation,
            "t",
        );
        // Nor before it is defined.
        refused(
            "WITH a AS (SELECT * FROM b), b AS (SELECT 1 AS x) SELECT * FROM a",
            RefusalKind::Relation,
            "b",
        );
        // A CTE defined inside a subquery is not visible outside it.
        refused(
            "SELECT * FROM (WITH c AS (SELECT 1 AS a) SELECT a FROM c) AS d, c",
            RefusalKind::Relation,
            "c",
        );
        refused(
            "(WITH c AS (SELECT 1 AS a) SELECT a FROM c) UNION SELECT a FROM c",
            RefusalKind::Relation,
            "c",
        );
        refused(
            "SELECT (WITH c AS (SELECT 1 AS a) SELECT a FROM c), \
             (SELECT a FROM c)",
            RefusalKind::Relation,
            "c",
        );
        // Names are compared exactly: the server might not take `C` for `c`.
        refused(
            "WITH c AS (SELECT 1 AS a) SELECT a FROM C",
            RefusalKind::Relation,
            "C",
        );
        // But an outer CTE is visible in subqueries.
        pass("WITH c AS (SELECT 1 AS a) SELECT * FROM (SELECT a FROM c) AS d WHERE d.a IN (SELECT a FROM c)");
    }

    #[test]
    fn refusals() {
        use RefusalKind::*;
        let cases: &[(&str, RefusalKind, &str)] = &[
            ("SELECT LOAD_FILE('/etc/passwd')", Function, "LOAD_FILE"),
            ("SELECT load_file('/etc/passwd')", Function, "load_file"),
            ("SELECT 1 INTO OUTFILE '/tmp/x'", Construct, "INTO"),
            ("SELECT 1 INTO DUMPFILE '/tmp/x'", Construct, "INTO"),
            (
                "SELECT 1 FROM information_schema.TABLES INTO OUTFILE '/tmp/x'",
                Construct,
                "INTO",
            ),
            ("DROP TABLE t", NotARead, "DROP"),
            ("GRANT ALL ON *.* TO x", NotARead, "GRANT"),
            ("CREATE USER x", NotARead, "CREATE"),
            ("INSTALL SONAME 'x'", NotARead, "INSTALL"),
            ("SELECT /*!50000 SLEEP(5) */ 1", Comment, "/*!"),
            ("SELECT /*M!100100 1 */", Comment, "/*M!"),
            ("SELECT /* plain */ 1", Comment, "/*"),
            ("SELECT /*+ MAX_EXECUTION_TIME(1) */ 1", Comment, "/*+"),
            ("/*!*/ DROP TABLE t", Comment, "/*!"),
            ("SELECT 1 -- x", Comment, "--"),
            ("SELECT 1 # x", Comment, "#"),
            ("SELECT 1 */", Comment, "*/"),
            ("SELECT SLEEP(10)", Function, "SLEEP"),
            ("SELECT BENCHMARK(1000000, MD5('x'))", Function, "BENCHMARK"),
            ("SELECT GET_LOCK('a', 1)", Function, "GET_LOCK"),
            ("SELECT RELEASE_LOCK('a')", Function, "RELEASE_LOCK"),
            ("SELECT IS_FREE_LOCK('a')", Function, "IS_FREE_LOCK"),
            (
                "SELECT MASTER_POS_WAIT('f', 1)",
                Function,
                "MASTER_POS_WAIT",
            ),
            ("SELECT SYS_EVAL('id')", Function, "SYS_EVAL"),
            ("SELECT UUID()", Function, "UUID"),
            ("SELECT RAND()", Function, "RAND"),
            ("SELECT AES_ENCRYPT('a', 'b')", Function, "AES_ENCRYPT"),
            ("SELECT ENCRYPT('a')", Function, "ENCRYPT"),
            ("SELECT VALUES(a)", Function, "VALUES"),
            ("SELECT LAST_INSERT_ID()", Function, "LAST_INSERT_ID"),
            ("SELECT ROW_COUNT()", Function, "ROW_COUNT"),
            ("SELECT FOUND_ROWS()", Function, "FOUND_ROWS"),
            ("SELECT PASSWORD('x')", Function, "PASSWORD"),
            ("SELECT OLD_PASSWORD('x')", Function, "OLD_PASSWORD"),
            ("SELECT NAME_CONST('a', 1)", Function, "NAME_CONST"),
            ("SELECT UPDATEXML('a', 'b', 'c')", Function, "UPDATEXML"),
            (
                "SELECT EXTRACTVALUE(1, CONCAT(0x7e, 'x'))",
                Construct,
                "hex literal",
            ),
            (
                "SELECT EXTRACTVALUE(1, CONCAT('~', 'x'))",
                Function,
                "EXTRACTVALUE",
            ),
            ("SELECT CONCAT('a', SLEEP(1))", Function, "SLEEP"),
            ("SELECT CAST(LOAD_FILE('x') AS CHAR)", Function, "LOAD_FILE"),
            ("SELECT CURRENT_USER()", Function, "CURRENT_USER"),
            ("SELECT CURRENT_USER", Function, "CURRENT_USER"),
            (
                "SELECT a FROM information_schema.TABLES ORDER BY current_user",
                Function,
                "current_user",
            ),
            ("SELECT CURRENT_TIMESTAMP", Function, "CURRENT_TIMESTAMP"),
            ("SELECT @a := 1", Construct, "variable"),
            ("SELECT @@version", Construct, "variable"),
            (
                "SELECT a INTO @x FROM information_schema.TABLES",
                Construct,
                "INTO",
            ),
            ("SET @a = 1", NotARead, "SET"),
            ("SET SESSION TRANSACTION READ WRITE", NotARead, "SET"),
            ("SELECT 1; SELECT 2", MultipleStatements, ";"),
            ("SELECT 1;;", MultipleStatements, ";"),
            ("SELECT * FROM shop.customers", Relation, "shop.customers"),
            ("SELECT * FROM customers", Relation, "customers"),
            (
                "SELECT * FROM `information_schema.TABLES`",
                Relation,
                "information_schema.TABLES",
            ),
            ("SELECT * FROM TABLES", Relation, "TABLES"),
            ("SELECT * FROM mysql.user", Relation, "mysql.user"),
            ("SELECT * FROM MySQL.User", Relation, "MySQL.User"),
            (
                "SELECT * FROM mysql.column_stats",
                Relation,
                "mysql.column_stats",
            ),
            (
                "SELECT * FROM performance_schema.threads",
                Relation,
                "performance_schema.threads",
            ),
            ("SELECT * FROM sys.session", Relation, "sys.session"),
            (
                "SELECT * FROM information_schema.PROCESSLIST",
                Relation,
                "information_schema.PROCESSLIST",
            ),
            (
                "SELECT * FROM information_schema.processlist",
                Relation,
                "information_schema.processlist",
            ),
            (
                "SELECT * FROM information_schema.GLOBAL_VARIABLES",
                Relation,
                "information_schema.GLOBAL_VARIABLES",
            ),
            (
                "SELECT * FROM information_schema.USER_PRIVILEGES",
                Relation,
                "information_schema.USER_PRIVILEGES",
            ),
            (
                "SELECT * FROM information_schema.INNODB_TRX",
                Relation,
                "information_schema.INNODB_TRX",
            ),
            ("SELECT * FROM a.b.c", Relation, "a.b.c"),
            (
                "SELECT (SELECT COUNT(*) FROM shop.customers)",
                Relation,
                "shop.customers",
            ),
            (
                "SELECT 1 FROM information_schema.TABLES WHERE EXISTS (SELECT 1 FROM mysql.user)",
                Relation,
                "mysql.user",
            ),
            ("SHOW GRANTS", NotARead, "SHOW"),
            ("SHOW DATABASES", NotARead, "SHOW"),
            ("DESCRIBE t", NotARead, "DESCRIBE"),
            ("EXPLAIN SELECT 1", NotARead, "EXPLAIN"),
            (
                "SELECT * FROM information_schema.TABLES FOR UPDATE",
                Construct,
                "FOR UPDATE",
            ),
            (
                "SELECT * FROM information_schema.TABLES FOR SHARE",
                Construct,
                "FOR SHARE",
            ),
            (
                "SELECT * FROM information_schema.TABLES LOCK IN SHARE MODE",
                Construct,
                "LOCK",
            ),
            ("SELECT 1 PROCEDURE ANALYSE()", Construct, "PROCEDURE"),
            ("SELECT `LOAD_FILE`('x')", Function, "LOAD_FILE"),
            ("SELECT `CONCAT`('x')", Function, "CONCAT"),
            ("SELECT shop.fn()", Function, "shop.fn"),
            ("SELECT 'a\\'b'", Construct, "backslash"),
            ("SELECT `a\\b`", Construct, "backslash"),
            ("SELECT \"x\"", Construct, "double-quoted string"),
            ("SELECT N'x'", Construct, "national string literal"),
            ("SELECT X'41'", Construct, "hex literal"),
            ("SELECT 0x41", Construct, "hex literal"),
            ("SELECT b'01'", Construct, "bit or byte string literal"),
            ("SELECT _utf8mb4'x'", Construct, "charset introducer"),
            ("SELECT 1e5", Construct, "numeric literal"),
            ("SELECT 1 || 2", Construct, "||"),
            ("SELECT 1 && 2", Construct, "&&"),
            ("SELECT 1 | 2", Construct, "|"),
            ("SELECT {fn NOW()}", Construct, "{"),
            ("SELECT 'a\u{0}'", Construct, "control character"),
            ("SELECT\u{a0}1", Construct, "non-ASCII character"),
            ("LOAD DATA LOCAL INFILE 'x' INTO TABLE t", NotARead, "LOAD"),
            ("HANDLER t OPEN", NotARead, "HANDLER"),
            ("DO SLEEP(1)", NotARead, "DO"),
            ("CALL p()", NotARead, "CALL"),
            ("KILL 1", NotARead, "KILL"),
            ("FLUSH PRIVILEGES", NotARead, "FLUSH"),
            ("LOCK TABLES t READ", NotARead, "LOCK"),
            ("START TRANSACTION", NotARead, "START"),
            ("INSERT INTO t VALUES (1)", NotARead, "INSERT"),
            ("UPDATE t SET a = 1", NotARead, "UPDATE"),
            ("WITH c AS (SELECT 1) DELETE FROM t", NotARead, "DELETE"),
            ("VALUES ROW(1)", NotARead, "VALUES"),
            ("TABLE t", NotARead, "TABLE"),
            (
                "WITH RECURSIVE c AS (SELECT 1) SELECT * FROM c",
                Construct,
                "WITH RECURSIVE",
            ),
            ("SELECT SQL_CALC_FOUND_ROWS 1", Construct, "SELECT modifier"),
            (
                "SELECT COUNT(*) OVER () FROM information_schema.TABLES",
                Construct,
                "OVER",
            ),
            ("SELECT 1 = ANY (SELECT 1)", Construct, "ANY"),
            ("SELECT 'a' REGEXP 'b'", Construct, "REGEXP"),
            ("SELECT CAST(1 AS DOUBLE)", Construct, "cast type"),
            (
                "SELECT a FROM information_schema.TABLES USE INDEX (i)",
                Construct,
                "index hint",
            ),
            (
                "SELECT s.nextval FROM information_schema.TABLES s",
                Construct,
                "sequence access",
            ),
            ("SELECT 1 AS 'x'", Construct, "quoted identifier"),
            ("SELECT", Unparsable, "statement"),
            ("SELECT FROM WHERE (", Unparsable, "statement"),
            ("SELECT 'unterminated", Unparsable, "statement"),
            ("", Unparsable, "statement"),
            ("   ", Unparsable, "statement"),
            ("garbage in garbage out", NotARead, "GARBAGE"),
            ("SELECT 1abc", Construct, "identifier"),
        ];
        let mut wrong = Vec::new();
        for (sql, kind, object) in cases {
            match check(sql, &none()) {
                Ok(rendered) => wrong.push(format!("passed `{sql}` as `{rendered}`")),
                Err(r) if (r.kind, r.object.as_str()) != (*kind, *object) => {
                    wrong.push(format!("`{sql}`: {r}"))
                }
                Err(_) => refused(sql, *kind, object),
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        assert!(cases.len() >= 35);
    }

    #[test]
    fn unparsable_details_do_not_quote_the_statement() {
        let r = check("SELECT 'secret' 'x' FROM WHERE", &none()).unwrap_err();
        assert_eq!(r.kind, RefusalKind::Unparsable);
        assert!(!r.detail.contains("secret"), "{r}");
        assert!(r.detail.contains("Line: 1"), "{r}");
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let nesting = |kind: RefusalKind, object: &str, sql: &str| match check(sql, &none()) {
            Ok(_) => panic!("passed a statement of {} bytes", sql.len()),
            Err(r) => assert_eq!((r.kind, r.object.as_str()), (kind, object), "{r}"),
        };
        let depth = "nesting depth";
        let parens = format!("SELECT {}1{}", "(".repeat(1000), ")".repeat(1000));
        nesting(RefusalKind::Construct, depth, &parens);
        // sqlparser reports this one as a syntax error at the recursion limit.
        let nots = format!("SELECT {}1", "NOT ".repeat(5000));
        assert!(check(&nots, &none()).is_err());
        let nots = format!("SELECT {}1", "NOT ".repeat(230));
        nesting(RefusalKind::Construct, depth, &nots);
        let minus = format!("SELECT {}1", "- ".repeat(5000));
        nesting(RefusalKind::Construct, depth, &minus);
        let subqueries = format!("SELECT {}1{}", "(SELECT ".repeat(150), ")".repeat(150));
        nesting(RefusalKind::Construct, depth, &subqueries);
        let is_null = format!("SELECT 1{}", " IS NULL".repeat(5000));
        nesting(RefusalKind::Construct, depth, &is_null);
        let right_deep = format!("SELECT 1{}", " = (1".repeat(300)) + &")".repeat(300);
        nesting(RefusalKind::Construct, depth, &right_deep);
        // A long chain of set operations is flat ...
        let unions = format!(
            "SELECT 1{}",
            " UNION SELECT 1 INTERSECT SELECT 1".repeat(300)
        );
        assert!(check(&unions, &none()).is_ok());
        // ... nested ones are deep.
        let nested = format!(
            "{}SELECT 1{}",
            "(SELECT 1 UNION ".repeat(150),
            ")".repeat(150)
        );
        nesting(RefusalKind::Construct, depth, &nested);
        // The longest chain the token limit allows parses, passes the walker (one operator
        // counts once), renders and is compared on the guard's thread.
        let chain = format!("SELECT 1{}", " + 1".repeat(MAX_TOKENS / 2 - 2));
        assert!(check(&chain, &none()).is_ok());
        let mixed = format!("SELECT 1{}", " + 1 * 1 - 1".repeat(MAX_TOKENS / 6 - 1));
        assert!(check(&mixed, &none()).is_ok());
        let longer = format!("SELECT 1{}", " + 1".repeat(MAX_TOKENS / 2 + 1));
        nesting(RefusalKind::Construct, "statement size", &longer);
        let huge = format!("SELECT '{}'", "x".repeat(MAX_STATEMENT_BYTES));
        nesting(RefusalKind::Construct, "statement size", &huge);
        // Moderate nesting is fine.
        let ok = format!("SELECT {}1{}", "(".repeat(50), ")".repeat(50));
        pass(&ok);
    }

    #[test]
    fn works_from_a_small_stack() {
        // The check runs on its own thread, so a caller with a small stack (a tokio worker)
        // is safe even for the deepest statements.
        let handle = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                let chain = format!("SELECT 1{}", " AND 1".repeat(MAX_TOKENS / 2 - 2));
                let nots = format!("SELECT {}1", "NOT ".repeat(5000));
                (
                    check(&chain, &none()).is_ok(),
                    check(&nots, &none()).is_err(),
                )
            })
            .unwrap();
        assert_eq!(handle.join().unwrap(), (true, true));
    }

    #[test]
    fn cast_types_round_trip() {
        for t in [
            "CHAR",
            "CHAR(10)",
            "BINARY",
            "BINARY(3)",
            "SIGNED",
            "SIGNED INTEGER",
            "UNSIGNED",
            "UNSIGNED INTEGER",
            "DECIMAL",
            "DECIMAL(10,2)",
            "JSON",
            "DATE",
            "DATETIME",
            "DATETIME(6)",
            "TIME",
        ] {
            let sql = format!("SELECT CAST(1 AS {t}), CONVERT(1, {t})");
            assert_eq!(pass(&sql), sql);
        }
    }

    #[test]
    fn trailing_semicolon_is_dropped() {
        assert_eq!(pass("SELECT 1 ;\n"), "SELECT 1");
    }
}
