//! `replay --drain`: delivers the state folder's outbox, oldest first, now
//! (the outbox's own order is the alert's: no waiting for a predecessor).
//! The same rules as the worker, as one batch: an alert whose notification
//! fails keeps its later ones queued behind it; what the ITSM refuses (a
//! 4xx) is parked and reported rather than retried for ever; the first
//! sign that the ITSM is down stops the drain (the ITSM's breaker opens for
//! every role), with everything left queued for the next run.
//!
//! Without `--send` the drain is a dry run over a copy of the state file
//! (`scratch`): it shows what it would send, and the outbox, the parked
//! notifications and the records stay as they were.

use std::io::Write;
use std::path::PathBuf;

use itsm_bridge::adapters::wire::RequestLog;
use itsm_bridge::config::{Config, StoreConfig};
use itsm_bridge::domain::delivery::{Fate, Received, WorkerPolicy};
use itsm_bridge::inbound::{App, QueueHandle, worker};
use serde_json::{Value, json};

use super::Halt;

/// What became of one outbox entry.
enum Drained {
    Delivered(Value),
    Parked(String),
    Held(String),
}

/// A copy of the state file for a dry-run drain, removed when dropped.
pub struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Points `config` at a copy of its embedded store, so that a dry run
/// consumes nothing: the outbox, what is parked and the records stay.
///
/// # Errors
/// The copy could not be made.
pub fn scratch(config: &mut Config) -> Result<Scratch, String> {
    let StoreConfig::Embedded(dir) = &config.store else {
        return Err(
            "--drain delivers the embedded store's outbox; it is not used with --store dynamodb"
                .into(),
        );
    };
    let copy = std::env::temp_dir().join(format!("itsm-bridge-dry-drain-{}", std::process::id()));
    std::fs::create_dir_all(&copy).map_err(|e| format!("{}: {e}", copy.display()))?;
    let scratch = Scratch(copy.clone());
    let file = dir.join("correlation.redb");
    if file.exists() {
        std::fs::copy(&file, copy.join("correlation.redb"))
            .map_err(|e| format!("{}: {e}", file.display()))?;
    }
    config.store = StoreConfig::Embedded(copy);
    Ok(scratch)
}

