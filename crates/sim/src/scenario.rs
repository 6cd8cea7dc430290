//! What the terminal load generator sends: a weighted list of transaction
//! templates.
//!
//! Templates are written in 1987 terms (`0200`, response code `51`); against
//! a 1993 dialect the generator sends `1200` and expects the action code of
//! [`codes::to_action_code`](iso8583::codes::to_action_code).

use serde::{Deserialize, Serialize};

use iso8583::Mti;
use iso8583::card::luhn_complete;

/// Length of the PANs the generator makes.
pub const PAN_LENGTH: usize = 16;

/// A template is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// A scenario needs at least one template.
    #[error("a scenario needs at least one transaction template")]
    Empty,
    /// One template is not valid.
    #[error("template `{name}`: {reason}")]
    Template {
        /// The template's name.
        name: String,
        /// What is wrong with it.
        #[source]
        reason: TemplateError,
    },
}

/// What is wrong with one template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// The name is empty.
    #[error("the name must not be empty")]
    NoName,
    /// The weight is 0.
    #[error("the weight must be at least 1")]
    NoWeight,
    /// The MTI is not a 1987 request MTI.
    #[error("mti {0:?} is not a 1987 request MTI such as \"0200\"")]
    Mti(String),
    /// The processing code is not six digits.
    #[error("processing_code {0:?} must be six digits")]
    ProcessingCode(String),
    /// The BIN is not 1 to `max` digits.
    #[error("bin {bin:?} must be 1 to {max} digits")]
    Bin {
        /// The BIN given.
        bin: String,
        /// The longest BIN.
        max: usize,
    },
    /// The amount is beyond 12 digits.
    #[error("amount {0} does not fit 12 digits")]
    Amount(u64),
    /// The expected code is not a response code.
    #[error("expected {0:?} is not a response code")]
    Expected(String),
}

/// One kind of transaction the generator sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxnTemplate {
    /// Name used in the report.
    pub name: String,
    /// Relative weight among the scenario's templates (at least 1).
    #[serde(default = "one")]
    pub weight: u32,
    /// Request MTI in 1987 form: `0100` (authorisation) or `0200`
    /// (financial). The version digit follows the dialect.
    pub mti: String,
    /// Field 3, six digits: `000000` purchase, `200000` refund …
    pub processing_code: String,
    /// PAN prefix (1 to 15 digits); the generator completes a
    /// [`PAN_LENGTH`]-digit PAN with random digits and the Luhn check digit.
    pub bin: String,
    /// Make the check digit wrong on purpose.
    #[serde(default)]
    pub bad_luhn: bool,
    /// Field 4, in minor units.
    pub amount: u64,
    /// The field 39 every response must carry (1987 code, or a 1993 action
    /// code); `None` accepts any code.
    #[serde(default)]
    pub expected: Option<String>,
}

fn one() -> u32 {
    1
}

impl TxnTemplate {
    /// A `0200` purchase of `amount` minor units on a card of `bin`,
    /// expecting approval (`00`).
    pub fn purchase(name: &str, bin: &str, amount: u64) -> TxnTemplate {
        TxnTemplate {
            name: name.to_string(),
            weight: 1,
            mti: "0200".into(),
            processing_code: "000000".into(),
            bin: bin.to_string(),
            bad_luhn: false,
            amount,
            expected: Some("00".into()),
        }
    }

    /// The same template with another weight.
    pub fn weight(mut self, weight: u32) -> TxnTemplate {
        self.weight = weight;
        self
    }

    /// The same template expecting `code` (or any code for `None`).
    pub fn expecting(mut self, code: Option<&str>) -> TxnTemplate {
        self.expected = code.map(str::to_string);
        self
    }

    /// The same template as a `0100` authorisation.
    pub fn authorisation(mut self) -> TxnTemplate {
        self.mti = "0100".into();
        self
    }

    /// The same template as a refund (processing code `200000`).
    pub fn refund(mut self) -> TxnTemplate {
        self.processing_code = "200000".into();
        self
    }

    /// The same template with a wrong Luhn check digit.
    pub fn bad_luhn(mut self) -> TxnTemplate {
        self.bad_luhn = true;
        self
    }

    fn validate(&self) -> Result<(), TemplateError> {
        if self.name.trim().is_empty() {
            return Err(TemplateError::NoName);
        }
        if self.weight == 0 {
            return Err(TemplateError::NoWeight);
        }
        let request = Mti::parse(&self.mti)
            .ok()
            .filter(|m| m.is_request() && m.response().is_some());
        if request.is_none() || !self.mti.starts_with('0') {
            return Err(TemplateError::Mti(self.mti.clone()));
        }
        if self.processing_code.len() != 6 || !all_digits(&self.processing_code) {
            return Err(TemplateError::ProcessingCode(self.processing_code.clone()));
        }
        if self.bin.is_empty() || self.bin.len() >= PAN_LENGTH || !all_digits(&self.bin) {
            return Err(TemplateError::Bin {
                bin: self.bin.clone(),
                max: PAN_LENGTH - 1,
            });
        }
        if self.amount > 999_999_999_999 {
            return Err(TemplateError::Amount(self.amount));
        }
        if let Some(code) = &self.expected
            && !super::rules::is_response_code(code)
        {
            return Err(TemplateError::Expected(code.clone()));
        }
        Ok(())
    }

