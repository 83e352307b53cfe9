//! The clients the scenarios drive: Flack's protocol (log in, hello, subscribe, send) and the
//! reference relay's (connect, send, everything received is a delivery), over
//! tokio-tungstenite and reqwest.

use super::{error, Result, Target};
use crate::protocol::{ClientEvent, ServerEvent};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A client WebSocket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long one protocol step (hello, subscribed, ack) may take before it counts as failed.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// An HTTP client for the scenarios: no proxy, keep-alive connections reused.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(usize::MAX)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

/// An HTTP client like [`http_client`] whose connections leave from `address` (a loopback
/// address such as `127.0.0.2`, so that the server sees a second machine), with no cookie
/// store: every client made here is a fresh browser or bot.
pub fn http_client_from(address: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(address)
        .pool_max_idle_per_host(usize::MAX)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client")
}

/// The socket address the target listens on (its URL's host and port, resolved).
pub async fn server_addr(target: &Target) -> Result<SocketAddr> {
    let url = reqwest::Url::parse(target.base_url())?;
    let host = url
        .host_str()
        .ok_or_else(|| error(format!("no host in {}", target.base_url())))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| error(format!("no port in {}", target.base_url())))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let first = tokio::net::lookup_host((host, port)).await?.next();
    first.ok_or_else(|| error(format!("{host} resolves to nothing")))
}

/// How a socket made by [`connect_from`] is set up.
#[derive(Debug, Clone, Copy)]
pub struct Source {
    /// The local address to bind before connecting (`127.0.0.2`: another client machine).
    pub address: IpAddr,
    /// The kernel's receive buffer for the socket, bytes (`None`: the system's default).
    pub recv_buffer: Option<u32>,
    /// tungstenite's buffers small, as in [`connect`].
    pub small: bool,
}

impl Source {
    /// A socket from `address` with default buffers.
    pub fn new(address: IpAddr) -> Self {
        Source {
            address,
            recv_buffer: None,
            small: false,
        }
    }
}

