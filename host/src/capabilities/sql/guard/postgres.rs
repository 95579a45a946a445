//! The PostgreSQL statement guard.
//!
//! Every statement a plugin sends is parsed with the real PostgreSQL grammar (`pg_query`,
//! libpg_query), checked node by node against allow-lists, and re-rendered from the checked
//! parse tree; the host sends the re-rendered text, never the plugin's.
//!
//! **Allowed:** exactly one `SELECT` (with `UNION`/`INTERSECT`/`EXCEPT`, `VALUES`, joins,
//! subqueries, `LATERAL`, window and aggregate calls, and `WITH [RECURSIVE]` whose CTEs are all
//! plain `SELECT`s) over
//! - the metadata catalogs of `pg_catalog` and the `information_schema` views listed in
//!   [`PG_CATALOG_RELATIONS`] and [`INFORMATION_SCHEMA_VIEWS`],
//! - CTEs in scope, and
//! - data relations the workflow grants by name (`[source.sql] allow_relations`),
//!
//! calling only the functions in [`FUNCTIONS`] (plus `current_setting` of one of
//! [`SETTINGS`]), casting only to the types in [`TYPES`], using only the operators in
//! [`OPERATORS`].
//!
//! **Refused:** everything else. Any statement other than a `SELECT` (`SET`, `SHOW`, `COPY`,
//! `CALL`, `DO`, `EXPLAIN`, transaction control, DDL, DML, ...); `SELECT INTO`, locking
//! clauses, `TABLESAMPLE`, data-modifying CTEs; every parse-tree node type not explicitly
//! handled below; catalog relations that expose data values, secrets or other sessions
//! (`pg_statistic`, `pg_stats`, `pg_authid`, `pg_user_mapping`, `pg_subscription`,
//! `pg_largeobject`, `pg_stat_*`, `pg_settings`, `pg_sequences`, `pg_locks`, ...: they are
//! simply not on the allow-list); functions with effects outside the query or that read
//! files, settings, data or other sessions (`pg_read_file`, `lo_export`, `dblink_exec`,
//! `set_config`, `pg_sleep`, `pg_advisory_lock`, `nextval`, `query_to_xml`, ...).
//!
//! **Why:** a "read-only" transaction does not stop a PostgreSQL login from running shell
//! commands (`COPY ... TO PROGRAM`), reading server files, writing through `dblink`, holding
//! session locks that outlive the transaction, or reading business data and secrets that the
//! role can see. The host's connection is as powerful as the credential's login, so the guard
//! decides what the plugin may ask for, by the parse tree the server will see.
//!
//! The re-rendered statement also pins name resolution: unqualified catalog relations,
//! allow-listed functions and cast types are qualified with `pg_catalog`, so a role-level
//! `search_path` or a temporary relation cannot redirect them to look-alikes. The rendered
//! text is parsed and checked again, and must give the same tree; otherwise it is refused.
//! String literals holding a backslash re-render as `E'...'`, so the text means the same
//! whatever the server's `standard_conforming_strings`.
//!
//! **Parser safety:** libpg_query converts its tree to protobuf recursively without a stack
//! check, so statements over 10,000 tokens (which bounds the depth) are refused before
//! parsing, and parsing runs on a thread of its own with a stack that fits the deepest such
//! tree, whatever thread the host calls from.
//!
//! **Limits** (name resolution the server does, which no parse tree shows): operators are
//! checked by symbol and resolved by the server through the `search_path` (which the host pins
//! to `pg_catalog` on every session it opens); and PostgreSQL's
//! functional notation makes `t.f` a call of `f(t)` when `t` has no column `f`, which reaches
//! functions of one composite or polymorphic argument (in stock `pg_catalog` only pure ones:
//! `to_json`, `row_to_json`, `pg_column_size`, ...). Either needs an object that a database
//! user created in a schema on the role's `search_path`; a plugin cannot create one.

use super::{DataGrants, Refusal, RefusalKind};
use pg_query::protobuf::{
    self, a_const, node::Node as N, AExprKind, FuncCall, LockClauseStrength, Node, SetOperation,
    SqlValueFunctionOp, SubLinkType, TypeName,
};

/// More nodes than this in one statement is refused: no catalog query needs as many.
const MAX_NODES: usize = 10_000;
/// Deeper nesting than this is refused, so the checker's own recursion stays shallow. (The
/// parser's protobuf decoding already stops at about 50 nested nodes; this bound holds even if
/// that limit were lifted.)
const MAX_DEPTH: usize = 200;
/// Longer statements are refused before they are parsed.
const MAX_STATEMENT_BYTES: usize = 1 << 20;
/// More tokens than this are refused before parsing: the parse tree's depth (and so the
/// parser's recursion) is bounded by the token count.
const MAX_TOKENS: usize = 10_000;
/// The parser thread's stack: 10,000 tokens nest at most ~5,000 nodes deep, which took
/// 16 MiB in an unoptimised build; four times that.
const PARSER_STACK_BYTES: usize = 64 << 20;

/// Relations of `pg_catalog` a plugin may read: definitions of objects, never data values,
/// secrets, statistics about values, settings or other sessions.
pub const PG_CATALOG_RELATIONS: &[&str] = &[
    "pg_aggregate",
    "pg_am",
    "pg_attrdef",
    "pg_attribute",
    "pg_auth_members",
    "pg_cast",
    "pg_class",
    "pg_collation",
    "pg_constraint",
    "pg_database",
    "pg_default_acl",
    "pg_depend",
    "pg_description",
    "pg_enum",
    "pg_event_trigger",
    "pg_extension",
    "pg_foreign_data_wrapper",
    "pg_foreign_server",
    "pg_foreign_table",
    "pg_index",
    "pg_indexes",
    "pg_inherits",
    "pg_init_privs",
    "pg_language",
    "pg_matviews",
    "pg_namespace",
    "pg_opclass",
    "pg_operator",
    "pg_opfamily",
    "pg_partitioned_table",
    "pg_policies",
    "pg_policy",
    "pg_proc",
    "pg_publication",
    "pg_publication_namespace",
    "pg_publication_rel",
    "pg_range",
    "pg_rewrite",
    "pg_roles",
    "pg_seclabel",
    "pg_sequence",
    "pg_shdescription",
    "pg_statistic_ext",
    "pg_tables",
    "pg_tablespace",
    "pg_trigger",
    "pg_ts_config",
    "pg_ts_dict",
    "pg_type",
    "pg_views",
];

/// `information_schema` views a plugin may read: all but the internal `_pg_*` views and those
/// showing option values (`*_options`) or user mappings.
pub const INFORMATION_SCHEMA_VIEWS: &[&str] = &[
    "administrable_role_authorizations",
    "applicable_roles",
    "attributes",
    "character_sets",
    "check_constraint_routine_usage",
    "check_constraints",
    "collation_character_set_applicability",
    "collations",
    "column_column_usage",
    "column_domain_usage",
    "column_privileges",
    "column_udt_usage",
    "columns",
    "constraint_column_usage",
    "constraint_table_usage",
    "data_type_privileges",
    "domain_constraints",
    "domain_udt_usage",
    "domains",
    "element_types",
    "enabled_roles",
    "foreign_data_wrappers",
    "foreign_servers",
    "foreign_tables",
    "information_schema_catalog_name",
    "key_column_usage",
    "parameters",
    "referential_constraints",
    "role_column_grants",
    "role_routine_grants",
    "role_table_grants",
    "role_udt_grants",
    "role_usage_grants",
    "routine_column_usage",
    "routine_privileges",
    "routine_routine_usage",
    "routine_sequence_usage",
    "routine_table_usage",
    "routines",
    "schemata",
    "sequences",
    "sql_features",
    "sql_implementation_info",
    "sql_parts",
    "sql_sizing",
    "table_constraints",
    "table_privileges",
    "tables",
    "transforms",
    "triggered_update_columns",
    "triggers",
    "udt_privileges",
    "usage_privileges",
    "user_defined_types",
    "view_column_usage",
    "view_routine_usage",
    "view_table_usage",
    "views",
];

/// Functions (all in `pg_catalog`) a plugin may call, written unqualified or
/// `pg_catalog.`-qualified: catalog introspection and pure functions over values. Names are
/// compared as the parser normalised them (case-sensitive).
pub const FUNCTIONS: &[&str] = &[
    // catalog introspection
    "col_description",
    "current_database",
    "current_schema",
    "current_user",
    "format_type",
    "has_any_column_privilege",
    "has_column_privilege",
    "has_database_privilege",
    "has_foreign_data_wrapper_privilege",
    "has_function_privilege",
    "has_language_privilege",
    "has_parameter_privilege",
    "has_schema_privilege",
    "has_sequence_privilege",
    "has_server_privilege",
    "has_table_privilege",
    "has_tablespace_privilege",
    "has_type_privilege",
    "obj_description",
    "pg_encoding_to_char",
    "pg_function_is_visible",
    "pg_get_constraintdef",
    "pg_get_expr",
    "pg_get_function_arguments",
    "pg_get_function_identity_arguments",
    "pg_get_function_result",
    "pg_get_functiondef",
    "pg_get_indexdef",
    "pg_get_partkeydef",
    "pg_get_serial_sequence",
    "pg_get_statisticsobjdef",
    "pg_get_triggerdef",
    "pg_get_userbyid",
    "pg_get_viewdef",
    "pg_has_role",
    "pg_indexes_size",
    "pg_relation_size",
    "pg_table_is_visible",
    "pg_table_size",
    "pg_total_relation_size",
    "pg_type_is_visible",
    "session_user",
    "shobj_description",
    "to_regclass",
    "to_regnamespace",
    "to_regtype",
    "version",
    // arrays
    "array_agg",
    "array_length",
    "array_position",
    "array_to_string",
    "cardinality",
    "generate_subscripts",
    "unnest",
    // aggregates and window functions
    "avg",
    "bool_and",
    "bool_or",
    "count",
    "every",
    "max",
    "min",
    "rank",
    "row_number",
    "string_agg",
    "sum",
    // JSON
    "json_agg",
    "json_array_elements",
    "json_array_elements_text",
    "json_build_array",
    "json_build_object",
    "json_object_agg",
    "jsonb_agg",
    "jsonb_array_elements_text",
    "jsonb_build_array",
    "jsonb_build_object",
    "row_to_json",
    "to_json",
    "to_jsonb",
    // strings
    "btrim",
    "char_length",
    "concat",
    "concat_ws",
    "format",
    "left",
    "length",
    "lower",
    "ltrim",
    "position",
    "quote_ident",
    "quote_literal",
    "regexp_match",
    "regexp_replace",
    "replace",
    "right",
    "rtrim",
    "similar_to_escape",
    "split_part",
    "starts_with",
    "strpos",
    "substr",
    "substring",
    "textregexeq",
    "upper",
];

