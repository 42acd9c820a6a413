//! itsm-bridge: Azure Monitor alerts (Secure Webhook, common alert schema)
//! to ITSM incidents, with a per-alert correlation record so that the
//! Resolved notification resolves the incident the Fired one opened.
//!
//! Data flows one way: `inbound` (the roles: the function URL webhook
//! today) → `domain` (schema model, mapping, the correlation state machine,
//! and the ports it talks through) → `adapters` (the ports' real
//! implementations: Entra, ServiceNow, BMC Helix, DynamoDB, redb, Secrets
//! Manager). `config` reads the settings and `bootstrap` builds it all once
//! per container.

pub mod adapters;
pub mod bootstrap;
pub mod config;
pub mod domain;
pub mod inbound;
