//! The delivery queue: SQS FIFO as its documentation describes it.
//! Messages of one group come out in the order they went in, and none of a
//! group while one of it is in flight (received, not deleted, visibility
//! not over); a batch may carry several of one group, in order. Each
//! receive counts (`ApproximateReceiveCount`); past `maxReceiveCount` SQS
//! moves the message to the dead-letter queue. A deduplication id seen in
//! the last 5 minutes is accepted and dropped. The worker's parks land in
//! the dead-letter queue with their reason; an operator redrives it.
//! Messages are written as the SQS adapter writes them (`Message::encode`,
//! `Message::dedup_id`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use itsm_bridge::adapters::queue::Message;
use itsm_bridge::domain::ports::{DeliveryQueue, QueueError, QueuedNotification};

use crate::exec::{Class, Ctx};

/// The template's queue: visibility timeout and dead-lettering.
pub const VISIBILITY_SECS: i64 = 1080;
pub const MAX_RECEIVES: u32 = 60;
const DEDUP_SECS: i64 = 300;

#[derive(Debug, Clone)]
pub struct Msg {
    pub group: String,
    pub body: String,
    pub receives: u32,
    pub visible_at: i64,
    /// The receipt of the last receive (0: never received).
    pub receipt: u64,
}

/// A message in the dead-letter queue, and why it is there (`None`: SQS
/// moved it after too many receives).
#[derive(Debug, Clone)]
pub struct Dead {
    pub body: String,
    pub group: String,
    pub reason: Option<String>,
}

/// One received message, as the event source hands it to the worker.
#[derive(Debug, Clone)]
pub struct Received {
    pub receipt: u64,
    pub group: String,
    pub body: String,
    pub receives: u32,
}

#[derive(Default)]
pub struct State {
    pub msgs: Vec<Msg>,
    pub dead: Vec<Dead>,
    dedup: BTreeMap<String, i64>,
    next_receipt: u64,
}

pub struct Fifo {
    state: Mutex<State>,
    ctx: Arc<Ctx>,
}

impl Fifo {
    pub fn new(ctx: Arc<Ctx>) -> Fifo {
        Fifo {
            state: Mutex::default(),
            ctx,
        }
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("queue lock")
    }

    fn push(&self, group: &str, body: String) {
        let now = self.ctx.now();
        let mut s = self.state();
        s.msgs.push(Msg {
            group: group.to_string(),
            body,
            receives: 0,
            visible_at: now,
            receipt: 0,
        });
    }

    /// Groups with a message in flight (received, visibility not over).
    fn in_flight(s: &State, now: i64) -> BTreeSet<String> {
        s.msgs
            .iter()
            .filter(|m| m.visible_at > now)
            .map(|m| m.group.clone())
            .collect()
    }

    /// ReceiveMessage as the event source calls it: up to `max` messages,
    /// oldest first, none of a group with a message in flight.
    pub fn receive(&self, max: usize) -> Vec<Received> {
        let now = self.ctx.now();
        let mut s = self.state();
        let blocked = Self::in_flight(&s, now);
        let mut out = Vec::new();
        let mut dead = Vec::new();
        let mut i = 0;
        while i < s.msgs.len() && out.len() < max {
            if blocked.contains(&s.msgs[i].group) {
                i += 1;
                continue;
            }
            if s.msgs[i].receives >= MAX_RECEIVES {
                // The redrive policy: the receive that would exceed the
                // count moves it to the dead-letter queue instead.
                let m = s.msgs.remove(i);
                dead.push(Dead {
                    body: m.body,
                    group: m.group,
                    reason: None,
                });
                continue;
            }
            s.next_receipt += 1;
            let receipt = s.next_receipt;
            let m = &mut s.msgs[i];
            m.receives += 1;
            m.receipt = receipt;
            m.visible_at = now + VISIBILITY_SECS;
            out.push(Received {
                receipt,
                group: m.group.clone(),
                body: m.body.clone(),
                receives: m.receives,
            });
            i += 1;
        }
        s.dead.extend(dead);
        out
    }

