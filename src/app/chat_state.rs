//! The client's view of one open channel, as a plain struct so its rules are tested without
//! a browser: messages kept in sequence order, never twice, older pages prepended without gaps,
//! and the user's own messages shown at once while they are on their way.

use crate::protocol::{channel_key, ChannelHistory, ChannelInfo, Message, MessageId};

/// The most messages kept on screen; the oldest go first.
pub const MAX_SHOWN: usize = 1000;

/// Where one of the user's own messages is on its way to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendingState {
    /// Sent (or waiting for the connection); no acknowledgement yet.
    Sending,
    /// The server acknowledged it; the message itself is on its way.
    Sent,
    /// It could not be delivered; the user may retry.
    Failed(String),
}

/// A message the user wrote that the server has not shown back yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The client's id for it: a retry reuses it, so the server stores it once.
    pub client_id: String,
    /// The text.
    pub body: String,
    /// How far it got.
    pub state: PendingState,
}

/// The messages the client shows for one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelLog {
    /// The channel.
    pub channel: ChannelInfo,
    /// Shown messages, in increasing `seq`.
    pub messages: Vec<Message>,
    /// The user's own messages on their way, in the order written.
    pub pending: Vec<Pending>,
    /// The highest sequence number ever seen here (deleted ones included).
    seen_seq: u64,
    /// Whether older messages may exist before the first one shown.
    pub has_older: bool,
}

impl ChannelLog {
    /// Starts from a server snapshot.
    pub fn new(history: ChannelHistory) -> Self {
        let mut log = ChannelLog {
            channel: history.channel,
            messages: Vec::new(),
            pending: Vec::new(),
            seen_seq: 0,
            has_older: false,
        };
        log.replace(history.messages);
        log
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.channel.name
    }

    /// Whether an event about `channel` belongs here.
    pub fn is_for(&self, channel: &str) -> bool {
        channel_key(channel) == channel_key(&self.channel.name)
    }

    /// What to ask for after a reconnect: everything after this.
    pub fn seen_seq(&self) -> u64 {
        self.seen_seq
    }

    /// The oldest sequence number shown (where deletions matter from, on a catch-up).
    pub fn oldest_seq(&self) -> Option<u64> {
        self.messages.first().map(|m| m.seq)
    }

    /// Adds a message in order, ignoring one already shown; it replaces the pending copy
    /// of the user's own message.
    pub fn apply_message(&mut self, message: Message) {
        if !self.is_for(&message.channel) {
            return;
        }
        if let Some(id) = &message.client_id {
            self.pending.retain(|p| &p.client_id != id);
        }
        self.seen_seq = self.seen_seq.max(message.seq);
        match self.messages.binary_search_by_key(&message.seq, |m| m.seq) {
            Ok(_) => {}
            Err(at) => self.messages.insert(at, message),
        }
        let excess = self.messages.len().saturating_sub(MAX_SHOWN);
        if excess > 0 {
            self.messages.drain(..excess);
            self.has_older = true;
        }
    }

    /// Puts a page of older messages (oldest first) in front of what is shown.
    pub fn prepend_older(&mut self, page: Vec<Message>, page_size: usize) {
        let first = self.oldest_seq().unwrap_or(u64::MAX);
        // A full page means there may be more before it.
        self.has_older = page.len() >= page_size;
        let older: Vec<Message> = page
            .into_iter()
            .filter(|m| self.is_for(&m.channel) && m.seq < first)
            .collect();
        self.messages.splice(0..0, older);
    }

    /// Shows one of the user's own messages at once, as sending.
    pub fn add_pending(&mut self, client_id: String, body: String) {
        self.pending.push(Pending {
            client_id,
            body,
            state: PendingState::Sending,
        });
    }

    /// Moves a pending message to `state` (if it is still pending).
    pub fn set_pending_state(&mut self, client_id: &str, state: PendingState) {
        if let Some(p) = self.pending.iter_mut().find(|p| p.client_id == client_id) {
            p.state = state;
        }
    }

    /// Pending messages still waiting to be (re)sent.
    pub fn sending(&self) -> Vec<Pending> {
        self.pending
            .iter()
            .filter(|p| p.state == PendingState::Sending)
            .cloned()
            .collect()
    }

    /// Removes a deleted message.
    pub fn apply_deleted(&mut self, id: &MessageId) {
        self.messages.retain(|m| &m.id != id);
    }

