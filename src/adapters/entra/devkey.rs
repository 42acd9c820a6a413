//! A local development signing key: lets `replay` and the tests sign
//! realistic Entra-shaped tokens and serve the matching key set, so the
//! local path runs the same verification code as production.

use std::path::Path;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::EntraConfig;

/// The development tenant and audience of local runs.
pub const LOCAL_TENANT: &str = "00000000-0000-4000-8000-00000000da7a";
pub const LOCAL_AUDIENCE: &str = "api://itsm-bridge-dev";

pub struct DevKey {
    pub kid: String,
    pem: String,
    encoding: EncodingKey,
    jwk: Value,
}

impl DevKey {
    pub fn generate() -> DevKey {
        let pair = KeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
        let der = pair.as_der().expect("PKCS#8 encoding");
        let body = STANDARD.encode(der.as_ref());
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
            .collect();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        );
        DevKey::from_pem(&pem).expect("a key we just made parses")
    }

    pub fn from_pem(pem: &str) -> Result<DevKey, String> {
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = STANDARD
            .decode(b64.trim())
            .map_err(|e| format!("not PEM: {e}"))?;
        let pair = KeyPair::from_pkcs8(&der).map_err(|e| format!("not an RSA PKCS#8 key: {e}"))?;
        let public = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        let n = URL_SAFE_NO_PAD.encode(&public.n);
        let kid = format!("itsm-bridge-dev-{}", &n[..12]);
        let jwk = json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                         "n": n, "e": URL_SAFE_NO_PAD.encode(&public.e)});
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
        Ok(DevKey {
            kid,
            pem: pem.to_string(),
            encoding,
            jwk,
        })
    }

    /// `dir/dev-signing-key.pem`, made on first use.
    pub fn load_or_create(dir: &Path) -> Result<DevKey, String> {
        let path = dir.join("dev-signing-key.pem");
        match std::fs::read_to_string(&path) {
            Ok(pem) => DevKey::from_pem(&pem),
            Err(_) => {
                let key = DevKey::generate();
                crate::adapters::private_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                crate::adapters::write_private(&path, key.pem.as_bytes())
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                Ok(key)
            }
        }
    }

    /// A configuration that trusts only this key, its key set written to
    /// `jwks`: for benches, examples, fuzzing and property tests.
    pub fn local_config(&self, jwks: &Path) -> EntraConfig {
        std::fs::write(jwks, self.jwks().to_string()).expect("the key set file can be written");
        EntraConfig {
            tenant_id: LOCAL_TENANT.into(),
            audiences: vec![LOCAL_AUDIENCE.into()],
            allowed_app_ids: vec![super::ACTION_GROUP_APP_ID.into()],
            required_role: Some("ActionGroupsSecureWebhook".into()),
            authority: super::PUBLIC_AUTHORITY.into(),
            keys: super::KeySource::File(jwks.to_path_buf()),
            leeway_secs: 60,
            key_refresh: std::time::Duration::from_secs(86400),
            unknown_kid_interval: std::time::Duration::from_secs(300),
        }
    }

    /// The key set document, as Entra's keys endpoint serves it.
    pub fn jwks(&self) -> Value {
        json!({"keys": [self.jwk]})
    }

    /// Signs `claims` with RS256 and this key's kid.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        self.sign_with(header, claims)
    }

    /// Signs with a header of the caller's choosing (tests forge odd ones).
    pub fn sign_with(&self, header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("signing")
    }

    /// Claims like those of the token Azure Monitor's action group gets for
    /// the configured app: v1 for an `api://` audience, else v2.
    pub fn claims_for(config: &EntraConfig, now: i64) -> Value {
        let tenant = &config.tenant_id;
        let aud = config.audiences.first().cloned().unwrap_or_default();
        let app = config.allowed_app_ids.first().cloned().unwrap_or_default();
        let mut claims = json!({
            "aud": aud, "tid": tenant, "iat": now, "nbf": now, "exp": now + 3600,
            "oid": "00000000-0000-0000-0000-0000000000aa", "sub": "00000000-0000-0000-0000-0000000000aa",
            "uti": "dev", "idp": format!("https://sts.windows.net/{tenant}/"),
        });
        if aud.starts_with("api://") {
            claims["ver"] = json!("1.0");
            claims["iss"] = json!(format!("https://sts.windows.net/{tenant}/"));
            claims["appid"] = json!(app);
            claims["appidacr"] = json!("2");
        } else {
            claims["ver"] = json!("2.0");
            claims["iss"] = json!(format!(
                "{}/{tenant}/v2.0",
                config.authority.trim_end_matches('/')
            ));
            claims["azp"] = json!(app);
            claims["azpacr"] = json!("2");
        }
        if let Some(role) = &config.required_role {
            claims["roles"] = json!([role]);
        }
        claims
    }
}
