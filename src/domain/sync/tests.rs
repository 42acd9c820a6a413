//! The sync round against the memory store, a scripted change feed and a
//! scripted Azure: no HTTP (the adapters' wire formats are in tests/api/sync.rs).

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::*;
use crate::domain::correlation::{AzureMark, AzureSync, RecordState};
use crate::domain::ports::{AlertState, AzureError, CorrelationStore, IncidentStatus};

mod skip;
mod world;
use world::*;

#[tokio::test]
async fn a_person_resolving_one_of_three_closes_exactly_that_alert_once() {
    let w = World::new(3, 100).await;
    let sync = w.sync(SyncSettings::default());
    w.person(1, IncidentStatus::Closed, "Resolved");
    let report = sync.round().await.unwrap();
    let calls = w.azure.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].0, alert_id(1));
    assert_eq!(calls[0].1, AlertState::Closed);
    assert!(calls[0].2.contains("INC0000001") && calls[0].2.contains("jane.doe"));
    assert_eq!(report.count(ActionOutcome::Sent), 1);
    assert_eq!(w.record(1).await.azure.sent, Some(AzureMark::Closed));
    // The next round re-reads the overlap and sends nothing again.
    w.later(60);
    sync.round().await.unwrap();
    assert_eq!(w.azure.calls().len(), 1);
}

#[tokio::test]
async fn the_bridges_own_resolve_and_strangers_send_nothing() {
    let w = World::new(2, 100).await;
    let mut resolved = w.record(0).await;
    resolved.state = RecordState::Resolved;
    resolved.version += 1;
    w.store.put(&resolved, Some(1), NOW).await.unwrap();
    w.person(0, IncidentStatus::Closed, "Resolved");
    // An incident with a key no record has (another tool's, or expired).
    w.feed.incidents.lock().unwrap()[1].correlation_key = "azmon-unknown".into();
    w.person(1, IncidentStatus::Closed, "Closed");
    let report = w.sync(SyncSettings::default()).round().await.unwrap();
    assert!(w.azure.calls().is_empty());
    assert_eq!(report.needing_nothing, 2);
}

#[tokio::test]
async fn changes_younger_than_the_settle_time_wait_for_the_next_round() {
    let w = World::new(1, 100).await;
    let sync = w.sync(SyncSettings::default());
    w.person(0, IncidentStatus::Closed, "Resolved");
    w.feed.incidents.lock().unwrap()[0].updated_at = NOW - 5;
    sync.round().await.unwrap();
    assert!(w.azure.calls().is_empty(), "too young");
    w.later(120);
    sync.round().await.unwrap();
    assert_eq!(w.azure.calls().len(), 1, "taken up by the next round");
}

#[tokio::test]
async fn a_round_killed_after_its_call_does_not_call_again() {
    let w = World::new(1, 100).await;
    let sync = w.sync(SyncSettings::default());
    w.person(0, IncidentStatus::Closed, "Resolved");
    w.store.lose_record_of_call.store(true, Ordering::SeqCst);
    let first = sync.round().await.unwrap();
    assert_eq!(first.count(ActionOutcome::Deferred), 1);
    assert_eq!(w.azure.calls().len(), 1);
    // Its lease still stands: the next round waits it out.
    w.later(30);
    sync.round().await.unwrap();
    assert_eq!(w.azure.reads.load(Ordering::SeqCst), 0);
    // Then asks Azure, finds the alert Closed and records it.
    w.later(60);
    let after = sync.round().await.unwrap();
    assert_eq!(after.count(ActionOutcome::AlreadySet), 1, "{after:?}");
    assert_eq!(w.azure.reads.load(Ordering::SeqCst), 1);
    assert_eq!(w.azure.calls().len(), 1, "no second change");
    assert_eq!(w.record(0).await.azure.sent, Some(AzureMark::Closed));
}

#[tokio::test]
async fn denied_holds_the_round_and_the_next_one_sends() {
    let w = World::new(2, 100).await;
    let sync = w.sync(SyncSettings::default());
    w.person(0, IncidentStatus::Closed, "Resolved");
    w.person(1, IncidentStatus::Closed, "Canceled");
    w.azure
        .fail
        .lock()
        .unwrap()
        .push(AzureError::Denied("403 AuthorizationFailed".into()));
    let first = sync.round().await.unwrap();
    assert_eq!(first.count(ActionOutcome::Denied), 2, "{first:?}");
    assert!(
        w.azure.calls().is_empty(),
        "no call after the first refusal"
    );
    assert_eq!(
        w.record(0).await.azure,
        AzureSync::default(),
        "lease released"
    );
    w.later(60);
    sync.round().await.unwrap();
    assert_eq!(w.azure.calls().len(), 2);
}

