//! Direct messages and private channels through every door: a third person can neither
//! load, subscribe to, catch up on nor hear a conversation they are not in, by socket, by
//! server function, by form post or by page, however they guess its ids. Members can, and
//! see each other's edits, reactions, replies and read positions live.
#![cfg(feature = "ssr")]

mod common;

use common::login;
use flack::protocol::{ClientEvent, ConversationId, ConversationInfo, Message, ServerEvent};
use flack::server::config::Config;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn start() -> SocketAddr {
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    common::serve(Config {
        database: dir.path().join("flack.db"),
        ..Config::default()
    })
    .await
}

async fn connect(addr: SocketAddr, token: &str) -> Ws {
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let (mut ws, _) = connect_async(req).await.unwrap();
    assert!(matches!(
        next(&mut ws).await,
        Some(ServerEvent::Hello { .. })
    ));
    ws
}

async fn send(ws: &mut Ws, event: ClientEvent) {
    ws.send(Frame::text(serde_json::to_string(&event).unwrap()))
        .await
        .unwrap();
}

/// The next event within `wait`, or `None`.
async fn next_within(ws: &mut Ws, wait: Duration) -> Option<ServerEvent> {
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(Ok(Frame::Text(text)))) => {
                return Some(serde_json::from_str(text.as_str()).expect("a server event"))
            }
            Ok(Some(Ok(Frame::Ping(_) | Frame::Pong(_)))) => continue,
            _ => return None,
        }
    }
}

async fn next(ws: &mut Ws) -> Option<ServerEvent> {
    next_within(ws, Duration::from_secs(5)).await
}

/// Reads until an event matches (skipping others), failing after 5 s of silence.
async fn until(ws: &mut Ws, wanted: impl Fn(&ServerEvent) -> bool) -> ServerEvent {
    loop {
        let event = next(ws).await.expect("an event within 5 s");
        if wanted(&event) {
            return event;
        }
    }
}

fn code(event: &ServerEvent) -> String {
    match event {
        ServerEvent::Error { error, .. } => serde_json::to_value(error).unwrap()["code"]
            .as_str()
            .unwrap()
            .to_string(),
        other => panic!("expected an error, got {other:?}"),
    }
}

struct Api {
    addr: SocketAddr,
    token: String,
    http: reqwest::Client,
}

impl Api {
    fn new(addr: SocketAddr, token: &str) -> Self {
        Api {
            addr,
            token: token.to_string(),
            http: reqwest::Client::new(),
        }
    }

