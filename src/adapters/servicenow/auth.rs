//! ServiceNow credentials: Basic, or OAuth with the token cached until it
//! expires; from the environment or from a Secrets Manager secret.

use std::time::{Duration, Instant};

use reqwest::RequestBuilder;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;
use url::Url;

use crate::adapters::secrets::{CredentialSource, SecretError};
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

/// The four values credentials are made of, wherever they come from.
#[derive(Default)]
pub struct Parts {
    pub username: Option<String>,
    pub password: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

impl Credentials {
    /// `mode` is `basic`, `oauth-password` or `oauth-client-credentials`;
    /// without one it follows from what is set. The error names the
    /// missing part (`username`, `password`, `client_id`, `client_secret`)
    /// or the bad mode (`auth`).
    pub fn build(mode: Option<&str>, p: Parts) -> Result<Credentials, (&'static str, String)> {
        let mode = mode.unwrap_or(match (&p.client_id, &p.username) {
            (Some(_), Some(_)) => "oauth-password",
            (Some(_), None) => "oauth-client-credentials",
            _ => "basic",
        });
        let need = |name: &'static str, v: Option<String>| {
            v.ok_or((name, format!("is required for {mode} authentication")))
        };
        Ok(match mode {
            "basic" => Credentials::Basic {
                username: need("username", p.username)?,
                password: need("password", p.password)?,
            },
            "oauth-password" => Credentials::OAuthPassword {
                client_id: need("client_id", p.client_id)?,
                client_secret: need("client_secret", p.client_secret)?,
                username: need("username", p.username)?,
                password: need("password", p.password)?,
            },
            "oauth-client-credentials" => Credentials::OAuthClient {
                client_id: need("client_id", p.client_id)?,
                client_secret: need("client_secret", p.client_secret)?,
            },
            other => {
                return Err((
                    "auth",
                    format!(
                        "{other:?} is not one of basic, oauth-password, oauth-client-credentials"
                    ),
                ));
            }
        })
    }

    /// The secret's JSON: `{"username","password"}` for Basic, plus
    /// `client_id`, `client_secret` for OAuth; optional `auth` picks the mode.
    pub fn from_secret(v: &Value) -> Result<Credentials, SecretError> {
        let get = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let parts = Parts {
            username: get("username"),
            password: get("password"),
            client_id: get("client_id"),
            client_secret: get("client_secret"),
        };
        Credentials::build(get("auth").as_deref(), parts).map_err(|(field, problem)| {
            SecretError::Incomplete(format!("the ITSM secret's {field} {problem}"))
        })
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

pub struct Authenticator {
    credentials: CredentialSource<Credentials>,
    token_url: Url,
    token: Mutex<Option<(String, Instant)>>,
}

impl Authenticator {
    pub fn new(credentials: CredentialSource<Credentials>, instance: &Url) -> Authenticator {
        let token_url = instance.join("/oauth_token.do").expect("static path joins");
        Authenticator {
            credentials,
            token_url,
            token: Mutex::new(None),
        }
    }

    /// Adds credentials to a request, fetching an OAuth token when needed.
    pub async fn apply(
        &self,
        http: &reqwest::Client,
        req: RequestBuilder,
    ) -> Result<RequestBuilder, ItsmError> {
        let credentials = self.credentials.get(false).await?;
        if let Credentials::Basic { username, password } = &credentials {
            return Ok(req.basic_auth(username, Some(password)));
        }
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(req.bearer_auth(token));
        }
        let (token, lifetime) = self.fetch(http, &credentials).await?;
        // Renew a minute early so a token never expires in flight.
        let until = Instant::now() + Duration::from_secs(lifetime.saturating_sub(60).max(1));
        *cached = Some((token.clone(), until));
        Ok(req.bearer_auth(token))
    }

    /// After a 401: forgets the OAuth token and rereads a rotated secret.
    /// True when trying once more can help.
    pub async fn after_unauthorized(&self) -> Result<bool, ItsmError> {
        let had_token = self.token.lock().await.take().is_some();
        if self.credentials.can_refresh() {
            self.credentials.get(true).await?;
            return Ok(true);
        }
        Ok(had_token)
    }

    async fn fetch(
        &self,
        http: &reqwest::Client,
        credentials: &Credentials,
    ) -> Result<(String, u64), ItsmError> {
        let form: Vec<(&str, &str)> = match credentials {
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
                    crate::adapters::itsm_http::describe(&e)
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
                message: "ServiceNow refused the OAuth token request: check the OAuth client id and secret \
                          and the user's credentials"
                    .into(),
            });
        }
        let token: TokenAnswer = answer.json().await.map_err(|_| {
            ItsmError::Unavailable("OAuth token endpoint did not answer JSON".into())
        })?;
        Ok((token.access_token, token.expires_in.unwrap_or(1800)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_shapes() {
        let basic = Credentials::from_secret(&json!({"username": "u", "password": "p"})).unwrap();
        assert!(matches!(basic, Credentials::Basic { .. }));
        let oauth = Credentials::from_secret(
            &json!({"username": "u", "password": "p", "client_id": "c", "client_secret": "s"}),
        );
        assert!(matches!(oauth, Ok(Credentials::OAuthPassword { .. })));
        let client = Credentials::from_secret(&json!({"client_id": "c", "client_secret": "s"}));
        assert!(matches!(client, Ok(Credentials::OAuthClient { .. })));
        let err = Credentials::from_secret(
            &json!({"username": "u", "password": "hunter2-secret", "auth": "oauth-password"}),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("client_id") && !err.contains("hunter2"),
            "{err}"
        );
    }
}
