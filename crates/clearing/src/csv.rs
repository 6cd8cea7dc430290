//! The flat clearing file, for banks that take CSV: a header line, one line
//! per presentment, a trailer line.
//!
//! ```text
//! txn,ard,rrn,pan,processing_code,type,amount,currency,local_time,auth_code,merchant_id,mcc,terminal,stan
//! 17,24123456330000000001704,633011000001,4761739001010010,000000,debit,1250,978,261126101500,A1B2C3,MERCHANT0000001,5411,TERM0001,000001
//! TRAILER,1,1250,0
//! ```
//!
//! `amount` is in minor units of `currency` (ISO 4217 numeric). The trailer
//! carries the line count, the sum of debit amounts and the sum of credit
//! amounts in minor units — control totals over every currency, as IPM's
//! amount checksum; the manifest gives the totals per currency. Lines end
//! with `\n`. Fields never hold a comma: the journal's text fields come
//! from ISO 8583 numeric and fixed-width fields, and text that could
//! (merchant names) is not in this file.

use std::io::Write;

use super::item::Presentment;

/// The header line's columns.
pub const HEADER: &str = "txn,ard,rrn,pan,processing_code,type,amount,currency,local_time,auth_code,merchant_id,mcc,terminal,stan";

/// Writes a flat clearing file, streaming.
#[derive(Debug)]
pub struct CsvWriter<W: Write> {
    out: W,
    lines: u64,
    debits: u128,
    credits: u128,
    line: String,
}

/// Appends a field value fit for a CSV line, trailing spaces dropped:
/// commas, quotes and line breaks (which the journal's fields never hold)
/// become spaces.
fn push_clean(line: &mut String, text: &str) {
    let text = text.trim_end();
    if !text.contains([',', '"', '\n', '\r']) {
        line.push_str(text);
        return;
    }
    line.extend(text.chars().map(|c| {
        if matches!(c, ',' | '"' | '\n' | '\r') {
            ' '
        } else {
            c
        }
    }));
}

impl<W: Write> CsvWriter<W> {
    /// Starts the file (writes the header line).
    pub fn new(mut out: W) -> std::io::Result<CsvWriter<W>> {
        out.write_all(HEADER.as_bytes())?;
        out.write_all(b"\n")?;
        Ok(CsvWriter {
            out,
            lines: 0,
            debits: 0,
            credits: 0,
            line: String::with_capacity(256),
        })
    }

    /// Writes one presentment.
    pub fn push(&mut self, p: &Presentment) -> std::io::Result<()> {
        use std::fmt::Write as _;
        self.line.clear();
        let kind = if p.kind.is_credit() {
            self.credits += u128::from(p.amount);
            "credit"
        } else {
            self.debits += u128::from(p.amount);
            "debit"
        };
        let _ = write!(self.line, "{}", p.txn);
        for text in [&p.ard, &p.rrn, &*p.pan, &p.processing_code] {
            self.line.push(',');
            push_clean(&mut self.line, text);
        }
        self.line.push(',');
        self.line.push_str(kind);
        let _ = write!(self.line, ",{}", p.amount);
        for text in [
            &p.currency,
            &p.local_time,
            &p.auth_id,
            &p.merchant_id,
            &p.mcc,
            &p.terminal,
            &p.stan,
        ] {
            self.line.push(',');
            push_clean(&mut self.line, text);
        }
        self.line.push('\n');
        self.lines += 1;
        self.out.write_all(self.line.as_bytes())
    }

    /// Writes the trailer and hands the output back.
    pub fn finish(mut self) -> std::io::Result<W> {
        writeln!(
            self.out,
            "TRAILER,{},{},{}",
            self.lines, self.debits, self.credits
        )?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::ClearedKind;
    use zeroize::Zeroizing;

    pub(crate) fn sample(txn: u64, kind: ClearedKind, amount: u64) -> Presentment {
        Presentment {
            txn,
            kind,
            pan: Zeroizing::new("4761739001010010".into()),
            masked_pan: "476173******0010".into(),
            processing_code: if kind.is_credit() { "200000" } else { "000000" }.into(),
            amount,
            approved_amount: amount,
            currency: "978".into(),
            local_time: "261126101500".into(),
            entry_mode: "051".into(),
            condition: "00".into(),
            merchant_id: "MERCHANT0000001".into(),
            mcc: "5411".into(),
            name_location: "ACME, LONDON".into(),
            terminal: "TERM0001".into(),
            stan: "000001".into(),
            rrn: "633011000001".into(),
            auth_id: "A1B2C3".into(),
            destination: "bank_a".into(),
            ard: "24123456330000000001704".into(),
            date: "20261126".into(),
        }
    }

    #[test]
    fn header_lines_and_trailer() {
        let mut w = CsvWriter::new(Vec::new()).unwrap();
        w.push(&sample(17, ClearedKind::Purchase, 1250)).unwrap();
        w.push(&sample(18, ClearedKind::Refund, 250)).unwrap();
        let text = String::from_utf8(w.finish().unwrap()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], HEADER);
        assert_eq!(
            lines[1],
            "17,24123456330000000001704,633011000001,4761739001010010,000000,debit,1250,978,261126101500,A1B2C3,MERCHANT0000001,5411,TERM0001,000001"
        );
        assert!(lines[2].starts_with("18,") && lines[2].contains(",credit,250,"));
        assert_eq!(lines[3], "TRAILER,2,1250,250");
        assert_eq!(lines.len(), 4);
        assert_eq!(
            lines[1].split(',').count(),
            HEADER.split(',').count(),
            "one value per column"
        );
    }
}
