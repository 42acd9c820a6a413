//! The incident an alert maps to: its severity (`severity`), the draft made
//! from the alert (`mapping`), the operator's routing rules that adjust it
//! (`routing`), and the group it joins when a rule groups alerts
//! (`group_policy`, `group_key`).

pub mod group_key;
pub mod group_policy;
pub mod mapping;
pub mod routing;
pub mod severity;
