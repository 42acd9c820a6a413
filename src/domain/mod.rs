//! The domain: what an alert becomes in the ITSM, and the rules that keep
//! the two in step. It knows nothing of AWS or HTTP and talks to the outside
//! only through `ports`. Folders by concern, leaves first:
//!
//! - `alert`: the common-schema alert and its text (cleaning, times);
//! - `correlation`: the per-alert record and the key that ties it to an incident;
//! - `incident`: what an alert maps to (severity, mapping, routing rules);
//! - `ports`: the token verifier, ITSM client, correlation store, delivery queue, breaker,
//!   clock, and the sync role's change feed, store side and Azure alert states;
//! - `retry`, `settings`, `outcome`: retry policy, configuration, results;
//! - `state_machine`: the `Bridge`, one notification in, one outcome out;
//! - `delivery`: store and forward around it (inline first, else the delivery queue), and
//!   the breaker that says whether the ITSM is down, shared by every role;
//! - `grouping`: alert storms as one parent incident (its rules; not yet wired);
//! - `sync`: the scheduled round that tells Azure what people did in the ITSM.

pub mod alert;
pub mod correlation;
pub mod delivery;
pub mod grouping;
pub mod incident;
pub mod outcome;
pub mod ports;
pub mod retry;
pub mod settings;
pub mod state_machine;
pub mod sync;
