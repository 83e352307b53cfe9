//! The contract every [`Store`] driver must pass: [`run_all`] runs each check, one after the
//! other, on one store (each uses its own users and conversations, so they share it safely).

use super::{Admission, Appended, NewMessage, Store};
use crate::error::AppError;
use crate::protocol::{
    Author, ConversationId, ConversationKind, UserId, UserInfo, MAX_UNREAD_COUNT,
};

/// Runs every check of the contract on `store`.
pub async fn run_all<S: Store>(store: &S) {
    users_are_found_by_token_and_renamed(store).await;
    provisional_users_are_stored_with_their_first_name(store).await;
    people_are_found_by_name_prefix(store).await;
    revoked_tokens_find_nobody(store).await;
    the_secret_is_kept(store).await;
    channel_names_are_unique_case_insensitively(store).await;
    public_channels_are_listed_a_page_at_a_time(store).await;
    direct_conversations_are_one_per_set_of_people(store).await;
    every_change_takes_the_next_number(store).await;
    changes_after_a_number_are_exactly_what_was_missed(store).await;
    changes_past_the_limit_come_a_page_at_a_time(store).await;
    a_retried_client_id_is_stored_once(store).await;
    windows_and_older_pages_have_no_gaps_or_repeats(store).await;
    edits_and_deletions_keep_the_message_in_place(store).await;
    reactions_toggle_and_are_bounded(store).await;
    replies_start_a_thread_and_count_on_the_parent(store).await;
    membership_and_read_positions(store).await;
    unread_counts_and_mentions(store).await;
    unknown_ids_are_errors(store).await;
    posts_that_need_a_member_are_checked_as_they_commit(store).await;
    posts_that_join_store_the_join_first_in_one_commit(store).await;
}

