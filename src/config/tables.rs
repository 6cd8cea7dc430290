//! The terminal registry and the route table: inline entries and the files
//! the config names, and what clearing asks of the terminals.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

use super::raw::RawConfig;
use super::{parse, read};
use crate::clearing::settings::{ClearingConfig, Format};
use crate::registry::{TerminalEntry, Terminals};
use crate::route::{RouteEntry, RouteTable};
use crate::security::keys::KeyStore;

/// A file of `[[terminal]]` entries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TerminalFile {
    #[serde(default, rename = "terminal")]
    terminals: Vec<TerminalEntry>,
}

/// A file of `[[route]]` entries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    #[serde(default, rename = "route")]
    routes: Vec<RouteEntry>,
}

/// When some destination takes IPM clearing files, every terminal's
/// `name_location` must fit IPM DE 43 (name, city, country code at
/// positions 38–40): found now rather than by the night's clearing run.
pub(super) fn ipm_name_problems(
    clearing: Option<&ClearingConfig>,
    terminals: &Terminals,
    file: &str,
) -> Vec<String> {
    let takes_ipm = clearing.is_some_and(|c| {
        c.format.format == Format::Ipm || c.destinations.values().any(|d| d.format == Format::Ipm)
    });
    if !takes_ipm {
        return Vec::new();
    }
    let mut problems: Vec<String> = terminals
        .iter()
        .filter_map(|t| {
            crate::clearing::ipm::check_name_location(&t.name_location)
                .err()
                .map(|reason| {
                    format!(
                        "{file}: terminal {}: name_location: {reason} (IPM clearing needs name, city and a country code at positions 38-40)",
                        t.id.trim_end()
                    )
                })
        })
        .collect();
    problems.sort();
    problems
}

/// Inline entries, then those of the named file, each labelled with where it
/// was written (`file: terminal[3]`) for error messages.
fn entries<T: Clone, F: serde::de::DeserializeOwned>(
    inline: &[T],
    file: &str,
    extra: Option<&Path>,
    kind: &str,
    from_file: impl Fn(F) -> Vec<T>,
    problems: &mut Vec<String>,
) -> Vec<(String, T)> {
    let mut all: Vec<(String, T)> = inline
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("{file}: {kind}[{i}]"), t.clone()))
        .collect();
    if let Some(path) = extra {
        match read(path).and_then(|t| parse::<F>(&t, path)) {
            Ok(f) => all.extend(
                from_file(f)
                    .into_iter()
                    .enumerate()
                    .map(|(i, t)| (format!("{}: {kind}[{i}]", path.display()), t)),
            ),
            Err(e) => problems.push(e.to_string()),
        }
    }
    all
}

/// Builds the terminal registry and route table from the inline entries and
/// the named files.
pub(super) fn load_tables(
    raw: &RawConfig,
    base: &Path,
    file: &str,
    destinations: &BTreeSet<String>,
    store: Option<&KeyStore>,
) -> Result<(Terminals, RouteTable), Vec<String>> {
    let mut problems = Vec::new();
    let terminals_path = raw.terminals_file.as_ref().map(|n| base.join(n));
    let terminal_entries = entries(
        &raw.terminals,
        file,
        terminals_path.as_deref(),
        "terminal",
        |f: TerminalFile| f.terminals,
        &mut problems,
    );
    let routes_path = raw.routes_file.as_ref().map(|n| base.join(n));
    let route_entries = entries(
        &raw.routes,
        file,
        routes_path.as_deref(),
        "route",
        |f: RouteFile| f.routes,
        &mut problems,
    );
    let terminals =
        Terminals::build(terminal_entries, store).map_err(|mut p| problems.append(&mut p));
    let routes =
        RouteTable::build(route_entries, destinations).map_err(|mut p| problems.append(&mut p));
    match (terminals, routes) {
        (Ok(t), Ok(r)) if problems.is_empty() => Ok((t, r)),
        _ => Err(problems),
    }
}
