-- One cell's data. Every row carries customer_id (what makes a customer movable)
-- and the customer's epoch at the time it was written.

CREATE TABLE customers (
    customer_id uuid PRIMARY KEY,
    name        text NOT NULL,
    epoch       bigint NOT NULL CHECK (epoch >= 1),
    currency    text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE SEQUENCE account_number_seq;

CREATE TABLE accounts (
    account_id  uuid PRIMARY KEY,
    customer_id uuid NOT NULL REFERENCES customers (customer_id),
    epoch       bigint NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('checking', 'savings')),
    number      text NOT NULL UNIQUE,
    currency    text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX accounts_customer ON accounts (customer_id);

CREATE TABLE cards (
    card_id       uuid PRIMARY KEY,
    customer_id   uuid NOT NULL REFERENCES customers (customer_id),
    epoch         bigint NOT NULL,
    pan_hash      text NOT NULL UNIQUE,
    last4         text NOT NULL,
    credit_limit  bigint NOT NULL CHECK (credit_limit > 0),
    -- business time and event of the limit in force (latest by business time wins)
    limit_set_at  timestamptz NOT NULL,
    limit_event   text NOT NULL,
    currency      text NOT NULL,
    blocked       boolean NOT NULL DEFAULT false,
    closing_day   int NOT NULL DEFAULT 1 CHECK (closing_day BETWEEN 1 AND 28),
    due_day       int NOT NULL DEFAULT 10 CHECK (due_day BETWEEN 1 AND 28),
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cards_customer ON cards (customer_id);

-- The ledger's book accounts: all per customer, including the bank's counter-accounts.
CREATE TABLE book_accounts (
    id          bigserial PRIMARY KEY,
    customer_id uuid NOT NULL,
    code        text NOT NULL,
    currency    text NOT NULL,
    -- sum of every posting (debits positive, credits negative), kept in the same transaction
    balance     bigint NOT NULL DEFAULT 0,
    UNIQUE (customer_id, code, currency)
);

-- Idempotency record and movement header: one row per applied business event.
CREATE TABLE events (
    event_id    text PRIMARY KEY,
    customer_id uuid NOT NULL,
    epoch       bigint NOT NULL,
    event_type  text NOT NULL,
    occurred_at timestamptz NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    source      text NOT NULL
);
CREATE INDEX events_customer ON events (customer_id, occurred_at);

-- Legs of entries: an entry is two postings with the same (event_id, entry_no),
-- a debit (amount > 0) and a credit (amount < 0).
CREATE TABLE postings (
    id              bigserial PRIMARY KEY,
    event_id        text NOT NULL REFERENCES events (event_id),
    entry_no        int NOT NULL,
    customer_id     uuid NOT NULL,
    epoch           bigint NOT NULL,
    book_account_id bigint NOT NULL REFERENCES book_accounts (id),
    currency        text NOT NULL,
    amount          bigint NOT NULL CHECK (amount <> 0),
    business_time   timestamptz NOT NULL
);
CREATE INDEX postings_account_time ON postings (book_account_id, business_time, id);
CREATE INDEX postings_event ON postings (event_id);

-- Card purchases by network reference: links an authorization to its settlement.
CREATE TABLE card_purchases (
    network_reference text PRIMARY KEY,
    customer_id       uuid NOT NULL,
    card_id           uuid NOT NULL,
    authorization_id  uuid,
    authorized_amount bigint,
    settled_amount    bigint NOT NULL DEFAULT 0,
    status            text NOT NULL CHECK (status IN ('authorized', 'settled'))
);

-- Transactional outbox of ledger facts, relayed to Topic::LedgerFacts in id order.
CREATE TABLE ledger_facts (
    id          bigserial PRIMARY KEY,
    customer_id uuid NOT NULL,
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);
CREATE INDEX ledger_facts_unsent ON ledger_facts (id) WHERE sent_at IS NULL;

CREATE TABLE transfers (
    transfer_id  uuid PRIMARY KEY,
    customer_id  uuid NOT NULL REFERENCES customers (customer_id),
    epoch        bigint NOT NULL,
    from_account uuid NOT NULL,
    to_account   uuid NOT NULL,
    amount       bigint NOT NULL CHECK (amount > 0),
    currency     text NOT NULL,
    description  text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX transfers_customer ON transfers (customer_id, created_at DESC);

-- The mortician's store of dead-lettered messages.
CREATE TABLE dead_letters (
    id               bigserial PRIMARY KEY,
    dl_partition     int NOT NULL,
    dl_offset        bigint NOT NULL,
    customer_id      uuid,
    source_topic     text NOT NULL,
    source_partition int,
    source_offset    bigint,
    msg_key          bytea,
    error            text NOT NULL,
    headers          jsonb NOT NULL,
    payload          bytea NOT NULL,
    status           text NOT NULL DEFAULT 'dead' CHECK (status IN ('dead', 'republished')),
    dead_lettered_at timestamptz NOT NULL DEFAULT now(),
    republished_at   timestamptz,
    UNIQUE (dl_partition, dl_offset)
);

-- Authorizer snapshots: in-memory state plus the log offsets it includes.
CREATE TABLE authorizer_snapshots (
    id       bigserial PRIMARY KEY,
    taken_at timestamptz NOT NULL DEFAULT now(),
    offsets  jsonb NOT NULL,
    state    jsonb NOT NULL
);
