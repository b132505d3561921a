-- A network reference is scoped by card (invariant 8): another card's
-- purchase with the same reference is its own purchase.
ALTER TABLE card_purchases DROP CONSTRAINT card_purchases_pkey;
ALTER TABLE card_purchases ADD PRIMARY KEY (card_id, network_reference);
CREATE INDEX card_purchases_customer ON card_purchases (customer_id, network_reference);
