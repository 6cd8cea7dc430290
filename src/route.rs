//! BIN routing: PAN prefixes and ranges → destination, longest match wins.
//!
//! Prefixes of 1 to 11 digits (6- and 8-digit BINs side by side) and ranges
//! of equal-length prefixes (`["400000", "409999"]`) are both supported; a
//! range of length *n* competes with prefixes of length *n*, and an exact
//! prefix wins over a range of the same length.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde::Deserialize;

/// One `[[route]]` entry as written in configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteEntry {
    /// A PAN prefix, 1 to 11 digits.
    #[serde(default)]
    pub prefix: Option<String>,
    /// An inclusive range of prefixes of equal length, 1 to 11 digits.
    #[serde(default)]
    pub range: Option<[String; 2]>,
    /// Destination name.
    pub destination: String,
}

#[derive(Debug, Clone)]
struct Range {
    low: String,
    high: String,
    destination: Arc<str>,
}

/// The BIN table. Immutable; a reload builds a new one.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    prefixes: HashMap<String, Arc<str>>,
    /// Ranges by prefix length (index = length).
    ranges: Vec<Vec<Range>>,
}

const MAX_PREFIX: usize = 11;

fn digits(s: &str) -> bool {
    (1..=MAX_PREFIX).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

impl RouteTable {
    /// Validates entries against the known destinations; each comes with the
    /// location to name in errors (`file: route[2]`).
    pub fn build(
        entries: Vec<(String, RouteEntry)>,
        destinations: &BTreeSet<String>,
    ) -> Result<RouteTable, Vec<String>> {
        let mut problems = Vec::new();
        let mut table = RouteTable {
            prefixes: HashMap::new(),
            ranges: vec![Vec::new(); MAX_PREFIX + 1],
        };
        for (at, r) in entries {
            if !destinations.contains(&r.destination) {
                problems.push(format!(
                    "{at}.destination: no destination named `{}`",
                    r.destination
                ));
                continue;
            }
            let destination: Arc<str> = r.destination.as_str().into();
            match (&r.prefix, &r.range) {
                (Some(prefix), None) => {
                    if !digits(prefix) {
                        problems.push(format!("{at}.prefix: must be 1 to 11 digits"));
                    } else if table.prefixes.insert(prefix.clone(), destination).is_some() {
                        problems.push(format!("{at}.prefix: `{prefix}` is routed twice"));
                    }
                }
                (None, Some([low, high])) => {
                    if !digits(low) || !digits(high) || low.len() != high.len() || low > high {
                        problems.push(format!(
                            "{at}.range: must be two prefixes of equal length (1 to 11 digits), low first"
                        ));
                    } else if let Some(slot) = table.ranges.get_mut(low.len()) {
                        slot.push(Range {
                            low: low.clone(),
                            high: high.clone(),
                            destination,
                        });
                    }
                }
                _ => problems.push(format!("{at}: give exactly one of `prefix` or `range`")),
            }
        }
        if problems.is_empty() {
            Ok(table)
        } else {
            Err(problems)
        }
    }

    /// The destination for a PAN: the longest matching prefix or range.
    pub fn lookup(&self, pan: &str) -> Option<&Arc<str>> {
        for len in (1..=MAX_PREFIX.min(pan.len())).rev() {
            let Some(head) = pan.get(..len) else { continue };
            if let Some(dest) = self.prefixes.get(head) {
                return Some(dest);
            }
            let ranges = self.ranges.get(len).map(Vec::as_slice).unwrap_or_default();
            if let Some(r) = ranges
                .iter()
                .find(|r| r.low.as_str() <= head && head <= r.high.as_str())
            {
                return Some(&r.destination);
            }
        }
        None
    }

    /// Number of prefixes and ranges.
    pub fn len(&self) -> usize {
        self.prefixes.len() + self.ranges.iter().map(Vec::len).sum::<usize>()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (destination, prefix, range)
    type Spec<'a> = (&'a str, Option<&'a str>, Option<[&'a str; 2]>);

    fn table(entries: &[Spec<'_>]) -> Result<RouteTable, Vec<String>> {
        let dests: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        RouteTable::build(
            entries
                .iter()
                .enumerate()
                .map(|(i, (d, p, r))| {
                    (
                        format!("route[{i}]"),
                        RouteEntry {
                            prefix: p.map(String::from),
                            range: r.map(|[l, h]| [l.to_string(), h.to_string()]),
                            destination: d.to_string(),
                        },
                    )
                })
                .collect(),
            &dests,
        )
    }

    #[test]
    fn longest_prefix_wins_with_six_and_eight_digit_bins() {
        let t = table(&[
            ("a", Some("4"), None),
            ("b", Some("476173"), None),
            ("c", Some("47617390"), None),
            ("b", None, Some(["510000", "559999"])),
        ])
        .unwrap();
        assert_eq!(t.lookup("4761739001010119").map(|d| &**d), Some("c"));
        assert_eq!(t.lookup("4761731234567890").map(|d| &**d), Some("b"));
        assert_eq!(t.lookup("4000000000000002").map(|d| &**d), Some("a"));
        assert_eq!(t.lookup("5432100000000000").map(|d| &**d), Some("b"));
        assert_eq!(t.lookup("6011000000000004"), None);
        assert_eq!(t.lookup(""), None);
    }

    #[test]
    fn bad_entries_are_named() {
        let e = table(&[
            ("x", Some("4"), None),
            ("a", Some("4a"), None),
            ("a", None, Some(["59", "5"])),
        ])
        .unwrap_err();
        assert_eq!(e[0], "route[0].destination: no destination named `x`");
        assert_eq!(e[1], "route[1].prefix: must be 1 to 11 digits");
        assert!(e[2].starts_with("route[2].range"));
    }
}
