//! The `ItsmClient` contract (`src/domain/ports.rs`), one suite for every
//! ITSM client: ServiceNow, BMC Helix and Jira against stateful fakes that keep
//! incidents and answer with the vendors' envelopes, and the dry-run
//! client. A new ITSM joins by adding its fake and one test here.

use std::time::Duration;

use itsm_bridge::adapters::bmc::{BmcClient, BmcConfig, BmcFields, BmcFormat, BmcLogin};
use itsm_bridge::adapters::dryrun::DryRun;
use itsm_bridge::adapters::jira::{
    Deployment, JiraAuth, JiraClient, JiraConfig, JiraFields, JiraFormat,
};
use itsm_bridge::adapters::secrets::CredentialSource;
use itsm_bridge::adapters::servicenow::{
    Credentials, IncidentFields, ServiceNowClient, ServiceNowConfig, ServiceNowFormat,
};
use itsm_bridge::domain::alert::Severity;
use itsm_bridge::domain::correlation::{IncidentRef, correlation_key};
use itsm_bridge::domain::incident::mapping::{IncidentDraft, Resolution};
use itsm_bridge::domain::ports::{ItsmClient, ItsmError, ResolveOutcome};
use serde_json::json;
use wiremock::ResponseTemplate;

use crate::fakes::{Fake, Vendor};
use crate::helpers::{
    BMC_PASSWORD, BMC_USER, JIRA_EMAIL, JIRA_PAT, JIRA_TOKEN, SN_PASSWORD, SN_USER,
};

pub(crate) fn draft(key: &str) -> IncidentDraft {
    IncidentDraft {
        correlation_key: key.into(),
        correlation_label: "Azure Monitor cpu-high a1".into(),
        short_description: "[Sev2] cpu-high on vm-1".into(),
        description: "Alert rule: cpu-high\n".into(),
        severity: Severity::Sev2,
        impact: 2,
        urgency: 2,
        configuration_item: None,
        assignment_group: None,
        category: None,
        caller: None,
        fields: Default::default(),
        group: None,
        parent: None,
    }
}

fn resolution() -> Resolution {
    Resolution {
        notes: "Resolved automatically by itsm-bridge".into(),
    }
}

/// What every client does with incidents it can see.
async fn contract(itsm: &dyn ItsmClient, name: &str) {
    let key = correlation_key(&format!("/alerts/{name}"));
    assert_eq!(itsm.find(&key).await, Ok(None), "nothing yet");
    let incident = itsm.create(&draft(&key)).await.expect("create");
    assert!(!incident.id.is_empty() && !incident.number.is_empty());
    assert_eq!(
        itsm.find(&key).await,
        Ok(Some(incident.clone())),
        "find recovers a create"
    );
    let other = correlation_key("/alerts/someone-else");
    assert_eq!(itsm.find(&other).await, Ok(None), "only the exact key");

    for unsafe_key in ["", "azmon-1^ORactive=true", "a\" OR 'x'='x", "a b"] {
        assert!(
            matches!(
                itsm.find(unsafe_key).await,
                Err(ItsmError::Rejected { status: 0, .. })
            ),
            "{unsafe_key:?} must never reach a query"
        );
    }

    itsm.note(&incident, "a note").await.expect("note");
    // A group's parent raised by a more severe child; setting it twice is harmless.
    itsm.set_priority(&incident, 1, 1).await.expect("priority");
    itsm.set_priority(&incident, 1, 1)
        .await
        .expect("priority, again");
    assert_eq!(
        itsm.resolve(&incident, &resolution()).await,
        Ok(ResolveOutcome::Resolved)
    );
    let again = itsm.resolve(&incident, &resolution()).await;
    assert!(
        matches!(
            again,
            Ok(ResolveOutcome::Resolved | ResolveOutcome::AlreadyClosed)
        ),
        "resolving twice is harmless: {again:?}"
    );
    itsm.reopen(&incident, "fired again").await.expect("reopen");
    assert_eq!(
        itsm.resolve(&incident, &resolution()).await,
        Ok(ResolveOutcome::Resolved),
        "a reopened incident resolves again"
    );
}

/// A child incident under a parent (`draft.parent`, for a group's
/// `children: incidents`): an ITSM that has them creates it there, found
/// by its own key; one that has not refuses it (status 0) and sends nothing.
async fn contract_children(itsm: &dyn ItsmClient, fake: &Fake, supported: bool) {
    let parent_key = correlation_key("/alerts/a-parent");
    let parent = itsm.create(&draft(&parent_key)).await.expect("the parent");
    let key = correlation_key("/alerts/a-child");
    let child = IncidentDraft {
        parent: Some(parent.clone()),
        ..draft(&key)
    };
    let sent = fake.incidents().len();
    match (supported, itsm.create(&child).await) {
        (true, Ok(made)) => {
            assert_eq!(itsm.find(&key).await, Ok(Some(made.clone())));
            assert_ne!(made, parent);
            let kept = fake.incidents();
            let made = kept.iter().find(|i| i["sys_id"] == made.id.as_str());
            assert_eq!(made.unwrap()["parent_incident"], parent.id.as_str());
        }
        (false, Err(ItsmError::Rejected { status: 0, message })) => {
            assert!(message.contains("ServiceNow"), "{message}");
            assert_eq!(fake.incidents().len(), sent, "nothing sent");
        }
        (_, other) => panic!("supported={supported}: {other:?}"),
    }
}

