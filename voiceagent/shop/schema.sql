CREATE TABLE IF NOT EXISTS customers (
    customer_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    phone TEXT NOT NULL,
    tier TEXT NOT NULL CHECK (tier IN ('new', 'regular', 'vip')),
    language TEXT NOT NULL,
    points INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS customers_phone ON customers(phone);

CREATE TABLE IF NOT EXISTS products (
    sku TEXT PRIMARY KEY,
    name_zh TEXT NOT NULL,
    name_en TEXT NOT NULL,
    category TEXT NOT NULL,
    keywords TEXT NOT NULL,          -- space-separated zh/en words the caller may use
    price REAL NOT NULL,
    stock INTEGER NOT NULL,
    restock_date TEXT,
    material_zh TEXT NOT NULL,
    material_en TEXT NOT NULL,
    sizes TEXT NOT NULL,             -- comma-separated, '' for one-size items
    colors_zh TEXT NOT NULL,
    colors_en TEXT NOT NULL,
    size_advice_zh TEXT NOT NULL,
    size_advice_en TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers(customer_id),
    sku TEXT NOT NULL REFERENCES products(sku),
    size TEXT,
    color_zh TEXT,
    color_en TEXT,
    quantity INTEGER NOT NULL,
    amount REAL NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('paid', 'shipped', 'delivered', 'cancelled', 'returned')),
    created_at TEXT NOT NULL,
    ship_by TEXT NOT NULL,
    shipped_at TEXT,
    delivered_at TEXT,
    carrier TEXT,
    tracking_no TEXT,
    refund_status TEXT,              -- NULL, 'processing', 'refunded'
    address TEXT                     -- where it ships (changeable until it ships)
);
CREATE INDEX IF NOT EXISTS orders_customer ON orders(customer_id);
CREATE INDEX IF NOT EXISTS orders_tracking ON orders(tracking_no);

CREATE TABLE IF NOT EXISTS tracking_events (
    tracking_no TEXT NOT NULL,
    at TEXT NOT NULL,
    location_zh TEXT NOT NULL,
    location_en TEXT NOT NULL,
    event_zh TEXT NOT NULL,
    event_en TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tracking_events_no ON tracking_events(tracking_no);

CREATE TABLE IF NOT EXISTS policies (
    key TEXT NOT NULL,
    lang TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (key, lang)
);

CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

-- What the agent does, not only what it reads: after-sales tickets and goodwill coupons.
CREATE TABLE IF NOT EXISTS tickets (
    ticket_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('return', 'exchange', 'refund_review', 'complaint', 'callback')),
    order_id TEXT,
    customer_id TEXT,
    reason TEXT,
    detail TEXT,
    status TEXT NOT NULL DEFAULT 'open',
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tickets_order ON tickets(order_id);

CREATE TABLE IF NOT EXISTS coupons (
    coupon_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    amount REAL NOT NULL,
    min_spend REAL NOT NULL,
    reason TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS coupons_customer ON coupons(customer_id);

-- Every change the agent makes to an order (address, size, colour, cancellation), with the value
-- before and after: what a person checks when a customer disputes a change.
CREATE TABLE IF NOT EXISTS order_changes (
    order_id TEXT NOT NULL,
    field TEXT NOT NULL,
    old_value TEXT,
    new_value TEXT,
    source TEXT NOT NULL,
    changed_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS order_changes_order ON order_changes(order_id);
