-- The benchmark's fixed floor for PostgreSQL: the minimal bulk catalog queries a careful
-- hand-written extractor would send for the facts airlock extracts, one per catalog, run by
-- psql with its output written to a file (./scripts/bench). User schemas only; no ordering;
-- keys as attribute-number arrays (the columns query names them). Not generated from
-- airlock's own statements: it is the yardstick they are measured against.

-- database
SELECT d.datname, pg_encoding_to_char(d.encoding), pg_get_userbyid(d.datdba), sd.description
FROM pg_database d
LEFT JOIN pg_shdescription sd ON sd.objoid = d.oid AND sd.classoid = 'pg_database'::regclass
WHERE d.datname = current_database();

-- schemas
SELECT n.oid, n.nspname, pg_get_userbyid(n.nspowner), ds.description
FROM pg_namespace n
LEFT JOIN pg_description ds ON ds.objoid = n.oid AND ds.classoid = 'pg_namespace'::regclass AND ds.objsubid = 0
WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema';

-- relations (tables, partitioned tables, foreign tables, views, materialized views)
SELECT c.oid, c.relnamespace, c.relname, c.relkind, c.reltuples, pg_get_userbyid(c.relowner),
       ds.description,
       CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_description ds ON ds.objoid = c.oid AND ds.classoid = 'pg_class'::regclass AND ds.objsubid = 0
WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm') AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema';

-- columns
SELECT a.attrelid, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), ds.description
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
LEFT JOIN pg_description ds ON ds.objoid = a.attrelid AND ds.classoid = 'pg_class'::regclass AND ds.objsubid = a.attnum
WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'f', 'v', 'm')
  AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema';

-- constraints (primary, unique, foreign, check)
SELECT con.conrelid, con.conname, con.contype, con.conkey, con.confrelid, con.confkey,
       con.confupdtype, con.confdeltype, pg_get_constraintdef(con.oid)
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE con.contype IN ('p', 'u', 'f', 'c') AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema';

-- indexes
SELECT i.indrelid, ic.relname, i.indisunique, i.indisprimary, i.indkey, pg_get_indexdef(i.indexrelid)
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema';
