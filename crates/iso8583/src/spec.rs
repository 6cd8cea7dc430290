//! Dialects as data.
//!
//! A [`Dialect`] is one ISO 8583 wire layout: how the MTI and bitmaps are
//! written and, for every field, its content class, length rule and encoding.
//! It is read from a TOML file (the format is documented in `specs/README.md`),
//! validated once — a bad file names the field and the problem — and then
//! shared immutably behind an [`Arc`]. There is no global dialect.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

/// Highest field number any dialect can define (with a tertiary bitmap).
pub const MAX_FIELD: u8 = 192;

/// Dialects compiled into the binary, by name: `specs/<name>.toml`.
const BUILTIN: &[(&str, &str)] = &[
    ("iso87ascii", include_str!("../../../specs/iso87ascii.toml")),
    (
        "iso87binary",
        include_str!("../../../specs/iso87binary.toml"),
    ),
    (
        "iso93binary",
        include_str!("../../../specs/iso93binary.toml"),
    ),
    ("ipm", include_str!("../../../specs/ipm.toml")),
];

/// A dialect file could not be read or is not a valid dialect.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The file could not be read.
    #[error("{origin}: cannot read: {source}")]
    Io {
        /// File that was being read.
        origin: String,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not have the dialect's shape.
    #[error("{origin}: {}", .source.to_string().trim_end())]
    Syntax {
        /// File that was being read.
        origin: String,
        /// Parser error, with line and column.
        source: toml::de::Error,
    },
    /// The dialect's `name` is empty.
    #[error("{origin}: `name` must not be empty")]
    NoName {
        /// File that was being read.
        origin: String,
    },
    /// One field definition is inconsistent.
    #[error("{origin}: field {field}: {reason}")]
    Field {
        /// File that was being read.
        origin: String,
        /// The field key as written in the file.
        field: String,
        /// What is wrong with it.
        #[source]
        reason: FieldError,
    },
    /// A name was neither a built-in dialect nor a readable file.
    #[error(
        "unknown dialect `{0}` (built-in: iso87ascii, iso87binary, iso93binary, ipm; or a path to a .toml file)"
    )]
    Unknown(String),
}

/// What is wrong with one field definition of a dialect file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldError {
    /// The key is not a field number the dialect can have.
    #[error("field numbers run from 2 to {highest}")]
    Number {
        /// The highest field number of the dialect.
        highest: u8,
    },
    /// Bit 65 announces the tertiary bitmap in this dialect.
    #[error("bit 65 is the tertiary bitmap in this dialect and cannot be a field")]
    TertiaryBitmap,
    /// The field's `name` is empty.
    #[error("`name` must not be empty")]
    NoName,
    /// `prefix` on a fixed-length field.
    #[error("`prefix` is only for variable fields (ll, lll, llll)")]
    PrefixOnFixed,
    /// Not exactly one length key.
    #[error("give exactly one of `fixed`, `ll`, `lll`, `llll`")]
    Length,
    /// A length outside 1 to 9999.
    #[error("length must be between 1 and 9999")]
    LengthRange,
    /// An x+n field with no room for the digits after the sign.
    #[error("an x+n field needs room for the sign and at least one digit")]
    XnTooShort,
    /// `pad` on a field that is not BCD.
    #[error("`pad` is only for data = \"bcd\"")]
    PadNotBcd,
    /// A content class the `data` encoding cannot write.
    #[error("class {class} cannot be written with this `data` encoding")]
    ClassEncoding {
        /// The class's label (`n`, `ans`, …).
        class: &'static str,
    },
    /// A maximum length the length prefix cannot count to.
    #[error("maximum {max} does not fit a {digits}-digit length prefix")]
    PrefixTooShort {
        /// The maximum given.
        max: usize,
        /// Digits of the prefix.
        digits: u8,
    },
    /// A variable field without `prefix`.
    #[error("variable fields need `prefix` (ascii, ebcdic, bcd, binary)")]
    NoPrefix,
}

/// A `version` that is not an edition of ISO 8583 the codec knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("version {0}: supported are 1987 and 1993")]
pub struct UnknownVersion(pub u16);

