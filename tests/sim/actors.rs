//! The actors around the bridge: Azure sending notifications (and again,
//! on its retry schedule, after an answer that is not 2xx or none within
//! its wait), the SQS event source handing batches to worker processes, the
//! scheduled sync round, and a person working in the ITSM.

use itsm_bridge::adapters::queue::Message;
use itsm_bridge::domain::delivery::Accepted;
use itsm_bridge::domain::delivery::Fate;
use itsm_bridge::inbound::common_schema;
use itsm_bridge::inbound::http::Failure;

use crate::scenario::{FAULT_PHASE, START};
use std::cmp::Reverse;

use crate::world::{
    AZURE_RETRIES, AZURE_WAIT, Attempt, BATCH, Done, Event, Kind, SYNC_EVERY, SYNC_TIMEOUT,
    WEBHOOK_TIMEOUT, WEBHOOKS, WORKER_TIMEOUT, WORKERS, World,
};

/// Azure retries these answers (and no answer at all); nothing else.
fn retried(status: u16) -> bool {
    matches!(status, 408 | 429 | 503 | 504)
}

impl World {
    /// Moves the clock to `to` with nothing happening in between: the
    /// schedule's rounds in the gap are skipped (nothing changed), the next
    /// one comes at `to`.
    pub fn jump(&mut self, to: i64) {
        let events = std::mem::take(&mut self.events);
        for Reverse((t, id)) in events {
            if matches!(self.payloads[&id], Event::SyncTick) {
                self.payloads.remove(&id);
            } else {
                self.events.push(Reverse((t, id)));
            }
        }
        self.ctx.set_now(to);
        self.ctx.note(0, "months pass");
        self.at(to, Event::SyncTick);
    }

    /// Azure sends attempt `n` of one copy of a notification.
    pub(crate) fn send(&mut self, notif: usize, copy: u8, n: usize) {
        let now = self.now();
        let (alert, fired, body) = {
            let nt = &self.sc.notifications[notif];
            (nt.alert, nt.fired, nt.body.clone())
        };
        let alert_id = self.sc.alerts[alert].id.clone();
        if fired {
            self.azure.raise(&alert_id, now);
        }
        self.ledger.first_start.entry(notif).or_insert(now);
        let attempt = self.ledger.attempts.len();
        self.ledger.attempts.push(Attempt {
            notif,
            copy,
            n,
            answered: None,
            gave_up: false,
            succeeded: false,
        });
        let what = format!(
            "{} {}{} attempt {}",
            self.sc.alerts[alert].name,
            if fired { "Fired" } else { "Resolved" },
            if copy > 0 { " (copy)" } else { "" },
            n + 1
        );
        if self.busy_webhooks >= WEBHOOKS {
            // Past the reserved concurrency Lambda answers 429 itself.
            self.ctx.note(0, format!("{what}: 429 throttled by Lambda"));
            self.answered(attempt, 429);
            return;
        }
        self.busy_webhooks += 1;
        let process = self.process(false);
        let p = process.clone();
        let parsed = common_schema::parse(&body).expect("the sim's bodies parse");
        let label = format!("webhook p{} {what}", process.id);
        let task = self.spawn(
            Kind::Webhook { attempt, process },
            label,
            WEBHOOK_TIMEOUT,
            Box::pin(async move { Done::Webhook(p.delivery.accept(&parsed, &body).await) }),
        );
        self.ledger.webhook_tasks.insert(task, attempt);
        self.at(now + AZURE_WAIT, Event::AzureGivesUp { attempt });
    }

    /// Azure's wait for an answer ran out: it retries; the invocation runs on.
    pub(crate) fn azure_gives_up(&mut self, attempt: usize) {
        let a = &mut self.ledger.attempts[attempt];
        if a.answered.is_some() {
            return;
        }
        a.gave_up = true;
        self.ctx.note(
            0,
            format!("Azure: no answer to attempt {} of n{}", a.n + 1, a.notif),
        );
        self.retry(attempt);
    }

