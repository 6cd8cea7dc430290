//! Reversals the switch owes: store-and-forward ([`saf`]) delivers them to
//! destinations in order until acknowledged, and [`recovery`] settles at
//! start what a crash left open (forwarded, unanswered → reversed). Both
//! keep their state in the journal, which is storage only.

pub mod recovery;
pub mod saf;
