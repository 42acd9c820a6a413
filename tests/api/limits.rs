//! Limits that hold one another: a retry whose requests could not all
//! finish before the deadline is not started.

use std::time::{Duration, Instant};

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

#[tokio::test]
async fn a_retry_that_could_not_finish_before_the_deadline_is_not_started() {
    let t = Spawn::default()
        .var("ITSM_TIMEOUT_MS", "500")
        .var("ITSM_DEADLINE_MS", "1500")
        .start()
        .await;
    // The create fails after 600 ms. A retry looks before it creates: two
    // requests of up to 500 ms each, past the 1.5 s deadline (one alone
    // would still fit, which is all the room an attempt used to be given).
    Mock::given(method("POST"))
        .and(path("/api/now/table/incident"))
        .respond_with(
            ResponseTemplate::new(503)
                .set_body_json(json!({"error": {"message": "busy"}, "status": "failure"}))
                .set_delay(Duration::from_millis(600)),
        )
        .mount(&t.itsm)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/now/table/incident"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"result": []}))
                .set_delay(Duration::from_millis(450)),
        )
        .mount(&t.itsm)
        .await;

    let started = Instant::now();
    let reply = t.post(&metric_alert("no-overrun", "Fired")).await;
    let took = started.elapsed();
    assert_eq!((reply.status, reply.outcome()), (503, "itsm_unavailable"));
    let requests: Vec<String> = t
        .itsm
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.method.to_string())
        .collect();
    assert_eq!(requests, ["POST"], "no retry was started");
    assert!(
        took < Duration::from_millis(1500),
        "answered after {took:?}"
    );
}
