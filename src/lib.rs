//! itsm-bridge: Azure Monitor alerts (Secure Webhook, common alert schema)
//! to ITSM incidents, with a per-alert correlation record so that the
//! Resolved notification resolves the incident the Fired one opened.
//!
//! `domain` holds the schema, the mapping and the state machine, and talks
//! to the outside only through its ports; `adapters` implement the ports;
//! `http` is the function URL edge; `config` and `bootstrap` build it all once.

pub mod adapters;
pub mod bootstrap;
pub mod config;
pub mod domain;
pub mod http;
