//! Destinations the switch forwards to. [`iso_host`] speaks ISO 8583 over
//! persistent TCP links with a MUX.

pub mod iso_host;
mod settings;

pub use iso_host::{Destination, Exchange, LinkError};
pub use settings::DestinationConfig;
