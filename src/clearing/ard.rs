//! Acquirer reference data (ARD): the 23-digit number that names one
//! presentment between acquirer and issuer for its whole life (clearing,
//! retrieval requests, chargebacks).
//!
//! ```text
//! 2 412345 6330 00000001234 7
//! │ │      │    │           └─ check digit (Luhn, over the 22 digits before it)
//! │ │      │    └─ 11 digits: the journal's transaction id (unique per switch)
//! │ │      └─ business date as YDDD: last digit of the year, day of the year
//! │ └─ the acquirer's BIN (6 digits, `[clearing] acquirer_bin`)
//! └─ format code 2
//! ```

use crate::card::luhn_complete;
use crate::journal::TxnId;

/// Digits of the transaction id kept in an ARD.
const SEQUENCE_DIGITS: usize = 11;

/// The ARD of transaction `txn` of business date `date` (`YYYYMMDD`) for the
/// acquirer BIN `bin` (6 digits). `None` if `bin` or `date` is malformed.
/// Ids beyond 11 digits wrap (the date keeps ARDs apart across wraps).
pub fn ard(bin: &str, date: &str, txn: TxnId) -> Option<String> {
    if bin.len() != 6 || !bin.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let julian = julian(date)?;
    let sequence = txn % 10u64.pow(SEQUENCE_DIGITS as u32);
    luhn_complete(&format!("2{bin}{julian}{sequence:011}"))
}

/// `YDDD` of a `YYYYMMDD` date: last digit of the year, then the day of the
/// year (001–366).
fn julian(date: &str) -> Option<String> {
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: u32 = date.get(..4)?.parse().ok()?;
    let month: usize = date.get(4..6)?.parse().ok()?;
    let day: u32 = date.get(6..8)?.parse().ok()?;
    const BEFORE: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let before = *BEFORE.get(month.checked_sub(1)?)?;
    if !(1..=31).contains(&day) {
        return None;
    }
    let ordinal = before + day + u32::from(leap && month > 2);
    Some(format!("{}{ordinal:03}", year % 10))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::luhn_valid;

    #[test]
    fn layout_and_check_digit() {
        let a = ard("412345", "20261126", 1234).unwrap();
        assert_eq!(a.len(), 23);
        assert_eq!(&a[..1], "2");
        assert_eq!(&a[1..7], "412345");
        assert_eq!(&a[7..11], "6330");
        assert_eq!(&a[11..22], "00000001234");
        assert!(luhn_valid(&a), "{a}");
    }

    #[test]
    fn julian_days_count_leap_years() {
        assert_eq!(julian("20240301").unwrap(), "4061");
        assert_eq!(julian("20250301").unwrap(), "5060");
        assert_eq!(julian("20261231").unwrap(), "6365");
        assert_eq!(julian("20260101").unwrap(), "6001");
    }

    #[test]
    fn refuses_malformed_input() {
        assert_eq!(ard("41234", "20261126", 1), None);
        assert_eq!(ard("41234X", "20261126", 1), None);
        assert_eq!(ard("412345", "2026112", 1), None);
        assert_eq!(ard("412345", "20261326", 1), None);
    }
}
