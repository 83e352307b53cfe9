//! The client's view of one open conversation, as a plain struct so its rules are tested
//! without a browser: messages kept in `seq` order, never twice, each in its newest state
//! (a change with a lower number never overwrites a higher one), older pages prepended
//! without gaps, and the user's own messages shown at once while they are on their way.

use crate::protocol::{ConversationHistory, ConversationId, ConversationInfo, Message, MessageId};

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

/// The messages the client shows for one conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationLog {
    /// The conversation.
    pub info: ConversationInfo,
    /// Shown messages, in increasing `seq`, deleted ones left out.
    pub messages: Vec<Message>,
    /// The user's own messages on their way, in the order written.
    pub pending: Vec<Pending>,
    /// The last change number applied: a reconnect resumes after it.
    last_change: u64,
    /// Whether older messages exist before the first one shown.
    pub has_older: bool,
    /// The newest message read when the conversation was opened (the "New" divider).
    pub read_seq: u64,
    /// Whether the reader is a member (a preview of a public channel has nothing unread).
    pub member: bool,
}

impl ConversationLog {
    /// Starts from a server snapshot.
    pub fn new(history: ConversationHistory) -> Self {
        let mut log = ConversationLog {
            info: history.conversation,
            messages: Vec::new(),
            pending: Vec::new(),
            last_change: 0,
            has_older: false,
            read_seq: history.read_seq,
            member: history.member,
        };
        log.replace(history.messages, history.last_change, history.has_older);
        log
    }

    /// The conversation's id.
    pub fn id(&self) -> ConversationId {
        self.info.id
    }

    /// Whether an event about `conversation` belongs here.
    pub fn is_for(&self, conversation: ConversationId) -> bool {
        conversation == self.info.id
    }

    /// What to ask for after a reconnect: every change after this.
    pub fn last_change(&self) -> u64 {
        self.last_change
    }

    /// The oldest sequence number shown (where "Load older" continues from).
    pub fn oldest_seq(&self) -> Option<u64> {
        self.messages.first().map(|m| m.seq)
    }

    /// The newest sequence number shown.
    pub fn newest_seq(&self) -> Option<u64> {
        self.messages.last().map(|m| m.seq)
    }

    /// Applies a message's state (new, edited, deleted, reacted to): a deleted one leaves, a
    /// held one is replaced by a newer state, a new one is put in order. A message older than
    /// everything shown, while older ones exist, is not shown (its page is not loaded).
    pub fn apply(&mut self, message: Message) {
        if !self.is_for(message.conversation) {
            return;
        }
        self.last_change = self.last_change.max(message.change);
        if let Some(id) = &message.client_id {
            self.pending.retain(|p| &p.client_id != id);
        }
        match self.messages.binary_search_by_key(&message.seq, |m| m.seq) {
            Ok(at) if message.deleted => {
                self.messages.remove(at);
            }
            Ok(at) => {
                if self.messages[at].change < message.change {
                    self.messages[at] = message;
                }
            }
            Err(_) if message.deleted => {}
            Err(at) => {
                if at == 0 && self.has_older && !self.messages.is_empty() {
                    return;
                }
                self.messages.insert(at, message);
            }
        }
        let excess = self.messages.len().saturating_sub(MAX_SHOWN);
        if excess > 0 {
            self.messages.drain(..excess);
            self.has_older = true;
        }
    }

    /// Notes a change number that carried no message (a membership change).
    pub fn saw_change(&mut self, change: u64) {
        self.last_change = self.last_change.max(change);
    }

