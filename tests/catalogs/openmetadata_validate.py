#!/usr/bin/env python3
"""Validate OpenMetadata Create*Request JSON against the real pydantic models
of the PyPI package `openmetadata-ingestion` (metadata.generated.schema...).

Input (auto-detected):
  * a JSON document  {"databases": [CreateDatabaseRequest...],
                      "schemas":   [CreateDatabaseSchemaRequest...],
                      "tables":    [CreateTableRequest...]}      (any key may be absent)
  * or JSON Lines, one object per line: {"type": "database"|"schema"|"table", "request": {...}}
    ("type" also accepts the model names, e.g. "CreateTableRequest").

Checks, in this order, per object:
  1. model  : Model.model_validate_json(<object as JSON>, strict=True)   (default)
              --lax uses Model.model_validate(obj) instead, i.e. the coercing
              mode the Python SDK itself uses ("200" -> 200 etc.).
              Unknown fields are rejected by the models (extra='forbid').
  2. server : re-implementation of the OpenMetadata server's extra column/constraint
              rules (DatabaseUtil.java): CHAR/VARCHAR/BINARY/VARBINARY need dataLength,
              ARRAY needs arrayDataType, STRUCT needs children, scale needs precision
              and scale <= precision, unique column names, at most one column with
              constraint PRIMARY_KEY, no PRIMARY_KEY table constraint when a column
              already has it, table-constraint columns must exist.
              Disable with --models-only.
  3. refs   : (only with --check-refs) every schema.database is the FQN of a database
              in the input, every table.databaseSchema the FQN of a schema in the input,
              and every FOREIGN_KEY referredColumn the FQN of a column of a table in the
              input (FQNs built with the real metadata.utils.fqn.quote_name after the
              reserved-keyword encoding the models apply to names).
  --roundtrip: also report (not fail) objects whose validated dump differs from the
              input (e.g. names re-encoded: '"' -> '__reserved__quote__').

Exit status: 0 if everything is valid, 1 on any failure, 2 on usage/input errors.
The last line printed is "validate: N passed, M failed".
"""
import argparse
import importlib.util
import json
import logging
import sys
import types

ALIASES = {
    "database": "database", "databases": "database", "createdatabaserequest": "database",
    "schema": "schema", "schemas": "schema", "databaseschema": "schema",
    "createdatabaseschemarequest": "schema",
    "table": "table", "tables": "table", "createtablerequest": "table",
}


def bootstrap_metadata_package():
    """Make `metadata` importable WITHOUT executing metadata/__init__.py, which
    imports the profiler, the REST client and all secrets-manager SDKs (boto3,
    azure, google ...). The generated models only need pydantic + email-validator
    (+ a few light packages for the name-encoding validator)."""
    if "metadata" in sys.modules:
        return
    spec = importlib.util.find_spec("metadata")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("validate.py: package 'metadata' (openmetadata-ingestion) is not installed")
    pkg = types.ModuleType("metadata")
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.__file__ = spec.origin
    pkg.__package__ = "metadata"
    pkg.__spec__ = spec
    sys.modules["metadata"] = pkg


