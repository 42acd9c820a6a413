//! Claims: leasing an alert to an attempt, and releasing it after an ITSM
//! failure with the time before which an empty search proves nothing.

use super::*;

impl Bridge {
    /// Leases `rec` to this attempt. Should the attempt die, whatever it
    /// created shows in a search by the lease's end plus the ITSM's lag;
    /// the lag counts as a lease at least, so that a container whose clock
    /// runs up to a lease ahead, taking over while this attempt's create is
    /// still on its way, waits for it rather than creating a second.
    pub(super) fn lease(&self, rec: &mut CorrelationRecord, now: i64) {
        rec.lease_until = now + self.settings.lease_secs;
        rec.look_until = rec.lease_until + self.settle_secs().max(self.settings.lease_secs);
    }

    /// After an ITSM failure, ends the claim's lease at once so that the
    /// retry Azure sends takes over without waiting (and looks before
    /// creating, not trusting an empty search before `look_until`: the
    /// attempt's own unanswered create, or the one before it).
    pub(super) async fn release(
        &self,
        claim: CorrelationRecord,
        cause: ItsmError,
        look_until: i64,
    ) -> ProcessError {
        let now = (self.clock)();
        let mut rec = claim.clone();
        rec.lease_until = 0;
        rec.look_until = look_until;
        rec.version = claim.version + 1;
        rec.updated_at = now;
        if let Err(e) = self.commit(&claim, rec).await {
            // The lease then simply runs out; the retry waits for it.
            tracing::warn!(error = %e, "could not release the claim after an ITSM failure");
        }
        cause.into()
    }

    /// How long an unanswered create may take to show in a search.
    pub(super) fn settle_secs(&self) -> i64 {
        self.settings
            .create_settle_secs
            .unwrap_or_else(|| self.itsm.create_settle_secs())
    }
}

/// An empty search that cannot be trusted yet.
pub(super) fn unsure_search() -> ItsmError {
    ItsmError::Unavailable(
        "the incident may have been created moments ago and the ITSM's search can lag behind \
         its writes; looking again later"
            .into(),
    )
}
