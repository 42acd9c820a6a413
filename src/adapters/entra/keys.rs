//! Entra signing keys: fetched from the tenant's keys endpoint (never from a
//! URL in a token), cached for the container's life, refreshed about daily
//! and once on an unknown `kid` (rate-limited against forged kids).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::Jwk;
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};
use url::Url;

use crate::domain::ports::AuthError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Http(Url),
    /// A JWKS file on disk: for local runs with `replay`'s development key.
    File(PathBuf),
}

impl KeySource {
    /// `https://…`; `http://` only on loopback; `file://…` for local runs.
    pub fn parse(s: &str) -> Result<KeySource, String> {
        let url = Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
        match url.scheme() {
            "https" => Ok(KeySource::Http(url)),
            "http" if is_loopback(&url) => Ok(KeySource::Http(url)),
            "file" => url
                .to_file_path()
                .map(KeySource::File)
                .map_err(|()| format!("{s:?} is not a file path")),
            _ => Err(format!("{s:?} must be https (http only for localhost)")),
        }
    }
}

pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[derive(Default)]
struct Cached {
    keys: HashMap<String, Arc<DecodingKey>>,
    fetched: Option<Instant>,
    last_miss_refresh: Option<Instant>,
    last_failure: Option<Instant>,
}

pub struct KeyStore {
    source: KeySource,
    http: reqwest::Client,
    refresh_every: Duration,
    miss_interval: Duration,
    cached: RwLock<Cached>,
    /// One fetch at a time; others wait for its result.
    fetching: Mutex<()>,
}

/// After a failed fetch with nothing cached, wait this long before asking again.
const FAILURE_BACKOFF: Duration = Duration::from_secs(5);

impl KeyStore {
    pub fn new(source: KeySource, refresh_every: Duration, miss_interval: Duration) -> KeyStore {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .expect("a TLS client with default settings builds");
        KeyStore {
            source,
            http,
            refresh_every,
            miss_interval,
            cached: RwLock::new(Cached::default()),
            fetching: Mutex::new(()),
        }
    }

    /// The key for `kid`; `Ok(None)` when the tenant has no such key.
    pub async fn key(&self, kid: &str) -> Result<Option<Arc<DecodingKey>>, AuthError> {
        if let Some(key) = self.fresh(kid).await {
            return Ok(Some(key));
        }
        let _one = self.fetching.lock().await;
        if let Some(key) = self.fresh(kid).await {
            return Ok(Some(key)); // another request refreshed while we waited
        }
        let now = Instant::now();
        let (due, miss_allowed, backing_off, has_keys) = {
            let c = self.cached.read().await;
            let due = c.fetched.is_none_or(|t| now - t >= self.refresh_every);
            let miss_allowed = c
                .last_miss_refresh
                .is_none_or(|t| now - t >= self.miss_interval);
            let backing_off = c.last_failure.is_some_and(|t| now - t < FAILURE_BACKOFF);
            (due, miss_allowed, backing_off, !c.keys.is_empty())
        };
        if !due && !miss_allowed {
            return Ok(None); // an unknown kid, and we asked Entra recently
        }
        if backing_off {
            return self
                .cached_or_unavailable(kid, "the last fetch failed moments ago")
                .await;
        }
        match self.fetch().await {
            Ok(keys) => {
                let mut c = self.cached.write().await;
                c.keys = keys;
                c.fetched = Some(now);
                c.last_failure = None;
                if !due {
                    c.last_miss_refresh = Some(now);
                }
                Ok(c.keys.get(kid).cloned())
            }
            Err(e) => {
                tracing::warn!(error = %e, has_cached_keys = has_keys, "could not fetch Entra signing keys");
                let mut c = self.cached.write().await;
                c.last_failure = Some(now);
                if !due {
                    c.last_miss_refresh = Some(now);
                }
                drop(c);
                self.cached_or_unavailable(kid, &e).await
            }
        }
    }

    async fn fresh(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        let c = self.cached.read().await;
        let fresh = c.fetched.is_some_and(|t| t.elapsed() < self.refresh_every);
        c.keys.get(kid).filter(|_| fresh).cloned()
    }

    /// Old keys stay in use when a refresh fails.
    async fn cached_or_unavailable(
        &self,
        kid: &str,
        why: &str,
    ) -> Result<Option<Arc<DecodingKey>>, AuthError> {
        let c = self.cached.read().await;
        if c.keys.is_empty() {
            return Err(AuthError::KeysUnavailable(why.to_string()));
        }
        Ok(c.keys.get(kid).cloned())
    }

    async fn fetch(&self) -> Result<HashMap<String, Arc<DecodingKey>>, String> {
        let doc: Value = match &self.source {
            KeySource::Http(url) => {
                let resp = self.http.get(url.clone()).send().await.map_err(|e| {
                    if e.is_timeout() {
                        "the keys endpoint timed out".to_string()
                    } else {
                        format!("keys endpoint: {e}")
                    }
                })?;
                if !resp.status().is_success() {
                    return Err(format!("the keys endpoint answered HTTP {}", resp.status()));
                }
                resp.json()
                    .await
                    .map_err(|e| format!("the keys endpoint did not answer JSON: {e}"))?
            }
            KeySource::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
        };
        let keys = parse_jwks(&doc);
        if keys.is_empty() {
            return Err("the key set holds no usable RSA signing key".into());
        }
        Ok(keys)
    }
}

/// RSA keys with a kid; anything else in the set is skipped, not fatal.
fn parse_jwks(doc: &Value) -> HashMap<String, Arc<DecodingKey>> {
    let items = doc
        .get("keys")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    items
        .into_iter()
        .filter_map(|item| {
            let jwk: Jwk = serde_json::from_value(item).ok()?;
            let kid = jwk.common.key_id.clone()?;
            if !matches!(
                jwk.algorithm,
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_)
            ) {
                return None;
            }
            Some((kid, Arc::new(DecodingKey::from_jwk(&jwk).ok()?)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_source_rules() {
        assert!(matches!(
            KeySource::parse("https://login.microsoftonline.com/t/discovery/v2.0/keys"),
            Ok(KeySource::Http(_))
        ));
        assert!(matches!(
            KeySource::parse("http://127.0.0.1:9/keys"),
            Ok(KeySource::Http(_))
        ));
        assert!(matches!(
            KeySource::parse("file:///tmp/jwks.json"),
            Ok(KeySource::File(_))
        ));
        assert!(KeySource::parse("http://example.com/keys").is_err());
        assert!(KeySource::parse("keys.json").is_err());
    }

    #[test]
    fn jwks_skips_keys_it_cannot_use() {
        let doc = serde_json::json!({"keys": [
            {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "good", "n": "u1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0_IzW7yWR7QkrmBL7jTKEn5u-qKhbwKfBstIs-bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW_VDL5AaWTg0nLVkjRo9z-40RQzuVaE8AkAFmxZzow3x-VJYKdjykkJ0iT9wCS0DRTXu269V264Vf_3jvredZiKRkgwlL9xNAwxXFg0x_XFw005UWVRIkdgcKWTjpBP2dPwVZ4WWC-9aGVd-Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbcmw", "e": "AQAB"}
        ]});
        let keys = parse_jwks(&doc);
        assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["good"]);
    }
}