/// A TCP connection to `server` bound to `from` first (so the server sees that address),
/// Nagle off.
pub async fn tcp_from(from: &Source, server: SocketAddr) -> Result<TcpStream> {
    let socket = if server.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(size) = from.recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    socket.bind(SocketAddr::new(from.address, 0))?;
    let stream = tokio::time::timeout(STEP_TIMEOUT, socket.connect(server))
        .await
        .map_err(|_| error("TCP connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Like [`connect`], over a connection from `from` to `server` (see [`tcp_from`]).
pub async fn connect_from(
    target: &Target,
    server: SocketAddr,
    from: &Source,
    token: Option<&str>,
) -> Result<Ws> {
    let mut request = target.ws_url().into_client_request()?;
    if let Some(token) = token {
        request.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}"))?,
        );
    }
    let mut config = WebSocketConfig::default();
    if from.small {
        config = config.read_buffer_size(4 * 1024).write_buffer_size(0);
    }
    let tcp = tcp_from(from, server).await?;
    let (ws, _) = tokio::time::timeout(
        STEP_TIMEOUT,
        tokio_tungstenite::client_async_with_config(
            request,
            MaybeTlsStream::Plain(tcp),
            Some(config),
        ),
    )
    .await
    .map_err(|_| error("WebSocket handshake timed out"))??;
    Ok(ws)
}

#[derive(Deserialize)]
struct Session {
    token: String,
}

/// `POST /auth/session {"name": name}`: a new Flack user with a display name; its token.
pub async fn login(http: &reqwest::Client, target: &Target, name: &str) -> Result<String> {
    let res = http
        .post(format!("{}/auth/session", target.base_url()))
        .json(&serde_json::json!({ "name": name }))
        .send()
        .await?;
    if !res.status().is_success() {
        return Err(error(format!("login as {name}: HTTP {}", res.status())));
    }
    Ok(res.json::<Session>().await?.token)
}

/// `POST /api/create_channel name=…` with a bearer token.
pub async fn create_channel(
    http: &reqwest::Client,
    target: &Target,
    token: &str,
    name: &str,
) -> Result<()> {
    let res = http
        .post(format!("{}/api/create_channel", target.base_url()))
        .bearer_auth(token)
        .form(&[("name", name)])
        .send()
        .await?;
    if !res.status().is_success() {
        let status = res.status();
        let body = res.text().await.unwrap_or_default();
        return Err(error(format!(
            "create channel {name}: HTTP {status} {body}"
        )));
    }
    Ok(())
}

/// `POST /api/create_channel` like [`create_channel`]; the new channel's id.
pub async fn create_channel_id(
    http: &reqwest::Client,
    target: &Target,
    token: &str,
    name: &str,
) -> Result<u64> {
    create_channel(http, target, token, name).await?;
    channel_id(http, target, token, name).await
}

/// The id of the channel named `name` (`POST /api/get_channel`).
pub async fn channel_id(
    http: &reqwest::Client,
    target: &Target,
    token: &str,
    name: &str,
) -> Result<u64> {
    let history = channel_history(http, target, token, name).await?;
    Ok(history.conversation.id.0)
}

/// The channel named `name` with its recent messages, as `token`'s user reads it
/// (`POST /api/get_channel`).
pub async fn channel_history(
    http: &reqwest::Client,
    target: &Target,
    token: &str,
    name: &str,
) -> Result<crate::protocol::ConversationHistory> {
    let res = http
        .post(format!("{}/api/get_channel", target.base_url()))
        .bearer_auth(token)
        .form(&[("channel", name)])
        .send()
        .await?;
    if !res.status().is_success() {
        return Err(error(format!("get channel {name}: HTTP {}", res.status())));
    }
    Ok(res.json().await?)
}

/// `POST /api/membership conversation=…`: joins a public channel.
pub async fn join(
    http: &reqwest::Client,
    target: &Target,
    token: &str,
    conversation: u64,
) -> Result<()> {
    let res = http
        .post(format!("{}/api/membership", target.base_url()))
        .bearer_auth(token)
        .form(&[("conversation", conversation.to_string())])
        .send()
        .await?;
    if !res.status().is_success() {
        let status = res.status();
        let body = res.text().await.unwrap_or_default();
        return Err(error(format!("join {conversation}: HTTP {status} {body}")));
    }
    Ok(())
}

/// A new Flack user `name`, made a member of every channel in `channels`; its token.
pub async fn member_of(
    http: &reqwest::Client,
    target: &Target,
    name: &str,
    channels: &[u64],
) -> Result<String> {
    let token = login(http, target, name).await?;
    for &id in channels {
        join(http, target, &token, id).await?;
    }
    Ok(token)
}

/// Opens a WebSocket to the target's `/ws` (with `Authorization: Bearer` when a token is
/// given): Nagle off, and tungstenite's buffers small when `small` (for many idle sockets).
pub async fn connect(target: &Target, token: Option<&str>, small: bool) -> Result<Ws> {
    let mut request = target.ws_url().into_client_request()?;
    if let Some(token) = token {
        request.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}"))?,
        );
    }
    let mut config = WebSocketConfig::default();
    if small {
        config = config.read_buffer_size(4 * 1024).write_buffer_size(0);
    }
    let (ws, _) = tokio::time::timeout(
        STEP_TIMEOUT,
        tokio_tungstenite::connect_async_with_config(request, Some(config), true),
    )
    .await
    .map_err(|_| error("WebSocket handshake timed out"))??;
    Ok(ws)
}

/// The next text frame (pings and pongs skipped), or an error when the socket ends or
/// [`STEP_TIMEOUT`] passes.
pub async fn next_text(ws: &mut Ws) -> Result<String> {
    loop {
        let frame = tokio::time::timeout(STEP_TIMEOUT, ws.next())
            .await
            .map_err(|_| error("no frame in time"))?
            .ok_or_else(|| error("socket closed"))??;
        match frame {
            Frame::Text(text) => return Ok(text.as_str().to_string()),
            Frame::Close(frame) => return Err(error(format!("socket closed: {frame:?}"))),
            _ => continue,
        }
    }
}

/// The next [`ServerEvent`] from Flack.
pub async fn next_event(ws: &mut Ws) -> Result<ServerEvent> {
    let text = next_text(ws).await?;
    Ok(serde_json::from_str(&text)?)
}

/// Sends one client event as a text frame.
pub async fn send_event(ws: &mut Ws, event: &ClientEvent) -> Result<()> {
    ws.send(Frame::text(serde_json::to_string(event)?)).await?;
    Ok(())
}

