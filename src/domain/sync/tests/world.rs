//! The test doubles of the sync round's tests: a change feed, an Azure, a
//! store that can lose a write, and the world that holds them.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::super::*;
use crate::adapters::store::MemoryStore;
use crate::domain::correlation::{
    AzureSync, CorrelationRecord, IncidentRef, RecordState, correlation_key,
};
use crate::domain::ports::{
    AlertState, AzureError, ChangePage, CorrelationStore, IncidentChange, IncidentStatus,
};

pub(super) const NOW: i64 = 1_800_000_000;

/// The ITSM: every incident as it stands, served oldest update first in
/// pages of `page`.
pub(super) struct Feed {
    pub(super) incidents: Mutex<Vec<IncidentChange>>,
    pub(super) windows: Mutex<Vec<ChangeWindow>>,
}

#[async_trait]
impl IncidentChanges for Feed {
    fn kind(&self) -> &'static str {
        "servicenow"
    }

    async fn changed(
        &self,
        window: ChangeWindow,
        cursor: Option<&str>,
    ) -> Result<ChangePage, ItsmError> {
        self.windows.lock().unwrap().push(window);
        let mut all: Vec<IncidentChange> = self
            .incidents
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.updated_at >= window.since && c.updated_at < window.until)
            .cloned()
            .collect();
        all.sort_by_key(|c| c.updated_at);
        let from: usize = cursor.map_or(0, |c| c.parse().unwrap());
        let changes: Vec<_> = all
            .iter()
            .skip(from)
            .take(window.page_size)
            .cloned()
            .collect();
        let next =
            (from + window.page_size < all.len()).then(|| (from + window.page_size).to_string());
        Ok(ChangePage { changes, next })
    }
}

/// Azure: alert states, the calls made, and scripted failures. Like the
/// adapter, it refuses ids that are not Alerts Management alert ids.
#[derive(Default)]
pub(super) struct Azure {
    pub(super) states: Mutex<std::collections::HashMap<String, AlertState>>,
    pub(super) calls: Mutex<Vec<(String, AlertState, String)>>,
    pub(super) reads: AtomicI64,
    /// Every alert id asked about or changed, refused or not.
    pub(super) asked: Mutex<Vec<String>>,
    pub(super) fail: Mutex<Vec<AzureError>>,
    /// Failures of the next state reads.
    pub(super) fail_reads: Mutex<Vec<AzureError>>,
    /// Failures of one alert's changes, every time.
    pub(super) fail_always: Mutex<std::collections::HashMap<String, AzureError>>,
    /// How long each change takes.
    pub(super) slow: Mutex<Option<std::time::Duration>>,
}

impl Azure {
    fn refuse(&self, id: &str) -> Result<(), AzureError> {
        self.asked.lock().unwrap().push(id.to_string());
        if !id.contains("/providers/Microsoft.AlertsManagement/alerts/") {
            return Err(AzureError::NotAnAlert(id.to_string()));
        }
        Ok(())
    }

    pub(super) fn asked_about(&self, id: &str) -> usize {
        self.asked
            .lock()
            .unwrap()
            .iter()
            .filter(|a| *a == id)
            .count()
    }
}

#[async_trait]
impl AlertStates for Azure {
    async fn current(&self, alert_id: &str) -> Result<AlertState, AzureError> {
        self.refuse(alert_id)?;
        self.reads.fetch_add(1, Ordering::SeqCst);
        if let Some(e) = self.fail_reads.lock().unwrap().pop() {
            return Err(e);
        }
        let states = self.states.lock().unwrap();
        Ok(*states.get(alert_id).unwrap_or(&AlertState::New))
    }

    async fn change(&self, id: &str, state: AlertState, comment: &str) -> Result<(), AzureError> {
        self.refuse(id)?;
        let slow = *self.slow.lock().unwrap();
        if let Some(d) = slow {
            tokio::time::sleep(d).await;
        }
        if let Some(e) = self.fail_always.lock().unwrap().get(id) {
            return Err(e.clone());
        }
        if let Some(e) = self.fail.lock().unwrap().pop() {
            return Err(e);
        }
        self.calls
            .lock()
            .unwrap()
            .push((id.to_string(), state, comment.to_string()));
        self.states.lock().unwrap().insert(id.to_string(), state);
        Ok(())
    }
}

impl Azure {
    pub(super) fn calls(&self) -> Vec<(String, AlertState, String)> {
        self.calls.lock().unwrap().clone()
    }
}

/// The memory store, made to lose the write that records what Azure was
/// told (a round killed between its call and its write).
#[derive(Default)]
pub(super) struct Store {
    pub(super) inner: MemoryStore,
    pub(super) lose_record_of_call: AtomicBool,
}

