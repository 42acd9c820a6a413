//! Store and forward, both roles of the function: the webhook queues while
//! the ITSM is down; the worker drains the queue when it is back. SQS FIFO
//! and DynamoDB are moto's. moto's own SQS→Lambda trigger ignores partial
//! batch responses, so `Esm` does what Lambda's event source mapping does:
//! receive, invoke the worker with the batch, delete what succeeded.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use itsm_bridge::domain::correlation::{RecordState, correlation_key};
use itsm_bridge::inbound::worker::{self, Fate};
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use crate::fakes::{Fake, Vendor};
use crate::helpers::*;

/// A store-and-forward app: fast inline failure, short backoffs.
async fn spawn(max_receive: u32) -> (TestApp, Fake) {
    spawn_with(max_receive, "1").await
}

async fn spawn_with(max_receive: u32, backoff_max_secs: &str) -> (TestApp, Fake) {
    let t = store_and_forward(max_receive)
        .var("WORKER_BACKOFF_MAX_SECS", backoff_max_secs)
        .start()
        .await;
    let fake = Fake::new(Vendor::ServiceNow);
    fake.mount(&t.itsm).await;
    (t, fake)
}

/// The settings of every store-and-forward test: short time-outs and a
/// fast inline failure, backoffs of a second.
fn store_and_forward(max_receive: u32) -> Spawn {
    Spawn::default()
        .queue(max_receive)
        .var("ITSM_TIMEOUT_MS", "300")
        .var("ITSM_DEADLINE_MS", "300")
        .var("INLINE_BUDGET_MS", "500")
        .var("WORKER_DEADLINE_MS", "1000")
        .var("WORKER_BACKOFF_BASE_SECS", "1")
        .var("WORKER_BACKOFF_MAX_SECS", "1")
}

/// Lambda's SQS event source mapping, by hand.
struct Esm<'a> {
    t: &'a TestApp,
}

/// What one `Esm` round did.
#[derive(Debug, Default)]
struct Round {
    received: usize,
    failed: usize,
}

