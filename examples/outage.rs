//! A 24-hour ITSM outage with 1,000 alerts queued, scaled: the real
//! domain code (webhook `accept`, worker batches, the breaker and its
//! scheduled round) on a virtual clock, with models of what surrounds it:
//! SQS FIFO (visibility, receive counts), Lambda's event source mapping
//! (batches of 10, `--pollers` at once, polling every second while
//! enabled), the schedule (a round a minute), and an ITSM that is down
//! for `--hours`, then answers at most `--limit` requests a second (429
//! with `Retry-After: 1` beyond). Prints what the outage cost and how the
//! backlog drained. Each attempt is one request here (no retries within a
//! message, no pacing of our own): the worker's in-message retries and
//! `ITSM_MAX_RPS` change the figures as BENCHMARKS.md says.
//!
//! cargo run --release --example outage -- [--alerts 1000] [--hours 24] [--limit 10] [--pollers 5]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use itsm_bridge::adapters::store::MemoryStore;
use itsm_bridge::domain::alert::{Alert, MonitorCondition};
use itsm_bridge::domain::correlation::{IncidentRef, correlation_key};
use itsm_bridge::domain::delivery::breaker::{Breaker, BreakerPolicy};
use itsm_bridge::domain::delivery::{Delivery, Fate, Received, WorkerPolicy};
use itsm_bridge::domain::incident::mapping::{IncidentDraft, Resolution};
use itsm_bridge::domain::ports::{
    Clock, DeliveryQueue, Intake, IntakeError, ItsmClient, ItsmError, QueueError,
    QueuedNotification, ResolveOutcome,
};
use itsm_bridge::domain::retry::RetryPolicy;
use itsm_bridge::domain::settings::Settings;
use itsm_bridge::domain::state_machine::Bridge;

/// The ITSM: down until `up_at`, then `limit` requests per second.
struct Itsm {
    now: Arc<AtomicI64>,
    up_at: i64,
    limit: u64,
    second: AtomicI64,
    used: AtomicU64,
    calls_down: AtomicU64,
    calls_up: AtomicU64,
    throttled: AtomicU64,
    created: AtomicU64,
    first_create: AtomicI64,
}

