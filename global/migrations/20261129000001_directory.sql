-- The directory: shards, where each customer lives, and what identifies them.

CREATE TABLE shards (
    id               TEXT PRIMARY KEY,
    public_url       TEXT NOT NULL,
    internal_url     TEXT NOT NULL,
    broker_bootstrap TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'active'
                     CHECK (state IN ('active', 'draining', 'closed')),
    capacity         BIGINT NOT NULL CHECK (capacity > 0),
    customers        BIGINT NOT NULL DEFAULT 0 CHECK (customers >= 0),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE customers (
    customer_id UUID PRIMARY KEY,
    shard_id    TEXT NOT NULL REFERENCES shards (id),
    epoch       BIGINT NOT NULL DEFAULT 1 CHECK (epoch >= 1),
    state       TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'active', 'moving', 'closed')),
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX customers_by_shard ON customers (shard_id);

-- `value` is the normalised login, the account number, or the HMAC of a PAN
-- (never the PAN). `hint` is what may be shown (last four digits of a card).
CREATE TABLE identifiers (
    kind        TEXT NOT NULL CHECK (kind IN ('card', 'account', 'login')),
    value       TEXT NOT NULL,
    customer_id UUID NOT NULL REFERENCES customers (customer_id) ON DELETE CASCADE,
    hint        TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, value)
);

CREATE INDEX identifiers_by_customer ON identifiers (customer_id);

CREATE TABLE credentials (
    customer_id   UUID PRIMARY KEY REFERENCES customers (customer_id) ON DELETE CASCADE,
    password_hash TEXT NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
