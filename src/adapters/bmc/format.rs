//! BMC Helix ITSM (Remedy AR REST API) requests for the incident operations.

use serde_json::{Map, Value, json};

use crate::adapters::wire::{ItsmRequest, PathId, WireFormat};
use crate::domain::alert::text::clean;
use crate::domain::correlation::IncidentRef;
use crate::domain::incident::mapping::{IncidentDraft, Resolution};
use crate::domain::ports::ItsmError;

pub const CREATE_FORM: &str = "HPD:IncidentInterface_Create";
pub const INCIDENT_FORM: &str = "HPD:IncidentInterface";
pub const WORK_LOG_FORM: &str = "HPD:WorkLog";
/// BMC's incident summary (`Description`) holds 100 characters.
pub const SUMMARY_MAX: usize = 100;

const IMPACT: [&str; 4] = [
    "1-Extensive/Widespread",
    "2-Significant/Large",
    "3-Moderate/Limited",
    "4-Minor/Localized",
];
const URGENCY: [&str; 4] = ["1-Critical", "2-High", "3-Medium", "4-Low"];

/// Incident fields that come from configuration, not from the alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BmcFields {
    /// The reporting person (an existing People record).
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// `Company` (location company), required by many installations.
    pub company: Option<String>,
    pub support_company: Option<String>,
    pub support_organization: Option<String>,
    pub assigned_group: Option<String>,
    pub status: String,
    pub reported_source: String,
    pub service_type: String,
    /// A searchable field that carries the correlation key (BMC has no
    /// correlation field of its own).
    pub correlation_field: String,
    pub status_reason: String,
}

