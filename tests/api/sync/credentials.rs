//! The sync role's Azure credential: a certificate's signed client
//! assertion, and a client secret read from Secrets Manager (moto).

use itsm_bridge::domain::sync::ActionOutcome;

use crate::fake_azure::FakeAzure;
use crate::fakes::{Fake, Vendor};
use crate::helpers::*;

#[tokio::test]
async fn a_certificate_credential_signs_its_client_assertion() {
    use base64::Engine as _;
    use itsm_bridge::adapters::entra::DevKey;
    let dir = tempfile::tempdir().unwrap();
    let key = DevKey::load_or_create(dir.path()).unwrap();
    let key_pem = std::fs::read_to_string(dir.path().join("dev-signing-key.pem")).unwrap();
    // The thumbprint is the certificate's DER digest: any bytes serve here.
    let der = b"a certificate's DER bytes, as Entra holds them";
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let cert_path = dir.path().join("bridge.pem");
    std::fs::write(
        &cert_path,
        format!("{key_pem}-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n"),
    )
    .unwrap();
    let thumbprint = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der));
    let (azure_server, azure) = FakeAzure::serve().await;
    azure.expect_certificate(key.jwks()["keys"][0].clone(), &thumbprint);
    let mut spawn = Spawn::default();
    spawn.vars.extend(
        FakeAzure::vars(&azure_server)
            .into_iter()
            .filter(|(k, _)| *k != "AZURE_CLIENT_SECRET"),
    );
    spawn.vars.push((
        "AZURE_CLIENT_CERTIFICATE_PATH",
        cert_path.display().to_string(),
    ));
    let t = spawn.start().await;
    let itsm = Fake::new(Vendor::ServiceNow);
    itsm.mount(&t.itsm).await;
    let body = metric_alert("sync-cert", "Fired");
    assert_eq!(t.post(&body).await.outcome(), "created");
    let number = itsm.incidents()[0]["number"].as_str().unwrap().to_string();
    itsm.person(&number, "6", "jane.doe", now() - 5);
    let report = t.app.sync.as_ref().unwrap().round().await.unwrap();
    assert_eq!(report.count(ActionOutcome::Sent), 1, "{report:?}");
    assert_eq!(azure.token_requests(), 1);
}

#[tokio::test]
async fn the_azure_secret_comes_from_secrets_manager() {
    let name = crate::moto::unique("azure");
    let (azure_server, azure) = FakeAzure::serve().await;
    let mut spawn = Spawn::default().dynamodb();
    spawn.vars.extend(
        FakeAzure::vars(&azure_server)
            .into_iter()
            .filter(|(k, _)| *k != "AZURE_CLIENT_SECRET"),
    );
    spawn.vars.push(("AZURE_SECRET_ID", name.clone()));
    let t = spawn.start().await;
    aws_sdk_secretsmanager::Client::new(t.aws.as_ref().unwrap())
        .create_secret()
        .name(&name)
        .secret_string(
            serde_json::json!({"client_secret": crate::fake_azure::AZ_SECRET}).to_string(),
        )
        .send()
        .await
        .unwrap();
    let itsm = Fake::new(Vendor::ServiceNow);
    itsm.mount(&t.itsm).await;
    let body = metric_alert("sync-secret", "Fired");
    assert_eq!(t.post(&body).await.outcome(), "created");
    let number = itsm.incidents()[0]["number"].as_str().unwrap().to_string();
    itsm.person(&number, "6", "jane.doe", now() - 5);
    let report = t.app.sync.as_ref().unwrap().round().await.unwrap();
    assert_eq!(report.count(ActionOutcome::Sent), 1, "{report:?}");
    assert_eq!(azure.changes()[0].alert_id, alert_id(&body));
}