/// The edition of ISO 8583 whose field meanings a dialect follows (the
/// `version` key: `1987`, the default, or `1993`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "u16")]
pub enum IsoVersion {
    /// ISO 8583:1987 — MTI version digit 0, two-digit response codes.
    #[default]
    Iso1987,
    /// ISO 8583:1993 — MTI version digit 1, three-digit action codes.
    Iso1993,
}

impl IsoVersion {
    /// Whether four MTI digits name a message type of this edition: its
    /// version digit (`0` for 1987, `1` for 1993), a class from 1
    /// (authorisation) to 8 (network management), a function from 0
    /// (request) to 5 (notification acknowledgement; 1987 defines 0 to 4,
    /// 5 is accepted for both) and an origin from 0 (acquirer) to 5 (other,
    /// repeat). Class 0 and 9 and functions and origins 6 to 9 are reserved
    /// by ISO.
    pub fn allows_mti(self, digits: [u8; 4]) -> bool {
        let version = match self {
            IsoVersion::Iso1987 => b'0',
            IsoVersion::Iso1993 => b'1',
        };
        let [v, class, function, origin] = digits;
        v == version
            && (b'1'..=b'8').contains(&class)
            && (b'0'..=b'5').contains(&function)
            && (b'0'..=b'5').contains(&origin)
    }
}

impl TryFrom<u16> for IsoVersion {
    type Error = UnknownVersion;

    fn try_from(year: u16) -> Result<Self, Self::Error> {
        match year {
            1987 => Ok(IsoVersion::Iso1987),
            1993 => Ok(IsoVersion::Iso1993),
            other => Err(UnknownVersion(other)),
        }
    }
}

/// How the message type indicator is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MtiEncoding {
    /// Four ASCII digits.
    Ascii,
    /// Four EBCDIC digits.
    Ebcdic,
    /// Two bytes of packed BCD.
    Bcd,
}

/// How each 64-bit bitmap is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BitmapEncoding {
    /// Eight raw bytes.
    Binary,
    /// Sixteen ASCII hex characters (upper case when encoding).
    Hex,
}

/// When the secondary bitmap (bits 65..=128) is written (the
/// `secondary_bitmap` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecondaryBitmap {
    /// Only when a field above 64 is present (bit 1 says whether it is).
    #[default]
    WhenNeeded,
    /// Always (Mastercard IPM): bit 1 is always set, and a message without
    /// it is refused ([`crate::ErrorKind::NoSecondaryBitmap`]).
    Always,
}

/// The EBCDIC code page of `ebcdic` data (the `ebcdic` key). Digits, and so
/// EBCDIC MTIs and length prefixes, are the same (F0–F9) in both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodePage {
    /// Code page 1047 (jPOS `ISOUtil.asciiToEbcdic`) for printable ASCII;
    /// other bytes have no character ([`crate::ebcdic::from_ascii`]).
    #[default]
    Cp1047,
    /// Code page 500 (Mastercard IPM files), a total mapping between the 256
    /// EBCDIC bytes and the 256 Latin-1 bytes: a value is held as Latin-1,
    /// one byte per character ([`crate::ebcdic::cp500`]).
    Cp500,
}

/// Content class of a field: which characters its value may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Class {
    /// Digits `0-9`.
    #[serde(rename = "n")]
    N,
    /// Letters and space.
    #[serde(rename = "a")]
    A,
    /// Letters, digits and space.
    #[serde(rename = "an")]
    An,
    /// Printable ASCII, `0x20..=0x7E`.
    #[serde(rename = "ans")]
    Ans,
    /// Raw bytes.
    #[serde(rename = "b")]
    B,
    /// Track data: digits and the separator `=`.
    #[serde(rename = "z")]
    Z,
    /// A sign `C` (credit) or `D` (debit) followed by digits.
    #[serde(rename = "xn")]
    Xn,
}