/// Drains the outbox; whether nothing was left queued. `dry`: the app
/// runs on a `scratch` copy with a dry-run ITSM, and says so.
pub async fn drain(
    app: &App,
    log: &RequestLog,
    retry_parked: bool,
    dry: bool,
    as_json: bool,
    out: &mut impl Write,
) -> Result<bool, Halt> {
    let (QueueHandle::Outbox(outbox), Some(delivery)) = (&app.queue, &app.delivery) else {
        return Err(Halt::Error(
            "--drain delivers the embedded store's outbox; it is not used with --store dynamodb or DELIVERY_QUEUE_URL".into(),
        ));
    };
    if retry_parked {
        let back = outbox.unpark().await.map_err(|e| e.to_string())?;
        if !as_json {
            let (would, stays) = if dry {
                (" would be", " (dry run: they stay parked)")
            } else {
                ("", "")
            };
            writeln!(
                out,
                "{back} parked notification(s){would} back in the outbox{stays}"
            )?;
        }
    }
    let entries = outbox.entries().await.map_err(|e| e.to_string())?;
    if entries.is_empty() {
        if !as_json {
            writeln!(out, "nothing queued: the outbox is empty")?;
        }
        return Ok(true);
    }
    let total = entries.len();
    // A person is watching: what the ITSM refuses is parked at once, with
    // the reason, rather than left to refuse again on the next run.
    let policy = WorkerPolicy {
        permanent_attempts: 1,
        ..app.delivery_config.worker_policy()
    };
    let (mut delivered, mut parked, mut held) = (0, 0, 0);
    // A person ran it: the first entry probes the ITSM, whatever the breaker says.
    let mut run = delivery.batch(&policy, true).await;
    let mut down = None;
    for entry in entries {
        if let Some((_, why)) = run.held() {
            // The ITSM is down: no call for the rest; they stay queued.
            down = Some(why.clone());
            break;
        }
        let key = entry.key;
        let decoded = worker::decode(&entry.message);
        let (alert_id, seq) = decoded
            .as_ref()
            .map_or(("?".to_string(), 0), |(m, _)| (m.alert_id.clone(), m.seq));
        let item = decoded.map(|(m, alert)| Received {
            alert,
            seq: m.seq,
            group: m.group,
            receives: 1,
        });
        let fate = match run.next(&item).await {
            Fate::Delivered(p) => {
                Drained::Delivered(json!({"outcome": p.outcome.as_str(), "incident": p.incident}))
            }
            Fate::AlreadyDelivered => {
                Drained::Delivered(json!({"outcome": "already_delivered", "incident": null}))
            }
            Fate::Parked(why) => Drained::Parked(why),
            Fate::Retry { why, .. } => Drained::Held(why),
            Fate::Skipped => {
                Drained::Held("an earlier notification of this alert was not delivered".into())
            }
        };
        let requests = serde_json::to_value(log.take()).unwrap_or(Value::Null);
        match &fate {
            Drained::Delivered(_) => {
                outbox.remove(key).await.map_err(|e| e.to_string())?;
                delivered += 1;
            }
            Drained::Parked(why) => {
                outbox
                    .park(entry, why.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                parked += 1;
            }
            Drained::Held(_) => {
                held += 1;
                super::failed();
            }
        }
        report(out, as_json, dry, key, &alert_id, seq, &fate, &requests)?;
    }
    // The last entry may be the one that found the ITSM down.
    if down.is_none() {
        down = run.held().map(|(_, why)| why.clone());
    }
    run.finish().await;
    let left = total - delivered - parked;
    if let Some(why) = down {
        if as_json {
            writeln!(
                out,
                "{}",
                json!({"stopped": "itsm_unavailable", "reason": why, "left_queued": left})
            )?;
        } else {
            writeln!(
                out,
                "ITSM unavailable ({why}); {left} notification(s) left queued; run --drain again later"
            )?;
        }
    } else if dry && !as_json {
        writeln!(
            out,
            "{total} queued: {delivered} would be delivered, {parked} parked, {held} held; dry run: \
             nothing was sent and all {total} stay queued (--send delivers them)"
        )?;
    } else if !as_json {
        writeln!(
            out,
            "{total} queued: {delivered} delivered, {parked} parked (the ITSM refused them; see above), {held} still queued"
        )?;
    }
    Ok(left == 0)
}

#[allow(clippy::too_many_arguments)]
fn report(
    out: &mut impl Write,
    as_json: bool,
    dry: bool,
    key: u64,
    alert_id: &str,
    seq: u64,
    fate: &Drained,
    requests: &Value,
) -> Result<(), Halt> {
    let (what, detail) = match fate {
        Drained::Delivered(v) if dry => ("would_deliver", v.clone()),
        Drained::Delivered(v) => ("delivered", v.clone()),
        Drained::Parked(why) if dry => ("would_park", json!({"reason": why})),
        Drained::Parked(why) => ("parked", json!({"reason": why})),
        Drained::Held(why) => ("still_queued", json!({"reason": why})),
    };
    if as_json {
        let mut line = json!({"drained": key, "alert_id": alert_id, "seq": seq, "result": what,
            "itsm_requests": requests});
        if let (Value::Object(line), Value::Object(detail)) = (&mut line, detail) {
            line.extend(detail);
        }
        writeln!(out, "{line}")?;
    } else {
        let text = match fate {
            Drained::Delivered(v) => format!(
                "{} {}",
                v["outcome"].as_str().unwrap_or(""),
                v["incident"]["number"].as_str().unwrap_or("")
            ),
            Drained::Parked(why) | Drained::Held(why) => why.clone(),
        };
        writeln!(
            out,
            "outbox #{key} ({alert_id}, notification {seq}): {what}: {}",
            text.trim()
        )?;
        for r in requests.as_array().into_iter().flatten() {
            writeln!(
                out,
                "  {} {}",
                r["method"].as_str().unwrap_or(""),
                r["path"].as_str().unwrap_or("")
            )?;
        }
    }
    Ok(())
}