    /// Puts a page of older messages (oldest first) in front of what is shown; the server
    /// says whether more exist before it.
    pub fn prepend_older(&mut self, page: Vec<Message>, has_older: bool) {
        let first = self.oldest_seq().unwrap_or(u64::MAX);
        self.has_older = has_older;
        let older: Vec<Message> = page
            .into_iter()
            .filter(|m| self.is_for(m.conversation) && m.seq < first && !m.deleted)
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

    /// Removes a message at once (a deletion the server confirmed over HTTP).
    pub fn remove(&mut self, id: &MessageId) {
        self.messages.retain(|m| &m.id != id);
    }

    /// The newest message of the user's own, for "Up-arrow edits the last message".
    pub fn last_by(&self, user: &crate::protocol::UserId) -> Option<&Message> {
        self.messages.iter().rev().find(|m| &m.author.id == user)
    }

    /// Applies the server's answer to a (re)subscribe.
    pub fn apply_subscribed(
        &mut self,
        messages: Vec<Message>,
        last_change: u64,
        reset: bool,
        has_older: bool,
    ) {
        if reset {
            self.replace(messages, last_change, has_older);
            return;
        }
        for message in messages {
            self.apply(message);
        }
        self.last_change = self.last_change.max(last_change);
    }

    fn replace(&mut self, mut messages: Vec<Message>, last_change: u64, has_older: bool) {
        messages.retain(|m| !m.deleted);
        messages.sort_by_key(|m| m.seq);
        messages.dedup_by_key(|m| m.seq);
        self.messages.clear();
        self.has_older = false;
        for message in messages {
            self.apply(message);
        }
        self.has_older = has_older || self.has_older;
        self.last_change = last_change;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Author, ConversationKind, UserId};
    use chrono::Utc;

    const HERE: ConversationId = ConversationId(7);

    fn msg(seq: u64) -> Message {
        let author = Author {
            id: UserId("u".into()),
            name: "Ada".into(),
        };
        Message::sample(HERE, seq, author, Utc::now())
    }

    fn log_with(seqs: &[u64], has_older: bool) -> ConversationLog {
        ConversationLog::new(ConversationHistory {
            conversation: ConversationInfo {
                id: HERE,
                kind: ConversationKind::Public,
                name: Some("general".into()),
                people: Vec::new(),
                parent: None,
                created_at: Utc::now(),
            },
            messages: seqs.iter().copied().map(msg).collect(),
            has_older,
            last_change: seqs.last().copied().unwrap_or(0),
            read_seq: 0,
            member: true,
        })
    }

    fn log(seqs: &[u64]) -> ConversationLog {
        log_with(seqs, false)
    }

    fn seqs(log: &ConversationLog) -> Vec<u64> {
        log.messages.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn messages_stay_ordered_and_unique() {
        let mut log = log(&[1, 2]);
        log.apply(msg(4));
        log.apply(msg(3));
        log.apply(msg(3));
        assert_eq!(seqs(&log), [1, 2, 3, 4]);
        assert_eq!(log.last_change(), 4);
    }

    #[test]
    fn other_conversations_are_ignored() {
        let mut log = log(&[1]);
        let mut elsewhere = msg(2);
        elsewhere.conversation = ConversationId(8);
        log.apply(elsewhere);
        assert_eq!(seqs(&log), [1]);
    }

    #[test]
    fn at_most_max_shown_are_kept() {
        let mut log = log(&[]);
        for seq in 1..=(MAX_SHOWN as u64 + 5) {
            log.apply(msg(seq));
        }
        assert_eq!(log.messages.len(), MAX_SHOWN);
        assert_eq!(log.messages[0].seq, 6);
        assert!(log.has_older);
    }

    #[test]
    fn older_pages_go_in_front_as_the_server_says() {
        let mut log = log_with(&[5, 6, 7], true);
        assert!(log.has_older);
        log.prepend_older(vec![msg(3), msg(4), msg(5)], true);
        assert_eq!(seqs(&log), [3, 4, 5, 6, 7]);
        assert!(log.has_older);
        // A short page can still have more before it (a smaller server window): the
        // server's word counts, not the page's length.
        log.prepend_older(vec![msg(2)], true);
        assert!(log.has_older);
        log.prepend_older(vec![msg(1)], false);
        assert_eq!(seqs(&log), [1, 2, 3, 4, 5, 6, 7]);
        assert!(!log.has_older);
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
        log.apply(echoed);
        assert_eq!(seqs(&log), [1, 2]);
        assert_eq!(log.pending.len(), 1);
    }

    #[test]
    fn changes_replace_older_states_and_deletions_remove() {
        let mut log = log(&[1, 2, 3]);
        let mut edited = msg(2);
        edited.change = 5;
        edited.body = "edited".into();
        log.apply(edited.clone());
        // A late, older state of the same message does not undo the edit.
        log.apply(msg(2));
        assert_eq!(log.messages[1].body, "edited");
        let mut gone = msg(3);
        gone.change = 6;
        gone.deleted = true;
        log.apply(gone);
        assert_eq!(seqs(&log), [1, 2]);
        assert_eq!(log.last_change(), 6);
        // A deletion of something never shown changes nothing but the number.
        let mut never = msg(9);
        never.change = 9;
        never.deleted = true;
        log.apply(never);
        assert_eq!(seqs(&log), [1, 2]);
        assert_eq!(log.last_change(), 9);
    }

    #[test]
    fn an_old_message_changed_outside_the_loaded_pages_stays_out() {
        let mut log = log_with(&[5, 6], true);
        let mut old = msg(2);
        old.change = 7;
        log.apply(old);
        assert_eq!(seqs(&log), [5, 6]);
    }

    #[test]
    fn catch_up_applies_changes_and_a_reset_replaces() {
        let mut log = log(&[1, 2, 3]);
        let mut gone = msg(2);
        gone.change = 6;
        gone.deleted = true;
        log.apply_subscribed(vec![msg(4), msg(5), gone], 6, false, false);
        assert_eq!(seqs(&log), [1, 3, 4, 5]);
        log.apply_subscribed(vec![msg(9), msg(10)], 12, true, true);
        assert_eq!(seqs(&log), [9, 10]);
        assert_eq!(log.last_change(), 12);
        assert!(log.has_older);
    }
}
