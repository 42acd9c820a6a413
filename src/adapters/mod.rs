//! Adapters: the real implementations of the domain's ports.

pub mod bmc;
pub mod clock;
pub mod dryrun;
pub mod entra;
mod itsm_http;
pub mod queue;
pub mod secrets;
pub mod servicenow;
pub mod store;
pub mod wire;

pub use itsm_http::HttpClientError;
