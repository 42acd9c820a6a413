//! The seeded executor: one thread, no tokio. Every actor operation is a
//! boxed future; every port call first awaits a one-shot yield, so each
//! port call is a scheduling point. The scheduler (in `world.rs`) picks a
//! ready task with the seeded generator and polls it once with a no-op
//! waker; a task whose port call "crashed" is dropped between two awaits,
//! its claims and leases left behind. Time is a simulated clock in Unix
//! seconds that moves only when the scheduler moves it.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// SplitMix64: small, fast and good enough to pick interleavings; the
/// whole run follows from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1).max(1) as u64) as i64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// What a port call meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Ok,
    /// An error before the call took effect.
    Fail,
    /// The call took effect, its answer was lost (a time-out).
    Lost,
    /// The ITSM refuses the request (4xx).
    Refuse,
    /// The ITSM or Azure asks to slow down (429 with Retry-After).
    Throttle,
    /// The calling task dies before the call takes effect.
    CrashBefore,
    /// The calling task dies after the call took effect.
    CrashAfter,
}

/// The ports that can fail, each with its own fault rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    Store,
    Itsm,
    Queue,
    Azure,
    /// People: never fail.
    Person,
}

/// Fault rates for one class of port, per call.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rates {
    pub fail: f64,
    pub lost: f64,
    pub crash: f64,
    pub slow: f64,
    pub throttle: f64,
}

/// One line of the trace.
#[derive(Debug, Clone)]
pub struct Step {
    pub t: i64,
    pub task: usize,
    pub what: String,
}

/// The state the port doubles and the scheduler share.
pub struct Ctx {
    pub clock: Arc<AtomicI64>,
    /// Where the clock started: the trace shows time since.
    pub start: i64,
    inner: Mutex<Inner>,
}

struct Inner {
    rng: Rng,
    current: usize,
    faults: bool,
    rates: BTreeMap<Class, Rates>,
    crashed: Vec<usize>,
    wake: BTreeMap<usize, i64>,
    /// The trace line of the call each task is waiting in.
    waiting: BTreeMap<usize, usize>,
    trace: Vec<Step>,
    injected: u64,
    calls: u64,
    names: BTreeMap<String, String>,
}

