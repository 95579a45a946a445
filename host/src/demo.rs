//! `airlock demo`: a realistic sample SQLite database (an online shop with 24 tables, foreign
//! keys, indexes and views) and a workflow config next to it.

use std::path::{Path, PathBuf};

/// The sample schema. Kept as one script so the demo and the tests create the same database.
pub const SHOP_SCHEMA: &str = r#"
PRAGMA foreign_keys = ON;
CREATE TABLE regions (id INTEGER PRIMARY KEY, code TEXT NOT NULL UNIQUE, name TEXT NOT NULL);
CREATE TABLE countries (iso2 TEXT PRIMARY KEY CHECK (length(iso2) = 2), name TEXT NOT NULL,
  region_id INTEGER NOT NULL REFERENCES regions(id));
CREATE TABLE customers (
  id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, full_name TEXT NOT NULL,
  phone TEXT, country TEXT REFERENCES countries(iso2),
  created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, marketing_opt_in INTEGER NOT NULL DEFAULT 0);
CREATE TABLE addresses (
  id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
  kind TEXT NOT NULL DEFAULT 'shipping' CHECK (kind IN ('shipping', 'billing')),
  line1 TEXT NOT NULL, line2 TEXT, city TEXT NOT NULL, postal_code TEXT, country TEXT NOT NULL REFERENCES countries(iso2));
CREATE TABLE categories (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES categories(id), name TEXT NOT NULL, slug TEXT NOT NULL UNIQUE);
CREATE TABLE suppliers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, contact_email TEXT, country TEXT REFERENCES countries(iso2));
CREATE TABLE products (
  id INTEGER PRIMARY KEY, sku TEXT NOT NULL UNIQUE, name TEXT NOT NULL, description TEXT,
  category_id INTEGER NOT NULL REFERENCES categories(id), supplier_id INTEGER REFERENCES suppliers(id),
  price_cents INTEGER NOT NULL CHECK (price_cents >= 0), currency TEXT NOT NULL DEFAULT 'EUR',
  weight_grams REAL, active INTEGER NOT NULL DEFAULT 1);
CREATE TABLE product_prices (
  product_id INTEGER NOT NULL REFERENCES products(id), valid_from TEXT NOT NULL, price_cents INTEGER NOT NULL,
  PRIMARY KEY (product_id, valid_from)) WITHOUT ROWID;
CREATE TABLE warehouses (id INTEGER PRIMARY KEY, code TEXT NOT NULL UNIQUE, city TEXT NOT NULL, country TEXT NOT NULL REFERENCES countries(iso2));
CREATE TABLE inventory (
  warehouse_id INTEGER NOT NULL REFERENCES warehouses(id), product_id INTEGER NOT NULL REFERENCES products(id),
  quantity INTEGER NOT NULL DEFAULT 0, reorder_level INTEGER NOT NULL DEFAULT 10,
  PRIMARY KEY (warehouse_id, product_id));
CREATE TABLE carts (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id), created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE cart_items (
  cart_id INTEGER NOT NULL REFERENCES carts(id) ON DELETE CASCADE, product_id INTEGER NOT NULL REFERENCES products(id),
  quantity INTEGER NOT NULL DEFAULT 1, PRIMARY KEY (cart_id, product_id));
CREATE TABLE orders (
  id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id),
  shipping_address_id INTEGER REFERENCES addresses(id), billing_address_id INTEGER REFERENCES addresses(id),
  status TEXT NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'paid', 'shipped', 'delivered', 'cancelled')),
  ordered_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, total_cents INTEGER NOT NULL DEFAULT 0);
CREATE TABLE order_items (
  order_id INTEGER NOT NULL REFERENCES orders(id) ON DELETE CASCADE, line_no INTEGER NOT NULL,
  product_id INTEGER NOT NULL REFERENCES products(id), quantity INTEGER NOT NULL CHECK (quantity > 0),
  unit_price_cents INTEGER NOT NULL, PRIMARY KEY (order_id, line_no));
CREATE TABLE payments (
  id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL REFERENCES orders(id), method TEXT NOT NULL,
  amount_cents INTEGER NOT NULL, paid_at TEXT, provider_reference TEXT UNIQUE);
CREATE TABLE shipments (
  id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL REFERENCES orders(id), warehouse_id INTEGER NOT NULL REFERENCES warehouses(id),
  carrier TEXT NOT NULL, tracking_number TEXT, shipped_at TEXT, delivered_at TEXT);
CREATE TABLE invoices (
  id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL UNIQUE REFERENCES orders(id), number TEXT NOT NULL UNIQUE,
  issued_at TEXT NOT NULL, due_at TEXT, net_cents INTEGER NOT NULL, tax_cents INTEGER NOT NULL,
  gross_cents INTEGER GENERATED ALWAYS AS (net_cents + tax_cents) STORED);
CREATE TABLE invoice_lines (
  invoice_id INTEGER NOT NULL REFERENCES invoices(id), line_no INTEGER NOT NULL, description TEXT NOT NULL,
  amount_cents INTEGER NOT NULL, PRIMARY KEY (invoice_id, line_no));
CREATE TABLE returns (
  id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL, line_no INTEGER NOT NULL, reason TEXT,
  received_at TEXT, FOREIGN KEY (order_id, line_no) REFERENCES order_items(order_id, line_no));
