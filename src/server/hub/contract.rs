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

/// Two hubs on one bus, as two nodes have them, each with its [`FakeRelay`].
pub type MakePair<'a> = &'a (dyn Fn() -> BoxFuture<'static, Nodes> + Sync);

/// Hubs on one bus and the relays attached to them.
pub struct Nodes {
    /// Hubs, each as one node has it.
    pub hubs: Vec<Arc<dyn Hub>>,
    /// Their relays, in the same order.
    pub relays: Vec<Arc<FakeRelay>>,
}

/// A relay whose "store" is a number per conversation: a catch-up brings the frames up to
/// it. Records what it was asked and told.
#[derive(Default)]
pub struct FakeRelay {
    /// The latest change number per conversation, as the store would say.
    pub latest: Mutex<HashMap<ConversationId, u64>>,
    /// Heals asked for: (conversation, after).
    pub heals: Mutex<Vec<(ConversationId, u64)>>,
    /// Frames that arrived from other nodes, by change number (for membership notes: 0).
    pub arrived: Mutex<Vec<(Topic, Option<u64>, bool)>>,
    /// Times the bus was lost or came back.
    pub lost: std::sync::atomic::AtomicUsize,
}

impl FakeRelay {
    /// Says the store has `conversation` up to change `latest`.
    pub fn set_latest(&self, conversation: ConversationId, latest: u64) {
        self.latest.lock().unwrap().insert(conversation, latest);
    }
}

#[async_trait]
impl Relay for FakeRelay {
    fn arriving(&self, topic: &Topic, frame: &Frame) {
        self.arrived
            .lock()
            .unwrap()
            .push((topic.clone(), frame.change, frame.member.is_some()));
    }

    async fn heal(&self, conversation: ConversationId, after: u64) -> Option<Frame> {
        self.heals.lock().unwrap().push((conversation, after));
        let latest = *self.latest.lock().unwrap().get(&conversation)?;
        Some(Frame::catch_up(
            after,
            latest,
            &ServerEvent::error(crate::error::AppError::MessageEmpty, Some("healed".into())),
        ))
    }

    fn bus_lost(&self) {
        self.lost.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn unfollowed(&self, _topic: &Topic) {}
}

/// The next frame of a subscription, waiting a few seconds at most.
pub async fn next(subscription: &mut Subscription) -> Frame {
    tokio::time::timeout(std::time::Duration::from_secs(5), subscription.recv())
        .await
        .expect("a frame within 5 s")
        .expect("a frame, not lag")
}

/// Frames published on one node reach another node's subscribers, in order, with their
/// numbers, their text and the membership they change; the publishing node's own
/// subscribers get each frame once.
pub async fn frames_cross_nodes_in_order(make: MakePair<'_>) {
    let nodes = make().await;
    let (a, b) = (&nodes.hubs[0], &nodes.hubs[1]);
    let topic = Topic::Conversation(ConversationId(7));
    let mut here = a.subscribe(&topic).await.unwrap();
    let mut there = b.subscribe(&topic).await.unwrap();
    let ada = UserId("ada".into());
    for seq in 1..=50 {
        let mut f = frame(seq);
        if seq == 50 {
            f = f.for_member(ConversationId(7), &ada);
        }
        a.publish(&topic, f).await.unwrap();
    }
    for seq in 1..=50 {
        let mine = next(&mut here).await;
        let theirs = next(&mut there).await;
        assert_eq!((mine.change, theirs.change), (Some(seq), Some(seq)));
        assert_eq!(mine.text.as_str(), theirs.text.as_str());
        assert_eq!(theirs.first, seq);
    }
    assert!(
        here.try_recv().is_err(),
        "nothing twice on the publishing node"
    );
    let last = nodes.relays[1].arrived.lock().unwrap().clone();
    assert!(
        last.iter()
            .any(|(t, change, member)| t == &topic && *change == Some(50) && *member),
        "the membership change crossed: {last:?}"
    );
    // A user's stream crosses too.
    let user = Topic::User(ada.clone());
    let mut stream = b.subscribe(&user).await.unwrap();
    a.publish(&user, Frame::new(None, &ServerEvent::Refresh))
        .await
        .unwrap();
    assert_eq!(next(&mut stream).await.change, None);
    // One frame for many users' streams reaches each of them, on every node, once.
    let bo = Topic::User(UserId("bo".into()));
    let mut bo_there = b.subscribe(&bo).await.unwrap();
    let mut bo_here = a.subscribe(&bo).await.unwrap();
    let users = [ada.clone(), UserId("bo".into()), UserId("cy".into())];
    let note = Frame::about(ConversationId(7), &ServerEvent::Refresh);
    a.publish_to_users(&users, note).await.unwrap();
    for sub in [&mut stream, &mut bo_there, &mut bo_here] {
        assert_eq!(next(sub).await.about, Some(ConversationId(7)));
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        stream.try_recv().is_err() && bo_here.try_recv().is_err(),
        "once each"
    );
}

/// A frame past a missing number (lost on the bus) is preceded by a catch-up from the store,
/// and frames already covered are not delivered again.
pub async fn a_gap_is_healed_from_the_store(make: MakePair<'_>) {
    let nodes = make().await;
    let (a, b) = (&nodes.hubs[0], &nodes.hubs[1]);
    let id = ConversationId(9);
    let topic = Topic::Conversation(id);
    let mut there = b.subscribe(&topic).await.unwrap();
    a.publish(&topic, frame(1)).await.unwrap();
    a.publish(&topic, frame(2)).await.unwrap();
    assert_eq!(next(&mut there).await.change, Some(1));
    assert_eq!(next(&mut there).await.change, Some(2));
    // 3 and 4 never reach the bus; the store has up to 5 when 5 arrives.
    nodes.relays[1].set_latest(id, 5);
    a.publish(&topic, frame(5)).await.unwrap();
    let healed = next(&mut there).await;
    assert_eq!((healed.first, healed.change), (3, Some(5)));
    assert!(healed.text.as_str().contains("healed"));
    assert_eq!(nodes.relays[1].heals.lock().unwrap().as_slice(), &[(id, 2)]);
    // A late 4 is covered already; 6 follows.
    a.publish(&topic, frame(4)).await.unwrap();
    a.publish(&topic, frame(6)).await.unwrap();
    assert_eq!(next(&mut there).await.change, Some(6));
}

/// Runs every check of the bus part of this suite on pairs `make` builds.
pub async fn run_between(make: MakePair<'_>) {
    frames_cross_nodes_in_order(make).await;
    a_gap_is_healed_from_the_store(make).await;
}
