//! The chat service on an in-memory store: validation, access on every path, ordering and
//! what reaches which topic.

use super::*;
use crate::protocol::{
    ConversationInfo, ConversationKind, ConversationSummary, Message, MessageId, ServerEvent,
    UserInfo, MAX_DIRECT_MEMBERS, MAX_MENTIONS,
};
use crate::server::budgets::Allowance;
use crate::server::hub::{MemoryHub, Subscription, Topic};
use crate::server::store::{CacheLimits, SqliteStore};
use std::net::IpAddr;

pub(super) const GENEROUS: PostLimit = PostLimit {
    per_second: 10_000,
    burst: 10_000,
};

const HERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

pub(super) fn limits(post: PostLimit) -> Limits {
    Limits {
        window: 100,
        post,
        open: post,
        max_channels: 5,
        max_memberships: 50,
        join_cache_bytes: 1 << 20,
    }
}

async fn chat_with_limits(limits: Limits) -> Chat {
    let store = SqliteStore::in_memory(CacheLimits::default())
        .await
        .unwrap();
    chat_on(Arc::new(store), limits)
}

/// A chat on `store` with an in-memory hub and generous budgets.
pub(super) fn chat_on(store: Arc<dyn Store>, limits: Limits) -> Chat {
    let plenty = Allowance {
        per_hour: 100_000,
        burst: 100_000,
    };
    Chat::new(
        store,
        Arc::new(MemoryHub::new(1024)),
        limits,
        Budgets::new(plenty, plenty),
    )
}

async fn chat_with(limit: PostLimit) -> Chat {
    chat_with_limits(limits(limit)).await
}

async fn chat() -> Chat {
    chat_with(GENEROUS).await
}

async fn named(chat: &Chat, name: &str) -> UserInfo {
    chat.store()
        .create_user(format!("t-{name}"), Some(name.into()))
        .await
        .unwrap()
}

async fn general(chat: &Chat, user: &UserInfo) -> ConversationInfo {
    chat.ensure_channels(&["general".into()]).await.unwrap();
    chat.channel_named(&user.id, "general").await.unwrap().info
}

/// Every event waiting on a subscription, decoded.
fn drain(sub: &mut Subscription) -> Vec<(Option<u64>, ServerEvent)> {
    let mut out = Vec::new();
    while let Ok(frame) = sub.try_recv() {
        out.push((
            frame.change,
            serde_json::from_str(frame.text.as_str()).unwrap(),
        ));
    }
    out
}

async fn settle_pipeline(chat: &Chat, user: &UserInfo) {
    // A write that goes through the pipeline after everything queued before it.
    let _ = chat
        .react(user, &MessageId("none".into()), "👍", true)
        .await;
}

#[tokio::test]
async fn posting_validates_and_fans_out_once_serialized() {
    let chat = chat().await;
    let ada = named(&chat, "Ada").await;
    let general = general(&chat, &ada).await;
    let mut sub = chat
        .hub()
        .subscribe(&Topic::Conversation(general.id))
        .await
        .unwrap();
    let m = chat
        .post(&ada, general.id, "hi <b>", None)
        .await
        .unwrap()
        .message;
    let events = drain(&mut sub);
    let posted: Vec<_> = events
        .iter()
        .filter(|(_, e)| matches!(e, ServerEvent::Message { .. }))
        .collect();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].0, Some(m.change));
    assert_eq!(posted[0].1, ServerEvent::Message { message: m });
    assert_eq!(
        chat.post(&ada, general.id, "  ", None).await,
        Err(AppError::MessageEmpty)
    );
    assert!(drain(&mut sub).is_empty(), "nothing invalid is broadcast");
}

#[tokio::test]
async fn a_retried_send_is_acknowledged_but_not_broadcast_again() {
    let chat = chat().await;
    let ada = named(&chat, "Ada").await;
    let general = general(&chat, &ada).await;
    chat.post(&ada, general.id, "warm", None).await.unwrap();
    let mut sub = chat
        .hub()
        .subscribe(&Topic::Conversation(general.id))
        .await
        .unwrap();
    let first = chat
        .post(&ada, general.id, "once", Some("k".into()))
        .await
        .unwrap();
    let again = chat
        .post(&ada, general.id, "once", Some("k".into()))
        .await
        .unwrap();
    assert!(first.fresh && !again.fresh);
    assert_eq!(first.message, again.message);
    assert_eq!(drain(&mut sub).len(), 1);
}

