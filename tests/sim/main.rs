//! A deterministic simulation of the bridge under injected faults: the
//! domain's `Delivery`, state machine, worker batch rules and sync round,
//! run against in-memory doubles of the store, SQS FIFO, the ITSM and
//! Azure by a seeded scheduler (see `exec.rs`), with the promise checked as
//! invariants after each run (`check.rs`).
//!
//! - `cargo test --test sim seeded` runs the seeds CI runs (`SIM_SEEDS`,
//!   default 3,000, from `SIM_FIRST`, default 1). Every third seed runs
//!   with grouped routes (`scenario::Grouping`; `SIM_GROUPS=all` makes
//!   every seed grouped, `SIM_GROUPS=none` none): the ITSM clients wrapped
//!   in `Grouped` as bootstrap wraps them, the group round beside the sync
//!   round, and invariants 8-14 (`check.rs`).
//! - `SIM_SEED=N cargo test --test sim seeded -- --nocapture` replays seed
//!   N exactly and prints its trace.
//! - `cargo test --test sim -- --ignored long_search --nocapture`
//!   runs seeds until ten million scheduler steps (`SIM_STEPS`) and prints
//!   the figures docs/RELIABILITY.md quotes.
//!
//! A failing seed prints `seed N`, the invariants it broke and the trace of
//! the alerts concerned; the whole trace goes to a file beside.

mod actors;
mod azure;
mod check;
mod exec;
mod feed;
mod itsm;
mod ledger;
mod order;
mod queue;
mod scenario;
mod store;
mod worker;
mod world;

use std::collections::BTreeSet;
use std::time::Instant;

use check::Violation;
use exec::{Rng, Step};
use itsm_bridge::domain::ports::IncidentStatus;
use scenario::{FAULT_PHASE, QUIET, START, Scenario, TTL_SECS};
use world::{Event, World};

/// What one seed did.
pub struct Run {
    pub seed: u64,
    pub violations: Vec<Violation>,
    pub trace: Vec<Step>,
    pub steps: u64,
    pub calls: u64,
    pub injected: u64,
    /// Facts the invariants were checked against.
    pub checked: usize,
}

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Runs seed `seed`: the fault phase, the quiet phase, its checks; then,
/// if some alert resolves only months later, a jump past the records'
/// lifetime, those notifications, and the checks again.
pub fn run(seed: u64) -> Run {
    let (w, violations, checked) = simulate(seed);
    let (calls, injected) = w.ctx.counts();
    Run {
        seed,
        violations,
        trace: w.ctx.trace(),
        steps: w.steps,
        calls,
        injected,
        checked,
    }
}

fn simulate(seed: u64) -> (World, Vec<Violation>, usize) {
    let mut rng = Rng::new(seed ^ 0x5eed_5eed);
    let lag = env("SIM_JIRA_LAG_MAX").unwrap_or(10) as i64;
    let parts = scenario::Without::from_env();
    // Grouping draws from a generator of its own: a grouped seed's other
    // choices are those it would make without grouping.
    let mut grouping = Rng::new(seed ^ 0x960_9ed5);
    let grouped = scenario::grouped(seed, &parts).then_some(&mut grouping);
    let sc = Scenario::new(&mut rng, lag, &parts, grouped);
    let mut w = World::new(seed, sc);
    let end = START + FAULT_PHASE + QUIET;
    let mut violations = Vec::new();
    if let Err(e) = w.run(end) {
        violations.push(Violation {
            invariant: 6,
            alerts: Vec::new(),
            detail: e,
        });
    }
    violations.extend(check::check(&w, false));
    let mut checked = check::facts(&w);
    let late: Vec<usize> = (0..w.sc.notifications.len())
        .filter(|&i| w.sc.notifications[i].late)
        .collect();
    if !late.is_empty() {
        let resume = START + FAULT_PHASE + QUIET + TTL_SECS + 24 * 3600;
        w.jump(resume - 300);
        for i in late {
            for copy in 0..w.sc.notifications[i].copies {
                w.at(
                    resume,
                    Event::Send {
                        notif: i,
                        copy,
                        n: 0,
                    },
                );
            }
        }
        if let Err(e) = w.run(resume + QUIET) {
            violations.push(Violation {
                invariant: 6,
                alerts: Vec::new(),
                detail: e,
            });
        }
        for v in check::check(&w, true) {
            if !violations.iter().any(|seen| seen.detail == v.detail) {
                violations.push(v);
            }
        }
        checked += check::facts(&w);
    }
    (w, violations, checked)
}