    /// When a receive could next find something (`None`: the queue is
    /// empty): at once for a group with nothing in flight, else when the
    /// last of its messages in flight becomes visible again.
    pub fn next_receivable(&self, now: i64) -> Option<i64> {
        let s = self.state();
        let mut groups: BTreeMap<&str, i64> = BTreeMap::new();
        for m in &s.msgs {
            let t = groups.entry(m.group.as_str()).or_insert(now);
            *t = (*t).max(m.visible_at);
        }
        groups.into_values().min()
    }

    /// DeleteMessage with the receipt of the last receive; a stale receipt
    /// deletes nothing.
    pub fn delete(&self, receipt: u64) {
        self.state().msgs.retain(|m| m.receipt != receipt);
    }

    /// ChangeMessageVisibility, as the worker calls it after a failure.
    pub async fn retry_later(&self, receipt: u64, secs: i64) -> Result<(), QueueError> {
        let subject = format!("receipt {receipt} +{secs}s");
        self.ctx
            .call(
                Class::Queue,
                ("sqs.change_visibility", &subject),
                None,
                || {
                    let now = self.ctx.now();
                    if let Some(m) = self
                        .state()
                        .msgs
                        .iter_mut()
                        .find(|m| m.receipt == receipt && m.visible_at > now)
                    {
                        m.visible_at = now + secs;
                    }
                },
                |_| None,
            )
            .await
            .map_err(|plan| QueueError(format!("simulated {plan:?}")))
    }

    /// The worker's park: SendMessage to the dead-letter queue with the reason.
    pub async fn park(&self, body: &str, group: &str, reason: &str) -> Result<(), QueueError> {
        let subject = format!("{} ({reason})", self.ctx.name(group));
        self.ctx
            .call(
                Class::Queue,
                ("sqs.park", &subject),
                None,
                || {
                    self.state().dead.push(Dead {
                        body: body.to_string(),
                        group: group.to_string(),
                        reason: Some(reason.to_string()),
                    });
                },
                |_| None,
            )
            .await
            .map_err(|plan| QueueError(format!("simulated {plan:?}")))
    }

    /// An operator's redrive: the dead-letter queue back into the queue.
    pub fn redrive(&self) -> usize {
        let dead = std::mem::take(&mut self.state().dead);
        self.redrive_from(dead)
    }

    /// Puts `dead` messages (back) into the queue.
    pub fn redrive_from(&self, dead: Vec<Dead>) -> usize {
        let n = dead.len();
        for d in dead {
            self.push(&d.group, d.body);
        }
        n
    }
}

#[async_trait]
impl DeliveryQueue for Fifo {
    async fn send(&self, n: &QueuedNotification<'_>) -> Result<(), QueueError> {
        let body = Message::encode(n)?;
        let dedup = Message::dedup_id(n.group, n.seq, n.digest);
        let subject = format!("{} seq {}", self.ctx.name(n.alert_id), n.seq);
        self.ctx
            .call(
                Class::Queue,
                ("sqs.send", &subject),
                None,
                || {
                    let now = self.ctx.now();
                    let fresh = {
                        let mut s = self.state();
                        s.dedup.retain(|_, at| now - *at < DEDUP_SECS);
                        if s.dedup.contains_key(&dedup) {
                            false
                        } else {
                            s.dedup.insert(dedup.clone(), now);
                            true
                        }
                    };
                    // A higher number of the group already waiting: this one
                    // lands behind it.
                    let ahead = self
                        .state()
                        .msgs
                        .iter()
                        .filter(|m| m.group == n.group)
                        .filter_map(|m| Message::decode(&m.body).ok().map(|m| m.seq))
                        .filter(|s| *s > n.seq)
                        .max();
                    if fresh {
                        self.push(n.group, body.clone());
                    }
                    (fresh, ahead)
                },
                |(fresh, ahead)| match (fresh, ahead) {
                    (false, _) => Some("a duplicate: dropped".into()),
                    (true, Some(seq)) => Some(format!("lands behind seq {seq}")),
                    (true, None) => None,
                },
            )
            .await
            .map(|_| ())
            .map_err(|plan| QueueError(format!("simulated {plan:?}")))
    }
}

impl Fifo {
    pub fn dead(&self) -> Vec<Dead> {
        self.state().dead.clone()
    }
}
