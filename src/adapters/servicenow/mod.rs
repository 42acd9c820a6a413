//! ServiceNow: the Table API adapter of the ITSM port.

mod auth;
mod client;
mod format;

pub use auth::{Credentials, Parts};
pub use client::{ServiceNowClient, ServiceNowConfig};
pub use format::{INCIDENT_PATH, IncidentFields, ServiceNowFormat};
