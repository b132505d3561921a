-- Operator holds on the cell's consumers, shared by every replica of the cell
-- and kept across restarts (each replica follows this table).
CREATE TABLE consumer_holds (
    name       text PRIMARY KEY,
    held       boolean NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);
