//! The storm: 1,000 alerts of one rule over 5 minutes, every
//! notification delivered twice and the first one ten times at once, the
//! scheduled round every minute; then every Resolved, twice.

use super::*;

/// The storm, with the ITSM down for its first `down_secs`.
async fn storm(down_secs: i64) -> Rig {
    let r = rig(
        json!({"by": ["alert_rule", "resource_group"], "notes_every_secs": 60,
                       "max_listed": 2000}),
    );
    r.itsm.down.store(down_secs > 0, Ordering::SeqCst);
    r.at(0);
    let first = r.alert(0, MonitorCondition::Fired, Severity::Sev3);
    let tenfold = (0..10).map(|_| r.bridge.process(&first));
    for result in futures::future::join_all(tenfold).await {
        assert!(result.is_ok(), "{result:?}");
    }
    for vm in 1..1000 {
        let t = (vm as i64 * 300) / 1000;
        if t >= down_secs {
            r.itsm.down.store(false, Ordering::SeqCst);
        }
        if vm % 200 == 0 {
            // A more severe child: the parent's priority rises once.
            r.bridge
                .process(&r.alert(vm, MonitorCondition::Fired, Severity::Sev1))
                .await
                .unwrap();
        }
        r.at(t);
        for _ in 0..2 {
            assert!(matches!(
                r.fire(vm).await,
                Outcome::Created | Outcome::Duplicate
            ));
        }
        if vm % 100 == 0 && t % 60 < 1 {
            r.grouped.round().await;
        }
    }
    r.itsm.down.store(false, Ordering::SeqCst);
    for minute in 5..=7 {
        r.at(minute * 60);
        r.grouped.round().await;
    }
    r
}

fn named(r: &Rig) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for (_, note) in r.itsm.notes.lock().unwrap().iter() {
        for line in note.lines() {
            if let Some(name) = line.strip_prefix("- joined: ") {
                *seen.entry(name.to_string()).or_default() += 1;
            }
        }
    }
    seen
}

#[tokio::test]
async fn a_storm_makes_one_parent_with_batched_updates_naming_each_child_once() {
    let r = storm(0).await;
    assert_eq!(r.itsm.parents().len(), 1, "{:?}", r.itsm.parents());
    let notes = r.itsm.notes.lock().unwrap().len();
    // The parent's create, at most one update a minute over 5 minutes (and
    // one for what the last minute left), then its resolve.
    assert!(notes <= 300 / 60, "{notes} updates");
    let seen = named(&r);
    assert_eq!(seen.len(), 1000);
    assert!(seen.values().all(|n| *n == 1), "a child named twice");
    let groups = r.grouped.round().await;
    assert_eq!(groups.batched, 0, "nothing left unwritten");
    // Resolve all, every Resolved twice: the 999th resolves nothing.
    for vm in 0..999 {
        r.resolve(vm).await;
        r.resolve(vm).await;
    }
    assert!(r.itsm.resolves.lock().unwrap().is_empty());
    r.resolve(999).await;
    assert_eq!(r.itsm.resolves.lock().unwrap().len(), 1);
    // The figures BENCHMARKS.md §12 quotes (`--nocapture`).
    use crate::domain::ports::GroupStore;
    let now = r.now.load(Ordering::SeqCst);
    let mut sizes = Vec::new();
    for shard in 0..16 {
        let id = format!("groups-pending-{shard:x}");
        if let Some(doc) = r.store.group_doc(&id, now).await.unwrap() {
            let ids: serde_json::Value = serde_json::from_str(&doc.body).unwrap();
            for id in ids["groups"].as_array().unwrap() {
                let group = r.store.group_doc(id.as_str().unwrap(), now).await.unwrap();
                sizes.extend(group.map(|g| g.body.len()));
            }
        }
    }
    println!(
        "storm: 1000 alerts; parents created {}, updates {notes}, resolves {}, children named \
         {}; group documents (bytes) {sizes:?}",
        r.itsm.parents().len(),
        r.itsm.resolves.lock().unwrap().len(),
        seen.len()
    );
    let calls =
        |r: &Rig| r.itsm.resolves.lock().unwrap().len() + r.itsm.notes.lock().unwrap().len();
    let before = calls(&r);
    r.resolve(999).await;
    r.resolve(5).await;
    r.grouped.round().await;
    assert_eq!(calls(&r), before, "repeats after it make no ITSM call");
}

#[tokio::test]
async fn the_same_storm_through_an_outage_ends_the_same() {
    let r = storm(150).await;
    assert_eq!(r.itsm.parents().len(), 1, "{:?}", r.itsm.parents());
    let seen = named(&r);
    assert_eq!(seen.len(), 1000);
    assert!(seen.values().all(|n| *n == 1));
    for vm in 0..1000 {
        r.resolve(vm).await;
    }
    assert_eq!(r.itsm.resolves.lock().unwrap().len(), 1);
}
