//! Response codes: ISO 8583:1987 two-character response codes and the
//! three-digit action codes of ISO 8583:1993, and the table between them.
//!
//! Terminals and most banks speak 1987 codes (`00` approved, `05` do not
//! honour …); a bank speaking 1993 (`iso93binary`) answers with action codes
//! (`000` approved, `100` do not honour …) in a three-digit field 39. The
//! switch and the simulators translate with [`to_action_code`] and
//! [`from_action_code`], both driven by the one table [`TABLE`].
//!
//! | 1987 | 1993 | meaning |
//! |------|------|---------|
//! | `00` | `000` | approved |
//! | `01` | `107` | refer to card issuer |
//! | `03` | `109` | invalid merchant |
//! | `04` | `200` | pick up card |
//! | `05` | `100` | do not honour |
//! | `12` | `902` | invalid transaction |
//! | `13` | `110` | invalid amount |
//! | `14` | `111` | invalid card number |
//! | `15` | `908` | no such issuer (no routing) |
//! | `30` | `904` | format error |
//! | `41` | `208` | lost card, pick up |
//! | `43` | `209` | stolen card, pick up |
//! | `51` | `116` | insufficient funds |
//! | `54` | `101` | expired card |
//! | `55` | `117` | incorrect PIN |
//! | `57` | `119` | transaction not permitted to cardholder |
//! | `58` | `120` | transaction not permitted to terminal |
//! | `61` | `121` | exceeds withdrawal amount limit |
//! | `62` | `104` | restricted card |
//! | `63` | `122` | security violation (MAC) |
//! | `65` | `123` | exceeds withdrawal frequency limit |
//! | `75` | `106` | allowable PIN tries exceeded |
//! | `91` | `907` | issuer or switch inoperative |
//! | `94` | `913` | duplicate transmission |
//! | `96` | `909` | system malfunction |
//!
//! Going from 1993 to 1987, a few more action codes are recognised
//! ([`EXTRA_ACTION_CODES`]): `800` (network management accepted) and `400`
//! (reversal accepted) → `00`, `911` (card issuer timed out) → `91`, `916`
//! (MAC incorrect) → `63`. An action code in neither table maps by its
//! class: `0xx` → `00`, `1xx` → `05`,
//! `2xx` → `04`, anything else → `96`. A 1987 code not in the table maps to
//! `100` (do not honour): an unknown answer is never turned into an approval.

use crate::Dialect;
use crate::spec::Length;

/// The 1987 ↔ 1993 table: `(1987 response code, 1993 action code, meaning)`.
/// Both columns are unique, so the table works in both directions.
pub const TABLE: &[(&str, &str, &str)] = &[
    ("00", "000", "approved"),
    ("01", "107", "refer to card issuer"),
    ("03", "109", "invalid merchant"),
    ("04", "200", "pick up card"),
    ("05", "100", "do not honour"),
    ("12", "902", "invalid transaction"),
    ("13", "110", "invalid amount"),
    ("14", "111", "invalid card number"),
    ("15", "908", "no such issuer"),
    ("30", "904", "format error"),
    ("41", "208", "lost card, pick up"),
    ("43", "209", "stolen card, pick up"),
    ("51", "116", "insufficient funds"),
    ("54", "101", "expired card"),
    ("55", "117", "incorrect PIN"),
    ("57", "119", "transaction not permitted to cardholder"),
    ("58", "120", "transaction not permitted to terminal"),
    ("61", "121", "exceeds withdrawal amount limit"),
    ("62", "104", "restricted card"),
    ("63", "122", "security violation"),
    ("65", "123", "exceeds withdrawal frequency limit"),
    ("75", "106", "allowable PIN tries exceeded"),
    ("91", "907", "issuer or switch inoperative"),
    ("94", "913", "duplicate transmission"),
    ("96", "909", "system malfunction"),
];

/// Action codes understood only in the 1993 → 1987 direction:
/// `(1993 action code, 1987 response code, meaning)`.
pub const EXTRA_ACTION_CODES: &[(&str, &str, &str)] = &[
    ("400", "00", "reversal accepted"),
    ("800", "00", "network management accepted"),
    ("911", "91", "card issuer timed out"),
    ("916", "63", "MAC incorrect"),
];

/// Action code of an accepted network management request (`1814`).
pub const NETWORK_ACCEPTED: &str = "800";

/// Action code of an accepted reversal or reversal advice (`1430`).
pub const REVERSAL_ACCEPTED: &str = "400";

