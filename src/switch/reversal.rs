//! The switch's own answers and the reversals it owes: each effect durable
//! in the journal before the terminal hears of it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::{error, info, warn};

use crate::journal::record::{Record, ReversalReason, Source};
use crate::txn::Refusal;

use super::Switch;
use super::answer::Answer;
use super::recent::{Live, Outcome};

impl Switch {
    /// The request may have reached the bank and no answer came: the
    /// terminal gets 91 and a reversal is queued.
    pub(super) async fn timed_out(&self, live: &Arc<Live>) {
        // The reversal first: a crash between the two records must not leave
        // a transaction that looks ended with no reversal owed.
        // Its failure is logged; the terminal gets 91 either way and
        // recovery queues the reversal at the next start.
        let _ = self
            .queue_reversal(live, ReversalReason::Timeout, None)
            .await;
        if let Err(e) = self.journal.append(&Record::TimedOut { txn: live.id }) {
            error!(error = %e, "journal unavailable: timeout not recorded");
        }
        live.finish(Outcome {
            code: Refusal::IssuerUnavailable.response_code().to_string(),
            auth_id: None,
            source: Source::Switch,
        });
    }

    /// The destination answered without a readable outcome: it may have
    /// approved, so, as after a timeout, a reversal is queued (first, for
    /// the same reason) and the terminal gets 96.
    pub(super) async fn unreadable(
        &self,
        live: &Arc<Live>,
        destination: Option<String>,
        waited: Duration,
    ) -> Answer {
        warn!(
            txn = live.id,
            destination = destination.as_deref().unwrap_or("-"),
            "answer without a readable response code: 96 and a reversal"
        );
        let _ = self
            .queue_reversal(live, ReversalReason::UnreadableAnswer, None)
            .await;
        let code = self
            .local_answer(live, Refusal::System.response_code())
            .await;
        Answer {
            destination,
            waited,
            ..Answer::with_code(code)
        }
    }

    /// Queues the one reversal of `original` (durable, then handed to the
    /// store-and-forward worker). Nothing happens if it already has one.
    /// Returns whether the reversal is owed durably (now or before); `false`
    /// when the journal could not take it (recovery queues it at restart).
    pub(super) async fn queue_reversal(
        &self,
        original: &Live,
        reason: ReversalReason,
        replacement: Option<u64>,
    ) -> bool {
        if !self.recent.claim_reversal(original) {
            return true;
        }
        let record = Record::ReversalQueued {
            txn: original.id,
            reason,
            replacement,
        };
        match self.journal.commit(&record).await {
            Ok(_) => {
                self.stats.reversals_queued.fetch_add(1, Ordering::Relaxed);
                if let Some(item) = original.saf_item(replacement) {
                    self.saf.push(item);
                }
                true
            }
            Err(e) => {
                error!(txn = original.id, error = %e, "journal unavailable: reversal not queued now; recovery queues it at restart");
                false
            }
        }
    }

    /// A terminal's reversal, accepted as decided (see
    /// [`super::decide::reversal`]): answered 00 once the reversal `owed` to
    /// the original's destination is durable in the store-and-forward
    /// queue. Nothing is sent for an original that was declined, never
    /// forwarded or is unknown (see docs/architecture.md → Reversals); those
    /// are answered 00 locally.
    pub(super) async fn accept_reversal(
        &self,
        live: &Live,
        original: Option<&Live>,
        destination: Option<String>,
        owed: bool,
    ) -> Answer {
        if original.is_none() {
            warn!(txn = live.id, terminal = %live.request.terminal, stan = %live.request.stan, "reversal of an unknown original: accepted, nothing to reverse");
        }
        let code = match original {
            Some(original)
                if owed
                    && !self
                        .queue_reversal(
                            original,
                            ReversalReason::Terminal,
                            live.request.replacement,
                        )
                        .await =>
            {
                self.local_answer(live, Refusal::System.response_code())
                    .await
            }
            _ => self.local_answer(live, "00").await,
        };
        Answer {
            destination,
            ..Answer::with_code(code)
        }
    }

    /// Records the switch's own answer; durable before the terminal hears
    /// it, like the destination's answers. Returns the code to send: `code`,
    /// or the system-error code when the journal could not take it.
    pub(super) async fn local_answer(&self, live: &Live, code: &str) -> String {
        let record = Record::Responded {
            txn: live.id,
            code: code.to_string(),
            auth_id: None,
            source: Source::Switch,
        };
        let code = match self.journal.commit(&record).await {
            Ok(_) => code.to_string(),
            Err(e) => {
                error!(error = %e, "journal unavailable: answer not recorded, system error sent");
                Refusal::System.response_code().to_string()
            }
        };
        live.finish(Outcome {
            code: code.clone(),
            auth_id: None,
            source: Source::Switch,
        });
        code
    }

    /// The original's answer, again, without a second forward.
    pub(super) async fn replay(&self, original: &Live) -> Answer {
        self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
        let outcome = original
            .outcome(self.settings.timeout + Duration::from_secs(1))
            .await;
        info!(
            txn = original.id,
            "retransmission: the original's answer replayed"
        );
        let answer = match outcome {
            Some(o) => Answer {
                auth_id: o.auth_id,
                destination: original.forwarded().map(|f| f.destination.clone()),
                ..Answer::with_code(o.code)
            },
            None => Answer::refused(Refusal::IssuerUnavailable),
        };
        answer.with_rrn(original)
    }
}
