//! Response codes: ISO 8583:1987 two-digit response codes (field 39) and
//! ISO 8583:1993 three-digit action codes, mapped both ways by one table.
//!
//! | 1987 | 1993 | meaning |
//! |---|---|---|
//! | 00 | 000 | approved |
//! | 01 | 107 | refer to card issuer |
//! | 03 | 109 | invalid merchant |
//! | 04 | 200 | pick up card |
//! | 05 | 100 | do not honour |
//! | 12 | 902 | invalid transaction |
//! | 13 | 110 | invalid amount |
//! | 14 | 111 | invalid card number |
//! | 15 | 908 | no such issuer (destination not found for routing) |
//! | 25 | 914 | unable to locate original transaction |
//! | 30 | 904 | format error |
//! | 41 | 208 | lost card, pick up |
//! | 43 | 209 | stolen card, pick up |
//! | 51 | 116 | not sufficient funds |
//! | 54 | 101 | expired card |
//! | 55 | 117 | incorrect PIN |
//! | 57 | 119 | transaction not permitted to cardholder |
//! | 58 | 120 | transaction not permitted to terminal |
//! | 61 | 121 | exceeds withdrawal amount limit |
//! | 62 | 104 | restricted card |
//! | 65 | 123 | exceeds withdrawal frequency limit |
//! | 75 | 106 | allowable PIN tries exceeded |
//! | 91 | 907 | issuer or switch inoperative |
//! | 94 | 913 | duplicate transmission |
//! | 96 | 909 | system malfunction |
//!
//! Codes not in the table map by class: 1993 `0xx` (approved) → `00`, `1xx`
//! (declined) → `05`, `2xx` (pick up) → `04`, `8xx` (network management
//! accepted) → `00`, anything else → `96`; an unknown 1987 code → `909`.

const TABLE: [(&str, &str); 25] = [
    ("00", "000"),
    ("01", "107"),
    ("03", "109"),
    ("04", "200"),
    ("05", "100"),
    ("12", "902"),
    ("13", "110"),
    ("14", "111"),
    ("15", "908"),
    ("25", "914"),
    ("30", "904"),
    ("41", "208"),
    ("43", "209"),
    ("51", "116"),
    ("54", "101"),
    ("55", "117"),
    ("57", "119"),
    ("58", "120"),
    ("61", "121"),
    ("62", "104"),
    ("65", "123"),
    ("75", "106"),
    ("91", "907"),
    ("94", "913"),
    ("96", "909"),
];

/// The 1993 action code for a 1987 response code.
pub fn to_action_code(response_code: &str) -> &'static str {
    TABLE
        .iter()
        .find(|(rc, _)| *rc == response_code)
        .map_or("909", |(_, ac)| ac)
}

/// The 1987 response code for a 1993 action code.
pub fn from_action_code(action_code: &str) -> &'static str {
    if let Some((rc, _)) = TABLE.iter().find(|(_, ac)| *ac == action_code) {
        return rc;
    }
    match action_code.as_bytes().first() {
        Some(b'0') | Some(b'8') => "00",
        Some(b'1') => "05",
        Some(b'2') => "04",
        _ => "96",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_maps_both_ways() {
        for (rc, ac) in TABLE {
            assert_eq!(to_action_code(rc), ac);
            assert_eq!(from_action_code(ac), rc);
        }
        assert_eq!(from_action_code("001"), "00");
        assert_eq!(from_action_code("800"), "00");
        assert_eq!(from_action_code("199"), "05");
        assert_eq!(from_action_code("x"), "96");
        assert_eq!(to_action_code("77"), "909");
    }
}