/// The trace lines of the alerts a violation concerns: every line that
/// names one, every line of a task started for one, and the world's own.
fn relevant(run: &Run) -> Vec<&Step> {
    let names: BTreeSet<&str> = run
        .violations
        .iter()
        .flat_map(|v| v.alerts.iter().map(String::as_str))
        .filter(|n| !n.is_empty())
        .collect();
    let names_it = |s: &str| {
        s.split(|c: char| !c.is_ascii_alphanumeric())
            .any(|w| names.contains(w))
    };
    let tasks: BTreeSet<usize> = run
        .trace
        .iter()
        .filter(|s| s.what.starts_with("start ") && names_it(&s.what))
        .map(|s| s.task)
        .collect();
    run.trace
        .iter()
        .filter(|s| names.is_empty() || s.task == 0 || tasks.contains(&s.task) || names_it(&s.what))
        .collect()
}

/// Prints a failing seed: its number, what it broke, its trace.
fn report(run: &Run) -> String {
    let mut out = format!("seed {}\n", run.seed);
    for v in &run.violations {
        out.push_str(&format!("  {v}\n"));
    }
    let path = format!("{}/sim-seed-{}.log", env!("CARGO_TARGET_TMPDIR"), run.seed);
    let full: String = run.trace.iter().map(|s| format!("{s}\n")).collect();
    let _ = std::fs::write(&path, &full);
    out.push_str(&format!(
        "trace of the alerts concerned (all {} steps in {path}):\n",
        run.trace.len()
    ));
    for s in relevant(run) {
        out.push_str(&format!("  {s}\n"));
    }
    out.push_str(&format!(
        "replay: SIM_SEED={} cargo test --test sim seeded -- --nocapture\n",
        run.seed
    ));
    out
}

/// Figures of a batch of seeds.
#[derive(Default)]
struct Tally {
    seeds: u64,
    steps: u64,
    calls: u64,
    injected: u64,
    checked: usize,
    failed: Vec<u64>,
}

fn sweep(first: u64, keep_going: impl Fn(&Tally) -> bool) -> (Tally, Option<Run>) {
    let mut t = Tally::default();
    let mut first_failure = None;
    let mut seed = first;
    while keep_going(&t) {
        let r = run(seed);
        t.seeds += 1;
        t.steps += r.steps;
        t.calls += r.calls;
        t.checked += r.checked;
        t.injected += r.injected;
        if r.violations.is_empty() && env("SIM_VERBOSE").is_some() {
            eprintln!("seed {seed} steps {}: ok", r.steps);
        }
        if !r.violations.is_empty() {
            if env("SIM_VERBOSE").is_some() {
                for v in &r.violations {
                    eprintln!("seed {seed} steps {}: {v}", r.steps);
                }
                let _ = report(&r);
            }
            t.failed.push(seed);
            if first_failure.is_none() {
                first_failure = Some(r);
            }
        }
        seed += 1;
    }
    (t, first_failure)
}

