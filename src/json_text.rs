//! JSON for server functions, read from text rather than bytes.
//!
//! Server functions answer in JSON. leptos' own codec decodes answers from bytes while the
//! socket and the page's hydration data decode from text, so every type the browser reads
//! both ways was compiled into the bundle twice (serde_json's reader is generic over its
//! input). Decoding answers as text leaves one copy. The bytes on the wire are the same.

use leptos::server_fn::codec::Post;
use leptos::server_fn::{Bytes, ContentType, Decodes, Encodes, Format, FormatType};
use serde::{de::DeserializeOwned, Serialize};

/// `application/json`, decoded with `serde_json::from_str`.
pub struct JsonText;

impl ContentType for JsonText {
    const CONTENT_TYPE: &'static str = "application/json";
}

impl FormatType for JsonText {
    const FORMAT_TYPE: Format = Format::Text;
}

impl<T: Serialize> Encodes<T> for JsonText {
    type Error = serde_json::Error;

    fn encode(output: &T) -> Result<Bytes, Self::Error> {
        serde_json::to_vec(output).map(Bytes::from)
    }
}

impl<T: DeserializeOwned> Decodes<T> for JsonText {
    type Error = serde_json::Error;

    fn decode(bytes: Bytes) -> Result<T, Self::Error> {
        // Invalid UTF-8 is invalid JSON: let serde_json say so, from the lossy text.
        match std::str::from_utf8(&bytes) {
            Ok(text) => serde_json::from_str(text),
            Err(_) => serde_json::from_str(&String::from_utf8_lossy(&bytes)),
        }
    }
}

/// Server-function answers as JSON in a `POST` response (what leptos' `Json` does).
pub type JsonAnswer = Post<JsonText>;
