//! The world one seed runs in: the doubles, the processes (webhook and
//! worker containers, each with its own `Delivery` and ITSM client, so
//! in-memory state such as a cool-down is per process), the live tasks and
//! the timed events, and the scheduler loop that interleaves them.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use itsm_bridge::config::DeliveryConfig;
use itsm_bridge::domain::delivery::Fate;
use itsm_bridge::domain::delivery::breaker::Breaker;
use itsm_bridge::domain::delivery::{Accepted, Delivery};
use itsm_bridge::domain::grouping::{Grouped, parent_key};
use itsm_bridge::domain::incident::routing::Routing;
use itsm_bridge::domain::outcome::ProcessError;
use itsm_bridge::domain::ports::{Clock, ItsmClient};
use itsm_bridge::domain::retry::RetryPolicy;
use itsm_bridge::domain::settings::Settings;
use itsm_bridge::domain::state_machine::Bridge;
use itsm_bridge::domain::sync::{AlertSync, RoundReport, SyncError, SyncSettings};

use crate::azure::SimAzure;
use crate::exec::{Ctx, Task};
use crate::itsm::{Backend, SimItsm};
pub use crate::ledger::{Attempt, Ledger};
use crate::queue::{Fifo, Received};
use crate::scenario::{START, Scenario, TTL_SECS};
use crate::store::SimStore;

/// The template's limits: the webhook's reserved concurrency, the worker's
/// batch size and concurrency, the functions' time-outs, the sync schedule.
pub const WEBHOOKS: usize = 20;
pub const BATCH: u64 = 5;
pub const WORKERS: usize = 2;
pub const WEBHOOK_TIMEOUT: i64 = 15;
pub const WORKER_TIMEOUT: i64 = 180;
pub const SYNC_TIMEOUT: i64 = 120;
pub const SYNC_EVERY: i64 = 120;
/// Azure waits this long for an answer, and retries after these pauses.
pub const AZURE_WAIT: i64 = 10;
pub const AZURE_RETRIES: [i64; 5] = [5, 20, 5, 40, 5];

/// One process: a webhook or worker container.
pub struct Process {
    pub id: usize,
    pub delivery: Delivery,
}

pub enum Kind {
    Webhook {
        attempt: usize,
        process: Arc<Process>,
    },
    Worker {
        batch: Vec<Received>,
        process: Arc<Process>,
    },
    Sync,
    Person,
}

pub enum Done {
    Webhook(Result<Accepted, ProcessError>),
    Worker(Vec<Fate>),
    Sync(Result<RoundReport, SyncError>),
    Person,
}

#[derive(Debug, Clone, Copy)]
pub enum Event {
    /// Azure sends attempt `n` of copy `copy` of a notification.
    Send {
        notif: usize,
        copy: u8,
        n: usize,
    },
    AzureGivesUp {
        attempt: usize,
    },
    Kill {
        task: usize,
    },
    SyncTick,
    Person,
    Redrive,
    FaultsOff,
}

pub struct World {
    pub ctx: Arc<Ctx>,
    pub sc: Scenario,
    pub store: Arc<SimStore>,
    pub backend: Arc<Mutex<Backend>>,
    pub queue: Arc<Fifo>,
    pub azure: Arc<SimAzure>,
    pub sync: Arc<AlertSync>,
    /// The scheduled role's grouping (its group round), in a grouped seed.
    pub groups: Option<Arc<Grouped>>,
    pub config: DeliveryConfig,
    settings: Settings,
    clock: Clock,
    idle_webhooks: Vec<Arc<Process>>,
    idle_workers: Vec<Arc<Process>>,
    pub busy_webhooks: usize,
    pub busy_workers: usize,
    next_process: usize,
    pub tasks: Vec<Task<Done>>,
    pub kinds: BTreeMap<usize, Kind>,
    next_task: usize,
    pub(crate) events: BinaryHeap<Reverse<(i64, u64)>>,
    pub(crate) payloads: BTreeMap<u64, Event>,
    next_event: u64,
    pub ledger: Ledger,
    pub steps: u64,
}

