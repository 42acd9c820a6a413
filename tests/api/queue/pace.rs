//! The drain's pace at scale, side by side in one run: a few hundred queued
//! notifications drained by the worker against a fake ServiceNow with a rate
//! limit rule (a token bucket), once paced at exactly the bucket's rate and
//! once unpaced. Prints the figures (BENCHMARKS.md, "Drain at the ITSM's
//! pace"); asserts only that every alert ends right, one incident each.
//!
//! `cargo test --test api queue::pace -- --ignored --nocapture`

use super::*;

/// The fake's rule: 5 requests a second, 5 at once. Low enough that moto's
/// round trips between two calls (tens of ms) do not set the pace.
const LIMIT: f64 = 5.0;
const BURST: f64 = 5.0;
/// Fired and resolved: twice as many notifications.
const ALERTS: usize = 160;

struct Figures {
    calls: usize,
    throttled: usize,
    secs: f64,
}

impl Figures {
    fn line(&self, how: &str) -> String {
        let answered = (self.calls - self.throttled) as f64 / self.secs;
        format!(
            "{how}: {} notifications, {} ITSM calls in {:.1} s: {answered:.2} answered calls/s = \
             {:.1} % of the limit ({LIMIT}/s, burst {BURST}); {} answered 429 ({:.2} % of calls)",
            2 * ALERTS,
            self.calls,
            self.secs,
            100.0 * answered / LIMIT,
            self.throttled,
            100.0 * self.throttled as f64 / self.calls as f64,
        )
    }
}

/// Queues `ALERTS` alerts fired and resolved during an outage, brings the
/// ITSM back behind its rule and drains the queue, paced at `rps` if given.
async fn drain(rps: Option<&str>, prefix: &str) -> Figures {
    let mut spawn = store_and_forward(50);
    if let Some(rps) = rps {
        spawn = spawn.var("ITSM_MAX_RPS", rps);
    }
    let t = spawn.start().await;
    let fake = Fake::new(Vendor::ServiceNow);
    fake.mount(&t.itsm).await;
    fake.set_down(true);
    queue_fired_and_resolved(&t, prefix, ALERTS).await;
    fake.set_down(false);
    fake.set_token_bucket(LIMIT, BURST);
    // Past the breaker's probe time set by the outage.
    t.advance(2);
    let before = t.itsm.received_requests().await.unwrap_or_default().len();
    let started = Instant::now();
    Esm { t: &t }.drain().await;
    let secs = started.elapsed().as_secs_f64();
    let calls = t.itsm.received_requests().await.unwrap_or_default().len() - before;
    let incidents = incidents_by_key(&fake);
    assert_eq!(incidents.len(), ALERTS, "one incident per alert");
    assert!(
        incidents
            .values()
            .all(|v| v.len() == 1 && v[0]["state"] == "6"),
        "each created once and resolved"
    );
    Figures {
        calls,
        throttled: fake.throttled.load(std::sync::atomic::Ordering::SeqCst) as usize,
        secs,
    }
}

#[tokio::test]
#[ignore = "figures: about 3 minutes; run with --ignored --nocapture"]
async fn a_drain_paced_at_the_itsms_limit_beside_one_unpaced() {
    let paced = drain(Some(&LIMIT.to_string()), "pace-paced").await;
    let unpaced = drain(None, "pace-unpaced").await;
    println!("{}", paced.line(&format!("paced at ITSM_MAX_RPS={LIMIT}")));
    println!("{}", unpaced.line("unpaced"));
}