    /// A PAN on this template's BIN: random digits from `rng`, then the
    /// check digit (wrong when [`bad_luhn`](Self::bad_luhn) is set).
    pub fn make_pan(&self, rng: &mut fastrand::Rng) -> String {
        let mut body = self.bin.clone();
        while body.len() < PAN_LENGTH - 1 {
            body.push(rng.digit(10));
        }
        let mut pan = luhn_complete(&body).unwrap_or(body);
        if self.bad_luhn
            && let Some(check) = pan.pop()
        {
            let wrong = check.to_digit(10).map_or(0, |d| (d + 1) % 10);
            pan.push(char::from_digit(wrong, 10).unwrap_or('0'));
        }
        pan
    }
}

fn all_digits(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_digit())
}

/// A weighted list of templates. Transaction number `n` of a run uses the
/// template at `n` modulo the total weight, so the mix is exact and the same
/// on every run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scenario {
    templates: Vec<TxnTemplate>,
    total_weight: u64,
}

impl Scenario {
    /// A scenario of `templates`, each validated.
    pub fn new(templates: Vec<TxnTemplate>) -> Result<Scenario, ScenarioError> {
        if templates.is_empty() {
            return Err(ScenarioError::Empty);
        }
        for t in &templates {
            t.validate().map_err(|reason| ScenarioError::Template {
                name: t.name.clone(),
                reason,
            })?;
        }
        let total_weight = templates.iter().map(|t| u64::from(t.weight)).sum();
        Ok(Scenario {
            templates,
            total_weight,
        })
    }

    /// `0200` purchases of 10.00 on each BIN in turn, all expected approved:
    /// templates named `approval-<bin>`.
    pub fn approvals<S: AsRef<str>>(bins: &[S]) -> Result<Scenario, ScenarioError> {
        Scenario::new(
            bins.iter()
                .map(|bin| {
                    let bin = bin.as_ref();
                    TxnTemplate::purchase(&format!("approval-{bin}"), bin, 1000)
                })
                .collect(),
        )
    }

    /// The templates.
    pub fn templates(&self) -> &[TxnTemplate] {
        &self.templates
    }

    /// The index of the template transaction number `seq` uses.
    pub fn pick(&self, seq: u64) -> usize {
        let mut slot = seq % self.total_weight.max(1);
        for (i, t) in self.templates.iter().enumerate() {
            let weight = u64::from(t.weight);
            if slot < weight {
                return i;
            }
            slot -= weight;
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iso8583::card::luhn_valid;

    #[test]
    fn pans_are_luhn_valid_on_the_bin_unless_asked_otherwise() {
        let mut rng = fastrand::Rng::with_seed(7);
        let good = TxnTemplate::purchase("a", "476173", 100);
        let bad = good.clone().bad_luhn();
        for _ in 0..100 {
            let pan = good.make_pan(&mut rng);
            assert_eq!(pan.len(), PAN_LENGTH);
            assert!(pan.starts_with("476173") && luhn_valid(&pan));
            let pan = bad.make_pan(&mut rng);
            assert_eq!(pan.len(), PAN_LENGTH);
            assert!(!luhn_valid(&pan));
        }
    }

    #[test]
    fn weights_give_an_exact_mix() {
        let s = Scenario::new(vec![
            TxnTemplate::purchase("a", "4", 1).weight(3),
            TxnTemplate::purchase("b", "5", 1),
        ])
        .unwrap();
        let picks: Vec<usize> = (0..8).map(|n| s.pick(n)).collect();
        assert_eq!(picks, [0, 0, 0, 1, 0, 0, 0, 1]);
    }

    #[test]
    fn invalid_templates_are_named() {
        let e = |t: TxnTemplate| Scenario::new(vec![t]).unwrap_err().to_string();
        let base = TxnTemplate::purchase("p", "476173", 100);
        assert!(
            e(TxnTemplate {
                bin: "47x".into(),
                ..base.clone()
            })
            .contains("template `p`: bin")
        );
        assert!(
            e(TxnTemplate {
                mti: "0210".into(),
                ..base.clone()
            })
            .contains("mti")
        );
        assert!(
            e(TxnTemplate {
                mti: "1200".into(),
                ..base.clone()
            })
            .contains("mti")
        );
        assert!(e(base.clone().weight(0)).contains("weight"));
        assert!(e(base.clone().expecting(Some("5"))).contains("expected"));
        assert!(
            e(TxnTemplate {
                amount: 10u64.pow(12),
                ..base.clone()
            })
            .contains("amount")
        );
        assert!(
            e(TxnTemplate {
                processing_code: "00000".into(),
                ..base
            })
            .contains("processing_code")
        );
        assert_eq!(Scenario::new(vec![]), Err(ScenarioError::Empty));
        assert!(Scenario::approvals(&["476173", "543210"]).is_ok());
    }
}