#[tokio::test]
async fn joins_share_one_window_until_the_conversation_changes() {
    let chat = chat().await;
    let ada = named(&chat, "Ada").await;
    let info = general(&chat, &ada).await;
    let first = chat.post(&ada, info.id, "one", None).await.unwrap().message;
    let a = chat.join_answer(&info, None).await.unwrap();
    let b = chat.join_answer(&info, None).await.unwrap();
    assert_eq!(
        a.text.as_str().as_ptr(),
        b.text.as_str().as_ptr(),
        "built once"
    );
    assert_eq!(a.last_change, first.change);
    chat.edit(&ada, &first.id, "one, edited").await.unwrap();
    let c = chat.join_answer(&info, None).await.unwrap();
    assert!(
        c.text.as_str().contains("one, edited"),
        "an edit shows at once"
    );
    chat.react(&ada, &first.id, "🎉", true).await.unwrap();
    let d = chat.join_answer(&info, None).await.unwrap();
    assert!(d.text.as_str().contains("🎉"), "a reaction shows at once");
    chat.delete(&ada, &first.id).await.unwrap();
    let e = chat.join_answer(&info, None).await.unwrap();
    assert!(
        !e.text.as_str().contains("one, edited"),
        "a deletion shows at once"
    );
    assert!(e.last_change > d.last_change);
}

#[tokio::test]
async fn nameless_users_cannot_post() {
    let chat = chat().await;
    let ada = named(&chat, "Ada").await;
    let general = general(&chat, &ada).await;
    let anon = chat.store().create_user("x".into(), None).await.unwrap();
    assert_eq!(
        chat.post(&anon, general.id, "hi", None).await,
        Err(AppError::NoDisplayName)
    );
}

#[tokio::test]
async fn flooding_is_refused_per_user_on_every_kind_of_write() {
    let chat = chat_with(PostLimit {
        per_second: 1,
        burst: 3,
    })
    .await;
    let ada = named(&chat, "Ada").await;
    let bob = named(&chat, "Bob").await;
    let general = general(&chat, &ada).await;
    let m = chat
        .post(&ada, general.id, "0", None)
        .await
        .unwrap()
        .message;
    chat.edit(&ada, &m.id, "0!").await.unwrap();
    chat.react(&ada, &m.id, "👍", true).await.unwrap();
    for refused in [
        chat.post(&ada, general.id, "too many", None)
            .await
            .map(|_| ()),
        chat.edit(&ada, &m.id, "again").await.map(|_| ()),
        chat.react(&ada, &m.id, "👀", true).await.map(|_| ()),
        chat.reply(&ada, &m.id, "reply", None, false)
            .await
            .map(|_| ()),
    ] {
        assert!(
            matches!(refused, Err(AppError::RateLimited { retry_after_ms }) if retry_after_ms > 0),
            "{refused:?}"
        );
    }
    // Someone else is not held back by Ada's flood.
    assert!(chat.post(&bob, general.id, "hello", None).await.is_ok());
}

#[tokio::test]
async fn channels_need_a_name_and_stop_at_the_cap_and_private_ones_stay_hidden() {
    let chat = chat().await;
    let anon = chat.store().create_user("x".into(), None).await.unwrap();
    assert_eq!(
        chat.create_channel(&anon, "mine", false, HERE).await,
        Err(AppError::NoDisplayName)
    );
    let ada = named(&chat, "Ada").await;
    let bob = named(&chat, "Bob").await;
    let made = chat
        .create_channel(&ada, " #Random ", false, HERE)
        .await
        .unwrap();
    assert_eq!(made.name.as_deref(), Some("Random"));
    assert!(matches!(
        chat.create_channel(&ada, "random", false, HERE).await,
        Err(AppError::ChannelTaken { .. })
    ));
    let secret = chat
        .create_channel(&ada, "Secret", true, HERE)
        .await
        .unwrap();
    assert_eq!(secret.kind, ConversationKind::Private);
    // The creator's sidebar lists both; Bob's neither; browsing shows the public one only.
    let listed = |list: Vec<crate::protocol::ConversationSummary>| -> Vec<String> {
        list.into_iter()
            .filter_map(|s| s.conversation.name)
            .collect()
    };
    let mine = listed(chat.sidebar(&ada).await.unwrap());
    assert!(mine.contains(&"Random".into()) && mine.contains(&"Secret".into()));
    assert!(listed(chat.sidebar(&bob).await.unwrap()).is_empty());
    let browsed: Vec<_> = chat
        .browse(None)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|c| c.name)
        .collect();
    assert_eq!(browsed, ["Random"]);
    // A clash with a private name does not tell Bob how it is spelled.
    assert_eq!(
        chat.create_channel(&bob, "SECRET", false, HERE).await,
        Err(AppError::ChannelTaken {
            name: "SECRET".into()
        })
    );
    for i in 2..5 {
        chat.create_channel(&ada, &format!("c{i}"), false, HERE)
            .await
            .unwrap();
    }
    assert_eq!(
        chat.create_channel(&ada, "one-too-many", false, HERE).await,
        Err(AppError::TooManyChannels { max: 5 })
    );
}

