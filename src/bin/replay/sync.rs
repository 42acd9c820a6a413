//! `replay --sync`: one sync round against the configured ITSM and store.
//! Without `--send` nothing is written anywhere and the Azure requests are
//! shown; with it, they are sent and recorded as the Lambda's round does.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use itsm_bridge::adapters::azure::{AzureDryRun, DEFAULT_API_VERSION};
use itsm_bridge::adapters::clock::system_clock;
use itsm_bridge::adapters::wire::RequestLog;
use itsm_bridge::config::Config;
use itsm_bridge::domain::sync::{ActionOutcome, AlertSync, RoundReport, SyncSettings};
use itsm_bridge::inbound::App;
use itsm_bridge::inbound::sync::summary;
use serde_json::json;

use super::Halt;

/// Runs the round and prints it; whether every action went through.
pub async fn round(
    app: &App,
    config: &Config,
    send: bool,
    log: &Arc<RequestLog>,
    as_json: bool,
    file: Option<&Path>,
    out: &mut impl Write,
) -> Result<bool, Halt> {
    // From a FILE (a scheduled event), its lines name it.
    let event = file.map(|f| f.display().to_string());
    // Alert groups first, as the scheduled role does: parents, due updates.
    if let Some(groups) = &app.groups {
        let r = groups.round().await;
        // The round's ITSM requests (a dry run's, or sent with --itsm).
        let requests = log.take();
        if as_json {
            let mut line = json!({ "groups": r, "itsm_requests": requests });
            if let Some(e) = &event {
                line["event"] = json!(e);
            }
            writeln!(out, "{line}")?;
        } else {
            for q in &requests {
                writeln!(out, "  {} {}", q.method, q.path)?;
                if let Some(body) = &q.body {
                    let pretty = serde_json::to_string_pretty(body).expect("JSON");
                    writeln!(out, "    {}", pretty.replace('\n', "\n    "))?;
                }
            }
            writeln!(
                out,
                "groups: {} with work left; {} parent(s) created, {} update(s) written, {} \
                 parent(s) resolved, {} ended idle, {} finished, {} change(s) waiting for their \
                 update, {} error(s)",
                r.groups,
                r.parents_created,
                r.updates_written,
                r.parents_resolved,
                r.ended_idle,
                r.done,
                r.batched,
                r.errors
            )?;
        }
    }
    let report = if send {
        let sync = app.sync.as_ref().ok_or_else(|| {
            "--sync --send needs the sync role configured: AZURE_TENANT_ID, AZURE_CLIENT_ID and \
             AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH)"
                .to_string()
        })?;
        sync.round().await.map_err(|e| e.to_string())?
    } else {
        let feed = app.sync_feed.clone().expect("bootstrap builds the feed");
        let (base, version, settings) = match &config.sync {
            Some(s) => (
                s.azure.resource_manager.clone(),
                s.azure.api_version.clone(),
                s.settings.clone(),
            ),
            None => (
                url::Url::parse("https://management.azure.com/").expect("URL"),
                DEFAULT_API_VERSION.to_string(),
                SyncSettings::default(),
            ),
        };
        let azure = Arc::new(AzureDryRun::new(base, version, log.clone()));
        let dry = SyncSettings {
            dry_run: true,
            ..settings
        };
        let sync = AlertSync::new(feed.changes, feed.store, azure, dry, system_clock());
        match &app.groups {
            Some(groups) => sync.with_groups(groups.clone()),
            None => sync,
        }
        .round()
        .await
        .map_err(|e| e.to_string())?
    };
    let all_ok = report.count(ActionOutcome::Denied) + report.count(ActionOutcome::Deferred) == 0;
    if !all_ok {
        super::failed();
    }
    let mut requests = log
        .take()
        .into_iter()
        .filter(|r| r.path.contains("/changestate"));
    for a in &report.actions {
        let request = (a.outcome == ActionOutcome::WouldSend)
            .then(|| requests.next())
            .flatten();
        if as_json {
            let mut line = json!(a);
            if let Some(r) = &request {
                line["azure_request"] = json!(r);
            }
            if let Some(e) = &event {
                line["event"] = json!(e);
            }
            writeln!(out, "{line}")?;
        } else {
            let detail = a
                .detail
                .as_deref()
                .map_or(String::new(), |d| format!(" ({d})"));
            writeln!(
                out,
                "{} -> {}: {:?}{detail}\n  alert {}",
                a.incident, a.state, a.outcome, a.alert_id
            )?;
            if let Some(r) = request {
                writeln!(out, "  {} {}", r.method, r.path)?;
                if let Some(b) = &r.body {
                    writeln!(out, "    {b}")?;
                }
            }
        }
    }
    if as_json {
        // The round's summary, also when it had nothing to do.
        let mut line = json!({ "sync": summary(&report) });
        line["sync"]["would_send"] = json!(report.count(ActionOutcome::WouldSend));
        line["sync"]["dry_run"] = json!(!send);
        if let Some(e) = &event {
            line["event"] = json!(e);
        }
        writeln!(out, "{line}")?;
    } else {
        let prefix = event.map_or(String::new(), |e| format!("{e}: "));
        writeln!(out, "{prefix}{}", tally(&report, send))?;
    }
    Ok(all_ok)
}

fn tally(r: &RoundReport, send: bool) -> String {
    let acted = if send {
        format!(
            "{} sent, {} already set, {} gone",
            r.count(ActionOutcome::Sent),
            r.count(ActionOutcome::AlreadySet),
            r.count(ActionOutcome::Gone)
        )
    } else {
        format!(
            "{} would be sent (dry run: --send sends them)",
            r.count(ActionOutcome::WouldSend)
        )
    };
    let held = r.held_by.as_ref().map_or(String::new(), |h| {
        let what = h
            .incident
            .as_deref()
            .map_or(String::new(), |i| format!(" by {i}"));
        format!(
            "\nwatermark held{what} ({}s old): {}",
            r.watermark_age_secs, h.reason
        )
    });
    format!(
        "sync: {} changed incidents, {} needing nothing; {acted}; {} skipped (Azure cannot be \
         told), {} denied, {} deferred{held}",
        r.examined,
        r.needing_nothing,
        r.count(ActionOutcome::Skipped),
        r.count(ActionOutcome::Denied),
        r.count(ActionOutcome::Deferred)
    )
}