/// The seeds CI runs, or the one `SIM_SEED` names (with its trace).
#[test]
fn seeded_runs_keep_the_promise() {
    if let Some(seed) = env("SIM_SEED") {
        let r = run(seed);
        for s in &r.trace {
            println!("{s}");
        }
        assert!(r.violations.is_empty(), "{}", report(&r));
        return;
    }
    let count = env("SIM_SEEDS").unwrap_or(3000);
    let first = env("SIM_FIRST").unwrap_or(1);
    let started = Instant::now();
    let (t, failure) = sweep(first, |t| t.seeds < count);
    eprintln!(
        "{} seeds, {} steps, {} port calls, {} faults injected, {} facts checked, {:.1} s",
        t.seeds,
        t.steps,
        t.calls,
        t.injected,
        t.checked,
        started.elapsed().as_secs_f64()
    );
    if let Some(r) = failure {
        panic!(
            "{} of {} seeds broke an invariant ({:?}…)\n{}",
            t.failed.len(),
            t.seeds,
            &t.failed[..t.failed.len().min(20)],
            report(&r)
        );
    }
}

/// The long search: seeds until `SIM_STEPS` (ten million) scheduler steps.
#[test]
#[ignore = "the long search: cargo test --test sim -- --ignored long_search --nocapture"]
fn long_search() {
    let budget = env("SIM_STEPS").unwrap_or(10_000_000);
    let first = env("SIM_FIRST").unwrap_or(1_000_000);
    let started = Instant::now();
    let (t, failure) = sweep(first, |t| t.steps < budget);
    println!(
        "seeds {}..{}: {} seeds, {} steps, {} port calls, {} faults injected, {} facts checked, {} failed, {:.1} s",
        first,
        first + t.seeds,
        t.seeds,
        t.steps,
        t.calls,
        t.injected,
        t.checked,
        t.failed.len(),
        started.elapsed().as_secs_f64()
    );
    if let Some(r) = failure {
        panic!("failing seeds {:?}\n{}", t.failed, report(&r));
    }
}

/// The same seed twice gives the same run, step for step: what makes a
/// failing seed worth printing.
#[test]
fn a_seed_replays_exactly() {
    for seed in [3, 17, 4242] {
        let a = run(seed);
        let b = run(seed);
        let text = |r: &Run| r.trace.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(text(&a), text(&b), "seed {seed} diverged");
        assert_eq!(
            (a.steps, a.calls, a.injected),
            (b.steps, b.calls, b.injected)
        );
        assert!(a.steps > 100 && a.injected > 0, "seed {seed} hardly ran");
    }
}

/// The checks are not vacuous: a clean run with one fact broken at a time
/// (a notification lost, a second incident, a second close, a message left
/// waiting) breaks the invariant that says so.
#[test]
fn each_invariant_catches_what_it_is_for() {
    let (mut w, clean, _) = (1..200)
        .map(simulate)
        .find(|(w, v, _)| {
            v.is_empty()
                && !w.ledger.first_ok.is_empty()
                && !w.backend.lock().unwrap().incidents.is_empty()
        })
        .expect("a seed that keeps the promise and opens an incident");
    assert!(clean.is_empty());
    let broken = |w: &World| -> Vec<u8> {
        let mut found: Vec<u8> = check::check(w, true).iter().map(|v| v.invariant).collect();
        found.dedup();
        found
    };

    let answered =
        w.sc.notifications
            .iter()
            .enumerate()
            .find(|(i, n)| {
                w.ledger.first_ok.contains_key(i) && w.ledger.delivered.contains_key(&n.digest)
            })
            .map(|(_, n)| n.digest.clone())
            .expect("a notification answered 2xx and delivered");
    let at = w.ledger.delivered.remove(&answered).expect("delivered");
    assert!(
        broken(&w).contains(&1),
        "a 2xx notification lost: invariant 1"
    );
    w.ledger.delivered.insert(answered, at);

    let copy = w.backend.lock().unwrap().incidents[0].clone();
    w.backend.lock().unwrap().incidents.push(itsm::Incident {
        id: "second".into(),
        ..copy
    });
    assert!(broken(&w).contains(&2), "a second incident: invariant 2");
    w.backend.lock().unwrap().incidents.pop();

    let id = w.sc.alerts[0].id.clone();
    w.azure.raise(&id, START);
    w.azure.alerts.lock().unwrap().get_mut(&id).unwrap().closes += 2;
    assert!(
        broken(&w).contains(&4),
        "an alert closed twice: invariant 4"
    );
    w.azure.alerts.lock().unwrap().get_mut(&id).unwrap().closes -= 2;

    w.queue.redrive_from(vec![queue::Dead {
        body: "{}".into(),
        group: w.sc.alerts[0].key.clone(),
        reason: None,
    }]);
    assert!(
        broken(&w).contains(&6),
        "a message left waiting: invariant 6"
    );
}

