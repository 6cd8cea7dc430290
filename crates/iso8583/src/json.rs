//! The JSON form of a message, shared by `cardswitch iso decode --json` and
//! `cardswitch iso encode` so other tools can script against them:
//!
//! ```json
//! {"mti": "0200", "fields": {"2": "4111111111111111", "3": "000000", "52": "0123456789ABCDEF"}}
//! ```
//!
//! Field numbers are strings; values are the field's text, except class `b`
//! fields, which are upper-case hex of the raw bytes.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::message::{Message, Mti};
use super::spec::{Class, Dialect};
use crate::card;

/// A message as JSON could not be turned into a [`Message`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// Not JSON of the expected shape.
    #[error("not a message object: {0}")]
    Shape(#[from] serde_json::Error),
    /// The MTI is not four digits.
    #[error("\"mti\": `{0}` is not four digits")]
    Mti(String),
    /// A key of `fields` is not a field number of the dialect.
    #[error("\"fields\": `{0}` is not a field of this dialect")]
    Field(u8),
    /// A binary field's value is not hex.
    #[error("\"fields\".\"{0}\": binary fields are written as hex")]
    Hex(u8),
}

/// The JSON object: MTI and fields by number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonMessage {
    /// Message type indicator.
    pub mti: String,
    /// Field number (a string in JSON) to value, in field-number order.
    pub fields: BTreeMap<u8, String>,
}

/// How card data appears in the JSON form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reveal {
    /// PAN and track data masked to first 6 / last 4, PIN block starred.
    Masked,
    /// Everything in clear (for encoding back, or investigations).
    Clear,
}

/// Masked text of a sensitive field, or `None` if the field is not card data.
pub fn masked(number: u8, text: &str) -> Option<String> {
    match number {
        2 | 34 => Some(card::mask_pan(text)),
        35 => Some(card::mask_track2(text)),
        // Track 3, track 1, PIN block, and chip data (which carries the PAN
        // and track 2 equivalent data in tags 5A and 57).
        36 | 45 | 52 | 55 => Some("*".repeat(text.len())),
        _ => None,
    }
}

/// The text shown for one field value: hex for class `b`, else the text.
pub fn field_text(dialect: &Dialect, number: u8, value: &[u8], reveal: Reveal) -> String {
    let binary = dialect.field(number).is_none_or(|f| f.class == Class::B);
    let text = if binary {
        hex::encode_upper(value)
    } else {
        String::from_utf8_lossy(value).into_owned()
    };
    match reveal {
        Reveal::Clear => text,
        Reveal::Masked => masked(number, &text).unwrap_or(text),
    }
}

impl JsonMessage {
    /// The JSON form of `message`.
    pub fn from_message(dialect: &Dialect, message: &Message, reveal: Reveal) -> JsonMessage {
        JsonMessage {
            mti: message.mti().to_string(),
            fields: message
                .fields()
                .map(|(n, v)| (n, field_text(dialect, n, v, reveal)))
                .collect(),
        }
    }

    /// Parses the JSON text of one message object.
    pub fn parse(text: &str) -> Result<JsonMessage, JsonError> {
        Ok(serde_json::from_str(text)?)
    }

    /// Builds the message. Values are checked against the dialect only when
    /// the message is encoded.
    pub fn to_message(&self, dialect: &Dialect) -> Result<Message, JsonError> {
        let mti = Mti::parse(&self.mti).map_err(|_| JsonError::Mti(self.mti.clone()))?;
        let mut message = Message::new(mti);
        for (&key, value) in &self.fields {
            let spec = dialect.field(key).ok_or(JsonError::Field(key))?;
            let bytes = if spec.class == Class::B {
                Bytes::from(hex::decode(value).map_err(|_| JsonError::Hex(spec.number))?)
            } else {
                Bytes::copy_from_slice(value.as_bytes())
            };
            message.set(spec.number, bytes);
        }
        Ok(message)
    }
}
