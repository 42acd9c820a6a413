//! Entra token verification through the handler, against a key set served
//! over HTTP on loopback. Keys are generated here.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use itsm_bridge::adapters::entra::DevKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

/// A Resolved for an unknown alert: accepted without any ITSM call.
fn body() -> Value {
    metric_alert("auth-probe", "Resolved")
}

fn with(mut claims: Value, edits: Value) -> Value {
    for (k, v) in edits.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

/// Sends the probe body with `token`.
async fn bearer(t: &TestApp, token: &str) -> Reply {
    t.send(
        "POST",
        Some(&format!("Bearer {token}")),
        &body().to_string(),
    )
    .await
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn v2_claims(t: &TestApp) -> Value {
    with(
        t.claims(),
        json!({"ver": "2.0", "aud": CLIENT_ID, "iss": format!("{}/{TENANT}/v2.0", t.entra.uri()),
               "azp": ACTION_GROUP, "azpacr": "2", "appid": null, "appidacr": null}),
    )
}

async fn check(t: &TestApp, case: &str, authorization: Option<String>, status: u16, says: &str) {
    let reply = t
        .send("POST", authorization.as_deref(), &body().to_string())
        .await;
    assert_eq!(reply.status, status, "{case}: {:?}", reply.body);
    assert!(
        reply.message().contains(says) || reply.outcome().contains(says),
        "{case}: {:?} lacks {says:?}",
        reply.body
    );
    if status == 401 {
        let challenge = reply.headers["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{case}: {challenge}");
    }
}

#[tokio::test]
async fn token_table() {
    let t = TestApp::spawn().await;
    let key = key();
    let header = |token: String| Some(format!("Bearer {token}"));
    let base = t.claims();
    let now = now();
    let other_tenant = "99998888-0000-cccc-1111-dddd2222eeee";

    let valid_v1 = key.sign(&base);
    let (h, p, s) = {
        let mut parts = valid_v1.split('.');
        (
            parts.next().unwrap().to_string(),
            parts.next().unwrap().to_string(),
            parts.next().unwrap().to_string(),
        )
    };
    let mut flipped = s.clone().into_bytes();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let hs256 = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        let public = key.jwks()["keys"][0]["n"].as_str().unwrap().to_string();
        jsonwebtoken::encode(&header, &base, &EncodingKey::from_secret(public.as_bytes())).unwrap()
    };
    let no_kid = key.sign_with(Header::new(Algorithm::RS256), &base);

    let cases: Vec<(&str, Option<String>, u16, &str)> = vec![
        ("valid v1", header(valid_v1.clone()), 200, "resolved_without_incident"),
        ("valid v2", header(key.sign(&v2_claims(&t))), 200, "already_resolved"),
        ("no header", None, 401, "no Authorization header"),
        ("not bearer", Some(format!("Basic {}", URL_SAFE_NO_PAD.encode("a:b"))), 401, "not a Bearer token"),
        ("empty", Some("Bearer ".into()), 401, "empty"),
        ("garbage", header("not-a-jwt".into()), 401, "not a JWT"),
        ("oversized", header(format!("{h}.{}.{s}", "A".repeat(9000))), 401, "too large"),
        ("expired", header(key.sign(&with(base.clone(), json!({"exp": now - 3600, "nbf": now - 7200})))), 401, "expired"),
        ("not yet valid", header(key.sign(&with(base.clone(), json!({"nbf": now + 3600})))), 401, "not valid yet"),
        ("wrong issuer", header(key.sign(&with(base.clone(), json!({"iss": "https://evil.example/"})))), 401, "not issued by the configured tenant"),
        ("issuer of another tenant", header(key.sign(&with(base.clone(), json!({"iss": format!("https://sts.windows.net/{other_tenant}/"), "tid": other_tenant})))), 401, "not issued by the configured tenant"),
        ("tid of another tenant", header(key.sign(&with(base.clone(), json!({"tid": other_tenant})))), 401, "tid"),
        ("v2 claims with a v1 issuer", header(key.sign(&with(v2_claims(&t), json!({"iss": format!("https://sts.windows.net/{TENANT}/")})))), 401, "does not match its version"),
        ("wrong audience", header(key.sign(&with(base.clone(), json!({"aud": "api://someone-else"})))), 403, "ENTRA_AUDIENCES"),
        ("wrong caller app", header(key.sign(&with(base.clone(), json!({"appid": "00000000-1111-2222-3333-444444444444"})))), 403, "ENTRA_ALLOWED_APP_IDS"),
        ("missing role", header(key.sign(&with(base.clone(), json!({"roles": null})))), 403, "ActionGroupsSecureWebhook"),
        ("alg none", header(format!("{}.{p}.", b64(&json!({"alg": "none", "typ": "JWT"})))), 401, "not a JWT"),
        ("HS256 with the public key as secret", header(hs256), 401, "RS256"),
        ("no kid", header(no_kid), 401, "no kid"),
        ("tampered payload", header(format!("{h}.{}.{s}", b64(&with(base.clone(), json!({"roles": ["Admin", "ActionGroupsSecureWebhook"]}))))), 401, "signature"),
        ("tampered signature", header(format!("{h}.{p}.{}", String::from_utf8(flipped).unwrap())), 401, "signature"),
    ];
    for (case, authorization, status, says) in cases {
        check(&t, case, authorization, status, says).await;
    }
    // The key set was fetched once for all of that.
    assert_eq!(t.entra.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_unknown_kid_refetches_once_then_is_rate_limited() {
    let t = TestApp::spawn().await;
    let reply = bearer(&t, &t.token()).await;
    assert_eq!(reply.status, 200);

    // Entra rotates: the set now holds a new key too.
    let rotated = DevKey::generate();
    let mut set = key().jwks();
    set["keys"]
        .as_array_mut()
        .unwrap()
        .push(rotated.jwks()["keys"][0].clone());
    t.entra.reset().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(set))
        .mount(&t.entra)
        .await;
    let reply = bearer(&t, &rotated.sign(&t.claims())).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(
        t.entra.received_requests().await.unwrap().len(),
        1,
        "one refetch for the new kid"
    );

    // Forged kids cannot make us hammer Entra.
    let forged = DevKey::generate();
    for _ in 0..3 {
        let reply = bearer(&t, &forged.sign(&t.claims())).await;
        assert_eq!(reply.status, 401);
        assert!(
            reply.message().contains("not in the tenant's key set"),
            "{:?}",
            reply.body
        );
    }
    assert_eq!(t.entra.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn keys_unavailable_with_none_cached_is_503_and_cached_keys_survive_a_failed_refresh() {
    let t = TestApp::spawn().await;
    t.entra.reset().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&t.entra)
        .await;
    let reply = bearer(&t, &t.token()).await;
    assert_eq!(
        (reply.status, reply.outcome()),
        (503, "signing_keys_unavailable")
    );
    assert!(reply.headers.contains_key("retry-after"));

    let t = TestApp::spawn().await;
    assert_eq!(bearer(&t, &t.token()).await.status, 200);
    t.entra.reset().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&t.entra)
        .await;
    let unknown = DevKey::generate().sign(&t.claims());
    assert_eq!(bearer(&t, &unknown).await.status, 401);
    // A token not seen before, signed by the cached key: still accepted.
    let fresh = key().sign(&with(t.claims(), json!({"uti": "another-token"})));
    assert_eq!(bearer(&t, &fresh).await.status, 200);
}

#[tokio::test]
async fn a_cached_token_is_refused_after_it_expires() {
    let t = TestApp::spawn().await;
    let token = key().sign(&with(t.claims(), json!({"exp": now() + 30})));
    assert_eq!(bearer(&t, &token).await.status, 200);
    assert_eq!(bearer(&t, &token).await.status, 200);
    t.advance(30 + 60 + 1); // past exp plus the default leeway
    let reply = bearer(&t, &token).await;
    assert_eq!(reply.status, 401);
    assert!(reply.message().contains("expired"));
}

#[tokio::test]
async fn a_key_removed_from_the_set_stops_its_cached_tokens() {
    let t = TestApp::spawn().await;
    let old = t.token();
    assert_eq!(bearer(&t, &old).await.status, 200);
    assert_eq!(bearer(&t, &old).await.status, 200, "cached");
    // Entra retires the old key: the set now lists only a new one.
    let rotated = DevKey::generate();
    t.entra.reset().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(rotated.jwks()))
        .mount(&t.entra)
        .await;
    // A token by the new key prompts the refresh that drops the old one...
    assert_eq!(bearer(&t, &rotated.sign(&t.claims())).await.status, 200);
    // ...and the cached verdict for the old key's token goes with it.
    let reply = bearer(&t, &old).await;
    assert_eq!(reply.status, 401, "{:?}", reply.body);
    assert!(
        reply
            .message()
            .contains("no longer in the tenant's key set"),
        "{}",
        reply.message()
    );
    assert_eq!(bearer(&t, &old).await.status, 401);
}