impl World {
    pub fn new(seed: u64, sc: Scenario) -> World {
        let ctx = Arc::new(Ctx::new(seed, START));
        for a in &sc.alerts {
            ctx.name_as(&a.id, &a.name);
            ctx.name_as(&a.key, &a.name);
        }
        for (class, rates) in &sc.rates {
            ctx.set_rates(*class, *rates);
        }
        let backend = Arc::new(Mutex::new(Backend {
            down: abs(&sc.down),
            refusing: abs(&sc.refusing),
            refuse_p: sc.refuse_p,
            lag_max: sc.lag_max,
            ..Backend::default()
        }));
        let c = ctx.clock.clone();
        let clock: Clock = Arc::new(move || c.load(Ordering::SeqCst));
        let store = Arc::new(SimStore::new(ctx.clone()));
        let queue = Arc::new(Fifo::new(ctx.clone()));
        let azure = Arc::new(SimAzure::new(ctx.clone()));
        let sync = AlertSync::new(
            Arc::new(SimItsm::new(sc.kind, backend.clone(), ctx.clone())),
            store.clone(),
            azure.clone(),
            SyncSettings {
                acknowledge: sc.acknowledge,
                // Small pages, so that rounds cross many page boundaries.
                page_size: sc.page_size,
                ..SyncSettings::default()
            },
            clock.clone(),
        );
        let settings = Settings {
            // No second attempt ever fits: retries are Azure's and the
            // worker's, never a sleep inside the process.
            retry: RetryPolicy {
                deadline: Duration::ZERO,
                attempt: Duration::from_secs(1),
                base: Duration::from_millis(200),
            },
            ttl_secs: TTL_SECS,
            routing: sc.grouping.as_ref().map_or_else(Routing::default, |g| {
                Routing::parse(&g.json, 5).expect("the sim's routing rules")
            }),
            ..Settings::default()
        };
        // The scheduled role's grouping, as bootstrap builds it: the same
        // decorator around an ITSM client of its own.
        let groups = sc.grouping.as_ref().map(|_| {
            let raw = Arc::new(SimItsm::new(sc.kind, backend.clone(), ctx.clone()));
            Arc::new(Grouped::new(raw, store.clone(), clock.clone(), &settings))
        });
        // As bootstrap wires it: a person resolving a group's parent ends
        // the group and closes its open children in Azure.
        let sync = Arc::new(match &groups {
            Some(g) => sync.with_groups(g.clone()),
            None => sync,
        });
        if let Some(g) = &sc.grouping {
            name_groups(&ctx, &sc);
            for (r, rule) in g.rules.iter().enumerate() {
                let p = &rule.policy;
                let children: Vec<&str> = sc
                    .alerts
                    .iter()
                    .filter(|a| a.group == Some(r))
                    .map(|a| a.name.as_str())
                    .collect();
                ctx.note(
                    0,
                    format!(
                        "routing: {} groups {} (window {} s, max age {} s, resolve {:?}, an update every {} s, {} listed, children as {:?})",
                        rule.name,
                        children.join(" "),
                        p.window_secs,
                        p.max_age_secs,
                        p.resolve,
                        p.notes_every_secs,
                        p.max_listed,
                        p.children
                    ),
                );
            }
        }
        let mut world = World {
            ctx,
            sc,
            store,
            backend,
            queue,
            azure,
            sync,
            groups,
            config: DeliveryConfig {
                // The template's redrive policy, which the worker knows.
                max_receives: Some(crate::queue::MAX_RECEIVES),
                ..DeliveryConfig::default()
            },
            settings,
            clock,
            idle_webhooks: Vec::new(),
            idle_workers: Vec::new(),
            busy_webhooks: 0,
            busy_workers: 0,
            next_process: 0,
            tasks: Vec::new(),
            kinds: BTreeMap::new(),
            next_task: 1,
            events: BinaryHeap::new(),
            payloads: BTreeMap::new(),
            next_event: 0,
            ledger: Ledger::default(),
            steps: 0,
        };
        world.ctx.set_faults(true);
        for (i, n) in world.sc.notifications.clone().iter().enumerate() {
            if n.late {
                continue;
            }
            for copy in 0..n.copies {
                let jitter = world.ctx.rng(|r| r.range(0, 3)) * i64::from(copy);
                world.at(
                    START + n.send_at + jitter,
                    Event::Send {
                        notif: i,
                        copy,
                        n: 0,
                    },
                );
            }
        }
        world.at(START, Event::SyncTick);
        if world.sc.person {
            world.at(START + 60, Event::Person);
        }
        world.at(START + crate::scenario::FAULT_PHASE, Event::FaultsOff);
        // Once the ITSM is fixed, an operator redrives the dead-letter queue
        // every ten minutes for most of the quiet hour.
        for minutes in [5, 15, 25, 35, 45] {
            world.at(
                START + crate::scenario::FAULT_PHASE + 60 * minutes,
                Event::Redrive,
            );
        }
        world
    }

