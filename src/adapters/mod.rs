//! Adapters: the real implementations of the domain's ports.

pub mod dryrun;
pub mod entra;
pub mod secrets;
pub mod servicenow;
pub mod store;
pub mod wire;
