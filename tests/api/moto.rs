//! A real DynamoDB and Secrets Manager API on loopback: moto's server.
//! Uses ITSM_BRIDGE_MOTO_URL when set (CI may start one); otherwise starts
//! `moto_server` once for this test binary. Never skips silently.

use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

struct Moto {
    url: String,
    /// Holds the wrapper's stdin: when this process exits, the pipe
    /// closes and the wrapper stops the server.
    _child: Option<Child>,
}

const HOW: &str = "these tests need moto's server, a local DynamoDB and Secrets Manager API: \
                   run the README's test command, which installs it into .moto-venv \
                   (`python3 -m venv .moto-venv && .moto-venv/bin/pip install \"moto[server]\"`), \
                   or put moto_server on PATH, or start one (`moto_server -H 127.0.0.1 -p 5077`) \
                   and set ITSM_BRIDGE_MOTO_URL=http://127.0.0.1:5077";

/// `moto_server` from the project's virtual environment, else from PATH.
fn moto_server() -> Option<std::path::PathBuf> {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".moto-venv/bin/moto_server");
    if venv.is_file() {
        return Some(venv);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("moto_server"))
            .find(|p| p.is_file())
    })
}

fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| {
        if let Ok(url) = std::env::var("ITSM_BRIDGE_MOTO_URL") {
            wait_for(&url, None).unwrap_or_else(|e| panic!("ITSM_BRIDGE_MOTO_URL={url} does not answer ({e}); {HOW}"));
            return Moto { url, _child: None };
        }
        let server = moto_server().unwrap_or_else(|| panic!("moto_server is not installed; {HOW}"));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::env::temp_dir().join(format!("itsm-bridge-moto-{}.log", std::process::id()));
        // The wrapper stops the server when our end of its stdin closes,
        // which happens however this process ends.
        let mut child = Command::new("bash")
            .arg("-c")
            .arg("\"$0\" -H 127.0.0.1 -p \"$1\" >\"$2\" 2>&1 & server=$!; cat >/dev/null; kill $server")
            .arg(&server)
            .arg(port.to_string())
            .arg(&log)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start bash for moto_server: {e}; {HOW}"));
        let url = format!("http://127.0.0.1:{port}");
        if let Err(e) = wait_for(&url, Some(&log)) {
            drop(child.stdin.take());
            let _ = child.kill();
            let out = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("{} did not start ({e}): {out}; {HOW}", server.display());
        }
        Moto { url, _child: Some(child) }
    })
}

/// Waits, at most 30 s, for `url` to accept connections; gives up at once
/// when the server's log shows it stopped with a Python traceback.
fn wait_for(url: &str, log: Option<&std::path::Path>) -> Result<(), String> {
    let addr = url.trim_start_matches("http://").to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match std::net::TcpStream::connect(&addr) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e.to_string()),
            Err(e)
                if log
                    .and_then(|l| std::fs::read_to_string(l).ok())
                    .is_some_and(|t| t.contains("Traceback")) =>
            {
                return Err(e.to_string());
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The emulator's endpoint (starts it on first use).
pub fn url() -> String {
    moto().url.clone()
}

/// An SDK configuration aimed at moto, with dummy credentials. One per
/// test: its HTTP client belongs to the test's runtime.
pub async fn sdk_config() -> aws_config::SdkConfig {
    let url = tokio::task::spawn_blocking(|| moto().url.clone())
        .await
        .unwrap();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "moto",
        ))
        .load()
        .await
}

/// A name no other test (or earlier run against the same server) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A Lambda event source mapping in moto, for the breaker's intake: a
/// function (with the IAM role Lambda insists on) mapped to a queue of its
/// own that nothing sends to, so moto's own trigger never fires. Returns
/// the mapping's UUID.
pub async fn event_source_mapping(aws: &aws_config::SdkConfig) -> String {
    let name = unique("worker");
    // moto checks the role exists; the SDK has no IAM client here: IAM's
    // query API by hand (moto checks no signature).
    let form = [
        ("Action", "CreateRole"),
        ("Version", "2010-05-08"),
        ("RoleName", name.as_str()),
        ("AssumeRolePolicyDocument", "{}"),
    ];
    let created = reqwest::Client::new()
        .post(url())
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .form(&form)
        .send()
        .await
        .unwrap();
    assert!(
        created.status().is_success(),
        "CreateRole: {:?}",
        created.text().await
    );
    let lambda = aws_sdk_lambda::Client::new(aws);
    // An empty zip archive: moto stores the code, never runs it here.
    let mut zip = b"PK\x05\x06".to_vec();
    zip.extend([0u8; 18]);
    lambda
        .create_function()
        .function_name(&name)
        .runtime(aws_sdk_lambda::types::Runtime::Providedal2023)
        .handler("worker")
        .role(format!("arn:aws:iam::123456789012:role/{name}"))
        .code(
            aws_sdk_lambda::types::FunctionCode::builder()
                .zip_file(aws_sdk_lambda::primitives::Blob::new(zip))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let sqs = aws_sdk_sqs::Client::new(aws);
    let queue = sqs.create_queue().queue_name(&name).send().await.unwrap();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(queue.queue_url().unwrap())
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let mapping = lambda
        .create_event_source_mapping()
        .function_name(&name)
        .event_source_arn(arn)
        .batch_size(10)
        .send()
        .await
        .unwrap();
    mapping.uuid().unwrap().to_string()
}
