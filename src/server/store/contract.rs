//! The contract every [`Store`] driver must pass. A driver's test module calls
//! [`store_contract_tests!`](crate::store_contract_tests) with an async constructor taking the
//! window size.

use super::{Appended, NewMessage, Store};
use crate::error::AppError;
use crate::protocol::{Author, UserId, UserInfo};

/// Generates one `#[tokio::test]` per contract check for the store built by `$make(window).await`.
#[macro_export]
macro_rules! store_contract_tests {
    ($make:expr) => {
        $crate::store_contract_tests!(@each $make;
            users_are_found_by_token_and_renamed,
            provisional_users_are_stored_with_their_first_name,
            channel_names_are_unique_case_insensitively,
            sequence_numbers_are_dense_per_channel,
            window_keeps_only_the_most_recent,
            catch_up_returns_exactly_what_was_missed,
            catch_up_reports_deletions,
            catch_up_resets_when_the_gap_left_the_window,
            only_the_author_deletes,
            unknown_channels_are_errors,
            a_retried_client_id_is_stored_once,
            older_pages_have_no_gaps_or_repeats,
            channels_are_listed_a_page_at_a_time,
            recent_visits_are_remembered_per_user_and_bounded,
            revoked_tokens_find_nobody,
            the_secret_is_kept,
            replay_pages_follow_each_other,
        );
    };
    (@each $make:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let make = $make;
                $crate::server::store::contract::$name(make(100).await).await;
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

fn new_message(channel: &str, who: &UserInfo, body: &str, client_id: Option<&str>) -> NewMessage {
    NewMessage {
        channel: channel.to_string(),
        author: Author {
            id: who.id.clone(),
            name: who.name.clone().unwrap_or_default(),
        },
        body: body.to_string(),
        client_id: client_id.map(str::to_string),
    }
}

async fn send(
    store: &dyn Store,
    channel: &str,
    who: &UserInfo,
    body: &str,
) -> crate::protocol::Message {
    let appended = store
        .append(new_message(channel, who, body, None))
        .await
        .unwrap();
    assert!(appended.fresh);
    appended.message
}

fn bodies(messages: &[crate::protocol::Message]) -> Vec<String> {
    messages.iter().map(|m| m.body.clone()).collect()
}

/// Users: created with a token hash, found by it and by id, renamed.
pub async fn users_are_found_by_token_and_renamed(store: impl Store) {
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

/// A provisional user is stored under the id and token it was given, once; storing it again
/// (two requests racing) only sets the name.
pub async fn provisional_users_are_stored_with_their_first_name(store: impl Store) {
    let id = UserId("0123456789abcdef0123456789abcdef".into());
    assert_eq!(store.user(&id).await.unwrap(), None);
    let ada = store
        .store_user(id.clone(), "hash-p".into(), "Ada".into())
        .await
        .unwrap();
    assert_eq!(ada.id, id);
    assert_eq!(ada.name.as_deref(), Some("Ada"));
    assert_eq!(
        store.user_by_token("hash-p").await.unwrap(),
        Some(ada.clone())
    );
    let again = store
        .store_user(id.clone(), "hash-p".into(), "Ada L.".into())
        .await
        .unwrap();
    assert_eq!(again.name.as_deref(), Some("Ada L."));
    assert_eq!(store.user(&id).await.unwrap(), Some(again.clone()));
    assert_eq!(store.user_by_token("hash-p").await.unwrap(), Some(again));
}

/// Channels: a name taken in any case is refused and nothing changes.
pub async fn channel_names_are_unique_case_insensitively(store: impl Store) {
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
        .channel_page(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["alpha", "General"]);
    assert_eq!(store.channel_count().await.unwrap(), 2);
    assert_eq!(
        store.channel("general").await.unwrap().unwrap().name,
        "General"
    );
    assert_eq!(store.channel("missing").await.unwrap(), None);
}

/// Each channel numbers its messages 1, 2, 3… on its own; time never goes backwards.
pub async fn sequence_numbers_are_dense_per_channel(store: impl Store) {
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
pub async fn window_keeps_only_the_most_recent(store: impl Store) {
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
pub async fn catch_up_returns_exactly_what_was_missed(store: impl Store) {
    let ada = user(&store, "a", "Ada").await;
    store.create_channel("c".into()).await.unwrap();
    for i in 1..=10 {
        send(&store, "c", &ada, &format!("m{i}")).await;
    }
    let up = store.since("c", 7, 1).await.unwrap();
    assert!(!up.reset);
    assert_eq!(bodies(&up.messages), ["m8", "m9", "m10"]);
    assert!(up.removed.is_empty());
    let none = store.since("c", 10, 1).await.unwrap();
    assert!(none.messages.is_empty() && !none.reset);
    // A client ahead of the channel saw another history (a restart without disk): reload.
    let ahead = store.since("c", 99, 1).await.unwrap();
    assert!(ahead.reset);
    assert_eq!(ahead.messages.len(), 10);
}

/// Deletions among messages the client already has are reported by sequence number.
pub async fn catch_up_reports_deletions(store: impl Store) {
    let ada = user(&store, "a", "Ada").await;
    store.create_channel("c".into()).await.unwrap();
    let mut sent = Vec::new();
    for i in 1..=6 {
        sent.push(send(&store, "c", &ada, &format!("m{i}")).await);
    }
    store.delete(&sent[1].id, &ada.id).await.unwrap(); // seq 2, seen by the client
    store.delete(&sent[4].id, &ada.id).await.unwrap(); // seq 5, not yet seen
    let up = store.since("c", 3, 1).await.unwrap();
    assert_eq!(up.removed, [2]);
    assert_eq!(bodies(&up.messages), ["m4", "m6"]);
}

/// A gap older than the window is either replayed exactly (a store with older history) or
/// answered with a reset to the whole window; never with part of it.
pub async fn catch_up_resets_when_the_gap_left_the_window(store: impl Store) {
    let ada = user(&store, "a", "Ada").await;
    store.create_channel("c".into()).await.unwrap();
    for i in 1..=120 {
        send(&store, "c", &ada, &format!("m{i}")).await;
    }
    let up = store.since("c", 5, 1).await.unwrap();
    if up.reset {
        assert_eq!(up.messages.len(), 100);
        assert_eq!(up.messages[0].body, "m21");
    } else {
        let want: Vec<String> = (6..=120).map(|i| format!("m{i}")).collect();
        assert_eq!(bodies(&up.messages), want);
    }
    // Seq 20 was the last to leave the window: a client that saw it misses nothing it can't get.
    let up = store.since("c", 20, 1).await.unwrap();
    assert!(!up.reset);
    assert_eq!(up.messages.len(), 100);
}

/// Only the author may delete; a deleted message is gone and can't be deleted again.
pub async fn only_the_author_deletes(store: impl Store) {
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
pub async fn unknown_channels_are_errors(store: impl Store) {
    let ada = user(&store, "a", "Ada").await;
    let missing = AppError::NoSuchChannel {
        name: "nowhere".into(),
    };
    let err = store
        .append(new_message("nowhere", &ada, "x", None))
        .await
        .unwrap_err();
    assert_eq!(err, missing);
    assert_eq!(store.recent("nowhere", 10).await.unwrap_err(), missing);
    assert_eq!(store.since("nowhere", 0, 0).await.unwrap_err(), missing);
}

/// Sending the same client id again (a retry after a lost ack) returns the original message
/// and stores nothing new, in one batch or across batches; other authors may reuse the id.
pub async fn a_retried_client_id_is_stored_once(store: impl Store) {
    let ada = user(&store, "a", "Ada").await;
    let bob = user(&store, "b", "Bob").await;
    store.create_channel("c".into()).await.unwrap();
    let first = store
        .append(new_message("c", &ada, "hello", Some("k1")))
        .await
        .unwrap();
    assert!(first.fresh);
    let batch = store
        .append_batch(vec![
            new_message("c", &ada, "hello", Some("k1")),
            new_message("c", &ada, "again", Some("k2")),
            new_message("c", &ada, "again", Some("k2")),
            new_message("c", &bob, "mine", Some("k1")),
            new_message("nowhere", &bob, "lost", Some("k3")),
        ])
        .await;
    assert_eq!(batch.len(), 5);
    let retry = batch[0].clone().unwrap();
    assert!(!retry.fresh);
    assert_eq!(retry.message, first.message);
    let k2 = batch[1].clone().unwrap();
    assert!(k2.fresh && k2.message.seq == 2);
    assert_eq!(batch[2].clone().unwrap(), Appended { fresh: false, ..k2 });
    assert!(batch[3].clone().unwrap().fresh);
    assert!(batch[4].is_err());
    let stored = store.recent("c", 100).await.unwrap();
    assert_eq!(bodies(&stored), ["hello", "again", "mine"]);
    assert_eq!(stored.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 3]);
}

/// Paging back with `before` walks the history in order, skipping deleted messages, with
/// no message twice.
pub async fn older_pages_have_no_gaps_or_repeats(store: impl Store) {
    let ada = user(&store, "a", "Ada").await;
    store.create_channel("c".into()).await.unwrap();
    let mut sent = Vec::new();
    for i in 1..=60 {
        sent.push(send(&store, "c", &ada, &format!("m{i}")).await);
    }
    store.delete(&sent[29].id, &ada.id).await.unwrap();
    let mut seen = store.recent("c", 25).await.unwrap();
    while let Some(first) = seen.first().map(|m| m.seq) {
        let page = store.before("c", first, 25).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 25);
        seen.splice(0..0, page);
    }
    let want: Vec<String> = (1..=60)
        .filter(|&i| i != 30)
        .map(|i| format!("m{i}"))
        .collect();
    assert_eq!(bodies(&seen), want);
}

/// Browsing: pages in name order (case-insensitively), no gaps or repeats.
pub async fn channels_are_listed_a_page_at_a_time(store: impl Store) {
    for i in (0..25).rev() {
        store.create_channel(format!("C{i:02}")).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.channel_page(after.as_deref(), 10).await.unwrap();
        assert!(page.len() <= 10);
        if page.is_empty() {
            break;
        }
        after = page.last().map(|c| c.name.to_lowercase());
        seen.extend(page.into_iter().map(|c| c.name));
    }
    let want: Vec<String> = (0..25).map(|i| format!("C{i:02}")).collect();
    assert_eq!(seen, want);
}

/// Visits: most recent first, once each, at most `RECENT_CHANNELS`, per user.
pub async fn recent_visits_are_remembered_per_user_and_bounded(store: impl Store) {
    use super::RECENT_CHANNELS;
    let ada = user(&store, "a", "Ada").await;
    let bob = user(&store, "b", "Bob").await;
    for i in 0..RECENT_CHANNELS + 5 {
        store.create_channel(format!("c{i}")).await.unwrap();
        store.record_visit(&ada.id, &format!("c{i}")).await.unwrap();
    }
    store.record_visit(&ada.id, "C3").await.unwrap_or(());
    let recent = store.recent_channels(&ada.id).await.unwrap();
    assert_eq!(recent.len(), RECENT_CHANNELS);
    let last = RECENT_CHANNELS + 4;
    assert_eq!(recent[1].name, format!("c{last}"));
    assert!(recent.iter().all(|c| c.name != "c0"), "the oldest fell out");
    assert!(store.recent_channels(&bob.id).await.unwrap().is_empty());
}

/// Sign-out: a revoked token finds nobody, and says it was revoked.
pub async fn revoked_tokens_find_nobody(store: impl Store) {
    let ada = user(&store, "hash-a", "Ada").await;
    assert!(!store.token_revoked("hash-a").await.unwrap());
    store.revoke_token(&ada.id, "hash-a").await.unwrap();
    assert_eq!(store.user_by_token("hash-a").await.unwrap(), None);
    assert!(store.token_revoked("hash-a").await.unwrap());
    // The user and their name stay (their messages keep an author).
    assert_eq!(store.user(&ada.id).await.unwrap(), Some(ada));
}

/// The secret is created once and then always the same.
pub async fn the_secret_is_kept(store: impl Store) {
    let first = store.secret().await.unwrap();
    assert!(first.len() >= 32);
    assert_eq!(store.secret().await.unwrap(), first);
}

/// Replay pages: what comes after a sequence number, in order, a page at a time; `None` only
/// when the store no longer holds it.
pub async fn replay_pages_follow_each_other(store: impl Store) {
    store.create_channel("general".into()).await.unwrap();
    let ada = user(&store, "a", "Ada").await;
    let mut sent = Vec::new();
    for i in 0..30 {
        sent.push(send(&store, "general", &ada, &format!("m{i}")).await);
    }
    store.delete(&sent[12].id, &ada.id).await.unwrap();
    let mut after = sent[4].seq;
    let mut got = Vec::new();
    while let Some(page) = store.after("general", after, 7).await.unwrap() {
        assert!(page.len() <= 7);
        let Some(last) = page.last() else { break };
        after = last.seq;
        got.extend(page);
    }
    let want: Vec<_> = sent[5..]
        .iter()
        .filter(|m| m.id != sent[12].id)
        .cloned()
        .collect();
    assert_eq!(got, want);
    assert!(store.after("nowhere", 0, 7).await.is_err());
}
