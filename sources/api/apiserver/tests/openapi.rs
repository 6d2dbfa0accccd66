//! The OpenAPI document served at /openapi.json is generated from the route declarations; this
//! test holds it against the real server: every documented route answers with a documented
//! status, JSON answers match their documented schema, and undocumented routes are refused.

use serde_json::{json, Value};
use testserver::TestServer;

/// A request that a route should accept, for the routes that need arguments.
fn sample_request(method: &str, path: &str) -> (String, Option<String>) {
    match (method, path) {
        ("patch", "/settings") => (
            "/settings?tx=oa".into(),
            Some(r#"{"motd":"openapi"}"#.into()),
        ),
        ("patch", "/settings/keypair") => (
            "/settings/keypair?tx=oa".into(),
            Some(r#"{"request_payload":["motd=openapi"]}"#.into()),
        ),
        ("get", "/metadata/affected-services") => (
            "/metadata/affected-services?keys=settings.motd".into(),
            None,
        ),
        ("post", "/tx/commit") | ("post", "/tx/commit_and_apply") => {
            (format!("{path}?tx=oa"), None)
        }
        ("get", "/tx") | ("delete", "/tx") => (format!("{path}?tx=oa"), None),
        ("get", "/report/cis") => ("/report/cis?level=2&format=json".into(), None),
        _ => (path.to_string(), None),
    }
}

#[test]
fn openapi_document_matches_the_server() {
    // The update routes run the test updater (and a recording reboot script).
    let server = TestServer::start_with_updates(&["0.2.0"]);
    let doc = server.json("GET", "/openapi.json", None);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().expect("paths");
    for must in [
        "/",
        "/settings",
        "/settings/keypair",
        "/tx",
        "/tx/list",
        "/tx/commit",
        "/tx/apply",
        "/tx/commit_and_apply",
        "/os",
        "/metadata/affected-services",
        "/metadata/templates",
        "/metadata/setting-generators",
        "/services",
        "/configuration-files",
        "/history",
        "/history/undo",
        "/updates/status",
        "/actions/refresh-updates",
        "/actions/prepare-update",
        "/actions/activate-update",
        "/actions/deactivate-update",
        "/actions/reboot",
        "/logs",
        "/units",
        "/status",
        "/report/boot",
        "/report/cis",
        "/support-bundle",
        "/exec",
        "/openapi.json",
    ] {
        assert!(paths.contains_key(must), "{must} is not documented");
    }
    // Order matters: patch before commit so that commit has something to do, undo last.
    let order = ["get", "patch", "post", "delete"];
    let mut checked = 0;
    let mut entries: Vec<(String, String, Value)> = Vec::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            entries.push((path.clone(), method.clone(), op.clone()));
        }
    }
    entries.sort_by_key(|(path, method, _)| {
        (
            path == "/history/undo",
            order.iter().position(|m| m == method).unwrap_or(9),
            path.clone(),
        )
    });
    for (path, method, op) in entries {
        let (uri, body) = sample_request(&method, &path);
        let (status, text) = server.raw(&method.to_uppercase(), &uri, body.as_deref());
        let responses = op["responses"].as_object().unwrap();
        let documented = responses.get(&status.to_string()).unwrap_or_else(|| {
            panic!(
                "{method} {uri} answered {status}, which is not documented ({:?}): {text}",
                responses.keys().collect::<Vec<_>>()
            )
        });
        if let Some(schema) = documented.pointer("/content/application~1json/schema") {
            let value: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{method} {uri}: answer is not JSON ({e}): {text}"));
            // Resolve $refs against the document's components.
            let mut full = schema.clone();
            full["components"] = doc["components"].clone();
            let validator = jsonschema::validator_for(&full)
                .unwrap_or_else(|e| panic!("{method} {path}: schema does not compile: {e}"));
            let errors: Vec<String> = validator
                .iter_errors(&value)
                .map(|e| e.to_string())
                .collect();
            assert!(
                errors.is_empty(),
                "{method} {uri}: answer does not match the documented schema: {errors:?}\n{text}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} operations checked");
    assert_eq!(
        server.reboots(),
        1,
        "POST /actions/reboot ran the reboot command"
    );

    // What the document leaves out, the server refuses.
    assert_eq!(server.raw("GET", "/not-documented", None).0, 404);
    assert_eq!(server.raw("PUT", "/settings", None).0, 405);

    // The schema refuses what the server refuses: an unknown setting.
    let settings_schema =
        json!({"$ref": "#/components/schemas/Settings", "components": doc["components"]});
    let validator = jsonschema::validator_for(&settings_schema).unwrap();
    assert!(!validator.is_valid(&json!({"no-such-setting": 1})));
    assert!(validator.is_valid(&json!({"motd": "hi"})));
    assert_eq!(
        server
            .raw("PATCH", "/settings", Some(r#"{"no-such-setting": 1}"#))
            .0,
        400
    );
}

/// The limits the document states are the ones the server enforces, read from their homes;
/// every operation lists the refusals any route can give, each with the error body.
#[test]
fn document_limits_come_from_the_rules_homes() {
    let server = TestServer::start();
    let doc = server.json("GET", "/openapi.json", None);
    let param = |path: &str, method: &str, name: &str| -> Value {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{method} {path} has no parameters"))
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"))
            .clone()
    };
    for path in ["/tx/commit", "/tx/commit_and_apply", "/tx/dry-run"] {
        let tx = param(path, "post", "tx");
        assert_eq!(
            tx["schema"]["maxLength"],
            datastore::MAX_TRANSACTION_NAME_LEN,
            "{path}"
        );
        assert_eq!(tx["schema"]["minLength"], 1, "{path}");
    }
    let id = param("/history/undo", "post", "id");
    assert_eq!(id["schema"]["minimum"], 0);
    let keys = param("/metadata/affected-services", "get", "keys");
    assert_eq!(keys["required"], true);
    assert_eq!(
        keys["schema"]["maxLength"],
        apiserver::server::MAX_SETTINGS_NAME_LEN
    );
    let sysctl = &doc["components"]["schemas"]["KernelSettings"]["properties"]["sysctl"];
    let names = serde_json::to_string(sysctl).unwrap();
    assert!(
        names.contains(&format!(
            "\"maxLength\":{}",
            models::modeled_types::MAX_SYSCTL_KEY_LEN
        )),
        "{names}"
    );
    assert_eq!(
        doc["paths"]["/settings"]["patch"]["requestBody"]["content"]["application/json"]["schema"]
            ["$ref"],
        "#/components/schemas/SettingsPatch"
    );
    assert_eq!(
        doc["components"]["schemas"]["SettingsPatch"]["minProperties"],
        1
    );
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            for status in ["400", "413"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path}: no {status}"
                );
            }
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
}
