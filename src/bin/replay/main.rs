//! replay: the local front door. Runs Lambda event files through the same
//! handlers as the Lambda (each file goes to the role its shape names:
//! `event`), with the embedded store and, by default, a dry-run ITSM that
//! shows the requests it would send.
//!
//! cargo run --bin replay -- --help

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

use itsm_bridge::adapters::clock::system_clock;
use itsm_bridge::adapters::entra::DevKey;
use itsm_bridge::adapters::store::DynamoStore;
use itsm_bridge::adapters::wire::RequestLog;
use itsm_bridge::bootstrap;
use itsm_bridge::config::{Config, Env, QueueConfig, StoreConfig};
use itsm_bridge::inbound::App;

mod args;
mod drain;
mod event;
mod explain;
mod sync;
mod webhook;
mod worker;

use args::{Args, Itsm, Store};
use event::Event;

/// Development defaults, used only where the environment sets nothing.
use itsm_bridge::adapters::entra::{LOCAL_AUDIENCE as DEV_AUDIENCE, LOCAL_TENANT as DEV_TENANT};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if args.itsm_kind() == "dry-run" && args.send {
        let from = if args.itsm == Some(Itsm::DryRun) {
            "--itsm dry-run"
        } else {
            "ITSM_KIND=dry-run"
        };
        Args::command()
            .error(
                ErrorKind::ArgumentConflict,
                format!("{from} cannot --send; name the ITSM: servicenow, bmc-helix or jira"),
            )
            .exit();
    }
    match run(args).await {
        Ok(all_ok) if all_ok => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        // Whoever read our output stopped (`replay … | head`): nothing to
        // say, but the status still tells what was processed.
        Err(Halt::Closed) if FAILED.load(Ordering::Relaxed) => ExitCode::FAILURE,
        Err(Halt::Closed) => ExitCode::SUCCESS,
        Err(Halt::Error(e)) => {
            eprintln!("replay: {e}");
            ExitCode::from(2)
        }
    }
}

/// Whether anything processed so far failed: the exit status when the
/// output closes before the run ends.
static FAILED: AtomicBool = AtomicBool::new(false);

/// Notes a failure for the exit status, however the run ends.
pub fn failed() {
    FAILED.store(true, Ordering::Relaxed);
}

/// Why replay stopped early.
enum Halt {
    Error(String),
    /// stdout was closed.
    Closed,
}

impl From<String> for Halt {
    fn from(e: String) -> Halt {
        Halt::Error(e)
    }
}

impl From<std::io::Error> for Halt {
    fn from(e: std::io::Error) -> Halt {
        match e.kind() {
            std::io::ErrorKind::BrokenPipe => Halt::Closed,
            _ => Halt::Error(format!("cannot write the output: {e}")),
        }
    }
}

async fn run(args: Args) -> Result<bool, Halt> {
    if std::env::var_os("RUST_LOG").is_some() {
        bootstrap::init_logging();
    }
    let (mut config, token) = configure(&args)?;
    if args.drain {
        // A person waits for the drain: a down ITSM is reported within the
        // inline budget, not after the worker's longer retries.
        config.delivery.worker_deadline = config.delivery.inline_budget;
    }
    // Every FILE is read before any is processed, so that a missing or
    // broken one stops the run before anything is recorded.
    let events = args
        .files
        .iter()
        .map(|file| event::read(file, &token))
        .collect::<Result<Vec<_>, String>>()
        .map_err(|e| format!("{e}; nothing was processed"))?;
    let mut out = std::io::stdout().lock();
    if args.print_event {
        for (event, raw) in &events {
            let event = event.lambda_event(raw);
            let text = if args.json {
                event.to_string()
            } else {
                serde_json::to_string_pretty(&event).expect("JSON")
            };
            writeln!(out, "{text}")?;
        }
        return Ok(true);
    }
    // A dry-run drain works on a copy: queued work is never consumed.
    let dry_drain = args.drain && !args.send;
    let _scratch = if dry_drain {
        Some(drain::scratch(&mut config)?)
    } else {
        None
    };
    let aws = bootstrap::aws_config(&config).await;
    if let (StoreConfig::DynamoDb { table }, Some(aws)) = (&config.store, &aws)
        && std::env::var_os("AWS_ENDPOINT_URL").is_some()
    {
        DynamoStore::create_table(&aws_sdk_dynamodb::Client::new(aws), table).await?;
    }
    let log = Arc::new(RequestLog::default());
    let mut app = bootstrap::build(&config, aws.as_ref(), system_clock(), Some(log.clone()))
        .map_err(|e| e.to_string())?;
    // stdout is replay's own output.
    app.metrics = None;
    if args.sync {
        return sync::round(&app, &config, args.send, &log, args.json, None, &mut out).await;
    }
    if args.drain {
        let all_ok = drain::drain(
            &app,
            &log,
            args.retry_parked,
            dry_drain,
            args.json,
            &mut out,
        )
        .await?;
        if args.files.is_empty() {
            return Ok(all_ok);
        }
    }
    let run = Run {
        app: &app,
        config: &config,
        log: &log,
        style: webhook::Style {
            json: args.json,
            colour: !args.json
                && std::io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none(),
            explain: args.explain,
        },
    };
    let mut tally = Tally::default();
    for (file, (event, _)) in args.files.iter().zip(&events) {
        match event {
            Event::Webhook(event) => webhook::post(&run, file, event, &mut tally, &mut out).await?,
            Event::Batch(batch) => worker::batch(&run, file, batch, &mut tally, &mut out).await?,
            Event::Schedule => {
                let ok = sync::round(
                    &app,
                    &config,
                    args.send,
                    &log,
                    args.json,
                    Some(file),
                    &mut out,
                )
                .await?;
                tally.count("sync_round", !ok);
            }
        }
    }
    if !args.json {
        writeln!(out, "{}", tally.line(args.files.len()))?;
    }
    Ok(tally.failed == 0)
}