/// Connects to Flack and reads the `hello`.
pub async fn flack_connect(target: &Target, token: &str, small: bool) -> Result<Ws> {
    let mut ws = connect(target, Some(token), small).await?;
    match next_event(&mut ws).await? {
        ServerEvent::Hello { .. } => Ok(ws),
        other => Err(error(format!("expected hello, got {other:?}"))),
    }
}

/// Subscribes to `channel` and waits for `subscribed`; the number of messages it carried.
/// Events that arrive first (a `channel_created`, a late message) are skipped.
pub async fn flack_subscribe(ws: &mut Ws, channel: &str) -> Result<usize> {
    send_event(
        ws,
        &ClientEvent::Subscribe {
            conversation: None,
            channel: Some(channel.into()),
            after_change: None,
        },
    )
    .await?;
    loop {
        match next_event(ws).await? {
            ServerEvent::Subscribed { messages, .. } => return Ok(messages.len()),
            ServerEvent::Error { message, .. } => {
                return Err(error(format!("subscribe {channel}: {message}")))
            }
            _ => continue,
        }
    }
}

/// Sends a message and waits for its ack (skipping other events); the acknowledged `seq`.
pub async fn flack_post(ws: &mut Ws, channel: &str, body: &str, client_id: &str) -> Result<u64> {
    send_event(ws, &send_event_for(channel, body, client_id)).await?;
    loop {
        match next_event(ws).await? {
            ServerEvent::Ack {
                client_id: Some(id),
                seq,
                ..
            } if id == client_id => return Ok(seq),
            ServerEvent::Error { message, .. } => {
                return Err(error(format!("send to {channel}: {message}")))
            }
            _ => continue,
        }
    }
}

/// Replies in a message's thread and waits for the ack (skipping other events).
pub async fn flack_reply(
    ws: &mut Ws,
    parent: &crate::protocol::MessageId,
    body: &str,
    client_id: &str,
) -> Result<()> {
    let reply = ClientEvent::Reply {
        message_id: parent.clone(),
        body: body.into(),
        client_id: Some(client_id.into()),
        also_to_channel: false,
    };
    send_event(ws, &reply).await?;
    loop {
        match next_event(ws).await? {
            ServerEvent::Ack {
                client_id: Some(id),
                ..
            } if id == client_id => return Ok(()),
            ServerEvent::Error { message, .. } => {
                return Err(error(format!("reply to {}: {message}", parent.0)))
            }
            _ => continue,
        }
    }
}

/// A logged-in Flack user, or nobody for the reference, connected and (for Flack) subscribed
/// to `channel`. `token`: reuse an identity instead of logging in as `name`.
pub async fn open(
    http: &reqwest::Client,
    target: &Target,
    name: &str,
    token: Option<&str>,
    channel: &str,
    small: bool,
) -> Result<Ws> {
    match target {
        Target::Flack { .. } => {
            let token = match token {
                Some(token) => token.to_string(),
                None => login(http, target, name).await?,
            };
            let mut ws = flack_connect(target, &token, small).await?;
            flack_subscribe(&mut ws, channel).await?;
            Ok(ws)
        }
        Target::Reference { .. } => connect(target, None, small).await,
    }
}

/// The send event both targets get: Flack's `send`; the reference relays the same bytes.
pub fn send_event_for(channel: &str, body: &str, client_id: &str) -> ClientEvent {
    ClientEvent::Send {
        conversation: None,
        channel: Some(channel.into()),
        body: body.into(),
        client_id: Some(client_id.into()),
    }
}

/// What a received text frame is, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A message reached this client; its body.
    Delivery(&'a str),
    /// Flack acknowledged one of this client's sends.
    Ack,
    /// Flack reported an error.
    Error,
    /// Flack resent what this socket missed after it fell behind (`subscribed` mid-run):
    /// its messages are deliveries too.
    Resync,
    /// Anything else (hello, subscribed, channel_created, …).
    Other,
}