impl Class {
    /// Short name as used in specs (`n`, `ans`, `x+n` …).
    pub fn label(self) -> &'static str {
        match self {
            Class::N => "n",
            Class::A => "a",
            Class::An => "an",
            Class::Ans => "ans",
            Class::B => "b",
            Class::Z => "z",
            Class::Xn => "x+n",
        }
    }

    /// Whether `byte` may appear at `index` of a value of this class.
    pub fn allows(self, index: usize, byte: u8) -> bool {
        match self {
            Class::N => byte.is_ascii_digit(),
            Class::A => byte.is_ascii_alphabetic() || byte == b' ',
            Class::An => byte.is_ascii_alphanumeric() || byte == b' ',
            Class::Ans => (0x20..=0x7E).contains(&byte),
            Class::B => true,
            Class::Z => byte.is_ascii_digit() || byte == b'=',
            Class::Xn if index == 0 => byte == b'C' || byte == b'D',
            Class::Xn => byte.is_ascii_digit(),
        }
    }
}

/// Where the pad nibble of an odd number of BCD digits goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Pad {
    /// A leading `0` nibble (jPOS `BCDInterpreter.LEFT_PADDED`).
    #[serde(rename = "left")]
    Left,
    /// A trailing `0` nibble (jPOS `BCDInterpreter.RIGHT_PADDED`).
    #[serde(rename = "right0")]
    Right0,
    /// A trailing `F` nibble (jPOS `BCDInterpreter.RIGHT_PADDED_F`).
    #[serde(rename = "rightF")]
    RightF,
}

/// How a field's value is written on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataEncoding {
    /// One ASCII byte per character.
    Ascii,
    /// One EBCDIC byte per character, in this code page.
    Ebcdic(CodePage),
    /// Two digits per byte; for `xn` the sign is one ASCII byte first.
    Bcd(Pad),
    /// Raw bytes (class `b` only).
    Binary,
    /// Two ASCII hex characters per byte (class `b` only).
    Hex,
}

/// How the length prefix of a variable field is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrefixEncoding {
    /// ASCII digits, one per prefix digit.
    Ascii,
    /// EBCDIC digits, one per prefix digit.
    Ebcdic,
    /// Packed BCD: one byte for LL, two for LLL and LLLL.
    Bcd,
    /// Big-endian binary: one byte for LL, two for LLL and LLLL.
    Binary,
}

/// Length rule of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// Always exactly this many units.
    Fixed(usize),
    /// A length prefix of `digits` (2, 3 or 4) decimal digits, then at most
    /// `max` units.
    Variable {
        /// Digits of the prefix: 2 (LL), 3 (LLL) or 4 (LLLL).
        digits: u8,
        /// Largest length allowed.
        max: usize,
        /// How the prefix is written.
        prefix: PrefixEncoding,
    },
}

/// The complete definition of one field in a dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpec {
    /// Field number, 2..=192.
    pub number: u8,
    /// Human name.
    pub name: String,
    /// Content class.
    pub class: Class,
    /// Fixed or variable length.
    pub length: Length,
    /// Encoding of the value.
    pub data: DataEncoding,
    /// Whether the value's characters are checked against the class (when
    /// decoding and when encoding). Always true but for character data
    /// (`ascii`, `ebcdic`) in a dialect with `check_classes = false`.
    pub check_class: bool,
}

impl FieldSpec {
    /// Length rule in the usual notation: `n 6`, `ans ..999` (LLL) …
    pub fn layout(&self) -> String {
        match self.length {
            Length::Fixed(n) => format!("{} {n}", self.class.label()),
            Length::Variable { digits, max, .. } => {
                format!(
                    "{} {}{max}",
                    self.class.label(),
                    ".".repeat(usize::from(digits))
                )
            }
        }
    }
}

/// One ISO 8583 wire layout, validated. Share it as `Arc<Dialect>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialect {
    name: String,
    description: String,
    mti: MtiEncoding,
    bitmap: BitmapEncoding,
    tertiary_bitmap: bool,
    secondary_bitmap: SecondaryBitmap,
    version: IsoVersion,
    /// Indexed by field number; `None` where the dialect defines no field.
    fields: Vec<Option<FieldSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDialect {
    name: String,
    #[serde(default)]
    description: String,
    mti: MtiEncoding,
    bitmap: BitmapEncoding,
    #[serde(default)]
    tertiary_bitmap: bool,
    #[serde(default)]
    secondary_bitmap: SecondaryBitmap,
    #[serde(default)]
    version: IsoVersion,
    #[serde(default)]
    ebcdic: CodePage,
    #[serde(default = "checked")]
    check_classes: bool,
    fields: BTreeMap<String, RawField>,
}

