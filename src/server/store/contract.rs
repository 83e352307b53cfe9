//! The contract every [`Store`] driver must pass. A driver's test module calls
//! [`store_contract_tests!`](crate::store_contract_tests) with a constructor taking the window size.

use super::{NewMessage, Store};
use crate::error::AppError;
use crate::protocol::{Author, UserInfo};

/// Generates one `#[tokio::test]` per contract check for the store built by `$make(window)`.
#[macro_export]
macro_rules! store_contract_tests {
    ($make:expr) => {
        $crate::store_contract_tests!(@each $make;
            users_are_found_by_token_and_renamed,
            channel_names_are_unique_case_insensitively,
            sequence_numbers_are_dense_per_channel,
            window_keeps_only_the_most_recent,
            catch_up_returns_exactly_what_was_missed,
            catch_up_reports_deletions,
            catch_up_resets_when_the_gap_left_the_window,
            only_the_author_deletes,
            unknown_channels_are_errors,
        );
    };
    (@each $make:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let make = $make;
                $crate::server::store::contract::$name(&make).await;
            }
        )+
    };
}

async fn user(store: &dyn Store, token: &str, name: &str) -> UserInfo {
    store
        .create_user(token.to_string(), Some(name.to_string()))
        .await
        .unwrap()
}

async fn send(
    store: &dyn Store,
    channel: &str,
    who: &UserInfo,
    body: &str,
) -> crate::protocol::Message {
    store
        .append(NewMessage {
            channel: channel.to_string(),
            author: Author {
                id: who.id.clone(),
                name: who.name.clone().unwrap_or_default(),
            },
            body: body.to_string(),
            client_id: None,
        })
        .await
        .unwrap()
}

fn bodies(messages: &[crate::protocol::Message]) -> Vec<String> {
    messages.iter().map(|m| m.body.clone()).collect()
}

/// Users: created with a token hash, found by it and by id, renamed.
pub async fn users_are_found_by_token_and_renamed<S: Store>(make: &impl Fn(usize) -> S) {
    let store = make(100);
    let ada = store.create_user("hash-a".into(), None).await.unwrap();
    let bob = user(&store, "hash-b", "Bob").await;
    assert_ne!(ada.id, bob.id);
    assert_eq!(
        store.user_by_token("hash-a").await.unwrap(),
        Some(ada.clone())
    );
    assert_eq!(store.user_by_token("nope").await.unwrap(), None);
    let renamed = store.set_display_name(&ada.id, "Ada".into()).await.unwrap();
    assert_eq!(renamed.name.as_deref(), Some("Ada"));
    assert_eq!(store.user(&ada.id).await.unwrap(), Some(renamed));
}

/// Channels: a name taken in any case is refused and nothing changes.
pub async fn channel_names_are_unique_case_insensitively<S: Store>(make: &impl Fn(usize) -> S) {
    let store = make(100);
    store.create_channel("General".into()).await.unwrap();
    store.create_channel("alpha".into()).await.unwrap();
    let err = store.create_channel("gENERAL".into()).await.unwrap_err();
    assert_eq!(
        err,
        AppError::ChannelTaken {
            name: "General".into()
        }
    );
    let names: Vec<String> = store
        .channels()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["alpha", "General"]);
    assert_eq!(
        store.channel("general").await.unwrap().unwrap().name,
        "General"
    );
    assert_eq!(store.channel("missing").await.unwrap(), None);
}

/// Each channel numbers its messages 1, 2, 3… on its own; time never goes backwards.
pub async fn sequence_numbers_are_dense_per_channel<S: Store>(make: &impl Fn(usize) -> S) {
    let store = make(100);
    let ada = user(&store, "a", "Ada").await;
    store.create_channel("one".into()).await.unwrap();
    store.create_channel("two".into()).await.unwrap();
    let mut last = None;
    for i in 1..=5u64 {
        let m = send(&store, "one", &ada, &format!("m{i}")).await;
        assert_eq!(m.seq, i);
        assert_eq!(m.channel, "one");
        assert_eq!(m.author.name, "Ada");
        if let Some(prev) = last {
            assert!(m.sent_at >= prev);
        }
        last = Some(m.sent_at);
    }
    assert_eq!(send(&store, "TWO", &ada, "x").await.seq, 1);
}