/// Classifies a frame without parsing all of it: Flack's `message` events (the server puts
/// `"type"` first) and every frame of the reference are deliveries, and the body is the
/// `"body"` string. Bodies made by [`Body`] hold no quotes or escapes, and no field before
/// `"body"` can contain that key (ids, channel and user names are the generator's own).
pub fn classify<'a>(target: &Target, text: &'a str) -> Incoming<'a> {
    if target.is_flack() {
        if text.starts_with(r#"{"type":"message","#) {
            body_of(text).map_or(Incoming::Other, Incoming::Delivery)
        } else if text.starts_with(r#"{"type":"ack","#) {
            Incoming::Ack
        } else if text.starts_with(r#"{"type":"error","#) {
            Incoming::Error
        } else if text.starts_with(r#"{"type":"subscribed","#) {
            Incoming::Resync
        } else {
            Incoming::Other
        }
    } else {
        body_of(text).map_or(Incoming::Other, Incoming::Delivery)
    }
}

fn body_of(text: &str) -> Option<&str> {
    const KEY: &str = r#""body":""#;
    let start = text.find(KEY)? + KEY.len();
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
}

/// What a fan-out message says about itself: who sent it, its number, when it was due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Body {
    /// The sender's index.
    pub sender: u32,
    /// The message's index in the sender's sequence.
    pub n: u32,
    /// When it was due to be sent, in µs since the run's epoch.
    pub at_us: u64,
}

impl Body {
    /// `s3 n41 t123456`.
    pub fn encode(&self) -> String {
        format!("s{} n{} t{}", self.sender, self.n, self.at_us)
    }

    /// Reads a body made by [`Body::encode`].
    pub fn parse(text: &str) -> Option<Body> {
        let mut parts = text.split(' ');
        let sender = parts.next()?.strip_prefix('s')?.parse().ok()?;
        let n = parts.next()?.strip_prefix('n')?.parse().ok()?;
        let at_us = parts.next()?.strip_prefix('t')?.parse().ok()?;
        parts.next().is_none().then_some(Body { sender, n, at_us })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Author, ConversationId, Message, MessageId, UserId};

    #[test]
    fn bodies_round_trip() {
        let b = Body {
            sender: 3,
            n: 41,
            at_us: 123_456,
        };
        assert_eq!(b.encode(), "s3 n41 t123456");
        assert_eq!(Body::parse(&b.encode()), Some(b));
        assert_eq!(Body::parse("s3 n41"), None);
        assert_eq!(Body::parse("s3 n41 t1 x"), None);
    }

    #[test]
    fn flack_messages_are_deliveries_and_acks_are_not() {
        let flack = Target::flack("127.0.0.1:1");
        let body = "s1 n2 t3";
        let event = ServerEvent::Message {
            message: Message {
                id: MessageId("m".into()),
                conversation: ConversationId(1),
                seq: 1,
                change: 1,
                author: Author {
                    id: UserId("u".into()),
                    name: "load-1".into(),
                },
                body: body.into(),
                sent_at: chrono::Utc::now(),
                edited_at: None,
                deleted: false,
                reactions: Vec::new(),
                thread: None,
                mentions: Vec::new(),
                mentions_all: false,
                client_id: Some("s1-2".into()),
            },
        };
        let text = serde_json::to_string(&event).unwrap();
        assert_eq!(classify(&flack, &text), Incoming::Delivery(body));
        let ack = serde_json::to_string(&ServerEvent::Ack {
            client_id: Some("s1-2".into()),
            message_id: MessageId("m".into()),
            conversation: ConversationId(1),
            seq: 1,
        })
        .unwrap();
        assert_eq!(classify(&flack, &ack), Incoming::Ack);
        let resync = serde_json::to_string(&ServerEvent::Subscribed {
            conversation: crate::protocol::ConversationInfo {
                id: ConversationId(1),
                kind: crate::protocol::ConversationKind::Public,
                name: Some("c".into()),
                people: Vec::new(),
                parent: None,
                created_at: chrono::Utc::now(),
            },
            messages: Vec::new(),
            last_change: 0,
            reset: false,
            has_older: false,
            members: None,
        })
        .unwrap();
        assert_eq!(classify(&flack, &resync), Incoming::Resync);
        let sent = serde_json::to_string(&send_event_for("c", body, "s1-2")).unwrap();
        assert_eq!(classify(&flack, &sent), Incoming::Other);
        let reference = Target::reference("127.0.0.1:1");
        assert_eq!(classify(&reference, &sent), Incoming::Delivery(body));
    }
}