CREATE TABLE reviews (
  id INTEGER PRIMARY KEY, product_id INTEGER NOT NULL REFERENCES products(id), customer_id INTEGER NOT NULL REFERENCES customers(id),
  rating INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5), body TEXT, created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (product_id, customer_id));
CREATE TABLE promotions (id INTEGER PRIMARY KEY, code TEXT NOT NULL UNIQUE, percent_off REAL NOT NULL, starts_at TEXT, ends_at TEXT);
CREATE TABLE promotion_products (
  promotion_id INTEGER NOT NULL REFERENCES promotions(id), product_id INTEGER NOT NULL REFERENCES products(id),
  PRIMARY KEY (promotion_id, product_id));
CREATE TABLE departments (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, manager_id INTEGER REFERENCES employees(id));
CREATE TABLE employees (
  id INTEGER PRIMARY KEY, department_id INTEGER REFERENCES departments(id), full_name TEXT NOT NULL,
  email TEXT NOT NULL UNIQUE, salary_cents INTEGER, hired_on TEXT NOT NULL);
CREATE TABLE audit_events (id INTEGER PRIMARY KEY, actor TEXT NOT NULL, action TEXT NOT NULL, payload TEXT, at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);

CREATE INDEX idx_customers_country ON customers(country);
CREATE INDEX idx_addresses_customer ON addresses(customer_id, kind);
CREATE INDEX idx_products_category ON products(category_id);
CREATE INDEX idx_products_active_price ON products(price_cents) WHERE active = 1;
CREATE INDEX idx_orders_customer_date ON orders(customer_id, ordered_at DESC);
CREATE INDEX idx_orders_status ON orders(status);
CREATE INDEX idx_order_items_product ON order_items(product_id);
CREATE INDEX idx_payments_order ON payments(order_id);
CREATE INDEX idx_shipments_order ON shipments(order_id);
CREATE INDEX idx_reviews_product_rating ON reviews(product_id, rating);
CREATE INDEX idx_customers_email_lower ON customers(lower(email));
CREATE INDEX idx_audit_events_at ON audit_events(at);

CREATE VIEW v_order_totals AS
  SELECT o.id AS order_id, o.customer_id, sum(i.quantity * i.unit_price_cents) AS total_cents, count(*) AS lines
  FROM orders o JOIN order_items i ON i.order_id = o.id GROUP BY o.id;
CREATE VIEW v_customer_lifetime_value AS
  SELECT c.id AS customer_id, c.email, coalesce(sum(t.total_cents), 0) AS lifetime_cents
  FROM customers c LEFT JOIN v_order_totals t ON t.customer_id = c.id GROUP BY c.id;
CREATE VIEW v_low_stock AS
  SELECT w.code AS warehouse, p.sku, i.quantity FROM inventory i
  JOIN warehouses w ON w.id = i.warehouse_id JOIN products p ON p.id = i.product_id
  WHERE i.quantity < i.reorder_level;
CREATE VIEW v_open_orders AS SELECT * FROM orders WHERE status IN ('new', 'paid');

INSERT INTO regions (id, code, name) VALUES (1, 'EU', 'Europe'), (2, 'NA', 'North America');
INSERT INTO countries VALUES ('DE', 'Germany', 1), ('FR', 'France', 1), ('US', 'United States', 2);
INSERT INTO customers (id, email, full_name, country) VALUES (1, 'ada@example.com', 'Ada L.', 'DE'), (2, 'bob@example.com', 'Bob K.', 'US');
INSERT INTO categories (id, name, slug) VALUES (1, 'Books', 'books');
INSERT INTO products (id, sku, name, category_id, price_cents) VALUES (1, 'BK-1', 'A Book', 1, 1999);
INSERT INTO orders (id, customer_id, status) VALUES (1, 1, 'paid');
INSERT INTO order_items VALUES (1, 1, 1, 2, 1999);
"#;

/// The demo's workflow config. It excludes the audit table to show filtering at work.
pub const DEMO_CONFIG: &str = r#"# airlock demo workflow: extract the sample shop database into ./out
name = "demo-shop"

[source]
plugin = "sqlite"          # installed plugin name or a path to a .wasm component
database = "shop.db"       # relative to this file; the host opens it read-only

[source.options]
name = "shop"              # name of the database asset

[filters]
# Globs over qualified names (database.schema.table...); `re:` prefixes a regex.
include = ["shop.main.*"]
exclude = ["shop.main.audit_*"]

[sink]
kind = "local"
dir = "out"

[limits]
memory_mb = 256
deadline_s = 120
"#;

/// Creates (or recreates) the sample database at `path`.
pub fn create_sample_database(path: &Path) -> rusqlite::Result<()> {
    if path.exists() {
        let _ = std::fs::remove_file(path);
    }
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(SHOP_SCHEMA)?;
    Ok(())
}

/// Creates the database and the config in `dir`; returns the config path.
pub fn prepare(dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    create_sample_database(&dir.join("shop.db")).map_err(std::io::Error::other)?;
    let config = dir.join("airlock.toml");
    std::fs::write(&config, DEMO_CONFIG)?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_database_has_twenty_plus_tables_and_views() {
        let dir = tempfile::tempdir().unwrap();
        let config = prepare(dir.path()).unwrap();
        let conn = rusqlite::Connection::open(dir.path().join("shop.db")).unwrap();
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let views: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'view'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(tables >= 20, "{tables} tables");
        assert!(views >= 3, "{views} views");
        crate::config::LoadedConfig::load(&config).unwrap();
    }
}