/// The same for the grouped invariants: a clean grouped run with a parent
/// that got an update, then one fact broken at a time (a second parent, a
/// grouped alert with an incident of its own, a child named in two
/// updates, the parent resolved by the bridge before any child resolved,
/// an update left in flight).
#[test]
fn each_grouped_invariant_catches_what_it_is_for() {
    use itsm_bridge::domain::grouping::parent_key;
    let (w, gid) = (1..400)
        .filter(|s: &u64| s.is_multiple_of(3))
        .map(simulate)
        .filter(|(_, v, _)| v.is_empty())
        .find_map(|(w, _, _)| {
            let gid = w.store.groups().into_iter().find_map(|(gid, _)| {
                let b = w.backend.lock().unwrap();
                b.incidents
                    .iter()
                    .any(|i| i.key == parent_key(&gid) && !i.journal.is_empty())
                    .then_some(gid)
            })?;
            Some((w, gid))
        })
        .expect("a grouped seed that keeps the promise and writes an update");
    assert!(broken(&w).is_empty());
    let parent = w
        .backend
        .lock()
        .unwrap()
        .incidents
        .iter()
        .position(|i| i.key == parent_key(&gid))
        .expect("the parent");

    let copy = w.backend.lock().unwrap().incidents[parent].clone();
    w.backend.lock().unwrap().incidents.push(itsm::Incident {
        id: "second".into(),
        ..copy.clone()
    });
    assert!(broken(&w).contains(&8), "a second parent: invariant 8");
    w.backend.lock().unwrap().incidents.pop();

    let (_, group) = w
        .store
        .groups()
        .into_iter()
        .find(|(g, _)| *g == gid)
        .expect("the group");
    let child = group.members.keys().next().expect("a child").clone();
    w.backend.lock().unwrap().incidents.push(itsm::Incident {
        id: "own".into(),
        key: child,
        ..copy.clone()
    });
    assert!(
        broken(&w).contains(&9),
        "a grouped alert's own incident: invariant 9"
    );
    w.backend.lock().unwrap().incidents.pop();

    let (at, text) = copy.journal[0].clone();
    let again = text.replacen("update ", "update 9", 1);
    w.backend.lock().unwrap().incidents[parent]
        .journal
        .push((at, again));
    assert!(
        broken(&w).contains(&10),
        "a child named in two updates: invariant 10"
    );
    w.backend.lock().unwrap().incidents[parent].journal.pop();

    w.backend.lock().unwrap().incidents[parent]
        .closes
        .insert(0, (START, itsm::Who::Bridge));
    assert!(
        broken(&w).contains(&11),
        "the parent resolved before any child: invariant 11"
    );
    w.backend.lock().unwrap().incidents[parent].closes.remove(0);

    let mut stuck = group.clone();
    stuck.parent_work.note = Some((text, START));
    w.store.overwrite_group(&gid, &stuck);
    assert!(
        broken(&w).contains(&12),
        "an update left in flight: invariant 12"
    );
    w.store.overwrite_group(&gid, &group);
    assert!(broken(&w).is_empty());
}

