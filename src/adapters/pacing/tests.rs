//! The pacer on tokio's paused clock: spacing, halving on 429, adding back.

use std::sync::Mutex;

use super::*;

/// Answers 429 for the calls whose index is in `throttle`; notes when each came.
struct Itsm {
    calls: Mutex<Vec<Instant>>,
    throttle: Vec<usize>,
}

impl Itsm {
    fn answer(&self) -> Result<(), ItsmError> {
        let mut calls = self.calls.lock().unwrap();
        calls.push(Instant::now());
        if self.throttle.contains(&(calls.len() - 1)) {
            return Err(ItsmError::Throttled {
                message: "429".into(),
                retry_after: Some(Duration::from_secs(30)),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl ItsmClient for Itsm {
    fn kind(&self) -> &'static str {
        "test"
    }

    async fn set_priority(&self, _: &IncidentRef, _: u8, _: u8) -> Result<(), ItsmError> {
        Ok(())
    }
    async fn create(&self, _: &IncidentDraft) -> Result<IncidentRef, ItsmError> {
        unreachable!()
    }
    async fn find(&self, _: &str) -> Result<Option<IncidentRef>, ItsmError> {
        self.answer().map(|()| None)
    }
    async fn resolve(&self, _: &IncidentRef, _: &Resolution) -> Result<ResolveOutcome, ItsmError> {
        unreachable!()
    }
    async fn reopen(&self, _: &IncidentRef, _: &str) -> Result<(), ItsmError> {
        unreachable!()
    }
    async fn note(&self, _: &IncidentRef, _: &str) -> Result<(), ItsmError> {
        unreachable!()
    }
}

fn gaps_ms(itsm: &Itsm) -> Vec<u128> {
    let calls = itsm.calls.lock().unwrap();
    calls
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn calls_are_spaced_at_the_rate_even_when_made_at_once() {
    let itsm = Arc::new(Itsm {
        calls: Mutex::default(),
        throttle: vec![],
    });
    let paced = Arc::new(Paced::new(itsm.clone(), 10.0));
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let p = paced.clone();
            tokio::spawn(async move { p.find("k").await })
        })
        .collect();
    for c in calls {
        c.await.unwrap().unwrap();
    }
    assert_eq!(gaps_ms(&itsm), [100, 100, 100, 100]);
}

#[tokio::test(start_paused = true)]
async fn a_429_halves_the_rate_and_successes_add_it_back() {
    let itsm = Arc::new(Itsm {
        calls: Mutex::default(),
        throttle: vec![1],
    });
    let paced = Paced::new(itsm.clone(), 10.0);
    for _ in 0..5 {
        let _ = paced.find("k").await;
    }
    // 10/s; the second call is refused: 5/s (200 ms), then +0.5/s a success.
    assert_eq!(gaps_ms(&itsm), [100, 100, 200, 182]);
    assert!((paced.rate().await - 6.5).abs() < 1e-9);
    // Never below a tenth of the configured rate, never above it.
    let refusing = Arc::new(Itsm {
        calls: Mutex::default(),
        throttle: (0..20).collect(),
    });
    let paced = Paced::new(refusing, 10.0);
    for _ in 0..20 {
        let _ = paced.find("k").await;
    }
    assert!((paced.rate().await - 1.0).abs() < 1e-9);
}

#[tokio::test(start_paused = true)]
async fn a_caller_behind_its_schedule_catches_up_half_a_second_and_no_more() {
    let itsm = Arc::new(Itsm {
        calls: Mutex::default(),
        throttle: vec![],
    });
    let paced = Arc::new(Paced::new(itsm.clone(), 10.0));
    paced.find("k").await.unwrap();
    // Idle for a while (between two batches): not owed a burst for all of it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let calls: Vec<_> = (0..9)
        .map(|_| {
            let p = paced.clone();
            tokio::spawn(async move { p.find("k").await })
        })
        .collect();
    for c in calls {
        c.await.unwrap().unwrap();
    }
    // Half a second's worth at once (5 calls, plus the one due), then the rate.
    assert_eq!(gaps_ms(&itsm), [5000, 0, 0, 0, 0, 0, 100, 100, 100]);
    // Behind by less than that: catches up only what it lost.
    let itsm = Arc::new(Itsm {
        calls: Mutex::default(),
        throttle: vec![],
    });
    let paced = Paced::new(itsm.clone(), 10.0);
    for pause_ms in [0, 250, 0, 0, 0] {
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        paced.find("k").await.unwrap();
    }
    // The slot due at 100 ms came at 250; the ones after keep to 200, 300.
    assert_eq!(gaps_ms(&itsm), [250, 0, 50, 100]);
}
