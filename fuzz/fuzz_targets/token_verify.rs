//! Any Authorization header: verification never panics and never accepts a
//! token our key did not sign.
#![no_main]

use std::sync::OnceLock;
use itsm_bridge::adapters::entra::{DevKey, EntraVerifier};
use itsm_bridge::adapters::clock::system_clock;
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
        let config = key.local_config(&path);
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
