//! cardswitch — a card-acquiring switch.
//!
//! The ISO 8583 codec ([`iso8583`], the `crates/iso8583` library,
//! re-exported with its [`card`] types): dialects loaded from data files, an
//! I/O-free decoder and encoder, and the wire framings; the switch itself
//! ([`server`], [`terminal`], [`switch`], [`route`], [`registry`],
//! [`adapter`], [`translate`]); the response-code tables ([`codes`]); and the
//! bank and terminal simulators ([`sim`]) with the one-command [`demo`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod adapter;
pub mod admin;
pub use ::base::clock;
pub use ::clearing;
pub use ::iso8583::card;
pub use ::iso8583::codes;
pub mod config;
pub mod control;
pub mod demo;
pub use ::base::files;
pub use ::iso8583;
pub mod journal;
pub mod metrics;
pub mod registry;
pub mod reversal;
pub mod risk;
pub mod route;
pub use ::security;
pub mod server;
pub use ::sim;
pub mod switch;
pub mod terminal;
pub mod translate;
pub mod txn;
pub mod wire;
