//! Secrets and tokens never reach a log line or an answer, whether a run
//! succeeds or fails. Every log record of the test, at TRACE and from every
//! crate, is captured and searched.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

/// A process-wide subscriber: a thread-local one can miss events whose
/// callsites other tests' threads registered first (tracing caches interest).
/// Other tests' logs land here too, which only widens the search.
fn global_capture() -> Capture {
    static CAPTURE: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = Capture::default();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_writer(capture.clone())
                .with_ansi(false)
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in tests");
            capture
        })
        .clone()
}

#[tokio::test]
async fn no_secret_or_token_in_logs_or_answers() {
    let capture = global_capture();

    const CLIENT_SECRET: &str = "oauth-client-secret-5f2b";
    const ACCESS_TOKEN: &str = "sn-access-token-9c1d7e";
    let t = Spawn::default()
        .var("SERVICENOW_CLIENT_ID", "client-7")
        .var("SERVICENOW_CLIENT_SECRET", CLIENT_SECRET)
        .start()
        .await;
    Mock::given(method("POST"))
        .and(path("/oauth_token.do"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 1799}),
        ))
        .mount(&t.itsm)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/now/table/incident"))
        .respond_with(created("INC0040001"))
        .up_to_n_times(1)
        .mount(&t.itsm)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/now/table/incident"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {"message": "User Not Authenticated", "detail": ""}, "status": "failure"})))
        .mount(&t.itsm)
        .await;
    let token = t.token();
    let mut answers = Vec::new();
    // A success, an ITSM refusal, a forged token and a garbage token.
    answers.push(t.post(&metric_alert("logs-ok", "Fired")).await.body);
    answers.push(t.post(&metric_alert("logs-refused", "Fired")).await.body);
    let forged = format!("{}x", &token[..token.len() - 1]);
    answers.push(
        t.send(
            "POST",
            Some(&format!("Bearer {forged}")),
            &metric_alert("logs-forged", "Fired").to_string(),
        )
        .await
        .body,
    );
    answers.push(t.send("POST", Some("Bearer not.a.jwt"), "{}").await.body);

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("event processed"),
        "the capture works: {logs}"
    );
    assert!(logs.contains("event rejected") || logs.contains("event failed"));
    // The summary line carries what an operator filters on.
    for field in [
        "outcome=\"created\"",
        "condition=Fired",
        "incident=\"INC0040001\"",
        "itsm_calls=1",
        "itsm_ms=",
        "rule=",
        "monitoring_service=",
    ] {
        assert!(logs.contains(field), "summary line lacks {field}");
    }
    let signature = token.rsplit('.').next().unwrap();
    let answers = serde_json::to_string(&answers).unwrap();
    for (what, secret) in [
        ("ServiceNow password", SN_PASSWORD),
        ("OAuth client secret", CLIENT_SECRET),
        ("OAuth access token", ACCESS_TOKEN),
        ("bearer token", token.as_str()),
        ("bearer token signature", signature),
        ("forged token", forged.as_str()),
    ] {
        assert!(!logs.contains(secret), "the {what} is in the logs");
        assert!(!answers.contains(secret), "the {what} is in an answer");
    }
}

#[tokio::test]
async fn alert_text_cannot_forge_a_plain_log_line() {
    let capture = global_capture();
    let t = TestApp::spawn().await;
    Mock::given(method("POST"))
        .respond_with(created("INC0090001"))
        .mount(&t.itsm)
        .await;
    let mut body = metric_alert("forged-log", "Fired");
    let forged =
        "\n2026-12-01T00:00:00Z  INFO itsm_bridge: event processed outcome=\"created\" \u{1b}[2J";
    body["data"]["essentials"]["alertRule"] = json!(format!("cpu{forged}"));
    body["data"]["essentials"]["alertId"] = json!(format!("/alerts/forged-log{forged}"));
    let reply = t.post(&body).await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    // The values were written, escaped: never a raw line break or ESC.
    assert!(
        text.contains("forged-log\\n2026-12-01T00:00:00Z"),
        "the alert id is logged, escaped"
    );
    assert!(
        !text.contains('\u{1b}'),
        "a terminal escape reached the log"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("2026-12-01T00:00:00Z  INFO")),
        "a forged line starts a line of the log"
    );
}
