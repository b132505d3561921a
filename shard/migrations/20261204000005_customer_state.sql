-- A customer's placement in this cell: writable only while active, at its
-- current epoch (invariant 3). Fenced while a move copies its tail; moved out
-- once another cell owns it. Only an explicit operation changes either.
ALTER TABLE customers ADD COLUMN state text NOT NULL DEFAULT 'active'
    CHECK (state IN ('active', 'fenced', 'moved_out'));
