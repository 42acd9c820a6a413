//! Microsoft Entra ID: the token-verification adapter. Accepts only the
//! tokens Azure Monitor's action group obtained for the customer's app.

mod cache;
mod devkey;
mod keys;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

pub use devkey::{DevKey, LOCAL_AUDIENCE, LOCAL_TENANT};
pub use keys::{KeySource, KeyStore, is_loopback};

use crate::domain::ports::Clock;
use crate::domain::ports::{AuthError, Caller, TokenVerifier};
use cache::{Lookup, VerifiedCache, digest};

/// "AzNS AAD Webhook", the action group's first-party app in the public cloud.
pub const ACTION_GROUP_APP_ID: &str = "461e8683-5575-4561-ac7f-899cc907d62a";
pub const PUBLIC_AUTHORITY: &str = "https://login.microsoftonline.com";
/// Tokens remembered as verified; Azure uses few at a time (one per action
/// group and hour), so this bounds memory without costing hits.
const TOKEN_CACHE_SIZE: usize = 4096;
/// Entra tokens are 1–3 KB; anything far larger is not one.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraConfig {
    pub tenant_id: String,
    /// Application ID URI and/or client id.
    pub audiences: Vec<String>,
    pub allowed_app_ids: Vec<String>,
    pub required_role: Option<String>,
    pub authority: String,
    pub keys: KeySource,
    pub leeway_secs: u64,
    pub key_refresh: Duration,
    /// Minimum time between refetches caused by an unknown `kid`.
    pub unknown_kid_interval: Duration,
}

impl EntraConfig {
    /// The tenant's v2 keys endpoint (it serves the same keys as v1).
    pub fn default_keys(authority: &str, tenant: &str) -> Result<KeySource, String> {
        KeySource::parse(&format!(
            "{}/{tenant}/discovery/v2.0/keys",
            authority.trim_end_matches('/')
        ))
    }

    fn v1_issuers(&self) -> [String; 2] {
        let t = &self.tenant_id;
        [
            format!("https://sts.windows.net/{t}/"),
            format!("{}/{t}/", self.authority.trim_end_matches('/')),
        ]
    }

    fn v2_issuer(&self) -> String {
        format!(
            "{}/{}/v2.0",
            self.authority.trim_end_matches('/'),
            self.tenant_id
        )
    }
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    exp: i64,
    #[serde(default)]
    tid: Option<String>,
    #[serde(default)]
    ver: Option<String>,
    #[serde(default)]
    appid: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
}

pub struct EntraVerifier {
    config: EntraConfig,
    keys: KeyStore,
    validation: Validation,
    verified: VerifiedCache,
    clock: Clock,
}

fn unauthenticated(why: &str) -> AuthError {
    AuthError::Unauthenticated(why.to_string())
}

impl EntraVerifier {
    pub fn new(config: EntraConfig, clock: Clock) -> EntraVerifier {
        EntraVerifier::with_token_cache(config, clock, TOKEN_CACHE_SIZE)
    }

    /// `capacity` 0 verifies every token in full (benchmarks measure that).
    pub fn with_token_cache(config: EntraConfig, clock: Clock, capacity: usize) -> EntraVerifier {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = config.leeway_secs;
        validation.validate_nbf = true;
        validation.set_audience(&config.audiences);
        let mut issuers = config.v1_issuers().to_vec();
        issuers.push(config.v2_issuer());
        validation.set_issuer(&issuers);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        EntraVerifier {
            keys: KeyStore::new(
                config.keys.clone(),
                config.key_refresh,
                config.unknown_kid_interval,
            ),
            validation,
            verified: VerifiedCache::new(capacity),
            clock,
            config,
        }
    }

