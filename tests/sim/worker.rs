//! The worker role over the queue double: the domain's batch rules
//! (`Delivery::deliver_batch`) decide what becomes of each message, and
//! this carries it out as `src/inbound/worker.rs` does on SQS: a skip comes
//! back at once, a retry after its backoff (the message's visibility), a
//! park goes to the dead-letter queue with its reason, and a park that
//! fails becomes a retry after the longest backoff.

use std::time::Duration;

use itsm_bridge::config::DeliveryConfig;
use itsm_bridge::domain::delivery::{Delivery, Fate, Received as Item};
use itsm_bridge::inbound::worker::decode;

use crate::queue::{Fifo, Received};

pub async fn deliver_batch(
    delivery: &Delivery,
    config: &DeliveryConfig,
    queue: &Fifo,
    batch: &[Received],
) -> Vec<Fate> {
    let items: Vec<Result<Item, String>> = batch
        .iter()
        .map(|m| {
            decode(&m.body).map(|(msg, alert)| Item {
                alert,
                seq: msg.seq,
                group: msg.group,
                receives: m.receives,
            })
        })
        .collect();
    let fates = delivery
        .deliver_batch(&items, &config.worker_policy())
        .await;
    let mut out = Vec::with_capacity(fates.len());
    for (message, fate) in batch.iter().zip(fates) {
        out.push(carry_out(config, queue, message, fate).await);
    }
    out
}

async fn carry_out(config: &DeliveryConfig, queue: &Fifo, message: &Received, fate: Fate) -> Fate {
    let backoff_max = Duration::from_secs(config.backoff_max_secs);
    match &fate {
        Fate::Skipped => {
            let _ = queue.retry_later(message.receipt, 0).await;
        }
        Fate::Retry { after, .. } => {
            let _ = queue
                .retry_later(message.receipt, after.as_secs() as i64)
                .await;
        }
        Fate::Parked(why) => {
            if let Err(e) = queue.park(&message.body, &message.group, why).await {
                let _ = queue
                    .retry_later(message.receipt, backoff_max.as_secs() as i64)
                    .await;
                return Fate::Retry {
                    after: backoff_max,
                    why: format!("{why}; and parking failed: {e}"),
                };
            }
        }
        Fate::Delivered(_) | Fate::AlreadyDelivered => {}
    }
    fate
}