/// The settings `current_setting('...')` may read (one string-constant argument): facts
/// about the server a connector needs to read names correctly, nothing about files or
/// sessions.
pub const SETTINGS: &[&str] = &[
    "integer_datetimes",
    "server_encoding",
    "server_version",
    "server_version_num",
    "standard_conforming_strings",
];

/// Types (in `pg_catalog`, by their internal names as the parser gives them) a value may be
/// cast to. `bpchar` only with a length (`char(n)`): a bare `pg_catalog.bpchar` re-renders as
/// `char`, which means `char(1)`.
pub const TYPES: &[&str] = &[
    "bool",
    "bpchar",
    "char",
    "float4",
    "float8",
    "int2",
    "int2vector",
    "int4",
    "int8",
    "json",
    "jsonb",
    "name",
    "numeric",
    "oid",
    "oidvector",
    "regclass",
    "regnamespace",
    "regproc",
    "regrole",
    "regtype",
    "text",
    "varchar",
];

/// Types whose arrays (`oid[]`, ...) a value may be cast to.
pub const ARRAY_TYPES: &[&str] = &["char", "int2", "int4", "int8", "name", "oid", "text"];

/// Types that take a length or precision (`varchar(64)`, `numeric(10,2)`, `char(1)`).
const TYPES_WITH_MODIFIERS: &[&str] = &["bpchar", "numeric", "varchar"];

/// Operator symbols, written bare or as `OPERATOR(pg_catalog.op)`.
pub const OPERATORS: &[&str] = &[
    "=", "<>", "!=", "<", ">", "<=", ">=", "+", "-", "*", "/", "%", "||", "~", "!~", "~*", "!~*",
    "~~", "!~~", "~~*", "!~~*", "@>", "<@", "&&",
];

const CATALOG: &str = "pg_catalog";
const INFORMATION_SCHEMA: &str = "information_schema";

type Checked = Result<(), Refusal>;

/// Checks one plugin statement; returns the statement the host must send instead
/// (re-rendered from the checked parse tree).
pub fn check(statement: &str, database: &str, grants: &DataGrants) -> Result<String, Refusal> {
    if statement.len() > MAX_STATEMENT_BYTES {
        return Err(construct(
            "statement size",
            format!("the statement is longer than {MAX_STATEMENT_BYTES} bytes"),
        ));
    }
    // libpg_query turns the parse tree into protobuf recursively, without a stack check: the
    // parser runs on a thread of its own whose stack fits the deepest tree a statement of at
    // most MAX_TOKENS tokens can produce, whatever thread the host calls from.
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("pg-statement-guard".into())
            .stack_size(PARSER_STACK_BYTES)
            .spawn_scoped(scope, || check_here(statement, database, grants))
            .map_err(|_| {
                Refusal::new(
                    RefusalKind::Unparsable,
                    "statement",
                    "the host could not start its SQL parser",
                )
            })?
            .join()
            .unwrap_or_else(|_| {
                Err(Refusal::new(
                    RefusalKind::Unparsable,
                    "statement",
                    "the PostgreSQL parser failed on the statement",
                ))
            })
    })
}

fn check_here(statement: &str, database: &str, grants: &DataGrants) -> Result<String, Refusal> {
    // Depth is at most the number of tokens, so bound that before parsing.
    let tokens = pg_query::scan(statement).map_err(unparsable)?.tokens.len();
    if tokens > MAX_TOKENS {
        return Err(construct(
            "statement size",
            format!("the statement has more than {MAX_TOKENS} tokens"),
        ));
    }
    let mut tree = parse_one(statement)?;
    Guard::new(database, grants).statement(&mut tree)?;
    let rendered = pg_query::deparse(&tree).map_err(|_| rerender_refusal())?;
    // The server parses the rendered text, not our tree: it must read back as the same,
    // checked tree.
    let mut again = parse_one(&rendered).map_err(|_| rerender_refusal())?;
    Guard::new(database, grants)
        .statement(&mut again)
        .map_err(|_| rerender_refusal())?;
    if shape(&tree) != shape(&again) {
        return Err(rerender_refusal());
    }
    Ok(rendered)
}

fn rerender_refusal() -> Refusal {
    Refusal::new(
        RefusalKind::Construct,
        "re-rendering",
        "the host could not re-render the statement so that it reads back as the statement it \
         checked; write it more plainly",
    )
}

/// The parse tree of exactly one statement.
fn parse_one(statement: &str) -> Result<protobuf::ParseResult, Refusal> {
    let tree = pg_query::parse(statement).map_err(unparsable)?.protobuf;
    match tree.stmts.len() {
        1 => Ok(tree),
        0 => Err(Refusal::new(
            RefusalKind::Unparsable,
            "statement",
            "the statement is empty",
        )),
        n => Err(Refusal::new(
            RefusalKind::MultipleStatements,
            format!("{n} statements"),
            "send exactly one statement per query",
        )),
    }
}

fn unparsable(e: pg_query::Error) -> Refusal {
    let reason = match e {
        pg_query::Error::Decode(_) => return too_deep(),
        pg_query::Error::Parse(message) | pg_query::Error::Scan(message) => parse_reason(&message),
        pg_query::Error::Conversion(_) => "it contains a NUL character".to_string(),
        _ => "syntax error".to_string(),
    };
    Refusal::new(
        RefusalKind::Unparsable,
        "statement",
        format!("the PostgreSQL parser could not read the statement ({reason})"),
    )
}

/// The parser's reason without the text it quotes (which may hold literal values).
fn parse_reason(message: &str) -> String {
    let head = message
        .split(" at or near")
        .next()
        .unwrap_or_default()
        .split(':')
        .next()
        .unwrap_or_default()
        .trim();
    if head.is_empty()
        || head.len() > 80
        || head.contains(['\'', '"', '$', '\\'])
        || head.chars().any(|c| c.is_control())
    {
        "syntax error".to_string()
    } else {
        head.to_string()
    }
}

fn too_deep() -> Refusal {
    Refusal::new(
        RefusalKind::Construct,
        "nesting depth",
        "the statement nests expressions or subqueries too deeply",
    )
}

