//! The domain: schema model, mapping and the correlation state machine. It
//! knows nothing of AWS or HTTP and talks to the outside only through
//! `ports`. Its modules form a tree, leaves first:
//!
//! - `alert`, `correlation`, `text`: the alert model, the record, text cleaning (leaves);
//! - `mapping` (+ `routing`, `severity`): alert → incident draft;
//! - `ports`: the token verifier, ITSM client, correlation store, delivery queue, clock, and
//!   the sync role's change feed, store side and Azure alert states;
//! - `retry`, `settings`, `outcome`: retry policy, configuration, results;
//! - `state_machine`: the `Bridge`, one notification in, one outcome out;
//! - `breaker`: whether the ITSM is down, shared by every role, and its probe;
//! - `delivery`: store and forward around it (inline first, else the delivery queue);
//! - `sync`: the scheduled round that tells Azure what people did in the ITSM.

pub mod alert;
pub mod breaker;
pub mod correlation;
pub mod delivery;
pub mod mapping;
pub mod outcome;
pub mod ports;
pub mod retry;
pub mod routing;
pub mod settings;
pub mod severity;
pub mod state_machine;
pub mod sync;
pub mod text;