/// A third person can do nothing with a private channel or a direct message they are not
/// in, through any of the service's doors, and hears nothing of it.
#[tokio::test]
async fn outsiders_reach_nothing_of_private_conversations() {
    let chat = chat().await;
    let ada = named(&chat, "Ada").await;
    let bob = named(&chat, "Bob").await;
    let eve = named(&chat, "Eve").await;
    let secret = chat
        .create_channel(&ada, "secret", true, HERE)
        .await
        .unwrap();
    let dm = chat
        .open_direct(&ada, std::slice::from_ref(&bob.id), HERE)
        .await
        .unwrap();
    let mut eve_stream = chat
        .hub()
        .subscribe(&Topic::User(eve.id.clone()))
        .await
        .unwrap();
    for conversation in [secret.clone(), dm.clone()] {
        let id = conversation.id;
        let m = chat
            .post(&ada, id, "for members only", None)
            .await
            .unwrap()
            .message;
        let hidden = Err(AppError::NoSuchConversation);
        assert_eq!(chat.open(&eve, Some(id), None).await.map(|_| ()), hidden);
        assert_eq!(chat.post(&eve, id, "hi", None).await.map(|_| ()), hidden);
        assert_eq!(chat.older(&eve, id, u64::MAX).await.map(|_| ()), hidden);
        assert_eq!(chat.members(&eve.id, id).await.map(|_| ()), hidden);
        assert_eq!(chat.mark_read(&eve, id, 10).await, hidden);
        assert_eq!(chat.typing(&eve, id).await, hidden);
        assert_eq!(chat.join(&eve, id).await, hidden);
        assert_eq!(chat.leave(&eve, id).await, hidden);
        assert_eq!(chat.invite(&eve, id, &eve.id).await, hidden);
        let gone = Err(AppError::NoSuchMessage);
        assert_eq!(chat.react(&eve, &m.id, "👍", true).await.map(|_| ()), gone);
        assert_eq!(chat.edit(&eve, &m.id, "x").await.map(|_| ()), gone);
        assert_eq!(chat.delete(&eve, &m.id).await.map(|_| ()), gone);
        assert_eq!(
            chat.reply(&eve, &m.id, "x", None, false).await.map(|_| ()),
            gone
        );
        assert_eq!(chat.thread(&eve, &m.id).await.map(|_| ()), gone);
        // A thread under it is as closed as the conversation.
        let reply = chat
            .reply(&ada, &m.id, "in the thread", None, false)
            .await
            .unwrap();
        let thread = reply.message.conversation;
        assert_eq!(
            chat.open(&eve, Some(thread), None).await.map(|_| ()),
            hidden
        );
        assert_eq!(chat.post(&eve, thread, "x", None).await.map(|_| ()), hidden);
        assert_eq!(chat.older(&eve, thread, u64::MAX).await.map(|_| ()), hidden);
    }
    // Nor by name.
    assert!(matches!(
        chat.open(&eve, None, Some("secret")).await,
        Err(AppError::NoSuchChannel { .. })
    ));
    settle_pipeline(&chat, &ada).await;
    assert!(drain(&mut eve_stream).is_empty(), "Eve heard nothing");
    // Members can.
    assert!(chat.open(&bob, Some(dm.id), None).await.is_ok());
    assert!(chat.post(&bob, dm.id, "hi Ada", None).await.is_ok());
}