fn checked() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawData {
    Ascii,
    Ebcdic,
    Bcd,
    Binary,
    Hex,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: String,
    class: Class,
    fixed: Option<usize>,
    ll: Option<usize>,
    lll: Option<usize>,
    llll: Option<usize>,
    data: RawData,
    pad: Option<Pad>,
    prefix: Option<PrefixEncoding>,
}

impl Dialect {
    /// Parses and validates a dialect from TOML text. `origin` (a file name)
    /// prefixes every error message.
    pub fn from_toml(text: &str, origin: &str) -> Result<Dialect, SpecError> {
        let raw: RawDialect = toml::from_str(text).map_err(|source| SpecError::Syntax {
            origin: origin.to_string(),
            source,
        })?;
        let mut fields = vec![None; usize::from(MAX_FIELD) + 1];
        let highest = if raw.tertiary_bitmap { MAX_FIELD } else { 128 };
        for (key, field) in raw.fields {
            let fail = |reason: FieldError| SpecError::Field {
                origin: origin.to_string(),
                field: key.clone(),
                reason,
            };
            let number: u8 = key
                .parse()
                .ok()
                .filter(|n| (2..=highest).contains(n))
                .ok_or_else(|| fail(FieldError::Number { highest }))?;
            if raw.tertiary_bitmap && number == 65 {
                return Err(fail(FieldError::TertiaryBitmap));
            }
            let spec = field
                .validate(number, raw.ebcdic, raw.check_classes)
                .map_err(fail)?;
            fields[usize::from(number)] = Some(spec);
        }
        if raw.name.trim().is_empty() {
            return Err(SpecError::NoName {
                origin: origin.to_string(),
            });
        }
        Ok(Dialect {
            name: raw.name,
            description: raw.description,
            mti: raw.mti,
            bitmap: raw.bitmap,
            tertiary_bitmap: raw.tertiary_bitmap,
            secondary_bitmap: raw.secondary_bitmap,
            version: raw.version,
            fields,
        })
    }

    /// Reads and validates a dialect file.
    pub fn load(path: &Path) -> Result<Arc<Dialect>, SpecError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Io {
            origin: origin.clone(),
            source,
        })?;
        Dialect::from_toml(&text, &origin).map(Arc::new)
    }

    /// One of the dialects compiled into the binary (`iso87ascii`,
    /// `iso87binary`, `iso93binary`, `ipm`), or `None` for another name.
    pub fn builtin(name: &str) -> Option<Result<Arc<Dialect>, SpecError>> {
        BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, text)| Dialect::from_toml(text, &format!("specs/{n}.toml")).map(Arc::new))
    }

    /// Names of the built-in dialects.
    pub fn builtin_names() -> impl Iterator<Item = &'static str> {
        BUILTIN.iter().map(|(n, _)| *n)
    }

    /// A built-in dialect by name, else a dialect file by path.
    pub fn resolve(name_or_path: &str) -> Result<Arc<Dialect>, SpecError> {
        if let Some(builtin) = Dialect::builtin(name_or_path) {
            return builtin;
        }
        let path = Path::new(name_or_path);
        if path.extension().is_some_and(|e| e == "toml") {
            return Dialect::load(path);
        }
        Err(SpecError::Unknown(name_or_path.to_string()))
    }

    /// The dialect's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// One-line description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// How the MTI is written.
    pub fn mti_encoding(&self) -> MtiEncoding {
        self.mti
    }

    /// How bitmaps are written.
    pub fn bitmap_encoding(&self) -> BitmapEncoding {
        self.bitmap
    }

    /// Whether bit 65 announces a tertiary bitmap.
    pub fn has_tertiary_bitmap(&self) -> bool {
        self.tertiary_bitmap
    }

    /// Whether every message carries the secondary bitmap (bit 1 always set).
    pub fn always_secondary_bitmap(&self) -> bool {
        self.secondary_bitmap == SecondaryBitmap::Always
    }

    /// Which edition of ISO 8583 the dialect's field meanings follow.
    pub fn version(&self) -> IsoVersion {
        self.version
    }

    /// Definition of field `number`, if the dialect has one.
    pub fn field(&self, number: u8) -> Option<&FieldSpec> {
        self.fields
            .get(usize::from(number))
            .and_then(Option::as_ref)
    }

    /// Every defined field, in field-number order.
    pub fn fields(&self) -> impl Iterator<Item = &FieldSpec> {
        self.fields.iter().flatten()
    }
}

