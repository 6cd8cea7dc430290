//! `[clearing]` in the config file: where files go, the acquirer's
//! identifiers in them, each destination's file format and the merchants'
//! pricing.
//!
//! ```toml
//! [clearing]
//! out_dir = "clearing"            # files, reports and manifests
//! acquirer_bin = "412345"         # 6 digits, in every acquirer reference
//! processor_id = "00000012345"    # 11 digits, the IPM file id
//! format = "csv"                  # default for destinations not listed
//! destinations = { bank_a = { format = "ipm", blocked = true } }
//! pricing = { percent = "1.50", fixed = 0 }   # merchants not listed
//!
//! [[clearing.merchant]]
//! id = "MERCHANT0000001"
//! percent = "1.75"                # of each purchase, a decimal string
//! fixed = 10                      # minor units per purchase
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;
use serde::Deserialize;

use super::settlement::{Pricing, PricingTable, SettlementError};

/// A clearing file format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Flat file (see [`super::csv`]).
    #[default]
    Csv,
    /// Mastercard IPM (see `specs/clearing-ipm.md`).
    Ipm,
}

impl Format {
    /// File name extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ipm => "ipm",
        }
    }
}

/// A destination's clearing file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Its format.
    pub format: Format,
    /// For IPM: cut into 1014-byte blocks (the usual way to a mainframe).
    #[serde(default)]
    pub blocked: bool,
}

/// `[clearing]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClearing {
    #[serde(default = "default_out_dir")]
    out_dir: PathBuf,
    acquirer_bin: String,
    processor_id: String,
    #[serde(default)]
    format: Format,
    #[serde(default)]
    destinations: BTreeMap<String, FileSpec>,
    #[serde(default)]
    pricing: Option<RawPricing>,
    #[serde(default, rename = "merchant")]
    merchants: Vec<RawMerchant>,
}

fn default_out_dir() -> PathBuf {
    PathBuf::from("clearing")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPricing {
    percent: String,
    #[serde(default)]
    fixed: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMerchant {
    id: String,
    percent: String,
    #[serde(default)]
    fixed: u64,
}

/// Validated clearing settings.
#[derive(Debug, Clone)]
pub struct ClearingConfig {
    /// Where files, reports and manifests are written.
    pub out_dir: PathBuf,
    /// The acquirer's BIN in acquirer reference data (6 digits).
    pub acquirer_bin: String,
    /// The acquirer's IPM processor id (11 digits).
    pub processor_id: String,
    /// Format of destinations not listed in `destinations`.
    pub format: FileSpec,
    /// File format per destination.
    pub destinations: BTreeMap<String, FileSpec>,
    /// Merchant pricing.
    pub pricing: PricingTable,
}

impl ClearingConfig {
    /// The file a destination gets.
    pub fn file_spec(&self, destination: &str) -> FileSpec {
        self.destinations
            .get(destination)
            .copied()
            .unwrap_or(self.format)
    }
}

/// Why a pricing in the section is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PricingError {
    /// The percentage is not a decimal number.
    #[error("`{0}` is not a decimal number")]
    NotDecimal(String),
    /// The pricing is out of range.
    #[error(transparent)]
    Settlement(#[from] SettlementError),
}

fn pricing(percent: &str, fixed: u64) -> Result<Pricing, PricingError> {
    let parsed: Decimal = percent
        .trim()
        .parse()
        .map_err(|_| PricingError::NotDecimal(percent.to_string()))?;
    Ok(Pricing::new(parsed, fixed)?)
}

impl RawClearing {
    /// Validates the section; each problem names its key. `base` resolves
    /// `out_dir`; `destinations` are the configured destination names.
    pub fn validate(
        &self,
        base: &Path,
        destinations: &[String],
    ) -> Result<ClearingConfig, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(&self.acquirer_bin, 6) {
            problems.push(("clearing.acquirer_bin".into(), "must be 6 digits".into()));
        }
        if !digits(&self.processor_id, 11) {
            problems.push(("clearing.processor_id".into(), "must be 11 digits".into()));
        }
        // Destination names become file names.
        for name in destinations {
            let fits = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            let reserved = ["settlement", "manifest", "breaks", super::select::STAND_IN]
                .iter()
                .any(|r| name.eq_ignore_ascii_case(r));
            if !fits || reserved {
                problems.push((
                    format!("destination {name}"),
                    "clearing files are named after destinations: use letters, digits, `_` and `-`, and not settlement, manifest, breaks or stand-in".into(),
                ));
            }
        }
        for name in self.destinations.keys() {
            if !destinations.contains(name) {
                problems.push((
                    format!("clearing.destinations.{name}"),
                    "no such destination".into(),
                ));
            }
        }
        let default = match &self.pricing {
            Some(p) => pricing(&p.percent, p.fixed).unwrap_or_else(|reason| {
                problems.push(("clearing.pricing".into(), reason.to_string()));
                Pricing::default()
            }),
            None => Pricing::default(),
        };
        let mut table = PricingTable::new(default);
        for (i, m) in self.merchants.iter().enumerate() {
            let key = format!("clearing.merchant[{i}]");
            if m.id.trim().is_empty() || m.id.len() > 15 {
                problems.push((format!("{key}.id"), "must be 1 to 15 characters".into()));
                continue;
            }
            match pricing(&m.percent, m.fixed) {
                Ok(p) => {
                    if table.insert(&m.id, p).is_some() {
                        problems.push((format!("{key}.id"), format!("`{}` given twice", m.id)));
                    }
                }
                Err(reason) => problems.push((format!("{key}.percent"), reason.to_string())),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(ClearingConfig {
            out_dir: base.join(&self.out_dir),
            acquirer_bin: self.acquirer_bin.clone(),
            processor_id: self.processor_id.clone(),
            format: FileSpec {
                format: self.format,
                blocked: false,
            },
            destinations: self.destinations.clone(),
            pricing: table,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> RawClearing {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn a_full_section_validates() {
        let raw = parse(
            r#"
            acquirer_bin = "412345"
            processor_id = "00000012345"
            destinations = { bank_a = { format = "ipm", blocked = true } }
            pricing = { percent = "1.5", fixed = 5 }
            [[merchant]]
            id = "MERCHANT0000001"
            percent = "1.75"
            fixed = 10
            "#,
        );
        let c = raw
            .validate(Path::new("/etc/cs"), &["bank_a".into()])
            .unwrap();
        assert_eq!(c.out_dir, Path::new("/etc/cs/clearing"));
        assert_eq!(
            c.file_spec("bank_a"),
            FileSpec {
                format: Format::Ipm,
                blocked: true
            }
        );
        assert_eq!(c.file_spec("bank_b").format, Format::Csv);
        assert_eq!(c.pricing.get("MERCHANT0000001").fee(1000).unwrap(), 28);
        assert_eq!(c.pricing.get("OTHER").fee(1000).unwrap(), 20);
    }

    #[test]
    fn every_problem_names_its_key() {
        let raw = parse(
            r#"
            acquirer_bin = "41234"
            processor_id = "12"
            destinations = { nowhere = { format = "csv" } }
            pricing = { percent = "one" }
            [[merchant]]
            id = "M1"
            percent = "101"
            "#,
        );
        let problems = raw.validate(Path::new("."), &[]).unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "clearing.acquirer_bin",
                "clearing.processor_id",
                "clearing.destinations.nowhere",
                "clearing.pricing",
                "clearing.merchant[0].percent"
            ]
        );
    }
}