#[tokio::test]
async fn a_gone_alert_is_recorded_and_never_retried() {
    let w = World::new(1, 100).await;
    let sync = w.sync(SyncSettings::default());
    w.person(0, IncidentStatus::Closed, "Closed");
    w.azure.fail.lock().unwrap().push(AzureError::NotFound);
    let report = sync.round().await.unwrap();
    assert_eq!(report.count(ActionOutcome::Gone), 1);
    assert_eq!(w.record(0).await.azure.sent, Some(AzureMark::Gone));
    w.later(60);
    sync.round().await.unwrap();
    assert!(w.azure.calls().is_empty());
}

#[tokio::test]
async fn throttling_pauses_the_rounds_and_holds_the_watermark() {
    let w = World::new(3, 100).await;
    let sync = w.sync(SyncSettings::default());
    for n in 0..3 {
        w.person(n, IncidentStatus::Closed, "Resolved");
    }
    w.azure.fail.lock().unwrap().push(AzureError::Throttled {
        retry_after: Some(Duration::from_secs(300)),
    });
    let first = sync.round().await.unwrap();
    assert_eq!(first.count(ActionOutcome::Deferred), 3);
    assert!(first.watermark <= NOW - 300, "held at the first change");
    w.later(120);
    let paused = sync.round().await.unwrap();
    assert!(paused.paused_until.is_some());
    assert!(w.azure.calls().is_empty());
    w.later(300);
    sync.round().await.unwrap();
    assert_eq!(w.azure.calls().len(), 3);
}

#[tokio::test]
async fn acknowledge_then_close_when_asked_to() {
    let w = World::new(1, 100).await;
    let settings = SyncSettings {
        acknowledge: true,
        ..SyncSettings::default()
    };
    let sync = w.sync(settings);
    w.person(0, IncidentStatus::InProgress, "In Progress");
    sync.round().await.unwrap();
    w.later(600);
    w.person(0, IncidentStatus::Closed, "Resolved");
    sync.round().await.unwrap();
    let states: Vec<AlertState> = w.azure.calls().iter().map(|c| c.1).collect();
    assert_eq!(states, [AlertState::Acknowledged, AlertState::Closed]);
    // Without the setting, work in progress is not Azure's business.
    let w = World::new(1, 100).await;
    w.person(0, IncidentStatus::InProgress, "In Progress");
    w.sync(SyncSettings::default()).round().await.unwrap();
    assert!(w.azure.calls().is_empty());
}

#[tokio::test]
async fn pages_are_followed_and_the_watermark_moves_past_them() {
    let w = World::new(25, 10).await;
    let sync = w.sync(SyncSettings::default());
    for n in 0..25 {
        w.person(n, IncidentStatus::Closed, "Resolved");
    }
    let report = sync.round().await.unwrap();
    assert_eq!(report.examined, 25);
    assert_eq!(w.azure.calls().len(), 25);
    assert_eq!(report.watermark, NOW - SyncSettings::default().settle_secs);
    w.later(60);
    sync.round().await.unwrap();
    let windows = w.feed.windows.lock().unwrap().clone();
    assert_eq!(
        windows.last().unwrap().since,
        report.watermark - SyncSettings::default().overlap_secs
    );
}

#[tokio::test]
async fn overlapping_rounds_send_once() {
    let w = World::new(5, 2).await;
    for n in 0..5 {
        w.person(n, IncidentStatus::Closed, "Resolved");
    }
    let (a, b) = (
        w.sync(SyncSettings::default()),
        w.sync(SyncSettings::default()),
    );
    let (ra, rb) = tokio::join!(a.round(), b.round());
    ra.unwrap();
    rb.unwrap();
    w.later(120);
    a.round().await.unwrap();
    let mut ids: Vec<String> = w.azure.calls().into_iter().map(|c| c.0).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5);
    assert_eq!(w.azure.calls().len(), 5, "each alert closed once");
}

#[tokio::test]
async fn a_dry_run_writes_nothing() {
    let w = World::new(1, 100).await;
    w.person(0, IncidentStatus::Closed, "Resolved");
    let dry = SyncSettings {
        dry_run: true,
        ..SyncSettings::default()
    };
    let report = w.sync(dry).round().await.unwrap();
    assert_eq!(report.count(ActionOutcome::WouldSend), 1);
    assert_eq!(w.record(0).await.azure, AzureSync::default());
    assert_eq!(w.store.watermark("servicenow").await.unwrap(), None);
}

