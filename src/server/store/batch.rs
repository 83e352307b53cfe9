//! Preparing a batch of posts, the same for every driver: which messages are new (a client
//! id sent before answers with the original), whose author must be a member or joins first,
//! and which change number each join and message takes. The driver reads and writes inside
//! its transaction; what it read is decided here.
//!
//! Numbering: in each conversation the batch's joins take the first numbers, in batch order,
//! then its messages. So a post that joins is numbered after its own join, and publishing
//! every join of the batch before its messages publishes each conversation in order.

use super::{Admission, Appended, MemberChange, NewMessage};
use crate::error::AppError;
use crate::protocol::{Author, ConversationId, Message, MessageId, UserId};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Where one message of a batch stands while the batch is prepared.
pub(super) enum Slot<'a> {
    /// Answered already (its client id was stored before, or it may not be stored).
    Done(Box<Result<Appended, AppError>>),
    /// The same client id as an earlier message of this batch.
    SameAs(usize),
    /// To number and store.
    New(&'a NewMessage),
}

/// An (author, client id) pair, as stored.
pub(super) type SentKey = (String, String);

/// A membership to look up: (conversation, user).
pub(super) type MemberKey = (ConversationId, UserId);

/// A join to store: its author becomes a member of the conversation, with its number.
pub(super) struct Join<'a> {
    pub conversation: ConversationId,
    pub author: &'a Author,
    pub change: u64,
}

impl<'a> Join<'a> {
    /// A join that took number `change`.
    pub fn numbered(conversation: ConversationId, author: &'a Author, change: u64) -> Self {
        Join {
            conversation,
            author,
            change,
        }
    }
}

/// A batch being prepared.
pub(super) struct Batch<'a> {
    slots: Vec<Slot<'a>>,
    /// Its joins: the slot of the post that joins, the conversation and who joins.
    joins: Vec<(usize, ConversationId, &'a Author)>,
}

/// A prepared batch, numbered: what to insert, and the answers once it commits.
pub(super) struct Numbered<'a> {
    /// One answer per message of the batch, in order (see [`Numbered::answers`]).
    results: Vec<Result<Appended, AppError>>,
    /// New members to insert, before the messages (their read position is before them).
    pub joins: Vec<Join<'a>>,
    /// The slot (index in the batch) of the post that makes each of `joins`.
    join_slots: Vec<usize>,
    /// New messages to insert.
    pub rows: Vec<Message>,
}

impl Numbered<'_> {
    /// The answers, one per message of the batch, given where each join's reading starts as
    /// the driver stored it (`reads`, in the order of [`Numbered::joins`]).
    pub fn answers(mut self, reads: &[u64]) -> Vec<Result<Appended, AppError>> {
        for (&slot, &read_seq) in self.join_slots.iter().zip(reads) {
            if let Some(Ok(Appended {
                joined: Some(join), ..
            })) = self.results.get_mut(slot)
            {
                join.read_seq = read_seq;
            }
        }
        self.results
    }
}

/// The (author, client id) pairs of a batch, to look up as sent before.
pub(super) fn client_ids(batch: &[NewMessage]) -> Vec<(&str, &str)> {
    batch
        .iter()
        .filter_map(|new| {
            new.client_id
                .as_deref()
                .map(|id| (new.author.id.0.as_str(), id))
        })
        .collect()
}

impl<'a> Batch<'a> {
    /// Sorts a batch out against the messages `stored` before under its client ids.
    pub fn new(batch: &'a [NewMessage], mut stored: HashMap<SentKey, Message>) -> Self {
        let mut slots: Vec<Slot> = Vec::with_capacity(batch.len());
        let mut first_of: HashMap<SentKey, usize> = HashMap::new();
        for new in batch {
            if let Some(client_id) = &new.client_id {
                let key = (new.author.id.0.clone(), client_id.clone());
                if let Some(&earlier) = first_of.get(&key) {
                    slots.push(Slot::SameAs(earlier));
                    continue;
                }
                first_of.insert(key.clone(), slots.len());
                if let Some(message) = stored.remove(&key) {
                    slots.push(Slot::Done(Box::new(Ok(Appended {
                        message,
                        fresh: false,
                        parent: None,
                        joined: None,
                    }))));
                    continue;
                }
            }
            slots.push(Slot::New(new));
        }
        Batch {
            slots,
            joins: Vec::new(),
        }
    }

