//! BMC Helix ITSM: the AR REST adapter of the ITSM port.

mod client;
mod format;

pub use client::{BmcClient, BmcConfig, BmcLogin};
pub use format::{BmcFields, BmcFormat, CREATE_FORM, INCIDENT_FORM};