    fn retry(&mut self, attempt: usize) {
        let a = self.ledger.attempts[attempt].clone();
        if let Some(pause) = AZURE_RETRIES.get(a.n) {
            let at = self.now() + pause;
            self.at(
                at,
                Event::Send {
                    notif: a.notif,
                    copy: a.copy,
                    n: a.n + 1,
                },
            );
        } else {
            self.ctx.note(
                0,
                format!("Azure gives up on n{} after its retries", a.notif),
            );
        }
    }

    /// An answer reached Azure (unless it had stopped waiting).
    fn answered(&mut self, attempt: usize, status: u16) {
        let now = self.now();
        let a = &mut self.ledger.attempts[attempt];
        if a.gave_up {
            return;
        }
        a.answered = Some((now, status));
        let notif = a.notif;
        if (200..300).contains(&status) {
            self.ledger.first_ok.entry(notif).or_insert(now);
        } else if retried(status) {
            self.retry(attempt);
        }
    }

    pub(crate) fn finish(&mut self, task: usize, kind: Kind, done: Done) {
        match (kind, done) {
            (Kind::Webhook { attempt, process }, Done::Webhook(result)) => {
                self.busy_webhooks -= 1;
                self.release(process, false);
                let status = match &result {
                    Ok(Accepted::Processed(p)) => {
                        let digest = self.sc.notifications[self.ledger.attempts[attempt].notif]
                            .digest
                            .clone();
                        let now = self.now();
                        self.ledger.delivered.entry(digest).or_insert(now);
                        self.ctx
                            .note(task, format!("answers 2xx {}", p.outcome.as_str()));
                        200
                    }
                    Ok(Accepted::Queued { seq, reason, .. }) => {
                        self.ctx.note(
                            task,
                            format!("answers 202 queued seq {seq} ({})", reason.as_str()),
                        );
                        202
                    }
                    Err(e) => {
                        let status = Failure::Process(e.clone()).status();
                        self.ctx.note(task, format!("answers {status}: {e}"));
                        status
                    }
                };
                self.ledger.attempts[attempt].succeeded = (200..300).contains(&status);
                self.answered(attempt, status);
            }
            (Kind::Worker { batch, process }, Done::Worker(fates)) => {
                self.busy_workers -= 1;
                self.release(process, true);
                let now = self.now();
                for (m, fate) in batch.iter().zip(&fates) {
                    let seq = Message::decode(&m.body).map_or(0, |x| x.seq);
                    let what = match fate {
                        Fate::Delivered(p) => format!("delivered ({})", p.outcome.as_str()),
                        Fate::AlreadyDelivered => "delivered before: deleted".to_string(),
                        Fate::Parked(why) => format!("parked: {why}"),
                        Fate::Retry { after, why } => {
                            format!("retry in {}s: {why}", after.as_secs())
                        }
                        Fate::Skipped => "skipped".to_string(),
                    };
                    self.ctx.note(
                        task,
                        format!("{} seq {seq}: {what}", self.ctx.name(&m.group)),
                    );
                    if fate.done() {
                        // The event source deletes what the batch did not report failed.
                        self.queue.delete(m.receipt);
                    }
                    match (fate, Message::decode(&m.body)) {
                        (Fate::Delivered(_), Ok(msg)) => {
                            self.ledger.worker_delivered.push((
                                now,
                                m.group.clone(),
                                msg.seq,
                                msg.digest.clone(),
                            ));
                            self.ledger.delivered.entry(msg.digest).or_insert(now);
                        }
                        // "Delivered before" is taken on the record's word;
                        // the check asks whether a delivery of that very
                        // number is what moved the record past it.
                        (Fate::AlreadyDelivered, Ok(msg)) => {
                            self.ledger
                                .already
                                .push((m.group.clone(), msg.seq, msg.digest));
                        }
                        _ => {}
                    }
                }
            }
            (Kind::Sync, Done::Sync(result)) => match result {
                Ok(report) => {
                    let acted: Vec<String> = report
                        .actions
                        .iter()
                        .map(|a| format!("{} {:?}", self.ctx.name(&a.alert_id), a.outcome))
                        .collect();
                    self.ctx.note(
                        task,
                        format!(
                            "round: {} changes, watermark t+{}, {}",
                            report.examined,
                            report.watermark - START,
                            acted.join(", ")
                        ),
                    );
                    self.ledger.reports.push(report);
                }
                Err(e) => self.ctx.note(task, format!("round failed: {e}")),
            },
            (Kind::Person, Done::Person) => {}
            _ => unreachable!("a task's result matches its kind"),
        }
    }

