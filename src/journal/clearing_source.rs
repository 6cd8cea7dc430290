//! The journal as clearing reads it: the reader API of the `clearing`
//! crate ([`clearing::journal`]) implemented over the log ([`wal`]), the
//! records ([`record`]) and the [`Vault`]. A [`JournalConfig`] is the
//! clearing [`Journal`]; a [`Vault`] opens its PANs.

use std::path::Path;

use clearing::journal::{
    Entry, Event, Journal, Kind, Merchant, PanVault, ReadError, Request, Segment,
};
use zeroize::Zeroizing;

use super::record::{self, Received, Record, RecordKind};
use super::wal::{self, WalError};
use super::{JournalConfig, Vault};
use crate::txn::TxnKind;

impl Journal for JournalConfig {
    fn dir(&self) -> &Path {
        &self.dir
    }

    fn segments(&self) -> Result<Vec<Segment>, ReadError> {
        Ok(wal::segments(&self.dir)
            .map_err(ReadError::new)?
            .into_iter()
            .map(|s| Segment {
                date: s.date,
                first_seq: s.first_seq,
            })
            .collect())
    }

    fn business_date(&self) -> String {
        wal::business_date(wal::now_micros(), &self.cutover)
    }

    fn scheduled_date(&self) -> String {
        self.cutover.scheduled(wal::now_micros())
    }

    fn follow(
        &self,
        from: u64,
        limit: u64,
        visit: &mut dyn FnMut(&str, &dyn Entry) -> Result<(), ReadError>,
    ) -> Result<(), ReadError> {
        follow(&self.dir, from, limit, visit)
    }
}

impl PanVault for Vault {
    fn open_sealed(&self, sealed: &[u8]) -> Option<Zeroizing<String>> {
        self.open_bytes(sealed).ok()
    }
}

/// Reads the log from `from` up to `limit` a few MiB at a time (memory does
/// not grow with segment size), checking every record's CRC; every
/// corruption it reports names the segment file and the offset, as
/// `journal verify` does.
fn follow(
    log: &Path,
    from: u64,
    limit: u64,
    visit: &mut dyn FnMut(&str, &dyn Entry) -> Result<(), ReadError>,
) -> Result<(), ReadError> {
    let mut follower = wal::Follower::new(log, from);
    let mut failure = None;
    loop {
        let polled = follower.poll_dated(limit, 1 << 16, |date, entry| {
            if failure.is_none()
                && let Err(e) = visit(date, &LogEntry { log, entry })
            {
                failure = Some(e);
            }
        });
        let visited = polled.map_err(ReadError::new)?;
        if let Some(e) = failure {
            return Err(e);
        }
        if visited == 0 {
            return Ok(());
        }
    }
}

/// One record of the log, read for clearing.
struct LogEntry<'a> {
    log: &'a Path,
    entry: &'a wal::Entry<'a>,
}

impl LogEntry<'_> {
    /// A record that passes its CRC but does not decode, named as `journal
    /// verify` names it.
    fn undecodable(&self) -> ReadError {
        ReadError::new(WalError::Corrupt {
            segment: segment_of(self.log, self.entry.seq),
            offset: self.entry.offset,
            reason: wal::Corruption::Undecodable(self.entry.seq),
        })
    }
}

/// The segment file that holds record `seq`, for error messages.
fn segment_of(log: &Path, seq: u64) -> String {
    wal::segments(log)
        .ok()
        .and_then(|all| {
            all.iter()
                .rfind(|s| s.first_seq <= seq)
                .map(|s| s.path.display().to_string())
        })
        .unwrap_or_else(|| log.display().to_string())
}

/// The kind of a `Received` record's request, read from its payload
/// without decoding the rest (postcard writes the record's variant index,
/// 0 for `Received`, then the request's first field, its kind).
fn received_kind(payload: &[u8]) -> Option<TxnKind> {
    match payload {
        [0, 0, ..] => Some(TxnKind::Authorization),
        [0, 1, ..] => Some(TxnKind::Purchase),
        [0, 2, ..] => Some(TxnKind::Refund),
        [0, 3, ..] => Some(TxnKind::Reversal),
        [0, 4, ..] => Some(TxnKind::Completion),
        _ => None,
    }
}

impl Entry for LogEntry<'_> {
    fn seq(&self) -> u64 {
        self.entry.seq
    }

    fn ts(&self) -> u64 {
        self.entry.ts
    }

    fn kind(&self) -> Kind {
        match self.entry.kind {
            RecordKind::Received => Kind::Request,
            RecordKind::Forwarded => Kind::Forwarded,
            RecordKind::Responded => Kind::Responded,
            RecordKind::TimedOut | RecordKind::NotProcessed => Kind::Ended,
            RecordKind::ReversalQueued => Kind::ReversalQueued,
            RecordKind::ReversalAcknowledged => Kind::Other,
            RecordKind::ReversalSent | RecordKind::RiskDeclined => Kind::Ignored,
        }
    }

    fn request_kind(&self) -> Option<TxnKind> {
        received_kind(self.entry.payload)
    }

    fn request(&self) -> Result<Request, ReadError> {
        match record::decode(self.entry.payload) {
            Some(Record::Received(received)) => Ok(request(*received)),
            _ => Err(self.undecodable()),
        }
    }

    fn event(&self) -> Result<Event, ReadError> {
        let record = self.entry.record().ok_or_else(|| self.undecodable())?;
        if record.txn(self.entry.seq) > self.entry.seq {
            return Err(self.undecodable());
        }
        Ok(match record {
            Record::Forwarded { txn, to } => Event::Forwarded {
                txn,
                destination: to.destination,
            },
            Record::Responded {
                txn, code, auth_id, ..
            } => Event::Responded { txn, code, auth_id },
            Record::TimedOut { txn } | Record::NotProcessed { txn } => Event::Ended { txn },
            Record::ReversalQueued {
                txn, replacement, ..
            } => Event::ReversalQueued { txn, replacement },
            other => Event::Other {
                txn: other.txn(self.entry.seq),
            },
        })
    }
}

/// A `Received` record as clearing reads it.
fn request(received: Received) -> Request {
    Request {
        kind: received.kind,
        processing_code: received.processing_code,
        amount: received.amount,
        currency: received.currency,
        masked_pan: received.pan.masked,
        sealed_pan: received.pan.sealed,
        terminal: received.terminal,
        merchant: received.merchant.map(|m| Merchant {
            id: m.id,
            mcc: m.mcc,
            name_location: m.name_location,
        }),
        stan: received.stan,
        local_time: received.local_time,
        local_date: received.local_date,
        entry_mode: received.entry_mode,
        condition: received.condition,
        rrn: received.rrn,
        original: received.original,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record::encode;

    #[test]
    fn the_kind_is_read_from_the_payload_as_postcard_writes_it() {
        for kind in TxnKind::ALL {
            let vault = Vault::new(&[7; 32]);
            let record = Record::Received(Box::new(Received {
                kind,
                mti: "0200".into(),
                processing_code: "000000".into(),
                amount: 1,
                currency: "978".into(),
                pan: vault.seal("4111111111111111"),
                terminal: "T".into(),
                merchant: None,
                stan: "1".into(),
                transmission: String::new(),
                local_time: None,
                local_date: None,
                entry_mode: None,
                condition: None,
                rrn: String::new(),
                original: None,
                replacement: None,
            }));
            assert_eq!(received_kind(&encode(&record)), Some(kind), "{kind}");
        }
        assert_eq!(received_kind(&[1, 0]), None);
        assert_eq!(received_kind(&[]), None);
    }
}