    /// The memberships the new messages depend on, once each: the conversation a post must
    /// be a member of, or the one it joins.
    pub fn memberships_asked(&self) -> Vec<MemberKey> {
        let mut seen = HashSet::new();
        self.new_messages()
            .filter_map(|new| match new.admission {
                Admission::Unchecked => None,
                Admission::MemberOf(governing) => Some((governing, new.author.id.clone())),
                Admission::Joins => Some((new.conversation, new.author.id.clone())),
            })
            .filter(|key| seen.insert(key.clone()))
            .collect()
    }

    /// Settles membership given the `members` found among those asked: a post whose author
    /// is not a member is refused, a post that joins makes its author one (once per batch).
    pub fn admit(&mut self, mut members: HashSet<MemberKey>) {
        for index in 0..self.slots.len() {
            let Slot::New(new) = self.slots[index] else {
                continue;
            };
            match new.admission {
                Admission::Unchecked => {}
                Admission::MemberOf(governing) => {
                    if !members.contains(&(governing, new.author.id.clone())) {
                        let refused = Err(AppError::NoSuchConversation);
                        self.slots[index] = Slot::Done(Box::new(refused));
                    }
                }
                Admission::Joins => {
                    if members.insert((new.conversation, new.author.id.clone())) {
                        self.joins.push((index, new.conversation, &new.author));
                    }
                }
            }
        }
    }

    /// How many numbers each conversation gives out (joins and messages), in ascending id
    /// order: the order in which every transaction locks conversations.
    pub fn counts(&self) -> BTreeMap<ConversationId, u64> {
        let mut counts: BTreeMap<ConversationId, u64> = BTreeMap::new();
        for (_, conversation, _) in &self.joins {
            *counts.entry(*conversation).or_default() += 1;
        }
        for new in self.new_messages() {
            *counts.entry(new.conversation).or_default() += 1;
        }
        counts
    }

    /// Numbers the batch from each conversation's first new number (`next`; a conversation
    /// missing from it does not exist, and its posts fail).
    pub fn number(
        self,
        mut next: HashMap<ConversationId, u64>,
        now: DateTime<Utc>,
    ) -> Numbered<'a> {
        let mut joins = Vec::with_capacity(self.joins.len());
        let mut join_slots = Vec::with_capacity(self.joins.len());
        let mut joined_by_slot = HashMap::new();
        for (slot, conversation, author) in self.joins {
            let Some(number) = next.get_mut(&conversation) else {
                continue;
            };
            let change = *number;
            *number += 1;
            joined_by_slot.insert(
                slot,
                MemberChange {
                    conversation,
                    change,
                    read_seq: 0, // known once stored: see `answers`
                },
            );
            joins.push(Join::numbered(conversation, author, change));
            join_slots.push(slot);
        }
        let mut rows: Vec<Message> = Vec::new();
        let mut results: Vec<Result<Appended, AppError>> = Vec::with_capacity(self.slots.len());
        for (index, slot) in self.slots.into_iter().enumerate() {
            let result = match slot {
                Slot::Done(result) => *result,
                Slot::SameAs(earlier) => match &results[earlier] {
                    Ok(first) => Ok(Appended {
                        message: first.message.clone(),
                        fresh: false,
                        parent: None,
                        joined: None,
                    }),
                    Err(e) => Err(e.clone()),
                },
                Slot::New(new) => match next.get_mut(&new.conversation) {
                    None => Err(AppError::NoSuchConversation),
                    Some(seq) => {
                        let message = fresh_message(new, new.conversation, *seq, now);
                        *seq += 1;
                        rows.push(message.clone());
                        Ok(Appended {
                            message,
                            fresh: true,
                            parent: None,
                            joined: joined_by_slot.remove(&index),
                        })
                    }
                },
            };
            results.push(result);
        }
        Numbered {
            results,
            joins,
            join_slots,
            rows,
        }
    }

    fn new_messages(&self) -> impl Iterator<Item = &'a NewMessage> + '_ {
        self.slots.iter().filter_map(|slot| match slot {
            Slot::New(new) => Some(*new),
            _ => None,
        })
    }
}