    /// Full verification: header, signature, standard claims, then Entra's.
    /// The caller, how long the verdict holds, and the signing key's `kid`.
    async fn verify_token(&self, token: &str) -> Result<(Caller, i64, Arc<str>), AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| unauthenticated("the bearer token is not a JWT"))?;
        if header.alg != Algorithm::RS256 {
            return Err(unauthenticated("the token is not signed with RS256"));
        }
        let kid = header
            .kid
            .ok_or_else(|| unauthenticated("the token header has no kid"))?;
        let key = self.keys.key(&kid).await?.ok_or_else(|| {
            unauthenticated("the token is signed by a key that is not in the tenant's key set")
        })?;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &self.validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => unauthenticated("the token has expired"),
            ErrorKind::ImmatureSignature => unauthenticated("the token is not valid yet (nbf)"),
            ErrorKind::InvalidIssuer => unauthenticated("the token was not issued by the configured tenant"),
            ErrorKind::InvalidSignature => unauthenticated("the token signature is invalid"),
            ErrorKind::InvalidAudience => AuthError::Forbidden(
                "the token's audience is not in ENTRA_AUDIENCES (the app's Application ID URI or client id)".into(),
            ),
            ErrorKind::MissingRequiredClaim(c) => unauthenticated(&format!("the token has no {c} claim")),
            _ => unauthenticated("the token is malformed"),
        })?;
        let claims = data.claims;
        let (version, caller) = match claims.ver.as_deref() {
            Some("2.0") if claims.iss == self.config.v2_issuer() => ("2.0", claims.azp),
            Some("1.0") | None if self.config.v1_issuers().contains(&claims.iss) => {
                ("1.0", claims.appid)
            }
            _ => {
                return Err(unauthenticated(
                    "the token's issuer does not match its version",
                ));
            }
        };
        if !claims
            .tid
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(&self.config.tenant_id))
        {
            return Err(unauthenticated(
                "the token's tid is not the configured tenant",
            ));
        }
        let caller = caller.unwrap_or_default();
        if !self
            .config
            .allowed_app_ids
            .iter()
            .any(|a| a.eq_ignore_ascii_case(&caller))
        {
            return Err(AuthError::Forbidden(format!(
                "the calling app {caller:?} is not in ENTRA_ALLOWED_APP_IDS (Azure Monitor's action group is {ACTION_GROUP_APP_ID})"
            )));
        }
        if let Some(role) = &self.config.required_role
            && !claims.roles.iter().any(|r| r == role)
        {
            return Err(AuthError::Forbidden(format!(
                "the token lacks the app role {role:?}: assign it to the action group's service principal"
            )));
        }
        let who = Caller {
            app_id: caller,
            tenant_id: self.config.tenant_id.clone(),
            token_version: version.into(),
        };
        Ok((
            who,
            claims.exp + self.config.leeway_secs as i64,
            Arc::from(kid),
        ))
    }
}

#[async_trait]
impl TokenVerifier for EntraVerifier {
    async fn verify(&self, authorization: Option<&str>) -> Result<Caller, AuthError> {
        let value = authorization.ok_or(AuthError::MissingCredentials)?;
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => {
                return Err(unauthenticated(
                    "the Authorization header is not a Bearer token",
                ));
            }
        };
        if token.is_empty() {
            return Err(unauthenticated("the bearer token is empty"));
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(unauthenticated(
                "the bearer token is too large to be an Entra token",
            ));
        }
        let key = digest(token);
        let now = (self.clock)();
        match self.verified.get(&key, now) {
            // Only while its key is still listed (the key set's schedule and
            // unknown-kid refetches decide that): a removed key stops working.
            Lookup::Hit(caller, kid) => {
                if self.keys.key(&kid).await?.is_some() {
                    return Ok(caller);
                }
                self.verified.remove(&key);
                return Err(unauthenticated(
                    "the token was signed by a key that is no longer in the tenant's key set",
                ));
            }
            Lookup::Expired => return Err(unauthenticated("the token has expired")),
            Lookup::Miss => {}
        }
        let (caller, valid_until, kid) = self.verify_token(token).await?;
        self.verified
            .insert(key, valid_until, caller.clone(), kid, now);
        Ok(caller)
    }
}
