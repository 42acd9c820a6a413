//! Any Authorization header: verification never panics and never accepts a
//! token our key did not sign.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use itsm_bridge::adapters::entra::{DevKey, EntraConfig, EntraVerifier, KeySource};
use itsm_bridge::domain::pipeline::system_clock;
use itsm_bridge::domain::ports::TokenVerifier;
use libfuzzer_sys::fuzz_target;

struct Setup {
    rt: tokio::runtime::Runtime,
    verifier: EntraVerifier,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let key = DevKey::generate();
        let path = std::env::temp_dir().join(format!("itsm-bridge-fuzz-{}.json", std::process::id()));
        std::fs::write(&path, key.jwks().to_string()).unwrap();
        let config = EntraConfig {
            tenant_id: "aaaabbbb-0000-cccc-1111-dddd2222eeee".into(),
            audiences: vec!["api://itsm-bridge-fuzz".into()],
            allowed_app_ids: vec!["461e8683-5575-4561-ac7f-899cc907d62a".into()],
            required_role: None,
            authority: "https://login.microsoftonline.com".into(),
            keys: KeySource::File(path),
            leeway_secs: 60,
            key_refresh: Duration::from_secs(86400),
            unknown_kid_interval: Duration::from_secs(3600),
        };
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        Setup { rt, verifier: EntraVerifier::new(config, system_clock()) }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else { return };
    let s = setup();
    let result = s.rt.block_on(s.verifier.verify(Some(header)));
    assert!(result.is_err(), "accepted a token nobody signed: {header:?}");
});