impl Ctx {
    pub fn new(seed: u64, start: i64) -> Ctx {
        Ctx {
            clock: Arc::new(AtomicI64::new(start)),
            start,
            inner: Mutex::new(Inner {
                rng: Rng::new(seed),
                current: 0,
                faults: false,
                rates: BTreeMap::new(),
                crashed: Vec::new(),
                wake: BTreeMap::new(),
                waiting: BTreeMap::new(),
                trace: Vec::new(),
                injected: 0,
                calls: 0,
                names: BTreeMap::new(),
            }),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("sim lock")
    }

    pub fn now(&self) -> i64 {
        self.clock.load(Ordering::SeqCst)
    }

    pub fn set_now(&self, t: i64) {
        self.clock.store(t, Ordering::SeqCst);
    }

    /// Runs `f` with the seeded generator (the one source of choices).
    pub fn rng<T>(&self, f: impl FnOnce(&mut Rng) -> T) -> T {
        f(&mut self.inner().rng)
    }

    pub fn set_rates(&self, class: Class, rates: Rates) {
        self.inner().rates.insert(class, rates);
    }

    /// Faults on or off (off: the quiet phase).
    pub fn set_faults(&self, on: bool) {
        self.inner().faults = on;
    }

    pub fn faults_on(&self) -> bool {
        self.inner().faults
    }

    /// Gives an alert id or correlation key a short name for the trace.
    pub fn name_as(&self, long: &str, short: &str) {
        self.inner()
            .names
            .insert(long.to_string(), short.to_string());
    }

    pub fn name(&self, long: &str) -> String {
        self.inner()
            .names
            .get(long)
            .cloned()
            .unwrap_or_else(|| long.chars().take(12).collect())
    }

    pub fn set_current(&self, task: usize) {
        self.inner().current = task;
    }

    pub fn current(&self) -> usize {
        self.inner().current
    }

    /// When the task may be polled again (a slow call keeps it asleep).
    pub fn wake_at(&self, task: usize) -> i64 {
        self.inner().wake.get(&task).copied().unwrap_or(i64::MIN)
    }

    /// The task is gone: if it was waiting in a call, that call never
    /// happened, and its trace line says so.
    pub fn forget(&self, task: usize) {
        let mut i = self.inner();
        i.wake.remove(&task);
        if let Some(step) = i.waiting.remove(&task) {
            i.trace[step]
                .what
                .push_str(" [never happened: the task died first]");
        }
    }

    /// Tasks whose port call crashed them since the last look.
    pub fn take_crashed(&self) -> Vec<usize> {
        std::mem::take(&mut self.inner().crashed)
    }

    pub fn note(&self, task: usize, what: impl Into<String>) {
        let t = self.now() - self.start;
        self.inner().trace.push(Step {
            t,
            task,
            what: what.into(),
        });
    }

    pub fn trace(&self) -> Vec<Step> {
        self.inner().trace.clone()
    }

    /// Port calls made and faults injected so far.
    pub fn counts(&self) -> (u64, u64) {
        let i = self.inner();
        (i.calls, i.injected)
    }

    /// Decides what one port call of `class` meets, records it in the trace
    /// and puts the caller to sleep for the call's duration. `refusing`:
    /// the ITSM refuses this call whatever the dice say; `down`: it fails.
    fn plan(&self, class: Class, op: &str, subject: &str, forced: Option<Plan>) -> (Plan, usize) {
        let now = self.now();
        let mut i = self.inner();
        i.calls += 1;
        let task = i.current;
        let rates = i.rates.get(&class).copied().unwrap_or_default();
        let faults = i.faults;
        let rng = &mut i.rng;
        // A store call answers within the second; SQS and Azure now and
        // then take one more; an ITSM call takes up to two (a ServiceNow
        // create is typically 1-3 s).
        let mut delay = match class {
            Class::Store | Class::Person => i64::from(rng.chance(0.1)),
            Class::Queue | Class::Azure => i64::from(rng.chance(0.3)),
            Class::Itsm => rng.range(0, 2),
        };
        let mut plan = Plan::Ok;
        let mut slow = false;
        if faults {
            if rng.chance(rates.slow) {
                delay += rng.range(2, 14);
                slow = true;
            }
            let roll = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            let mut edge = rates.fail;
            plan = if roll < edge {
                Plan::Fail
            } else if roll < {
                edge += rates.lost;
                edge
            } {
                Plan::Lost
            } else if roll < {
                edge += rates.throttle;
                edge
            } {
                Plan::Throttle
            } else if roll < edge + rates.crash {
                if rng.chance(0.5) {
                    Plan::CrashBefore
                } else {
                    Plan::CrashAfter
                }
            } else {
                Plan::Ok
            };
        }
        if let Some(f) = forced
            && matches!(plan, Plan::Ok | Plan::Throttle)
        {
            plan = f;
        }
        if plan != Plan::Ok || slow {
            i.injected += 1;
        }
        i.wake.insert(task, now + delay);
        let what = if slow {
            format!("{op} {subject} -> {plan:?} (slow {delay}s)")
        } else {
            format!("{op} {subject} -> {plan:?}")
        };
        i.trace.push(Step {
            t: now - self.start,
            task,
            what,
        });
        (plan, i.trace.len() - 1)
    }

    /// Adds what the call's effect was to its trace line.
    fn amend(&self, step: usize, what: Option<String>) {
        if let Some(what) = what {
            let mut i = self.inner();
            let line = &mut i.trace[step].what;
            line.push_str(": ");
            line.push_str(&what);
        }
    }

    /// One port call: a scheduling point, then `effect` as the plan says.
    /// A crash leaves the task pending for good; the scheduler drops it.
    /// `describe` says what the effect was, for the trace.
    pub async fn call<T>(
        &self,
        class: Class,
        (op, subject): (&str, &str),
        forced: Option<Plan>,
        effect: impl FnOnce() -> T,
        describe: impl Fn(&T) -> Option<String>,
    ) -> Result<T, Plan> {
        let (plan, step) = self.plan(class, op, subject, forced);
        let task = self.current();
        self.inner().waiting.insert(task, step);
        Yield(false).await;
        self.inner().waiting.remove(&task);
        let run = || {
            let t = effect();
            self.amend(step, describe(&t));
            t
        };
        match plan {
            Plan::Ok => Ok(run()),
            Plan::Lost => {
                run();
                Err(Plan::Lost)
            }
            Plan::CrashBefore => self.crash(task).await,
            Plan::CrashAfter => {
                run();
                self.crash(task).await
            }
            other => Err(other),
        }
    }

    async fn crash<T>(&self, task: usize) -> T {
        self.inner().crashed.push(task);
        std::future::pending().await
    }
}

/// Pending once, then ready: hands control back to the scheduler.
struct Yield(bool);

impl Future for Yield {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            Poll::Pending
        }
    }
}

/// A task: one actor operation and what the scheduler needs to know of it.
pub struct Task<D> {
    pub id: usize,
    pub fut: Pin<Box<dyn Future<Output = D>>>,
}

impl<D> Task<D> {
    /// Polls once with a no-op waker: the scheduler, not a waker, decides
    /// when a task runs next.
    pub fn poll(&mut self) -> Poll<D> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        self.fut.as_mut().poll(&mut cx)
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t+{:>6} #{:<4} {}", self.t, self.task, self.what)
    }
}
