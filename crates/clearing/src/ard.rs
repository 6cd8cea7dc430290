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

use crate::journal::TxnId;

/// Digits of the transaction id kept in an ARD.
const SEQUENCE_DIGITS: usize = 11;

/// The ARD of transaction `txn` of business date `date` (`YYYYMMDD`) for the
/// acquirer BIN `bin` (6 digits). `None` if `bin` or `date` is malformed.
/// Ids beyond 11 digits wrap (the date keeps ARDs apart across wraps).
pub fn ard(bin: &str, date: &str, txn: TxnId) -> Option<String> {
    Some(ArdPrefix::new(bin, date)?.ard(txn))
}

/// The part of a day's ARDs that does not change (format code, BIN,
/// date): made once per day, completed per transaction without allocating
/// more than the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArdPrefix([u8; 11]);

impl ArdPrefix {
    /// The prefix for BIN `bin` (6 digits) and date `date` (`YYYYMMDD`).
    pub fn new(bin: &str, date: &str) -> Option<ArdPrefix> {
        if bin.len() != 6 || !bin.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let julian = julian(date)?;
        let text = format!("2{bin}{julian}");
        Some(ArdPrefix(text.as_bytes().try_into().ok()?))
    }

    /// The ARD of transaction `txn`.
    pub fn ard(&self, txn: TxnId) -> String {
        let mut digits = [0u8; 23];
        digits[..11].copy_from_slice(&self.0);
        let mut sequence = txn % 10u64.pow(SEQUENCE_DIGITS as u32);
        for d in digits[11..22].iter_mut().rev() {
            *d = b'0' + (sequence % 10) as u8;
            sequence /= 10;
        }
        // Luhn: double every second digit from the right of the 22, starting
        // with the rightmost.
        let sum: u32 = digits[..22]
            .iter()
            .rev()
            .enumerate()
            .map(|(i, b)| {
                let d = u32::from(b - b'0');
                if i % 2 == 0 {
                    let twice = d * 2;
                    if twice > 9 { twice - 9 } else { twice }
                } else {
                    d
                }
            })
            .sum();
        digits[22] = b'0' + ((10 - sum % 10) % 10) as u8;
        digits.iter().map(|&b| char::from(b)).collect()
    }
}

/// `YDDD` of a `YYYYMMDD` date: last digit of the year, then the day of the
/// year (001–366).
fn julian(date: &str) -> Option<String> {
    let date = crate::dates::civil_date(date)?;
    Some(format!(
        "{}{:03}",
        date.year().rem_euclid(10),
        date.day_of_year()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use iso8583::card::luhn_valid;

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
    fn the_check_digit_is_luhn_for_every_id() {
        let prefix = ArdPrefix::new("412345", "20261126").unwrap();
        for txn in (0..2000).chain([99_999_999_999, 100_000_000_000, u64::MAX]) {
            let a = prefix.ard(txn);
            assert!(luhn_valid(&a), "{a}");
            assert_eq!(
                Some(a.as_str()),
                iso8583::card::luhn_complete(&a[..22]).as_deref(),
                "same as the card number check digit"
            );
        }
    }

    #[test]
    fn refuses_malformed_input() {
        assert_eq!(ard("41234", "20261126", 1), None);
        assert_eq!(ard("41234X", "20261126", 1), None);
        assert_eq!(ard("412345", "2026112", 1), None);
        assert_eq!(ard("412345", "20261326", 1), None);
    }
}
