-- A transfer from another cell is credited once, whoever the recipient: the
-- credit endpoint looks its id up across customers.
CREATE INDEX events_transfer_received ON events (event_id)
    WHERE event_id LIKE 'transfer:%:received';