/// The tree without source positions, for comparing two parses.
fn shape(tree: &protobuf::ParseResult) -> String {
    let text = format!("{:?}", tree.stmts.first().map(|s| &s.stmt));
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("location: ") {
        let (before, after) = rest.split_at(at + "location: ".len());
        out.push_str(before);
        rest = after.trim_start_matches(|c: char| c == '-' || c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

/// The parse-node type of `node` (`CopyStmt`, `XmlExpr`, ...), without any of its contents.
fn node_name(node: &N) -> String {
    use std::fmt::Write;
    /// Keeps what is written up to the first `(` and stops the formatting there.
    struct Head(String);
    impl Write for Head {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            match s.find('(') {
                Some(i) => {
                    self.0.push_str(&s[..i]);
                    Err(std::fmt::Error)
                }
                None => {
                    self.0.push_str(s);
                    if self.0.len() > 64 {
                        Err(std::fmt::Error)
                    } else {
                        Ok(())
                    }
                }
            }
        }
    }
    let mut head = Head(String::new());
    let _ = write!(head, "{node:?}");
    head.0.chars().take(64).collect()
}

fn construct(object: impl Into<String>, detail: impl Into<String>) -> Refusal {
    Refusal::new(RefusalKind::Construct, object, detail)
}

fn unknown_node(node: &N) -> Refusal {
    let name = node_name(node);
    construct(
        name.clone(),
        format!("`{name}` is not among the constructs the host allows in a catalog query"),
    )
}

fn empty_node() -> Refusal {
    construct("empty node", "the statement has an empty parse node")
}

/// The names of a list of `String` nodes (qualified names, column lists).
fn strings(list: &[Node]) -> Result<Vec<&str>, Refusal> {
    list.iter()
        .map(|n| match n.node.as_ref() {
            Some(N::String(s)) => Ok(s.sval.as_str()),
            Some(other) => Err(unknown_node(other)),
            None => Err(empty_node()),
        })
        .collect()
}

fn string_node(s: &str) -> Node {
    Node {
        node: Some(N::String(protobuf::String {
            sval: s.to_string(),
        })),
    }
}

/// Walks one statement's tree, refusing anything not allowed, qualifying catalog names.
struct Guard<'a> {
    database: &'a str,
    grants: &'a DataGrants,
    nodes: usize,
    /// Names of the CTEs in scope, innermost last.
    ctes: Vec<String>,
}

impl<'a> Guard<'a> {
    fn new(database: &'a str, grants: &'a DataGrants) -> Self {
        Guard {
            database,
            grants,
            nodes: 0,
            ctes: Vec::new(),
        }
    }

    /// Counts a node and bounds the depth.
    fn enter(&mut self, depth: usize) -> Checked {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(construct(
                "statement size",
                format!("the statement has more than {MAX_NODES} parse nodes"),
            ));
        }
        if depth > MAX_DEPTH {
            return Err(too_deep());
        }
        Ok(())
    }

    fn statement(&mut self, tree: &mut protobuf::ParseResult) -> Checked {
        let node = tree
            .stmts
            .first_mut()
            .and_then(|raw| raw.stmt.as_deref_mut())
            .and_then(|n| n.node.as_mut())
            .ok_or_else(empty_node)?;
        match node {
            N::SelectStmt(select) => self.select(select, 1),
            other => {
                let name = node_name(other);
                Err(Refusal::new(
                    RefusalKind::NotARead,
                    name.clone(),
                    format!(
                        "only a SELECT query may be sent, not `{name}` (no SET, SHOW, COPY, \
                         CALL, DO, EXPLAIN, transaction control, DDL or DML)"
                    ),
                ))
            }
        }
    }

    fn select(&mut self, s: &mut protobuf::SelectStmt, depth: usize) -> Checked {
        self.enter(depth)?;
        if s.into_clause.is_some() {
            return Err(construct(
                "SELECT INTO",
                "SELECT INTO creates a table; send a plain SELECT",
            ));
        }
        if let Some(lock) = s.locking_clause.first() {
            let name = match lock.node.as_ref() {
                Some(N::LockingClause(l)) => match LockClauseStrength::try_from(l.strength) {
                    Ok(LockClauseStrength::LcsForkeyshare) => "FOR KEY SHARE",
                    Ok(LockClauseStrength::LcsForshare) => "FOR SHARE",
                    Ok(LockClauseStrength::LcsFornokeyupdate) => "FOR NO KEY UPDATE",
                    _ => "FOR UPDATE",
                },
                _ => "FOR UPDATE",
            };
            return Err(construct(
                name,
                "a locking clause (FOR UPDATE/SHARE) takes row locks; send a plain SELECT",
            ));
        }
        let mark = self.ctes.len();
        let checked = self.select_body(s, depth);
        self.ctes.truncate(mark);
        checked
    }

    fn select_body(&mut self, s: &mut protobuf::SelectStmt, depth: usize) -> Checked {
        let d = depth + 1;
        if let Some(with) = s.with_clause.as_mut() {
            self.with(with, d)?;
        }
        match SetOperation::try_from(s.op) {
            Ok(SetOperation::SetopNone) => {
                for n in &mut s.distinct_clause {
                    // Plain DISTINCT is one empty node; DISTINCT ON lists expressions.
                    if n.node.is_some() {
                        self.expr(n, d)?;
                    }
                }
                for n in &mut s.target_list {
                    self.enter(d)?;
                    match n.node.as_mut() {
                        Some(N::ResTarget(t)) if t.indirection.is_empty() => match t.val.as_mut() {
                            Some(v) => self.expr(v, d + 1)?,
                            None => return Err(empty_node()),
                        },
                        Some(other) => return Err(unknown_node(other)),
                        None => return Err(empty_node()),
                    }
                }
                for n in &mut s.from_clause {
                    self.range_entry(n, d)?;
                }
                if let Some(w) = s.where_clause.as_mut() {
                    self.expr(w, d)?;
                }
                for n in &mut s.group_clause {
                    self.group_item(n, d)?;
                }
                if let Some(h) = s.having_clause.as_mut() {
                    self.expr(h, d)?;
                }
                for n in &mut s.window_clause {
                    self.enter(d)?;
                    match n.node.as_mut() {
                        Some(N::WindowDef(w)) => self.window(w, d + 1)?,
                        Some(other) => return Err(unknown_node(other)),
                        None => return Err(empty_node()),
                    }
                }
                for n in &mut s.values_lists {
                    self.enter(d)?;
                    match n.node.as_mut() {
                        Some(N::List(row)) => {
                            for v in &mut row.items {
                                self.expr(v, d + 1)?;
                            }
                        }
                        Some(other) => return Err(unknown_node(other)),
                        None => return Err(empty_node()),
                    }
                }
            }
            Ok(
                SetOperation::SetopUnion | SetOperation::SetopIntersect | SetOperation::SetopExcept,
            ) => {
                let plain = s.distinct_clause.is_empty()
                    && s.target_list.is_empty()
                    && s.from_clause.is_empty()
                    && s.where_clause.is_none()
                    && s.group_clause.is_empty()
                    && s.having_clause.is_none()
                    && s.window_clause.is_empty()
                    && s.values_lists.is_empty();
                match (s.larg.as_mut(), s.rarg.as_mut(), plain) {
                    (Some(l), Some(r), true) => {
                        self.select(l, d)?;
                        self.select(r, d)?;
                    }
                    _ => return Err(construct("set operation", "malformed set operation")),
                }
            }
            _ => return Err(construct("set operation", "unknown set operation")),
        }
        for n in &mut s.sort_clause {
            self.sort_by(n, d)?;
        }
        if let Some(n) = s.limit_offset.as_mut() {
            self.expr(n, d)?;
        }
        if let Some(n) = s.limit_count.as_mut() {
            self.expr(n, d)?;
        }
        Ok(())
    }

    /// A WITH clause: its CTEs become visible to the rest of the query (and, with RECURSIVE,
    /// to every CTE of the clause; otherwise each sees the ones before it).
    fn with(&mut self, with: &mut protobuf::WithClause, depth: usize) -> Checked {
        self.enter(depth)?;
        let d = depth + 1;
        if with.recursive {
            for c in &with.ctes {
                if let Some(N::CommonTableExpr(cte)) = c.node.as_ref() {
                    self.ctes.push(cte.ctename.clone());
                }
            }
        }
        for c in &mut with.ctes {
            self.enter(d)?;
            let cte = match c.node.as_mut() {
                Some(N::CommonTableExpr(cte)) => cte,
                Some(other) => return Err(unknown_node(other)),
                None => return Err(empty_node()),
            };
            if cte.search_clause.is_some() || cte.cycle_clause.is_some() {
                return Err(construct(
                    "CTE SEARCH/CYCLE",
                    "SEARCH and CYCLE clauses of a CTE are not allowed",
                ));
            }
            strings(&cte.aliascolnames)?;
            if !(cte.ctecolnames.is_empty()
                && cte.ctecoltypes.is_empty()
                && cte.ctecoltypmods.is_empty()
                && cte.ctecolcollations.is_empty())
            {
                return Err(construct(
                    "CommonTableExpr",
                    "unexpected analysed CTE fields",
                ));
            }
            match cte.ctequery.as_deref_mut().and_then(|q| q.node.as_mut()) {
                Some(N::SelectStmt(q)) => self.select(q, d + 1)?,
                Some(
                    other @ (N::InsertStmt(_)
                    | N::UpdateStmt(_)
                    | N::DeleteStmt(_)
                    | N::MergeStmt(_)),
                ) => {
                    let name = node_name(other);
                    return Err(construct(
                        format!("WITH {name}"),
                        "a data-modifying statement inside WITH is not allowed; every CTE must \
                         be a plain SELECT",
                    ));
                }
                Some(other) => return Err(unknown_node(other)),
                None => return Err(empty_node()),
            }
            if !with.recursive {
                self.ctes.push(cte.ctename.clone());
            }
        }
        Ok(())
    }

    /// An item of a FROM clause.
    fn range_entry(&mut self, n: &mut Node, depth: usize) -> Checked {
        self.enter(depth)?;
        let d = depth + 1;
        match n.node.as_mut() {
            Some(N::RangeVar(rv)) => self.relation(rv),
            Some(N::RangeSubselect(sub)) => {
                alias(sub.alias.as_ref())?;
                match sub.subquery.as_deref_mut().and_then(|q| q.node.as_mut()) {
                    Some(N::SelectStmt(q)) => self.select(q, d),
                    Some(other) => Err(unknown_node(other)),
                    None => Err(empty_node()),
                }
            }
            Some(N::RangeFunction(rf)) => {
                alias(rf.alias.as_ref())?;
                if !rf.coldeflist.is_empty() {
                    return Err(construct(
                        "column definition list",
                        "a column definition list on a function in FROM is not allowed",
                    ));
                }
                for f in &mut rf.functions {
                    self.enter(d)?;
                    let items = match f.node.as_mut() {
                        Some(N::List(l)) => &mut l.items,
                        Some(other) => return Err(unknown_node(other)),
                        None => return Err(empty_node()),
                    };
                    let mut items = items.iter_mut();
                    match items.next() {
                        Some(call) => self.expr(call, d + 1)?,
                        None => return Err(empty_node()),
                    }
                    for rest in items {
                        match rest.node.as_ref() {
                            None => {}
                            Some(N::List(l)) if l.items.is_empty() => {}
                            Some(_) => {
                                return Err(construct(
                                    "column definition list",
                                    "a column definition list on a function in FROM is not \
                                     allowed",
                                ))
                            }
                        }
                    }
                }
                Ok(())
            }
            Some(N::JoinExpr(j)) => {
                alias(j.alias.as_ref())?;
                alias(j.join_using_alias.as_ref())?;
                strings(&j.using_clause)?;
                match (j.larg.as_deref_mut(), j.rarg.as_deref_mut()) {
                    (Some(l), Some(r)) => {
                        self.range_entry(l, d)?;
                        self.range_entry(r, d)?;
                    }
                    _ => return Err(empty_node()),
                }
                if let Some(q) = j.quals.as_deref_mut() {
                    self.expr(q, d)?;
                }
                Ok(())
            }
            Some(N::RangeTableSample(_)) => Err(construct(
                "TABLESAMPLE",
                "TABLESAMPLE reads table data; it is not allowed",
            )),
            Some(other) => Err(unknown_node(other)),
            None => Err(empty_node()),
        }
    }

    /// A relation named in FROM: a CTE in scope, an allowed catalog relation, or a granted
    /// data relation. Unqualified catalog names are qualified with `pg_catalog`.
    fn relation(&mut self, rv: &mut protobuf::RangeVar) -> Checked {
        alias(rv.alias.as_ref())?;
        let rel = rv.relname.clone();
        if !rv.catalogname.is_empty() && rv.catalogname != self.database {
            return Err(Refusal::new(
                RefusalKind::Relation,
                format!("{}.{}.{}", rv.catalogname, rv.schemaname, rel),
                format!(
                    "`{}.{}.{}` names another database; a query reads only the database of \
                     its connection (`{}`)",
                    rv.catalogname, rv.schemaname, rel, self.database
                ),
            ));
        }
        match rv.schemaname.as_str() {
            "" => {
                if self.ctes.contains(&rel) {
                    Ok(())
                } else if PG_CATALOG_RELATIONS.contains(&rel.as_str()) {
                    rv.schemaname = CATALOG.to_string();
                    Ok(())
                } else if rel.starts_with("pg_") {
                    Err(catalog_refusal(CATALOG, &rel))
                } else {
                    Err(Refusal::new(
                        RefusalKind::Relation,
                        rel.clone(),
                        format!(
                            "`{rel}` is neither an allowed catalog relation nor a CTE in scope: \
                             qualify it with its schema and grant it in [source.sql] \
                             allow_relations (`{}.<schema>.{rel}`)",
                            self.database
                        ),
                    ))
                }
            }
            CATALOG if PG_CATALOG_RELATIONS.contains(&rel.as_str()) => Ok(()),
            INFORMATION_SCHEMA if INFORMATION_SCHEMA_VIEWS.contains(&rel.as_str()) => Ok(()),
            schema @ (CATALOG | INFORMATION_SCHEMA) => Err(catalog_refusal(schema, &rel)),
            schema if schema.starts_with("pg_") => Err(Refusal::new(
                RefusalKind::Relation,
                format!("{schema}.{rel}"),
                format!(
                    "`{schema}` is a system schema (TOAST or temporary data); its relations \
                     cannot be read or granted"
                ),
            )),
            schema => {
                if self.grants.allows(self.database, schema, &rel) {
                    Ok(())
                } else {
                    Err(Refusal::new(
                        RefusalKind::Relation,
                        format!("{schema}.{rel}"),
                        format!(
                            "`{schema}.{rel}` is a data relation the workflow does not grant: \
                             add `{}.{schema}.{rel}` to [source.sql] allow_relations",
                            self.database
                        ),
                    ))
                }
            }
        }
    }

    fn group_item(&mut self, n: &mut Node, depth: usize) -> Checked {
        match n.node.as_mut() {
            Some(N::GroupingSet(g)) => {
                self.enter(depth)?;
                for c in &mut g.content {
                    self.group_item(c, depth + 1)?;
                }
                Ok(())
            }
            Some(N::List(l)) => {
                self.enter(depth)?;
                for c in &mut l.items {
                    self.expr(c, depth + 1)?;
                }
                Ok(())
            }
            _ => self.expr(n, depth),
        }
    }

    fn sort_by(&mut self, n: &mut Node, depth: usize) -> Checked {
        self.enter(depth)?;
        match n.node.as_mut() {
            Some(N::SortBy(s)) => {
                if !s.use_op.is_empty() {
                    operator(&s.use_op)?;
                }
                match s.node.as_deref_mut() {
                    Some(e) => self.expr(e, depth + 1),
                    None => Err(empty_node()),
                }
            }
            Some(other) => Err(unknown_node(other)),
            None => Err(empty_node()),
        }
    }

    fn window(&mut self, w: &mut protobuf::WindowDef, depth: usize) -> Checked {
        for p in &mut w.partition_clause {
            self.expr(p, depth)?;
        }
        for o in &mut w.order_clause {
            self.sort_by(o, depth)?;
        }
        if let Some(e) = w.start_offset.as_deref_mut() {
            self.expr(e, depth)?;
        }
        if let Some(e) = w.end_offset.as_deref_mut() {
            self.expr(e, depth)?;
        }
        Ok(())
    }

    fn exprs(&mut self, list: &mut [Node], depth: usize) -> Checked {
        for n in list {
            self.expr(n, depth)?;
        }
        Ok(())
    }

    fn opt_expr(&mut self, n: Option<&mut Node>, depth: usize) -> Checked {
        match n {
            Some(n) => self.expr(n, depth),
            None => Ok(()),
        }
    }

    /// An expression. Every node type not matched here is refused.
    fn expr(&mut self, n: &mut Node, depth: usize) -> Checked {
        self.enter(depth)?;
        let d = depth + 1;
        let node = n.node.as_mut().ok_or_else(empty_node)?;
        match node {
            N::AConst(_) | N::ParamRef(_) => Ok(()),
            N::ColumnRef(c) => {
                for f in &c.fields {
                    match f.node.as_ref() {
                        Some(N::String(_) | N::AStar(_)) => {}
                        Some(other) => return Err(unknown_node(other)),
                        None => return Err(empty_node()),
                    }
                }
                Ok(())
            }
            N::TypeCast(c) => {
                match c.type_name.as_mut() {
                    Some(t) => type_name(t)?,
                    None => return Err(empty_node()),
                }
                self.opt_expr(c.arg.as_deref_mut(), d)
            }
            N::AExpr(e) => {
                match AExprKind::try_from(e.kind) {
                    Ok(
                        AExprKind::AexprOp
                        | AExprKind::AexprOpAny
                        | AExprKind::AexprOpAll
                        | AExprKind::AexprDistinct
                        | AExprKind::AexprNotDistinct
                        | AExprKind::AexprNullif
                        | AExprKind::AexprIn
                        | AExprKind::AexprLike
                        | AExprKind::AexprIlike
                        | AExprKind::AexprSimilar,
                    ) => operator(&e.name)?,
                    Ok(
                        AExprKind::AexprBetween
                        | AExprKind::AexprNotBetween
                        | AExprKind::AexprBetweenSym
                        | AExprKind::AexprNotBetweenSym,
                    ) => match strings(&e.name)?.as_slice() {
                        ["BETWEEN"
                        | "NOT BETWEEN"
                        | "BETWEEN SYMMETRIC"
                        | "NOT BETWEEN SYMMETRIC"] => {}
                        _ => return Err(construct("BETWEEN", "malformed BETWEEN")),
                    },
                    _ => return Err(construct("A_Expr", "unknown kind of operator expression")),
                }
                self.opt_expr(e.lexpr.as_deref_mut(), d)?;
                self.opt_expr(e.rexpr.as_deref_mut(), d)
            }
            N::BoolExpr(b) if b.xpr.is_none() => self.exprs(&mut b.args, d),
            N::NullTest(t) if t.xpr.is_none() => self.opt_expr(t.arg.as_deref_mut(), d),
            N::BooleanTest(t) if t.xpr.is_none() => self.opt_expr(t.arg.as_deref_mut(), d),
            N::CaseExpr(c) if c.xpr.is_none() => {
                self.opt_expr(c.arg.as_deref_mut(), d)?;
                for w in &mut c.args {
                    self.enter(d)?;
                    match w.node.as_mut() {
                        Some(N::CaseWhen(w)) if w.xpr.is_none() => {
                            self.opt_expr(w.expr.as_deref_mut(), d + 1)?;
                            self.opt_expr(w.result.as_deref_mut(), d + 1)?;
                        }
                        Some(other) => return Err(unknown_node(other)),
                        None => return Err(empty_node()),
                    }
                }
                self.opt_expr(c.defresult.as_deref_mut(), d)
            }
            N::CoalesceExpr(c) if c.xpr.is_none() => self.exprs(&mut c.args, d),
            N::MinMaxExpr(m) if m.xpr.is_none() => self.exprs(&mut m.args, d),
            N::SubLink(s) if s.xpr.is_none() => {
                match SubLinkType::try_from(s.sub_link_type) {
                    Ok(
                        SubLinkType::ExistsSublink
                        | SubLinkType::AllSublink
                        | SubLinkType::AnySublink
                        | SubLinkType::RowcompareSublink
                        | SubLinkType::ExprSublink
                        | SubLinkType::ArraySublink,
                    ) => {}
                    _ => return Err(construct("SubLink", "unknown kind of subquery")),
                }
                if !s.oper_name.is_empty() {
                    operator(&s.oper_name)?;
                }
                self.opt_expr(s.testexpr.as_deref_mut(), d)?;
                match s.subselect.as_deref_mut().and_then(|q| q.node.as_mut()) {
                    Some(N::SelectStmt(q)) => self.select(q, d),
                    Some(other) => Err(unknown_node(other)),
                    None => Err(empty_node()),
                }
            }
            N::FuncCall(f) => self.func_call(f, d),
            N::AIndirection(i) => {
                self.opt_expr(i.arg.as_deref_mut(), d)?;
                for step in &mut i.indirection {
                    self.enter(d)?;
                    match step.node.as_mut() {
                        Some(N::String(_) | N::AStar(_)) => {}
                        Some(N::AIndices(ix)) => {
                            self.opt_expr(ix.lidx.as_deref_mut(), d + 1)?;
                            self.opt_expr(ix.uidx.as_deref_mut(), d + 1)?;
                        }
                        Some(other) => return Err(unknown_node(other)),
                        None => return Err(empty_node()),
                    }
                }
                Ok(())
            }
            N::AArrayExpr(a) => self.exprs(&mut a.elements, d),
            N::RowExpr(r) if r.xpr.is_none() => {
                strings(&r.colnames)?;
                self.exprs(&mut r.args, d)
            }
            N::List(l) => self.exprs(&mut l.items, d),
            N::SqlvalueFunction(f) if f.xpr.is_none() => match SqlValueFunctionOp::try_from(f.op) {
                Ok(
                    SqlValueFunctionOp::SvfopCurrentUser
                    | SqlValueFunctionOp::SvfopCurrentRole
                    | SqlValueFunctionOp::SvfopUser
                    | SqlValueFunctionOp::SvfopSessionUser
                    | SqlValueFunctionOp::SvfopCurrentSchema
                    | SqlValueFunctionOp::SvfopCurrentCatalog,
                ) => Ok(()),
                _ => Err(Refusal::new(
                    RefusalKind::Function,
                    "SQL value function",
                    "only CURRENT_USER, SESSION_USER, CURRENT_ROLE, USER, CURRENT_SCHEMA \
                         and CURRENT_CATALOG are allowed",
                )),
            },
            N::CollateClause(c) => {
                match strings(&c.collname)?.as_slice() {
                    [_] | [CATALOG, _] => {}
                    _ => {
                        return Err(construct(
                            "COLLATE",
                            "only collations of pg_catalog are allowed",
                        ))
                    }
                }
                self.opt_expr(c.arg.as_deref_mut(), d)
            }
            other => Err(unknown_node(other)),
        }
    }

    /// A function call: an allow-listed function of `pg_catalog`, then qualified with it.
    fn func_call(&mut self, f: &mut FuncCall, depth: usize) -> Checked {
        let name = {
            let parts = strings(&f.funcname)?;
            match parts.as_slice() {
                [name] | [CATALOG, name] => name.to_string(),
                _ => {
                    let written = parts.join(".");
                    return Err(Refusal::new(
                        RefusalKind::Function,
                        written.clone(),
                        format!(
                            "`{written}` is not a pg_catalog function; only allow-listed \
                             pg_catalog functions may be called"
                        ),
                    ));
                }
            }
        };
        if name == "current_setting" {
            let allowed = f.args.len() == 1
                && f.agg_order.is_empty()
                && f.agg_filter.is_none()
                && f.over.is_none()
                && !f.agg_star
                && !f.agg_distinct
                && !f.func_variadic
                && matches!(
                    f.args[0].node.as_ref(),
                    Some(N::AConst(protobuf::AConst {
                        val: Some(a_const::Val::Sval(s)),
                        ..
                    })) if SETTINGS.contains(&s.sval.as_str())
                );
            if !allowed {
                return Err(Refusal::new(
                    RefusalKind::Function,
                    "current_setting",
                    format!(
                        "current_setting may read only one of these settings, named by one \
                         string constant: {}",
                        SETTINGS.join(", ")
                    ),
                ));
            }
        } else if !FUNCTIONS.contains(&name.as_str()) {
            return Err(Refusal::new(
                RefusalKind::Function,
                name.clone(),
                format!(
                    "function `{name}` is not on the host's allow-list of catalog and pure \
                     functions"
                ),
            ));
        }
        self.exprs(&mut f.args, depth)?;
        for o in &mut f.agg_order {
            self.sort_by(o, depth)?;
        }
        self.opt_expr(f.agg_filter.as_deref_mut(), depth)?;
        if let Some(w) = f.over.as_deref_mut() {
            self.enter(depth)?;
            self.window(w, depth + 1)?;
        }
        if f.funcname.len() == 1 {
            f.funcname.insert(0, string_node(CATALOG));
        }
        Ok(())
    }
}

