//! The settlement report rendered: the CSV file and the operator's summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};

use super::{CurrencyInfo, Gross, SettlementReport, Tally, Totals};

/// The CSV columns, in order.
pub(super) const CSV_HEADER: &[&str] = &[
    "record",
    "merchant",
    "destination",
    "currency",
    "currency_alpha",
    "currency_exponent",
    "currency_known",
    "count",
    "purchase_count",
    "purchase_minor",
    "purchase",
    "completion_count",
    "completion_minor",
    "completion",
    "refund_count",
    "refund_minor",
    "refund",
    "reversal_count",
    "reversal_minor",
    "reversal",
    "gross_debits_minor",
    "gross_debits",
    "credits_minor",
    "credits",
    "fees_minor",
    "fees",
    "net_payable_minor",
    "net_payable",
    "net_position_minor",
    "net_position",
];

/// One CSV field: as is, or in double quotes with quotes doubled when it
/// holds a comma, a quote, a line break or surrounding spaces (RFC 4180).
pub(super) fn csv_field(value: &str) -> String {
    let needs_quotes =
        value.contains([',', '"', '\n', '\r']) || value.starts_with(' ') || value.ends_with(' ');
    if needs_quotes {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// Count, minor units and formatted amount of a tally.
fn tally_fields(currency: &CurrencyInfo, tally: &Tally) -> [String; 3] {
    [
        tally.count.to_string(),
        tally.amount.to_string(),
        currency.format(tally.amount),
    ]
}

/// Minor units and formatted amount.
fn amount_fields(currency: &CurrencyInfo, amount: i128) -> [String; 2] {
    [amount.to_string(), currency.format(amount)]
}

fn currency_fields(currency: &CurrencyInfo) -> [String; 4] {
    [
        currency.code.clone(),
        currency.alpha().unwrap_or("").to_owned(),
        currency.exponent().to_string(),
        if currency.known() { "yes" } else { "no" }.to_owned(),
    ]
}

/// The CSV row of merchant or currency totals (without the first three
/// columns).
fn totals_fields(currency: &CurrencyInfo, totals: &Totals) -> Vec<String> {
    let mut row = Vec::with_capacity(CSV_HEADER.len());
    row.extend(currency_fields(currency));
    row.push(totals.count().to_string());
    for tally in [
        &totals.purchases,
        &totals.completions,
        &totals.refunds,
        &totals.reversals,
    ] {
        row.extend(tally_fields(currency, tally));
    }
    row.extend(amount_fields(currency, totals.gross_debits()));
    row.extend(amount_fields(currency, totals.credits()));
    row.extend(amount_fields(currency, totals.fees));
    row.extend(amount_fields(currency, totals.net_payable()));
    row.extend(amount_fields(currency, totals.net_position()));
    row
}

/// Replaces control characters so that a text field cannot break the
/// terminal table.
pub(super) fn printable(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// One line of an aligned table: the first `left` cells left-aligned, the
/// others right-aligned, two spaces apart, no trailing spaces.
fn table_line<'a>(
    out: &mut String,
    widths: &[usize],
    left: usize,
    cells: impl Iterator<Item = &'a str>,
) {
    let mut text = String::new();
    for (i, (cell, width)) in cells.zip(widths).enumerate() {
        if i > 0 {
            text.push_str("  ");
        }
        if i < left {
            let _ = write!(text, "{cell:<width$}");
        } else {
            let _ = write!(text, "{cell:>width$}");
        }
    }
    out.push_str(text.trim_end());
    out.push('\n');
}

/// An aligned text table with a header and a rule: the first `left`
/// columns left-aligned, the others (numbers) right-aligned.
fn table(out: &mut String, headers: &[&str], rows: &[Vec<String>], left: usize) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    table_line(out, &widths, left, headers.iter().copied());
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    table_line(out, &widths, left, rule.iter().map(String::as_str));
    for row in rows {
        table_line(out, &widths, left, row.iter().map(String::as_str));
    }
}

impl SettlementReport {
    /// Per currency, the gross debits and credits summed over the merchant
    /// lines: for checking that the sum over merchants equals the sum over
    /// the clearing files (see [`SettlementReport::destination_gross_by_currency`])
    /// and the journal.
    pub fn gross_by_currency(&self) -> BTreeMap<String, Gross> {
        let mut sums: BTreeMap<String, Gross> = BTreeMap::new();
        for line in &self.merchants {
            let sum = sums.entry(line.currency.code.clone()).or_default();
            // Partial sums of non-negative values never exceed the currency
            // totals, which were checked when added.
            sum.debits = sum.debits.saturating_add(line.totals.gross_debits());
            sum.credits = sum.credits.saturating_add(line.totals.credits());
        }
        sums
    }

    /// Per currency, the gross debits and credits summed over the
    /// destination lines (what the clearing files carry).
    pub fn destination_gross_by_currency(&self) -> BTreeMap<String, Gross> {
        let mut sums: BTreeMap<String, Gross> = BTreeMap::new();
        for line in &self.destinations {
            let sum = sums.entry(line.currency.code.clone()).or_default();
            sum.debits = sum.debits.saturating_add(line.totals.gross_debits);
            sum.credits = sum.credits.saturating_add(line.totals.credits);
        }
        sums
    }

    /// Whether some line has a currency code that is not ISO 4217 (its
    /// amounts are shown with exponent 2).
    pub fn has_unknown_currency(&self) -> bool {
        self.currencies.iter().any(|line| !line.currency.known())
            || self.destinations.iter().any(|line| !line.currency.known())
    }

    /// Writes the report as CSV: a header line, then one line per record,
    /// `\n`-terminated. The first column, `record`, is `currency`,
    /// `destination` or `merchant` (in that order); columns that do not apply
    /// to a record are empty. Every amount appears twice: as an integer in
    /// minor units (`…_minor`) and as a decimal with the currency's exponent.
    /// `currency` is the numeric code as the transactions carried it,
    /// `currency_alpha` the ISO 4217 alphabetic code (empty and
    /// `currency_known` = `no` for an unknown code, whose amounts use
    /// exponent 2). Text fields are quoted per RFC 4180 when they hold a
    /// comma, a quote, a line break or surrounding spaces; they are not
    /// otherwise altered (a spreadsheet opening the file should import text
    /// columns as text).
    pub fn write_csv(&self, mut out: impl Write) -> io::Result<()> {
        let mut write_row = |row: &[String]| -> io::Result<()> {
            let line: Vec<String> = row.iter().map(|f| csv_field(f)).collect();
            out.write_all(line.join(",").as_bytes())?;
            out.write_all(b"\n")
        };
        let header: Vec<String> = CSV_HEADER.iter().map(|h| (*h).to_owned()).collect();
        write_row(&header)?;
        for line in &self.currencies {
            let mut row = vec!["currency".to_owned(), String::new(), String::new()];
            row.extend(totals_fields(&line.currency, &line.totals));
            write_row(&row)?;
        }
        for line in &self.destinations {
            let c = &line.currency;
            let t = &line.totals;
            let mut row = vec![
                "destination".to_owned(),
                String::new(),
                line.destination.clone(),
            ];
            row.extend(currency_fields(c));
            row.push(t.count.to_string());
            // purchase, completion, refund, reversal: 4 × 3 empty columns.
            row.extend(std::iter::repeat_n(String::new(), 12));
            row.extend(amount_fields(c, t.gross_debits));
            row.extend(amount_fields(c, t.credits));
            // fees, net payable: not a destination's.
            row.extend(std::iter::repeat_n(String::new(), 4));
            row.extend(amount_fields(c, t.net_position()));
            write_row(&row)?;
        }
        for line in &self.merchants {
            let mut row = vec!["merchant".to_owned(), line.merchant.clone(), String::new()];
            row.extend(totals_fields(&line.currency, &line.totals));
            write_row(&row)?;
        }
        Ok(())
    }

    /// A readable table for the terminal: per currency, then per
    /// destination, then per merchant. Amounts are decimals with the
    /// currency's exponent; an unknown currency code is shown as the code
    /// followed by `?` (amounts with 2 decimals) and explained below the
    /// tables.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        out.push_str("Per currency\n");
        let rows: Vec<Vec<String>> = self
            .currencies
            .iter()
            .map(|line| {
                let c = &line.currency;
                let t = &line.totals;
                vec![
                    c.label(),
                    printable(&c.code),
                    t.count().to_string(),
                    c.format(t.gross_debits()),
                    c.format(t.credits()),
                    c.format(t.fees),
                    c.format(t.net_payable()),
                    t.reversals.count.to_string(),
                    c.format(t.reversals.amount),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "Currency",
                "Code",
                "Count",
                "Gross debits",
                "Credits",
                "Fees",
                "Net payable",
                "Reversals",
                "Reversed",
            ],
            &rows,
            2,
        );

        out.push_str("\nPer destination\n");
        let rows: Vec<Vec<String>> = self
            .destinations
            .iter()
            .map(|line| {
                let c = &line.currency;
                let t = &line.totals;
                vec![
                    printable(&line.destination),
                    printable(&c.label()),
                    t.count.to_string(),
                    c.format(t.gross_debits),
                    c.format(t.credits),
                    c.format(t.net_position()),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "Destination",
                "Currency",
                "Count",
                "Gross debits",
                "Credits",
                "Net position",
            ],
            &rows,
            2,
        );

        self.merchant_table(&mut out);
        if self.has_unknown_currency() {
            out.push_str(
                "\n? unknown ISO 4217 numeric currency code: amounts shown with 2 decimals\n",
            );
        }
        out
    }

    /// The summary's per-merchant table.
    fn merchant_table(&self, out: &mut String) {
        out.push_str("\nPer merchant\n");
        let rows: Vec<Vec<String>> = self
            .merchants
            .iter()
            .map(|line| {
                let c = &line.currency;
                let t = &line.totals;
                vec![
                    printable(&line.merchant),
                    printable(&c.label()),
                    t.purchases.count.to_string(),
                    c.format(t.purchases.amount),
                    t.completions.count.to_string(),
                    c.format(t.completions.amount),
                    t.refunds.count.to_string(),
                    c.format(t.refunds.amount),
                    t.reversals.count.to_string(),
                    c.format(t.reversals.amount),
                    c.format(t.fees),
                    c.format(t.net_payable()),
                ]
            })
            .collect();
        table(
            out,
            &[
                "Merchant",
                "Currency",
                "Purch.",
                "Purchases",
                "Compl.",
                "Completions",
                "Refs.",
                "Refunds",
                "Revs.",
                "Reversed",
                "Fees",
                "Net payable",
            ],
            &rows,
            2,
        );
    }
}