/// A new message as stored in `conversation` (its own, or a reply's thread) with number
/// `seq` at `now`.
pub(super) fn fresh_message(
    new: &NewMessage,
    conversation: ConversationId,
    seq: u64,
    now: DateTime<Utc>,
) -> Message {
    Message {
        id: MessageId(super::sqlite::new_message_id()),
        conversation,
        seq,
        change: seq,
        author: new.author.clone(),
        body: new.body.clone(),
        sent_at: now,
        edited_at: None,
        deleted: false,
        reactions: Vec::new(),
        thread: None,
        mentions: new.mentions.clone(),
        mentions_all: new.mentions_all,
        client_id: new.client_id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(conversation: u64, author: &str, admission: Admission) -> NewMessage {
        NewMessage {
            conversation: ConversationId(conversation),
            author: Author {
                id: UserId(author.into()),
                name: author.into(),
            },
            body: "hi".into(),
            client_id: None,
            mentions: vec![],
            mentions_all: false,
            admission,
        }
    }

    #[test]
    fn joins_take_each_conversations_first_numbers_once_per_author() {
        let posts = [
            post(7, "ada", Admission::Joins),
            post(3, "bo", Admission::Joins),
            post(7, "ada", Admission::Joins), // joined by the first
            post(7, "cy", Admission::Joins),
            post(7, "dee", Admission::Joins), // a member already
        ];
        let mut batch = Batch::new(&posts, HashMap::new());
        assert_eq!(batch.memberships_asked().len(), 4, "ada's asked once");
        batch.admit([(ConversationId(7), UserId("dee".into()))].into());
        let counts = batch.counts();
        assert_eq!(
            counts.into_iter().collect::<Vec<_>>(),
            [(ConversationId(3), 2), (ConversationId(7), 6)]
        );
        let next = [(ConversationId(3), 11), (ConversationId(7), 21)].into();
        let numbered = batch.number(next, Utc::now());
        let joins: Vec<(u64, &str, u64)> = numbered
            .joins
            .iter()
            .map(|j| (j.conversation.0, j.author.name.as_str(), j.change))
            .collect();
        assert_eq!(joins, [(7, "ada", 21), (3, "bo", 11), (7, "cy", 22)]);
        // Where each join's reading starts, as a driver stored it, reaches its own post.
        let posted: Vec<(u64, Option<(u64, u64)>)> = numbered
            .answers(&[201, 101, 202])
            .iter()
            .map(|r| {
                let a = r.as_ref().unwrap();
                (
                    a.message.seq,
                    a.joined.as_ref().map(|j| (j.change, j.read_seq)),
                )
            })
            .collect();
        assert_eq!(
            posted,
            [
                (23, Some((21, 201))),
                (12, Some((11, 101))),
                (24, None),
                (25, Some((22, 202))),
                (26, None)
            ]
        );
    }

    #[test]
    fn a_post_of_a_non_member_is_refused_and_a_missing_conversation_joins_nobody() {
        let posts = [
            post(1, "ada", Admission::MemberOf(ConversationId(1))),
            post(2, "bo", Admission::Joins),
            post(1, "cy", Admission::Unchecked),
        ];
        let mut batch = Batch::new(&posts, HashMap::new());
        batch.admit(HashSet::new());
        assert_eq!(
            batch.counts().into_iter().collect::<Vec<_>>(),
            [(ConversationId(1), 1), (ConversationId(2), 2)]
        );
        // Conversation 2 does not exist: no number for it.
        let numbered = batch.number([(ConversationId(1), 5)].into(), Utc::now());
        assert!(numbered.joins.is_empty());
        let results = numbered.answers(&[]);
        assert_eq!(
            results[0].as_ref().unwrap_err(),
            &AppError::NoSuchConversation
        );
        assert_eq!(
            results[1].as_ref().unwrap_err(),
            &AppError::NoSuchConversation
        );
        assert_eq!(results[2].as_ref().unwrap().message.seq, 5);
    }
}