/// A catalog relation that is not on the allow-list.
fn catalog_refusal(schema: &str, rel: &str) -> Refusal {
    Refusal::new(
        RefusalKind::Relation,
        format!("{schema}.{rel}"),
        format!(
            "`{schema}.{rel}` is not an allowed catalog relation (it exposes data values, \
             secrets, settings or other sessions, or is not a metadata catalog); catalog \
             relations cannot be granted"
        ),
    )
}

/// Column aliases are names only.
fn alias(a: Option<&protobuf::Alias>) -> Checked {
    if let Some(a) = a {
        strings(&a.colnames)?;
    }
    Ok(())
}

/// An operator name: an allow-listed symbol, bare or qualified with `pg_catalog`.
fn operator(name: &[Node]) -> Checked {
    let parts = strings(name)?;
    match parts.as_slice() {
        [op] | [CATALOG, op] if OPERATORS.contains(op) => Ok(()),
        _ => {
            let written = match parts.as_slice() {
                [op] => op.to_string(),
                _ => format!("OPERATOR({})", parts.join(".")),
            };
            Err(Refusal::new(
                RefusalKind::Function,
                written.clone(),
                format!(
                    "operator `{written}` is not allowed; allowed are the pg_catalog operators {}",
                    OPERATORS.join(" ")
                ),
            ))
        }
    }
}

