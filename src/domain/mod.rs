//! The domain: schema, mapping and the correlation state machine. It knows
//! nothing of AWS or HTTP and talks to the outside only through `ports`.

pub mod alert;
pub mod correlation;
pub mod mapping;
pub mod pipeline;
pub mod ports;
pub mod retry;
pub mod routing;
