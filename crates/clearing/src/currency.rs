//! ISO 4217 currencies by numeric code (the form of ISO 8583 field 49), with
//! their alphabetic code and minor-unit exponent, and exact formatting of
//! amounts held in minor units.
//!
//! The table is the `iso_currency` crate's: every active ISO 4217 code,
//! funds (`BOV`, `CLF`, `USN`, …) and special codes (`XAU`, `XDR`, `XXX`, …),
//! plus a few recently superseded codes (`HRK`, `SLL`, `CUC`, …) that can
//! still show up in late clearing. ISO 4217 gives no minor unit ("N.A.") for
//! the special codes (precious metals, units of account, testing, "no
//! currency"): this module treats them as exponent 0 and says so through
//! [`Currency::exponent_defined`].
//!
//! Formatting never goes through floating point: [`format_minor`] works on
//! the decimal digits of the integer amount.

use std::fmt;

/// One ISO 4217 currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency {
    /// Numeric code, e.g. 840 for USD (shown with three digits: `"008"`).
    pub numeric: u16,
    /// Alphabetic code, e.g. `"USD"`.
    pub alpha: &'static str,
    /// Number of decimal places of the minor unit: 2 for USD (cents), 0 for
    /// JPY, 3 for BHD and KWD, 4 for CLF. 0 for the codes ISO 4217 gives no
    /// minor unit (see [`Currency::exponent_defined`]).
    pub exponent: u8,
    /// False for the codes ISO 4217 lists with minor unit "N.A." (`XAU`,
    /// `XAG`, `XDR`, `XXX`, …), whose [`exponent`](Currency::exponent) is
    /// given here as 0 so that amounts are whole units.
    pub exponent_defined: bool,
}

impl Currency {
    /// The numeric code as the three digits ISO 8583 field 49 carries,
    /// e.g. `"008"` for ALL.
    pub fn numeric_code(&self) -> String {
        format!("{:03}", self.numeric)
    }

    /// `amount` (in minor units of this currency) as a decimal string with
    /// this currency's exponent; see [`format_minor`].
    pub fn format(&self, amount: i128) -> String {
        format_minor(amount, self.exponent)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.alpha)
    }
}

impl From<iso_currency::Currency> for Currency {
    fn from(c: iso_currency::Currency) -> Self {
        let iso_exponent = c.exponent().and_then(|e| u8::try_from(e).ok());
        Currency {
            numeric: c.numeric(),
            alpha: c.code(),
            exponent: iso_exponent.unwrap_or(0),
            exponent_defined: iso_exponent.is_some(),
        }
    }
}

/// The currency whose numeric code is `code`: exactly three ASCII digits,
/// e.g. `"840"` or `"048"` (no sign, no spaces — trim first if needed).
/// `None` for anything else and for codes ISO 4217 does not assign.
pub fn by_numeric(code: &str) -> Option<Currency> {
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    code.parse::<u16>().ok().and_then(from_numeric)
}

/// The currency whose numeric code is `numeric` (e.g. 392 for JPY).
pub fn from_numeric(numeric: u16) -> Option<Currency> {
    iso_currency::Currency::from_numeric(numeric).map(Currency::from)
}

/// The currency whose alphabetic code is `alpha`, in capitals (e.g.
/// `"JPY"`).
pub fn by_alpha(alpha: &str) -> Option<Currency> {
    iso_currency::Currency::from_code(alpha).map(Currency::from)
}

