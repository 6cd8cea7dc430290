//! BIN routing: PAN prefixes and ranges → destination, longest match wins.
//!
//! Prefixes of 1 to 11 digits (6- and 8-digit BINs side by side) and ranges
//! of equal-length prefixes (`["400000", "409999"]`) are both supported; a
//! range of length *n* competes with prefixes of length *n*, and an exact
//! prefix wins over a range of the same length.
//!
//! Ranges of one length may not overlap, so that no entry's place in the
//! file decides where a card goes: two overlapping ranges are refused,
//! naming both, unless one lies inside the other (sharing an end at most;
//! not equal to it), where the
//! narrower one wins (`["400000", "499999"]` to one bank with
//! `["450000", "459999"]` to another).

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

/// A range with the place it was written (`file: route[2]`), while the
/// table is checked.
struct Placed {
    at: String,
    range: Range,
}

/// Sorts one length's ranges by low end, wider first on a tie, and checks
/// that any two are disjoint or strictly nested; each problem names both
/// entries.
fn order_ranges(mut placed: Vec<Placed>, problems: &mut Vec<String>) -> Vec<Range> {
    placed.sort_by(|a, b| {
        a.range
            .low
            .cmp(&b.range.low)
            .then_with(|| b.range.high.cmp(&a.range.high))
    });
    // The chain of ranges enclosing the current one, outermost first.
    let mut open: Vec<&Placed> = Vec::new();
    for p in &placed {
        while open.last().is_some_and(|o| o.range.high < p.range.low) {
            open.pop();
        }
        if let Some(o) = open.last() {
            if o.range.low == p.range.low && o.range.high == p.range.high {
                problems.push(format!(
                    "{}.range: [{}, {}] is also routed by {}",
                    p.at, p.range.low, p.range.high, o.at
                ));
                continue;
            }
            if o.range.high < p.range.high {
                problems.push(format!(
                    "{}.range: [{}, {}] overlaps {} [{}, {}] (ranges may only nest)",
                    p.at, p.range.low, p.range.high, o.at, o.range.low, o.range.high
                ));
                continue;
            }
        }
        open.push(p);
    }
    placed.into_iter().map(|p| p.range).collect()
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
            ranges: Vec::new(),
        };
        let mut placed: Vec<Vec<Placed>> = (0..=MAX_PREFIX).map(|_| Vec::new()).collect();
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
                    } else if let Some(slot) = placed.get_mut(low.len()) {
                        slot.push(Placed {
                            at,
                            range: Range {
                                low: low.clone(),
                                high: high.clone(),
                                destination,
                            },
                        });
                    }
                }
                _ => problems.push(format!("{at}: give exactly one of `prefix` or `range`")),
            }
        }
        for p in placed.iter().flatten() {
            if p.range.low == p.range.high && table.prefixes.contains_key(&p.range.low) {
                problems.push(format!(
                    "{}.range: `{}` is also routed as a prefix",
                    p.at, p.range.low
                ));
            }
        }
        table.ranges = placed
            .into_iter()
            .map(|p| order_ranges(p, &mut problems))
            .collect();
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
            // Ranges are disjoint or nested and sorted by low end (wider
            // first): among those starting at or below `head`, the last
            // that holds it is the narrowest.
            let ranges = self.ranges.get(len).map(Vec::as_slice).unwrap_or_default();
            let starts = ranges.partition_point(|r| r.low.as_str() <= head);
            if let Some(r) = ranges
                .get(..starts)
                .unwrap_or_default()
                .iter()
                .rev()
                .find(|r| head <= r.high.as_str())
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

    /// Overlapping ranges of one length are refused, naming both entries;
    /// a range strictly inside another is allowed and the narrower wins.
    #[test]
    fn overlapping_ranges_are_refused_and_nested_ones_narrowest_first() {
        let e = table(&[
            ("a", None, Some(["476100", "476199"])),
            ("b", None, Some(["476100", "476199"])),
        ])
        .unwrap_err();
        assert_eq!(
            e,
            ["route[1].range: [476100, 476199] is also routed by route[0]"]
        );
        let e = table(&[
            ("a", None, Some(["476150", "476250"])),
            ("b", None, Some(["476100", "476199"])),
        ])
        .unwrap_err();
        assert_eq!(
            e,
            [
                "route[0].range: [476150, 476250] overlaps route[1] [476100, 476199] (ranges may only nest)"
            ]
        );
        let e = table(&[
            ("b", None, Some(["476173", "476173"])),
            ("a", Some("476173"), None),
        ])
        .unwrap_err();
        assert_eq!(e, ["route[0].range: `476173` is also routed as a prefix"]);

        let t = table(&[
            ("a", None, Some(["400000", "499999"])),
            ("b", None, Some(["450000", "459999"])),
            ("c", None, Some(["450000", "450999"])),
            ("c", None, Some(["470000", "470099"])),
            ("b", None, Some(["100000", "100000"])),
        ])
        .unwrap();
        let at = |pan: &str| t.lookup(pan).map(|d| d.to_string());
        assert_eq!(at("4000000000000002").as_deref(), Some("a"));
        assert_eq!(at("4509990000000000").as_deref(), Some("c"));
        assert_eq!(at("4510000000000000").as_deref(), Some("b"));
        assert_eq!(at("4599990000000000").as_deref(), Some("b"));
        assert_eq!(at("4600000000000000").as_deref(), Some("a"));
        assert_eq!(at("4700500000000000").as_deref(), Some("c"));
        assert_eq!(at("4701000000000000").as_deref(), Some("a"));
        assert_eq!(at("1000000000000000").as_deref(), Some("b"));
        assert_eq!(at("5000000000000000"), None);
    }
}