impl Itsm {
    fn call(&self) -> Result<(), ItsmError> {
        let now = self.now.load(Ordering::SeqCst);
        if now < self.up_at {
            self.calls_down.fetch_add(1, Ordering::SeqCst);
            return Err(ItsmError::Unavailable("connection refused".into()));
        }
        self.calls_up.fetch_add(1, Ordering::SeqCst);
        if self.second.swap(now, Ordering::SeqCst) != now {
            self.used.store(0, Ordering::SeqCst);
        }
        if self.used.fetch_add(1, Ordering::SeqCst) >= self.limit {
            self.throttled.fetch_add(1, Ordering::SeqCst);
            return Err(ItsmError::Throttled {
                message: "429".into(),
                retry_after: Some(Duration::from_secs(1)),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl ItsmClient for Itsm {
    fn kind(&self) -> &'static str {
        "servicenow"
    }

    async fn set_priority(&self, _: &IncidentRef, _: u8, _: u8) -> Result<(), ItsmError> {
        Ok(())
    }
    async fn create(&self, _: &IncidentDraft) -> Result<IncidentRef, ItsmError> {
        self.call()?;
        let n = self.created.fetch_add(1, Ordering::SeqCst);
        if n == 0 {
            self.first_create
                .store(self.now.load(Ordering::SeqCst), Ordering::SeqCst);
        }
        Ok(IncidentRef {
            id: format!("sys{n}"),
            number: format!("INC{n:07}"),
        })
    }
    async fn find(&self, _: &str) -> Result<Option<IncidentRef>, ItsmError> {
        self.call().map(|()| None)
    }
    async fn resolve(&self, _: &IncidentRef, _: &Resolution) -> Result<ResolveOutcome, ItsmError> {
        self.call().map(|()| ResolveOutcome::Resolved)
    }
    async fn reopen(&self, _: &IncidentRef, _: &str) -> Result<(), ItsmError> {
        self.call()
    }
    async fn note(&self, _: &IncidentRef, _: &str) -> Result<(), ItsmError> {
        self.call()
    }
}

/// SQS FIFO, as far as the worker sees it.
struct Message {
    alert: Alert,
    seq: u64,
    visible_at: i64,
    receives: u32,
}

#[derive(Default)]
struct Queue {
    messages: Mutex<VecDeque<Message>>,
    now: Arc<AtomicI64>,
}

#[async_trait]
impl DeliveryQueue for Queue {
    async fn send(&self, n: &QueuedNotification<'_>) -> Result<(), QueueError> {
        self.messages.lock().unwrap().push_back(Message {
            alert: Alert::new(n.alert_id, MonitorCondition::Fired),
            seq: n.seq,
            visible_at: self.now.load(Ordering::SeqCst),
            receives: 0,
        });
        Ok(())
    }
}

/// The event source mapping's enabled flag.
#[derive(Default)]
struct Mapping(AtomicBool);

#[async_trait]
impl Intake for Mapping {
    async fn paused(&self) -> Result<bool, IntakeError> {
        Ok(self.0.load(Ordering::SeqCst))
    }
    async fn pause(&self) -> Result<(), IntakeError> {
        self.0.store(true, Ordering::SeqCst);
        Ok(())
    }
    async fn resume(&self) -> Result<(), IntakeError> {
        self.0.store(false, Ordering::SeqCst);
        Ok(())
    }
}

fn arg(name: &str, default: i64) -> i64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

const VISIBILITY_SECS: i64 = 312;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (alerts, hours, limit, pollers) = (
        arg("--alerts", 1000),
        arg("--hours", 24),
        arg("--limit", 10),
        arg("--pollers", 5),
    );
    let t0 = 1_800_000_000;
    let now = Arc::new(AtomicI64::new(t0));
    let clock: Clock = {
        let now = now.clone();
        Arc::new(move || now.load(Ordering::SeqCst))
    };
    // Back 17 s after a probe time: the next probe finds it.
    let up_at = t0 + hours * 3600 + 17;
    let itsm = Arc::new(Itsm {
        now: now.clone(),
        up_at,
        limit: limit as u64,
        second: AtomicI64::new(0),
        used: AtomicU64::new(0),
        calls_down: AtomicU64::new(0),
        calls_up: AtomicU64::new(0),
        throttled: AtomicU64::new(0),
        created: AtomicU64::new(0),
        first_create: AtomicI64::new(0),
    });
    let store = Arc::new(MemoryStore::new());
    let queue = Arc::new(Queue {
        now: now.clone(),
        ..Queue::default()
    });
    let settings = Settings {
        retry: RetryPolicy {
            deadline: Duration::ZERO,
            ..RetryPolicy::default()
        },
        ..Settings::default()
    };
    let bridge = || Bridge::new(itsm.clone(), store.clone(), settings.clone(), clock.clone());
    let breaker = Arc::new(Breaker::new(
        store.clone(),
        "servicenow",
        BreakerPolicy::default(),
        clock.clone(),
    ));
    let delivery = Delivery::new(
        bridge(),
        bridge(),
        queue.clone(),
        breaker.clone(),
        clock.clone(),
    );
    let mapping = Mapping::default();
    let policy = WorkerPolicy {
        backoff_base_secs: 30,
        backoff_max_secs: 1800,
        max_receives: Some(60),
        ..WorkerPolicy::default()
    };
    // The alerts fire over the outage's first hour.
    let every = (3600 / alerts).max(1);
    let (mut fired, mut invocations_down, mut invocations_up) = (0, 0u64, 0u64);
    let mut busy = Duration::ZERO;
    let mut empty_at = None;
    let mut max_receives = 0;
    let started = Instant::now();
    while empty_at.is_none() {
        let t = now.load(Ordering::SeqCst);
        if fired < alerts && (t - t0) % every == 0 {
            let alert = Alert::new(format!("alert-{fired}"), MonitorCondition::Fired);
            let body = format!("{{\"n\":{fired}}}");
            delivery
                .accept(&alert, body.as_bytes())
                .await
                .expect("queued");
            fired += 1;
        }
        if (t - t0) % 60 == 0 {
            breaker.round(itsm.as_ref(), Some(&mapping)).await;
        }
        if !mapping.0.load(Ordering::SeqCst) {
            for _ in 0..pollers {
                let batch: Vec<Message> = {
                    let mut q = queue.messages.lock().unwrap();
                    let mut taken = Vec::new();
                    let mut rest = VecDeque::new();
                    while let Some(m) = q.pop_front() {
                        if taken.len() < 10 && m.visible_at <= t {
                            taken.push(m);
                        } else {
                            rest.push_back(m);
                        }
                    }
                    *q = rest;
                    taken
                };
                if batch.is_empty() {
                    break;
                }
                let received: Vec<Result<Received, String>> = batch
                    .iter()
                    .map(|m| {
                        Ok(Received {
                            alert: m.alert.clone(),
                            seq: m.seq,
                            group: correlation_key(&m.alert.alert_id),
                            receives: m.receives + 1,
                        })
                    })
                    .collect();
                let begun = Instant::now();
                let fates = delivery.deliver_batch(&received, &policy).await;
                busy += begun.elapsed();
                if t < up_at {
                    invocations_down += 1;
                } else {
                    invocations_up += 1;
                }
                let mut q = queue.messages.lock().unwrap();
                for (mut m, fate) in batch.into_iter().zip(fates) {
                    m.receives += 1;
                    max_receives = max_receives.max(m.receives);
                    m.visible_at = match fate {
                        f if f.done() => continue,
                        Fate::Retry { after, .. } => t + after.as_secs() as i64,
                        Fate::Skipped => t,
                        _ => t + VISIBILITY_SECS,
                    };
                    q.push_back(m);
                }
            }
        }
        if fired == alerts && queue.messages.lock().unwrap().is_empty() {
            empty_at = Some(t);
        }
        now.fetch_add(1, Ordering::SeqCst);
        assert!(t < up_at + 86_400, "the queue did not drain in a day");
    }
    let empty_at = empty_at.unwrap();
    let first = itsm.first_create.load(Ordering::SeqCst);
    let (up_calls, throttled) = (
        itsm.calls_up.load(Ordering::SeqCst),
        itsm.throttled.load(Ordering::SeqCst),
    );
    let drain_secs = (empty_at - first).max(1);
    println!(
        "{alerts} alerts queued during a {hours}-hour outage; ITSM limit {limit}/s; {pollers} pollers"
    );
    println!(
        "  ITSM calls while down: {}",
        itsm.calls_down.load(Ordering::SeqCst)
    );
    println!(
        "  worker invocations while down: {invocations_down}; most receives of one message: {max_receives}"
    );
    println!(
        "  recovery -> first delivery: {} s; -> empty queue: {} s",
        first - up_at,
        empty_at - up_at
    );
    println!(
        "  drain: {} incidents, {:.1}/s = {:.0} % of the limit; {up_calls} calls, {throttled} answered 429 ({:.1} %)",
        itsm.created.load(Ordering::SeqCst),
        alerts as f64 / drain_secs as f64,
        100.0 * alerts as f64 / drain_secs as f64 / limit as f64,
        100.0 * throttled as f64 / up_calls.max(1) as f64,
    );
    println!(
        "  worker invocations while draining: {invocations_up}; in-process time of all batches {:?} (model run {:?})",
        busy,
        started.elapsed()
    );
}
