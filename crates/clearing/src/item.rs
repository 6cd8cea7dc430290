//! What clearing hands to the file writers and the reports: one
//! [`Presentment`] per cleared transaction, one [`Reversed`] per approval a
//! reversal took back (fully or in part) on the day.

use zeroize::Zeroizing;

use crate::journal::TxnId;

/// What a cleared transaction is, for the bank and the merchant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClearedKind {
    /// An approved purchase (0200, processing code 00): a debit of the card.
    Purchase,
    /// An approved refund (0200, processing code 20): a credit to the card.
    Refund,
    /// A pre-authorisation (0100) completed by an advice (0220), for the
    /// completed amount: a debit.
    Completion,
}

impl ClearedKind {
    /// Whether the card is credited (refunds) rather than debited.
    pub fn is_credit(self) -> bool {
        self == ClearedKind::Refund
    }

    /// Name in files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ClearedKind::Purchase => "purchase",
            ClearedKind::Refund => "refund",
            ClearedKind::Completion => "completion",
        }
    }
}

/// One cleared transaction, with everything a clearing record carries.
/// Text fields are printable ASCII (the journal took them from ISO 8583
/// fields); writers convert them (EBCDIC for IPM). `Debug` shows the masked
/// PAN only.
#[derive(Clone, PartialEq, Eq)]
pub struct Presentment {
    /// The journal's transaction id (the `Received` record's sequence).
    pub txn: TxnId,
    /// What it is.
    pub kind: ClearedKind,
    /// The clear PAN: only for the clearing file, never logged nor reported.
    pub pan: Zeroizing<String>,
    /// The PAN masked to first 6 / last 4, for reports.
    pub masked_pan: String,
    /// Processing code (field 3, six digits), e.g. `000000` or `200000`.
    pub processing_code: String,
    /// The amount that clears, in minor units of `currency` (after partial
    /// reversals; for a completion, the completed amount).
    pub amount: u64,
    /// The amount first approved, in minor units.
    pub approved_amount: u64,
    /// ISO 4217 numeric currency code, three digits (field 49).
    pub currency: String,
    /// Local transaction date and time, `YYMMDDhhmmss`.
    pub local_time: String,
    /// POS entry mode (1987 field 22, three digits), empty if not sent.
    pub entry_mode: String,
    /// POS condition code (1987 field 25, two digits), empty if not sent.
    pub condition: String,
    /// Card acceptor id (field 42, up to 15 characters).
    pub merchant_id: String,
    /// Merchant category code (field 18, four digits).
    pub mcc: String,
    /// Card acceptor name and location (field 43, 40 characters).
    pub name_location: String,
    /// Terminal id (field 41).
    pub terminal: String,
    /// The terminal's STAN (field 11).
    pub stan: String,
    /// Retrieval reference number (field 37).
    pub rrn: String,
    /// Approval code (field 38, six characters).
    pub auth_id: String,
    /// The destination that authorised it (its clearing file).
    pub destination: String,
    /// Acquirer reference data: 23 digits with a check digit (see
    /// [`super::ard`]).
    pub ard: String,
    /// Business date, `YYYYMMDD`.
    pub date: String,
}

impl std::fmt::Debug for Presentment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presentment")
            .field("txn", &self.txn)
            .field("kind", &self.kind)
            .field("pan", &self.masked_pan)
            .field("processing_code", &self.processing_code)
            .field("amount", &self.amount)
            .field("approved_amount", &self.approved_amount)
            .field("currency", &self.currency)
            .field("local_time", &self.local_time)
            .field("merchant_id", &self.merchant_id)
            .field("terminal", &self.terminal)
            .field("stan", &self.stan)
            .field("rrn", &self.rrn)
            .field("auth_id", &self.auth_id)
            .field("destination", &self.destination)
            .field("ard", &self.ard)
            .field("date", &self.date)
            .finish_non_exhaustive()
    }
}

/// An approval of the day that a reversal took back, in full or in part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reversed {
    /// The reversed transaction.
    pub txn: TxnId,
    /// What the original was.
    pub kind: ClearedKind,
    /// Its merchant (field 42).
    pub merchant_id: String,
    /// Its destination.
    pub destination: String,
    /// ISO 4217 numeric currency code.
    pub currency: String,
    /// The amount reversed, in minor units (the whole amount for a full
    /// reversal).
    pub amount: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_pan() {
        let p = Presentment {
            txn: 1,
            kind: ClearedKind::Purchase,
            pan: Zeroizing::new("4761739001010119".into()),
            masked_pan: "476173******0119".into(),
            processing_code: "000000".into(),
            amount: 1,
            approved_amount: 1,
            currency: "978".into(),
            local_time: String::new(),
            entry_mode: String::new(),
            condition: String::new(),
            merchant_id: String::new(),
            mcc: String::new(),
            name_location: String::new(),
            terminal: String::new(),
            stan: String::new(),
            rrn: String::new(),
            auth_id: String::new(),
            destination: String::new(),
            ard: String::new(),
            date: String::new(),
        };
        let shown = format!("{p:?}");
        assert!(!shown.contains("4761739001010119") && shown.contains("476173******0119"));
    }
}
