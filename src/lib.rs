//! cardswitch — a card-acquiring switch.
//!
//! This crate holds the ISO 8583 codec ([`iso8583`]): dialects loaded from data
//! files, an I/O-free message decoder and encoder, and the wire framings used
//! on terminal and bank links; the response-code tables ([`codes`]); and the
//! bank and terminal simulators ([`sim`]).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod card;
pub mod codes;
pub mod iso8583;
pub mod sim;
