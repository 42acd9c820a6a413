//! replay's command line. Flags win over the environment: `--itsm` over
//! `ITSM_KIND`, `--state` over `STATE_DIR`; `--send` alone decides whether
//! requests go out (`ITSM_DRY_RUN` is not read).

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Runs Azure Monitor alert files, and the other roles' Lambda events,
/// through the same handlers as the Lambda, with the embedded store and,
/// by default, a dry run that shows the ITSM requests it would send.
#[derive(Debug, Parser)]
#[command(
    name = "replay",
    version,
    after_help = "Each FILE is a Lambda event, recognised by its shape as cargo lambda invoke \
                  takes it: a function URL event or a bare common-schema alert (the webhook), an \
                  SQS event (the worker's batch), or an EventBridge scheduled event (one sync \
                  round).\n\nEnvironment: ITSM_KIND when --itsm is absent; STATE_DIR when \
                  --state is absent; the ITSM's URL and credentials (SERVICENOW_*, BMC_*, JIRA_*, \
                  ITSM_SECRET_ID) and every other setting of the Lambda.\n\nExit status: 0 when \
                  every event succeeded, 1 when any failed (a 4xx or 5xx, a notification left \
                  queued or parked, an ITSM refusal), 2 for usage or configuration errors."
)]
pub struct Args {
    /// One JSON object per line on stdout.
    #[arg(long)]
    pub json: bool,
    /// Where correlation records, the outbox and the development key live
    /// [default: STATE_DIR, else .itsm-bridge].
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Whose requests to show (or, with --send, send) [default: ITSM_KIND,
    /// else servicenow].
    #[arg(long, value_enum, value_name = "KIND")]
    pub itsm: Option<Itsm>,
    /// Send the requests for real (needs the ITSM's URL and credentials in
    /// the environment: SERVICENOW_*, BMC_* or JIRA_*, or ITSM_SECRET_ID); default: dry run.
    #[arg(long)]
    pub send: bool,
    /// embedded: a redb file in the state folder; dynamodb: the table
    /// CORRELATION_TABLE (default itsm-bridge-correlation) wherever the AWS SDK
    /// is configured to go (created if missing when AWS_ENDPOINT_URL is set).
    #[arg(long, value_enum, value_name = "KIND", default_value_t = Store::Embedded)]
    pub store: Store,
    /// Send this token, verified against ENTRA_* as configured, instead of
    /// signing one with the local development key.
    #[arg(long, value_name = "JWT")]
    pub token: Option<String>,
    /// Print each FILE as the Lambda event it stands for (a function URL
    /// event carrying a fresh development token for alerts), for cargo
    /// lambda invoke --data-file, instead of running it.
    #[arg(long)]
    pub print_event: bool,
    /// Also show which routing rule matched and the fields it produced.
    #[arg(long)]
    pub explain: bool,
    /// Deliver everything queued in the state folder's outbox, in order,
    /// now (the ITSM is back): what the webhook queued while it failed.
    /// Without --send it shows what it would send and leaves all queued.
    #[arg(long, conflicts_with = "print_event")]
    pub drain: bool,
    /// With --drain: first put what earlier drains parked (the ITSM refused
    /// it) back in the outbox at its place, as a dead-letter redrive does
    /// on AWS, once the cause is fixed.
    #[arg(long, requires = "drain")]
    pub retry_parked: bool,
    /// Run one sync round: incidents people resolved in the ITSM (read for
    /// real, with its URL and credentials from the environment) close their
    /// Azure alerts. Shows the Azure requests it would send; with --send,
    /// sends them (needs AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET).
    #[arg(long, conflicts_with_all = ["print_event", "drain", "files"])]
    pub sync: bool,
    /// A Lambda event: function URL (payload 2.0), SQS or EventBridge
    /// scheduled; or a bare common-schema alert body.
    #[arg(value_name = "FILE", required_unless_present_any = ["drain", "sync"])]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Itsm {
    Servicenow,
    BmcHelix,
    /// Jira Service Management (Cloud; Data Center with JIRA_PAT).
    Jira,
    /// The first release's spelling of a ServiceNow dry run.
    #[value(hide = true)]
    DryRun,
}

impl Itsm {
    pub fn kind(self) -> &'static str {
        match self {
            Itsm::Servicenow => "servicenow",
            Itsm::DryRun => "dry-run",
            Itsm::BmcHelix => "bmc-helix",
            Itsm::Jira => "jira",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Store {
    Embedded,
    Dynamodb,
}

impl Args {
    /// The ITSM kind: `--itsm`, else `ITSM_KIND`, else ServiceNow (as the
    /// Lambda's configuration spells it; the configuration checks it).
    pub fn itsm_kind(&self) -> String {
        match self.itsm {
            Some(i) => i.kind().to_string(),
            None => std::env::var("ITSM_KIND")
                .ok()
                .map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty())
                .unwrap_or_else(|| "servicenow".into()),
        }
    }

    /// The state folder: `--state`, else `STATE_DIR`, else `.itsm-bridge`.
    pub fn state_dir(&self) -> PathBuf {
        self.state.clone().unwrap_or_else(|| {
            std::env::var_os("STATE_DIR")
                .filter(|d| !d.is_empty())
                .map_or_else(|| PathBuf::from(".itsm-bridge"), PathBuf::from)
        })
    }
}