/// Posts that join a public channel: each newcomer's join takes the number before its
/// conversation's messages of the batch, once per author; a member joins nothing; the
/// newcomer has read what came before and the conversation's changes list them.
async fn posts_that_join_store_the_join_first_in_one_commit(store: &dyn Store) {
    let (ada, bob, cy) = (
        user(store, "Ada").await,
        user(store, "Bob").await,
        user(store, "Cy").await,
    );
    let (first, second) = (
        channel(store, &ada, ConversationKind::Public).await,
        channel(store, &ada, ConversationKind::Public).await,
    );
    let before = post(store, first, &ada, "before").await.message;
    let joins = |to, who: &UserInfo, body: &str| NewMessage {
        admission: Admission::Joins,
        ..new_message(to, who, body, None)
    };
    let batch = store
        .append_batch(vec![
            joins(first, &bob, "bob 1"),
            joins(second, &cy, "cy"),
            joins(first, &bob, "bob 2"),
            joins(first, &ada, "ada, a member"),
            joins(first, &cy, "cy here too"),
        ])
        .await;
    let batch: Vec<Appended> = batch.into_iter().map(Result::unwrap).collect();
    let numbers: Vec<(u64, Option<u64>)> = batch
        .iter()
        .map(|a| (a.message.change, a.joined.as_ref().map(|j| j.change)))
        .collect();
    let c = before.change;
    assert_eq!(
        numbers,
        [
            (c + 3, Some(c + 1)),
            (3, Some(2)),
            (c + 4, None),
            (c + 5, None),
            (c + 6, Some(c + 2)),
        ],
        "joins first in each conversation, once per author"
    );
    assert!(batch.iter().all(|a| a.fresh));
    let mut names: Vec<String> = store
        .members(first, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    names.sort();
    assert_eq!(names, ["Ada", "Bob", "Cy"]);
    let bob_there = store.membership(first, &bob.id).await.unwrap().unwrap();
    assert_eq!(bob_there.read_seq, before.seq, "read up to the join");
    // Each join says where its reading starts, as stored: in the second conversation,
    // which had no message, at nothing.
    let reads: Vec<Option<u64>> = batch
        .iter()
        .map(|a| a.joined.as_ref().map(|j| j.read_seq))
        .collect();
    let b = before.seq;
    assert_eq!(reads, [Some(b), Some(0), None, None, Some(b)]);
    let summary = store.summary(first, &bob.id).await.unwrap().unwrap();
    assert_eq!(summary.unread, 2, "Cy's and Ada's since, not Bob's own");
    let seen = store
        .changes(first, before.change, 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.last_change, c + 6);
    assert_eq!(seen.messages.len(), 4);
    assert_eq!(seen.members.map(|m| m.len()), Some(3));
    // Joining again is nothing new; a re-sent post joins nobody.
    let again = store
        .append(NewMessage {
            client_id: Some("again".into()),
            ..joins(first, &bob, "bob 3")
        })
        .await
        .unwrap();
    assert_eq!(again.joined, None);
    assert_eq!(again.message.change, c + 7);
}

/// A post that needs its author to be a member is refused, alone in its batch, once the
/// author has left; the others are stored.
async fn posts_that_need_a_member_are_checked_as_they_commit(store: &dyn Store) {
    let (ada, bob) = (user(store, "Ada").await, user(store, "Bob").await);
    let club = store
        .create_channel(
            unique("club"),
            ConversationKind::Private,
            Some(&author(&ada)),
        )
        .await
        .unwrap();
    store.join(club.id, &author(&bob)).await.unwrap();
    let needs = |who: &UserInfo, body: &str| NewMessage {
        admission: Admission::MemberOf(club.id),
        ..new_message(club.id, who, body, None)
    };
    let first = store.append_batch(vec![needs(&bob, "in")]).await;
    assert!(first[0].is_ok(), "{first:?}");
    store.leave(club.id, &bob.id).await.unwrap();
    let batch = store
        .append_batch(vec![
            needs(&ada, "before"),
            needs(&bob, "after leaving"),
            needs(&ada, "after"),
        ])
        .await;
    assert!(batch[0].is_ok() && batch[2].is_ok(), "{batch:?}");
    assert_eq!(batch[1], Err(AppError::NoSuchConversation));
    let bodies: Vec<String> = store
        .recent(club.id, 10)
        .await
        .unwrap()
        .messages
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(bodies, ["in", "before", "after"]);
}

async fn user(store: &dyn Store, name: &str) -> UserInfo {
    let token = format!("token-{name}-{}", uuid::Uuid::new_v4().simple());
    store
        .create_user(token, Some(name.to_string()))
        .await
        .unwrap()
}

fn author(who: &UserInfo) -> Author {
    Author {
        id: who.id.clone(),
        name: who.name.clone().unwrap_or_default(),
    }
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

fn new_message(
    to: ConversationId,
    who: &UserInfo,
    body: &str,
    client_id: Option<&str>,
) -> NewMessage {
    NewMessage {
        conversation: to,
        author: author(who),
        body: body.to_string(),
        client_id: client_id.map(str::to_string),
        mentions: Vec::new(),
        mentions_all: false,
        admission: Admission::Unchecked,
    }
}

async fn channel(store: &dyn Store, who: &UserInfo, kind: ConversationKind) -> ConversationId {
    store
        .create_channel(unique("c"), kind, Some(&author(who)))
        .await
        .unwrap()
        .id
}

async fn post(store: &dyn Store, to: ConversationId, who: &UserInfo, body: &str) -> Appended {
    store
        .append(new_message(to, who, body, None))
        .await
        .unwrap()
}

async fn users_are_found_by_token_and_renamed(store: &dyn Store) {
    let ada = store.create_user("t-ada".into(), None).await.unwrap();
    assert_eq!(ada.name, None);
    assert_eq!(
        store.user_by_token("t-ada").await.unwrap(),
        Some(ada.clone())
    );
    let named = store.set_display_name(&ada.id, "Ada".into()).await.unwrap();
    assert_eq!(store.user(&ada.id).await.unwrap(), Some(named));
    assert_eq!(store.user_by_token("nobody").await.unwrap(), None);
}

async fn provisional_users_are_stored_with_their_first_name(store: &dyn Store) {
    let id = UserId(uuid::Uuid::new_v4().simple().to_string());
    let first = store
        .store_user(id.clone(), "t-prov".into(), "First".into())
        .await
        .unwrap();
    let again = store
        .store_user(id.clone(), "t-prov".into(), "Second".into())
        .await
        .unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(
        store.user(&id).await.unwrap().unwrap().name.as_deref(),
        Some("Second")
    );
}

async fn people_are_found_by_name_prefix(store: &dyn Store) {
    let tag = unique("Zed");
    let a = user(store, &format!("{tag} Alpha")).await;
    let b = user(store, &format!("{tag} beta")).await;
    let _other = user(store, "Someone 100%_else").await;
    let found = store.users_named(&tag.to_lowercase(), 10).await.unwrap();
    assert_eq!(found, vec![a, b.clone()]);
    assert_eq!(store.users_named(&tag, 1).await.unwrap().len(), 1);
    // Wildcards in the prefix are literal.
    assert!(store.users_named("%", 10).await.unwrap().is_empty());
    assert!(store.users_named("Someone 100%_", 10).await.unwrap().len() == 1);
}

async fn revoked_tokens_find_nobody(store: &dyn Store) {
    let ada = store
        .create_user("t-revoke".into(), Some("Ada".into()))
        .await
        .unwrap();
    assert!(!store.token_revoked("t-revoke").await.unwrap());
    store.revoke_token(&ada.id, "t-revoke").await.unwrap();
    assert_eq!(store.user_by_token("t-revoke").await.unwrap(), None);
    assert!(store.token_revoked("t-revoke").await.unwrap());
    assert!(
        store.user(&ada.id).await.unwrap().is_some(),
        "the person stays"
    );
}

async fn the_secret_is_kept(store: &dyn Store) {
    let secret = store.secret().await.unwrap();
    assert!(secret.len() >= 32);
    assert_eq!(store.secret().await.unwrap(), secret);
}

async fn channel_names_are_unique_case_insensitively(store: &dyn Store) {
    let ada = user(store, "Ada").await;
    let name = unique("Dev");
    let made = store
        .create_channel(name.clone(), ConversationKind::Public, Some(&author(&ada)))
        .await
        .unwrap();
    assert_eq!(made.name.as_deref(), Some(name.as_str()));
    let clash = store
        .create_channel(
            name.to_uppercase(),
            ConversationKind::Private,
            Some(&author(&ada)),
        )
        .await;
    assert_eq!(clash, Err(AppError::ChannelTaken { name: name.clone() }));
    assert_eq!(
        store.channel_named(&name.to_lowercase()).await.unwrap(),
        Some(made.clone())
    );
    assert_eq!(
        store.conversation(made.id).await.unwrap(),
        Some(made.clone())
    );
    assert!(
        store.membership(made.id, &ada.id).await.unwrap().is_some(),
        "the creator is in"
    );
}

async fn public_channels_are_listed_a_page_at_a_time(store: &dyn Store) {
    let ada = user(store, "Ada").await;
    let prefix = unique("page");
    for i in 0..5 {
        let kind = if i == 2 {
            ConversationKind::Private
        } else {
            ConversationKind::Public
        };
        store
            .create_channel(format!("{prefix}-{i}"), kind, Some(&author(&ada)))
            .await
            .unwrap();
    }
    let before = store.channel_count().await.unwrap();
    assert!(before >= 5);
    let first = store.channel_page(Some(&prefix), 2).await.unwrap();
    let names: Vec<_> = first.iter().filter_map(|c| c.name.clone()).collect();
    assert_eq!(names, [format!("{prefix}-0"), format!("{prefix}-1")]);
    let next = store.channel_page(Some(&names[1]), 2).await.unwrap();
    let names: Vec<_> = next.iter().filter_map(|c| c.name.clone()).collect();
    // The private one is never listed.
    assert_eq!(names, [format!("{prefix}-3"), format!("{prefix}-4")]);
}

async fn direct_conversations_are_one_per_set_of_people(store: &dyn Store) {
    let (a, b, c) = (
        user(store, "A").await,
        user(store, "B").await,
        user(store, "C").await,
    );
    let (dm, created) = store.open_direct(&[author(&a), author(&b)]).await.unwrap();
    assert!(created);
    assert_eq!(dm.kind, ConversationKind::Direct);
    assert_eq!(dm.people.len(), 2);
    let (again, created) = store.open_direct(&[author(&b), author(&a)]).await.unwrap();
    assert!(!created);
    assert_eq!(again.id, dm.id);
    let (group, _) = store
        .open_direct(&[author(&a), author(&b), author(&c)])
        .await
        .unwrap();
    assert_ne!(group.id, dm.id);
    assert!(store.membership(dm.id, &b.id).await.unwrap().is_some());
    assert!(store.membership(dm.id, &c.id).await.unwrap().is_none());
    assert_eq!(
        store
            .channel_named(&format!("dm:{}", a.id.0))
            .await
            .unwrap(),
        None
    );
}

async fn every_change_takes_the_next_number(store: &dyn Store) {
    let ada = user(store, "Ada").await;
    let bo = user(store, "Bo").await;
    let id = channel(store, &ada, ConversationKind::Public).await;
    let start = store.recent(id, 10).await.unwrap().last_change;
    let batch = vec![
        new_message(id, &ada, "one", None),
        new_message(id, &bo, "two", None),
    ];
    let stored: Vec<_> = store
        .append_batch(batch)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(stored[0].message.seq, start + 1);
    assert_eq!(stored[1].message.seq, start + 2);
    let edited = store
        .edit(&stored[0].message.id, "one!".into(), vec![], false)
        .await
        .unwrap();
    assert_eq!(edited.change, start + 3);
    let reacted = store
        .react(&stored[1].message.id, &author(&ada), "👍", true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reacted.change, start + 4);
    let joined = store.join(id, &author(&bo)).await.unwrap().unwrap();
    assert_eq!(joined.change, start + 5);
    // The edit and the reaction took numbers after the newest message: reading starts at
    // that message, as the store keeps it, not at the number before the join.
    assert_eq!(joined.read_seq, stored[1].message.seq);
    let kept = store.membership(id, &bo.id).await.unwrap().unwrap();
    assert_eq!(joined.read_seq, kept.read_seq);
    let deleted = store.delete(&stored[1].message.id).await.unwrap();
    assert_eq!(deleted.change, start + 6);
    assert_eq!(store.recent(id, 10).await.unwrap().last_change, start + 6);
}

async fn changes_after_a_number_are_exactly_what_was_missed(store: &dyn Store) {
    let ada = user(store, "Ada").await;
    let bo = user(store, "Bo").await;
    let id = channel(store, &ada, ConversationKind::Public).await;
    let kept = post(store, id, &ada, "kept").await.message;
    let edited = post(store, id, &ada, "to edit").await.message;
    let gone = post(store, id, &ada, "to delete").await.message;
    let seen = store.recent(id, 10).await.unwrap().last_change;
    let fresh = post(store, id, &bo, "new").await.message;
    store
        .edit(&edited.id, "edited".into(), vec![], false)
        .await
        .unwrap();
    store.delete(&gone.id).await.unwrap();
    store
        .react(&kept.id, &author(&bo), "🎉", true)
        .await
        .unwrap();
    let changes = store.changes(id, seen, 100).await.unwrap().unwrap();
    let got: Vec<(String, String, bool)> = changes
        .messages
        .iter()
        .map(|m| (m.id.0.clone(), m.body.clone(), m.deleted))
        .collect();
    assert_eq!(
        got,
        vec![
            (fresh.id.0.clone(), "new".into(), false),
            (edited.id.0.clone(), "edited".into(), false),
            (gone.id.0.clone(), String::new(), true),
            (kept.id.0.clone(), "kept".into(), false),
        ]
    );
    assert_eq!(changes.messages[3].reactions[0].emoji, "🎉");
    assert!(changes
        .messages
        .windows(2)
        .all(|w| w[0].change < w[1].change));
    assert_eq!(changes.last_change, seen + 4);
    assert_eq!(changes.members, None);
    // Nothing after the last number; a membership change is reported with the members.
    let none = store
        .changes(id, changes.last_change, 100)
        .await
        .unwrap()
        .unwrap();
    assert!(none.messages.is_empty());
    store.join(id, &author(&bo)).await.unwrap();
    let joined = store
        .changes(id, changes.last_change, 100)
        .await
        .unwrap()
        .unwrap();
    let members: Vec<_> = joined.members.unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(members, [ada.id.clone(), bo.id.clone()]);
}

async fn changes_past_the_limit_come_a_page_at_a_time(store: &dyn Store) {
    let ada = user(store, "Ada").await;
    let id = channel(store, &ada, ConversationKind::Public).await;
    let start = store.recent(id, 10).await.unwrap().last_change;
    for i in 0..5 {
        post(store, id, &ada, &format!("m{i}")).await;
    }
    let page = store.changes(id, start, 3).await.unwrap().unwrap();
    assert!(page.more);
    assert_eq!(page.messages.len(), 3);
    assert_eq!(page.last_change, page.messages[2].change);
    let rest = store
        .changes(id, page.last_change, 3)
        .await
        .unwrap()
        .unwrap();
    assert!(!rest.more);
    let bodies: Vec<_> = page
        .messages
        .iter()
        .chain(&rest.messages)
        .map(|m| m.body.clone())
        .collect();
    assert_eq!(bodies, ["m0", "m1", "m2", "m3", "m4"]);
    assert_eq!(rest.last_change, start + 5);
    // A number never given out asks for a reset.
    assert!(store.changes(id, 1_000_000, 10).await.unwrap().is_none());
}

async fn a_retried_client_id_is_stored_once(store: &dyn Store) {
    let ada = user(store, "Ada").await;
    let id = channel(store, &ada, ConversationKind::Public).await;
    let first = store
        .append(new_message(id, &ada, "hi", Some("c-1")))
        .await
        .unwrap();
    assert!(first.fresh);
    let again = store
        .append(new_message(id, &ada, "hi", Some("c-1")))
        .await
        .unwrap();
    assert!(!again.fresh);
    assert_eq!(again.message, first.message);
    // Twice in one batch: stored once, both answered with it.
    let batch = store
        .append_batch(vec![
            new_message(id, &ada, "x", Some("c-2")),
            new_message(id, &ada, "x", Some("c-2")),
        ])
        .await;
    let (a, b) = (batch[0].clone().unwrap(), batch[1].clone().unwrap());
    assert!(a.fresh && !b.fresh);
    assert_eq!(a.message, b.message);
    assert_eq!(store.recent(id, 10).await.unwrap().messages.len(), 2);
}

async fn windows_and_older_pages_have_no_gaps_or_repeats(store: &dyn Store) {
    let ada = user(store, "Ada").await;
    let id = channel(store, &ada, ConversationKind::Public).await;
    for i in 0..25 {
        post(store, id, &ada, &format!("m{i}")).await;
    }
    let window = store.recent(id, 10).await.unwrap();
    assert!(window.has_older);
    let mut seen: Vec<String> = window.messages.iter().map(|m| m.body.clone()).collect();
    let mut before = window.messages[0].seq;
    loop {
        let page = store.before(id, before, 10).await.unwrap();
        let mut bodies: Vec<String> = page.messages.iter().map(|m| m.body.clone()).collect();
        bodies.append(&mut seen);
        seen = bodies;
        if !page.has_older {
            break;
        }
        before = page.messages[0].seq;
    }
    let want: Vec<String> = (0..25).map(|i| format!("m{i}")).collect();
    assert_eq!(seen, want);
    assert!(!store.recent(id, 100).await.unwrap().has_older);
}

async fn edits_and_deletions_keep_the_message_in_place(store: &dyn Store) {
    let ada = user(store, "Ada").await;
    let id = channel(store, &ada, ConversationKind::Public).await;
    let a = post(store, id, &ada, "a").await.message;
    let b = post(store, id, &ada, "b").await.message;
    let edited = store
        .edit(&a.id, "a, edited".into(), vec![ada.id.clone()], false)
        .await
        .unwrap();
    assert_eq!((edited.seq, edited.body.as_str()), (a.seq, "a, edited"));
    assert!(edited.edited_at.is_some());
    let deleted = store.delete(&b.id).await.unwrap();
    assert!(deleted.deleted && deleted.body.is_empty());
    let window = store.recent(id, 10).await.unwrap();
    assert_eq!(window.messages, vec![edited]);
    // A deleted message can be neither edited, deleted again nor reacted to.
    assert_eq!(
        store.edit(&b.id, "x".into(), vec![], false).await,
        Err(AppError::NoSuchMessage)
    );
    assert_eq!(store.delete(&b.id).await, Err(AppError::NoSuchMessage));
    assert_eq!(
        store.react(&b.id, &author(&ada), "👍", true).await,
        Err(AppError::NoSuchMessage)
    );
    assert!(store.message(&b.id).await.unwrap().unwrap().deleted);
}

async fn reactions_toggle_and_are_bounded(store: &dyn Store) {
    let ada = user(store, "Ada").await;
    let bo = user(store, "Bo").await;
    let id = channel(store, &ada, ConversationKind::Public).await;
    let m = post(store, id, &ada, "react to me").await.message;
    let one = store
        .react(&m.id, &author(&ada), "👍", true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one.reactions[0].count, 1);
    assert_eq!(
        store.react(&m.id, &author(&ada), "👍", true).await.unwrap(),
        None
    );
    let two = store
        .react(&m.id, &author(&bo), "👍", true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(two.reactions[0].count, 2);
    assert_eq!(two.reactions[0].users.len(), 2);
    let off = store
        .react(&m.id, &author(&ada), "👍", false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (off.reactions[0].count, off.reactions[0].users[0].id.clone()),
        (1, bo.id.clone())
    );
    assert_eq!(
        store
            .react(&m.id, &author(&ada), "👍", false)
            .await
            .unwrap(),
        None
    );
    let many = [
        "😀", "😃", "😄", "😁", "😆", "😅", "🤣", "😂", "🙂", "🙃", "😉", "😊", "😇", "🥰", "😍",
        "🤩", "😘", "😗", "😚", "😙", "😋", "😛", "😜",
    ];
    for emoji in many {
        store
            .react(&m.id, &author(&ada), emoji, true)
            .await
            .unwrap();
    }
    let full = store.message(&m.id).await.unwrap().unwrap();
    assert_eq!(
        full.reactions.len(),
        crate::protocol::MAX_REACTIONS_PER_MESSAGE
    );
    assert_eq!(
        store.react(&m.id, &author(&ada), "🤪", true).await,
        Err(AppError::TooManyReactions {
            max: crate::protocol::MAX_REACTIONS_PER_MESSAGE
        })
    );
    // An emoji already there can still be added by someone else.
    assert!(store
        .react(&m.id, &author(&bo), "😜", true)
        .await
        .unwrap()
        .is_some());
}

async fn replies_start_a_thread_and_count_on_the_parent(store: &dyn Store) {
    let ada = user(store, "Ada").await;
    let bo = user(store, "Bo").await;
    let id = channel(store, &ada, ConversationKind::Public).await;
    let parent = post(store, id, &ada, "question").await.message;
    assert_eq!(store.thread_of(&parent.id).await.unwrap(), None);
    let first = store
        .reply(&parent.id, new_message(id, &bo, "answer", Some("r-1")))
        .await
        .unwrap();
    let thread = store.thread_of(&parent.id).await.unwrap().unwrap();
    assert_eq!(thread.kind, ConversationKind::Thread);
    assert_eq!(thread.parent.as_ref().unwrap().message, parent.id);
    assert_eq!(first.message.conversation, thread.id);
    let counted = first.parent.unwrap();
    assert_eq!(counted.thread.as_ref().unwrap().replies, 1);
    assert!(counted.change > parent.change);
    let again = store
        .reply(&parent.id, new_message(id, &bo, "answer", Some("r-1")))
        .await
        .unwrap();
    assert!(!again.fresh, "a retried reply is stored once");
    store
        .reply(&parent.id, new_message(id, &ada, "thanks", None))
        .await
        .unwrap();
    let window = store.recent(thread.id, 10).await.unwrap();
    let bodies: Vec<_> = window.messages.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["answer", "thanks"]);
    let parent_now = store.message(&parent.id).await.unwrap().unwrap();
    assert_eq!(parent_now.thread.unwrap().replies, 2);
    // The channel's own window holds the parent only.
    assert_eq!(store.recent(id, 10).await.unwrap().messages.len(), 1);
    // No threads in threads.
    assert_eq!(
        store
            .reply(&first.message.id, new_message(id, &ada, "nested", None))
            .await,
        Err(AppError::NestedThread)
    );
}

async fn membership_and_read_positions(store: &dyn Store) {
    let ada = user(store, "Ada").await;
    let bo = user(store, "Bo").await;
    let id = channel(store, &ada, ConversationKind::Private).await;
    post(store, id, &ada, "before Bo").await;
    assert!(store.membership(id, &bo.id).await.unwrap().is_none());
    assert!(store.join(id, &author(&bo)).await.unwrap().is_some());
    assert!(
        store.join(id, &author(&bo)).await.unwrap().is_none(),
        "joining twice"
    );
    // A newcomer has read what came before.
    let summary = store.summary(id, &bo.id).await.unwrap().unwrap();
    assert_eq!(summary.unread, 0);
    assert_eq!(store.members(id, 10).await.unwrap().len(), 2);
    // What presence announcements read: the same conversations as the sidebar, no threads.
    let parent = post(store, id, &ada, "asks").await.message;
    let mut reply = new_message(id, &bo, "answers", None);
    reply.conversation = ConversationId(0);
    store.reply(&parent.id, reply).await.unwrap();
    let listed = |list: Vec<ConversationId>| {
        let mut list = list;
        list.sort();
        list
    };
    let memberships = store.memberships_of(&bo.id).await.unwrap();
    let sidebar = store.conversations_of(&bo.id).await.unwrap();
    assert!(memberships.iter().any(|c| c.id == id));
    assert!(memberships
        .iter()
        .all(|c| c.kind != ConversationKind::Thread));
    assert_eq!(
        listed(memberships.iter().map(|c| c.id).collect()),
        listed(sidebar.iter().map(|s| s.conversation.id).collect())
    );
    let count = store.membership_count(&bo.id).await.unwrap();
    assert!(store.leave(id, &bo.id).await.unwrap().is_some());
    assert!(store.leave(id, &bo.id).await.unwrap().is_none());
    assert_eq!(store.membership_count(&bo.id).await.unwrap(), count - 1);
    assert!(store.summary(id, &bo.id).await.unwrap().is_none());
    assert!(!store
        .conversations_of(&bo.id)
        .await
        .unwrap()
        .iter()
        .any(|s| s.conversation.id == id));
    assert!(!store
        .memberships_of(&bo.id)
        .await
        .unwrap()
        .iter()
        .any(|c| c.id == id));
    // Read positions only move forward, and only for members.
    let m = post(store, id, &ada, "later").await.message;
    assert!(store.mark_read(id, &ada.id, m.seq).await.unwrap());
    assert!(!store.mark_read(id, &ada.id, m.seq - 1).await.unwrap());
    assert!(!store.mark_read(id, &bo.id, m.seq).await.unwrap());
    assert_eq!(
        store
            .membership(id, &ada.id)
            .await
            .unwrap()
            .unwrap()
            .read_seq,
        m.seq
    );
}

async fn unread_counts_and_mentions(store: &dyn Store) {
    let ada = user(store, "Ada").await;
    let bo = user(store, "Bo").await;
    let id = channel(store, &ada, ConversationKind::Public).await;
    store.join(id, &author(&bo)).await.unwrap();
    post(store, id, &ada, "one").await;
    let mut mention = new_message(id, &ada, "hey @Bo", None);
    mention.mentions = vec![bo.id.clone()];
    let mentioned = store.append(mention).await.unwrap().message;
    let mut all = new_message(id, &ada, "@here lunch", None);
    all.mentions_all = true;
    let last = store.append(all).await.unwrap().message;
    post(store, id, &bo, "my own").await;
    let mine = store.conversations_of(&bo.id).await.unwrap();
    let s = mine.iter().find(|s| s.conversation.id == id).unwrap();
    assert_eq!(
        (s.unread, s.mentions),
        (3, 2),
        "own messages are not unread"
    );
    store.mark_read(id, &bo.id, mentioned.seq).await.unwrap();
    let s = store.summary(id, &bo.id).await.unwrap().unwrap();
    assert_eq!((s.unread, s.mentions), (1, 1));
    store.mark_read(id, &bo.id, last.seq).await.unwrap();
    let s = store.summary(id, &bo.id).await.unwrap().unwrap();
    assert_eq!((s.unread, s.mentions), (0, 0));
    // Counts stop at the badge's most: a member away for a long time sees 999 (and mentions
    // of everyone are counted, capped the same way).
    let busy = channel(store, &ada, ConversationKind::Public).await;
    store.join(busy, &author(&bo)).await.unwrap();
    let batch: Vec<NewMessage> = (0..MAX_UNREAD_COUNT + 2)
        .map(|i| {
            let mut m = new_message(busy, &ada, &format!("n{i}"), None);
            m.mentions_all = true;
            m
        })
        .collect();
    assert!(store.append_batch(batch).await.iter().all(Result::is_ok));
    let s = store.summary(busy, &bo.id).await.unwrap().unwrap();
    assert_eq!((s.unread, s.mentions), (MAX_UNREAD_COUNT, MAX_UNREAD_COUNT));
    // Direct conversations are listed too, most recently active first.
    let (dm, _) = store
        .open_direct(&[author(&ada), author(&bo)])
        .await
        .unwrap();
    post(store, dm.id, &ada, "psst").await;
    let mine = store.conversations_of(&bo.id).await.unwrap();
    assert_eq!(mine[0].conversation.id, dm.id);
    assert_eq!(mine[0].unread, 1);
    assert_eq!(mine[0].conversation.people.len(), 2);
}

async fn unknown_ids_are_errors(store: &dyn Store) {
    let ada = user(store, "Ada").await;
    let nowhere = ConversationId(9_999_999);
    assert_eq!(store.conversation(nowhere).await.unwrap(), None);
    assert_eq!(
        store.append(new_message(nowhere, &ada, "x", None)).await,
        Err(AppError::NoSuchConversation)
    );
    assert_eq!(
        store.recent(nowhere, 10).await,
        Err(AppError::NoSuchConversation)
    );
    assert_eq!(
        store.changes(nowhere, 0, 10).await,
        Err(AppError::NoSuchConversation)
    );
    let ghost = crate::protocol::MessageId("no-such-message".into());
    assert_eq!(store.message(&ghost).await.unwrap(), None);
    assert_eq!(
        store.edit(&ghost, "x".into(), vec![], false).await,
        Err(AppError::NoSuchMessage)
    );
    assert_eq!(store.delete(&ghost).await, Err(AppError::NoSuchMessage));
    assert_eq!(
        store
            .reply(&ghost, new_message(nowhere, &ada, "x", None))
            .await,
        Err(AppError::NoSuchMessage)
    );
    assert_eq!(
        store.join(nowhere, &author(&ada)).await,
        Err(AppError::NoSuchConversation)
    );
}

/// Two handles on one database (two nodes, or two processes on one SQLite file) append at
/// once — four writers, each sending batches that touch two conversations in its own order,
/// while a reader follows each conversation's changes. No number is given twice, none is
/// skipped, numbers follow commit order (a reader catching up after each number it saw misses
/// nothing), and a client id sent through one handle is known to the other.
pub async fn two_handles_never_share_a_number(a: &dyn Store, b: &dyn Store) {
    use futures_util::future::join_all;
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};

    const WRITERS: usize = 4;
    const BATCHES: usize = 10;
    const PER_BATCH: usize = 5;
    let ada = user(a, "Ada").await;
    let first = channel(a, &ada, ConversationKind::Public).await;
    let second = channel(b, &ada, ConversationKind::Public).await;
    let conversations = [first, second];
    let start: Vec<u64> = {
        let mut start = Vec::new();
        for id in conversations {
            start.push(a.recent(id, 1).await.unwrap().last_change);
        }
        start
    };
    let handles = [a, b];
    let ada = &ada;

    // Writer `w` sends through handle `w % 2`; its messages alternate between the two
    // conversations, odd writers starting with the second.
    let writer = |w: usize| async move {
        let store = handles[w % 2];
        let mut stored = Vec::new();
        for batch in 0..BATCHES {
            let messages: Vec<NewMessage> = (0..PER_BATCH)
                .map(|i| {
                    let n = batch * PER_BATCH + i;
                    let to = conversations[(n + w) % 2];
                    new_message(to, ada, &format!("w{w}-{n}"), None)
                })
                .collect();
            for result in store.append_batch(messages).await {
                let appended = result.expect("every message is stored");
                assert!(appended.fresh);
                stored.push(appended.message);
            }
        }
        stored
    };
    let writing_done = AtomicBool::new(false);
    // Follows one conversation through the other handle the way a client does: from the last
    // number it was brought to, a page at a time.
    let reader = |c: usize| {
        let writing_done = &writing_done;
        let start = &start;
        async move {
            let store = handles[(c + 1) % 2];
            let mut cursor = start[c];
            let mut seen = Vec::new();
            loop {
                let finished = writing_done.load(Ordering::SeqCst);
                loop {
                    let page = store
                        .changes(conversations[c], cursor, 7)
                        .await
                        .unwrap()
                        .expect("a number the conversation gave out");
                    assert!(page.last_change >= cursor, "never brought back");
                    for m in &page.messages {
                        assert!(m.change > cursor, "a number after the cursor");
                    }
                    seen.extend(page.messages);
                    cursor = page.last_change;
                    if !page.more {
                        break;
                    }
                }
                if finished {
                    return seen;
                }
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        }
    };
    let writers = async {
        let stored = join_all((0..WRITERS).map(writer)).await;
        writing_done.store(true, Ordering::SeqCst);
        stored
    };
    let (stored, seen) = tokio::join!(writers, join_all((0..2).map(reader)));

    let total = WRITERS * BATCHES * PER_BATCH;
    assert_eq!(stored.iter().map(Vec::len).sum::<usize>(), total);
    // Each writer's own messages, sent one batch after the other, number upwards.
    for messages in &stored {
        for c in conversations {
            let numbers: Vec<u64> = messages
                .iter()
                .filter(|m| m.conversation == c)
                .map(|m| m.change)
                .collect();
            assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
        }
    }
    for (c, id) in conversations.into_iter().enumerate() {
        let mine: BTreeMap<u64, &crate::protocol::Message> = stored
            .iter()
            .flatten()
            .filter(|m| m.conversation == id)
            .map(|m| (m.change, m))
            .collect();
        let count = total / 2;
        let sent = stored.iter().flatten().filter(|m| m.conversation == id);
        assert_eq!(sent.count(), count);
        // Distinct numbers (no two messages share one), exactly the next `count` of them.
        assert_eq!(mine.len(), count, "a change number was given twice");
        let want: Vec<u64> = (start[c] + 1..=start[c] + count as u64).collect();
        assert_eq!(mine.keys().copied().collect::<Vec<_>>(), want);
        assert!(mine.values().all(|m| m.seq == m.change));
        // The reader that followed along saw every message once, in number order.
        let followed: Vec<u64> = seen[c].iter().map(|m| m.change).collect();
        assert_eq!(
            followed, want,
            "a reader following changes missed or repeated one"
        );
        // Both handles read back all of them, as they were stored.
        for store in handles {
            let window = store.recent(id, count + 10).await.unwrap();
            assert_eq!(window.last_change, start[c] + count as u64);
            let stored: Vec<_> = mine.values().map(|m| (*m).clone()).collect();
            assert_eq!(window.messages, stored);
            let changes = store
                .changes(id, start[c], count + 10)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(changes.messages, stored);
        }
    }
    // A client id stored through one handle is answered with the original through the other.
    let original = a
        .append(new_message(first, ada, "once", Some("both-handles")))
        .await
        .unwrap();
    let again = b
        .append(new_message(first, ada, "once", Some("both-handles")))
        .await
        .unwrap();
    assert!(original.fresh && !again.fresh);
    assert_eq!(again.message, original.message);
}
