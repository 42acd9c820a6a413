//! The sync role's own Azure identity: an app registration's access token
//! for Resource Manager by the client-credentials flow, with a client secret
//! or a certificate (a signed client assertion), cached until shortly
//! before it expires.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use url::Url;

use crate::adapters::itsm_http::describe;
use crate::adapters::secrets::{CredentialSource, SecretError};
use crate::domain::ports::AzureError;

/// How the app proves who it is.
#[derive(Clone)]
pub enum AzureCredential {
    Secret(String),
    Certificate(Arc<Certificate>),
}

impl std::fmt::Debug for AzureCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AzureCredential::Secret(_) => write!(f, "AzureCredential::Secret(***)"),
            AzureCredential::Certificate(c) => {
                write!(f, "AzureCredential::Certificate({})", c.thumbprint)
            }
        }
    }
}

impl AzureCredential {
    /// The secret's JSON: `{"client_secret"}`, or `{"certificate"}` holding
    /// the PEM of the private key and its certificate.
    pub fn from_secret(v: &Value) -> Result<AzureCredential, SecretError> {
        let get = |k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        if let Some(secret) = get("client_secret") {
            return Ok(AzureCredential::Secret(secret.to_string()));
        }
        match get("certificate") {
            Some(pem) => Certificate::from_pem(pem)
                .map(|c| AzureCredential::Certificate(Arc::new(c)))
                .map_err(SecretError::Incomplete),
            None => Err(SecretError::Incomplete(
                "the Azure secret needs client_secret, or certificate (PEM key and certificate)"
                    .into(),
            )),
        }
    }
}

/// A certificate's private key and its SHA-256 thumbprint (`x5t#S256`).
pub struct Certificate {
    key: EncodingKey,
    thumbprint: String,
}

impl Certificate {
    /// A PEM holding an RSA private key and its certificate, as
    /// azure-identity's `AZURE_CLIENT_CERTIFICATE_PATH` does.
    ///
    /// # Errors
    /// A message naming what is missing; never the key itself.
    pub fn from_pem(pem: &str) -> Result<Certificate, String> {
        let block = |label: &str| -> Option<String> {
            let begin = format!("-----BEGIN {label}-----");
            let end = format!("-----END {label}-----");
            let start = pem.find(&begin)?;
            let stop = pem[start..].find(&end)? + start;
            Some(pem[start..stop + end.len()].to_string())
        };
        let cert = block("CERTIFICATE").ok_or("the PEM holds no CERTIFICATE block")?;
        let b64: String = cert.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = STANDARD
            .decode(b64.trim())
            .map_err(|_| "the CERTIFICATE block is not base64")?;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
        let key = block("PRIVATE KEY")
            .or_else(|| block("RSA PRIVATE KEY"))
            .ok_or("the PEM holds no PRIVATE KEY block")?;
        let key = EncodingKey::from_rsa_pem(key.as_bytes())
            .map_err(|_| "the PRIVATE KEY block is not an RSA key")?;
        Ok(Certificate {
            key,
            thumbprint: URL_SAFE_NO_PAD.encode(digest.as_ref()),
        })
    }

    /// A client assertion for `audience` (the token endpoint), PS256 with
    /// `x5t#S256`, as Entra asks of certificate credentials.
    fn assertion(&self, client_id: &str, audience: &str) -> Result<String, AzureError> {
        let mut header = Header::new(Algorithm::PS256);
        header.x5t_s256 = Some(self.thumbprint.clone());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti)
            .map_err(|_| AzureError::Unavailable("no randomness for the assertion".into()))?;
        let jti = URL_SAFE_NO_PAD.encode(jti);
        let claims = json!({"aud": audience, "iss": client_id, "sub": client_id,
            "jti": jti, "nbf": now, "iat": now, "exp": now + 600});
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| AzureError::Denied(format!("cannot sign the client assertion: {e}")))
    }
}

/// Renew this long before the token's own expiry.
const EARLY: Duration = Duration::from_secs(300);

pub struct AppToken {
    http: reqwest::Client,
    endpoint: Url,
    client_id: String,
    scope: String,
    credential: CredentialSource<AzureCredential>,
    cached: Mutex<Option<(String, Instant)>>,
}

impl AppToken {
    pub fn new(
        http: reqwest::Client,
        authority: &Url,
        tenant_id: &str,
        client_id: &str,
        resource_manager: &Url,
        credential: CredentialSource<AzureCredential>,
    ) -> Result<AppToken, String> {
        let endpoint = authority
            .join(&format!("{tenant_id}/oauth2/v2.0/token"))
            .map_err(|e| format!("AZURE_AUTHORITY_HOST: {e}"))?;
        let resource = resource_manager.as_str().trim_end_matches('/');
        Ok(AppToken {
            http,
            endpoint,
            client_id: client_id.to_string(),
            scope: format!("{resource}/.default"),
            credential,
            cached: Mutex::new(None),
        })
    }

    /// The cached token, or a new one.
    pub async fn get(&self) -> Result<String, AzureError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let (token, lifetime) = self.request().await?;
        *cached = Some((
            token.clone(),
            Instant::now() + lifetime.saturating_sub(EARLY),
        ));
        Ok(token)
    }

    /// Forgets the token (Resource Manager refused it).
    pub async fn forget(&self) {
        *self.cached.lock().await = None;
    }

    async fn request(&self) -> Result<(String, Duration), AzureError> {
        let credential = self.credential.get(false).await.map_err(|e| {
            AzureError::Unavailable(format!("the Azure credential could not be read: {e}"))
        })?;
        let mut form = vec![
            ("grant_type", "client_credentials".to_string()),
            ("client_id", self.client_id.clone()),
            ("scope", self.scope.clone()),
        ];
        match &credential {
            AzureCredential::Secret(s) => form.push(("client_secret", s.clone())),
            AzureCredential::Certificate(c) => {
                form.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                ));
                form.push((
                    "client_assertion",
                    c.assertion(&self.client_id, self.endpoint.as_str())?,
                ));
            }
        }
        let resp = self
            .http
            .post(self.endpoint.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                AzureError::Unavailable(format!("Entra token endpoint: {}", describe(&e)))
            })?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status == 200 {
            let token = body["access_token"].as_str().filter(|t| !t.is_empty());
            // v2 answers a number; v1 endpoints a string.
            let lifetime = body["expires_in"]
                .as_u64()
                .or_else(|| body["expires_in"].as_str().and_then(|s| s.parse().ok()))
                .unwrap_or(3599);
            return token
                .map(|t| (t.to_string(), Duration::from_secs(lifetime)))
                .ok_or_else(|| {
                    AzureError::Unavailable("Entra answered 200 without an access_token".into())
                });
        }
        // AADSTS descriptions name the problem and carry trace ids, never the secret.
        let description = body["error_description"]
            .as_str()
            .and_then(|d| d.lines().next())
            .unwrap_or("no description");
        let code = body["error"].as_str().unwrap_or("error");
        if status >= 500 || status == 429 {
            return Err(AzureError::Unavailable(format!(
                "Entra answered HTTP {status}: {code}: {description}"
            )));
        }
        Err(AzureError::Denied(format!(
            "Entra refused the app's credentials (HTTP {status}, {code}: {description}); check \
             AZURE_TENANT_ID, AZURE_CLIENT_ID and the client secret or certificate"
        )))
    }
}
