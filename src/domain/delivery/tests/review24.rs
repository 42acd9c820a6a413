//! The adversarial review of `children: incidents`, promise 5: waiting for
//! a parent another attempt is creating (`ItsmError::Busy`) never opens the
//! ITSM's breaker. It did not open it; but when it fell on the webhook's
//! probe it held it open (fixed: the probe is given back).

use super::*;

/// Interleaving: the ITSM was down, the breaker is open; it is back and
/// the probe is due. The next webhook notification takes the probe inline,
/// and is a grouped child whose parent another attempt is creating: `Busy`.
/// Before the fix `accept` counted the Busy attempt as "called", so it
/// neither released the probe nor closed the breaker: every notification
/// for `PROBE_LEASE_SECS` (60 s) queued `itsm_down` without a call. Now Busy
/// gives the probe back, as the worker's batch does (`Evidence::None`).
#[tokio::test]
async fn a_busy_child_on_the_webhooks_probe_gives_the_probe_back() {
    let r = rig();
    let (a, body) = alert("a", MonitorCondition::Fired);
    r.itsm.down.store(true, Ordering::SeqCst);
    assert!(queued(&r.delivery.accept(&a, &body).await).is_some());
    r.itsm.down.store(false, Ordering::SeqCst);
    r.now.fetch_add(31, Ordering::SeqCst);
    // The probe's notification waits on a parent: Busy.
    r.itsm.busy.store(true, Ordering::SeqCst);
    let (b, body) = alert("b", MonitorCondition::Fired);
    let busy = r.delivery.accept(&b, &body).await;
    assert_eq!(
        queued(&busy).map(|q| q.1),
        Some(QueueReason::Busy),
        "{busy:?}"
    );
    // The ITSM is up; the next notification, a second later.
    r.now.fetch_add(1, Ordering::SeqCst);
    let (c, body) = alert("c", MonitorCondition::Fired);
    let next = r.delivery.accept(&c, &body).await;
    assert!(
        matches!(next, Ok(Accepted::Processed(_))),
        "held back by a breaker the Busy wait kept open: {next:?}"
    );
}
