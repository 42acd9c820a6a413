//! Lambda function URL events (payload format 2.0), as AWS hands requests
//! to the function: `replay` wraps bare alert bodies in one, and tests,
//! benches and examples build their requests with it.

use serde_json::{Value, json};

/// A `method` request to `/` with a JSON `body` and, when given, an
/// `Authorization` header. Edit the value for anything else.
pub fn function_url_event(method: &str, authorization: Option<&str>, body: &str) -> Value {
    let mut headers = json!({"content-type": "application/json"});
    if let Some(a) = authorization {
        headers["authorization"] = json!(a);
    }
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous", "apiId": "local", "domainName": "local.lambda-url.localhost",
            "domainPrefix": "local", "requestId": "local", "routeKey": "$default", "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000", "timeEpoch": 0,
            "http": {"method": method, "path": "/", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "local"}
        },
        "body": body, "isBase64Encoded": false
    })
}

/// The `lambda_http` request for an event built by [`function_url_event`].
pub fn request(event: &Value) -> lambda_http::Request {
    lambda_http::request::from_str(&event.to_string()).expect("a function URL event")
}