/// A cast's target type: an allow-listed pg_catalog type, then qualified with it.
fn type_name(t: &mut TypeName) -> Checked {
    let (name, written) = {
        let parts = strings(&t.names)?;
        let written = parts.join(".");
        match parts.as_slice() {
            [name] | [CATALOG, name] => (name.to_string(), written),
            _ => return Err(type_refusal(&written)),
        }
    };
    let allowed = TYPES.contains(&name.as_str())
        && t.type_oid == 0
        && !t.setof
        && !t.pct_type
        && (t.array_bounds.is_empty() || ARRAY_TYPES.contains(&name.as_str()))
        && t.array_bounds
            .iter()
            .all(|b| matches!(b.node, Some(N::Integer(_))))
        && (t.typmods.is_empty() || TYPES_WITH_MODIFIERS.contains(&name.as_str()))
        && t.typmods.iter().all(|m| {
            matches!(
                m.node.as_ref(),
                Some(N::AConst(protobuf::AConst {
                    val: Some(a_const::Val::Ival(_)),
                    ..
                }))
            )
        })
        && (name != "bpchar" || !t.typmods.is_empty());
    if !allowed {
        return Err(type_refusal(&written));
    }
    if t.names.len() == 1 {
        t.names.insert(0, string_node(CATALOG));
    }
    Ok(())
}