#[tokio::test]
async fn members_hear_activity_and_mentions_on_their_own_stream() {
    let chat = chat().await;
    let ada = named(&chat, "Ada").await;
    let bob = named(&chat, "Bob Smith").await;
    let cy = named(&chat, "Cy").await;
    let team = chat
        .create_channel(&ada, "team", false, HERE)
        .await
        .unwrap();
    chat.join(&bob, team.id).await.unwrap();
    let mut bob_stream = chat
        .hub()
        .subscribe(&Topic::User(bob.id.clone()))
        .await
        .unwrap();
    let mut cy_stream = chat
        .hub()
        .subscribe(&Topic::User(cy.id.clone()))
        .await
        .unwrap();
    let m = chat
        .post(&ada, team.id, "hey @bob smith, look", None)
        .await
        .unwrap()
        .message;
    assert_eq!(m.mentions, std::slice::from_ref(&bob.id));
    chat.post(&ada, team.id, "@here lunch", None).await.unwrap();
    let heard = drain(&mut bob_stream);
    let activity: Vec<(bool, bool)> = heard
        .iter()
        .filter_map(|(_, e)| match e {
            ServerEvent::Activity {
                conversation,
                mentions,
                mentions_all,
                ..
            } if *conversation == team.id => Some((mentions.contains(&bob.id), *mentions_all)),
            _ => None,
        })
        .collect();
    assert_eq!(activity, [(true, false), (false, true)]);
    assert!(drain(&mut cy_stream).is_empty(), "not a member, not told");
    // The sidebar counts them.
    let summary = chat
        .sidebar(&bob)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.conversation.id == team.id)
        .unwrap();
    assert_eq!((summary.unread, summary.mentions), (2, 2));
    // Reading on one device moves it on the others.
    chat.mark_read(&bob, team.id, summary.last_seq)
        .await
        .unwrap();
    let moved = drain(&mut bob_stream);
    assert!(moved
        .iter()
        .any(|(_, e)| matches!(e, ServerEvent::ReadMoved { seq, .. } if *seq == summary.last_seq)));
}

#[tokio::test]
async fn direct_messages_have_two_to_eight_named_people_and_tell_each_of_them() {
    let chat = chat().await;
    let ada = named(&chat, "Ada").await;
    let mut people = Vec::new();
    for i in 0..MAX_DIRECT_MEMBERS {
        people.push(named(&chat, &format!("P{i}")).await);
    }
    let mut p0 = chat
        .hub()
        .subscribe(&Topic::User(people[0].id.clone()))
        .await
        .unwrap();
    let ids: Vec<_> = people.iter().map(|p| p.id.clone()).collect();
    assert_eq!(
        chat.open_direct(&ada, &ids, HERE).await,
        Err(AppError::TooManyPeople {
            max: MAX_DIRECT_MEMBERS
        })
    );
    let group = chat.open_direct(&ada, &ids[..7], HERE).await.unwrap();
    assert_eq!(group.people.len(), 8);
    assert!(drain(&mut p0).iter().any(
        |(_, e)| matches!(e, ServerEvent::Joined { summary } if summary.conversation.id == group.id)
    ));
    let again = chat.open_direct(&ada, &ids[..7], HERE).await.unwrap();
    assert_eq!(again.id, group.id, "the same people, the same conversation");
    assert_eq!(
        chat.open_direct(&ada, &[UserId("nobody".into())], HERE)
            .await,
        Err(AppError::NoSuchUser)
    );
    let anon = chat.store().create_user("anon".into(), None).await.unwrap();
    assert_eq!(
        chat.open_direct(&ada, &[anon.id], HERE).await,
        Err(AppError::NoSuchUser)
    );
    // Nobody can leave it or be invited into it.
    assert_eq!(chat.leave(&ada, group.id).await, Err(AppError::WrongKind));
}

