//! Recent windows, shared. Every fresh join of a conversation answers with the same window
//! until the conversation changes, so its JSON is built once and the bytes shared by every
//! socket that joins meanwhile (a 100-message window can be megabytes: building it per join
//! was the dearest thing a client could ask for); every page of it is rendered from the same
//! window, read from the store once. Bounded in bytes; the write pipeline makes an entry stale
//! when it publishes a change to its conversation.

use crate::protocol::{ConversationId, Message};
use crate::server::store::Window;
use axum::extract::ws::Utf8Bytes;
use lru::LruCache;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A conversation's serialized window and the highest sequence number in it.
#[derive(Clone, Debug)]
pub struct Joined {
    /// The `subscribed` frame.
    pub text: Utf8Bytes,
    /// The change number it brings a socket to.
    pub last_change: u64,
}

struct Entry {
    /// Changes with every write to the conversation; unique over the whole cache's life, so an
    /// entry dropped and made again never matches an old one.
    generation: u64,
    joined: Option<Joined>,
    /// The window itself, and about how many bytes it holds.
    window: Option<(Arc<Window>, usize)>,
}

impl Entry {
    fn bytes(&self) -> usize {
        self.joined.as_ref().map_or(0, |j| j.text.len()) + self.window.as_ref().map_or(0, |w| w.1)
    }
}

/// About how many bytes a window holds in memory (its strings and its structs).
fn window_bytes(window: &Window) -> usize {
    let message = |m: &Message| {
        std::mem::size_of::<Message>()
            + m.id.0.len()
            + m.author.id.0.len()
            + m.author.name.len()
            + m.body.len()
            + m.client_id.as_ref().map_or(0, String::len)
            + m.mentions.iter().map(|u| 24 + u.0.len()).sum::<usize>()
            + m.reactions
                .iter()
                .map(|r| {
                    64 + r.emoji.len()
                        + r.users
                            .iter()
                            .map(|u| 48 + u.id.0.len() + u.name.len())
                            .sum::<usize>()
                })
                .sum::<usize>()
            + m.thread.as_ref().map_or(0, |_| 48)
    };
    std::mem::size_of::<Window>() + window.messages.iter().map(message).sum::<usize>()
}

/// The cache: conversation key → its current generation and, if built since, its window.
pub struct WindowFrames {
    budget: usize,
    next: AtomicU64,
    entries: Mutex<(LruCache<ConversationId, Entry>, usize)>,
}

impl WindowFrames {
    /// A cache holding about `budget` bytes of frames at most.
    pub fn new(budget: usize) -> Self {
        WindowFrames {
            budget,
            next: AtomicU64::new(1),
            entries: Mutex::new((LruCache::unbounded(), 0)),
        }
    }

