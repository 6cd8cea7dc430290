//! What the journal kept of the terminal, as IPM wants it: the POS data
//! code (DE 22), the terminal type (PDS 0023) and the card acceptor's name
//! and location (DE 43).

use super::all_digits;

/// Whether a 1987 field 43 (a terminal's `name_location`) can become IPM
/// DE 43: the reason when it cannot (checked when the config is loaded, so a
/// bad entry does not stop a day's clearing).
pub fn check_name_location(field: &str) -> Result<(), &'static str> {
    NameLocation::parse(field.as_bytes()).map(|_| ())
}

/// IPM DE 22 (POS data code, 12 positions, ISO 8583:1993 layout) of a
/// transaction, from what the journal kept: the 1987 POS entry mode (field
/// 22: PAN entry mode, 2 digits, and PIN entry capability, 1 digit) and POS
/// condition code (field 25, 2 digits). A 12-character alphanumeric entry
/// mode is already a 1993 POS data code (the `iso93` dialects) and is used
/// as it is. What the 1987 fields cannot tell is sent as "unknown". The
/// mapping, subfield by subfield, is in `specs/clearing-ipm.md`.
pub fn pos_data_code(entry_mode: &str, condition: &str) -> [u8; 12] {
    let mode = entry_mode.as_bytes();
    if mode.len() == 12 && mode.iter().all(u8::is_ascii_alphanumeric) {
        let mut code = [b'0'; 12];
        code.copy_from_slice(mode);
        return code;
    }
    let (pan_mode, pin): (&[u8], u8) = if mode.len() == 3 && all_digits(mode) {
        (
            mode.get(..2).unwrap_or(b""),
            mode.get(2).copied().unwrap_or(b'0'),
        )
    } else {
        (b"", b'0')
    };
    let condition = condition.as_bytes();
    let ecommerce = matches!(pan_mode, b"81" | b"09" | b"82") || condition == b"59";
    let card_read = matches!(pan_mode, b"02" | b"05" | b"07" | b"80" | b"90" | b"91");

    // 1 card data input capability: what the entry mode proves.
    let input_capability = match pan_mode {
        b"01" => b'6',                 // key entry
        b"02" | b"90" => b'2',         // magnetic stripe reader
        b"05" | b"79" | b"80" => b'D', // chip terminal: magnetic stripe and ICC
        b"07" => b'M',                 // contactless M/Chip
        b"91" => b'A',                 // contactless magnetic stripe
        _ => b'0',                     // unknown
    };
    // 2 cardholder authentication capability, from the PIN entry capability.
    let auth_capability = match pin {
        b'1' | b'9' => b'1', // PIN entry capability
        b'2' => b'0',        // no electronic authentication capability
        b'8' => b'5',        // PIN pad inoperative
        _ => b'9',           // unknown
    };
    let [capture, environment, cardholder, card] = presence(condition, ecommerce, card_read);
    // 7 card data input mode.
    let input_mode = match pan_mode {
        b"01" | b"79" => b'6', // key entered at a terminal
        b"02" => b'2',         // magnetic stripe, track data not required
        b"05" => b'C',         // chip, online authorised
        b"07" => b'M',         // contactless M/Chip
        b"09" => b'R',         // e-commerce with DSRP cryptogram
        b"10" => b'7',         // credential on file
        b"80" | b"90" => b'B', // magnetic stripe, track data unaltered
        b"81" => b'S',         // electronic commerce
        b"82" => b'T',         // PAN auto-entry via server
        b"91" => b'A',         // contactless magnetic stripe
        _ => b'0',
    };
    // 12 PIN capture capability.
    let pin_capture = if pin == b'2' { b'0' } else { b'1' };
    [
        input_capability,
        auth_capability,
        capture,
        environment,
        cardholder,
        card,
        input_mode,
        b'9', // 8 cardholder authentication method: unknown
        b'9', // 9 cardholder authentication entity: unknown
        b'0', // 10 card data output capability: unknown
        b'0', // 11 terminal data output capability: unknown
        pin_capture,
    ]
}