/// What a client that sees the ITSM says of incidents that do not exist.
async fn contract_unknown_incident(itsm: &dyn ItsmClient, ghost: IncidentRef) {
    assert_eq!(
        itsm.resolve(&ghost, &resolution()).await,
        Ok(ResolveOutcome::NotFound)
    );
    assert!(matches!(
        itsm.note(&ghost, "n").await,
        Err(ItsmError::Rejected { .. })
    ));
    assert!(matches!(
        itsm.reopen(&ghost, "n").await,
        Err(ItsmError::Rejected { .. })
    ));
    assert!(matches!(
        itsm.set_priority(&ghost, 1, 1).await,
        Err(ItsmError::Rejected { .. })
    ));
}

/// How failures are told apart: transient ones from those someone must fix.
async fn contract_failures(itsm: &dyn ItsmClient, refused: &dyn ItsmClient, fake: &Fake) {
    let key = correlation_key("/alerts/failures");
    fake.fail_next(ResponseTemplate::new(503).set_body_string("Service Unavailable"));
    let down = itsm.create(&draft(&key)).await.unwrap_err();
    assert!(
        matches!(down, ItsmError::Unavailable(_)) && down.is_transient(),
        "{down:?}"
    );

    fake.fail_next(
        ResponseTemplate::new(429)
            .insert_header("retry-after", "7")
            .set_body_json(json!({"error": {"message": "Too many requests"}})),
    );
    match itsm.find(&key).await {
        Err(ItsmError::Throttled { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)))
        }
        other => panic!("429 must be Throttled with its Retry-After: {other:?}"),
    }

    let refusal = refused.create(&draft(&key)).await.unwrap_err();
    assert!(
        matches!(refusal, ItsmError::Rejected { status: 401, .. }) && !refusal.is_transient(),
        "{refusal:?}"
    );
    // Asked of the fake: a client may rightly distrust its own search
    // right after a create it got no answer to (Jira's lagging index).
    let kept = serde_json::to_string(&fake.incidents()).unwrap();
    assert!(!kept.contains(&key), "no failed call created one");
}

#[tokio::test]
async fn servicenow_keeps_the_contract() {
    let (server, fake) = Fake::serve(Vendor::ServiceNow).await;
    let client = |password: &str| {
        let config = ServiceNowConfig {
            instance_url: server.uri().parse().unwrap(),
            fields: IncidentFields::default(),
            timeout: Duration::from_secs(2),
        };
        let credentials = Credentials::Basic {
            username: SN_USER.into(),
            password: password.into(),
        };
        ServiceNowClient::new(config, CredentialSource::Fixed(credentials), None).unwrap()
    };
    let itsm = client(SN_PASSWORD);
    contract(&itsm, "servicenow").await;
    contract_children(&itsm, &fake, true).await;
    let ghost = IncidentRef {
        id: "0123456789abcdef0123456789abcdef".into(),
        number: "INC9999999".into(),
    };
    contract_unknown_incident(&itsm, ghost).await;
    contract_failures(&itsm, &client("wrong"), &fake).await;
}

#[tokio::test]
async fn bmc_helix_keeps_the_contract() {
    let (server, fake) = Fake::serve(Vendor::Bmc).await;
    let client = |password: &str| {
        let config = BmcConfig {
            url: server.uri().parse().unwrap(),
            fields: BmcFields::default(),
            timeout: Duration::from_secs(2),
        };
        let login = BmcLogin {
            username: BMC_USER.into(),
            password: password.into(),
        };
        BmcClient::new(config, CredentialSource::Fixed(login), None).unwrap()
    };
    let itsm = client(BMC_PASSWORD);
    contract(&itsm, "bmc").await;
    contract_children(&itsm, &fake, false).await;
    let ghost = IncidentRef {
        id: "INC000000099999".into(),
        number: "INC000000099999".into(),
    };
    contract_unknown_incident(&itsm, ghost).await;
    contract_failures(&itsm, &client("wrong"), &fake).await;
}

#[tokio::test]
async fn jira_keeps_the_contract() {
    let (server, fake) = Fake::serve(Vendor::Jira).await;
    let client = |auth: JiraAuth| {
        let deployment = match auth {
            JiraAuth::Cloud { .. } => Deployment::Cloud,
            JiraAuth::Pat(_) => Deployment::DataCenter,
        };
        let config = JiraConfig {
            url: server.uri().parse().unwrap(),
            fields: JiraFields {
                deployment,
                ..JiraFields::default()
            },
            timeout: Duration::from_secs(2),
        };
        JiraClient::new(config, CredentialSource::Fixed(auth), None).unwrap()
    };
    let cloud = client(JiraAuth::Cloud {
        email: JIRA_EMAIL.into(),
        api_token: JIRA_TOKEN.into(),
    });
    contract(&cloud, "jira").await;
    contract_children(&cloud, &fake, false).await;
    // Data Center (REST v2, a personal access token) keeps it too.
    contract(&client(JiraAuth::Pat(JIRA_PAT.into())), "jira-dc").await;
    let ghost = IncidentRef {
        id: "99999".into(),
        number: "OPS-9999".into(),
    };
    contract_unknown_incident(&cloud, ghost).await;
    let wrong = client(JiraAuth::Cloud {
        email: JIRA_EMAIL.into(),
        api_token: "wrong".into(),
    });
    contract_failures(&cloud, &wrong, &fake).await;
}

#[tokio::test]
async fn dry_run_keeps_the_contract() {
    // It cannot see an ITSM, so it has no unknown incidents and no failures.
    for format in [
        Box::new(ServiceNowFormat::default()) as Box<dyn itsm_bridge::adapters::wire::WireFormat>,
        Box::new(BmcFormat::default()),
        Box::new(JiraFormat::default()),
        Box::new(JiraFormat {
            fields: JiraFields {
                deployment: Deployment::DataCenter,
                ..JiraFields::default()
            },
        }),
    ] {
        let itsm = DryRun::new(format, None);
        contract(&itsm, "dry-run").await;
    }
}