    /// The SQS event source: while a worker is free and a message can be
    /// received, a batch goes to a worker process.
    pub(crate) fn poll_queue(&mut self) {
        let now = self.now();
        while self.busy_workers < WORKERS
            && self.queue.next_receivable(now).is_some_and(|t| t <= now)
        {
            let max = self.ctx.rng(|r| r.range(1, BATCH as i64)) as usize;
            let batch = self.queue.receive(max);
            if batch.is_empty() {
                return;
            }
            self.busy_workers += 1;
            let process = self.process(true);
            let p = process.clone();
            let queue = self.queue.clone();
            let config = self.config.clone();
            let items = batch.clone();
            let label = format!(
                "worker p{} batch [{}]",
                process.id,
                batch
                    .iter()
                    .map(|m| format!(
                        "{} seq {} (receive {})",
                        self.ctx.name(&m.group),
                        Message::decode(&m.body).map_or(0, |x| x.seq),
                        m.receives
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            self.spawn(
                Kind::Worker { batch, process },
                label,
                WORKER_TIMEOUT,
                Box::pin(async move {
                    Done::Worker(
                        crate::worker::deliver_batch(&p.delivery, &config, &queue, &items).await,
                    )
                }),
            );
        }
    }

    /// The scheduled role's invocation: in a grouped seed the group round
    /// first, then the sync round, in one invocation as `inbound::sync`
    /// runs them.
    pub(crate) fn sync_round(&mut self) {
        let sync = self.sync.clone();
        let groups = self.groups.clone();
        let ctx = self.ctx.clone();
        self.spawn(
            Kind::Sync,
            "sync round".into(),
            SYNC_TIMEOUT,
            Box::pin(async move {
                if let Some(groups) = groups {
                    let r = groups.round().await;
                    ctx.note(
                        ctx.current(),
                        format!(
                            "group round: {} groups, {} parents created, {} updates, {} resolved, {} done, {} batched, {} errors",
                            r.groups,
                            r.parents_created,
                            r.updates_written,
                            r.parents_resolved,
                            r.done,
                            r.batched,
                            r.errors
                        ),
                    );
                }
                Done::Sync(sync.round().await)
            }),
        );
        let next = self.now() + SYNC_EVERY;
        self.at(next, Event::SyncTick);
    }

    /// A person works through a few incidents (sometimes one, sometimes
    /// several in the same second, as a list's bulk update does).
    pub(crate) fn person(&mut self) {
        let now = self.now();
        let n = self
            .ctx
            .rng(|r| if r.chance(0.3) { r.range(2, 5) } else { 1 }) as usize;
        let (ctx, backend) = (self.ctx.clone(), self.backend.clone());
        self.spawn(
            Kind::Person,
            "a person".into(),
            SYNC_TIMEOUT,
            Box::pin(async move {
                crate::feed::person(ctx, backend, n).await;
                Done::Person
            }),
        );
        let next = now + self.ctx.rng(|r| r.range(30, 400));
        if next < START + FAULT_PHASE {
            self.at(next, Event::Person);
        }
    }
}