def load_items(path):
    """Return a list of (label, kind, obj)."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    items = []
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and "request" not in doc:
        unknown = [k for k in doc if k not in ("databases", "schemas", "tables", "deletions")]
        if unknown:
            raise ValueError(f"unknown top-level key(s) {unknown}; expected databases/schemas/tables")
        for key in ("databases", "schemas", "tables"):
            arr = doc.get(key, [])
            if not isinstance(arr, list):
                raise ValueError(f"'{key}' must be a JSON array")
            for i, obj in enumerate(arr):
                items.append((f"{key}[{i}]", ALIASES[key], obj))
        return items
    # JSON Lines
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {n}: not JSON ({exc})") from exc
        if not isinstance(rec, dict) or "type" not in rec or "request" not in rec:
            raise ValueError(f'line {n}: expected {{"type": ..., "request": {{...}}}}')
        kind = ALIASES.get(str(rec["type"]).lower())
        if kind is None:
            raise ValueError(f"line {n}: unknown type {rec['type']!r}")
        items.append((f"line {n}", kind, rec["request"]))
    return items


def name_of(obj):
    return obj.get("name") if isinstance(obj, dict) else None


def server_rules(kind, obj):
    """Rules the OpenMetadata server applies on top of the JSON schema
    (openmetadata-service .../resources/databases/DatabaseUtil.java)."""
    if kind != "table":
        return []
    errs = []

    def check_columns(cols, where):
        seen = set()
        for i, c in enumerate(cols or []):
            loc = f"{where}[{i}]({c.get('name')})"
            if c.get("name") in seen:
                errs.append(f"{loc}: column name {c.get('name')!r} is repeated")
            seen.add(c.get("name"))
            dt = c.get("dataType")
            if dt in ("CHAR", "VARCHAR", "BINARY", "VARBINARY") and c.get("dataLength") is None:
                errs.append(f"{loc}: for data types char, varchar, binary, varbinary dataLength must not be null")
            if dt == "ARRAY" and c.get("arrayDataType") is None:
                errs.append(f"{loc}: for data type ARRAY, arrayDataType must not be null")
            if dt == "STRUCT" and c.get("children") is None:
                errs.append(f"{loc}: for data type STRUCT, children must not be null")
            if c.get("scale") is not None:
                if c.get("precision") is None:
                    errs.append(f"{loc}: scale is set but precision is not")
                elif c["scale"] > c["precision"]:
                    errs.append(f"{loc}: scale can't be greater than precision")
            if c.get("children"):
                check_columns(c["children"], f"{loc}.children")

    cols = obj.get("columns") or []
    check_columns(cols, "columns")
    pk_cols = [c.get("name") for c in cols if c.get("constraint") == "PRIMARY_KEY"]
    if len(pk_cols) > 1:
        errs.append(f"multiple columns tagged with constraint PRIMARY_KEY: {pk_cols} "
                    "(use one tableConstraints PRIMARY_KEY entry for a composite key)")
    names = {c.get("name") for c in cols}
    for i, tc in enumerate(obj.get("tableConstraints") or []):
        if tc.get("constraintType") == "PRIMARY_KEY" and pk_cols:
            errs.append(f"tableConstraints[{i}]: a column is already tagged PRIMARY_KEY "
                        "and the table constraints also include a primary key")
        for cn in tc.get("columns") or []:
            if cn not in names:
                errs.append(f"tableConstraints[{i}]: column {cn!r} is not a column of the table")
    return errs


DELETABLE = ("database", "databaseSchema", "table")


def check_deletions(path):
    """airlock's `deletions`: [{"entity": database|databaseSchema|table,
    "fullyQualifiedName": FQN}] — what to DELETE /api/v1/<entity>s/name/<fqn>. Returns
    (deletions, errors); the FQN must split with OpenMetadata's own fqn.split."""
    with open(path, encoding="utf-8") as fh:
        try:
            doc = json.load(fh)
        except json.JSONDecodeError:
            return [], []
    if not isinstance(doc, dict):
        return [], []
    from metadata.utils import fqn as om_fqn
    errs = []
    dels = doc.get("deletions", [])
    if not isinstance(dels, list):
        return [], ["'deletions' must be a JSON array"]
    depth = {"database": 2, "databaseSchema": 3, "table": 4}
    for i, d in enumerate(dels):
        if not isinstance(d, dict) or set(d) != {"entity", "fullyQualifiedName"}:
            errs.append(f"deletions[{i}]: expected exactly entity and fullyQualifiedName")
            continue
        if d["entity"] not in DELETABLE:
            errs.append(f"deletions[{i}]: entity {d['entity']!r} is not one of {DELETABLE}")
            continue
        try:
            parts = om_fqn.split(d["fullyQualifiedName"])
        except Exception as exc:  # ANTLR raises its own types
            errs.append(f"deletions[{i}]: {d['fullyQualifiedName']!r} is not an FQN ({exc})")
            continue
        if len(parts) != depth[d["entity"]]:
            errs.append(f"deletions[{i}]: a {d['entity']} FQN has {depth[d['entity']]} parts, "
                        f"{d['fullyQualifiedName']!r} has {len(parts)}")
    return dels, errs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", help="bundle JSON file or JSON Lines file ('-' for stdin not supported)")
    ap.add_argument("--lax", action="store_true", help="pydantic lax mode (model_validate on the dict)")
    ap.add_argument("--models-only", action="store_true", help="skip the server-rule checks")
    ap.add_argument("--check-refs", action="store_true", help="check FQN references between the objects")
    ap.add_argument("--roundtrip", action="store_true", help="report objects changed by validation")
    ap.add_argument("--max-errors", type=int, default=5, help="errors printed per object (default 5)")
    args = ap.parse_args(argv)

    bootstrap_metadata_package()
    # The models log (and then ignore) a warning if the name-encoding validator
    # cannot import its helpers; surface it as an error below instead.
    warnings = []

    class _Collect(logging.Handler):
        def emit(self, record):
            warnings.append(record.getMessage())

    logging.getLogger("metadata").addHandler(_Collect(level=logging.WARNING))
    logging.getLogger("metadata").propagate = False

    from pydantic import ValidationError
    from metadata.generated.schema.api.data.createDatabase import CreateDatabaseRequest
    from metadata.generated.schema.api.data.createDatabaseSchema import CreateDatabaseSchemaRequest
    from metadata.generated.schema.api.data.createTable import CreateTableRequest
    from metadata.ingestion.models.custom_basemodel_validation import (
        _initialize_transformable_entities,
        replace_separators,
    )

    try:  # the models' name-encoding validator needs this; it would only log a warning
        _initialize_transformable_entities()
    except ImportError as exc:
        print(f"validate.py: the models' name-encoding validator cannot load ({exc}); "
              "run ./scripts/setup-catalogs", file=sys.stderr)
        return 2

    from importlib.metadata import version as _v
    print(f"models: openmetadata-ingestion {_v('openmetadata-ingestion')} (pydantic {_v('pydantic')})")
    models = {"database": CreateDatabaseRequest, "schema": CreateDatabaseSchemaRequest,
              "table": CreateTableRequest}
    try:
        items = load_items(args.file)
    except (OSError, ValueError) as exc:
        print(f"validate.py: {exc}", file=sys.stderr)
        return 2

    passed = failed = 0
    validated = []  # (label, kind, dumped-json-dict) of valid objects
    for label, kind, obj in items:
        model = models[kind]
        errs = []
        dumped = None
        if not isinstance(obj, dict):
            errs.append(f"expected a JSON object, got {type(obj).__name__}")
        else:
            try:
                if args.lax:
                    inst = model.model_validate(obj)
                else:
                    inst = model.model_validate_json(json.dumps(obj), strict=True)
                dumped = json.loads(inst.model_dump_json())
            except ValidationError as exc:
                for e in exc.errors():
                    loc = ".".join(str(p) for p in e["loc"]) or "<root>"
                    inp = json.dumps(e.get("input"), ensure_ascii=False, default=str)
                    if len(inp) > 80:
                        inp = inp[:77] + "..."
                    msg = e["msg"]
                    if len(msg) > 160:
                        msg = msg[:157] + "..."
                    errs.append(f"[model] {loc}: {msg} ({e['type']}; input={inp})")
            if warnings:
                errs += [f"[model] validator warning: {w}" for w in dict.fromkeys(warnings)]
                warnings.clear()
            if not args.models_only:
                errs += [f"[server-rule] {e}" for e in server_rules(kind, obj)]
        head = f"{label} {model.__name__} {name_of(obj)!r}"
        if errs:
            failed += 1
            print(f"FAIL {head}: {len(errs)} error(s)")
            for e in errs[: args.max_errors]:
                print(f"    {e}")
            if len(errs) > args.max_errors:
                print(f"    ... {len(errs) - args.max_errors} more")
        else:
            passed += 1
            validated.append((label, kind, dumped))
            if args.roundtrip and dumped != obj:
                print(f"note {head}: changed by validation -> {json.dumps(dumped, ensure_ascii=False)[:300]}")

    if args.check_refs:
        from metadata.utils.fqn import quote_name

        def part(name):
            return quote_name(replace_separators(name))
        db_fqns = {d["service"] + "." + part(d["name"]) for _, k, d in validated if k == "database"}
        schema_fqns = {s["database"] + "." + part(s["name"]) for _, k, s in validated if k == "schema"}
        col_fqns = set()
        for _, k, t in validated:
            if k == "table":
                tfqn = t["databaseSchema"] + "." + part(t["name"])
                col_fqns |= {tfqn + "." + part(c["name"]) for c in t["columns"]}
        for label, k, o in validated:
            errs = []
            if k == "schema" and o["database"] not in db_fqns:
                errs.append(f"database {o['database']!r} is not the FQN of any database in the input {sorted(db_fqns)}")
            if k == "table":
                if o["databaseSchema"] not in schema_fqns:
                    errs.append(f"databaseSchema {o['databaseSchema']!r} is not the FQN of any schema in the input")
                for i, tc in enumerate(o.get("tableConstraints") or []):
                    if tc.get("constraintType") == "FOREIGN_KEY":
                        for rc in tc.get("referredColumns") or []:
                            if rc not in col_fqns:
                                errs.append(f"tableConstraints[{i}].referredColumns: {rc!r} is not the FQN of a column in the input")
            if errs:
                failed += 1
                passed -= 1
                print(f"FAIL {label} {name_of(o)!r}: {len(errs)} reference error(s)")
                for e in errs[: args.max_errors]:
                    print(f"    [ref] {e}")

    dels, del_errs = check_deletions(args.file)
    if args.check_refs:
        created = set()
        for _, k, o in validated:
            if k == "table":
                created.add(o["databaseSchema"] + "." + part(o["name"]))
        for d in dels:
            if isinstance(d, dict) and d.get("fullyQualifiedName") in created:
                del_errs.append(f"deletion of {d['fullyQualifiedName']!r}, which the file also creates")
    for e in del_errs:
        failed += 1
        print(f"FAIL {e}")
    passed += len(dels) - len(del_errs)

    print(f"validate: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
