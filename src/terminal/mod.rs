//! The terminal side: listeners accept POS connections, sessions read
//! requests, hand them to the [`Switch`](crate::switch::Switch), and write the
//! answers back as they come.

pub mod listener;
pub mod session;
mod settings;

pub use settings::ListenerConfig;
