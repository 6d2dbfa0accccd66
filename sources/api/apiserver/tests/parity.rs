//! Where scripts written for Bottlerocket's API would notice a difference: prefix filtering of
//! the OS facts, empty query parameters, empty PATCHes, unknown names. Each case states what
//! Bottlerocket's server answers; the differences Ballast keeps on purpose (listed in the
//! README's "Where Ballast differs") are pinned at the end so they cannot change unnoticed.

use serde_json::{json, Value};
use testserver::TestServer;

fn keys(value: &Value) -> Vec<String> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect()
}

#[test]
fn os_prefixes_select_fields_as_bottlerocket_does() {
    let server = TestServer::start();
    let os = server.json("GET", "/os", None);
    assert_eq!(
        keys(&os),
        [
            "arch",
            "build_id",
            "pretty_name",
            "variant_id",
            "version_id"
        ]
    );

    // Through GET /?prefix=: only "os", and in it only the fields the prefix names.
    assert_eq!(
        server.json("GET", "/?prefix=os.arch", None),
        json!({"os": {"arch": os["arch"]}})
    );
    assert_eq!(
        server.json("GET", "/?prefix=os.v", None),
        json!({"os": {"variant_id": "test", "version_id": "0.1.0"}})
    );
    for whole in ["os", "os.", "o"] {
        let got = server.json("GET", &format!("/?prefix={whole}"), None);
        assert_eq!(got["os"], os, "?prefix={whole}: {got}");
    }
    // "osx" is not under "os." (the old check took any prefix starting with "os").
    let got = server.json("GET", "/?prefix=osx", None);
    assert!(got.get("os").is_none(), "{got}");
    assert_eq!(
        server.json("GET", "/?prefix=os.nothing", None),
        json!({"os": {}})
    );

    // Through GET /os?prefix=: "os." is implied.
    assert_eq!(
        server.json("GET", "/os?prefix=arch", None),
        json!({"arch": os["arch"]})
    );
    assert_eq!(
        server.json("GET", "/os?prefix=os.build", None),
        json!({"build_id": "abc123"})
    );
    assert_eq!(keys(&server.json("GET", "/os?prefix=os", None)).len(), 5);
    assert_eq!(server.json("GET", "/os?prefix=nothing", None), json!({}));

    // A prefix under one root shows that root only; one that names no root is a settings prefix.
    assert_eq!(
        keys(&server.json("GET", "/?prefix=settings.motd", None)),
        ["settings"]
    );
    let motd = server.json("GET", "/?prefix=motd", None);
    assert!(motd["settings"]["motd"].is_string(), "{motd}");
    let se = server.json("GET", "/?prefix=se", None);
    assert_eq!(keys(&se), ["services", "settings"], "{se}");
}

#[test]
fn empty_parameters_are_refused_like_bottlerocket() {
    let server = TestServer::start();
    let settings_before = server.json("GET", "/settings", None);
    for uri in [
        "/?prefix=",
        "/settings?prefix=",
        "/settings?keys=",
        "/settings?keys=,",
        "/os?prefix=",
        "/services?names=",
        "/services?prefix=",
        "/configuration-files?names=",
        "/configuration-files?prefix=",
        "/metadata/templates?keys=",
        "/metadata/affected-services?keys=",
    ] {
        let (status, text) = server.raw("GET", uri, None);
        assert_eq!(status, 400, "GET {uri}: {text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        let message = body["error"].as_str().unwrap();
        assert!(message.contains('?'), "GET {uri}: {message}");
    }
    // An empty key list once re-rendered everything; now it renders nothing.
    let (status, text) = server.raw("POST", "/tx/apply?keys=", None);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("keys"), "{text}");
    let (status, text) = server.raw("POST", "/tx/apply?keys=settings.motd", None);
    assert_eq!(status, 204, "{text}");
    let applies = server.applies(1);
    assert_eq!(applies, ["|[\"settings.motd\"]"], "{applies:?}");
    assert_eq!(server.json("GET", "/settings", None), settings_before);
}

#[test]
fn an_empty_patch_is_accepted_and_stages_nothing() {
    let server = TestServer::start();
    for (uri, body) in [
        ("/settings?tx=empty", "{}"),
        ("/settings/keypair?tx=empty", r#"{"request_payload":[]}"#),
    ] {
        let (status, text) = server.raw("PATCH", uri, Some(body));
        assert_eq!(status, 204, "PATCH {uri} {body}: {text}");
    }
    assert_eq!(server.json("GET", "/tx/list", None), json!([]));
    assert_eq!(server.json("GET", "/tx?tx=empty", None), json!({}));
    let (status, text) = server.raw("POST", "/tx/commit?tx=empty", None);
    assert_eq!(status, 422, "{text}");
    // Still all or nothing: an empty object next to a bad value writes nothing.
    let (status, _) = server.raw(
        "PATCH",
        "/settings?tx=empty",
        Some(r#"{"ntp": {}, "motd": 5}"#),
    );
    assert_eq!(status, 400);
    assert_eq!(server.json("GET", "/tx/list", None), json!([]));
}

#[test]
fn unknown_names_are_not_found_and_prefixes_may_carry_the_root() {
    let server = TestServer::start();
    let services = server.json("GET", "/services", None);
    let one = keys(&services)[0].clone();
    for root in ["services", "configuration-files"] {
        let (status, text) = server.raw("GET", &format!("/{root}?names=no-such-name"), None);
        assert_eq!(status, 404, "{root}: {text}");
        assert!(text.contains("no-such-name"), "{text}");
    }
    let (status, text) = server.raw("GET", &format!("/services?names={one},no-such-name"), None);
    assert_eq!(status, 404, "{text}");

    assert_eq!(
        server.json("GET", "/services?prefix=services", None),
        services
    );
    let short = &one[..2];
    let bare = server.json("GET", &format!("/services?prefix={short}"), None);
    let rooted = server.json("GET", &format!("/services?prefix=services.{short}"), None);
    assert_eq!(bare, rooted);
    assert!(bare.get(&one).is_some(), "{bare}");
}

/// The differences Ballast keeps (see the README): each is pinned here.
#[test]
fn kept_differences_stay_as_documented() {
    let server = TestServer::start();
    for (method, uri, want) in [
        // Bottlerocket answers 404 for a known path with another method.
        ("DELETE", "/settings", 405),
        ("PUT", "/tx/commit", 405),
        // Bottlerocket ignores parameters it does not know.
        ("GET", "/settings?prefx=motd", 400),
        ("GET", "/?prefixes=os", 400),
        // Bottlerocket takes an empty transaction name as the pending directory itself.
        ("GET", "/tx?tx=", 400),
        ("DELETE", "/tx?tx=", 400),
        ("POST", "/tx/commit_and_apply?tx=", 400),
    ] {
        let (status, text) = server.raw(method, uri, None);
        assert_eq!(status, want, "{method} {uri}: {text}");
    }
}
