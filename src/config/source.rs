//! Where an ITSM is and where its credentials come from: the pieces every
//! ITSM's settings share (a leaf of `config`).

use std::time::Duration;

use url::Url;

use super::{ConfigError, Env, err};
use crate::adapters::entra::is_loopback;

/// Where ITSM credentials come from.
#[derive(Debug, Clone)]
pub enum CredentialsConfig<T> {
    /// From the environment: local runs.
    Fixed(T),
    /// `ITSM_SECRET_ID`: a Secrets Manager secret, cached for `ttl`.
    Secret { secret_id: String, ttl: Duration },
}

/// An ITSM's base URL: https, or plain http on loopback only.
pub(super) fn https_url(env: &Env, var: &'static str, example: &str) -> Result<Url, ConfigError> {
    let raw = env.required(var, &format!("set it to {example}"))?;
    let url = Url::parse(&raw).map_err(|e| err(var, format!("{raw:?}: {e}")))?;
    if url.scheme() != "https" && !(url.scheme() == "http" && is_loopback(&url)) {
        return Err(err(var, "must be https (plain http only for localhost)"));
    }
    Ok(url)
}

/// `ITSM_SECRET_ID` when set, else what `fixed` reads from the environment.
pub(super) fn credentials<T>(
    env: &Env,
    fixed: fn(&Env) -> Result<T, ConfigError>,
) -> Result<CredentialsConfig<T>, ConfigError> {
    match env.get("ITSM_SECRET_ID") {
        Some(secret_id) => {
            let ttl = Duration::from_secs(env.number("ITSM_SECRET_TTL_SECS", 3600)?);
            Ok(CredentialsConfig::Secret { secret_id, ttl })
        }
        None => fixed(env).map(CredentialsConfig::Fixed),
    }
}