#[tokio::test]
async fn edits_and_reactions_are_checked_and_live() {
    let chat = chat().await;
    let ada = named(&chat, "Ada").await;
    let bob = named(&chat, "Bob").await;
    let general = general(&chat, &ada).await;
    let m = chat
        .post(&ada, general.id, "tpyo", None)
        .await
        .unwrap()
        .message;
    let mut sub = chat
        .hub()
        .subscribe(&Topic::Conversation(general.id))
        .await
        .unwrap();
    assert_eq!(
        chat.edit(&bob, &m.id, "mine now").await,
        Err(AppError::NotAuthor)
    );
    assert_eq!(chat.delete(&bob, &m.id).await, Err(AppError::NotAuthor));
    assert!(matches!(
        chat.edit(&ada, &m.id, &"x".repeat(4001)).await,
        Err(AppError::MessageTooLong { .. })
    ));
    assert!(
        drain(&mut sub).is_empty(),
        "refused changes publish nothing"
    );
    let edited = chat.edit(&ada, &m.id, "typo").await.unwrap();
    assert!(edited.edited_at.is_some());
    for bad in ["", "a", "<b>", "👍👍👍👍👍👍👍👍👍👍👍"] {
        assert!(
            matches!(
                chat.react(&bob, &m.id, bad, true).await,
                Err(AppError::ReactionInvalid { .. })
            ),
            "{bad:?}"
        );
    }
    let reacted = chat.react(&bob, &m.id, "👍", true).await.unwrap().unwrap();
    assert_eq!(reacted.reactions[0].users[0].id, bob.id);
    assert_eq!(
        chat.react(&bob, &m.id, "👍", true).await,
        Ok(None),
        "twice is once"
    );
    let changes: Vec<(Option<u64>, Message)> = drain(&mut sub)
        .into_iter()
        .filter_map(|(c, e)| match e {
            ServerEvent::Changed { message } => Some((c, message)),
            _ => None,
        })
        .collect();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0].1.body, "typo");
    assert_eq!(changes[1].0, Some(changes[0].1.change + 1));
    let deleted = chat.delete(&ada, &m.id).await.unwrap();
    assert!(deleted.deleted);
    assert_eq!(
        chat.edit(&ada, &m.id, "back").await,
        Err(AppError::NoSuchMessage)
    );
}

#[tokio::test]
async fn every_change_is_published_with_the_next_number_in_order() {
    let chat = Arc::new(chat().await);
    let ada = named(&chat, "Ada").await;
    let race = chat
        .create_channel(&ada, "race", false, HERE)
        .await
        .unwrap();
    let start = chat.store().recent(race.id, 1).await.unwrap().last_change;
    let mut sub = chat
        .hub()
        .subscribe(&Topic::Conversation(race.id))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for t in 0..6 {
        let chat = chat.clone();
        let user = named(&chat, &format!("u{t}")).await;
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                let m = chat
                    .post(&user, race.id, &format!("{t}-{i}"), None)
                    .await
                    .unwrap()
                    .message;
                if i % 5 == 0 {
                    chat.edit(&user, &m.id, "edited").await.unwrap();
                    chat.react(&user, &m.id, "👍", true).await.unwrap();
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let numbers: Vec<u64> = drain(&mut sub).into_iter().filter_map(|(c, _)| c).collect();
    let end = chat.store().recent(race.id, 1).await.unwrap().last_change;
    // 120 posts, 24 edits, 24 reactions and the six posters joining: no gap, no repeat.
    assert_eq!(numbers, (start + 1..=end).collect::<Vec<_>>());
    assert_eq!(end - start, 120 + 24 + 24 + 6);
}

#[tokio::test]
async fn replies_count_on_the_parent_and_can_echo_to_the_channel() {
    let chat = chat().await;
    let ada = named(&chat, "Ada").await;
    let bob = named(&chat, "Bob").await;
    let general = general(&chat, &ada).await;
    let parent = chat
        .post(&ada, general.id, "question", None)
        .await
        .unwrap()
        .message;
    let mut sub = chat
        .hub()
        .subscribe(&Topic::Conversation(general.id))
        .await
        .unwrap();
    let reply = chat
        .reply(&bob, &parent.id, "answer", Some("r1".into()), true)
        .await
        .unwrap();
    let events = drain(&mut sub);
    assert!(events.iter().any(|(_, e)| matches!(e,
        ServerEvent::Changed { message } if message.id == parent.id
            && message.thread.as_ref().is_some_and(|t| t.replies == 1))));
    assert!(
        events.iter().any(|(_, e)| matches!(e,
        ServerEvent::Message { message } if message.body == "answer")),
        "also sent to the channel"
    );
    let view = chat.thread(&ada, &parent.id).await.unwrap();
    let replies = view.thread.unwrap().messages;
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].id, reply.message.id);
    assert_eq!(
        chat.reply(&ada, &reply.message.id, "nested", None, false)
            .await
            .map(|_| ()),
        Err(AppError::NestedThread)
    );
}