#[tokio::test]
async fn an_unanswered_call_is_checked_before_it_is_made_again() {
    let w = World::new(1, 100).await;
    let sync = w.sync(SyncSettings::default());
    w.person(0, IncidentStatus::Closed, "Resolved");
    // Azure took the change but the answer timed out.
    w.azure
        .states
        .lock()
        .unwrap()
        .insert(alert_id(0), AlertState::Closed);
    w.azure
        .fail
        .lock()
        .unwrap()
        .push(AzureError::Unavailable("timed out".into()));
    let first = sync.round().await.unwrap();
    assert_eq!(first.count(ActionOutcome::Deferred), 1);
    w.later(60);
    let second = sync.round().await.unwrap();
    assert_eq!(second.count(ActionOutcome::AlreadySet), 1, "{second:?}");
    assert!(w.azure.calls().is_empty(), "asked, not changed again");
}

#[tokio::test]
async fn a_round_out_of_time_leaves_the_rest_to_the_next() {
    let w = World::new(3, 100).await;
    for n in 0..3 {
        w.person(n, IncidentStatus::Closed, "Resolved");
    }
    let spent = SyncSettings {
        budget: Duration::ZERO,
        ..SyncSettings::default()
    };
    let report = w.sync(spent).round().await.unwrap();
    assert_eq!(report.examined, 0);
    assert!(report.watermark <= NOW - 300, "held at the first change");
    w.later(60);
    w.sync(SyncSettings::default()).round().await.unwrap();
    assert_eq!(w.azure.calls().len(), 3);
}

#[tokio::test]
async fn a_record_gets_its_expiry_back_once_azure_is_told_closed() {
    use crate::domain::correlation::NEVER;
    let w = World::new(2, 100).await;
    for n in 0..2 {
        let mut open = w.record(n).await;
        open.expires_at = NEVER;
        open.version += 1;
        w.store.put(&open, Some(1), NOW).await.unwrap();
    }
    let settings = SyncSettings {
        acknowledge: true,
        ..SyncSettings::default()
    };
    let ttl = settings.record_ttl_secs;
    w.person(0, IncidentStatus::Closed, "Resolved");
    w.person(1, IncidentStatus::InProgress, "In Progress");
    w.sync(settings).round().await.unwrap();
    assert_eq!(w.azure.calls().len(), 2);
    // Closed: nothing more is asked of it. Acknowledged: its alert lives on.
    assert_eq!(w.record(0).await.expires_at, NOW + ttl);
    assert_eq!(w.record(1).await.expires_at, NEVER);
}

/// Found by the simulation: after a lost change-state answer, the next
/// round's check of Azure's state was throttled and the lease released as
/// if nothing had happened, so the round after called again: closed twice.
#[tokio::test]
async fn a_failed_check_after_a_lost_answer_keeps_the_next_round_asking() {
    let w = World::new(1, 100).await;
    let sync = w.sync(SyncSettings::default());
    w.person(0, IncidentStatus::Closed, "Resolved");
    w.azure
        .states
        .lock()
        .unwrap()
        .insert(alert_id(0), AlertState::Closed);
    w.azure
        .fail
        .lock()
        .unwrap()
        .push(AzureError::Unavailable("timed out".into()));
    sync.round().await.unwrap();
    // The check is throttled.
    w.later(60);
    w.azure
        .fail_reads
        .lock()
        .unwrap()
        .push(AzureError::Throttled {
            retry_after: Some(Duration::from_secs(1)),
        });
    sync.round().await.unwrap();
    w.later(60);
    let third = sync.round().await.unwrap();
    assert_eq!(third.count(ActionOutcome::AlreadySet), 1, "{third:?}");
    assert!(
        w.azure.calls().is_empty(),
        "never a second change-state call"
    );
}

/// Found by the simulation: an attempt created the incident and died
/// before recording it; a person resolved it; the round took the record
/// (`Claimed`, lease run out) for "nothing to do" and moved past it, so
/// the alert was never closed.
#[tokio::test]
async fn a_persons_resolve_of_an_incident_left_unrecorded_closes_its_alert() {
    let w = World::new(1, 100).await;
    let sync = w.sync(SyncSettings::default());
    let mut claim = w.record(0).await;
    claim.state = RecordState::Claimed;
    claim.incident = None;
    claim.lease_until = w.now() - 1;
    let v = claim.version;
    claim.version += 1;
    w.store.put(&claim, Some(v), w.now()).await.unwrap();
    w.person(0, IncidentStatus::Closed, "Resolved");
    let report = sync.round().await.unwrap();
    assert_eq!(report.count(ActionOutcome::Sent), 1, "{report:?}");
    let rec = w.record(0).await;
    assert_eq!(rec.state, RecordState::Open, "the incident recorded");
    assert_eq!(rec.incident.unwrap().number, "INC0000000");
    assert_eq!(rec.azure.sent, Some(AzureMark::Closed));
}
