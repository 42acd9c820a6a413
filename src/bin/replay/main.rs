//! replay: the local front door. Runs alert files through the same handler
//! as the Lambda, with the embedded store and, by default, a dry-run ITSM
//! that shows the requests it would send.
//!
//! cargo run --bin replay -- --help

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, ValueEnum};

use itsm_bridge::adapters::clock::system_clock;
use itsm_bridge::adapters::entra::DevKey;
use itsm_bridge::adapters::store::DynamoStore;
use itsm_bridge::adapters::wire::{ItsmRequest, RequestLog};
use itsm_bridge::bootstrap;
use itsm_bridge::config::{Config, Env, QueueConfig, StoreConfig};
use itsm_bridge::inbound::http;
use serde_json::{Value, json};

mod drain;
mod explain;
mod sync;

/// Development defaults, used only where the environment sets nothing.
use itsm_bridge::adapters::entra::{LOCAL_AUDIENCE as DEV_AUDIENCE, LOCAL_TENANT as DEV_TENANT};

/// Runs Azure Monitor alert files through the same handler as the Lambda,
/// with the embedded store and, by default, a dry run that shows the ITSM
/// requests it would send.
#[derive(Debug, Parser)]
#[command(
    name = "replay",
    version,
    after_help = "Exit status: 0 when every event succeeded, 1 when any got a 4xx or 5xx, \
                  2 for usage or configuration errors."
)]
struct Args {
    /// One JSON object per event on stdout.
    #[arg(long)]
    json: bool,
    /// Where correlation records and the development key live.
    #[arg(long, value_name = "DIR", default_value = ".itsm-bridge")]
    state: PathBuf,
    /// Whose requests to show (or, with --send, send).
    #[arg(long, value_enum, value_name = "KIND", default_value_t = Itsm::Servicenow)]
    itsm: Itsm,
    /// Send the requests for real (needs the ITSM's URL and credentials in
    /// the environment: SERVICENOW_*, BMC_* or JIRA_*, or ITSM_SECRET_ID); default: dry run.
    #[arg(long)]
    send: bool,
    /// embedded: a redb file in the state folder; dynamodb: the table
    /// CORRELATION_TABLE (default itsm-bridge-correlation) wherever the AWS SDK
    /// is configured to go (created if missing when AWS_ENDPOINT_URL is set).
    #[arg(long, value_enum, value_name = "KIND", default_value_t = Store::Embedded)]
    store: Store,
    /// Send this token, verified against ENTRA_* as configured, instead of
    /// signing one with the local development key.
    #[arg(long, value_name = "JWT")]
    token: Option<String>,
    /// Print each FILE as a function URL event carrying a fresh development
    /// token (for cargo lambda invoke --data-file) instead of running it.
    #[arg(long)]
    print_event: bool,
    /// Also show which routing rule matched and the fields it produced.
    #[arg(long)]
    explain: bool,
    /// Deliver everything queued in the state folder's outbox, in order,
    /// now (the ITSM is back): what the webhook queued while it failed.
    #[arg(long, conflicts_with = "print_event")]
    drain: bool,
    /// With --drain: first put what earlier drains parked (the ITSM refused
    /// it) back in the outbox at its place, as a dead-letter redrive does
    /// on AWS, once the cause is fixed.
    #[arg(long, requires = "drain")]
    retry_parked: bool,
    /// Run one sync round: incidents people resolved in the ITSM (read for
    /// real, with its URL and credentials from the environment) close their
    /// Azure alerts. Shows the Azure requests it would send; with --send,
    /// sends them (needs AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET).
    #[arg(long, conflicts_with_all = ["print_event", "drain", "files"])]
    sync: bool,
    /// A Lambda function URL event (payload 2.0) or a bare common-schema alert body.
    #[arg(value_name = "FILE", required_unless_present_any = ["drain", "sync"])]
    files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Itsm {
    Servicenow,
    BmcHelix,
    /// Jira Service Management (Cloud; Data Center with JIRA_PAT).
    Jira,
    /// The first release's spelling of a ServiceNow dry run.
    #[value(hide = true)]
    DryRun,
}

impl Itsm {
    fn kind(self) -> &'static str {
        match self {
            Itsm::Servicenow | Itsm::DryRun => "servicenow",
            Itsm::BmcHelix => "bmc-helix",
            Itsm::Jira => "jira",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Store {
    Embedded,
    Dynamodb,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if args.itsm == Itsm::DryRun && args.send {
        Args::command()
            .error(
                ErrorKind::ArgumentConflict,
                "--itsm dry-run cannot --send; name the ITSM: servicenow, bmc-helix or jira",
            )
            .exit();
    }
    match run(args).await {
        Ok(all_ok) if all_ok => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        // Whoever read our output stopped (`replay … | head`): nothing to say.
        Err(Halt::Closed) => ExitCode::SUCCESS,
        Err(Halt::Error(e)) => {
            eprintln!("replay: {e}");
            ExitCode::from(2)
        }
    }
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
        .map(|file| to_event(file, &token))
        .collect::<Result<Vec<Value>, String>>()
        .map_err(|e| format!("{e}; nothing was processed"))?;
    let mut out = std::io::stdout().lock();
    if args.print_event {
        for event in &events {
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(event).expect("JSON")
            )?;
        }
        return Ok(true);
    }
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
        return sync::round(&app, &config, args.send, &log, args.json, &mut out).await;
    }
    if args.drain {
        let all_ok = drain::drain(&app, &log, args.retry_parked, args.json, &mut out).await?;
        if args.files.is_empty() {
            return Ok(all_ok);
        }
    }
    let colour =
        !args.json && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut failed = 0;
    for (file, event) in args.files.iter().zip(&events) {
        let request = lambda_http::request::from_str(&event.to_string())
            .map_err(|e| format!("{}: not a function URL event: {e}", file.display()))?;
        // Before it is processed: which group it would open or join.
        let explained = if args.explain {
            explain::explain(&app, &config, event).await
        } else {
            Value::Null
        };
        let response = http::handle(&app, request).await;
        let status = response.status().as_u16();
        let body: Value = match response.body() {
            lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap_or(Value::Null),
            _ => Value::Null,
        };
        let requests = log.take();
        let outcome = body
            .get("outcome")
            .or_else(|| body.get("error"))
            .and_then(Value::as_str)
            .unwrap_or("?");
        *counts.entry(outcome.to_string()).or_default() += 1;
        failed += usize::from(status >= 400);
        if args.json {
            let mut line = summary(file, status, &body, &requests);
            if args.explain {
                line["explain"] = explained;
            }
            writeln!(out, "{line}")?;
        } else {
            print_human(&mut out, file, status, &body, &requests, colour)?;
            if args.explain {
                writeln!(
                    out,
                    "  explain: {}",
                    serde_json::to_string_pretty(&explained)
                        .expect("JSON")
                        .replace('\n', "\n  ")
                )?;
            }
        }
    }
    if !args.json {
        let tally: Vec<String> = counts
            .iter()
            .map(|(outcome, n)| format!("{n} {outcome}"))
            .collect();
        writeln!(
            out,
            "{} events: {}; {failed} failed",
            args.files.len(),
            tally.join(", ")
        )?;
    }
    Ok(failed == 0)
}

/// Configuration from the environment, with development defaults for Entra;
/// and the token to send.
fn configure(args: &Args) -> Result<(Config, String), String> {
    let state = args.state.clone();
    let itsm = args.itsm.kind().to_string();
    // A sync round reads the ITSM for real; --send is about Azure then.
    let send = args.send || (args.sync && args.itsm != Itsm::DryRun);
    let dynamodb = args.store == Store::Dynamodb;
    let dev = args.token.is_none();
    let jwks_path = std::path::absolute(state.join("dev-jwks.json")).map_err(|e| e.to_string())?;
    let jwks_url =
        url::Url::from_file_path(&jwks_path).map_err(|()| "bad state path".to_string())?;
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
            let key = DevKey::load_or_create(&args.state)?;
            std::fs::write(&jwks_path, key.jwks().to_string())
                .map_err(|e| format!("{}: {e}", jwks_path.display()))?;
            key.sign(&DevKey::claims_for(&config.entra, (system_clock())()))
        }
    };
    Ok((config, token))
}

