//! What kind of transaction a request is, by message type and processing
//! code: the classification every part of a switch shares (routing, the
//! journal, clearing).

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a terminal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TxnKind {
    /// 0100: authorisation only.
    Authorization,
    /// 0200 with processing code 00: purchase.
    Purchase,
    /// 0200 with processing code 20: refund.
    Refund,
    /// 0400 / 0420: reversal of an earlier transaction.
    Reversal,
    /// 0220: completion advice of an approved pre-authorisation (0100), for
    /// the amount finally charged; it is what clears.
    Completion,
}

impl TxnKind {
    /// Name as in configuration and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            TxnKind::Authorization => "authorization",
            TxnKind::Purchase => "purchase",
            TxnKind::Refund => "refund",
            TxnKind::Reversal => "reversal",
            TxnKind::Completion => "completion",
        }
    }

    /// Every kind, for "allow all" defaults.
    pub const ALL: [TxnKind; 5] = [
        TxnKind::Authorization,
        TxnKind::Purchase,
        TxnKind::Refund,
        TxnKind::Reversal,
        TxnKind::Completion,
    ];
}

impl fmt::Display for TxnKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
