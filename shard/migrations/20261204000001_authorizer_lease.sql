-- One decision-maker per cell: the replica holding this lease decides every
-- authorization; the others follow the log as hot standbys and forward.
-- `generation` goes up each time the lease changes hands.
CREATE TABLE authorizer_lease (
    id          smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    holder      uuid NOT NULL,
    holder_url  text NOT NULL,
    generation  bigint NOT NULL,
    expires_at  timestamptz NOT NULL
);