    /// A server function called as a program would (form-encoded, JSON answer).
    async fn call(&self, name: &str, form: &[(&str, String)]) -> (u16, Value) {
        let res = self
            .http
            .post(format!("http://{}/api/{name}", self.addr))
            .header("cookie", format!("flack_session={}", self.token))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// A page, as a browser without JavaScript gets it.
    async fn page(&self, path: &str) -> String {
        self.http
            .get(format!("http://{}{path}", self.addr))
            .header("cookie", format!("flack_session={}", self.token))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A plain form post, as a browser without JavaScript sends it (it follows redirects):
    /// the final status and page, and the page's URL.
    async fn form_at(
        &self,
        name: &str,
        form: &[(&str, String)],
        from: &str,
    ) -> (u16, String, String) {
        let res = self
            .http
            .post(format!("http://{}/api/{name}", self.addr))
            .header("cookie", format!("flack_session={}", self.token))
            .header("accept", "text/html")
            .header("referer", format!("http://{}{from}", self.addr))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let url = res.url().to_string();
        (status, res.text().await.unwrap(), url)
    }

    async fn form(&self, name: &str, form: &[(&str, String)], from: &str) -> (u16, String) {
        let (status, page, _) = self.form_at(name, form, from).await;
        (status, page)
    }
}

fn percent_decode(value: &str) -> String {
    url::form_urlencoded::parse(format!("v={value}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

async fn user_id(api: &Api) -> String {
    api.call("get_me", &[]).await.1["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Ada and Bob share a direct conversation and a private channel with a message each;
/// Eve is in neither.
struct World {
    addr: SocketAddr,
    ada: Api,
    bob: Api,
    eve: Api,
    tokens: [String; 3],
    dm: ConversationInfo,
    club: ConversationInfo,
    dm_message: Message,
    club_message: Message,
}

async fn world() -> World {
    let addr = start().await;
    let tokens = [
        login(addr, "Ada").await,
        login(addr, "Bob").await,
        login(addr, "Eve").await,
    ];
    let (ada, bob, eve) = (
        Api::new(addr, &tokens[0]),
        Api::new(addr, &tokens[1]),
        Api::new(addr, &tokens[2]),
    );
    let bob_id = user_id(&bob).await;
    let (status, dm) = ada.call("open_direct", &[("people", bob_id.clone())]).await;
    assert_eq!(status, 200, "{dm}");
    let dm: ConversationInfo = serde_json::from_value(dm).unwrap();
    let (status, club) = ada
        .call(
            "create_channel",
            &[("name", "club".into()), ("private", "on".into())],
        )
        .await;
    assert_eq!(status, 200, "{club}");
    let club: ConversationInfo = serde_json::from_value(club).unwrap();
    let (status, _) = ada
        .call(
            "membership",
            &[("conversation", club.id.0.to_string()), ("invite", bob_id)],
        )
        .await;
    assert_eq!(status, 200);
    let post = |to: ConversationId, body: &'static str| {
        let ada = &ada;
        async move {
            let (status, m) = ada
                .call(
                    "post_message",
                    &[("conversation", to.0.to_string()), ("body", body.into())],
                )
                .await;
            assert_eq!(status, 200, "{m}");
            serde_json::from_value::<Message>(m).unwrap()
        }
    };
    let dm_message = post(dm.id, "psst, Bob").await;
    let club_message = post(club.id, "club business").await;
    World {
        addr,
        ada,
        bob,
        eve,
        tokens,
        dm,
        club,
        dm_message,
        club_message,
    }
}

#[tokio::test]
async fn outsiders_get_nothing_by_socket_whatever_ids_they_guess() {
    let w = world().await;
    let mut eve = connect(w.addr, &w.tokens[2]).await;
    for (conversation, message) in [(&w.dm, &w.dm_message), (&w.club, &w.club_message)] {
        let id = conversation.id;
        // Subscribing, fresh or catching up, by id or (a private channel) by name.
        for after_change in [None, Some(0)] {
            send(
                &mut eve,
                ClientEvent::Subscribe {
                    conversation: Some(id),
                    channel: None,
                    after_change,
                },
            )
            .await;
            assert_eq!(code(&next(&mut eve).await.unwrap()), "no_such_conversation");
        }
        let requests = [
            ClientEvent::Send {
                conversation: Some(id),
                channel: None,
                body: "let me in".into(),
                client_id: Some("e-1".into()),
            },
            ClientEvent::Read {
                conversation: id,
                seq: 100,
            },
            ClientEvent::Typing { conversation: id },
        ];
        for request in requests {
            send(&mut eve, request).await;
            assert_eq!(code(&next(&mut eve).await.unwrap()), "no_such_conversation");
        }
        let on_message = [
            ClientEvent::React {
                message_id: message.id.clone(),
                emoji: "👍".into(),
                on: true,
            },
            ClientEvent::Edit {
                message_id: message.id.clone(),
                body: "mine".into(),
            },
            ClientEvent::Delete {
                message_id: message.id.clone(),
            },
            ClientEvent::Reply {
                message_id: message.id.clone(),
                body: "reply".into(),
                client_id: None,
                also_to_channel: true,
            },
        ];
        for request in on_message {
            send(&mut eve, request).await;
            assert_eq!(code(&next(&mut eve).await.unwrap()), "no_such_message");
        }
    }
    send(
        &mut eve,
        ClientEvent::Subscribe {
            conversation: None,
            channel: Some("club".into()),
            after_change: None,
        },
    )
    .await;
    assert_eq!(code(&next(&mut eve).await.unwrap()), "no_such_channel");
    // Made-up ids look the same as real ones.
    send(
        &mut eve,
        ClientEvent::Subscribe {
            conversation: Some(ConversationId(987_654)),
            channel: None,
            after_change: None,
        },
    )
    .await;
    assert_eq!(code(&next(&mut eve).await.unwrap()), "no_such_conversation");

    // While the members talk, Eve's socket hears nothing at all.
    let mut bob = connect(w.addr, &w.tokens[1]).await;
    send(
        &mut bob,
        ClientEvent::Subscribe {
            conversation: Some(w.dm.id),
            channel: None,
            after_change: None,
        },
    )
    .await;
    until(&mut bob, |e| matches!(e, ServerEvent::Subscribed { .. })).await;
    for (to, body) in [(w.dm.id, "secret one"), (w.club.id, "secret two")] {
        let (status, _) = w
            .ada
            .call(
                "post_message",
                &[("conversation", to.0.to_string()), ("body", body.into())],
            )
            .await;
        assert_eq!(status, 200);
    }
    let ServerEvent::Message { message } =
        until(&mut bob, |e| matches!(e, ServerEvent::Message { .. })).await
    else {
        unreachable!()
    };
    assert_eq!(message.body, "secret one");
    // The club is not open on Bob's socket: he hears of it on his own stream.
    until(
        &mut bob,
        |e| matches!(e, ServerEvent::Activity { conversation, .. } if *conversation == w.club.id),
    )
    .await;
    assert_eq!(
        next_within(&mut eve, Duration::from_millis(500)).await,
        None
    );
}

#[tokio::test]
async fn outsiders_get_nothing_by_server_function_form_or_page() {
    let w = world().await;
    for (conversation, message) in [(&w.dm, &w.dm_message), (&w.club, &w.club_message)] {
        let id = conversation.id.0.to_string();
        let m = message.id.0.clone();
        for (name, form) in [
            ("get_conversation", vec![("conversation", id.clone())]),
            (
                "get_older",
                vec![("conversation", id.clone()), ("before_seq", "1000".into())],
            ),
            ("get_members", vec![("conversation", id.clone())]),
            (
                "post_message",
                vec![("conversation", id.clone()), ("body", "hi".into())],
            ),
            ("membership", vec![("conversation", id.clone())]),
            (
                "membership",
                vec![("conversation", id.clone()), ("leave", "yes".into())],
            ),
        ] {
            let (status, body) = w.eve.call(name, &form).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (404, Some("no_such_conversation")),
                "{name}"
            );
        }
        for (name, form) in [
            ("get_thread", vec![("message_id", m.clone())]),
            (
                "react",
                vec![
                    ("message_id", m.clone()),
                    ("emoji", "👍".into()),
                    ("on", "true".into()),
                ],
            ),
            (
                "edit_message",
                vec![("message_id", m.clone()), ("body", "x".into())],
            ),
            ("delete_message", vec![("message_id", m.clone())]),
            (
                "reply_message",
                vec![("message_id", m.clone()), ("body", "x".into())],
            ),
        ] {
            let (status, body) = w.eve.call(name, &form).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (404, Some("no_such_message")),
                "{name}"
            );
        }
        // Without JavaScript: the form post changes nothing and is sent back with its error.
        let (status, _, url) = w
            .eve
            .form_at(
                "post_message",
                &[("conversation", id.clone()), ("body", "hi".into())],
                "/",
            )
            .await;
        assert_eq!(status, 200);
        let err = url
            .split("__err=")
            .nth(1)
            .expect("the error travels in the URL");
        let err = err.split('&').next().unwrap();
        let err: flack::error::AppError = leptos::server_fn::error::ServerFnUrlError::<
            flack::error::AppError,
        >::decode_err(&percent_decode(err));
        assert_eq!(err, flack::error::AppError::NoSuchConversation);
        // Pages: the conversation's, its thread's.
        let path = flack::paths::conversation_path(conversation);
        let thread = flack::paths::thread_path(conversation, &message.id);
        for path in [path, thread] {
            let page = w.eve.page(&path).await;
            assert!(!page.contains(&message.body), "{path} shows the message");
        }
    }
    let page = w.eve.page("/c/club").await;
    assert!(page.contains("There is no channel named #club"), "{page}");
    // Nothing changed: the members still see exactly what they wrote.
    let (_, history) = w
        .bob
        .call(
            "get_conversation",
            &[("conversation", w.dm.id.0.to_string())],
        )
        .await;
    let bodies: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["psst, Bob"]);
    assert!(history["messages"][0].get("reactions").is_none());
    // And Eve's sidebar and the channel directory do not list them.
    let (_, sidebar) = w.eve.call("list_conversations", &[]).await;
    assert!(!sidebar.to_string().contains("club") && !sidebar.to_string().contains("psst"));
    let (_, directory) = w.eve.call("browse_channels", &[]).await;
    assert!(!directory.to_string().contains("club"));
}

#[tokio::test]
async fn members_use_direct_messages_and_private_channels_without_javascript() {
    let w = world().await;
    // Bob's sidebar lists both, unread, with the direct message's people as its title.
    let page = w.bob.page("/").await;
    assert!(page.contains("club") && page.contains("Ada"), "{page}");
    let dm_path = flack::paths::conversation_path(&w.dm);
    let page = w.bob.page(&dm_path).await;
    assert!(page.contains("psst, Bob"));
    // Bob replies in the thread, reacts, and Ada edits: all as plain form posts.
    let m = w.dm_message.id.0.clone();
    let thread = flack::paths::thread_path(&w.dm, &w.dm_message.id);
    let (status, page) = w
        .bob
        .form(
            "reply_message",
            &[("message_id", m.clone()), ("body", "got it".into())],
            &thread,
        )
        .await;
    assert_eq!(status, 200);
    assert!(page.contains("got it"), "the thread page shows the reply");
    let (status, _) = w
        .bob
        .form(
            "react",
            &[
                ("message_id", m.clone()),
                ("emoji", "👍".into()),
                ("on", "true".into()),
            ],
            &dm_path,
        )
        .await;
    assert_eq!(status, 200);
    let (status, page) = w
        .ada
        .form(
            "edit_message",
            &[("message_id", m.clone()), ("body", "psst, Bob!".into())],
            &dm_path,
        )
        .await;
    assert_eq!(status, 200);
    assert!(page.contains("psst, Bob!") && page.contains("(edited)"));
    assert!(page.contains("1 reply"));
    assert!(
        page.contains(r#"aria-label="👍 1: Bob."#),
        "the reaction, with who reacted"
    );
    // Bob leaves the club: it is out of his sight from then on.
    let (status, _) = w
        .bob
        .form(
            "membership",
            &[
                ("conversation", w.club.id.0.to_string()),
                ("leave", "yes".into()),
            ],
            "/c/club",
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = w
        .bob
        .call(
            "get_conversation",
            &[("conversation", w.club.id.0.to_string())],
        )
        .await;
    assert_eq!(status, 404);
    // Someone else's message cannot be edited, even by a member.
    let (status, body) = w
        .bob
        .call(
            "edit_message",
            &[("message_id", m), ("body", "not mine".into())],
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("not_author")));
}

#[tokio::test]
async fn edits_reactions_and_read_positions_reach_every_device_live() {
    let w = world().await;
    let mut ada = connect(w.addr, &w.tokens[0]).await;
    let mut bob_phone = connect(w.addr, &w.tokens[1]).await;
    let mut bob_laptop = connect(w.addr, &w.tokens[1]).await;
    send(
        &mut bob_phone,
        ClientEvent::Subscribe {
            conversation: Some(w.dm.id),
            channel: None,
            after_change: None,
        },
    )
    .await;
    let ServerEvent::Subscribed { last_change, .. } = until(&mut bob_phone, |e| {
        matches!(e, ServerEvent::Subscribed { .. })
    })
    .await
    else {
        unreachable!()
    };
    send(
        &mut ada,
        ClientEvent::Edit {
            message_id: w.dm_message.id.clone(),
            body: "psst, edited".into(),
        },
    )
    .await;
    send(
        &mut ada,
        ClientEvent::React {
            message_id: w.dm_message.id.clone(),
            emoji: "🎉".into(),
            on: true,
        },
    )
    .await;
    let mut changes = Vec::new();
    while changes.len() < 2 {
        if let ServerEvent::Changed { message } =
            until(&mut bob_phone, |e| matches!(e, ServerEvent::Changed { .. })).await
        {
            changes.push(message);
        }
    }
    assert_eq!(changes[0].body, "psst, edited");
    assert!(changes[0].edited_at.is_some());
    assert_eq!(changes[1].reactions[0].emoji, "🎉");
    assert_eq!(
        (changes[0].change, changes[1].change),
        (last_change + 1, last_change + 2)
    );
    // Reading on the phone moves the laptop's read position.
    send(
        &mut bob_phone,
        ClientEvent::Read {
            conversation: w.dm.id,
            seq: w.dm_message.seq,
        },
    )
    .await;
    until(&mut bob_laptop, |e| {
        matches!(e, ServerEvent::ReadMoved { conversation, seq } if *conversation == w.dm.id && *seq == w.dm_message.seq)
    })
    .await;
    let (_, sidebar) = w.bob.call("list_conversations", &[]).await;
    let dm = sidebar
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["conversation"]["id"] == w.dm.id.0)
        .unwrap();
    assert_eq!(dm["unread"], 0);
    // A reconnect after the last change Bob applied brings exactly what changed since.
    send(
        &mut ada,
        ClientEvent::React {
            message_id: w.dm_message.id.clone(),
            emoji: "🎉".into(),
            on: false,
        },
    )
    .await;
    drop(bob_phone);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = connect(w.addr, &w.tokens[1]).await;
    send(
        &mut again,
        ClientEvent::Subscribe {
            conversation: Some(w.dm.id),
            channel: None,
            after_change: Some(changes[1].change),
        },
    )
    .await;
    let ServerEvent::Subscribed {
        messages, reset, ..
    } = until(&mut again, |e| matches!(e, ServerEvent::Subscribed { .. })).await
    else {
        unreachable!()
    };
    assert!(!reset);
    assert_eq!(messages.len(), 1);
    assert!(messages[0].reactions.is_empty(), "the reaction taken back");
    assert_eq!(messages[0].change, changes[1].change + 1);
}
