//! Mastercard PDS (private data subelements): the subfields IPM carries
//! inside DE 48 (and, where a long DE 48 overflows, DE 62, 123, 124, 125).
//!
//! ```text
//! PDS  = tag (4 digits) · length (3 digits) · data (length characters)
//! DE 48 = PDS PDS …            e.g. 0023 002 NA  →  "0023002NA"
//! ```
//!
//! They are text inside the element's value, so this module works on the
//! value as the `ipm` dialect holds it (one byte per character, Latin-1);
//! the dialect (`specs/ipm.toml`) writes and reads the element itself.

/// Data elements that carry PDS.
pub const CARRIERS: [u8; 5] = [48, 62, 123, 124, 125];

/// Largest PDS tag (4 digits).
pub const MAX_TAG: u16 = 9999;
/// Longest PDS data (3-digit length).
pub const MAX_DATA: usize = 999;

/// Whether data element `de` carries PDS.
pub fn carries_pds(de: u8) -> bool {
    CARRIERS.contains(&de)
}

/// Appends one PDS (tag, length, data) to `out`. The caller keeps `tag` to
/// [`MAX_TAG`] and `data` to [`MAX_DATA`] bytes (the writer's PDS are
/// constants and fixed-width numbers); anything longer is cut to fit, so the
/// length always states the data that follows.
pub fn push(out: &mut Vec<u8>, tag: u16, data: &[u8]) {
    let data = data.get(..MAX_DATA).unwrap_or(data);
    out.extend_from_slice(&head(tag, data.len()));
    out.extend_from_slice(data);
}

/// Tag and length of a PDS whose data is `len` bytes: what precedes the
/// data (`tag` to [`MAX_TAG`] and `len` to [`MAX_DATA`], as [`push`]).
pub fn head(tag: u16, len: usize) -> [u8; 7] {
    let mut head = [b'0'; 7];
    let (tag_digits, len_digits) = head.split_at_mut(4);
    digits(tag_digits, usize::from(tag.min(MAX_TAG)));
    digits(len_digits, len.min(MAX_DATA));
    head
}

/// Fills `out` with the decimal digits of `value`, zero-padded on the left.
fn digits(out: &mut [u8], mut value: usize) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Why a data element's value is not a sequence of PDS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PdsError {
    /// The 4 characters where a tag starts are not digits (or fewer than 4
    /// are left).
    #[error("PDS tag is not 4 EBCDIC digits")]
    Tag,
    /// The 3 characters after the tag are not digits (or fewer are left).
    #[error("PDS {tag:04} length is not 3 EBCDIC digits")]
    Length {
        /// The PDS tag.
        tag: u16,
    },
    /// The data runs past the end of the element.
    #[error("PDS {tag:04} ({len} bytes) runs past its field")]
    Data {
        /// The PDS tag.
        tag: u16,
        /// The length it states.
        len: usize,
    },
}

/// One PDS of an element: its tag and data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pds<'a> {
    /// Tag, 0–9999.
    pub tag: u16,
    /// Data, as held in the element's value.
    pub data: &'a [u8],
}

/// The PDS of an element's value, in order; on error, the position in the
/// value where the bad part starts, and what is wrong. Stops after an error.
pub fn split(value: &[u8]) -> Split<'_> {
    Split {
        value,
        pos: 0,
        failed: false,
    }
}

/// Iterator of [`split`].
pub struct Split<'a> {
    value: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Iterator for Split<'a> {
    type Item = Result<Pds<'a>, (usize, PdsError)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.value.len() {
            return None;
        }
        let pos = self.pos;
        let next = self.read(pos);
        match &next {
            Ok((pds, end)) => {
                self.pos = *end;
                Some(Ok(*pds))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e.clone()))
            }
        }
    }
}

impl<'a> Split<'a> {
    /// The PDS at `pos` and where the next one starts.
    fn read(&self, pos: usize) -> Result<(Pds<'a>, usize), (usize, PdsError)> {
        let value = self.value;
        let tag = value
            .get(pos..pos + 4)
            .and_then(number)
            .ok_or((pos, PdsError::Tag))?;
        let tag = u16::try_from(tag).map_err(|_| (pos, PdsError::Tag))?;
        let len = value
            .get(pos + 4..pos + 7)
            .and_then(number)
            .ok_or((pos + 4, PdsError::Length { tag }))?;
        let data = value
            .get(pos + 7..pos + 7 + len)
            .ok_or((pos + 7, PdsError::Data { tag, len }))?;
        Ok((Pds { tag, data }, pos + 7 + len))
    }
}

/// Value of ASCII digits, `None` if any byte is not one.
fn number(bytes: &[u8]) -> Option<usize> {
    bytes.iter().try_fold(0usize, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + usize::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_splits() {
        let mut value = Vec::new();
        push(&mut value, 105, b"0022403150000001234500007");
        push(&mut value, 23, b"NA");
        push(&mut value, 301, b"");
        assert_eq!(
            value,
            b"01050250022403150000001234500007\
              0023002NA\
              0301000"
        );
        let got: Vec<_> = split(&value).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            got,
            [
                Pds {
                    tag: 105,
                    data: b"0022403150000001234500007"
                },
                Pds {
                    tag: 23,
                    data: b"NA"
                },
                Pds {
                    tag: 301,
                    data: b""
                },
            ]
        );
        assert_eq!(split(b"").count(), 0);
        assert_eq!(&head(23, 3), b"0023003");
    }

    #[test]
    fn errors_say_where_and_what() {
        let first = |value: &[u8]| split(value).find_map(Result::err);
        assert_eq!(first(b"0023002NA01"), Some((9, PdsError::Tag)));
        assert_eq!(first(b"00A3002NA"), Some((0, PdsError::Tag)));
        assert_eq!(first(b"002300"), Some((4, PdsError::Length { tag: 23 })));
        assert_eq!(
            first(b"0023009NA"),
            Some((7, PdsError::Data { tag: 23, len: 9 }))
        );
        assert_eq!(
            PdsError::Data { tag: 23, len: 9 }.to_string(),
            "PDS 0023 (9 bytes) runs past its field"
        );
        // Nothing after the first error.
        assert_eq!(split(b"XXXX0023002NA").count(), 1);
    }

    #[test]
    fn carriers() {
        assert!(carries_pds(48) && carries_pds(125));
        assert!(!carries_pds(43));
    }
}