/// A function URL event carrying `token`: the file's own event, or a bare
/// body wrapped in one.
fn to_event(file: &Path, token: &str) -> Result<Value, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let parsed: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", file.display()))?;
    let mut event = if parsed.get("requestContext").is_some() {
        parsed
    } else {
        http::event::function_url_event("POST", None, &text)
    };
    event["headers"]["authorization"] = json!(format!("Bearer {token}"));
    Ok(event)
}

fn summary(file: &Path, status: u16, body: &Value, requests: &[ItsmRequest]) -> Value {
    json!({
        "event": file.display().to_string(),
        "status": status,
        "outcome": body.get("outcome").or_else(|| body.get("error")).cloned().unwrap_or(Value::Null),
        "alert_id": body.get("alert_id").cloned().unwrap_or(Value::Null),
        "incident": body.get("incident").cloned().unwrap_or(Value::Null),
        "message": body.get("message").cloned().unwrap_or(Value::Null),
        "itsm_requests": requests,
    })
}

fn print_human(
    out: &mut impl Write,
    file: &Path,
    status: u16,
    body: &Value,
    requests: &[ItsmRequest],
    colour: bool,
) -> std::io::Result<()> {
    let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("");
    let outcome = if status < 400 {
        text("outcome")
    } else {
        text("error")
    };
    let incident = body
        .pointer("/incident/number")
        .and_then(Value::as_str)
        .map_or(String::new(), |n| format!(" incident {n}"));
    let status_text = match (colour, status) {
        (false, _) => status.to_string(),
        (true, s) if s >= 500 => format!("\x1b[31m{s}\x1b[0m"),
        (true, s) if s >= 400 => format!("\x1b[33m{s}\x1b[0m"),
        (true, s) => format!("\x1b[32m{s}\x1b[0m"),
    };
    writeln!(out, "{}: {status_text} {outcome}{incident}", file.display())?;
    if let Some(reason) = body.pointer("/queue/reason").and_then(Value::as_str) {
        writeln!(
            out,
            "  in the outbox ({reason}): `replay --drain` delivers it when the ITSM is back"
        )?;
    }
    if status >= 400 {
        writeln!(out, "  {}", text("message"))?;
    }
    for r in requests {
        writeln!(out, "  {} {}", r.method, r.path)?;
        if let Some(b) = &r.body {
            for line in serde_json::to_string_pretty(b).expect("JSON").lines() {
                writeln!(out, "    {line}")?;
            }
        }
    }
    Ok(())
}
