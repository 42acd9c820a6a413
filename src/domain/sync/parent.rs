//! A group's parent incident that a person resolved: the group ends (its
//! children's later Resolved notifications make no ITSM call) and each
//! child alert still open is closed in Azure, once, by the same lease and
//! record as an alert's own incident. A round that runs out of time holds
//! the change; the next one goes on with the children not yet told.

use std::time::Instant;

use super::tell::{Decision, Halt, action, held};
use super::{ActionOutcome, AlertSync};
use crate::domain::ports::{AlertState, IncidentChange};

impl AlertSync {
    pub(super) async fn decide_parent(
        &self,
        change: &IncidentChange,
        target: AlertState,
        now: i64,
        halt: &mut Option<Halt>,
        started: Instant,
    ) -> Decision {
        // Taken into work: the children stay as they are.
        let (Some(groups), AlertState::Closed) = (&self.groups, target) else {
            return Decision::Settled(Vec::new());
        };
        let closed = match groups
            .closed_by_person(&change.correlation_key, self.settings.dry_run)
            .await
        {
            Ok(Some(closed)) => closed,
            Ok(None) => return Decision::Settled(Vec::new()),
            Err(e) => {
                let why = format!(
                    "reading the group of parent {}: {e}",
                    change.incident.number
                );
                let deferred = action(
                    change,
                    target,
                    "",
                    ActionOutcome::Deferred,
                    Some(why.clone()),
                );
                return held("", deferred, why);
            }
        };
        if !closed.open_children.is_empty() {
            tracing::info!(group = %closed.group, incident = %change.incident.number, children = closed.open_children.len(), "group parent resolved by a person; closing its open alerts");
        }
        let mut actions = Vec::new();
        let mut first_hold: Option<(String, String)> = None;
        for child in &closed.open_children {
            if started.elapsed() > self.settings.budget {
                first_hold.get_or_insert((
                    String::new(),
                    "the round's time budget ran out amid a group's alerts; the next round goes on"
                        .into(),
                ));
                break;
            }
            let record = match self.store.by_key(child, now).await {
                Ok(Some(r)) => r,
                // Expired: nothing left to tell.
                Ok(None) => continue,
                Err(e) => {
                    first_hold.get_or_insert((String::new(), e.to_string()));
                    continue;
                }
            };
            match self
                .act(record, change, target, now, halt, Some(&closed.group))
                .await
            {
                Decision::Settled(a) => actions.extend(a),
                Decision::Held {
                    actions: a,
                    alert_id,
                    why,
                } => {
                    actions.extend(a);
                    first_hold.get_or_insert((alert_id, why));
                }
            }
        }
        match first_hold {
            None => Decision::Settled(actions),
            Some((alert_id, why)) => held(&alert_id, actions, why),
        }
    }
}
