-- Each alert event is delivered to each recipient in a message of its own (the operator's
-- copy apart from the workspace's, no recipient shown another's address). This records
-- which recipient has which event, so that a retry re-sends only what a recipient is
-- missing; `note` says why an address was given up (a permanent refusal). An event is
-- marked sent in alert_outbox once every current recipient has it.
CREATE TABLE alert_deliveries (
    alert_id      INTEGER NOT NULL REFERENCES alert_outbox(id) ON DELETE CASCADE,
    recipient     TEXT    NOT NULL,
    delivered_at  BIGINT  NOT NULL,
    note          TEXT,
    PRIMARY KEY (alert_id, recipient)
);
