//! The HTTP edge: a function URL request in, an answer out. Data flows one
//! way: method and size → authentication → schema → state machine → answer.

mod answer;
pub mod event;

use std::sync::Arc;

use lambda_http::{Body, Request, RequestExt, Response};

pub use answer::{Answer, Failure};

use crate::domain::alert;
use crate::domain::pipeline::Bridge;
use crate::domain::ports::TokenVerifier;

pub use crate::config::MAX_BODY_BYTES;

/// Everything a request needs, built once per container.
pub struct App {
    pub verifier: Arc<dyn TokenVerifier>,
    pub bridge: Bridge,
    /// The one path alerts are posted to (`WEBHOOK_PATH`, default `/`).
    pub path: String,
}

/// Handles one request; never fails, so Lambda never turns an error into a 502.
pub async fn handle(app: &App, req: Request) -> Response<Body> {
    let request_id = req
        .lambda_context_ref()
        .map(|c| c.request_id.clone())
        .unwrap_or_default();
    let answer = match process(app, &req).await {
        Ok(answer) => answer,
        Err((failure, alert_id)) => {
            let status = failure.status();
            // Messages name what failed, never the token or a credential.
            if status >= 500 {
                tracing::error!(%request_id, alert_id, status, reason = failure.reason(), message = %failure.message(), "event failed");
            } else {
                tracing::warn!(%request_id, alert_id, status, reason = failure.reason(), message = %failure.message(), "event rejected");
            }
            failure.answer()
        }
    };
    to_response(answer)
}

async fn process(app: &App, req: &Request) -> Result<Answer, (Failure, Option<String>)> {
    if req.method() != lambda_http::http::Method::POST {
        return Err((Failure::Method(req.method().to_string()), None));
    }
    if req.uri().path() != app.path {
        return Err((Failure::Path(req.uri().path().to_string()), None));
    }
    // Azure sends application/json; a request without a type is let through.
    if let Some(kind) = req.headers().get("content-type")
        && !String::from_utf8_lossy(kind.as_bytes())
            .to_ascii_lowercase()
            .contains("json")
    {
        return Err((
            Failure::ContentType(String::from_utf8_lossy(kind.as_bytes()).into_owned()),
            None,
        ));
    }
    let body: &[u8] = match req.body() {
        Body::Empty => &[],
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    };
    if body.len() > MAX_BODY_BYTES {
        return Err((Failure::TooLarge(body.len()), None));
    }
    // from_utf8 checks a 1–2 KB token faster than HeaderValue::to_str.
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok());
    let caller = app
        .verifier
        .verify(authorization)
        .await
        .map_err(|e| (Failure::Auth(e), None))?;
    let alert = alert::parse(body).map_err(|e| (Failure::Schema(e), None))?;
    let started = std::time::Instant::now();
    let processed = app
        .bridge
        .process(&alert)
        .await
        .map_err(|e| (Failure::Process(e), Some(alert.alert_id.clone())))?;
    tracing::info!(
        alert_id = %alert.alert_id,
        rule = alert.alert_rule.as_deref().unwrap_or(""),
        monitoring_service = alert.monitoring_service.as_deref().unwrap_or(""),
        caller = %caller.app_id,
        outcome = processed.outcome.as_str(),
        incident = processed.incident.as_ref().map_or("", |i| i.number.as_str()),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "event processed"
    );
    Ok(answer::success(&alert.alert_id, &processed))
}

fn to_response(answer: Answer) -> Response<Body> {
    let mut builder = Response::builder()
        .status(answer.status)
        .header("content-type", "application/json");
    for (name, value) in answer.headers {
        builder = builder.header(name, value);
    }
    builder
        .body(Body::Text(answer.body.to_string()))
        .expect("static status and headers are valid")
}
