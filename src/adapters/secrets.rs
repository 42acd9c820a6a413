//! ITSM credentials from one AWS Secrets Manager secret (a JSON object),
//! fetched on first use, cached with a TTL, and fetched afresh when the
//! ITSM refuses them (the secret may have been rotated). Never logged.

use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::domain::ports::ItsmError;

/// Why credentials could not be had from the secret. Messages name the
/// secret and what is wrong with it, never its content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Secrets Manager could not be asked, or refused.
    #[error("Secrets Manager ({secret_id}): {detail}")]
    Unreadable { secret_id: String, detail: String },
    #[error("secret {0} has no SecretString")]
    NoString(String),
    #[error("secret {0} is not a JSON object")]
    NotObject(String),
    /// The object lacks what the ITSM's credentials need.
    #[error("{0}")]
    Incomplete(String),
}

/// Credentials that cannot be had now: the ITSM call cannot be made, and a
/// later attempt (after a rotation, a permission fix) may succeed.
impl From<SecretError> for ItsmError {
    fn from(e: SecretError) -> ItsmError {
        ItsmError::Unavailable(e.to_string())
    }
}

pub struct SecretReader {
    client: Client,
    secret_id: String,
}

impl SecretReader {
    pub fn new(client: Client, secret_id: impl Into<String>) -> SecretReader {
        SecretReader {
            client,
            secret_id: secret_id.into(),
        }
    }

    async fn read(&self) -> Result<Value, SecretError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| SecretError::Unreadable {
                secret_id: self.secret_id.clone(),
                detail: DisplayErrorContext(&e).to_string(),
            })?;
        let text = out
            .secret_string()
            .ok_or_else(|| SecretError::NoString(self.secret_id.clone()))?;
        // The parse error could quote the secret: say only what is wrong.
        serde_json::from_str::<Value>(text)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| SecretError::NotObject(self.secret_id.clone()))
    }
}

/// A secret parsed into `T` (credentials), cached for `ttl`.
pub struct CachedSecret<T> {
    reader: SecretReader,
    parse: fn(&Value) -> Result<T, SecretError>,
    ttl: Duration,
    cached: Mutex<Option<(T, Instant)>>,
}

impl<T: Clone> CachedSecret<T> {
    pub fn new(
        reader: SecretReader,
        ttl: Duration,
        parse: fn(&Value) -> Result<T, SecretError>,
    ) -> Self {
        CachedSecret {
            reader,
            parse,
            ttl,
            cached: Mutex::new(None),
        }
    }

    /// The cached value, or a fresh one when `fresh`, absent or expired.
    pub async fn get(&self, fresh: bool) -> Result<T, SecretError> {
        let mut cached = self.cached.lock().await;
        if !fresh
            && let Some((value, at)) = cached.as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(value.clone());
        }
        let value = (self.parse)(&self.reader.read().await?)?;
        *cached = Some((value.clone(), Instant::now()));
        Ok(value)
    }
}

/// Credentials of type `T`: fixed (from the environment), or from a secret.
pub enum CredentialSource<T> {
    Fixed(T),
    Secret(CachedSecret<T>),
}

impl<T: Clone> CredentialSource<T> {
    /// `fresh` rereads a secret (after the ITSM refused what we had).
    pub async fn get(&self, fresh: bool) -> Result<T, SecretError> {
        match self {
            CredentialSource::Fixed(c) => Ok(c.clone()),
            CredentialSource::Secret(s) => s.get(fresh).await,
        }
    }

    /// Whether reading again could give other credentials.
    pub fn can_refresh(&self) -> bool {
        matches!(self, CredentialSource::Secret(_))
    }
}
