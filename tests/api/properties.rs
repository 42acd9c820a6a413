//! Properties over generated input (the fuzz targets in `fuzz/` go further,
//! on nightly): the parser, the mapping and the verifier never panic, never
//! exceed the ITSM's limits, and never accept what nobody signed.

use std::sync::OnceLock;

use itsm_bridge::domain::incident::mapping::{
    self, DESCRIPTION_MAX, SHORT_DESCRIPTION_MAX, SeverityTable,
};
use itsm_bridge::domain::ports::TokenVerifier;
use itsm_bridge::inbound::common_schema;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::helpers::{fixture, key_of};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,300}".prop_map(Value::String),
        "(https?://)?[a-z/.^=%]{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map("[A-Za-z]{1,12}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const FIELDS: [&str; 9] = [
    "alertId",
    "alertRule",
    "severity",
    "signalType",
    "monitorCondition",
    "monitoringService",
    "configurationItems",
    "alertTargetIDs",
    "firedDateTime",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_get_a_4xx_saying_what_is_wrong(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        // Through the real handler, with a valid token: only the body is wrong.
        let reply = runtime().block_on(post_bytes(&bytes));
        prop_assert!((400..500).contains(&reply.status), "{} {:?}", reply.status, reply.body);
        prop_assert!(reply.body["error"].is_string(), "{:?}", reply.body);
        prop_assert!(!reply.message().is_empty());
    }

    #[test]
    fn arbitrary_field_values_parse_or_fail_cleanly(field in 0..FIELDS.len(), value in json_value(), context in json_value(), custom in json_value()) {
        let mut body = fixture("test-metric-static-fired.json");
        body["data"]["essentials"][FIELDS[field]] = value;
        body["data"]["alertContext"] = context;
        body["data"]["customProperties"] = custom;
        match common_schema::parse(body.to_string().as_bytes()) {
            Ok(alert) => {
                let draft = mapping::draft(&alert, &SeverityTable::default(), key_of(&alert));
                prop_assert!(draft.short_description.chars().count() <= SHORT_DESCRIPTION_MAX);
                prop_assert!(draft.description.chars().count() <= DESCRIPTION_MAX);
                prop_assert!(draft.correlation_label.chars().count() <= 100);
                prop_assert!(!draft.short_description.chars().any(|c| c.is_control()));
                prop_assert!(!alert.alert_id.is_empty());
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn arbitrary_authorization_headers_are_refused(header in "(Bearer |bearer )?[A-Za-z0-9_.=+/-]{0,600}") {
        let result = runtime().block_on(verifier().verify(Some(&header)));
        prop_assert!(result.is_err());
    }

    #[test]
    fn jwt_shaped_tokens_with_other_algorithms_or_forged_signatures_are_refused(
        alg in prop_oneof![Just("none"), Just("HS256"), Just("RS256"), Just("RS512"), Just("PS256"), Just("ES256")],
        own_kid in any::<bool>(),
        signature in "[A-Za-z0-9_-]{0,400}",
    ) {
        // Real claims under a real header; only the signature is made up.
        use base64::Engine as _;
        let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let kid = if own_kid { crate::helpers::key().jwks()["keys"][0]["kid"].clone() } else { json!("other-kid") };
        let header = json!({"typ": "JWT", "alg": alg, "kid": kid});
        let claims = itsm_bridge::adapters::entra::DevKey::claims_for(&shared().config, crate::helpers::now());
        let token = format!("{}.{}.{signature}", b64(&header), b64(&claims));
        let result = runtime().block_on(verifier().verify(Some(&format!("Bearer {token}"))));
        prop_assert!(result.is_err(), "accepted alg {alg} with a made-up signature");
    }

    #[test]
    fn validly_signed_tokens_with_wrong_claims_are_refused(
        claim in prop_oneof![Just("aud"), Just("iss"), Just("tid"), Just("exp"), Just("nbf"), Just("roles"), Just("appid")],
        text in "[a-z0-9:/._-]{1,40}",
        hours in 2i64..10_000,
    ) {
        let now = crate::helpers::now();
        let mut claims = itsm_bridge::adapters::entra::DevKey::claims_for(&shared().config, now);
        claims[claim] = match claim {
            "exp" => json!(now - hours * 3600),
            "nbf" => json!(now + hours * 3600),
            "roles" => json!([text]),
            _ => json!(text),
        };
        let token = crate::helpers::key().sign(&claims);
        let result = runtime().block_on(verifier().verify(Some(&format!("Bearer {token}"))));
        prop_assert!(result.is_err(), "accepted {claim} = {}", claims[claim]);
    }

    #[test]
    fn tampered_tokens_are_refused(position in 0usize..2000, byte in b'0'..=b'z') {
        let token = valid_token();
        let mut bytes = token.clone().into_bytes();
        let i = position % bytes.len();
        prop_assume!(bytes[i] != byte && bytes[i] != b'.');
        bytes[i] = byte;
        let tampered = String::from_utf8(bytes).unwrap();
        let result = runtime().block_on(verifier().verify(Some(&format!("Bearer {tampered}"))));
        prop_assert!(result.is_err(), "accepted a tampered token");
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

struct Verifier {
    verifier: itsm_bridge::adapters::entra::EntraVerifier,
    config: itsm_bridge::adapters::entra::EntraConfig,
}

fn shared() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let path =
            std::env::temp_dir().join(format!("itsm-bridge-props-{}.json", std::process::id()));
        let config = crate::helpers::key().local_config(&path);
        let verifier = itsm_bridge::adapters::entra::EntraVerifier::new(
            config.clone(),
            itsm_bridge::adapters::clock::system_clock(),
        );
        Verifier { verifier, config }
    })
}

fn verifier() -> &'static itsm_bridge::adapters::entra::EntraVerifier {
    &shared().verifier
}

fn valid_token() -> String {
    let claims =
        itsm_bridge::adapters::entra::DevKey::claims_for(&shared().config, crate::helpers::now());
    let token = crate::helpers::key().sign(&claims);
    // The untampered token does pass: the property is about the changes.
    assert!(
        runtime()
            .block_on(verifier().verify(Some(&format!("Bearer {token}"))))
            .is_ok()
    );
    token
}

/// Posts `bytes` as the body (base64, as a function URL carries binary) with
/// a valid token, through a handler shared by every case.
async fn post_bytes(bytes: &[u8]) -> crate::helpers::Reply {
    use base64::Engine as _;
    static APP: tokio::sync::OnceCell<crate::helpers::TestApp> = tokio::sync::OnceCell::const_new();
    let t = APP.get_or_init(crate::helpers::TestApp::spawn).await;
    let mut event = itsm_bridge::inbound::http::event::function_url_event(
        "POST",
        Some(&format!("Bearer {}", t.token())),
        "",
    );
    event["body"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
    event["isBase64Encoded"] = json!(true);
    crate::helpers::send_event(&t.app, &event).await
}

/// Alert text meant to pass for the bridge's own lines, or to reorder them.
fn hostile_text() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        "\\PC{0,20}",
        Just("\nLinks:\n- https://evil.example/".to_string()),
        Just("\r\nAlert id: /forged".to_string()),
        Just("\u{2028}Severity: Sev0".to_string()),
        Just("\u{2029}Custom properties:".to_string()),
        Just("\u{85}\u{0B}\u{0C}Resource group: x".to_string()),
        Just("\u{202E}kniL\u{202C}\u{2066}\u{2069}\u{200F}\u{061C}".to_string()),
        Just("https://ok.example/\nWhat: forged".to_string()),
    ];
    prop::collection::vec(pieces, 0..6).prop_map(|v| v.concat())
}

