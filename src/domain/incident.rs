//! The incident an alert maps to: its severity (`severity`), the draft made
//! from the alert (`mapping`) and the operator's routing rules that adjust it
//! (`routing`).

pub mod mapping;
pub mod routing;
pub mod severity;
