//! Property tests: arbitrary bytes and arbitrary JSON frames fed to the frame decoder, the
//! validators and the chat service never panic, and a refused frame changes nothing.
#![cfg(feature = "ssr")]

use flack::protocol::{
    decode_client_event, validate_channel_name, validate_client_id, validate_display_name,
    validate_message_body, ClientEvent, MAX_CHANNEL_NAME_CHARS, MAX_DISPLAY_NAME_CHARS,
    MAX_MESSAGE_CHARS,
};
use flack::server::budgets::{Allowance, Budgets};
use flack::server::chat::{Chat, Limits, PostLimit};
use flack::server::hub::MemoryHub;
use flack::server::store::{CacheLimits, SqliteStore, Store};
use proptest::prelude::*;
use std::sync::Arc;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = decode_client_event(&text);
    }

    #[test]
    fn validators_accept_exactly_what_the_rules_allow(raw in "\\PC{0,40}|[ a-zA-Z0-9_#-]{0,40}") {
        if let Ok(name) = validate_display_name(&raw) {
            prop_assert_eq!(name.trim(), name.as_str());
            prop_assert!((1..=MAX_DISPLAY_NAME_CHARS).contains(&name.chars().count()));
        }
        if let Ok(channel) = validate_channel_name(&raw) {
            prop_assert!((1..=MAX_CHANNEL_NAME_CHARS).contains(&channel.len()));
            prop_assert!(channel.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        }
        if let Ok(body) = validate_message_body(&raw) {
            prop_assert!(!body.trim().is_empty());
            prop_assert!(body.chars().count() <= MAX_MESSAGE_CHARS);
            prop_assert!(raw.starts_with(&body));
        }
        if let Ok(id) = validate_client_id(&raw) {
            prop_assert!(id.bytes().all(|b| b.is_ascii_graphic()));
        }
    }
}

/// A frame-shaped JSON value with arbitrary (often wrong) fields.
fn frame() -> impl Strategy<Value = String> {
    let kind = prop_oneof![
        Just("send"),
        Just("subscribe"),
        Just("delete"),
        Just("shout"),
        Just("")
    ];
    let text = prop_oneof![
        Just(String::new()),
        Just("general".to_string()),
        Just("GENERAL".to_string()),
        "\\PC{0,12}",
        Just("x".repeat(MAX_MESSAGE_CHARS + 1)),
        Just("<img src=x onerror=alert(1)>".to_string()),
    ];
    let number = prop_oneof![
        Just(serde_json::json!(1)),
        Just(serde_json::json!(-1)),
        Just(serde_json::json!("7")),
        Just(serde_json::Value::Null)
    ];
    (
        kind,
        text.clone(),
        text.clone(),
        prop::option::of(text),
        number,
        any::<bool>(),
    )
        .prop_map(|(kind, channel, body, client_id, number, drop_body)| {
            let mut frame = serde_json::json!({ "type": kind, "channel": channel, "body": body,
                "client_id": client_id, "after_change": number, "conversation": number,
                "message_id": "nope" });
            if drop_body {
                frame.as_object_mut().unwrap().remove("body");
            }
            frame.to_string()
        })
}

/// Applies decoded send frames to a chat on `store`; checks each refused one left the channel
/// exactly as it was, and each accepted one added exactly one message with the next seq.
async fn no_partial_state(store: Arc<dyn Store>, frames: Vec<String>) -> Result<(), TestCaseError> {
    let hub = Arc::new(MemoryHub::new(64));
    let limit = PostLimit {
        per_second: 1_000_000,
        burst: 1_000_000,
    };
    let plenty = Allowance {
        per_hour: 1000,
        burst: 1000,
    };
    let limits = Limits {
        window: 100,
        post: limit,
        open: limit,
        max_channels: 10,
        max_memberships: 100,
        join_cache_bytes: 1 << 20,
    };
    let chat = Chat::new(store, hub, limits, Budgets::new(plenty, plenty));
    chat.ensure_channels(&["general".into()]).await.unwrap();
    let user = chat
        .store()
        .create_user("t".into(), Some("Fuzz".into()))
        .await
        .unwrap();
    let general = chat.channel_named(&user.id, "general").await.unwrap();
    async fn window(
        chat: &Chat,
        general: &flack::server::access::Readable,
    ) -> Vec<flack::protocol::Message> {
        chat.history(general.clone()).await.unwrap().messages
    }
    for text in frames {
        let before = window(&chat, &general).await;
        let Ok(ClientEvent::Send {
            conversation,
            channel,
            body,
            client_id,
        }) = decode_client_event(&text)
        else {
            continue;
        };
        let target = match (conversation, channel) {
            (Some(id), _) => Some(id),
            (None, Some(name)) => chat
                .channel_named(&user.id, &name)
                .await
                .ok()
                .map(|r| r.info.id),
            (None, None) => None,
        };
        let Some(target) = target else { continue };
        let result = chat.post(&user, target, &body, client_id).await;
        let after = window(&chat, &general).await;
        match result {
            Ok(appended) if appended.fresh && target == general.info.id => {
                prop_assert_eq!(after.len(), before.len() + 1);
                let newer = before.last().is_none_or(|m| m.seq < appended.message.seq);
                prop_assert!(newer);
                prop_assert_eq!(after.last(), Some(&appended.message));
            }
            Ok(appended) if appended.fresh => prop_assert_eq!(after, before),
            Ok(_) => prop_assert_eq!(after, before),
            Err(_) => prop_assert_eq!(after, before),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn refused_frames_change_nothing_in_memory(frames in proptest::collection::vec(frame(), 1..25)) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let store = SqliteStore::in_memory(CacheLimits::default()).await.unwrap();
            no_partial_state(Arc::new(store), frames).await
        })?;
    }

    #[test]
    fn refused_frames_change_nothing_on_disk(frames in proptest::collection::vec(frame(), 1..25)) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        rt.block_on(async {
            let store = SqliteStore::open(&dir.path().join("f.db"), false, CacheLimits::default())
                .await
                .unwrap();
            no_partial_state(Arc::new(store), frames).await
        })?;
    }
}
