//! The integration tests of cardswitch, in one test binary (`cargo test
//! --test it`; `cargo test --test it MODULE::` runs one module). Each
//! module is one area; the ones that need a running switch build its
//! configuration with `common::daemon::Daemon`.

#[path = "../common/mod.rs"]
mod common;

mod admin;
mod clearing;
mod clearing_props;
mod cli;
mod codec_props;
mod crash;
mod daemon;
mod differential;
mod errors;
mod framing;
mod fuzz_regressions;
mod golden;
mod golden_clearing;
mod journal;
mod keys_cli;
mod links_and_limits;
mod risk;
mod security;
mod security_props;
mod simulators;
mod switch;
mod systemd;
mod tls;