impl RawField {
    fn validate(
        self,
        number: u8,
        code_page: CodePage,
        check_classes: bool,
    ) -> Result<FieldSpec, FieldError> {
        if self.name.trim().is_empty() {
            return Err(FieldError::NoName);
        }
        let length = match (self.fixed, self.ll, self.lll, self.llll) {
            (Some(n), None, None, None) => {
                if self.prefix.is_some() {
                    return Err(FieldError::PrefixOnFixed);
                }
                Length::Fixed(n)
            }
            (None, Some(max), None, None) => variable(2, max, 99, self.prefix)?,
            (None, None, Some(max), None) => variable(3, max, 999, self.prefix)?,
            (None, None, None, Some(max)) => variable(4, max, 9999, self.prefix)?,
            _ => return Err(FieldError::Length),
        };
        let units = match length {
            Length::Fixed(n) => n,
            Length::Variable { max, .. } => max,
        };
        if !(1..=9999).contains(&units) {
            return Err(FieldError::LengthRange);
        }
        if self.class == Class::Xn && units < 2 {
            return Err(FieldError::XnTooShort);
        }
        let data = match (self.data, self.pad) {
            (RawData::Bcd, pad) => DataEncoding::Bcd(pad.unwrap_or(Pad::Left)),
            (_, Some(_)) => return Err(FieldError::PadNotBcd),
            (RawData::Ascii, None) => DataEncoding::Ascii,
            (RawData::Ebcdic, None) => DataEncoding::Ebcdic(code_page),
            (RawData::Binary, None) => DataEncoding::Binary,
            (RawData::Hex, None) => DataEncoding::Hex,
        };
        let compatible = match self.class {
            Class::B => matches!(data, DataEncoding::Binary | DataEncoding::Hex),
            Class::N | Class::Z | Class::Xn => {
                matches!(
                    data,
                    DataEncoding::Ascii | DataEncoding::Ebcdic(_) | DataEncoding::Bcd(_)
                )
            }
            Class::A | Class::An | Class::Ans => {
                matches!(data, DataEncoding::Ascii | DataEncoding::Ebcdic(_))
            }
        };
        if !compatible {
            return Err(FieldError::ClassEncoding {
                class: self.class.label(),
            });
        }
        // Only characters can go unchecked: BCD digits, binary and hex are
        // always what their encoding can hold.
        let characters = matches!(data, DataEncoding::Ascii | DataEncoding::Ebcdic(_));
        Ok(FieldSpec {
            number,
            name: self.name,
            class: self.class,
            length,
            data,
            check_class: check_classes || !characters,
        })
    }
}