#[tokio::test]
async fn nobody_joins_past_max_memberships_and_a_refusal_changes_nothing() {
    let chat = chat_with_limits(Limits {
        max_memberships: 3,
        max_channels: 100,
        ..limits(GENEROUS)
    })
    .await;
    let ada = named(&chat, "Ada").await;
    let bob = named(&chat, "Bob").await;
    for i in 0..3 {
        chat.create_channel(&ada, &format!("mine{i}"), false, HERE)
            .await
            .unwrap();
    }
    let open = chat
        .create_channel(&bob, "open", false, HERE)
        .await
        .unwrap();
    let full: Result<(), AppError> = Err(AppError::TooManyConversations { max: 3 });
    let mut ada_stream = chat
        .hub()
        .subscribe(&Topic::User(ada.id.clone()))
        .await
        .unwrap();
    let mut open_sub = chat
        .hub()
        .subscribe(&Topic::Conversation(open.id))
        .await
        .unwrap();
    // Creating, joining, posting (which joins), being invited, starting a direct message.
    assert_eq!(
        chat.create_channel(&ada, "fourth", false, HERE)
            .await
            .map(|_| ()),
        full
    );
    assert_eq!(chat.join(&ada, open.id).await, full);
    assert_eq!(
        chat.post(&ada, open.id, "let me in", None)
            .await
            .map(|_| ()),
        full
    );
    assert_eq!(chat.invite(&bob, open.id, &ada.id).await, full);
    assert_eq!(
        chat.open_direct(&ada, std::slice::from_ref(&bob.id), HERE)
            .await
            .map(|_| ()),
        full
    );
    // Nor does anyone else start a direct conversation with her.
    assert_eq!(
        chat.open_direct(&bob, std::slice::from_ref(&ada.id), HERE)
            .await
            .map(|_| ()),
        full
    );
    // The refusal says why, with the limit.
    let said = AppError::TooManyConversations { max: 3 }.to_string();
    assert!(said.contains("3 conversations"), "{said}");
    // Nothing changed: no channel, no membership, no message, no direct conversation.
    assert!(chat
        .store()
        .channel_named("fourth")
        .await
        .unwrap()
        .is_none());
    let members = chat.members(&bob.id, open.id).await.unwrap();
    assert_eq!(members.len(), 1, "only Bob");
    assert!(chat
        .history(chat.open(&bob, Some(open.id), None).await.unwrap().0)
        .await
        .unwrap()
        .messages
        .is_empty());
    assert_eq!(chat.sidebar(&ada).await.unwrap().len(), 3);
    assert_eq!(
        chat.sidebar(&bob).await.unwrap().len(),
        1,
        "no direct message"
    );
    settle_pipeline(&chat, &ada).await;
    assert!(drain(&mut ada_stream).is_empty(), "Ada was told of nothing");
    assert!(drain(&mut open_sub).is_empty(), "the channel changed not");
    // Leaving one makes room again.
    let mine0 = chat.channel_named(&ada.id, "mine0").await.unwrap().info;
    chat.leave(&ada, mine0.id).await.unwrap();
    chat.join(&ada, open.id).await.unwrap();
    assert_eq!(chat.join(&ada, mine0.id).await, full);
}

#[tokio::test]
async fn a_message_mentions_at_most_max_mentions_people() {
    let chat = chat_with_limits(Limits {
        max_channels: 100,
        ..limits(GENEROUS)
    })
    .await;
    let ada = named(&chat, "Ada").await;
    let team = chat
        .create_channel(&ada, "team", false, HERE)
        .await
        .unwrap();
    let mut people = Vec::new();
    for i in 0..MAX_MENTIONS + 10 {
        let person = named(&chat, &format!("p{i:02}")).await;
        chat.join(&person, team.id).await.unwrap();
        people.push(person);
    }
    let everyone: Vec<String> = people
        .iter()
        .map(|p| format!("@{}", p.name.as_deref().unwrap()))
        .collect();
    let body = everyone.join(" ");
    let m = chat.post(&ada, team.id, &body, None).await.unwrap().message;
    let first: Vec<_> = people[..MAX_MENTIONS]
        .iter()
        .map(|p| p.id.clone())
        .collect();
    assert_eq!(m.mentions, first, "the first {MAX_MENTIONS}, in order");
    // The ones past the cap are not counted as mentioned.
    let mentions_of = |user: UserInfo| {
        let chat = &chat;
        async move {
            chat.sidebar(&user)
                .await
                .unwrap()
                .into_iter()
                .find(|s| s.conversation.id == team.id)
                .unwrap()
                .mentions
        }
    };
    assert_eq!(mentions_of(people[0].clone()).await, 1);
    assert_eq!(mentions_of(people[MAX_MENTIONS].clone()).await, 0);
    // An edit is held to the same cap.
    let reversed: Vec<String> = everyone.iter().rev().cloned().collect();
    let edited = chat.edit(&ada, &m.id, &reversed.join(" ")).await.unwrap();
    assert_eq!(edited.mentions.len(), MAX_MENTIONS);
    assert_eq!(edited.mentions[0], people[MAX_MENTIONS + 9].id);
}

