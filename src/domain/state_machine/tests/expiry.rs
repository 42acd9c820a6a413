//! How long records live: an open incident's record outlasts
//! `RECORD_TTL_DAYS`, however late its Resolved comes; a finished one, or
//! one of an alert Azure never resolves, ends that long after its last change.

use super::*;
use crate::domain::correlation::NEVER;

const DAY: i64 = 86_400;

fn ttl() -> i64 {
    Settings::default().ttl_secs
}

#[tokio::test]
async fn an_incident_open_longer_than_the_ttl_is_resolved() {
    let r = rig();
    assert_eq!(r.outcome(&fired()).await, Ok(Outcome::Created));

    // A metric alert's Resolved, months after its Fired.
    r.now.fetch_add(ttl() + 30 * DAY, Ordering::SeqCst);
    let done = r.bridge.process(&resolved()).await.unwrap();
    assert_eq!(
        (done.outcome, done.incident),
        (Outcome::Resolved, Some(inc(1)))
    );
    let key = correlation_key(ID);
    assert_eq!(
        r.itsm.calls(),
        [format!("create {key}"), "resolve INC0000001".to_string()]
    );
    // Finished now: it ends a TTL after this change.
    let rec = r.record().await;
    let now = r.now.load(Ordering::SeqCst);
    assert_eq!(
        (rec.state, rec.expires_at),
        (RecordState::Resolved, now + ttl())
    );
    r.now.fetch_add(ttl(), Ordering::SeqCst);
    let gone = r.store.get(ID, now + ttl()).await.unwrap();
    assert_eq!(gone, None);
}

#[tokio::test]
async fn claims_do_not_expire_and_finished_records_do() {
    // A create that failed leaves its (released) claim: still needed.
    let itsm = Scripted::default();
    itsm.creates.lock().unwrap().push_back(Err(down()));
    let r = rig_with(itsm, RefirePolicy::Ignore);
    assert!(r.outcome(&fired()).await.is_err());
    let rec = r.record().await;
    assert_eq!((rec.state, rec.expires_at), (RecordState::Claimed, NEVER));

    // A Resolved with no incident: nothing more is expected of it.
    let r = rig();
    assert_eq!(
        r.outcome(&resolved()).await,
        Ok(Outcome::ResolvedWithoutIncident)
    );
    assert_eq!(r.record().await.expires_at, T0 + ttl());
}

#[tokio::test]
async fn the_records_of_alerts_azure_never_resolves_end_after_the_ttl() {
    let r = rig();
    assert_eq!(r.outcome(&fired()).await, Ok(Outcome::Created));
    assert_eq!(
        r.record().await.expires_at,
        NEVER,
        "a metric alert resolves"
    );

    let r = rig();
    let activity = Alert {
        monitoring_service: Some("Activity Log - Administrative".into()),
        ..fired()
    };
    assert_eq!(r.outcome(&activity).await, Ok(Outcome::Created));
    let rec = r.record().await;
    assert_eq!((rec.state, rec.expires_at), (RecordState::Open, T0 + ttl()));
}