/// `amount` minor units as a decimal string with `exponent` decimal places,
/// exactly: `(123456, 2)` → `"1234.56"`, `(-5, 2)` → `"-0.05"`, `(7, 0)` →
/// `"7"`, `(1234, 3)` → `"1.234"`. No thousands separators, no rounding, a
/// leading `-` for negative amounts, always at least one digit before the
/// point. Works on the integer's decimal digits (never floating point), for
/// any `i128` including `i128::MIN` and any exponent.
pub fn format_minor(amount: i128, exponent: u8) -> String {
    let digits = amount.unsigned_abs().to_string();
    let exp = usize::from(exponent);
    let mut out = String::with_capacity(digits.len().max(exp) + 3);
    if amount < 0 {
        out.push('-');
    }
    if exp == 0 {
        out.push_str(&digits);
    } else if digits.len() <= exp {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', exp - digits.len()));
        out.push_str(&digits);
    } else {
        // All ASCII digits, so any byte index is a char boundary.
        let (units, minor) = digits.split_at(digits.len() - exp);
        out.push_str(units);
        out.push('.');
        out.push_str(minor);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_currencies() {
        let usd = by_numeric("840").expect("USD");
        assert_eq!(
            (usd.alpha, usd.exponent, usd.exponent_defined),
            ("USD", 2, true)
        );
        let jpy = by_numeric("392").expect("JPY");
        assert_eq!((jpy.alpha, jpy.exponent), ("JPY", 0));
        let bhd = by_numeric("048").expect("BHD");
        assert_eq!((bhd.alpha, bhd.exponent, bhd.numeric), ("BHD", 3, 48));
        assert_eq!(bhd.numeric_code(), "048");
        assert_eq!(
            by_numeric("414").map(|c| (c.alpha, c.exponent)),
            Some(("KWD", 3))
        );
        assert_eq!(
            by_numeric("990").map(|c| (c.alpha, c.exponent)),
            Some(("CLF", 4))
        );
        assert_eq!(by_numeric("978").map(|c| c.alpha), Some("EUR"));
        assert_eq!(
            by_numeric("152").map(|c| (c.alpha, c.exponent)),
            Some(("CLP", 0))
        );
        assert_eq!(by_alpha("KWD").map(|c| c.numeric), Some(414));
        assert_eq!(from_numeric(826).map(|c| c.to_string()), Some("GBP".into()));
    }

    #[test]
    fn codes_without_minor_unit_are_whole_units() {
        let xau = by_numeric("959").expect("XAU");
        assert_eq!(
            (xau.alpha, xau.exponent, xau.exponent_defined),
            ("XAU", 0, false)
        );
        assert_eq!(by_numeric("999").map(|c| c.alpha), Some("XXX"));
    }

    #[test]
    fn rejects_malformed_and_unassigned_codes() {
        for code in [
            "", "84", "0840", " 840", "840 ", "+84", "-84", "abc", "8٤0", "000", "123",
        ] {
            assert_eq!(by_numeric(code), None, "{code:?}");
        }
        assert_eq!(by_alpha("usd"), None);
        assert_eq!(by_alpha("ZZZ"), None);
    }

    #[test]
    fn format_minor_is_exact() {
        assert_eq!(format_minor(123_456, 2), "1234.56");
        assert_eq!(format_minor(-5, 2), "-0.05");
        assert_eq!(format_minor(7, 0), "7");
        assert_eq!(format_minor(1234, 3), "1.234");
        assert_eq!(format_minor(0, 2), "0.00");
        assert_eq!(format_minor(0, 0), "0");
        assert_eq!(format_minor(-7, 0), "-7");
        assert_eq!(format_minor(100, 2), "1.00");
        assert_eq!(format_minor(12_345, 4), "1.2345");
        assert_eq!(format_minor(1, 4), "0.0001");
        assert_eq!(format_minor(-1_000, 3), "-1.000");
        assert_eq!(
            format_minor(i128::MIN, 2),
            "-1701411834604692317316873037158841057.28"
        );
        assert_eq!(format_minor(i128::MAX, 0), i128::MAX.to_string());
        assert_eq!(format_minor(5, 40), format!("0.{}5", "0".repeat(39)));
    }

    #[test]
    fn formats_with_currency_exponent() {
        let fmt = |code: &str, amount| by_numeric(code).map(|c| c.format(amount));
        assert_eq!(fmt("392", 1500).as_deref(), Some("1500"));
        assert_eq!(fmt("048", 12_345).as_deref(), Some("12.345"));
        assert_eq!(fmt("840", -1).as_deref(), Some("-0.01"));
    }

    proptest::proptest! {
        #[test]
        fn format_minor_round_trips_through_decimal(amount in proptest::num::i64::ANY, exponent in 0u8..=18) {
            let formatted = format_minor(i128::from(amount), exponent);
            let expected = rust_decimal::Decimal::new(amount, u32::from(exponent));
            proptest::prop_assert_eq!(formatted, expected.to_string());
        }
    }
}
