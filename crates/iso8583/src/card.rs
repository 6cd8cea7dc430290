//! Card data that masks itself.
//!
//! [`Pan`] and [`Track2`] print as `411111******1111` in `Debug` and
//! `Display`, a [`PinBlock`] as its length only; the clear value takes an
//! explicit `expose` call. This is
//! what keeps full card numbers out of logs (PCI DSS 3.3).

use std::fmt;

/// A primary account number, borrowed from a message.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Pan<'a>(&'a str);

impl<'a> Pan<'a> {
    /// Wraps a PAN.
    pub fn new(pan: &'a str) -> Self {
        Pan(pan)
    }

    /// The clear PAN. Call it only where the clear value is needed.
    pub fn expose(&self) -> &'a str {
        self.0
    }
}

impl fmt::Display for Pan<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask_pan(self.0))
    }
}

impl fmt::Debug for Pan<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pan({self})")
    }
}

/// Track 2 equivalent data (`PAN=YYMM…`), borrowed from a message.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Track2<'a>(&'a str);

impl<'a> Track2<'a> {
    /// Wraps track 2 data.
    pub fn new(track: &'a str) -> Self {
        Track2(track)
    }

    /// The PAN part, before the separator.
    pub fn pan(&self) -> Pan<'a> {
        Pan(self.0.split(['=', 'D']).next().unwrap_or_default())
    }

    /// The clear track. Call it only where the clear value is needed.
    pub fn expose(&self) -> &'a str {
        self.0
    }
}

impl fmt::Display for Track2<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask_track2(self.0))
    }
}

impl fmt::Debug for Track2<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Track2({self})")
    }
}

/// An enciphered PIN block (field 52), borrowed from a message. Even
/// enciphered, it never reaches a log: `Debug` and `Display` show only its
/// length.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PinBlock<'a>(&'a [u8]);

impl<'a> PinBlock<'a> {
    /// Wraps a PIN block.
    pub fn new(block: &'a [u8]) -> Self {
        PinBlock(block)
    }

    /// The block's bytes. Call it only where they are needed (translation).
    pub fn expose(&self) -> &'a [u8] {
        self.0
    }
}

impl fmt::Display for PinBlock<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<PIN block, {} bytes>", self.0.len())
    }
}

impl fmt::Debug for PinBlock<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PinBlock({self})")
    }
}

/// Masks a PAN to its first 6 and last 4 digits. Shorter values (which are
/// not valid PANs) are masked whole.
pub fn mask_pan(pan: &str) -> String {
    let chars: Vec<char> = pan.chars().collect();
    if chars.len() < 13 {
        return "*".repeat(chars.len());
    }
    let keep_end = chars.len() - 4;
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| if i < 6 || i >= keep_end { *c } else { '*' })
        .collect()
}

/// Masks track data: the PAN as [`mask_pan`], everything after the
/// separator replaced by `*`.
pub fn mask_track2(track: &str) -> String {
    match track.find(['=', 'D']) {
        Some(at) => {
            let (pan, rest) = track.split_at(at);
            format!(
                "{}={}",
                mask_pan(pan),
                "*".repeat(rest.len().saturating_sub(1))
            )
        }
        None => "*".repeat(track.len()),
    }
}

/// Whether `digits` passes the Luhn (mod 10) check used for card numbers:
/// at least two characters, all ASCII digits, the last one the check digit.
pub fn luhn_valid(digits: &str) -> bool {
    digits.len() >= 2 && luhn_sum(digits, false) == Some(0)
}

/// Appends the Luhn check digit to `body` (a PAN without its last digit).
/// `None` if `body` is empty or holds anything but ASCII digits.
pub fn luhn_complete(body: &str) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let sum = luhn_sum(body, true)?;
    let check = (10 - sum) % 10;
    Some(format!("{body}{check}"))
}

/// The Luhn sum of `digits` modulo 10. Digits are doubled at every second
/// position counting from the right, starting with the rightmost one when
/// `double_rightmost` (the check digit is still to be appended), else with
/// the one before it.
fn luhn_sum(digits: &str, double_rightmost: bool) -> Option<u32> {
    let mut sum = 0u32;
    for (i, b) in digits.bytes().rev().enumerate() {
        if !b.is_ascii_digit() {
            return None;
        }
        let d = u32::from(b - b'0');
        let doubled = (i % 2 == 0) == double_rightmost;
        sum += match (doubled, d * 2) {
            (true, twice) if twice > 9 => twice - 9,
            (true, twice) => twice,
            (false, _) => d,
        };
    }
    Some(sum % 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_known_numbers() {
        for pan in [
            "4111111111111111",
            "371449635398431",
            "5555555555554444",
            "6011111111111117",
            "4761739001010119",
            "79927398713",
        ] {
            assert!(luhn_valid(pan), "{pan}");
            let (body, _) = pan.split_at(pan.len() - 1);
            assert_eq!(luhn_complete(body).as_deref(), Some(pan));
        }
        for bad in [
            "4111111111111112",
            "371449635398430",
            "79927398710",
            "",
            "0",
            "4111 1111 1111 1111",
            "41111111111111x1",
        ] {
            assert!(!luhn_valid(bad), "{bad:?}");
        }
        assert_eq!(luhn_complete(""), None);
        assert_eq!(luhn_complete("47617x"), None);
        assert_eq!(luhn_complete("7992739871").as_deref(), Some("79927398713"));
    }

    #[test]
    fn masks_first_six_last_four() {
        assert_eq!(Pan::new("4111111111111111").to_string(), "411111******1111");
        assert_eq!(
            format!("{:?}", Pan::new("4111111111111111")),
            "Pan(411111******1111)"
        );
        assert_eq!(mask_pan("1234"), "****");
        assert_eq!(
            Track2::new("4761739001010119=22122011143804400000").to_string(),
            format!("476173******0119={}", "*".repeat(20))
        );
        assert_eq!(
            Track2::new("4761739001010119=2212").pan().expose(),
            "4761739001010119"
        );
    }
}
