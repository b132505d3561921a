-- A message is dead-lettered once per consumer: a crash between producing the
-- dead letter and committing the source offset dead-letters it again, under a
-- new dead-letter offset; its source position and group say it is the same.
ALTER TABLE dead_letters ADD COLUMN source_group text;
CREATE UNIQUE INDEX dead_letters_source
    ON dead_letters (source_topic, source_partition, source_offset, source_group)
    WHERE source_partition IS NOT NULL AND source_offset IS NOT NULL AND source_group IS NOT NULL;

-- Invariant 4 counts per event id: an invalid event a partner sent twice (two
-- source offsets) is one dead event until it is republished.
ALTER TABLE dead_letters ADD COLUMN event_id text;
UPDATE dead_letters SET event_id = headers->>'cellbank-event-id';
CREATE UNIQUE INDEX dead_letters_event
    ON dead_letters (source_group, customer_id, event_id)
    WHERE status = 'dead' AND event_id IS NOT NULL AND customer_id IS NOT NULL
      AND source_group IS NOT NULL;
