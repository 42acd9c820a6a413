//! The Lambda entry: configuration and clients once per container, then
//! the role Lambda's `Handler` setting names serves every invocation.

use std::process::ExitCode;
use std::sync::Arc;

use itsm_bridge::adapters::clock::system_clock;
use itsm_bridge::bootstrap;
use itsm_bridge::config::{Config, Env, StoreConfig};
use itsm_bridge::inbound::Role;
use lambda_http::Error;

/// What the Lambda runtime needs from its environment; without it this is
/// not Lambda (nor `cargo lambda watch`), and the runtime would panic.
const LAMBDA_VARS: [&str; 4] = [
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
];

// One event at a time per container: one thread serves it, with no
// hand-offs between worker threads (BENCHMARKS.md §11).
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    if LAMBDA_VARS.iter().any(|v| std::env::var_os(v).is_none()) {
        eprintln!(
            "itsm-bridge is the Lambda function and runs in Lambda or under `cargo lambda watch`; \
             to run alerts locally: cargo run --bin replay -- events/metric-static-fired.json"
        );
        return ExitCode::from(2);
    }
    // Honours AWS_LAMBDA_LOG_FORMAT=JSON and AWS_LAMBDA_LOG_LEVEL / RUST_LOG,
    // with the crates that log secrets held below their verbose levels.
    bootstrap::init_logging();
    // Errors as sentences (Display), where returning them would print Debug.
    match serve().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("itsm-bridge: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve() -> Result<(), Error> {
    let lookup = |k: &str| std::env::var(k).ok();
    // Refuses to start without ENTRA_TENANT_ID and ENTRA_AUDIENCES: no
    // request is ever served unauthenticated.
    let config = Config::from_env(&Env::new(&lookup))?;
    if let StoreConfig::Embedded(dir) = &config.store {
        tracing::warn!(
            state_dir = %dir.display(),
            "correlation state is embedded and per container: fine for a trial, not for production; set CORRELATION_TABLE"
        );
    }
    let aws = bootstrap::aws_config(&config).await;
    let app = Arc::new(bootstrap::build(
        &config,
        aws.as_ref(),
        system_clock(),
        None,
    )?);
    // Lambda passes the function's Handler setting as _HANDLER;
    // ITSM_BRIDGE_ROLE overrides it where no Handler can be set (cargo lambda watch).
    let handler = std::env::var("ITSM_BRIDGE_ROLE").or_else(|_| std::env::var("_HANDLER"));
    let role = Role::from_handler(handler.ok().as_deref());
    role.run(app).await
}
