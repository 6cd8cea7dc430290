//! The bank settlement file readers of reconciliation (`clearing/recon.rs`):
//! the first byte picks the reader (even: CSV, `read_bank_csv`; odd: IPM,
//! 1014-blocked or VBS, `read_bank_ipm`), the rest is the file. Never panic;
//! the items of a CSV file that reads are written back (`write_bank_csv`)
//! and read again to the same items; whatever reads is reconciled against
//! an empty switch side and its break report written.
#![no_main]

use cardswitch::clearing::recon::{self, BankItem};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, file)) = data.split_first() else {
        return;
    };
    let read: Result<Vec<BankItem>, _> = if mode % 2 == 0 {
        recon::read_bank_csv(file)
    } else {
        recon::read_bank_ipm(file)
    };
    let Ok(items) = read else {
        return;
    };
    if mode % 2 == 0 {
        let mut again = Vec::new();
        recon::write_bank_csv(&items, &mut again).expect("writes to memory");
        let reread = recon::read_bank_csv(again.as_slice()).expect("what was written reads");
        assert_eq!(reread, items, "a CSV bank file round-trips");
    }
    let result = recon::reconcile(Vec::new(), items);
    let mut report = Vec::new();
    result.write_breaks(&mut report).expect("writes to memory");
    let _ = result.summary();
});
