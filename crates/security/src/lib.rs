//! Card security for cardswitch: MACs ([`mac`]), PIN blocks and their translation ([`pin`]),
//! DUKPT key derivation ([`dukpt`]), the encrypted key store ([`keys`]) and
//! TLS for listeners and bank links ([`tls`]).
//!
//! Clear key material lives only in [`zeroize::Zeroizing`] buffers and never
//! reaches `Debug`, `Display`, logs or errors.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod block;
pub mod dukpt;
pub mod keys;
pub mod mac;
pub mod pin;
pub mod profile;
pub mod tls;

pub use block::{KeyAlgorithm, SecretKey};
