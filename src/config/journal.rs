//! `[journal]`, validated into a [`JournalConfig`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Problems;
use super::raw::RawJournal;
use crate::journal::{Cutover, DataKey, JournalConfig};
use crate::security::KeyAlgorithm;
use crate::security::keys::{KeyStore, KeyType};
use crate::security::profile::NO_KEY_STORE;

/// The journal's settings; what is wrong goes to `problems`.
pub(super) fn journal(
    j: &RawJournal,
    base: &Path,
    store: Option<&KeyStore>,
    problems: &mut Problems,
) -> JournalConfig {
    let data_key = data_key(j, base, store, problems);
    let cutover_secs = parse_cutover(&j.cutover).unwrap_or_else(|| {
        problems.add("journal.cutover", format!("`{}` is not HH:MM", j.cutover));
        0
    });
    let cutover = Cutover::new(cutover_secs, &j.time_zone).unwrap_or_else(|reason| {
        problems.add("journal.time_zone", reason);
        Cutover::default()
    });
    // Business dates an operator started early (`ctl cutover`).
    if let Err(e) = cutover.load_early(&base.join(&j.dir)) {
        problems.add("journal.dir", e);
    }
    if !(1..=1024).contains(&j.segment_mb) {
        problems.add("journal.segment_mb", "must be between 1 and 1024");
    }
    if j.saf_retry_min_ms == 0 || j.saf_retry_max_ms < j.saf_retry_min_ms {
        problems.add(
            "journal.saf_retry_min_ms",
            "must be more than 0 and at most saf_retry_max_ms",
        );
    }
    JournalConfig {
        dir: base.join(&j.dir),
        durability: j.durability,
        segment_bytes: j.segment_mb << 20,
        cutover,
        data_key: data_key.unwrap_or(DataKey::File(PathBuf::new())),
        saf_retry_min: Duration::from_millis(j.saf_retry_min_ms),
        saf_retry_max: Duration::from_millis(j.saf_retry_max_ms),
    }
}

/// The data key: a file, or an aes256 key of the key store.
fn data_key(
    j: &RawJournal,
    base: &Path,
    store: Option<&KeyStore>,
    problems: &mut Problems,
) -> Option<DataKey> {
    match (&j.data_key_file, &j.data_key) {
        (Some(file), None) => {
            // Read now, as the journal will at start: a key that is
            // missing or readable by others is refused here too.
            let path = base.join(file);
            if let Err(e) = crate::journal::read_data_key(&path) {
                problems.add("journal.data_key_file", e);
            }
            Some(DataKey::File(path))
        }
        (None, Some(id)) => match store.map(|s| s.get(id, KeyType::Data)) {
            Some(Ok(key)) if key.algorithm() == KeyAlgorithm::Aes256 => Some(DataKey::Stored(key)),
            Some(Ok(_)) => {
                problems.add("journal.data_key", format!("key `{id}` must be aes256"));
                None
            }
            Some(Err(e)) => {
                problems.add("journal.data_key", e);
                None
            }
            None => {
                problems.add("journal.data_key", NO_KEY_STORE);
                None
            }
        },
        _ => {
            problems.add(
                "journal.data_key_file",
                "give exactly one of `data_key_file` and `data_key` (a key store id)",
            );
            None
        }
    }
}

/// `HH:MM` as seconds after midnight.
fn parse_cutover(text: &str) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && text.len() == 5).then_some(h * 3600 + m * 60)
}