fn variable(
    digits: u8,
    max: usize,
    limit: usize,
    prefix: Option<PrefixEncoding>,
) -> Result<Length, FieldError> {
    if max > limit {
        return Err(FieldError::PrefixTooShort { max, digits });
    }
    let prefix = prefix.ok_or(FieldError::NoPrefix)?;
    Ok(Length::Variable {
        digits,
        max,
        prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_error(fields: &str) -> String {
        let text = format!("name = \"t\"\nmti = \"ascii\"\nbitmap = \"hex\"\n[fields]\n{fields}\n");
        Dialect::from_toml(&text, "t.toml").unwrap_err().to_string()
    }

    #[test]
    fn builtins_load() {
        for name in Dialect::builtin_names() {
            let d = Dialect::builtin(name).unwrap().unwrap();
            assert_eq!(d.name(), name);
            assert!(d.field(2).is_some(), "{name} defines the PAN");
        }
    }

    #[test]
    fn errors_name_the_field_and_the_problem() {
        let e = field_error(r#"2 = { name = "PAN", class = "n", ll = 19, data = "ascii" }"#);
        assert!(
            e.contains("t.toml: field 2: variable fields need `prefix`"),
            "{e}"
        );
        let e =
            field_error(r#"7 = { name = "x", class = "n", fixed = 4, ll = 4, data = "ascii" }"#);
        assert!(e.contains("field 7: give exactly one"), "{e}");
        let e = field_error(r#"52 = { name = "PIN", class = "b", fixed = 8, data = "ascii" }"#);
        assert!(e.contains("field 52: class b cannot"), "{e}");
        let e = field_error(r#"129 = { name = "x", class = "n", fixed = 1, data = "ascii" }"#);
        assert!(
            e.contains("field 129: field numbers run from 2 to 128"),
            "{e}"
        );
        let e = field_error(
            r#"9 = { name = "x", class = "n", ll = 120, data = "ascii", prefix = "ascii" }"#,
        );
        assert!(e.contains("field 9: maximum 120 does not fit"), "{e}");
        let e = field_error(
            r#"3 = { name = "x", class = "n", fixed = 6, data = "ascii", pad = "left" }"#,
        );
        assert!(e.contains("field 3: `pad` is only"), "{e}");
        let e = field_error(r#"3 = { name = "x", class = "q", fixed = 6, data = "ascii" }"#);
        assert!(e.starts_with("t.toml: "), "{e}");
        let e = field_error(
            r#"3 = { name = "x", class = "n", fixed = 6, data = "ascii", colour = 1 }"#,
        );
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn ipm_is_ebcdic_500_with_the_secondary_bitmap_always() {
        let d = Dialect::builtin("ipm").unwrap().unwrap();
        assert_eq!(d.version(), IsoVersion::Iso1993);
        assert_eq!(d.mti_encoding(), MtiEncoding::Ebcdic);
        assert!(d.always_secondary_bitmap());
        let pan = d.field(2).unwrap();
        assert_eq!(pan.data, DataEncoding::Ebcdic(CodePage::Cp500));
        assert!(!pan.check_class, "a reader of bank files takes every byte");
        assert_eq!(d.field(55).unwrap().data, DataEncoding::Binary);
        assert!(d.field(55).unwrap().check_class);
        assert!(d.field(7).is_none() && d.field(65).is_none());
    }

    #[test]
    fn dialect_keys_for_code_page_secondary_bitmap_and_classes() {
        let text = |keys: &str| {
            format!(
                "name = \"t\"\nmti = \"ebcdic\"\nbitmap = \"binary\"\n{keys}\n[fields]\n\
                 2 = {{ name = \"PAN\", class = \"n\", ll = 19, data = \"bcd\", prefix = \"bcd\" }}\n\
                 3 = {{ name = \"x\", class = \"n\", fixed = 6, data = \"ebcdic\" }}\n"
            )
        };
        let d = Dialect::from_toml(&text(""), "t.toml").unwrap();
        assert!(!d.always_secondary_bitmap());
        assert_eq!(
            d.field(3).unwrap().data,
            DataEncoding::Ebcdic(CodePage::Cp1047)
        );
        assert!(d.field(3).unwrap().check_class);
        let keys = "ebcdic = \"cp500\"\nsecondary_bitmap = \"always\"\ncheck_classes = false";
        let d = Dialect::from_toml(&text(keys), "t.toml").unwrap();
        assert!(d.always_secondary_bitmap());
        assert_eq!(
            d.field(3).unwrap().data,
            DataEncoding::Ebcdic(CodePage::Cp500)
        );
        assert!(!d.field(3).unwrap().check_class);
        assert!(
            d.field(2).unwrap().check_class,
            "BCD digits are always checked"
        );
        let e = Dialect::from_toml(&text("ebcdic = \"cp037\""), "t.toml").unwrap_err();
        assert!(e.to_string().starts_with("t.toml: "), "{e}");
        let e = Dialect::from_toml(&text("secondary_bitmap = \"never\""), "t.toml").unwrap_err();
        assert!(e.to_string().starts_with("t.toml: "), "{e}");
    }

    #[test]
    fn unknown_dialect_names_the_choices() {
        let e = Dialect::resolve("iso99").unwrap_err().to_string();
        assert!(e.contains("unknown dialect `iso99`"), "{e}");
    }
}
