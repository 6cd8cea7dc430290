//! cardswitch — a card-acquiring switch.
//!
//! This crate holds the ISO 8583 codec ([`iso8583`]): dialects loaded from data
//! files, an I/O-free message decoder and encoder, and the wire framings used
//! on terminal and bank links.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod adapter;
pub mod card;
pub mod clock;
pub mod codes;
pub mod config;
pub mod iso8583;
pub mod registry;
pub mod route;
pub mod server;
pub mod switch;
pub mod terminal;
pub mod translate;
pub mod txn;