impl Esm<'_> {
    fn queues(&self) -> &Queues {
        self.t.queues.as_ref().expect("a test with a queue")
    }

    /// Receives up to ten messages and turns them into the event Lambda
    /// would hand the worker.
    async fn receive(&self) -> (SqsEvent, Vec<String>) {
        let q = self.queues();
        let out = q
            .client
            .receive_message()
            .queue_url(&q.url)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        let messages = out.messages.unwrap_or_default();
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                let attributes: HashMap<String, String> = m
                    .attributes
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k.as_str().to_string(), v))
                    .collect();
                json!({"messageId": m.message_id, "receiptHandle": m.receipt_handle,
                    "body": m.body, "attributes": attributes, "messageAttributes": {},
                    "md5OfBody": m.md5_of_body, "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:itsm-bridge-delivery.fifo",
                    "awsRegion": "us-east-1"})
            })
            .collect();
        let receipts = messages
            .iter()
            .map(|m| m.receipt_handle.clone().unwrap())
            .collect();
        let event = serde_json::from_value(json!({"Records": records})).unwrap();
        (event, receipts)
    }

    /// One batch: receive, invoke, delete what the worker did not report failed.
    async fn round(&self) -> Round {
        let (event, receipts) = self.receive().await;
        let ids: Vec<String> = event
            .records
            .iter()
            .map(|r| r.message_id.clone().unwrap())
            .collect();
        if ids.is_empty() {
            return Round::default();
        }
        let response = worker::handle(&self.t.app, event).await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        for (id, receipt) in ids.iter().zip(&receipts) {
            if !failed.contains(&id.as_str()) {
                let q = self.queues();
                q.client
                    .delete_message()
                    .queue_url(&q.url)
                    .receipt_handle(receipt)
                    .send()
                    .await
                    .unwrap();
            }
        }
        Round {
            received: ids.len(),
            failed: failed.len(),
        }
    }

    /// Rounds until the queue holds nothing, visible or not (a message in
    /// backoff comes back after a second).
    async fn drain(&self) -> usize {
        let mut delivered = 0;
        for _ in 0..600 {
            let round = self.round().await;
            delivered += round.received - round.failed;
            if round.received == 0 {
                if self.depth(&self.queues().url).await == 0 {
                    return delivered;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        panic!("the queue did not drain");
    }

    /// Messages in `url`, visible or in flight.
    async fn depth(&self, url: &str) -> u64 {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let attrs = self
            .queues()
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap_or_default();
        let n = |a: &A| {
            attrs
                .get(a)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        n(&A::ApproximateNumberOfMessages) + n(&A::ApproximateNumberOfMessagesNotVisible)
    }
}

/// While the ITSM is down: `n` alerts fire and resolve, all queued.
async fn queue_fired_and_resolved(t: &TestApp, prefix: &str, n: usize) {
    for i in 0..n {
        let id = format!("{prefix}-{i}");
        for condition in ["Fired", "Resolved"] {
            let reply = t.post(&metric_alert(&id, condition)).await;
            assert_eq!(
                reply.outcome(),
                "queued",
                "{id} {condition}: {:?}",
                reply.body
            );
        }
    }
}

fn incidents_by_key(fake: &Fake) -> HashMap<String, Vec<Value>> {
    let mut out: HashMap<String, Vec<Value>> = HashMap::new();
    for i in fake.incidents() {
        let key = i["correlation_id"].as_str().unwrap_or("").to_string();
        out.entry(key).or_default().push(i);
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test]
async fn an_outage_loses_nothing_and_duplicates_nothing() {
    let (t, fake) = spawn(50).await;
    fake.set_down(true);
    // 120 alerts fire (220 notifications); every third is delivered twice (Azure retrying); half
    // resolve while their Fired still waits in the queue.
    let alerts = 120;
    let mut events = Vec::new();
    for i in 0..alerts {
        let id = format!("outage-{i}");
        events.push(metric_alert(&id, "Fired"));
        if i % 3 == 0 {
            events.push(metric_alert(&id, "Fired"));
        }
        if i % 2 == 0 {
            events.push(metric_alert(&id, "Resolved"));
        }
    }
    let mut answered = Vec::new();
    for event in &events {
        let started = Instant::now();
        let reply = t.post(event).await;
        answered.push(started.elapsed());
        assert_eq!(
            (reply.status, reply.outcome()),
            (202, "queued"),
            "{:?}",
            reply.body
        );
    }
    assert!(
        fake.incidents().is_empty(),
        "nothing reached the ITSM while down"
    );

    fake.set_down(false);
    let esm = Esm { t: &t };
    let started = Instant::now();
    let delivered = esm.drain().await;
    let drain_time = started.elapsed();

    let incidents = incidents_by_key(&fake);
    let mut duplicates = 0;
    let mut lost = 0;
    for i in 0..alerts {
        let fired = metric_alert(&format!("outage-{i}"), "Fired");
        let id = alert_id(&fired);
        let found = incidents.get(&correlation_key(&id)).map_or(0, Vec::len);
        duplicates += found.saturating_sub(1);
        lost += usize::from(found == 0);
        let incident = &incidents[&correlation_key(&id)][0];
        let record = t.record(&id).await.unwrap();
        let (state, itsm_state) = if i % 2 == 0 {
            (RecordState::Resolved, "6")
        } else {
            (RecordState::Open, "1")
        };
        assert_eq!(record.state, state, "{id}");
        assert_eq!(incident["state"], itsm_state, "{id}");
        assert_eq!(
            record.delivered_seq, record.queued_seq,
            "{id}: nothing left queued"
        );
    }
    assert_eq!((duplicates, lost), (0, 0));
    let dlq = esm.depth(&t.queues.as_ref().unwrap().dlq_url).await;
    assert_eq!(dlq, 0, "nothing dead-lettered");
    assert!(delivered >= alerts, "{delivered} deliveries");

    answered.sort();
    println!(
        "outage: {} notifications for {alerts} alerts answered 202 (p50 {:?}, p99 {:?}, max {:?}); \
         after recovery {} incidents, duplicates {duplicates}, lost {lost}; drained {delivered} \
         messages in {drain_time:?}",
        events.len(),
        percentile(&answered, 0.5),
        percentile(&answered, 0.99),
        answered.last().unwrap(),
        fake.incidents().len(),
    );
}

#[tokio::test]
async fn a_notification_goes_behind_its_alerts_queued_work_even_when_the_itsm_is_back() {
    let (t, fake) = spawn(50).await;
    fake.set_down(true);
    let fired = metric_alert("behind", "Fired");
    assert_eq!(t.post(&fired).await.outcome(), "queued");
    // The ITSM is back, and the cool-down over: a Resolved must still not
    // overtake its queued Fired.
    fake.set_down(false);
    t.advance(60);
    let resolved = t.post(&metric_alert("behind", "Resolved")).await;
    assert_eq!((resolved.status, resolved.outcome()), (202, "queued"));
    assert_eq!(resolved.body["queue"]["reason"], "behind_queued");
    // Another alert, with nothing queued, goes inline at once.
    let other = t.post(&metric_alert("not-behind", "Fired")).await;
    assert_eq!((other.status, other.outcome()), (201, "created"));

    Esm { t: &t }.drain().await;
    let record = t.record(&alert_id(&fired)).await.unwrap();
    assert_eq!(record.state, RecordState::Resolved);
    assert_eq!(incidents_by_key(&fake)[&record.correlation_key].len(), 1);
    // With the queue empty for it, the alert goes inline again.
    let again = t.post(&metric_alert("behind", "Resolved")).await;
    assert_eq!((again.status, again.outcome()), (200, "already_resolved"));
}

#[tokio::test]
async fn azures_repeated_delivery_of_a_queued_notification_is_queued_once() {
    let (t, fake) = spawn(50).await;
    fake.set_down(true);
    let fired = metric_alert("repeated", "Fired");
    let first = t.post(&fired).await;
    let again = t.post(&fired).await;
    assert_eq!(first.body["queue"]["seq"], 1);
    assert_eq!(again.body["queue"]["reason"], "already_queued");
    assert_eq!(again.body["queue"]["seq"], 1);
    let esm = Esm { t: &t };
    assert_eq!(esm.depth(&t.queues.as_ref().unwrap().url).await, 1);
}

#[tokio::test]
async fn a_worker_killed_mid_batch_loses_and_duplicates_nothing() {
    let (t, fake) = spawn(50).await;
    fake.set_down(true);
    queue_fired_and_resolved(&t, "killed", 6).await;
    fake.set_down(false);
    // The breaker's probe is due.
    t.advance(2);
    let esm = Esm { t: &t };
    // The worker delivers a batch, then dies before Lambda deletes anything.
    let (event, receipts) = esm.receive().await;
    assert!(!receipts.is_empty());
    let fates = worker::deliver_batch(&t.app, &event.records).await;
    assert!(fates.iter().any(|(_, f)| matches!(f, Fate::Delivered(_))));
    // Its messages come back when their visibility times out (at once here).
    let q = t.queues.as_ref().unwrap();
    for receipt in &receipts {
        q.client
            .change_message_visibility()
            .queue_url(&q.url)
            .receipt_handle(receipt)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
    }
    esm.drain().await;
    let incidents = incidents_by_key(&fake);
    for i in 0..6 {
        let id = alert_id(&metric_alert(&format!("killed-{i}"), "Fired"));
        let key = correlation_key(&id);
        assert_eq!(incidents.get(&key).map_or(0, Vec::len), 1, "{id}");
        assert_eq!(incidents[&key][0]["state"], "6", "{id} resolved");
    }
}

#[tokio::test]
async fn a_permanent_refusal_is_parked_after_bounded_attempts() {
    let (t, fake) = spawn(50).await;
    fake.set_down(true);
    let fired = metric_alert("refused", "Fired");
    assert_eq!(t.post(&fired).await.outcome(), "queued");
    fake.set_down(false);
    for _ in 0..3 {
        fake.fail_next(ResponseTemplate::new(400).set_body_json(json!({
            "error": {"message": "Mandatory field missing", "detail": "Data Policy Exception: Category is mandatory"},
            "status": "failure"})));
    }
    let esm = Esm { t: &t };
    // WORKER_PERMANENT_ATTEMPTS (3): tried three times, then parked.
    esm.drain().await;
    let q = t.queues.as_ref().unwrap();
    assert_eq!(esm.depth(&q.url).await, 0);
    let parked = q
        .client
        .receive_message()
        .queue_url(&q.dlq_url)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(parked.len(), 1);
    let reason = parked[0].message_attributes.as_ref().unwrap()["reason"]
        .string_value()
        .unwrap()
        .to_string();
    assert!(reason.contains("Category is mandatory"), "{reason}");
    assert!(fake.incidents().is_empty());
    // After the fix, a redrive delivers it.
    q.client
        .send_message()
        .queue_url(&q.url)
        .message_group_id("redrive")
        .message_deduplication_id("redrive-1")
        .message_body(parked[0].body.clone().unwrap())
        .send()
        .await
        .unwrap();
    esm.drain().await;
    assert_eq!(fake.incidents().len(), 1);
}

#[tokio::test]
async fn retry_after_sets_when_the_message_comes_back() {
    // Backoff capped at 5 s, so the ITSM's 3 s decides.
    let (t, fake) = spawn_with(50, "5").await;
    fake.set_down(true);
    assert_eq!(
        t.post(&metric_alert("throttled", "Fired")).await.outcome(),
        "queued"
    );
    fake.set_down(false);
    t.advance(2);
    fake.fail_next(ResponseTemplate::new(429).insert_header("retry-after", "3"));
    let esm = Esm { t: &t };
    let (event, _) = esm.receive().await;
    let fates = worker::deliver_batch(&t.app, &event.records).await;
    // Back at the 429's moment: 3 s from the answer, counted in whole
    // seconds of the app's clock, which runs on in real time (2 s when a
    // second ticks between the answer and the count).
    let (early, late) = (Duration::from_secs(2), Duration::from_secs(3));
    assert!(
        matches!(&fates[0].1, Fate::Retry { after, .. } if (early..=late).contains(after)),
        "{:?}",
        fates[0].1
    );
    // Held back for those 3 s: not receivable right away.
    assert!(esm.receive().await.1.is_empty());
    esm.drain().await;
    assert_eq!(fake.incidents().len(), 1);
}

#[tokio::test]
async fn an_alert_near_256_kb_queues_and_is_delivered() {
    let (t, fake) = spawn(50).await;
    fake.set_down(true);
    let mut fired = metric_alert("large", "Fired");
    let rows: Vec<Value> = (0..2500)
        .map(|i| {
            json!([
                format!("2025-04-15T18:{:02}:00Z", i % 60),
                format!("vm-{i:05}"),
                "x".repeat(60)
            ])
        })
        .collect();
    fired["data"]["alertContext"]["SearchResults"] =
        json!({"tables": [{"name": "PrimaryResult", "rows": rows}]});
    let size = fired.to_string().len();
    assert!((240_000..=262_144).contains(&size), "{size} bytes");
    assert_eq!(t.post(&fired).await.outcome(), "queued");
    fake.set_down(false);
    Esm { t: &t }.drain().await;
    assert_eq!(fake.incidents().len(), 1);
}

#[tokio::test]
async fn a_failed_message_holds_back_its_alerts_later_ones_in_the_batch() {
    // events/sqs-worker-batch.json: alert A fired, alert B fired, A resolved.
    let (t, fake) = spawn(50).await;
    let event: SqsEvent = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/events/sqs-worker-batch.json"
        ))
        .unwrap(),
    )
    .unwrap();
    // A's Fired fails (refused once: not retried within the attempt): A's
    // Resolved must wait behind it, B goes on.
    fake.fail_next(ResponseTemplate::new(400).set_body_json(
        json!({"error": {"message": "Invalid request", "detail": ""}, "status": "failure"}),
    ));
    let fates = worker::deliver_batch(&t.app, &event.records).await;
    assert!(matches!(fates[0].1, Fate::Retry { .. }), "{:?}", fates[0].1);
    assert!(matches!(fates[1].1, Fate::Delivered(_)), "{:?}", fates[1].1);
    assert_eq!(fates[2].1, Fate::Skipped);
    // The second run: A's Fired and Resolved delivered, B's a copy of a
    // delivered message (deleted, nothing sent).
    let again = worker::deliver_batch(&t.app, &event.records).await;
    assert!(matches!(again[0].1, Fate::Delivered(_)), "{again:?}");
    assert_eq!(again[1].1, Fate::AlreadyDelivered);
    assert!(matches!(again[2].1, Fate::Delivered(_)), "{again:?}");
    assert_eq!(fake.incidents().len(), 2);
    assert!(fake.incidents().iter().any(|i| i["state"] == "6"));
}

#[tokio::test]
async fn a_rate_limited_itsm_is_drained_at_its_pace_without_loss() {
    let (t, fake) = spawn(50).await;
    fake.set_down(true);
    let alerts = 15;
    queue_fired_and_resolved(&t, "paced", alerts).await;
    // Back, but with a rate limit rule: 5 requests a second.
    fake.set_down(false);
    fake.set_rate_limit(5);
    let started = Instant::now();
    let delivered = Esm { t: &t }.drain().await;
    let elapsed = started.elapsed();
    let incidents = incidents_by_key(&fake);
    assert_eq!(incidents.len(), alerts);
    assert!(
        incidents
            .values()
            .all(|v| v.len() == 1 && v[0]["state"] == "6")
    );
    let throttled = fake.throttled.load(std::sync::atomic::Ordering::SeqCst);
    println!(
        "drain: {} notifications ({alerts} alerts) through a 5 requests/s ITSM in {elapsed:?}: \
         {:.1} notifications/s, {throttled} answered 429",
        2 * alerts,
        delivered as f64 / elapsed.as_secs_f64()
    );
}

/// The figure: paced a little under the ITSM's limit, the drain
/// keeps to it with next to no 429s. Prints the rate; asserts only that
/// nothing was lost or doubled.
#[tokio::test]
async fn a_paced_drain_keeps_to_the_itsm_limit() {
    // Low enough that moto's round trips between calls (tens of ms) do not
    // set the pace; in AWS they are a few ms.
    let limit = 5;
    let t = store_and_forward(50)
        .var("ITSM_MAX_RPS", "4.85")
        // Room for an attempt's requests and their paced waits.
        .var("WORKER_DEADLINE_MS", "2000")
        .start()
        .await;
    let fake = Fake::new(Vendor::ServiceNow);
    fake.mount(&t.itsm).await;
    fake.set_down(true);
    let alerts = 40;
    queue_fired_and_resolved(&t, "paced-drain", alerts).await;
    fake.set_down(false);
    fake.set_rate_limit(limit);
    t.advance(2);
    let before = t.itsm.received_requests().await.unwrap_or_default().len();
    let started = Instant::now();
    Esm { t: &t }.drain().await;
    let elapsed = started.elapsed().as_secs_f64();
    let calls = t.itsm.received_requests().await.unwrap_or_default().len() - before;
    let throttled = fake.throttled.load(std::sync::atomic::Ordering::SeqCst) as usize;
    let incidents = incidents_by_key(&fake);
    assert_eq!(incidents.len(), alerts);
    assert!(
        incidents
            .values()
            .all(|v| v.len() == 1 && v[0]["state"] == "6")
    );
    let answered = (calls - throttled) as f64 / elapsed;
    println!(
        "paced drain: {} notifications, {calls} ITSM calls in {elapsed:.1} s against a limit \
         of {limit}/s paced at 4.85/s: {answered:.2} answered calls/s = {:.0} % of the limit; \
         {throttled} answered 429 ({:.1} % of calls)",
        2 * alerts,
        100.0 * answered / limit as f64,
        100.0 * throttled as f64 / calls as f64,
    );
}

/// Every message in the dead-letter queue, taken out of it: (body, reason).
async fn take_dead_letters(t: &TestApp) -> Vec<(String, Option<String>)> {
    let q = t.queues.as_ref().unwrap();
    let mut out = Vec::new();
    for _ in 0..5 {
        let got = q
            .client
            .receive_message()
            .queue_url(&q.dlq_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        if got.is_empty() {
            break;
        }
        for m in got {
            q.client
                .delete_message()
                .queue_url(&q.dlq_url)
                .receipt_handle(m.receipt_handle.clone().unwrap())
                .send()
                .await
                .unwrap();
            let reason = m
                .message_attributes
                .as_ref()
                .and_then(|a| a.get("reason"))
                .and_then(|r| r.string_value().map(str::to_string));
            out.push((m.body.unwrap(), reason));
        }
    }
    out
}

/// The operator's redrive: the messages back to the queue, in their groups.
async fn redrive(t: &TestApp, bodies: &[String]) {
    let q = t.queues.as_ref().unwrap();
    for (i, body) in bodies.iter().enumerate() {
        let group = serde_json::from_str::<Value>(body).unwrap()["group"]
            .as_str()
            .unwrap()
            .to_string();
        q.client
            .send_message()
            .queue_url(&q.url)
            .message_group_id(group)
            .message_deduplication_id(format!("redrive-{i}"))
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
}

mod breaker;
mod groups;
mod pace;
mod park;
mod review;
