//! Any body Azure (or anyone) could post: parsing and mapping never panic.
#![no_main]

use itsm_bridge::domain::incident::mapping;
use itsm_bridge::inbound::common_schema;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(alert) = common_schema::parse(data) {
        let draft = mapping::draft(&alert, &mapping::SeverityTable::default(), String::new());
        assert!(draft.short_description.chars().count() <= mapping::SHORT_DESCRIPTION_MAX);
        assert!(draft.description.chars().count() <= mapping::DESCRIPTION_MAX);
        let _ = mapping::resolution(&alert);
    }
});