#[tokio::test]
async fn the_member_id_and_access_caches_stay_bounded() {
    let chat = chat_with_limits(Limits {
        max_channels: MEMBER_LISTS + 200,
        max_memberships: MEMBER_LISTS + 200,
        ..limits(GENEROUS)
    })
    .await;
    let ada = named(&chat, "Ada").await;
    let author = Chat::author(&ada).unwrap();
    let mut answers = Vec::new();
    for i in 0..MEMBER_LISTS + 100 {
        let info = chat
            .store()
            .create_channel(format!("c{i}"), ConversationKind::Public, Some(&author))
            .await
            .unwrap();
        answers.push(chat.submit_post(&ada, info.id, "hi", None).await.unwrap());
    }
    for answer in answers {
        settle(answer).await.unwrap();
    }
    assert_eq!(
        chat.member_lists_cached(),
        MEMBER_LISTS,
        "full, and no more"
    );
    let (conversations, memberships) = chat.access_cache().entries();
    assert_eq!(conversations, ACCESS_CONVERSATIONS);
    assert_eq!(memberships, MEMBER_LISTS + 100);
}

#[tokio::test]
async fn leaving_ends_posting_at_once_though_access_is_cached() {
    let chat = chat().await;
    let ada = named(&chat, "Ada").await;
    let bob = named(&chat, "Bob").await;
    let club = chat.create_channel(&ada, "club", true, HERE).await.unwrap();
    let hidden = Err(AppError::NoSuchConversation);
    assert_eq!(
        chat.post(&bob, club.id, "knock", None).await.map(|_| ()),
        hidden
    );
    chat.invite(&ada, club.id, &bob.id).await.unwrap();
    chat.post(&bob, club.id, "in", None).await.unwrap();
    chat.post(&bob, club.id, "still in", None).await.unwrap();
    chat.leave(&bob, club.id).await.unwrap();
    assert_eq!(
        chat.post(&bob, club.id, "out", None).await.map(|_| ()),
        hidden
    );
    // And joining a public channel by posting is seen by the next post.
    let open = chat
        .create_channel(&ada, "open", false, HERE)
        .await
        .unwrap();
    let mut bob_stream = chat
        .hub()
        .subscribe(&Topic::User(bob.id.clone()))
        .await
        .unwrap();
    chat.post(&bob, open.id, "first", None).await.unwrap();
    chat.post(&bob, open.id, "second", None).await.unwrap();
    let joined = drain(&mut bob_stream)
        .into_iter()
        .filter(|(_, e)| matches!(e, ServerEvent::Joined { .. }))
        .count();
    assert_eq!(joined, 1, "joined once, by the first post");
}

#[tokio::test]
async fn newcomers_posting_at_once_join_in_their_posts_commits_in_order() {
    use std::sync::atomic::Ordering;
    let chat = Arc::new(chat().await);
    let ada = named(&chat, "Ada").await;
    let open = chat
        .create_channel(&ada, "open", false, HERE)
        .await
        .unwrap();
    let start = chat.store().recent(open.id, 1).await.unwrap().last_change;
    let mut sub = chat
        .hub()
        .subscribe(&Topic::Conversation(open.id))
        .await
        .unwrap();
    let mut newcomers = Vec::new();
    let mut streams = Vec::new();
    for i in 0..8 {
        let user = named(&chat, &format!("New {i}")).await;
        streams.push(
            chat.hub()
                .subscribe(&Topic::User(user.id.clone()))
                .await
                .unwrap(),
        );
        newcomers.push(user);
    }
    let jobs_before = chat.pipeline_stats().jobs.load(Ordering::Relaxed);
    // Each queues its post before any is stored, so they share batches.
    let mut answers = Vec::new();
    for user in &newcomers {
        let answer = chat
            .submit_post(user, open.id, &format!("hi from {}", user.id.0), None)
            .await
            .unwrap();
        answers.push(answer);
    }
    for answer in answers {
        let appended = settle(answer).await.unwrap();
        let joined = appended.joined.expect("a newcomer's post joins");
        assert!(joined.change < appended.message.change);
    }
    assert_eq!(
        chat.pipeline_stats().jobs.load(Ordering::Relaxed),
        jobs_before,
        "no join ran as a write of its own"
    );
    let events = drain(&mut sub);
    let numbers: Vec<u64> = events.iter().filter_map(|(c, _)| *c).collect();
    assert_eq!(
        numbers,
        (start + 1..=start + 16).collect::<Vec<_>>(),
        "in order"
    );
    let last_members = events.iter().rev().find_map(|(_, e)| match e {
        ServerEvent::Members { members, .. } => Some(members.len()),
        _ => None,
    });
    assert_eq!(last_members, Some(9));
    for (user, stream) in newcomers.iter().zip(&mut streams) {
        let joined: Vec<ConversationId> = drain(stream)
            .into_iter()
            .filter_map(|(_, e)| match e {
                ServerEvent::Joined { summary } => Some(summary.conversation.id),
                _ => None,
            })
            .collect();
        assert_eq!(joined, [open.id], "{} heard of their join once", user.id.0);
        assert!(chat
            .store()
            .membership(open.id, &user.id)
            .await
            .unwrap()
            .is_some());
    }
}