/// Subfields 3 to 6 of the POS data code (card capture capability,
/// terminal operating environment, cardholder present, card present), from
/// the POS condition code and what the entry mode says of the card.
fn presence(condition: &[u8], ecommerce: bool, card_read: bool) -> [u8; 4] {
    // 3 card capture capability: ISO condition 02 is an unattended terminal
    // able to retain the card.
    let capture = if condition == b"02" { b'1' } else { b'9' };
    // 4 terminal operating environment.
    let environment = if ecommerce {
        b'5' // on cardholder premises, unattended
    } else {
        match condition {
            b"00" | b"05" => b'1', // on acceptor premises, attended
            b"02" => b'2',         // on acceptor premises, unattended
            _ => b'9',
        }
    };
    // 5 cardholder present.
    let cardholder = if ecommerce {
        b'5' // not present, electronic order
    } else {
        match condition {
            b"00" | b"02" | b"05" => b'0',
            b"01" | b"08" => b'1', // not present, unspecified
            _ => b'9',
        }
    };
    // 6 card present.
    let card = if card_read {
        b'1'
    } else if ecommerce {
        b'0'
    } else {
        match condition {
            b"00" | b"02" => b'1',
            b"01" | b"05" | b"08" => b'0',
            _ => b'9',
        }
    };
    [capture, environment, cardholder, card]
}

/// PDS 0023 (terminal type): `CT6` (cardholder-activated terminal level 6,
/// electronic commerce) when DE 22 says electronic order, `ATM` for MCC
/// 6011, else `NA` (terminal type not available: the journal does not know
/// whether a POS terminal was attended or a CAT).
pub(super) fn terminal_type(pos: &[u8; 12], mcc: &[u8]) -> &'static [u8] {
    if pos.get(4) == Some(&b'5') {
        b"CT6"
    } else if mcc == b"6011" {
        b"ATM"
    } else {
        b"NA"
    }
}

/// The 1987 field 43 (40 characters, Mastercard authorisation layout) cut
/// into the IPM DE 43 subfields.
///
/// ```text
/// 1987:  name (22) · space · city (13) · space · state or country (3)
/// IPM:   name \ street \ city \ postal code (10) state (3) country (3)
/// ```
///
/// The street and postal code are not in the 1987 field: the street is
/// empty and the postal code 10 spaces. Three letters at positions 38–40
/// are an ISO 3166 alpha-3 country (state spaces); two letters and a space
/// are a U.S. state code (country `USA`).
pub(super) struct NameLocation<'a> {
    /// The merchant's name.
    pub(super) name: &'a [u8],
    /// The city.
    pub(super) city: &'a [u8],
    /// The U.S. state code, or spaces.
    pub(super) state: [u8; 3],
    /// The ISO 3166 alpha-3 country.
    pub(super) country: [u8; 3],
}

impl<'a> NameLocation<'a> {
    /// Reads a 1987 field 43.
    pub(super) fn parse(field: &'a [u8]) -> Result<Self, &'static str> {
        if field.len() > 40 {
            return Err("name/location longer than 40 characters");
        }
        let name = trim(field.get(..23).unwrap_or(field));
        let city = trim(field.get(23..37).unwrap_or(b""));
        let code = field
            .get(37..40)
            .ok_or("no state or country code at positions 38-40")?;
        if name.is_empty() {
            return Err("no card acceptor name");
        }
        if name.len() > 22 {
            return Err("card acceptor name longer than 22 characters");
        }
        if city.len() > 13 {
            return Err("card acceptor city longer than 13 characters");
        }
        if name.contains(&b'\\') || city.contains(&b'\\') {
            return Err("backslash (the subfield delimiter) in name or city");
        }
        let (state, country) = match code {
            [a, b, c] if [a, b, c].iter().all(|x| x.is_ascii_uppercase()) => {
                (*b"   ", [*a, *b, *c])
            }
            [a, b, b' '] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => {
                ([*a, *b, b' '], *b"USA")
            }
            _ => {
                return Err("positions 38-40 must be an alpha-3 country code or a U.S. state code");
            }
        };
        Ok(NameLocation {
            name,
            city,
            state,
            country,
        })
    }
}

/// `bytes` without leading and trailing spaces.
fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != b' ').unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or(b"")
}