fn type_refusal(written: &str) -> Refusal {
    Refusal::new(
        RefusalKind::Construct,
        written,
        format!(
            "a cast to `{written}` is not allowed; allowed are the pg_catalog types {} \
             (arrays of {})",
            TYPES.join(", "),
            ARRAY_TYPES.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(sql: &str) -> String {
        match check(sql, "analytics", &DataGrants::none()) {
            Ok(out) => {
                // The output reads back and passes unchanged.
                assert_eq!(
                    check(&out, "analytics", &DataGrants::none()).as_deref(),
                    Ok(out.as_str()),
                    "{sql}"
                );
                out
            }
            Err(e) => panic!("refused {sql}\n  {e}"),
        }
    }

    fn refused(sql: &str) -> Refusal {
        match check(sql, "analytics", &DataGrants::none()) {
            Ok(out) => panic!("passed {sql}\n  as {out}"),
            Err(e) => e,
        }
    }

    #[track_caller]
    fn refuses(sql: &str, kind: RefusalKind, object: &str) {
        let e = refused(sql);
        assert_eq!((e.kind, e.object.as_str()), (kind, object), "{sql}: {e}");
    }

    // -----------------------------------------------------------------------------------
    // The real connector's statements (plugins/postgres/src/lib.rs), copied literally; the
    // `pushdown` switch builds the variants without the pushed-down exclude conditions.

    /// User schemas only: `pg_catalog`, `pg_toast`, `pg_temp_*` and every other `pg_` schema
    /// (reserved for the system) and `information_schema` are skipped.
    const USER_SCHEMA: &str = "n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'";

    struct Queries {
        schemas: String,
        relations: String,
        sequences: String,
        functions: String,
        columns: String,
        constraints: String,
        indexes: String,
    }

    impl Queries {
        fn new(pushdown: bool) -> Self {
            let not_excluded = |schema: &str, name: Option<&str>| {
                if pushdown {
                    not_excluded(schema, name)
                } else {
                    "TRUE".to_string()
                }
            };
            let rel = not_excluded("n.nspname", Some("c.relname"));
            Queries {
                schemas: format!(
                    "SELECT n.nspname AS schema_name, \
                     pg_catalog.obj_description(n.oid, 'pg_namespace') AS comment, \
                     pg_catalog.pg_get_userbyid(n.nspowner) AS owner \
                     FROM pg_catalog.pg_namespace n \
                     WHERE {USER_SCHEMA} AND {} ORDER BY 1",
                    not_excluded("n.nspname", None)
                ),
                relations: format!(
                    "SELECT n.nspname AS schema_name, c.relname AS name, c.relkind::text AS kind, \
                     pg_catalog.obj_description(c.oid, 'pg_class') AS comment, \
                     CASE WHEN c.relkind IN ('r', 'p', 'f', 'm') AND c.reltuples >= 0 \
                       THEN c.reltuples::int8 END AS row_count_estimate, \
                     CASE WHEN c.relkind = 'p' THEN pg_catalog.pg_get_partkeydef(c.oid) END AS partition_key, \
                     pn.nspname AS parent_schema, pc.relname AS parent_name, \
                     CASE WHEN c.relispartition THEN pg_catalog.pg_get_expr(c.relpartbound, c.oid) END AS partition_bound, \
                     CASE WHEN c.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(c.oid) END AS view_definition, \
                     pg_catalog.pg_get_userbyid(c.relowner) AS owner \
                     FROM pg_catalog.pg_class c \
                     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                     LEFT JOIN pg_catalog.pg_inherits i ON c.relispartition AND i.inhrelid = c.oid \
                     LEFT JOIN pg_catalog.pg_class pc ON pc.oid = i.inhparent \
                     LEFT JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace \
                     WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm') AND {USER_SCHEMA} AND {rel} \
                     ORDER BY 1, 2"
                ),
                sequences: format!(
                    "SELECT n.nspname AS schema_name, c.relname AS name, \
                     pg_catalog.format_type(s.seqtypid, NULL) AS data_type, \
                     s.seqstart AS start_value, s.seqincrement AS increment, \
                     s.seqmin AS min_value, s.seqmax AS max_value, s.seqcycle AS cycle, \
                     pg_catalog.obj_description(c.oid, 'pg_class') AS comment \
                     FROM pg_catalog.pg_sequence s \
                     JOIN pg_catalog.pg_class c ON c.oid = s.seqrelid \
                     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                     WHERE {USER_SCHEMA} AND {rel} \
                     AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend dep \
                       WHERE dep.classid = 'pg_catalog.pg_class'::pg_catalog.regclass \
                       AND dep.objid = c.oid AND dep.deptype = 'i') \
                     ORDER BY 1, 2"
                ),
                functions: format!(
                    "SELECT f.* FROM (SELECT n.nspname AS schema_name, p.proname AS name, \
                     p.proname || '(' || COALESCE((SELECT pg_catalog.string_agg(pg_catalog.format_type(u.t, NULL), ', ' ORDER BY u.o) \
                       FROM pg_catalog.unnest(p.proargtypes::oid[]) WITH ORDINALITY AS u(t, o)), '') || ')' AS signature, \
                     pg_catalog.pg_get_function_arguments(p.oid) AS arguments, \
                     p.prokind::text AS kind, l.lanname AS language, \
                     CASE WHEN p.prokind <> 'p' THEN pg_catalog.pg_get_function_result(p.oid) END AS return_type, \
                     pg_catalog.obj_description(p.oid, 'pg_proc') AS comment \
                     FROM pg_catalog.pg_proc p \
                     JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
                     JOIN pg_catalog.pg_language l ON l.oid = p.prolang \
                     WHERE {USER_SCHEMA}) AS f \
                     WHERE {} ORDER BY 1, 3",
                    not_excluded("f.schema_name", Some("f.signature"))
                ),
                columns: format!(
                    "SELECT n.nspname AS schema_name, c.relname AS table_name, a.attname AS name, \
                     a.attnum::int8 AS ordinal, \
                     pg_catalog.format_type(a.atttypid, a.atttypmod) AS data_type, \
                     NOT a.attnotnull AS nullable, \
                     CASE WHEN a.attgenerated = '' THEN pg_catalog.pg_get_expr(d.adbin, d.adrelid) END AS column_default, \
                     CASE WHEN a.attgenerated <> '' THEN pg_catalog.pg_get_expr(d.adbin, d.adrelid) END AS generation_expression, \
                     CASE a.attidentity WHEN 'a' THEN 'ALWAYS' WHEN 'd' THEN 'BY DEFAULT' END AS identity, \
                     pg_catalog.col_description(c.oid, a.attnum) AS comment, \
                     pg_catalog.array_position(pk.conkey, a.attnum)::int8 AS primary_key_position \
                     FROM pg_catalog.pg_attribute a \
                     JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
                     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                     LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
                     LEFT JOIN pg_catalog.pg_constraint pk ON pk.conrelid = c.oid AND pk.contype = 'p' \
                     WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'f', 'v', 'm') \
                     AND {USER_SCHEMA} AND {rel} \
                     ORDER BY 1, 2, a.attnum"
                ),
                constraints: format!(
                    "SELECT n.nspname AS schema_name, c.relname AS table_name, con.conname AS name, \
                     con.contype::text AS kind, \
                     (SELECT pg_catalog.json_agg(a.attname ORDER BY k.ord) \
                       FROM pg_catalog.unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord) \
                       JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum)::text AS columns, \
                     rn.nspname AS referenced_schema, rc.relname AS referenced_table, \
                     (SELECT pg_catalog.json_agg(a.attname ORDER BY k.ord) \
                       FROM pg_catalog.unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord) \
                       JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum)::text AS referenced_columns, \
                     {} AS on_update, {} AS on_delete, \
                     CASE con.confmatchtype WHEN 'f' THEN 'FULL' WHEN 'p' THEN 'PARTIAL' WHEN 's' THEN 'SIMPLE' END AS match_type, \
                     pg_catalog.pg_get_constraintdef(con.oid) AS definition, \
                     con.condeferrable AS deferrable, con.convalidated AS validated \
                     FROM pg_catalog.pg_constraint con \
                     JOIN pg_catalog.pg_class c ON c.oid = con.conrelid \
                     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                     LEFT JOIN pg_catalog.pg_class rc ON rc.oid = con.confrelid \
                     LEFT JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace \
                     WHERE con.contype IN ('p', 'u', 'f', 'c') AND {USER_SCHEMA} AND {rel} \
                     AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint parent \
                       WHERE parent.oid = con.conparentid AND parent.conrelid = con.conrelid) \
                     ORDER BY 1, 2, 3",
                    fk_action("con.confupdtype"),
                    fk_action("con.confdeltype"),
                ),
                indexes: format!(
                    "SELECT n.nspname AS schema_name, c.relname AS table_name, ic.relname AS name, \
                     i.indisunique AS is_unique, i.indisprimary AS is_primary, \
                     (SELECT pg_catalog.json_agg(CASE WHEN k.attnum <> 0 THEN a.attname::text \
                         ELSE pg_catalog.pg_get_indexdef(i.indexrelid, k.ord::int4, true) END ORDER BY k.ord) \
                       FROM pg_catalog.unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
                       LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                       WHERE k.ord <= i.indnkeyatts)::text AS columns, \
                     (SELECT pg_catalog.json_agg(a.attname ORDER BY k.ord) \
                       FROM pg_catalog.unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
                       JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                       WHERE k.ord > i.indnkeyatts)::text AS include_columns, \
                     am.amname AS method, \
                     pg_catalog.pg_get_expr(i.indpred, i.indrelid) AS predicate, \
                     pg_catalog.pg_get_indexdef(i.indexrelid) AS definition \
                     FROM pg_catalog.pg_index i \
                     JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid \
                     JOIN pg_catalog.pg_class c ON c.oid = i.indrelid \
                     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                     JOIN pg_catalog.pg_am am ON am.oid = ic.relam \
                     WHERE c.relkind IN ('r', 'p', 'm') AND {USER_SCHEMA} AND {rel} \
                     ORDER BY 1, 2, 3"
                ),
            }
        }
    }

    /// The referential action names information_schema uses.
    fn fk_action(column: &str) -> String {
        format!(
            "CASE {column} WHEN 'a' THEN 'NO ACTION' WHEN 'r' THEN 'RESTRICT' WHEN 'c' THEN 'CASCADE' \
             WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT' END"
        )
    }

    fn segment(expr: &str) -> String {
        format!(
            "(CASE WHEN pg_catalog.strpos({expr}::text, '.') > 0 OR pg_catalog.strpos({expr}::text, '\"') > 0 \
             THEN '\"' || pg_catalog.replace({expr}::text, '\"', '\"\"') || '\"' ELSE {expr}::text END)"
        )
    }

    fn not_excluded(schema: &str, name: Option<&str>) -> String {
        let db = segment("pg_catalog.current_database()");
        let schema_name = format!("{db} || '.' || {}", segment(schema));
        let mut tests = vec![format!("{db} ~ x.re"), format!("({schema_name}) ~ x.re")];
        if let Some(name) = name {
            tests.push(format!(
                "({schema_name} || '.' || {}) ~ x.re",
                segment(name)
            ));
        }
        format!(
            "NOT EXISTS (SELECT 1 FROM pg_catalog.json_array_elements_text($1::json) AS x(re) WHERE {})",
            tests.join(" OR ")
        )
    }

    /// Every statement the connector sends, with and without pushdown.
    fn connector_statements() -> Vec<String> {
        let mut out = vec![
            "SELECT pg_catalog.current_database() AS name, \
             pg_catalog.pg_encoding_to_char(d.encoding) AS encoding, \
             pg_catalog.shobj_description(d.oid, 'pg_database') AS comment, \
             pg_catalog.pg_get_userbyid(d.datdba) AS owner, \
             pg_catalog.current_setting('server_version') AS server_version \
             FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()"
                .to_string(),
            "SELECT pg_catalog.current_setting('server_encoding') AS e".to_string(),
        ];
        for pushdown in [true, false] {
            let databases = if pushdown {
                format!(
                    "SELECT d.datname AS name FROM pg_catalog.pg_database d \
                     WHERE d.datallowconn AND NOT d.datistemplate \
                     AND pg_catalog.has_database_privilege(d.oid, 'CONNECT') \
                     AND NOT EXISTS (SELECT 1 FROM pg_catalog.json_array_elements_text($1::json) AS x(re) \
                     WHERE {} ~ x.re) ORDER BY 1",
                    segment("d.datname")
                )
            } else {
                "SELECT d.datname AS name FROM pg_catalog.pg_database d \
                 WHERE d.datallowconn AND NOT d.datistemplate \
                 AND pg_catalog.has_database_privilege(d.oid, 'CONNECT') ORDER BY 1"
                    .to_string()
            };
            let q = Queries::new(pushdown);
            out.extend([
                databases,
                q.schemas,
                q.relations,
                q.sequences,
                q.functions,
                q.columns,
                q.constraints,
                q.indexes,
            ]);
        }
        out
    }

    #[test]
    fn every_connector_statement_passes() {
        for sql in connector_statements() {
            let out = pass(&sql);
            // Still one statement, parameters kept.
            assert_eq!(pg_query::parse(&out).unwrap().protobuf.stmts.len(), 1);
            assert_eq!(
                sql.contains("$1::json"),
                out.contains("$1::pg_catalog.json"),
                "{out}"
            );
        }
    }

    #[test]
    fn catalog_names_are_qualified_in_the_output() {
        let out =
            pass("SELECT c.relname::text, format_type(1, NULL) FROM pg_class c, pg_namespace");
        assert_eq!(
            out,
            "SELECT c.relname::pg_catalog.text, pg_catalog.format_type(1, NULL) \
             FROM pg_catalog.pg_class c, pg_catalog.pg_namespace"
        );
        // A CTE of the same name stays the CTE.
        let out = pass("WITH pg_class AS (SELECT 1 AS relname) SELECT relname FROM pg_class");
        assert!(out.ends_with("FROM pg_class"), "{out}");
        // Inside the CTE's own (non-recursive) body the name is still the catalog.
        let out =
            pass("WITH pg_class AS (SELECT relname FROM pg_class) SELECT relname FROM pg_class");
        assert!(
            out.contains("(SELECT relname FROM pg_catalog.pg_class)"),
            "{out}"
        );
    }

    #[test]
    fn allowed_reads() {
        for sql in [
            "SELECT 1",
            "VALUES (1, 'a'), (2, 'b')",
            "SELECT relname FROM pg_catalog.pg_class UNION ALL SELECT nspname FROM pg_namespace \
             INTERSECT SELECT 'x' EXCEPT SELECT typname FROM pg_type ORDER BY 1 LIMIT 5 OFFSET 1",
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
            "SELECT * FROM analytics.information_schema.columns",
            "SELECT DISTINCT ON (relnamespace) relname FROM pg_class ORDER BY relnamespace, relname DESC NULLS LAST",
            "SELECT relkind, count(*) FILTER (WHERE relhasindex) FROM pg_class GROUP BY ROLLUP (relkind) HAVING count(*) > 1",
            "SELECT row_number() OVER w, rank() OVER (PARTITION BY relkind ORDER BY relname) FROM pg_class WINDOW w AS (ORDER BY oid)",
            "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 10) SELECT n FROM t",
            "WITH a AS (SELECT 1 AS x), b AS (SELECT x FROM a) SELECT * FROM b, LATERAL (SELECT x) l",
            "WITH RECURSIVE a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a",
            "WITH x AS (SELECT 1 AS n) SELECT n FROM x UNION SELECT n FROM x",
            "SELECT (SELECT y.n) FROM (WITH x AS (SELECT 1 AS n) SELECT n FROM x) y, LATERAL (WITH z AS (SELECT 2) SELECT * FROM z) w",
            "SELECT 'a\\' AS x, E'b\\\\c' AS y",
            "SELECT 1 WHERE 1 BETWEEN SYMMETRIC 2 AND 0 AND 'abc' NOT SIMILAR TO 'b%'",
            "SELECT string_agg(DISTINCT relname, ',' ORDER BY relname) FROM pg_class WHERE relname LIKE 'pg_cl%'",
            "SELECT json_build_object('a', 1), jsonb_agg(x) FROM (VALUES (1), (2)) v(x)",
            "SELECT c.oid FROM ONLY pg_class AS c LEFT JOIN pg_namespace n USING (oid) FULL JOIN pg_type t ON t.oid = c.oid",
            "SELECT current_user, session_user, current_schema, current_catalog, current_schema()",
            "SELECT coalesce(NULL, 1), nullif(1, 2), greatest(1, 2), least(1, 2), 1 IS DISTINCT FROM 2",
            "SELECT relname FROM pg_class WHERE relname LIKE 'pg%' OR relname ILIKE 'X%' OR relname SIMILAR TO 'a' OR relname ~* 'b'",
            "SELECT oid FROM pg_class WHERE oid BETWEEN 1 AND 10 AND oid NOT IN (1, 2) AND oid = ANY ('{1}'::oid[])",
            "SELECT EXISTS (SELECT 1), ARRAY(SELECT oid FROM pg_class), (SELECT 1), 1 IN (SELECT 1)",
            "SELECT (ARRAY[1, 2])[1], (ROW(1, 2)), 'a' COLLATE \"C\", x.y FROM (SELECT 1 AS y) x",
            "SELECT relname::varchar(64), 1.5::numeric(10, 2), 'x'::\"char\", 'ab'::char(2), oid::regclass FROM pg_class",
            "SELECT t.n FROM unnest('{1,2}'::int4[]) WITH ORDINALITY AS t(n, o) NATURAL JOIN (SELECT 1 AS n) s",
            "SELECT CASE WHEN relkind = 'r' THEN 1 WHEN relkind = 'v' THEN 2 ELSE 3 END, relname IS NOT NULL, relhasindex IS TRUE FROM pg_class",
            "SELECT substring('abc' FROM 1 FOR 2), position('a' IN 'abc'), trim(both 'x' FROM 'xax'), 'a' OPERATOR(pg_catalog.||) 'b'",
            "SELECT pg_catalog.current_setting('server_version_num')",
        ] {
            pass(sql);
        }
    }

    #[test]
    fn granted_data_relations_pass_and_others_are_named() {
        let grants = DataGrants::new(&["analytics.public.orders".to_string()]).unwrap();
        let out = check("SELECT count(*) FROM public.orders o", "analytics", &grants).unwrap();
        assert_eq!(out, "SELECT pg_catalog.count(*) FROM public.orders o");
        assert!(check(
            "SELECT 1 FROM analytics.public.orders",
            "analytics",
            &grants
        )
        .is_ok());
        // Same relation, no grant.
        let e = check(
            "SELECT * FROM public.orders",
            "analytics",
            &DataGrants::none(),
        )
        .unwrap_err();
        assert_eq!(
            (e.kind, e.object.as_str()),
            (RefusalKind::Relation, "public.orders")
        );
        assert!(
            e.detail
                .contains("add `analytics.public.orders` to [source.sql] allow_relations"),
            "{e}"
        );
        // The grant is for one database only.
        let e = check("SELECT * FROM public.orders", "other", &grants).unwrap_err();
        assert_eq!(e.object, "public.orders");
        let e = check("SELECT * FROM other.public.orders", "analytics", &grants).unwrap_err();
        assert_eq!(
            (e.kind, e.object.as_str()),
            (RefusalKind::Relation, "other.public.orders")
        );
        // A wildcard grant never opens catalog or system schemas.
        let all = DataGrants::new(&["*.*.*".to_string()]).unwrap();
        for (sql, object) in [
            ("SELECT * FROM pg_catalog.pg_authid", "pg_catalog.pg_authid"),
            (
                "SELECT * FROM pg_toast.pg_toast_1259",
                "pg_toast.pg_toast_1259",
            ),
            (
                "SELECT * FROM information_schema.user_mapping_options",
                "information_schema.user_mapping_options",
            ),
            ("SELECT * FROM pg_stats", "pg_catalog.pg_stats"),
        ] {
            let e = check(sql, "analytics", &all).unwrap_err();
            assert_eq!(
                (e.kind, e.object.as_str()),
                (RefusalKind::Relation, object),
                "{sql}"
            );
        }
    }

    #[test]
    fn attacks_are_refused() {
        use RefusalKind::*;
        let cases: &[(&str, RefusalKind, &str)] = &[
            ("COPY (SELECT 1) TO PROGRAM 'x'", NotARead, "CopyStmt"),
            ("SELECT pg_read_file('/etc/passwd')", Function, "pg_read_file"),
            ("SELECT * FROM pg_ls_dir('.')", Function, "pg_ls_dir"),
            ("SELECT lo_import('/etc/passwd')", Function, "lo_import"),
            ("SELECT lo_export(1,'/tmp/x')", Function, "lo_export"),
            ("SELECT dblink_exec('host=x', 'DROP TABLE t')", Function, "dblink_exec"),
            ("SELECT * FROM public.customers", Relation, "public.customers"),
            ("SELECT * FROM customers", Relation, "customers"),
            ("SELECT most_common_vals FROM pg_stats", Relation, "pg_catalog.pg_stats"),
            ("SET ROLE postgres", NotARead, "VariableSetStmt"),
            ("SELECT set_config('a','b',false)", Function, "set_config"),
            ("SET TRANSACTION READ WRITE", NotARead, "VariableSetStmt"),
            ("SELECT pg_sleep(10)", Function, "pg_sleep"),
            ("SELECT pg_advisory_lock(1)", Function, "pg_advisory_lock"),
            ("SELECT pg_try_advisory_lock(1)", Function, "pg_try_advisory_lock"),
            ("SELECT pg_terminate_backend(1)", Function, "pg_terminate_backend"),
            ("SELECT \"pg_read_file\"('/x')", Function, "pg_read_file"),
            ("SELECT U&\"pg\\0072ead_file\"('/x')", Function, "pgread_file"),
            ("SELECT U&\"pg\\005fread_file\"('/x')", Function, "pg_read_file"),
            ("SELECT \"PG_READ_FILE\"('/x')", Function, "PG_READ_FILE"),
            ("SELECT pg_catalog.pg_read_file('x')", Function, "pg_read_file"),
            ("SELECT pg_read_binary_file('x')", Function, "pg_read_binary_file"),
            ("SELECT * FROM pg_stat_file('x')", Function, "pg_stat_file"),
            ("this is not sql", Unparsable, "statement"),
            ("SELECT 1; SELECT 2", MultipleStatements, "2 statements"),
            ("SELECT 1; DROP TABLE t", MultipleStatements, "2 statements"),
            ("WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", Construct, "WITH DeleteStmt"),
            ("WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT 1", Construct, "WITH InsertStmt"),
            ("WITH x AS (UPDATE t SET a = 1 RETURNING *) SELECT 1", Construct, "WITH UpdateStmt"),
            ("SELECT 1 INTO t", Construct, "SELECT INTO"),
            ("SELECT * FROM pg_class FOR UPDATE", Construct, "FOR UPDATE"),
            ("SELECT * FROM (SELECT * FROM pg_class FOR SHARE) s", Construct, "FOR SHARE"),
            ("SELECT * FROM pg_class TABLESAMPLE SYSTEM (10)", Construct, "TABLESAMPLE"),
            ("SELECT rolpassword FROM pg_authid", Relation, "pg_catalog.pg_authid"),
            ("SELECT passwd FROM pg_catalog.pg_shadow", Relation, "pg_catalog.pg_shadow"),
            ("SELECT umoptions FROM pg_user_mapping", Relation, "pg_catalog.pg_user_mapping"),
            ("SELECT * FROM pg_user_mappings", Relation, "pg_catalog.pg_user_mappings"),
            ("SELECT subconninfo FROM pg_subscription", Relation, "pg_catalog.pg_subscription"),
            ("SELECT data FROM pg_largeobject", Relation, "pg_catalog.pg_largeobject"),
            ("SELECT query FROM pg_stat_activity", Relation, "pg_catalog.pg_stat_activity"),
            ("SELECT * FROM pg_catalog.pg_stat_statements", Relation, "pg_catalog.pg_stat_statements"),
            ("SELECT setting FROM pg_settings", Relation, "pg_catalog.pg_settings"),
            ("SELECT * FROM pg_hba_file_rules", Relation, "pg_catalog.pg_hba_file_rules"),
            ("SELECT last_value FROM pg_sequences", Relation, "pg_catalog.pg_sequences"),
            ("SELECT * FROM pg_locks", Relation, "pg_catalog.pg_locks"),
            ("SELECT * FROM pg_statistic", Relation, "pg_catalog.pg_statistic"),
            ("SELECT * FROM pg_statistic_ext_data", Relation, "pg_catalog.pg_statistic_ext_data"),
            ("SELECT * FROM pg_prepared_statements", Relation, "pg_catalog.pg_prepared_statements"),
            ("SELECT * FROM information_schema.user_mappings", Relation, "information_schema.user_mappings"),
            ("SELECT * FROM information_schema._pg_user_mappings", Relation, "information_schema._pg_user_mappings"),
            ("SELECT * FROM tables", Relation, "tables"),
            ("SELECT current_setting('data_directory')", Function, "current_setting"),
            ("SELECT current_setting('server_version', true)", Function, "current_setting"),
            ("SELECT current_setting('server_' || 'version')", Function, "current_setting"),
            ("SELECT nextval('s')", Function, "nextval"),
            ("SELECT currval('s')", Function, "currval"),
            ("SELECT setval('s', 1)", Function, "setval"),
            ("SELECT txid_current()", Function, "txid_current"),
            ("SELECT pg_notify('c', 'x')", Function, "pg_notify"),
            ("SELECT pg_reload_conf()", Function, "pg_reload_conf"),
            ("SELECT 1::pg_catalog.lo", Construct, "pg_catalog.lo"),
            ("SELECT 1::public.mytype", Construct, "public.mytype"),
            ("SELECT '1 day'::interval", Construct, "pg_catalog.interval"),
            ("SELECT * FROM public.pg_class", Relation, "public.pg_class"),
            ("SELECT public.format_type(1,1)", Function, "public.format_type"),
            ("SELECT analytics.pg_catalog.format_type(1,1)", Function, "analytics.pg_catalog.format_type"),
            ("SELECT 1 OPERATOR(public.=) 1", Function, "OPERATOR(public.=)"),
            ("SELECT 1 # 1", Function, "#"),
            ("EXPLAIN SELECT 1", NotARead, "ExplainStmt"),
            ("EXPLAIN ANALYZE DELETE FROM t", NotARead, "ExplainStmt"),
            ("SHOW data_directory", NotARead, "VariableShowStmt"),
            ("DO $$ begin end $$", NotARead, "DoStmt"),
            ("CALL p()", NotARead, "CallStmt"),
            ("BEGIN", NotARead, "TransactionStmt"),
            ("COMMIT", NotARead, "TransactionStmt"),
            ("LOCK TABLE pg_class", NotARead, "LockStmt"),
            ("PREPARE p AS SELECT 1", NotARead, "PrepareStmt"),
            ("EXECUTE p", NotARead, "ExecuteStmt"),
            ("LISTEN c", NotARead, "ListenStmt"),
            ("NOTIFY c", NotARead, "NotifyStmt"),
            ("DISCARD ALL", NotARead, "DiscardStmt"),
            ("VACUUM", NotARead, "VacuumStmt"),
            ("CREATE TABLE t AS SELECT 1", NotARead, "CreateTableAsStmt"),
            ("DELETE FROM t", NotARead, "DeleteStmt"),
            ("DECLARE c CURSOR FOR SELECT 1", NotARead, "DeclareCursorStmt"),
            ("SELECT query_to_xml('select * from t', true, true, '')", Function, "query_to_xml"),
            ("SELECT table_to_xml('t', true, true, '')", Function, "table_to_xml"),
            ("SELECT xpath('/a', '<a/>')", Function, "xpath"),
            ("SELECT * FROM pg_logical_slot_get_changes('s', NULL, NULL)", Function, "pg_logical_slot_get_changes"),
            ("SELECT * FROM (WITH orders AS (SELECT 1) SELECT 1) s, orders", Relation, "orders"),
            ("SELECT (WITH orders AS (SELECT 1) SELECT 1), * FROM orders", Relation, "orders"),
            ("WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a", Relation, "b"),
            ("(WITH x AS (SELECT 1) SELECT * FROM x) UNION SELECT * FROM x", Relation, "x"),
            ("WITH x AS (SELECT * FROM x) SELECT * FROM x", Relation, "x"),
            ("SELECT * FROM pg_temp.t", Relation, "pg_temp.t"),
            ("SELECT * FROM ROWS FROM (unnest('{1}'::int4[]), pg_sleep(1))", Function, "pg_sleep"),
            ("SELECT relname FROM pg_class ORDER BY (SELECT lo_get(1))", Function, "lo_get"),
            ("SELECT count(*) FILTER (WHERE pg_sleep(1) IS NULL) FROM pg_class", Function, "pg_sleep"),
            ("SELECT row_number() OVER (ORDER BY pg_backend_pid())", Function, "pg_backend_pid"),
            ("SELECT 1 FROM pg_class JOIN pg_authid ON true", Relation, "pg_catalog.pg_authid"),
            ("SELECT 1 WHERE EXISTS (SELECT 1 FROM pg_shadow)", Relation, "pg_catalog.pg_shadow"),
            ("SELECT 1 FROM pg_class GROUP BY GROUPING SETS ((relname), (pg_read_file('x')))", Function, "pg_read_file"),
            ("VALUES (pg_read_file('x'))", Function, "pg_read_file"),
            ("SELECT 'x'::regclass::oid::pg_catalog.regoperator", Construct, "pg_catalog.regoperator"),
            ("SELECT ARRAY[1]::pg_catalog.int4[]::pg_catalog.float8[]", Construct, "pg_catalog.float8"),
            ("SELECT pg_catalog.count(*) OVER (ROWS BETWEEN pg_sleep(1) PRECEDING AND CURRENT ROW)", Function, "pg_sleep"),
            ("WITH RECURSIVE a AS (SELECT * FROM pg_stats) SELECT 1", Relation, "pg_catalog.pg_stats"),
            ("SELECT * FROM pg_class c WHERE c.relname COLLATE public.evil = 'x'", Construct, "COLLATE"),
            ("SELECT XMLELEMENT(name a)", Construct, "XmlExpr"),
            ("SELECT now()", Function, "now"),
            ("SELECT CURRENT_TIMESTAMP", Function, "SQL value function"),
            ("SELECT * FROM pg_class c, LATERAL pg_sleep(1)", Function, "pg_sleep"),
            ("SELECT * FROM unnest('{1}'::int4[]) AS t(a int)", Construct, "column definition list"),
            ("SELECT format_type(a => 1, b => 2)", Construct, "NamedArgExpr"),
            ("SELECT count(*) FROM pg_class WHERE relname = (SELECT pg_read_file('x'))", Function, "pg_read_file"),
            ("SELECT 1 ORDER BY 1 USING @@", Function, "@@"),
            ("SELECT JSON_OBJECT('a': 1)", Construct, "JsonObjectConstructor"),
            ("SELECT 'x'::pg_catalog.bpchar", Construct, "pg_catalog.bpchar"),
            ("", Unparsable, "statement"),
            ("SELECT 1\0", Unparsable, "statement"),
        ];
        for (sql, kind, object) in cases {
            refuses(sql, *kind, object);
        }
        assert!(cases.len() >= 40);
    }

    #[test]
    fn refusals_never_echo_literals() {
        for sql in [
            "SELECT current_setting('secret_canary')",
            "SELECT pg_read_file('secret_canary')",
            "SELECT 'secret_canary' FROM public.t",
            "SELECT 'secret_canary' FORM pg_class",
            "SELECT 'secret_canary",
            "SELECT 1 FROM pg_class WHERE relname = 'secret_canary' FOR UPDATE",
            "SELECT 'secret_canary'::pg_catalog.lo",
            "SELECT E'\\x' 'secret_canary'",
        ] {
            let e = refused(sql);
            let shown = format!("{e} {:?}", e);
            assert!(!shown.contains("secret_canary"), "{sql}: {shown}");
        }
    }

    #[test]
    fn pathological_statements_are_refused_without_crashing() {
        // Deep nesting: refused by depth (protobuf decoding stops at ~50 nested nodes).
        for n in [60, 1_000, 100_000] {
            let sql = format!("SELECT {}1{}", "1 + (".repeat(n), ")".repeat(n));
            let e = refused(&sql);
            assert!(
                matches!(e.kind, RefusalKind::Construct | RefusalKind::Unparsable),
                "{n}: {e}"
            );
            let sql = format!("SELECT {}1{}", "(SELECT ".repeat(n), ")".repeat(n));
            refused(&sql);
        }
        refuses(
            &format!("SELECT {}1{}", "1 + (".repeat(60), ")".repeat(60)),
            RefusalKind::Construct,
            "nesting depth",
        );
        // Wide statements: refused by node count.
        let sql = format!("SELECT {}", vec!["1"; 20_000].join(", "));
        refuses(&sql, RefusalKind::Construct, "statement size");
        // Just under the token limit, nested as deep as that allows (one node per two
        // tokens): the parser's own recursion must not overflow, whatever the caller's stack.
        let sql = format!("SELECT 1{}", "+1".repeat(MAX_TOKENS / 2 - 2));
        refuses(&sql, RefusalKind::Construct, "nesting depth");
        let on_small_stack = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || check(&sql, "analytics", &DataGrants::none()).map_err(|e| e.object))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(on_small_stack, Err("nesting depth".to_string()));
        // Still fine just under the depth the decoder allows.
        pass(&format!("SELECT {}1{}", "1 + (".repeat(20), ")".repeat(20)));
    }

    #[test]
    fn backslashes_render_as_escape_strings() {
        // The server may run with standard_conforming_strings off; the rendered text must
        // mean the same either way.
        let out = pass(r"SELECT 'a\' AS x, 'b' AS y");
        assert_eq!(out, r"SELECT E'a\\' AS x, 'b' AS y");
    }

    #[test]
    fn parse_reasons_are_scrubbed() {
        assert_eq!(
            parse_reason("syntax error at or near \"'x'\""),
            "syntax error"
        );
        assert_eq!(
            parse_reason("unterminated quoted string at or near \"'abc\""),
            "unterminated quoted string"
        );
        assert_eq!(parse_reason("a 'quoted' thing"), "syntax error");
    }
}