/// The summary a newcomer's own stream hears (`joined`) is the conversation as it stood at
/// their join, as the store keeps it: their reading starts at the newest message before it
/// (though an edit took a number since), nothing unread; what others post afterwards reaches
/// them as activity, and the store's own count agrees. The same whether they join by posting
/// or by joining.
#[tokio::test]
async fn a_newcomers_joined_summary_is_the_conversation_at_their_join() {
    let chat = chat().await;
    let ada = named(&chat, "Ada").await;
    let bob = named(&chat, "Bob").await;
    let cy = named(&chat, "Cy").await;
    let open = chat
        .create_channel(&ada, "open", false, HERE)
        .await
        .unwrap();
    let first = chat.post(&ada, open.id, "one", None).await.unwrap();
    let newest = chat.post(&ada, open.id, "two", None).await.unwrap().message;
    chat.edit(&ada, &first.message.id, "one, edited")
        .await
        .unwrap();
    let hub = chat.hub();
    let mut bob_stream = hub.subscribe(&Topic::User(bob.id.clone())).await.unwrap();
    let mut cy_stream = hub.subscribe(&Topic::User(cy.id.clone())).await.unwrap();
    let joined_summary = |events: Vec<(Option<u64>, ServerEvent)>| {
        let summaries: Vec<ConversationSummary> = events
            .into_iter()
            .filter_map(|(_, e)| match e {
                ServerEvent::Joined { summary } => Some(summary),
                _ => None,
            })
            .collect();
        assert_eq!(summaries.len(), 1, "one joined: {summaries:?}");
        summaries.into_iter().next().unwrap()
    };

    // Bob joins by posting.
    let bobs = chat.post(&bob, open.id, "hi", None).await.unwrap();
    let join = bobs.joined.clone().expect("joined by posting");
    assert_ne!(
        join.change - 1,
        newest.seq,
        "the edit took the number before"
    );
    let summary = joined_summary(drain(&mut bob_stream));
    assert_eq!(summary.conversation.id, open.id);
    assert_eq!(summary.conversation.name.as_deref(), Some("open"));
    assert_eq!(
        (summary.read_seq, summary.last_seq),
        (newest.seq, newest.seq)
    );
    assert_eq!((summary.unread, summary.mentions), (0, 0));
    let stored = chat
        .store()
        .summary(open.id, &bob.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.read_seq, summary.read_seq);
    assert_eq!(stored.unread, 0, "his own post is not unread");

    // Cy joins; then Ada posts: Cy hears of it as activity past where his reading starts.
    chat.join(&cy, open.id).await.unwrap();
    let summary = joined_summary(drain(&mut cy_stream));
    assert_eq!(
        (summary.read_seq, summary.last_seq),
        (bobs.message.seq, bobs.message.seq)
    );
    assert_eq!(summary.unread, 0);
    let later = chat
        .post(&ada, open.id, "welcome", None)
        .await
        .unwrap()
        .message;
    let activity: Vec<u64> = drain(&mut cy_stream)
        .into_iter()
        .filter_map(|(_, e)| match e {
            ServerEvent::Activity { seq, .. } => Some(seq),
            _ => None,
        })
        .collect();
    assert_eq!(activity, [later.seq]);
    assert!(later.seq > summary.read_seq);
    let stored = chat
        .store()
        .summary(open.id, &cy.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stored.read_seq, stored.unread), (summary.read_seq, 1));
}
