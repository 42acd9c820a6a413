//! The webhook role: a function URL request in, an answer out. Data flows
//! one way: method and size → authentication → schema → state machine → answer.

mod answer;
pub mod event;
pub mod metrics;

use std::sync::Arc;

use lambda_http::http::header;
use lambda_http::{Body, Request, RequestExt, Response, service_fn};

pub use answer::{Answer, Failure};

use super::common_schema;
pub use crate::config::MAX_BODY_BYTES;
use crate::domain::delivery::Accepted;
pub use crate::inbound::App;

/// Serves function URL requests with `app` until the runtime stops.
pub async fn run(app: Arc<App>) -> Result<(), lambda_http::Error> {
    lambda_http::run(service_fn(move |req: Request| {
        let app = app.clone();
        async move { Ok::<_, lambda_http::Error>(handle(&app, req).await) }
    }))
    .await
}

/// What a processed event leaves for the metrics line.
struct Done {
    answer: Answer,
    outcome: &'static str,
    itsm_ms: Option<u64>,
}

/// Handles one request; never fails, so Lambda never turns an error into a 502.
/// Alert-controlled values are logged with `?` (Debug): escaped, so a line
/// break or terminal escape in them cannot forge a line of the plain log.
pub async fn handle(app: &App, req: Request) -> Response<Body> {
    let request_id = req
        .lambda_context_ref()
        .map(|c| c.request_id.clone())
        .unwrap_or_default();
    let (answer, outcome, itsm_ms, itsm_status) = match process(app, &req, &request_id).await {
        Ok(done) => (done.answer, done.outcome, done.itsm_ms, None),
        Err((failure, alert_id)) => {
            let status = failure.status();
            // Messages name what failed, never the token or a credential.
            if status >= 500 {
                tracing::error!(%request_id, alert_id = ?alert_id.as_deref().unwrap_or(""), status, reason = failure.reason(), message = %failure.message(), "event failed");
            } else {
                tracing::warn!(%request_id, alert_id = ?alert_id.as_deref().unwrap_or(""), status, reason = failure.reason(), message = %failure.message(), "event rejected");
            }
            (
                failure.answer(),
                failure.reason(),
                None,
                failure.itsm_status(),
            )
        }
    };
    if let Some(namespace) = &app.metrics {
        let timestamp_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let line = metrics::EventMetrics {
            outcome,
            status: answer.status,
            itsm_ms,
            itsm_status,
            timestamp_ms,
        };
        // stdout, not the log: CloudWatch reads EMF from the raw line.
        println!("{}", metrics::emf(namespace, &line));
    }
    to_response(answer)
}

async fn process(
    app: &App,
    req: &Request,
    request_id: &str,
) -> Result<Done, (Failure, Option<String>)> {
    if req.method() != lambda_http::http::Method::POST {
        return Err((Failure::Method(req.method().to_string()), None));
    }
    if req.uri().path() != app.path {
        return Err((Failure::Path(req.uri().path().to_string()), None));
    }
    // Azure sends application/json; a request without a type is let through.
    if let Some(kind) = req.headers().get(header::CONTENT_TYPE)
        && !kind
            .as_bytes()
            .windows(4)
            .any(|w| w.eq_ignore_ascii_case(b"json"))
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
        .get(header::AUTHORIZATION)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok());
    let caller = app
        .verifier
        .verify(authorization)
        .await
        .map_err(|e| (Failure::Auth(e), None))?;
    let alert = common_schema::parse(body).map_err(|e| (Failure::Schema(e), None))?;
    let started = std::time::Instant::now();
    let accepted = match &app.delivery {
        Some(delivery) => delivery.accept(&alert, body).await,
        None => app.bridge.process(&alert).await.map(Accepted::Processed),
    };
    let processed = match accepted {
        Ok(Accepted::Processed(processed)) => processed,
        Ok(Accepted::Queued {
            seq,
            reason,
            failure,
        }) => {
            tracing::info!(
                request_id,
                alert_id = ?alert.alert_id,
                condition = ?alert.condition,
                caller = %caller.app_id,
                outcome = "queued",
                reason = reason.as_str(),
                seq,
                status = 202,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "event queued"
            );
            return Ok(Done {
                answer: answer::queued(&alert.alert_id, seq, reason, failure.as_ref()),
                outcome: "queued",
                itsm_ms: None,
            });
        }
        Err(e) => return Err((Failure::Process(e), Some(alert.alert_id.clone()))),
    };
    let answer = answer::success(&alert.alert_id, &processed);
    // The one summary line per event.
    tracing::info!(
        request_id,
        alert_id = ?alert.alert_id,
        rule = ?alert.alert_rule.as_deref().unwrap_or(""),
        monitoring_service = ?alert.monitoring_service.as_deref().unwrap_or(""),
        condition = ?alert.condition,
        caller = %caller.app_id,
        outcome = processed.outcome.as_str(),
        incident = ?processed.incident.as_ref().map_or("", |i| i.number.as_str()),
        itsm = app.bridge.itsm_kind(),
        itsm_calls = processed.itsm_calls,
        itsm_ms = processed.itsm_ms,
        status = answer.status,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "event processed"
    );
    let itsm_ms = (processed.itsm_calls > 0).then_some(processed.itsm_ms);
    Ok(Done {
        answer,
        outcome: processed.outcome.as_str(),
        itsm_ms,
    })
}

fn to_response(answer: Answer) -> Response<Body> {
    let mut builder = Response::builder().status(answer.status).header(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    for (name, value) in answer.headers {
        builder = builder.header(name, value);
    }
    builder
        .body(Body::Text(answer.body))
        .expect("static status and headers are valid")
}
