//! Hole 2: an ITSM whose search lags its writes (Jira's index). The guard
//! that refused to trust an empty search lived in one process's memory, so
//! the process that took over after a lost create made a second issue.

use super::*;

const LAG: i64 = 15;

/// Creates show in `find` only `LAG` seconds after they happen; the next
/// create's answer can be lost after the issue was made.
struct Laggy {
    now: Arc<AtomicI64>,
    issues: Mutex<Vec<(String, i64)>>,
    lose_next_answer: AtomicBool,
    resolved: Mutex<Vec<String>>,
}

#[async_trait]
impl ItsmClient for Laggy {
    fn kind(&self) -> &'static str {
        "laggy"
    }

    async fn set_priority(&self, _: &IncidentRef, _: u8, _: u8) -> Result<(), ItsmError> {
        Ok(())
    }
    fn create_settle_secs(&self) -> i64 {
        LAG
    }
    async fn create(&self, d: &IncidentDraft) -> Result<IncidentRef, ItsmError> {
        let mut issues = self.issues.lock().unwrap();
        issues.push((d.correlation_key.clone(), self.now.load(Ordering::SeqCst)));
        if self.lose_next_answer.swap(false, Ordering::SeqCst) {
            return Err(ItsmError::Unanswered("timed out".into()));
        }
        Ok(issue(issues.len()))
    }
    async fn find(&self, key: &str) -> Result<Option<IncidentRef>, ItsmError> {
        let now = self.now.load(Ordering::SeqCst);
        let issues = self.issues.lock().unwrap();
        Ok(issues
            .iter()
            .position(|(k, at)| k == key && at + LAG <= now)
            .map(|i| issue(i + 1)))
    }
    async fn resolve(&self, i: &IncidentRef, _: &Resolution) -> Result<ResolveOutcome, ItsmError> {
        self.resolved.lock().unwrap().push(i.number.clone());
        Ok(ResolveOutcome::Resolved)
    }
    async fn reopen(&self, _: &IncidentRef, _: &str) -> Result<(), ItsmError> {
        Ok(())
    }
    async fn note(&self, _: &IncidentRef, _: &str) -> Result<(), ItsmError> {
        Ok(())
    }
}

fn issue(n: usize) -> IncidentRef {
    IncidentRef {
        id: format!("1000{n}"),
        number: format!("OPS-{n}"),
    }
}

/// Two processes (say the webhook's container and the worker) over one store.
fn two_processes() -> (Bridge, Bridge, Arc<Laggy>, Arc<AtomicI64>) {
    let now = Arc::new(AtomicI64::new(1_750_000_000));
    let itsm = Arc::new(Laggy {
        now: now.clone(),
        issues: Mutex::default(),
        lose_next_answer: AtomicBool::new(true),
        resolved: Mutex::default(),
    });
    let store = Arc::new(MemoryStore::new());
    let t = now.clone();
    let clock: Clock = Arc::new(move || t.load(Ordering::SeqCst));
    let settings = Settings {
        retry: RetryPolicy {
            deadline: Duration::ZERO,
            ..RetryPolicy::default()
        },
        ..Settings::default()
    };
    let bridge = || Bridge::new(itsm.clone(), store.clone(), settings.clone(), clock.clone());
    (bridge(), bridge(), itsm, now)
}

#[tokio::test]
async fn the_process_that_takes_over_after_a_lost_create_makes_no_second_issue() {
    let (inline, worker, itsm, now) = two_processes();
    let fired = Alert::new("a", MonitorCondition::Fired);
    let lost = inline.process(&fired).await;
    assert!(matches!(lost, Err(ProcessError::Itsm(_))), "{lost:?}");
    now.fetch_add(2, Ordering::SeqCst);
    let early = worker.process(&fired).await;
    assert!(
        matches!(&early, Err(ProcessError::Itsm(e)) if e.is_transient()),
        "an empty search moments after a lost create proves nothing: {early:?}"
    );
    assert_eq!(itsm.issues.lock().unwrap().len(), 1, "no second issue");
    now.fetch_add(LAG, Ordering::SeqCst);
    let found = worker.process(&fired).await.unwrap();
    assert_eq!(found.outcome, Outcome::Recovered);
    assert_eq!(itsm.issues.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_resolve_after_a_lost_create_waits_for_the_search_to_show_it() {
    let (inline, worker, itsm, now) = two_processes();
    let fired = Alert::new("a", MonitorCondition::Fired);
    let resolved = Alert::new("a", MonitorCondition::Resolved);
    assert!(inline.process(&fired).await.is_err());
    now.fetch_add(2, Ordering::SeqCst);
    let early = worker.process(&resolved).await;
    assert!(
        matches!(&early, Err(ProcessError::Itsm(e)) if e.is_transient()),
        "not resolved_without_incident while the issue may hide: {early:?}"
    );
    now.fetch_add(LAG, Ordering::SeqCst);
    let done = worker.process(&resolved).await.unwrap();
    assert_eq!(done.outcome, Outcome::Resolved);
    assert_eq!(*itsm.resolved.lock().unwrap(), ["OPS-1"]);
}