    pub fn now(&self) -> i64 {
        self.ctx.now()
    }

    pub fn at(&mut self, t: i64, event: Event) {
        self.next_event += 1;
        self.events.push(Reverse((t, self.next_event)));
        self.payloads.insert(self.next_event, event);
    }

    /// A process with its own `Delivery` and ITSM client.
    pub fn process(&mut self, worker: bool) -> Arc<Process> {
        let idle = if worker {
            &mut self.idle_workers
        } else {
            &mut self.idle_webhooks
        };
        if let Some(p) = idle.pop() {
            return p;
        }
        self.next_process += 1;
        let raw = Arc::new(SimItsm::new(
            self.sc.kind,
            self.backend.clone(),
            self.ctx.clone(),
        ));
        // As bootstrap wires it: grouping around every ITSM client.
        let itsm: Arc<dyn ItsmClient> = match &self.groups {
            Some(_) => Arc::new(Grouped::new(
                raw,
                self.store.clone(),
                self.clock.clone(),
                &self.settings,
            )),
            None => raw,
        };
        let bridge = |s: &World| {
            Bridge::new(
                itsm.clone(),
                s.store.clone(),
                s.settings.clone(),
                s.clock.clone(),
            )
        };
        let delivery = Delivery::new(
            bridge(self),
            bridge(self),
            self.queue.clone(),
            // One breaker for every process, in the shared store.
            Arc::new(Breaker::new(
                self.store.clone(),
                self.sc.kind,
                self.config.breaker,
                self.clock.clone(),
            )),
            self.clock.clone(),
        );
        Arc::new(Process {
            id: self.next_process,
            delivery,
        })
    }

    /// A process goes back to its pool (a crashed one never does: its
    /// memory is gone with it).
    pub fn release(&mut self, p: Arc<Process>, worker: bool) {
        // Lambda retires idle containers now and then.
        if self.ctx.rng(|r| r.chance(0.05)) {
            return;
        }
        if worker {
            self.idle_workers.push(p);
        } else {
            self.idle_webhooks.push(p);
        }
    }

    pub fn spawn(
        &mut self,
        kind: Kind,
        label: String,
        timeout: i64,
        fut: std::pin::Pin<Box<dyn std::future::Future<Output = Done>>>,
    ) -> usize {
        let id = self.next_task;
        self.next_task += 1;
        self.ctx.note(id, format!("start {label}"));
        self.tasks.push(Task { id, fut });
        self.kinds.insert(id, kind);
        let now = self.now();
        self.at(now + timeout, Event::Kill { task: id });
        id
    }

