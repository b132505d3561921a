-- An authorization's hold ends: settled, reversed by the network, or expired
-- after a business time (card networks use days). `released` marks the last
-- two; `authorized_at` is when the authorization was decided.
ALTER TABLE card_purchases ADD COLUMN released boolean NOT NULL DEFAULT false;
ALTER TABLE card_purchases ADD COLUMN authorized_at timestamptz;
CREATE INDEX card_purchases_open ON card_purchases (authorized_at)
    WHERE status = 'authorized' AND NOT released;
