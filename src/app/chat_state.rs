//! The client's view of one open channel, as a plain struct so its rules are tested without
//! a browser: messages kept in sequence order, never twice, at most the window's worth.

use crate::protocol::{
    channel_key, ChannelHistory, ChannelInfo, Message, MessageId, HISTORY_WINDOW,
};

/// The messages the client shows for one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelLog {
    /// The channel.
    pub channel: ChannelInfo,
    /// Shown messages, in increasing `seq`.
    pub messages: Vec<Message>,
    /// The highest sequence number ever seen here (deleted ones included).
    seen_seq: u64,
}

impl ChannelLog {
    /// Starts from a server snapshot.
    pub fn new(history: ChannelHistory) -> Self {
        let mut log = ChannelLog {
            channel: history.channel,
            messages: Vec::new(),
            seen_seq: 0,
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

    /// Adds a message in order, ignoring one already shown.
    pub fn apply_message(&mut self, message: Message) {
        if !self.is_for(&message.channel) {
            return;
        }
        self.seen_seq = self.seen_seq.max(message.seq);
        match self.messages.binary_search_by_key(&message.seq, |m| m.seq) {
            Ok(_) => {}
            Err(at) => self.messages.insert(at, message),
        }
        let excess = self.messages.len().saturating_sub(HISTORY_WINDOW);
        self.messages.drain(..excess);
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
    fn at_most_the_window_is_kept() {
        let mut log = log(&[]);
        for seq in 1..=105 {
            log.apply_message(msg(seq));
        }
        assert_eq!(log.messages.len(), HISTORY_WINDOW);
        assert_eq!(log.messages[0].seq, 6);
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
