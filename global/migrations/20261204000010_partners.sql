-- Partners: the callers allowed to send events and authorizations. A key is
-- stored only as its SHA-256 (keys are 256 random bits, so a fast hash is
-- enough); at most two keys of a partner are live (during a rotation).

CREATE TABLE partners (
    partner_id   UUID PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    scopes       TEXT[] NOT NULL,
    rate_per_sec INTEGER NOT NULL CHECK (rate_per_sec > 0),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at   TIMESTAMPTZ
);

CREATE TABLE partner_keys (
    key_hash   BYTEA PRIMARY KEY,
    partner_id UUID NOT NULL REFERENCES partners (partner_id),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    retired_at TIMESTAMPTZ
);

CREATE INDEX partner_keys_live ON partner_keys (partner_id) WHERE retired_at IS NULL;

-- The credit policy: the limit a new card gets, per currency. Operators
-- change it; a currency without a row falls back to the configured default.
CREATE TABLE credit_policy (
    currency      TEXT PRIMARY KEY,
    default_limit BIGINT NOT NULL CHECK (default_limit > 0),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
