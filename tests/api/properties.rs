//! Properties over generated input (the fuzz targets in `fuzz/` go further,
//! on nightly): the parser, the mapping and the verifier never panic, never
//! exceed the ITSM's limits, and never accept what nobody signed.

use std::sync::OnceLock;

use itsm_bridge::domain::mapping::{self, DESCRIPTION_MAX, SHORT_DESCRIPTION_MAX, SeverityTable};
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
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = common_schema::parse(&bytes);
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