    fn fresh(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Something cached for `key`, or the generation to build it for.
    fn lookup<T>(&self, key: ConversationId, read: impl Fn(&Entry) -> Option<T>) -> Result<T, u64> {
        let mut guard = self.entries.lock().expect("frames lock");
        if let Some(entry) = guard.0.get(&key) {
            return read(entry).ok_or(entry.generation);
        }
        let generation = self.fresh();
        guard.0.put(
            key,
            Entry {
                generation,
                joined: None,
                window: None,
            },
        );
        Err(generation)
    }

    /// Keeps what was built for `generation` (`fill` returns the bytes it added), unless the
    /// conversation changed meanwhile; then evicts the least recently used past the budget.
    fn keep(&self, key: ConversationId, generation: u64, fill: impl FnOnce(&mut Entry) -> usize) {
        let mut guard = self.entries.lock().expect("frames lock");
        let (entries, bytes) = &mut *guard;
        let Some(entry) = entries.peek_mut(&key) else {
            return;
        };
        if entry.generation != generation {
            return;
        }
        *bytes += fill(entry);
        while *bytes > self.budget {
            match entries.pop_lru() {
                Some((_, old)) => *bytes -= old.bytes(),
                None => break,
            }
        }
    }

    /// The cached join answer of `key`, or the generation to build one for.
    pub fn get(&self, key: ConversationId) -> Result<Joined, u64> {
        self.lookup(key, |e| e.joined.clone())
    }

    /// Keeps a join answer built for `generation`, unless the conversation changed meanwhile.
    pub fn put(&self, key: ConversationId, generation: u64, joined: Joined) {
        self.keep(key, generation, |entry| match entry.joined {
            Some(_) => 0,
            None => {
                let added = joined.text.len();
                entry.joined = Some(joined);
                added
            }
        });
    }

    /// The cached recent window of `key`, or the generation to read one for.
    pub fn window(&self, key: ConversationId) -> Result<Arc<Window>, u64> {
        self.lookup(key, |e| e.window.as_ref().map(|w| w.0.clone()))
    }

    /// Keeps a window read for `generation`, unless the conversation changed meanwhile.
    pub fn put_window(&self, key: ConversationId, generation: u64, window: Arc<Window>) {
        self.keep(key, generation, |entry| match entry.window {
            Some(_) => 0,
            None => {
                let added = window_bytes(&window);
                entry.window = Some((window, added));
                added
            }
        });
    }

    /// The conversation changed: what is cached for it is stale.
    pub fn invalidate(&self, key: ConversationId) {
        let generation = self.fresh();
        let mut guard = self.entries.lock().expect("frames lock");
        let (entries, bytes) = &mut *guard;
        if let Some(entry) = entries.peek_mut(&key) {
            *bytes -= entry.bytes();
            entry.joined = None;
            entry.window = None;
            entry.generation = generation;
        }
    }

    /// Forgets everything (changes may have been missed): what is being built now is not
    /// kept either.
    pub fn clear(&self) {
        let mut guard = self.entries.lock().expect("frames lock");
        guard.0.clear();
        guard.1 = 0;
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.entries.lock().expect("frames lock").1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Author, UserId};

    fn joined(text: &str, last_change: u64) -> Joined {
        Joined {
            text: text.to_string().into(),
            last_change,
        }
    }

    const G: ConversationId = ConversationId(1);

    #[test]
    fn a_window_is_built_once_until_the_conversation_changes() {
        let frames = WindowFrames::new(1000);
        let generation = frames.get(G).unwrap_err();
        frames.put(G, generation, joined("w1", 1));
        assert_eq!(frames.get(G).unwrap().text.as_str(), "w1");
        frames.invalidate(G);
        let next = frames.get(G).unwrap_err();
        assert_ne!(next, generation);
        // A window built before the change is not kept.
        frames.put(G, generation, joined("stale", 1));
        assert!(frames.get(G).is_err());
        frames.put(G, next, joined("w2", 2));
        assert_eq!(frames.get(G).unwrap().last_change, 2);
    }

    fn window(body: &str) -> Arc<Window> {
        let author = Author {
            id: UserId("u1".into()),
            name: "Ada".into(),
        };
        let message = Message {
            body: body.into(),
            ..Message::sample(G, 1, author, chrono::Utc::now())
        };
        Arc::new(Window {
            messages: vec![message],
            has_older: false,
            last_change: 1,
        })
    }

    #[test]
    fn a_window_is_read_once_until_the_conversation_changes() {
        let frames = WindowFrames::new(100_000);
        let generation = frames.window(G).unwrap_err();
        frames.put_window(G, generation, window("w1"));
        assert_eq!(frames.window(G).unwrap().messages[0].body, "w1");
        // The join answer is cached beside it, and goes with it.
        let joined_generation = frames.get(G).unwrap_err();
        assert_eq!(joined_generation, generation);
        frames.put(G, generation, joined("j1", 1));
        assert!(frames.get(G).is_ok() && frames.window(G).is_ok());
        let held = frames.bytes();
        assert!(held > "j1".len() + "w1".len(), "both counted: {held}");
        frames.invalidate(G);
        assert_eq!(frames.bytes(), 0);
        assert!(frames.window(G).is_err() && frames.get(G).is_err());
        // A window read before the change is not kept.
        frames.put_window(G, generation, window("stale"));
        assert!(frames.window(G).is_err());
    }

    #[test]
    fn windows_stay_within_the_byte_budget() {
        let one = window_bytes(&window(&"x".repeat(1000)));
        let frames = WindowFrames::new(2 * one + one / 2);
        for key in [1, 2, 3].map(ConversationId) {
            let generation = frames.window(key).unwrap_err();
            frames.put_window(key, generation, window(&"x".repeat(1000)));
        }
        assert!(frames.bytes() <= 2 * one + one / 2);
        assert!(frames.window(ConversationId(1)).is_err(), "the oldest went");
        assert!(frames.window(ConversationId(3)).is_ok(), "the newest stays");
    }

    #[test]
    fn frames_stay_within_their_byte_budget() {
        let frames = WindowFrames::new(10);
        for key in [1, 2, 3].map(ConversationId) {
            let generation = frames.get(key).unwrap_err();
            frames.put(key, generation, joined("xxxxxx", 1));
        }
        assert!(frames.bytes() <= 10);
        assert!(frames.get(ConversationId(3)).is_ok(), "the newest stays");
    }
}
