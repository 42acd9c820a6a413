//! What every ITSM client does alike with HTTP failures: what is worth a
//! retry (Azure's, through a 503) and what someone must fix.

use std::time::Duration;

use super::wire::ItsmRequest;
use crate::domain::ports::ItsmError;

/// The TLS stack could not be set up (no usable root certificates, say):
/// nothing can be sent to the ITSM from this container.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct HttpClientError(#[from] reqwest::Error);

/// An ITSM adapter's HTTP client (rustls): built once per container; its
/// pool keeps one connection per host across warm invocations.
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, HttpClientError> {
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(3))
        .user_agent(concat!("itsm-bridge/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// A request for `req` (method, URL under `base`, JSON body): the caller
/// adds its credentials.
pub(crate) fn request(
    http: &reqwest::Client,
    base: &url::Url,
    req: &ItsmRequest,
) -> Result<reqwest::RequestBuilder, ItsmError> {
    let url = base.join(&req.path).map_err(|e| ItsmError::Rejected {
        status: 0,
        message: format!("bad request path: {e}"),
    })?;
    // The one door every credentialed request goes through: whatever a path
    // holds ("//host", "\\host", dot segments), it stays on the configured
    // scheme, host and port.
    if url.origin() != base.origin() {
        return Err(ItsmError::Rejected {
            status: 0,
            message: format!(
                "refusing to send credentials to {}: not the configured ITSM host",
                url.origin().ascii_serialization()
            ),
        });
    }
    let method = reqwest::Method::from_bytes(req.method.as_bytes()).expect("static method");
    let builder = http.request(method, url);
    Ok(match &req.body {
        Some(body) => builder.json(body),
        None => builder,
    })
}

/// A reqwest error in a few words, without the request's URL.
/// The error for a request that got no answer: never sent (could not
/// connect) is plainly unavailable; anything later may have taken effect.
pub(crate) fn unanswered(e: &reqwest::Error) -> ItsmError {
    if e.is_connect() {
        ItsmError::Unavailable(describe(e))
    } else {
        ItsmError::Unanswered(describe(e))
    }
}

pub(crate) fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        format!("request failed: {e}")
    }
}

/// An answer read whole: status, `Retry-After` (as sent) and body text.
pub(crate) struct Raw {
    pub status: u16,
    pub retry_after: Option<String>,
    pub text: String,
}

pub(crate) async fn read_raw(resp: reqwest::Response) -> Result<Raw, ItsmError> {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = resp.text().await.map_err(|e| unanswered(&e))?;
    Ok(Raw {
        status,
        retry_after,
        text,
    })
}

/// The error for a non-2xx answer other than 404 (which means something
/// different to each operation). `message` is the ITSM's own explanation.
pub(crate) fn failure(
    itsm: &str,
    status: u16,
    message: String,
    retry_after: Option<&str>,
    credentials: &str,
) -> ItsmError {
    match status {
        429 => ItsmError::Throttled {
            message: format!(
                "{itsm} answered HTTP 429 (Retry-After {})",
                retry_after.unwrap_or("not given")
            ),
            retry_after: retry_after
                .and_then(|s| s.trim().parse().ok())
                .map(std::time::Duration::from_secs),
        },
        s if s >= 500 => ItsmError::Unavailable(format!("{itsm} answered HTTP {s}: {message}")),
        401 => ItsmError::Rejected {
            status,
            message: format!("{itsm} refused the credentials ({message}); check {credentials}"),
        },
        _ => ItsmError::Rejected { status, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_path_leaves_the_configured_host() {
        let http = client(Duration::from_secs(1)).unwrap();
        let base = url::Url::parse("https://tenant-restapi.onbmc.com/").unwrap();
        for path in [
            "//evil.example/api",
            "\\\\evil.example\\api",
            "https://evil.example/api",
            "http://tenant-restapi.onbmc.com/api",
            "https://tenant-restapi.onbmc.com:8443/api",
        ] {
            let req = ItsmRequest::new("GET", path, &[], None);
            assert!(
                matches!(
                    request(&http, &base, &req),
                    Err(ItsmError::Rejected { status: 0, .. })
                ),
                "{path}"
            );
        }
        let ok = ItsmRequest::new("GET", "/api/arsys/v1/entry/x", &[], None);
        assert!(request(&http, &base, &ok).is_ok());
    }
}
