-- Unread counts read the messages that mention everyone after a member's read position; a
-- partial index keeps that a look-up of those few messages instead of a scan of the rest.
CREATE INDEX messages_mentioning_all ON messages (conversation_id, seq) WHERE mentions_all = 1;