#[async_trait]
impl CorrelationStore for Store {
    async fn get(&self, id: &str, now: i64) -> Result<Option<CorrelationRecord>, StoreError> {
        self.inner.get(id, now).await
    }
    async fn put(&self, r: &CorrelationRecord, v: Option<u64>, now: i64) -> Result<(), StoreError> {
        if r.azure.sent.is_some() && self.lose_record_of_call.swap(false, Ordering::SeqCst) {
            return Err(StoreError::Unavailable("killed".into()));
        }
        self.inner.put(r, v, now).await
    }
}

#[async_trait]
impl SyncStore for Store {
    async fn by_key(&self, k: &str, now: i64) -> Result<Option<CorrelationRecord>, StoreError> {
        self.inner.by_key(k, now).await
    }
    async fn watermark(&self, name: &str) -> Result<Option<Watermark>, StoreError> {
        self.inner.watermark(name).await
    }
    async fn put_watermark(&self, w: &Watermark, v: Option<u64>) -> Result<(), StoreError> {
        self.inner.put_watermark(w, v).await
    }
}

pub(super) struct World {
    pub(super) ids: Vec<String>,
    pub(super) page: usize,
    pub(super) feed: Arc<Feed>,
    pub(super) azure: Arc<Azure>,
    pub(super) store: Arc<Store>,
    pub(super) clock: Arc<AtomicI64>,
}

pub(super) fn alert_id(n: usize) -> String {
    format!("/subscriptions/s/providers/Microsoft.AlertsManagement/alerts/{n:08}")
}

impl World {
    pub(super) async fn new(alerts: usize, page: usize) -> World {
        World::with_ids((0..alerts).map(alert_id).collect(), page).await
    }

    /// One open incident per alert id, incident `n` for `ids[n]`.
    pub(super) async fn with_ids(ids: Vec<String>, page: usize) -> World {
        let store = Arc::new(Store::default());
        let mut incidents = Vec::new();
        for (n, id) in ids.iter().enumerate() {
            let id = id.clone();
            let incident = IncidentRef {
                id: format!("{n:032x}"),
                number: format!("INC{n:07}"),
            };
            store
                .put(
                    &record(&id, RecordState::Open, Some(incident.clone())),
                    None,
                    NOW,
                )
                .await
                .unwrap();
            incidents.push(IncidentChange {
                correlation_key: correlation_key(&id),
                incident,
                status: IncidentStatus::Open,
                status_label: "New".into(),
                updated_at: NOW - 3600,
                updated_by: Some("bridge.integration".into()),
            });
        }
        World {
            ids,
            page,
            feed: Arc::new(Feed {
                incidents: Mutex::new(incidents),
                windows: Mutex::default(),
            }),
            azure: Arc::default(),
            store,
            clock: Arc::new(AtomicI64::new(NOW)),
        }
    }

    pub(super) fn sync(&self, settings: SyncSettings) -> AlertSync {
        let settings = SyncSettings {
            page_size: self.page,
            ..settings
        };
        let clock = self.clock.clone();
        AlertSync::new(
            self.feed.clone(),
            self.store.clone(),
            self.azure.clone(),
            settings,
            Arc::new(move || clock.load(Ordering::SeqCst)),
        )
    }

    /// A person sets incident `n` to `status`, a few minutes ago.
    pub(super) fn person(&self, n: usize, status: IncidentStatus, label: &str) {
        self.person_ago(n, status, label, 300);
    }

    /// A person sets incident `n` to `status`, `secs` ago.
    pub(super) fn person_ago(&self, n: usize, status: IncidentStatus, label: &str, secs: i64) {
        let now = self.clock.load(Ordering::SeqCst);
        let mut incidents = self.feed.incidents.lock().unwrap();
        let c = &mut incidents[n];
        c.status = status;
        c.status_label = label.into();
        c.updated_at = now - secs;
        c.updated_by = Some("jane.doe".into());
    }

    pub(super) fn now(&self) -> i64 {
        self.clock.load(Ordering::SeqCst)
    }

    pub(super) fn later(&self, secs: i64) {
        self.clock.fetch_add(secs, Ordering::SeqCst);
    }

    pub(super) async fn record(&self, n: usize) -> CorrelationRecord {
        self.store
            .get(&self.ids[n], i64::MIN)
            .await
            .unwrap()
            .unwrap()
    }
}

pub(super) fn record(
    id: &str,
    state: RecordState,
    incident: Option<IncidentRef>,
) -> CorrelationRecord {
    CorrelationRecord {
        alert_id: id.into(),
        correlation_key: correlation_key(id),
        itsm: "servicenow".into(),
        state,
        incident,
        fired_at: None,
        resolved_at: None,
        lease_until: 0,
        updated_at: NOW,
        expires_at: NOW + 86_400 * 90,
        version: 1,
        queued_seq: 0,
        delivered_seq: 0,
        queued_at: 0,
        queued_digest: None,
        queue: Default::default(),
        look_until: 0,
        azure: AzureSync::default(),
    }
}