    /// Applies the server's answer to a (re)subscribe.
    pub fn apply_subscribed(&mut self, messages: Vec<Message>, removed: &[u64], reset: bool) {
        if reset {
            self.replace(messages);
            return;
        }
        self.messages.retain(|m| !removed.contains(&m.seq));
        for message in messages {
            self.apply_message(message);
        }
    }

    fn replace(&mut self, mut messages: Vec<Message>) {
        messages.sort_by_key(|m| m.seq);
        messages.dedup_by_key(|m| m.seq);
        self.seen_seq = messages.last().map_or(0, |m| m.seq);
        self.has_older = messages.first().is_some_and(|m| m.seq > 1);
        self.messages.clear();
        for message in messages {
            self.apply_message(message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Author, UserId};
    use chrono::Utc;

    fn msg(seq: u64) -> Message {
        Message {
            id: MessageId(format!("m{seq}")),
            channel: "general".into(),
            seq,
            author: Author {
                id: UserId("u".into()),
                name: "Ada".into(),
            },
            body: format!("body {seq}"),
            sent_at: Utc::now(),
            client_id: None,
        }
    }

    fn log(seqs: &[u64]) -> ChannelLog {
        ChannelLog::new(ChannelHistory {
            channel: ChannelInfo {
                name: "general".into(),
                created_at: Utc::now(),
            },
            messages: seqs.iter().copied().map(msg).collect(),
        })
    }

    fn seqs(log: &ChannelLog) -> Vec<u64> {
        log.messages.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn messages_stay_ordered_and_unique() {
        let mut log = log(&[1, 2]);
        log.apply_message(msg(4));
        log.apply_message(msg(3));
        log.apply_message(msg(3));
        assert_eq!(seqs(&log), [1, 2, 3, 4]);
        assert_eq!(log.seen_seq(), 4);
    }

    #[test]
    fn other_channels_are_ignored() {
        let mut log = log(&[1]);
        let mut elsewhere = msg(2);
        elsewhere.channel = "random".into();
        log.apply_message(elsewhere);
        assert_eq!(seqs(&log), [1]);
        assert!(log.is_for("GENERAL"));
    }

    #[test]
    fn at_most_max_shown_are_kept() {
        let mut log = log(&[]);
        for seq in 1..=(MAX_SHOWN as u64 + 5) {
            log.apply_message(msg(seq));
        }
        assert_eq!(log.messages.len(), MAX_SHOWN);
        assert_eq!(log.messages[0].seq, 6);
        assert!(log.has_older);
    }

    #[test]
    fn older_pages_go_in_front_without_repeats() {
        let mut log = log(&[5, 6, 7]);
        assert!(log.has_older);
        log.prepend_older(vec![msg(3), msg(4), msg(5)], 3);
        assert_eq!(seqs(&log), [3, 4, 5, 6, 7]);
        assert!(log.has_older, "a full page means there may be more");
        log.prepend_older(vec![msg(1)], 3);
        assert_eq!(seqs(&log), [1, 3, 4, 5, 6, 7]);
        assert!(!log.has_older);
        assert_eq!(log.oldest_seq(), Some(1));
    }

    #[test]
    fn own_messages_show_pending_until_the_server_echoes_them() {
        let mut log = log(&[1]);
        log.add_pending("c1".into(), "hello".into());
        log.add_pending("c2".into(), "again".into());
        assert_eq!(log.sending().len(), 2);
        log.set_pending_state("c2", PendingState::Failed("offline".into()));
        assert_eq!(log.sending().len(), 1);
        let mut echoed = msg(2);
        echoed.client_id = Some("c1".into());
        log.apply_message(echoed);
        assert_eq!(seqs(&log), [1, 2]);
        assert_eq!(log.pending.len(), 1);
        assert_eq!(log.pending[0].state, PendingState::Failed("offline".into()));
    }

    #[test]
    fn deletions_remove_but_keep_the_high_water_mark() {
        let mut log = log(&[1, 2, 3]);
        log.apply_deleted(&MessageId("m3".into()));
        assert_eq!(seqs(&log), [1, 2]);
        assert_eq!(log.seen_seq(), 3);
    }

    #[test]
    fn catch_up_fills_gaps_and_drops_removed() {
        let mut log = log(&[1, 2, 3]);
        log.apply_subscribed(vec![msg(4), msg(5)], &[2], false);
        assert_eq!(seqs(&log), [1, 3, 4, 5]);
        log.apply_subscribed(vec![msg(9), msg(10)], &[], true);
        assert_eq!(seqs(&log), [9, 10]);
        assert_eq!(log.seen_seq(), 10);
    }
}
