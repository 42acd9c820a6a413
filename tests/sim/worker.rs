//! The worker's batch rules, over the queue double. Until the rules move
//! into the domain, they live in `src/inbound/worker.rs`, tied to
//! `aws_lambda_events`' `SqsMessage` and the SQS client; this is the same
//! logic line for line (batch order, a failed message holding its group's
//! later ones back, `ORDER_PATIENCE`, parking past
//! `WORKER_PERMANENT_ATTEMPTS`), calling the real `Delivery::deliver`.
//! When the domain module lands it replaces this file.

use std::collections::BTreeSet;
use std::time::Duration;

use itsm_bridge::config::DeliveryConfig;
use itsm_bridge::domain::delivery::Delivery;
use itsm_bridge::domain::outcome::ProcessError;
use itsm_bridge::domain::ports::ItsmError;
use itsm_bridge::inbound::worker::{Fate, decode};

use crate::queue::{Fifo, Received};

/// `src/inbound/worker.rs`'s `ORDER_PATIENCE`.
const ORDER_PATIENCE: u32 = 10;

pub async fn deliver_batch(
    delivery: &Delivery,
    config: &DeliveryConfig,
    queue: &Fifo,
    batch: &[Received],
) -> Vec<Fate> {
    let mut failed_groups: BTreeSet<&str> = BTreeSet::new();
    let mut fates = Vec::with_capacity(batch.len());
    for message in batch {
        let group = message.group.as_str();
        let fate = if failed_groups.contains(group) {
            let _ = queue.retry_later(message.receipt, 0).await;
            Fate::Skipped
        } else {
            deliver(delivery, config, queue, message).await
        };
        if let Fate::Retry { after, .. } = &fate {
            failed_groups.insert(group);
            let _ = queue
                .retry_later(message.receipt, after.as_secs() as i64)
                .await;
        }
        fates.push(fate);
    }
    fates
}

async fn deliver(
    delivery: &Delivery,
    config: &DeliveryConfig,
    queue: &Fifo,
    message: &Received,
) -> Fate {
    let receives = message.receives;
    let (m, alert) = match decode(&message.body) {
        Ok(ok) => ok,
        Err(why) => return park(config, queue, message, &why).await,
    };
    let in_order = receives < ORDER_PATIENCE;
    match delivery.deliver(&alert, m.seq, in_order).await {
        Ok(processed) => Fate::Delivered(processed),
        Err(ProcessError::Itsm(e @ ItsmError::Rejected { .. }))
            if receives >= config.permanent_attempts =>
        {
            park(config, queue, message, &e.to_string()).await
        }
        Err(e) => {
            let retry_after = match &e {
                ProcessError::Itsm(ItsmError::Throttled { retry_after, .. }) => *retry_after,
                _ => None,
            };
            Fate::Retry {
                after: config.backoff(receives, retry_after),
                why: e.to_string(),
            }
        }
    }
}

async fn park(config: &DeliveryConfig, queue: &Fifo, message: &Received, why: &str) -> Fate {
    match queue.park(&message.body, &message.group, why).await {
        Ok(()) => Fate::Parked(why.to_string()),
        Err(e) => Fate::Retry {
            after: Duration::from_secs(config.backoff_max_secs),
            why: format!("{why}; and parking failed: {e}"),
        },
    }
}
