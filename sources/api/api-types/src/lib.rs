//! The JSON documents of Ballast's API, defined once for the programs that write them and the
//! programs that read them.
//!
//! # Background
//!
//! Several documents cross a process boundary: the update status (`GET /updates/status`, built
//! by the API server, read by apiclient, with a `progress` object that updog writes to a file
//! while it prepares an update), the settings history (`GET /history`), the dry-run preview
//! (`POST /tx/dry-run`, produced by thar-be-settings, passed on by the API server, printed by
//! apiclient), the journal's entries (`GET /logs`, see [`logs`]), the audit trail (`GET
//! /audit`, see [`audit`]) and the node's state (`GET /units` and `GET /status`, see
//! [`status`], with the A/B boot state that `signpost status --json` prints, see [`boot`]), and
//! the support bundle's manifest (`GET /support-bundle`, see [`support_bundle`]), and where
//! the boot's time went (`GET /report/boot`, see [`boot_report`]), and try-mode settings
//! (`GET /tx/provisional`, see [`provisional`]), and the control messages of `GET /exec`
//! (see [`exec`]), and the CIS benchmark report (`GET /report/cis`, see [`cis`]).
//! Each used to be declared
//! on both sides, and the copies drifted (the status document's `exit_status` was an `i32` in
//! the server and an `i64` in the client). This crate
//! is the one declaration. It has no I/O: only types, their serde shape and, with the `openapi`
//! feature, their OpenAPI schema.
//!
//! The JSON is Bottlerocket's where Bottlerocket has the document (the update status), so
//! scripts written for Bottlerocket keep working; Ballast's additions are extra fields that
//! older readers ignore. One more document crosses between programs without going through the
//! API: what `updog --json status` prints, which the API server reads ([`updater`]).
//!
//! # Usage
//!
//! ```
//! use api_types::update::UpdateStatus;
//! let text = r#"{"update_state": "Idle", "available_updates": [], "chosen_update": null,
//!   "active_partition": {"image": {"arch": "x86_64", "version": "1.0.0", "variant": "dev"},
//!                        "next_to_boot": true},
//!   "staging_partition": null, "most_recent_command": null}"#;
//! let status: UpdateStatus = serde_json::from_str(text).unwrap();
//! assert_eq!(status.active_partition.image.version, "1.0.0");
//! ```
//!
//! # Current limitations
//!
//! * Of the updater's command-line output only `updog --json status` is declared here
//!   ([`updater::NodeStatus`]); for `check-update`, whose entries are whole manifest entries of
//!   the `update-metadata` crate, `apiserver::updates::updater` still reads just the fields it
//!   needs.
//! * Values in the history and preview documents are plain JSON ([`serde_json::Value`] or the
//!   stored JSON text), not typed settings: the model crate owns those types.
#![forbid(unsafe_code)]

pub mod audit;
pub mod boot;
pub mod boot_report;
pub mod cis;
pub mod exec;
pub mod health;
pub mod history;
pub mod logs;
pub mod preview;
pub mod provisional;
pub mod status;
pub mod support_bundle;
pub mod update;
pub mod updater;
