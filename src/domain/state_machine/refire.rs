//! An alert id that fires again after it resolved: what `REFIRE_POLICY`
//! makes of it.

use super::*;

impl Bridge {
    /// A Fired with another `firedDateTime` than the one recorded, for an
    /// alert that resolved: it fired again (not a late delivery).
    pub(super) fn fires_again(&self, alert: &Alert, r: &CorrelationRecord) -> bool {
        use RecordState::*;
        self.settings.refire != RefirePolicy::Ignore
            && matches!(r.state, Resolved | IncidentGone | ResolvedWithoutIncident)
            && alert.fired_at.is_some()
            && alert.fired_at != r.fired_at
    }

    /// A Resolved of a firing older than the one on record (Azure's late
    /// or repeated delivery of it, queued after the refire): it says
    /// nothing about the alert as it is now.
    pub(super) fn resolves_an_earlier_firing(alert: &Alert, r: &CorrelationRecord) -> bool {
        let at = |t: &Option<String>| {
            t.as_deref().and_then(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            })
        };
        matches!(at(&alert.fired_at).zip(at(&r.fired_at)), Some((a, b)) if a < b)
    }

    pub(super) async fn refire(
        &self,
        alert: &Alert,
        r: CorrelationRecord,
        now: i64,
        tally: &Tally,
    ) -> Result<Processed, ProcessError> {
        let note = mapping::refire_note(alert);
        // A grouped alert's group is not reopened or noted for one child:
        // its new firing joins a group again (a new one if its group ended).
        let existing = r
            .incident
            .clone()
            .filter(|i| r.state == RecordState::Resolved && !i.is_group_child());
        let (state, outcome) = match (self.settings.refire, existing) {
            (RefirePolicy::Reopen, Some(incident)) => {
                self.settings
                    .retry
                    .run(tally, |_| self.itsm.reopen(&incident, &note))
                    .await?;
                (RecordState::Open, Outcome::Reopened)
            }
            (RefirePolicy::Note, Some(incident)) => {
                self.settings
                    .retry
                    .run(tally, |_| self.itsm.note(&incident, &note))
                    .await?;
                (RecordState::Resolved, Outcome::Noted)
            }
            // `new`, or nothing to reopen or note: a new incident, under a
            // key of its own so that a lookup never finds the old one.
            _ => {
                let mut claim = self.next(Some(&r), alert, RecordState::Claimed, None, now);
                claim.incident = None;
                // A new firing: Azure was told nothing about it yet.
                claim.azure = Default::default();
                claim.correlation_key = correlation_key(&format!(
                    "{}|{}",
                    alert.alert_id,
                    alert.fired_at.as_deref().unwrap_or_default()
                ));
                self.lease(&mut claim, now);
                claim.fired_at = alert.fired_at.clone();
                claim.resolved_at = None;
                self.store.put(&claim, Some(r.version), now).await?;
                return self.open(alert, claim, None, tally).await;
            }
        };
        let now = (self.clock)();
        let mut rec = self.next(Some(&r), alert, state, None, now);
        rec.fired_at = alert.fired_at.clone();
        if state == RecordState::Open {
            rec.resolved_at = None;
            // Reopened for a new firing: what Azure was told of the old
            // one (closed) must not stop a later close of this one.
            rec.azure = Default::default();
        }
        let incident = rec.incident.clone();
        self.commit(&r, rec).await?;
        Ok(Processed::new(outcome, incident))
    }
}