/// Invariant 13 (child incidents): a clean run whose group made child
/// incidents, then a child put under another parent, and a child left open
/// after its alert's Resolved was answered.
#[test]
fn the_child_incident_invariant_catches_what_it_is_for() {
    let w = (1..600)
        .filter(|s: &u64| s.is_multiple_of(3))
        .map(simulate)
        .filter(|(_, v, _)| v.is_empty())
        .map(|(w, _, _)| w)
        .find(|w| answered_child(w).is_some())
        .expect("a grouped seed with child incidents that keeps the promise");
    assert!(broken(&w).is_empty());
    let child = answered_child(&w).unwrap();
    let parent = w.backend.lock().unwrap().incidents[child].parent.clone();
    w.backend.lock().unwrap().incidents[child].parent = Some("elsewhere".into());
    assert!(
        broken(&w).contains(&13),
        "under another parent: invariant 13"
    );
    w.backend.lock().unwrap().incidents[child].parent = parent;
    // Closed because its alert resolved (each child's Resolved resolves it):
    // left open instead.
    w.backend.lock().unwrap().incidents[child].status = IncidentStatus::Open;
    assert!(
        broken(&w).contains(&13),
        "open after its alert resolved: invariant 13"
    );
    w.backend.lock().unwrap().incidents[child].status = IncidentStatus::Closed;
    assert!(broken(&w).is_empty());
}

/// Invariant 14: a clean run where a person resolved a group's parent and
/// the round closed a child alert in Azure; then that alert put back open.
#[test]
fn the_persons_resolve_invariant_catches_what_it_is_for() {
    use itsm_bridge::domain::grouping::group::End;
    use itsm_bridge::domain::ports::AlertState;
    let closed_child = |w: &World| {
        w.store.groups().into_iter().find_map(|(_, g)| {
            (g.ended == Some(End::Person)).then_some(())?;
            g.members.keys().find_map(|k| {
                let i = w.sc.alerts.iter().position(|a| &a.key == k)?;
                let a = &w.sc.alerts[i];
                let z = w.azure.get(&a.id)?;
                // Azure did not resolve it itself: the round's to close.
                let resolved = w.sc.notifications.iter().enumerate().any(|(n, x)| {
                    x.alert == i && !x.fired && w.ledger.first_start.contains_key(&n)
                });
                (z.state == AlertState::Closed && a.manageable && !resolved).then(|| a.id.clone())
            })
        })
    };
    let (w, id) = (1..600)
        .filter(|s: &u64| s.is_multiple_of(3))
        .map(simulate)
        .filter(|(_, v, _)| v.is_empty())
        .find_map(|(w, _, _)| closed_child(&w).map(|id| (w, id)))
        .expect("a grouped seed where a person resolved a parent with a child open");
    assert!(broken(&w).is_empty());
    let before = w.azure.get(&id).unwrap().state;
    w.azure.alerts.lock().unwrap().get_mut(&id).unwrap().state = AlertState::New;
    let found = broken(&w);
    w.azure.alerts.lock().unwrap().get_mut(&id).unwrap().state = before;
    assert!(
        found.contains(&14),
        "a child left open: invariant 14 ({found:?})"
    );
    assert!(broken(&w).is_empty());
}

/// A child incident (its index) whose alert's Resolved was answered 2xx.
fn answered_child(w: &World) -> Option<usize> {
    let b = w.backend.lock().unwrap();
    b.incidents.iter().position(|i| {
        i.parent.is_some()
            && i.status == IncidentStatus::Closed
            && w.sc.alerts.iter().enumerate().any(|(a, alert)| {
                alert.key == i.key
                    && w.sc.notifications.iter().enumerate().any(|(n, x)| {
                        x.alert == a && !x.fired && w.ledger.first_ok.contains_key(&n)
                    })
            })
    })
}

/// The invariants a world breaks, each once.
fn broken(w: &World) -> Vec<u8> {
    let mut found: Vec<u8> = check::check(w, true).iter().map(|v| v.invariant).collect();
    found.sort();
    found.dedup();
    found
}