/// Only the most recent `window` messages are kept, oldest first.
pub async fn window_keeps_only_the_most_recent<S: Store>(make: &impl Fn(usize) -> S) {
    let store = make(100);
    let ada = user(&store, "a", "Ada").await;
    store.create_channel("busy".into()).await.unwrap();
    for i in 1..=105 {
        send(&store, "busy", &ada, &format!("msg {i}")).await;
    }
    let recent = store.recent("busy", 100).await.unwrap();
    assert_eq!(recent.len(), 100);
    assert_eq!(recent.first().unwrap().body, "msg 6");
    assert_eq!(recent.last().unwrap().body, "msg 105");
    assert!(recent.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    assert_eq!(
        bodies(&store.recent("busy", 2).await.unwrap()),
        ["msg 104", "msg 105"]
    );
}

/// A client that saw up to seq N gets exactly the messages after N, in order.
pub async fn catch_up_returns_exactly_what_was_missed<S: Store>(make: &impl Fn(usize) -> S) {
    let store = make(100);
    let ada = user(&store, "a", "Ada").await;
    store.create_channel("c".into()).await.unwrap();
    for i in 1..=10 {
        send(&store, "c", &ada, &format!("m{i}")).await;
    }
    let up = store.since("c", 7).await.unwrap();
    assert!(!up.reset);
    assert_eq!(bodies(&up.messages), ["m8", "m9", "m10"]);
    assert!(up.removed.is_empty());
    let none = store.since("c", 10).await.unwrap();
    assert!(none.messages.is_empty() && !none.reset);
    // A client ahead of the channel saw another history (a restart without disk): reload.
    let ahead = store.since("c", 99).await.unwrap();
    assert!(ahead.reset);
    assert_eq!(ahead.messages.len(), 10);
}

/// Deletions among messages the client already has are reported by sequence number.
pub async fn catch_up_reports_deletions<S: Store>(make: &impl Fn(usize) -> S) {
    let store = make(100);
    let ada = user(&store, "a", "Ada").await;
    store.create_channel("c".into()).await.unwrap();
    let mut sent = Vec::new();
    for i in 1..=6 {
        sent.push(send(&store, "c", &ada, &format!("m{i}")).await);
    }
    store.delete(&sent[1].id, &ada.id).await.unwrap(); // seq 2, seen by the client
    store.delete(&sent[4].id, &ada.id).await.unwrap(); // seq 5, not yet seen
    let up = store.since("c", 3).await.unwrap();
    assert_eq!(up.removed, [2]);
    assert_eq!(bodies(&up.messages), ["m4", "m6"]);
}

/// When messages the client never saw have left the window, it must reload the window.
pub async fn catch_up_resets_when_the_gap_left_the_window<S: Store>(make: &impl Fn(usize) -> S) {
    let store = make(100);
    let ada = user(&store, "a", "Ada").await;
    store.create_channel("c".into()).await.unwrap();
    for i in 1..=120 {
        send(&store, "c", &ada, &format!("m{i}")).await;
    }
    let up = store.since("c", 5).await.unwrap();
    assert!(up.reset);
    assert_eq!(up.messages.len(), 100);
    assert_eq!(up.messages[0].body, "m21");
    // Seq 20 was the last to leave the window: a client that saw it misses nothing it can't get.
    let up = store.since("c", 20).await.unwrap();
    assert!(!up.reset);
    assert_eq!(up.messages.len(), 100);
}

/// Only the author may delete; a deleted message is gone and can't be deleted again.
pub async fn only_the_author_deletes<S: Store>(make: &impl Fn(usize) -> S) {
    let store = make(100);
    let ada = user(&store, "a", "Ada").await;
    let bob = user(&store, "b", "Bob").await;
    store.create_channel("c".into()).await.unwrap();
    let m = send(&store, "c", &ada, "mine").await;
    assert_eq!(store.delete(&m.id, &bob.id).await, Err(AppError::NotAuthor));
    assert_eq!(store.recent("c", 100).await.unwrap().len(), 1);
    assert_eq!(store.delete(&m.id, &ada.id).await.unwrap().id, m.id);
    assert!(store.recent("c", 100).await.unwrap().is_empty());
    assert_eq!(
        store.delete(&m.id, &ada.id).await,
        Err(AppError::NoSuchMessage)
    );
}

/// Appending to, reading or catching up on a missing channel is a typed error.
pub async fn unknown_channels_are_errors<S: Store>(make: &impl Fn(usize) -> S) {
    let store = make(100);
    let ada = user(&store, "a", "Ada").await;
    let missing = AppError::NoSuchChannel {
        name: "nowhere".into(),
    };
    let err = store
        .append(NewMessage {
            channel: "nowhere".into(),
            author: Author {
                id: ada.id.clone(),
                name: "Ada".into(),
            },
            body: "x".into(),
            client_id: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err, missing);
    assert_eq!(store.recent("nowhere", 10).await.unwrap_err(), missing);
    assert_eq!(store.since("nowhere", 0).await.unwrap_err(), missing);
}