/// Every line of an incident text that starts at the left margin is one the
/// bridge wrote: one of its labels, `Links:`, `Custom properties:` or a link
/// item; and no bidirectional formatting character is left.
fn only_our_lines(text: &str) -> Result<(), String> {
    for bidi in [
        '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}',
        '\u{2068}', '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}',
    ] {
        if text.contains(bidi) {
            return Err(format!("bidi {bidi:?} in {text:?}"));
        }
    }
    for line in text.split('\n') {
        let ours = line.is_empty()
            || line.starts_with(' ')
            || line == "Links:"
            || line == "Custom properties:"
            || line.starts_with("- http")
            || mapping::LABELS
                .iter()
                .any(|l| line.starts_with(&format!("{l}: ")));
        if !ours || line.chars().any(|c| c.is_control() && c != '\t') {
            return Err(format!("{line:?} in {text:?}"));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn alert_text_cannot_forge_incident_lines(
        rule in hostile_text(), description in hostile_text(), key in hostile_text(),
        value in hostile_text(), dimension in hostile_text(), link in hostile_text(),
    ) {
        use itsm_bridge::adapters::bmc::BmcFormat;
        use itsm_bridge::adapters::servicenow::ServiceNowFormat;
        use itsm_bridge::adapters::wire::WireFormat;
        use itsm_bridge::domain::incident::routing::Routing;
        let mut body = fixture("test-metric-static-fired.json");
        body["data"]["essentials"]["alertRule"] = json!(rule);
        body["data"]["essentials"]["description"] = json!(description);
        body["data"]["essentials"]["investigationLink"] = json!(format!("https://portal.example/{link}"));
        body["data"]["alertContext"]["condition"]["allOf"][0]["metricName"] = json!(dimension);
        body["data"]["alertContext"]["condition"]["allOf"][0]["dimensions"] = json!([{"name": key.clone(), "value": value.clone()}]);
        body["data"]["customProperties"] = json!({key: value});
        let alert = common_schema::parse(body.to_string().as_bytes()).unwrap();
        let plain = mapping::draft(&alert, &SeverityTable::default(), key_of(&alert));
        // Every template the routing rules allow: all placeholders, in both fields.
        let all: String = itsm_bridge::domain::incident::routing::PLACEHOLDERS
            .iter()
            .map(|p| format!("{p}: {{{p}}}\n"))
            .collect::<String>() + "custom: {custom." + "x}";
        let rules = json!({"templates": {"description": format!("Alert rule: {{rule}}\n{all}"),
            "short_description": format!("[{{severity}}] {all}")}});
        let routing = Routing::parse(&rules.to_string(), 3).unwrap();
        let (_, templated) = routing.apply(&alert, plain.clone());
        for draft in [&plain, &templated] {
            prop_assert!(!draft.short_description.contains('\n'));
            let sn = ServiceNowFormat::default().create(draft).body.unwrap();
            let bmc = BmcFormat::default().create(draft).body.unwrap();
            for text in [sn["description"].as_str(), bmc["values"]["Detailed_Decription"].as_str()] {
                let text = text.unwrap_or("");
                // A template's own lines are the operator's; check ours otherwise.
                if draft == &plain {
                    if let Err(e) = only_our_lines(text) { prop_assert!(false, "{}", e); }
                } else {
                    for line in text.split('\n') {
                        prop_assert!(line.is_empty() || line.starts_with(' ')
                            || line.split_once(": ").is_some_and(|(l, _)| l == "Alert rule" || l == "custom"
                                || itsm_bridge::domain::incident::routing::PLACEHOLDERS.contains(&l)),
                            "{:?} in {:?}", line, text);
                    }
                }
            }
        }
        for note in [mapping::refire_note(&alert), mapping::resolution(&alert).notes] {
            prop_assert!(!note.contains('\n') && !note.contains('\u{202E}'), "{:?}", note);
        }
    }
}
