//! The `config` service on every dispatch path (local, irpc in-process).

use std::sync::Arc;

use alknet_config::{ConfigProtocol, ConfigService};
use alknet_runtime::config::ConfigServiceImpl;
use alknet_runtime::testing::each_path;
use alknet_runtime::{Caller, Identity, ResponseEnvelope, codes};
use serde_json::{Value, json};

const START: &str =
    "[forwarding]\ndefault = \"local\"\n\n[rate_limits]\nper_ip = { per_second = 5, burst = 10 }\n";
const CHANGED: &str =
    "[forwarding]\ndefault = \"deny\"\n\n[rate_limits]\nper_ip = { per_second = 7, burst = 7 }\n";

fn output(envelope: &ResponseEnvelope) -> &Value {
    envelope.result.as_ref().expect("the call failed")
}

#[tokio::test]
async fn reads_and_reloads_forwarding_and_rate_limits_on_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    let make = || {
        std::fs::write(&path, START).unwrap();
        let config = Arc::new(ConfigServiceImpl::from_file(&path).unwrap());
        ConfigProtocol::local(ConfigService::new(config))
    };
    each_path::<ConfigProtocol, _, _>(make, |env| {
        let path = path.clone();
        async move {
            let mut seen = Vec::new();
            let reader = env.with_caller(
                Caller::new().identity(Identity::new("user:viewer").with_scopes(["config:read"])),
            );
            let admin = env.with_caller(
                Caller::new().identity(Identity::new("user:ops").with_scopes(["config:admin"])),
            );

            let anonymous = env
                .invoke("config", "get_forwarding_policy", json!(null))
                .await;
            assert_eq!(
                anonymous.result.as_ref().unwrap_err().code,
                codes::UNAUTHENTICATED
            );
            seen.push(anonymous);
            let policy = reader
                .invoke("config", "get_forwarding_policy", json!(null))
                .await;
            assert_eq!(output(&policy)["default"], "local");
            seen.push(policy);
            let limits = reader
                .invoke("config", "get_rate_limits", json!(null))
                .await;
            assert_eq!(
                output(&limits)["per_ip"],
                json!({"per_second": 5, "burst": 10})
            );
            seen.push(limits);

            // A reader may not reload.
            let forbidden = reader.invoke("config", "reload", json!(null)).await;
            assert_eq!(
                forbidden.result.as_ref().unwrap_err().code,
                codes::FORBIDDEN
            );
            seen.push(forbidden);

            // Only the forwarding policy is applied, then only the rate limits.
            std::fs::write(&path, CHANGED).unwrap();
            let report = admin
                .invoke("config", "reload_forwarding_policy", json!(null))
                .await;
            assert_eq!(output(&report)["changed"], json!(["forwarding"]));
            seen.push(report);
            let limits = reader
                .invoke("config", "get_rate_limits", json!(null))
                .await;
            assert_eq!(output(&limits)["per_ip"]["per_second"], 5);
            seen.push(limits);
            let report = admin
                .invoke("config", "reload_rate_limits", json!(null))
                .await;
            assert_eq!(output(&report)["changed"], json!(["rate_limits"]));
            seen.push(report);
            let policy = reader
                .invoke("config", "get_forwarding_policy", json!(null))
                .await;
            assert_eq!(output(&policy)["default"], "deny");
            seen.push(policy);

            // A broken file: refused with its line, nothing changes, status says why.
            std::fs::write(
                &path,
                "[forwarding]\ndefault = \"local\"\n\n[rate_limits]\nper_ip = 3\n",
            )
            .unwrap();
            let broken = admin.invoke("config", "reload", json!(null)).await;
            let err = broken.result.as_ref().unwrap_err();
            assert_eq!(err.code, "INVALID_CONFIG");
            assert_eq!(err.details.as_ref().unwrap()["line"], 5);
            assert!(err.message.contains("line 5"), "{}", err.message);
            seen.push(broken);
            let policy = reader
                .invoke("config", "get_forwarding_policy", json!(null))
                .await;
            assert_eq!(output(&policy)["default"], "deny");
            seen.push(policy);
            let status = reader.invoke("config", "status", json!(null)).await;
            assert_eq!(output(&status)["generation"], 3);
            assert_eq!(output(&status)["failed_reloads"], 1);
            assert!(
                output(&status)["last_error"]
                    .as_str()
                    .unwrap()
                    .contains("line 5")
            );
            // The file's path differs per run only by the temp dir; keep the envelope
            // comparable by dropping it.
            let mut status = status;
            if let Ok(value) = &mut status.result {
                value["source"] = Value::Null;
                if let Some(error) = value["last_error"].as_str() {
                    value["last_error"] = json!(error.rsplit_once(", line").map(|(_, rest)| rest));
                }
            }
            seen.push(status);

            std::fs::write(&path, START).unwrap();
            let report = admin.invoke("config", "reload", json!(null)).await;
            assert_eq!(
                output(&report)["changed"],
                json!(["forwarding", "rate_limits"])
            );
            assert_eq!(output(&report)["generation"], 4);
            seen.push(report);
            seen
        }
    })
    .await;
}
