-- Catalog-extraction floor for MySQL / MariaDB: the minimal bulk catalog queries a careful
-- hand-written extractor runs for the facts the mysql connector emits (databases, tables and
-- views, columns, primary/unique/foreign keys with their rules, indexes). One plain SELECT per
-- information_schema table, only the needed columns, no ORDER BY (the extractor groups rows
-- itself), system schemas left out. Run by the `mariadb` client with output to a file, as a
-- non-root login with SELECT on the benchmark databases, e.g.
--   mariadb --no-defaults -h127.0.0.1 -P PORT -u USER -pPASSWORD --batch < mariadb.sql > out
-- SELECT alone is enough to run it, but MariaDB then shows VIEW_DEFINITION empty and no rows of
-- REFERENTIAL_CONSTRAINTS (it wants a privilege other than SELECT, e.g. REFERENCES or SHOW VIEW,
-- as the connector's role has); the server opens the same tables either way.
-- On MariaDB, TABLES (for TABLE_ROWS, AUTO_INCREMENT), KEY_COLUMN_USAGE, REFERENTIAL_CONSTRAINTS
-- and STATISTICS (for INDEX_TYPE) open every table; SCHEMATA, VIEWS and COLUMNS read only the
-- table definitions.

-- Databases (schemata).
SELECT SCHEMA_NAME, DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME
FROM information_schema.SCHEMATA
WHERE SCHEMA_NAME NOT IN ('information_schema', 'mysql', 'performance_schema', 'sys');

-- Tables and views, then the views' definitions.
SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE, ENGINE, TABLE_ROWS, TABLE_COMMENT,
       TABLE_COLLATION, AUTO_INCREMENT
FROM information_schema.TABLES
WHERE TABLE_SCHEMA NOT IN ('information_schema', 'mysql', 'performance_schema', 'sys');

SELECT TABLE_SCHEMA, TABLE_NAME, VIEW_DEFINITION
FROM information_schema.VIEWS
WHERE TABLE_SCHEMA NOT IN ('information_schema', 'mysql', 'performance_schema', 'sys');

-- Columns.
SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, ORDINAL_POSITION, COLUMN_TYPE, IS_NULLABLE,
       COLUMN_DEFAULT, COLUMN_COMMENT, EXTRA, GENERATION_EXPRESSION, COLLATION_NAME,
       CHARACTER_SET_NAME
FROM information_schema.COLUMNS
WHERE TABLE_SCHEMA NOT IN ('information_schema', 'mysql', 'performance_schema', 'sys');

-- Constraints: key columns of primary, unique and foreign keys, then the foreign keys' rules.
SELECT TABLE_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, COLUMN_NAME, ORDINAL_POSITION,
       REFERENCED_TABLE_SCHEMA, REFERENCED_TABLE_NAME, REFERENCED_COLUMN_NAME
FROM information_schema.KEY_COLUMN_USAGE
WHERE TABLE_SCHEMA NOT IN ('information_schema', 'mysql', 'performance_schema', 'sys');

SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, UPDATE_RULE, DELETE_RULE
FROM information_schema.REFERENTIAL_CONSTRAINTS
WHERE CONSTRAINT_SCHEMA NOT IN ('information_schema', 'mysql', 'performance_schema', 'sys');

-- Indexes (one row per index column).
SELECT TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, NON_UNIQUE, SEQ_IN_INDEX, COLUMN_NAME, INDEX_TYPE
FROM information_schema.STATISTICS
WHERE TABLE_SCHEMA NOT IN ('information_schema', 'mysql', 'performance_schema', 'sys');
