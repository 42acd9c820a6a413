//! Writing what an ITSM call did. The call has happened by then, so the
//! write must not be lost to a write that changed only the queue's or the
//! sync role's bookkeeping meanwhile (a notification queued behind, a
//! delivery counted, an Azure lease): those are kept, and the state goes on
//! top. A write that changed the alert's state itself still wins, and the
//! caller decides again.

use super::*;

/// Rounds of merging before contention is answered "retry later".
const MERGES: usize = 4;

impl Bridge {
    /// Writes `rec`, the successor of `prev`, merging in the bookkeeping of
    /// whatever was written since, as long as nobody changed the alert's
    /// state, incident or claim.
    pub(super) async fn commit(
        &self,
        prev: &CorrelationRecord,
        mut rec: CorrelationRecord,
    ) -> Result<(), ProcessError> {
        let mut expected = prev.version;
        for _ in 0..MERGES {
            let now = (self.clock)();
            match self.store.put(&rec, Some(expected), now).await {
                Err(StoreError::Conflict(found)) => {
                    let found = match found {
                        Some(found) => *found,
                        None => match self.store.get(&rec.alert_id, now).await? {
                            Some(found) => found,
                            None => return Err(StoreError::Conflict(None).into()),
                        },
                    };
                    if !same_alert_state(prev, &found) {
                        return Err(StoreError::Conflict(Some(Box::new(found))).into());
                    }
                    rec.queued_seq = found.queued_seq;
                    rec.delivered_seq = found.delivered_seq;
                    rec.queued_at = found.queued_at;
                    rec.queued_digest = found.queued_digest.clone();
                    rec.queue = found.queue.clone();
                    // As `next`: what Azure was told of this incident, or
                    // of the claim's firing before its incident was made (a
                    // person resolved its group's parent meanwhile).
                    if rec.incident == found.incident
                        || (found.state == RecordState::Claimed && found.incident.is_none())
                    {
                        rec.azure = found.azure.clone();
                    }
                    rec.version = found.version + 1;
                    expected = found.version;
                }
                other => return other.map_err(Into::into),
            }
        }
        Err(ProcessError::InProgress)
    }
}

/// Whether `b` is `a` but for bookkeeping: the same state, incident, firing
/// and claim.
fn same_alert_state(a: &CorrelationRecord, b: &CorrelationRecord) -> bool {
    a.state == b.state
        && a.incident == b.incident
        && a.correlation_key == b.correlation_key
        && a.fired_at == b.fired_at
        && a.resolved_at == b.resolved_at
        && a.lease_until == b.lease_until
        && a.look_until == b.look_until
}