    /// Runs until `until` (absolute) or until nothing is left to do.
    pub fn run(&mut self, until: i64) -> Result<(), String> {
        loop {
            let now = self.now();
            while let Some(&Reverse((t, id))) = self.events.peek() {
                if t > now {
                    break;
                }
                self.events.pop();
                let event = self.payloads.remove(&id).expect("event");
                self.handle(event);
            }
            self.poll_queue();
            let ready: Vec<usize> = (0..self.tasks.len())
                .filter(|&i| self.ctx.wake_at(self.tasks[i].id) <= now)
                .collect();
            if ready.is_empty() {
                let next_event = self.events.peek().map(|Reverse((t, _))| *t);
                let next_task = self.tasks.iter().map(|t| self.ctx.wake_at(t.id)).min();
                let next_poll = (self.busy_workers < WORKERS)
                    .then(|| self.queue.next_receivable(now))
                    .flatten();
                let next = [next_event, next_task, next_poll]
                    .into_iter()
                    .flatten()
                    .min();
                match next {
                    Some(t) if t <= until => self.ctx.set_now(t.max(now + 1)),
                    _ => return Ok(()),
                }
                continue;
            }
            let pick = ready[self.ctx.rng(|r| r.below(ready.len() as u64)) as usize];
            let id = self.tasks[pick].id;
            self.ctx.set_current(id);
            self.steps += 1;
            if self.steps > 2_000_000 {
                return Err("more than 2,000,000 steps: a livelock?".into());
            }
            let polled = self.tasks[pick].poll();
            for crashed in self.ctx.take_crashed() {
                self.kill(crashed, "crashed at a port call");
            }
            if let Poll::Ready(done) = polled
                && let Some(i) = self.tasks.iter().position(|t| t.id == id)
            {
                self.tasks.remove(i);
                self.ctx.forget(id);
                let kind = self.kinds.remove(&id).expect("kind");
                self.finish(id, kind, done);
            }
        }
    }

    /// Drops a live task between two awaits: whatever it wrote stays.
    pub fn kill(&mut self, id: usize, why: &str) {
        let Some(i) = self.tasks.iter().position(|t| t.id == id) else {
            return;
        };
        self.tasks.remove(i);
        self.ctx.forget(id);
        self.ctx.note(id, format!("dies: {why}"));
        match self.kinds.remove(&id).expect("kind") {
            Kind::Webhook { .. } => self.busy_webhooks -= 1,
            Kind::Worker { .. } => self.busy_workers -= 1,
            Kind::Sync | Kind::Person => {}
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Send { notif, copy, n } => self.send(notif, copy, n),
            Event::AzureGivesUp { attempt } => self.azure_gives_up(attempt),
            Event::Kill { task } => self.kill(task, "function time-out"),
            Event::SyncTick => self.sync_round(),
            Event::Person => self.person(),
            Event::Redrive => {
                let n = self.queue.redrive();
                self.ctx
                    .note(0, format!("operator redrives {n} dead-lettered messages"));
            }
            Event::FaultsOff => {
                self.ctx.set_faults(false);
                self.ctx.note(0, "faults stop; the ITSM is fixed");
            }
        }
    }
}

/// Gives each grouped rule's group key its rule's short name (`G0`), and
/// the parents of its first generations theirs (`G0#2`), for the trace.
fn name_groups(ctx: &Ctx, sc: &Scenario) {
    use itsm_bridge::domain::incident::group_key::GroupKey;
    let Some(grouping) = &sc.grouping else { return };
    for rule in &grouping.rules {
        let Some(a) = sc.alerts.iter().position(|a| {
            a.group
                .is_some_and(|r| grouping.rules[r].alert_rule == rule.alert_rule)
        }) else {
            continue;
        };
        let n = sc
            .notifications
            .iter()
            .find(|n| n.alert == a)
            .expect("fires");
        let alert = itsm_bridge::inbound::common_schema::parse(&n.body).expect("parses");
        let key = GroupKey::of(Some(&rule.name), &rule.policy, &alert).id();
        ctx.name_as(&key, &rule.name);
        for generation in 1..=64 {
            let gid = format!("{key}#{generation}");
            ctx.name_as(&parent_key(&gid), &format!("{}#{generation}", rule.name));
        }
    }
}

fn abs(windows: &[(i64, i64)]) -> Vec<(i64, i64)> {
    windows
        .iter()
        .map(|(a, b)| (START + a, START + b))
        .collect()
}