impl Default for BmcFields {
    fn default() -> Self {
        BmcFields {
            first_name: None,
            last_name: None,
            company: None,
            support_company: None,
            support_organization: None,
            assigned_group: None,
            status: "New".into(),
            reported_source: "Systems Management".into(),
            service_type: "Infrastructure Event".into(),
            correlation_field: "Vendor Ticket Number".into(),
            status_reason: "Automated Resolution Reported".into(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct BmcFormat {
    pub fields: BmcFields,
}

fn entry_path(form: &str) -> String {
    format!("/api/arsys/v1/entry/{form}")
}

/// `'Field' = "value"`: AR System qualification syntax; callers pass
/// only values checked to hold no quote.
fn equals(field: &str, value: &str) -> String {
    format!("'{field}' = \"{value}\"")
}

fn level(labels: &[&'static str; 4], n: u8) -> &'static str {
    labels[usize::from(n.clamp(1, 4)) - 1]
}

impl BmcFormat {
    pub fn create_request(&self, d: &IncidentDraft) -> ItsmRequest {
        let f = &self.fields;
        let mut values = Map::new();
        let mut set = |k: &str, v: &str| {
            values.insert(k.to_string(), Value::String(v.to_string()));
        };
        set("z1D_Action", "CREATE");
        set(
            "Description",
            &clean(d.short_description.as_str(), SUMMARY_MAX),
        );
        // The field's name is misspelt in the product.
        set("Detailed_Decription", &d.description);
        set("Impact", level(&IMPACT, d.impact));
        set("Urgency", level(&URGENCY, d.urgency));
        set("Status", &f.status);
        set("Reported Source", &f.reported_source);
        set("Service_Type", &f.service_type);
        set(&f.correlation_field, &d.correlation_key);
        let optional = [
            ("First_Name", f.first_name.as_deref()),
            ("Last_Name", f.last_name.as_deref()),
            ("Company", f.company.as_deref()),
            ("Assigned Support Company", f.support_company.as_deref()),
            (
                "Assigned Support Organization",
                f.support_organization.as_deref(),
            ),
            (
                "Assigned Group",
                d.assignment_group
                    .as_deref()
                    .or(f.assigned_group.as_deref()),
            ),
            ("HPD_CI", d.configuration_item.as_deref()),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                set(k, v);
            }
        }
        for (k, v) in &d.fields {
            set(k, v);
        }
        ItsmRequest::new(
            "POST",
            &entry_path(CREATE_FORM),
            &[("fields", "values(Incident Number)")],
            Some(json!({ "values": values })),
        )
    }

    /// Reads back the entry a create made, when its answer had no body.
    pub fn read_created(&self, id: &PathId) -> ItsmRequest {
        ItsmRequest::new(
            "GET",
            &format!("{}/{id}", entry_path(CREATE_FORM)),
            &[("fields", "values(Incident Number)")],
            None,
        )
    }

    pub fn find_request(&self, correlation_key: &str) -> ItsmRequest {
        let field = &self.fields.correlation_field;
        ItsmRequest::new(
            "GET",
            &entry_path(INCIDENT_FORM),
            &[
                ("q", &equals(field, correlation_key)),
                ("fields", &format!("values(Incident Number,{field})")),
            ],
            None,
        )
    }

    /// Finds the interface entry (its `Request ID`) and status of an incident.
    pub fn lookup_request(&self, number: &str) -> ItsmRequest {
        ItsmRequest::new(
            "GET",
            &entry_path(INCIDENT_FORM),
            &[
                ("q", &equals("Incident Number", number)),
                ("fields", "values(Request ID,Incident Number,Status)"),
            ],
            None,
        )
    }

    /// `request_id` may look like `id|id`: it is one path segment.
    pub fn resolve_request(&self, request_id: &PathId, resolution: &Resolution) -> ItsmRequest {
        ItsmRequest::new(
            "PUT",
            &format!("{}/{request_id}", entry_path(INCIDENT_FORM)),
            &[],
            Some(json!({"values": {
                "Status": "Resolved",
                "Status_Reason": self.fields.status_reason,
                "Resolution": resolution.notes,
            }})),
        )
    }
}

impl BmcFormat {
    pub fn reopen_request(&self, request_id: &PathId) -> ItsmRequest {
        ItsmRequest::new(
            "PUT",
            &format!("{}/{request_id}", entry_path(INCIDENT_FORM)),
            &[],
            Some(json!({"values": {"Status": "In Progress"}})),
        )
    }

    /// BMC computes the priority from these two.
    pub fn priority_request(&self, request_id: &PathId, impact: u8, urgency: u8) -> ItsmRequest {
        ItsmRequest::new(
            "PUT",
            &format!("{}/{request_id}", entry_path(INCIDENT_FORM)),
            &[],
            Some(json!({"values": {
                "Impact": level(&IMPACT, impact),
                "Urgency": level(&URGENCY, urgency),
            }})),
        )
    }

    /// A work log entry: BMC's incident journal.
    pub fn work_log_request(&self, number: &str, note: &str) -> ItsmRequest {
        ItsmRequest::new(
            "POST",
            &entry_path(WORK_LOG_FORM),
            &[],
            Some(json!({"values": {
                "Incident Number": number,
                "Work Log Type": "General Information",
                "Description": clean(note, SUMMARY_MAX),
                "Detailed Description": note,
            }})),
        )
    }
}

impl WireFormat for BmcFormat {
    fn kind(&self) -> &'static str {
        "bmc-helix"
    }

    fn create(&self, draft: &IncidentDraft) -> ItsmRequest {
        self.create_request(draft)
    }

    fn find(&self, correlation_key: &str) -> ItsmRequest {
        self.find_request(correlation_key)
    }

    fn resolve(
        &self,
        incident: &IncidentRef,
        resolution: &Resolution,
    ) -> Result<Vec<ItsmRequest>, ItsmError> {
        let entry = PathId::placeholder(&format!("Request ID of {}", incident.number));
        Ok(vec![
            self.lookup_request(&incident.number),
            self.resolve_request(&entry, resolution),
        ])
    }

    fn reopen(&self, incident: &IncidentRef, note: &str) -> Result<Vec<ItsmRequest>, ItsmError> {
        let entry = PathId::placeholder(&format!("Request ID of {}", incident.number));
        Ok(vec![
            self.lookup_request(&incident.number),
            self.reopen_request(&entry),
            self.work_log_request(&incident.number, note),
        ])
    }

    fn note(&self, incident: &IncidentRef, note: &str) -> Result<Vec<ItsmRequest>, ItsmError> {
        Ok(vec![self.work_log_request(&incident.number, note)])
    }

    fn set_priority(
        &self,
        incident: &IncidentRef,
        impact: u8,
        urgency: u8,
    ) -> Result<Vec<ItsmRequest>, ItsmError> {
        let entry = PathId::placeholder(&format!("Request ID of {}", incident.number));
        Ok(vec![
            self.lookup_request(&incident.number),
            self.priority_request(&entry, impact, urgency),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::alert::Severity;

    #[test]
    fn create_maps_levels_and_cuts_the_summary() {
        let draft = IncidentDraft {
            correlation_key: "azmon-0123".into(),
            correlation_label: "label".into(),
            short_description: "x".repeat(160),
            description: "details".into(),
            severity: Severity::Sev1,
            impact: 2,
            urgency: 4,
            configuration_item: Some("vm-1".into()),
            assignment_group: None,
            category: None,
            caller: None,
            fields: Default::default(),
            group: None,
            parent: None,
        };
        let r = BmcFormat::default().create_request(&draft);
        assert_eq!(
            r.path,
            "/api/arsys/v1/entry/HPD:IncidentInterface_Create?fields=values%28Incident+Number%29"
        );
        let v = &r.body.unwrap()["values"];
        assert_eq!(v["Impact"], "2-Significant/Large");
        assert_eq!(v["Urgency"], "4-Low");
        assert_eq!(
            v["Description"].as_str().unwrap().chars().count(),
            SUMMARY_MAX
        );
        assert_eq!(v["Vendor Ticket Number"], "azmon-0123");
        assert_eq!(v["HPD_CI"], "vm-1");
        assert_eq!(v["z1D_Action"], "CREATE");
    }

    #[test]
    fn ids_with_a_bar_are_one_segment() {
        let id = PathId::new("BMC Helix", "INC000000000101|INC000000000101").unwrap();
        let r = BmcFormat::default().resolve_request(&id, &Resolution { notes: "n".into() });
        assert!(
            r.path
                .ends_with("/HPD:IncidentInterface/INC000000000101%7CINC000000000101"),
            "{}",
            r.path
        );
    }
}
