//! What every [`Hub`] driver must do, run unchanged on each ([`run_all`]), and what a driver
//! that carries frames between nodes must do besides ([`run_between`]).

use super::*;
use crate::protocol::ServerEvent;
use broadcast::error::RecvError;
use futures_util::future::BoxFuture;

/// Makes a hub whose subscribers may fall so many frames behind (on its own bus, or on
/// the bus of the pair under test).
pub type Make<'a> = &'a (dyn Fn(usize) -> BoxFuture<'static, Arc<dyn Hub>> + Sync);

fn frame(seq: u64) -> Frame {
    Frame::new(
        Some(seq),
        &ServerEvent::error(crate::error::AppError::MessageEmpty, Some(seq.to_string())),
    )
}

pub async fn subscribers_get_the_same_bytes_in_order(make: Make<'_>) {
    let hub = make(16).await;
    let topic = Topic::Conversation(ConversationId(1));
    let mut a = hub.subscribe(&topic).await.unwrap();
    let mut b = hub.subscribe(&topic).await.unwrap();
    let mut other = hub
        .subscribe(&Topic::User(UserId("u".into())))
        .await
        .unwrap();
    for seq in 1..=3 {
        hub.publish(&topic, frame(seq)).await.unwrap();
    }
    for seq in 1..=3 {
        let fa = a.recv().await.unwrap();
        let fb = b.recv().await.unwrap();
        assert_eq!(fa.change, Some(seq));
        // One serialization shared: both point at the same buffer.
        assert_eq!(fa.text.as_str().as_ptr(), fb.text.as_str().as_ptr());
    }
    assert!(other.try_recv().is_err());
}

pub async fn a_lagging_subscriber_is_told_not_dropped(make: Make<'_>) {
    let hub = make(4).await;
    let topic = Topic::Conversation(ConversationId(3));
    let mut slow = hub.subscribe(&topic).await.unwrap();
    for seq in 1..=10 {
        hub.publish(&topic, frame(seq)).await.unwrap();
    }
    assert!(matches!(slow.recv().await, Err(RecvError::Lagged(6))));
    assert_eq!(slow.recv().await.unwrap().change, Some(7));
}

pub async fn activity_skips_users_whose_every_socket_has_the_conversation_open(make: Make<'_>) {
    let hub = make(16).await;
    let (ada, bo) = (UserId("ada".into()), UserId("bo".into()));
    let (here, there) = (ConversationId(1), ConversationId(2));
    let mut ada_stream = hub.subscribe(&Topic::User(ada.clone())).await.unwrap();
    let mut bo_stream = hub.subscribe(&Topic::User(bo.clone())).await.unwrap();
    let ada_tab = hub.views().watch(&ada);
    let ada_phone = hub.views().watch(&ada);
    let bo_tab = hub.views().watch(&bo);
    ada_tab.set(Some(here));
    ada_phone.set(Some(here));
    bo_tab.set(Some(there));
    let note = |about| Frame::about(about, &ServerEvent::Refresh);
    hub.publish(&Topic::User(ada.clone()), note(here))
        .await
        .unwrap();
    hub.publish(&Topic::User(bo.clone()), note(here))
        .await
        .unwrap();
    assert!(
        ada_stream.try_recv().is_err(),
        "both of Ada's sockets see it"
    );
    assert_eq!(bo_stream.try_recv().unwrap().about, Some(here));
    // One of Ada's sockets moves on (or is about to): she hears of it again.
    ada_phone.set(None);
    hub.publish(&Topic::User(ada.clone()), note(here))
        .await
        .unwrap();
    assert_eq!(ada_stream.try_recv().unwrap().about, Some(here));
    ada_phone.set(Some(here));
    drop(ada_tab);
    hub.publish(&Topic::User(ada.clone()), note(here))
        .await
        .unwrap();
    assert!(
        ada_stream.try_recv().is_err(),
        "the socket left has it open"
    );
    // Frames about nothing in particular always go through.
    hub.publish(&Topic::User(ada.clone()), frame(1))
        .await
        .unwrap();
    assert!(ada_stream.try_recv().is_ok());
    drop((ada_phone, bo_tab));
    assert_eq!(hub.views().users(), 0);
}

pub async fn a_users_stream_holds_fewer_frames_than_a_conversation(make: Make<'_>) {
    let hub = make(1024).await;
    let mut user = hub
        .subscribe(&Topic::User(UserId("u".into())))
        .await
        .unwrap();
    let mut conversation = hub
        .subscribe(&Topic::Conversation(ConversationId(1)))
        .await
        .unwrap();
    for seq in 1..=(USER_STREAM_CAPACITY as u64 + 1) {
        hub.publish(&Topic::User(UserId("u".into())), frame(seq))
            .await
            .unwrap();
        hub.publish(&Topic::Conversation(ConversationId(1)), frame(seq))
            .await
            .unwrap();
    }
    assert!(matches!(user.recv().await, Err(RecvError::Lagged(1))));
    assert_eq!(conversation.recv().await.unwrap().change, Some(1));
}

pub async fn topics_without_subscribers_are_forgotten(make: Make<'_>) {
    let hub = make(4).await;
    let topic = Topic::Conversation(ConversationId(3));
    drop(hub.subscribe(&topic).await.unwrap());
    assert_eq!(hub.topic_count(), 1);
    hub.publish(&topic, frame(1)).await.unwrap();
    assert_eq!(hub.topic_count(), 0);
    // Topics nobody publishes to are swept as the map grows.
    for i in 0..10_000 {
        drop(
            hub.subscribe(&Topic::Conversation(ConversationId(100 + i)))
                .await
                .unwrap(),
        );
    }
    assert!(hub.topic_count() <= 128, "{}", hub.topic_count());
}

/// Runs every check of this suite on hubs that `make` builds.
pub async fn run_all(make: Make<'_>) {
    subscribers_get_the_same_bytes_in_order(make).await;
    a_lagging_subscriber_is_told_not_dropped(make).await;
    activity_skips_users_whose_every_socket_has_the_conversation_open(make).await;
    a_users_stream_holds_fewer_frames_than_a_conversation(make).await;
    topics_without_subscribers_are_forgotten(make).await;
}
