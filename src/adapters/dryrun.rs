//! Dry-run ITSM: records the exact requests a real client would send and
//! answers with a synthetic incident, so `replay` shows the whole flow.
//! It cannot see the ITSM: it finds only what it created in this process,
//! and takes every incident it is asked to change as existing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::wire::{ItsmRequest, RequestLog, WireFormat, checked_key};
use crate::domain::correlation::IncidentRef;
use crate::domain::incident::mapping::{IncidentDraft, Resolution};
use crate::domain::ports::{
    ChangePage, ChangeWindow, IncidentChanges, ItsmClient, ItsmError, ResolveOutcome,
};

pub struct DryRun {
    format: Box<dyn WireFormat>,
    /// Where replay collects the requests; without one they are only logged.
    log: Option<Arc<RequestLog>>,
    /// What this process "created", by correlation key.
    created: Mutex<HashMap<String, IncidentRef>>,
}

impl DryRun {
    pub fn new(format: Box<dyn WireFormat>, log: Option<Arc<RequestLog>>) -> DryRun {
        DryRun {
            format,
            log,
            created: Mutex::default(),
        }
    }

    fn show_all(&self, requests: Vec<ItsmRequest>) {
        requests.into_iter().for_each(|r| self.show(r));
    }

    fn show(&self, request: ItsmRequest) {
        match &self.log {
            Some(log) => log.push(request),
            None => {
                tracing::info!(method = request.method, path = %request.path, "dry-run: would send")
            }
        }
    }
}

#[async_trait]
impl ItsmClient for DryRun {
    fn kind(&self) -> &'static str {
        "dry-run"
    }

    async fn create(&self, draft: &IncidentDraft) -> Result<IncidentRef, ItsmError> {
        self.show(self.format.create(draft));
        // Derived from the key, so the same alert always gets the same fake incident.
        let hex = draft.correlation_key.trim_start_matches("azmon-");
        let digits: String = hex
            .bytes()
            .take(7)
            .map(|b| char::from(b'0' + b % 10))
            .collect();
        let incident = IncidentRef {
            id: hex.chars().take(32).collect(),
            number: format!("DRY{digits}"),
        };
        self.created
            .lock()
            .expect("dry-run lock")
            .insert(draft.correlation_key.clone(), incident.clone());
        Ok(incident)
    }

    async fn find(&self, correlation_key: &str) -> Result<Option<IncidentRef>, ItsmError> {
        self.show(self.format.find(checked_key(correlation_key)?));
        let created = self.created.lock().expect("dry-run lock");
        Ok(created.get(correlation_key).cloned())
    }

    async fn reopen(&self, incident: &IncidentRef, note: &str) -> Result<(), ItsmError> {
        self.show_all(self.format.reopen(incident, note)?);
        Ok(())
    }

    async fn note(&self, incident: &IncidentRef, note: &str) -> Result<(), ItsmError> {
        self.show_all(self.format.note(incident, note)?);
        Ok(())
    }

    async fn set_priority(
        &self,
        i: &IncidentRef,
        impact: u8,
        urgency: u8,
    ) -> Result<(), ItsmError> {
        self.show_all(self.format.set_priority(i, impact, urgency)?);
        Ok(())
    }

    async fn resolve(
        &self,
        incident: &IncidentRef,
        resolution: &Resolution,
    ) -> Result<ResolveOutcome, ItsmError> {
        self.show_all(self.format.resolve(incident, resolution)?);
        Ok(ResolveOutcome::Resolved)
    }
}

/// Dry-run sees no ITSM, so it has no changes to report.
#[async_trait]
impl IncidentChanges for DryRun {
    fn kind(&self) -> &'static str {
        "dry-run"
    }

    async fn changed(
        &self,
        _window: ChangeWindow,
        _cursor: Option<&str>,
    ) -> Result<ChangePage, ItsmError> {
        Ok(ChangePage::default())
    }
}
