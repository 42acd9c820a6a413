//! ServiceNow credentials: Basic, or OAuth with the token cached until it expires.

use std::time::{Duration, Instant};

use reqwest::RequestBuilder;
use serde::Deserialize;
use tokio::sync::Mutex;
use url::Url;

use crate::domain::ports::ItsmError;

#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic {
        username: String,
        password: String,
    },
    /// `grant_type=password`: a client plus an integration user.
    OAuthPassword {
        client_id: String,
        client_secret: String,
        username: String,
        password: String,
    },
    /// `grant_type=client_credentials`, where the instance enables it.
    OAuthClient {
        client_id: String,
        client_secret: String,
    },
}

// Never print secrets, not even in a debug dump.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credentials::OAuthPassword { username, .. } => {
                write!(f, "OAuthPassword({username}, ***)")
            }
            Credentials::OAuthClient { .. } => write!(f, "OAuthClient(***)"),
        }
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

pub struct Authenticator {
    credentials: Credentials,
    token_url: Url,
    token: Mutex<Option<(String, Instant)>>,
}

impl Authenticator {
    pub fn new(credentials: Credentials, instance: &Url) -> Authenticator {
        let token_url = instance.join("/oauth_token.do").expect("static path joins");
        Authenticator {
            credentials,
            token_url,
            token: Mutex::new(None),
        }
    }

    pub fn is_oauth(&self) -> bool {
        !matches!(self.credentials, Credentials::Basic { .. })
    }

    /// Adds credentials to a request, fetching an OAuth token when needed.
    pub async fn apply(
        &self,
        http: &reqwest::Client,
        req: RequestBuilder,
    ) -> Result<RequestBuilder, ItsmError> {
        if let Credentials::Basic { username, password } = &self.credentials {
            return Ok(req.basic_auth(username, Some(password)));
        }
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(req.bearer_auth(token));
        }
        let (token, lifetime) = self.fetch(http).await?;
        // Renew a minute early so a token never expires in flight.
        let until = Instant::now() + Duration::from_secs(lifetime.saturating_sub(60).max(1));
        *cached = Some((token.clone(), until));
        Ok(req.bearer_auth(token))
    }

    /// Forgets the OAuth token after a 401, so the next call logs in again.
    pub async fn invalidate(&self) {
        *self.token.lock().await = None;
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<(String, u64), ItsmError> {
        let form: Vec<(&str, &str)> = match &self.credentials {
            Credentials::OAuthPassword {
                client_id,
                client_secret,
                username,
                password,
            } => vec![
                ("grant_type", "password"),
                ("client_id", client_id),
                ("client_secret", client_secret),
                ("username", username),
                ("password", password),
            ],
            Credentials::OAuthClient {
                client_id,
                client_secret,
            } => vec![
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", client_secret),
            ],
            Credentials::Basic { .. } => unreachable!("basic auth needs no token"),
        };
        let answer = http
            .post(self.token_url.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                ItsmError::Unavailable(format!(
                    "OAuth token request failed: {}",
                    super::client::describe(&e)
                ))
            })?;
        let status = answer.status();
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(ItsmError::Unavailable(format!(
                "OAuth token endpoint answered {status}"
            )));
        }
        if !status.is_success() {
            return Err(ItsmError::Rejected {
                status: status.as_u16(),
                message: "ServiceNow refused the OAuth token request: check SERVICENOW_CLIENT_ID, \
                          SERVICENOW_CLIENT_SECRET and the user's credentials"
                    .into(),
            });
        }
        let token: TokenAnswer = answer.json().await.map_err(|_| {
            ItsmError::Unavailable("OAuth token endpoint did not answer JSON".into())
        })?;
        Ok((token.access_token, token.expires_in.unwrap_or(1800)))
    }
}
