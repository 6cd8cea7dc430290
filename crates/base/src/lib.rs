//! The two platform pieces every cardswitch library shares: the UTC
//! [`clock`] in the shapes ISO 8583 writes it, and [`files`] written
//! atomically or privately (the only way cardswitch writes a file).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod clock;
pub mod files;