/// Whether a 1987 response code approves: 00, 08 (honour with
/// identification) or 11 (approved, VIP). Reversals, completions and
/// clearing all use this one rule.
pub fn approves(rc87: &str) -> bool {
    matches!(rc87, "00" | "08" | "11")
}

/// The 1993 action code for a 1987 response code; `100` (do not honour) for
/// a code not in [`TABLE`].
pub fn to_action_code(rc87: &str) -> &'static str {
    TABLE
        .iter()
        .find(|(rc, _, _)| *rc == rc87)
        .map_or("100", |(_, ac, _)| ac)
}

/// The 1987 response code for a 1993 action code: from [`TABLE`], then
/// [`EXTRA_ACTION_CODES`], then by the code's class (`0xx` approved → `00`,
/// `1xx` declined → `05`, `2xx` pick up → `04`, else `96`).
pub fn from_action_code(ac: &str) -> &'static str {
    if let Some((rc, _, _)) = TABLE.iter().find(|(_, a, _)| *a == ac) {
        return rc;
    }
    if let Some((_, rc, _)) = EXTRA_ACTION_CODES.iter().find(|(a, _, _)| *a == ac) {
        return rc;
    }
    let all_digits = ac.len() == 3 && ac.bytes().all(|b| b.is_ascii_digit());
    match ac.as_bytes().first() {
        Some(b'0') if all_digits => "00",
        Some(b'1') if all_digits => "05",
        Some(b'2') if all_digits => "04",
        _ => "96",
    }
}

/// Whether `dialect` carries 1993 action codes: its field 39 is fixed at
/// three characters (as in `iso93binary`), rather than two.
pub fn uses_action_codes(dialect: &Dialect) -> bool {
    matches!(dialect.field(39).map(|f| f.length), Some(Length::Fixed(3)))
}

/// `code` in the style a field 39 needs: a two-character code becomes an
/// action code when `action_codes`, a three-digit action code becomes a
/// 1987 code when not; anything else is returned as it is.
pub fn in_style(code: &str, action_codes: bool) -> &str {
    match (action_codes, code.len()) {
        (true, 2) => to_action_code(code),
        (false, 3) => from_action_code(code),
        _ => code,
    }
}

/// What a 1987 response code means, from [`TABLE`].
pub fn meaning(rc87: &str) -> Option<&'static str> {
    TABLE
        .iter()
        .find(|(rc, _, _)| *rc == rc87)
        .map(|(_, _, m)| *m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_round_trips_and_columns_are_unique() {
        for (i, (rc, ac, _)) in TABLE.iter().enumerate() {
            assert_eq!(to_action_code(rc), *ac);
            assert_eq!(from_action_code(ac), *rc);
            assert_eq!(rc.len(), 2);
            assert_eq!(ac.len(), 3);
            for (other_rc, other_ac, _) in TABLE.iter().skip(i + 1) {
                assert_ne!(rc, other_rc);
                assert_ne!(ac, other_ac);
            }
        }
        for (ac, _, _) in EXTRA_ACTION_CODES {
            assert!(TABLE.iter().all(|(_, a, _)| a != ac), "{ac} is in both");
        }
    }

    #[test]
    fn the_issue_examples_and_fallbacks() {
        assert_eq!(to_action_code("00"), "000");
        assert_eq!(to_action_code("05"), "100");
        assert_eq!(to_action_code("51"), "116");
        assert_eq!(to_action_code("55"), "117");
        assert_eq!(to_action_code("91"), "907");
        assert_eq!(to_action_code("Z9"), "100", "unknown → decline");
        assert_eq!(from_action_code(NETWORK_ACCEPTED), "00");
        assert_eq!(from_action_code(REVERSAL_ACCEPTED), "00");
        assert_eq!(from_action_code("911"), "91");
        assert_eq!(from_action_code("001"), "00");
        assert_eq!(from_action_code("183"), "05");
        assert_eq!(from_action_code("299"), "04");
        assert_eq!(from_action_code("999"), "96");
        assert_eq!(from_action_code("1x0"), "96");
        assert_eq!(from_action_code(""), "96");
        assert_eq!(meaning("51"), Some("insufficient funds"));
        assert_eq!(in_style("51", true), "116");
        assert_eq!(in_style("116", false), "51");
        assert_eq!(in_style("116", true), "116");
        assert_eq!(in_style("51", false), "51");
    }
}