/// What every event of a run shares.
pub struct Run<'a> {
    pub app: &'a App,
    pub config: &'a Config,
    pub log: &'a RequestLog,
    pub style: webhook::Style,
}

/// Outcomes counted over the run.
#[derive(Default)]
pub struct Tally {
    counts: BTreeMap<String, usize>,
    failed: usize,
}

impl Tally {
    pub fn count(&mut self, outcome: &str, failed: bool) {
        *self.counts.entry(outcome.to_string()).or_default() += 1;
        self.failed += usize::from(failed);
        if failed {
            self::failed();
        }
    }

    fn line(&self, files: usize) -> String {
        let tally: Vec<String> = self
            .counts
            .iter()
            .map(|(outcome, n)| format!("{n} {outcome}"))
            .collect();
        let events = if files == 1 { "event" } else { "events" };
        format!(
            "{files} {events}: {}; {} failed",
            tally.join(", "),
            self.failed
        )
    }
}

/// Configuration from the environment, with development defaults for Entra;
/// and the token to send.
fn configure(args: &Args) -> Result<(Config, String), String> {
    let state = args.state_dir();
    if state.exists() && !state.is_dir() {
        let flag = if args.state.is_some() {
            "--state"
        } else {
            "STATE_DIR"
        };
        return Err(format!(
            "{flag} {}: is a file; name a folder (replay keeps its records, outbox and \
             development key there; it is created if missing)",
            state.display()
        ));
    }
    let itsm = args.itsm_kind();
    // A sync round reads the ITSM for real; --send is about Azure then.
    let send = args.send || (args.sync && itsm != "dry-run");
    let dynamodb = args.store == Store::Dynamodb;
    let dev = args.token.is_none();
    let jwks_path = std::path::absolute(state.join("dev-jwks.json")).map_err(|e| e.to_string())?;
    let jwks_url =
        url::Url::from_file_path(&jwks_path).map_err(|()| "bad state path".to_string())?;
    let key_dir = state.clone();
    let lookup = move |k: &str| -> Option<String> {
        match k {
            "ITSM_KIND" => return Some(itsm.clone()),
            "ITSM_DRY_RUN" => return Some((!send).to_string()),
            "STATE_DIR" => return Some(state.display().to_string()),
            "CORRELATION_TABLE" if !dynamodb => return None,
            "CORRELATION_TABLE" => {
                return Some(std::env::var(k).unwrap_or_else(|_| "itsm-bridge-correlation".into()));
            }
            // The development key's set, whatever the environment says.
            "ENTRA_JWKS_URL" if dev => return Some(jwks_url.to_string()),
            _ => {}
        }
        std::env::var(k).ok().or_else(|| match k {
            "ENTRA_TENANT_ID" if dev => Some(DEV_TENANT.into()),
            "ENTRA_AUDIENCES" if dev => Some(DEV_AUDIENCE.into()),
            _ => None,
        })
    };
    let mut config = Config::from_env(&Env::new(&lookup)).map_err(|e| e.to_string())?;
    // With the embedded store, what the ITSM cannot take waits in the
    // state folder's outbox (unless a real queue is configured).
    if matches!(config.store, StoreConfig::Embedded(_))
        && config.delivery.queue == QueueConfig::None
    {
        config.delivery.queue = QueueConfig::Outbox;
    }
    let token = match &args.token {
        Some(t) => t.clone(),
        None => {
            let key = DevKey::load_or_create(&key_dir)?;
            std::fs::write(&jwks_path, key.jwks().to_string())
                .map_err(|e| format!("{}: {e}", jwks_path.display()))?;
            key.sign(&DevKey::claims_for(&config.entra, (system_clock())()))
        }
    };
    Ok((config, token))
}
