//! Each ITSM's change feed under concurrent updates: more incidents than a
//! page share the boundary second, and right after the first page is
//! answered a person updates an incident that page held (its update time
//! moves to now, past the round's window). The round must still see every
//! incident that stayed in the window. The fakes (`fake_changes`) sort only
//! by the fields asked for and apply offsets to the result as it stands,
//! as the ITSMs do.

use itsm_bridge::domain::sync::ActionOutcome;

use super::{World, world};
use crate::fakes::Vendor;
use crate::helpers::*;

/// Ten incidents a person resolved: one at T-1, six at T, three at T+1.
async fn resolved_around_one_second(spawn: Spawn, vendor: Vendor, status: &str) -> World {
    let w = world(spawn.var("SYNC_PAGE_SIZE", "4"), vendor, 10).await;
    let t = now() - 300;
    for n in 0..10 {
        let at = match n {
            0 => t - 1,
            1..=6 => t,
            _ => t + 1,
        };
        w.itsm.person(&w.number(n), status, "jane.doe", at);
    }
    // Right after page 1, the first incident of second T on it changes.
    w.itsm.touch_after_page(1, 1);
    w
}

async fn every_alert_closes_once(w: &World) {
    let report = w.round().await;
    assert_eq!(w.itsm.touched().len(), 1, "the touch happened");
    let closed: Vec<String> = w.azure.changes().into_iter().map(|c| c.alert_id).collect();
    let missed: Vec<&String> = w.alerts.iter().filter(|a| !closed.contains(a)).collect();
    assert!(
        missed.is_empty(),
        "every incident that stayed in the window is seen; missed {missed:?}"
    );
    assert_eq!(report.count(ActionOutcome::Sent), 10, "{report:?}");
    assert!(
        w.itsm.change_pages() >= 3,
        "{} pages",
        w.itsm.change_pages()
    );
}

#[tokio::test]
async fn servicenow_pages_miss_nothing_updated_between_them() {
    let w = resolved_around_one_second(Spawn::default(), Vendor::ServiceNow, "6").await;
    every_alert_closes_once(&w).await;
}

#[tokio::test]
async fn bmc_pages_miss_nothing_updated_between_them() {
    let w = resolved_around_one_second(Spawn::default().bmc(), Vendor::Bmc, "Resolved").await;
    every_alert_closes_once(&w).await;
}

#[tokio::test]
async fn jira_cloud_pages_miss_nothing_updated_between_them() {
    let w = resolved_around_one_second(Spawn::default().jira(), Vendor::Jira, "Resolved").await;
    every_alert_closes_once(&w).await;
}

#[tokio::test]
async fn jira_data_center_pages_miss_nothing_updated_between_them() {
    let spawn = Spawn::default()
        .var("ITSM_KIND", "jira")
        .var("JIRA_PROJECT", "OPS")
        .var("JIRA_PAT", JIRA_PAT);
    let w = resolved_around_one_second(spawn, Vendor::Jira, "Resolved").await;
    every_alert_closes_once(&w).await;
}
