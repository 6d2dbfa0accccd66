//! HTTP routes: request parsing, the call into [`crate::controller`], and the answer. Every route
//! is declared once with `#[utoipa::path]`, so the router and the OpenAPI document come from the
//! same declarations and cannot drift apart.

use crate::apply::Applier;
use crate::audit::Changes;
use crate::controller::{self, DEFAULT_TX};
use crate::error::{ApiError, ErrorBody};
use crate::updates::status::{CommandType, UpdateStatus};
use crate::updates::Updates;
use api_types::history::{HistoryChange, HistoryEntry};
use api_types::preview::Preview;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use datastore::{Committed, DataStore};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::openapi::Required;
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest request body accepted; anything bigger is refused with 413 before it is parsed.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The datastore behind the API, shared by all requests. Writers take the lock exclusively, so
/// concurrent writes are serialized and no reader sees a commit half done.
pub type SharedStore = Arc<RwLock<Box<dyn DataStore + Send + Sync>>>;

/// Everything a request handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: SharedStore,
    pub os_release: PathBuf,
    pub applier: Applier,
    pub updates: Updates,
    /// Commits waiting to share the next datastore flush.
    pub commits: Arc<crate::group_commit::CommitQueue>,
    /// Where GET /logs reads the journal.
    pub journal: Arc<crate::logs::JournalConfig>,
    /// The audit trail every changing request is recorded in.
    pub audit: Arc<crate::audit::AuditLog>,
    /// What GET /units and GET /status run.
    pub node: Arc<crate::node_status::NodeConfig>,
    /// Where GET /support-bundle reads the node's files.
    pub bundle: Arc<crate::support_bundle::BundleConfig>,
    /// Where GET /exec finds the host containers.
    pub exec: Arc<crate::exec::ExecConfig>,
    /// The boot id and the timer of try-mode changes.
    pub try_mode: crate::provisional::TryMode,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ballast API",
        description = "Settings, transactions, metadata, history and updates of a Ballast node. Served over HTTP/1.1 on a Unix socket (default /run/api.sock). Errors are JSON {\"error\": sentence, \"key\"?: setting}.",
    ),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

/// Builds the router and the OpenAPI document from the same route declarations (finished by
/// [`crate::openapi::finish`]).
pub fn router(state: AppState) -> (Router, Value) {
    let audit = state.audit.clone();
    let (router, mut doc): (Router, utoipa::openapi::OpenApi) =
        OpenApiRouter::with_openapi(ApiDoc::openapi())
            .routes(routes!(get_model))
            .routes(routes!(get_settings, patch_settings))
            .routes(routes!(patch_settings_keypair))
            .routes(routes!(get_tx, delete_tx))
            .routes(routes!(list_tx))
            .routes(routes!(commit_tx))
            .routes(routes!(apply_tx))
            .routes(routes!(commit_and_apply_tx))
            .routes(routes!(dry_run_tx))
            .routes(routes!(start_try, get_provisional))
            .routes(routes!(confirm_try))
            .routes(routes!(get_os))
            .routes(routes!(get_affected_services))
            .routes(routes!(get_templates))
            .routes(routes!(get_setting_generators))
            .routes(routes!(get_services))
            .routes(routes!(get_configuration_files))
            .routes(routes!(get_history))
            .routes(routes!(undo_history))
            .routes(routes!(get_update_status))
            .routes(routes!(put_daemon_report))
            .routes(routes!(refresh_updates))
            .routes(routes!(prepare_update))
            .routes(routes!(activate_update))
            .routes(routes!(deactivate_update))
            .routes(routes!(reboot))
            .routes(routes!(get_logs))
            .routes(routes!(get_audit))
            .routes(routes!(get_units))
            .routes(routes!(get_status))
            .routes(routes!(get_boot_report))
            .routes(routes!(get_cis_report))
            .routes(routes!(get_support_bundle))
            .routes(routes!(get_openapi))
            .routes(routes!(exec))
            .with_state(state)
            .split_for_parts();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    // GET /status's parts refer to their documents by name (a part is the document or an
    // error), so those schemas are registered here.
    let components = doc.components.get_or_insert_with(Default::default);
    for (name, schema) in api_types::status::part_schemas() {
        components.schemas.entry(name).or_insert(schema);
    }
    let doc = crate::openapi::finish(&doc);
    // Served as the bytes it serializes to: a JSON tree of the document would hold about a
    // megabyte of small allocations for the server's whole life, and be copied per request.
    let spec = OpenApiBytes(axum::body::Bytes::from(
        serde_json::to_vec(&doc).expect("a JSON value serializes"),
    ));
    let router = router
        .layer(axum::Extension(spec))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(axum::middleware::from_fn_with_state(
            audit,
            crate::audit::record,
        ));
    (router, doc)
}

async fn unknown_route(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route {}; see GET /openapi.json",
        req.uri().path()
    ))
}

async fn wrong_method(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} is not allowed on {}; see GET /openapi.json",
            req.method(),
            req.uri().path()
        ),
    )
}

// ---- extractors that answer with our JSON errors ----

/// Query string parsed into `T`; a malformed query is a 400 naming the problem.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded_from_str(query).map(ApiQuery)
    }
}

fn serde_urlencoded_from_str<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{query}")
            .parse()
            .map_err(|_| ApiError::bad_request("malformed query string"))?,
    )
    .map(|q| q.0)
    .map_err(|e| ApiError::bad_request(format!("bad query string: {}", e.body_text())))
}

/// A JSON request body: empty, oversized or malformed bodies are refused with a clear 4xx.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            let status = e.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    status,
                    format!("request body is larger than the limit of {MAX_BODY_BYTES} bytes"),
                )
            } else {
                ApiError::new(
                    status,
                    format!("cannot read request body: {}", e.body_text()),
                )
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request(
                "request body is empty; send a JSON document",
            ));
        }
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| ApiError::bad_request(format!("request body is not valid: {e}")))
    }
}

// ---- query shapes ----

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxQuery {
    /// Transaction name (default "default"): 1 to 64 of A-Z a-z 0-9 _ -.
    pub tx: Option<String>,
}

impl TxQuery {
    fn name(&self) -> Result<String, ApiError> {
        let tx = self.tx.clone().unwrap_or_else(|| DEFAULT_TX.to_string());
        datastore::validate_transaction_name(&tx)?;
        Ok(tx)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsQuery {
    /// Comma-separated dotted keys, e.g. settings.motd,settings.ntp ("settings." is added when
    /// missing). With `prefix`, the answer holds both.
    pub keys: Option<String>,
    /// A key prefix; "settings." is added when missing. With `keys`, the answer holds both.
    pub prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixQuery {
    /// Only what lies under this dotted prefix, e.g. settings.motd or os.
    pub prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysQuery {
    /// Comma-separated dotted keys ("settings." is added when missing).
    pub keys: Option<String>,
}

/// The query of GET /metadata/affected-services, whose keys are required.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequiredKeysQuery {
    /// Comma-separated dotted keys ("settings." is added when missing).
    pub keys: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamesQuery {
    /// Comma-separated names.
    pub names: Option<String>,
    /// A name prefix.
    pub prefix: Option<String>,
}

impl NamesQuery {
    /// The names and the prefix, refusing an empty `?names=` or `?prefix=` with a 400.
    fn checked(self) -> Result<(Vec<String>, Option<String>), ApiError> {
        let names = split_list(&self.names);
        if self.names.is_some() && names.is_empty() {
            return Err(ApiError::bad_request(
                "?names= names nothing; give e.g. ?names=a,b or leave it out",
            ));
        }
        if let Some(prefix) = &self.prefix {
            controller::non_empty("prefix", prefix)?;
        }
        Ok((names, self.prefix))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UndoQuery {
    /// The commit to revert; the newest when absent.
    pub id: Option<u64>,
}

// ---- parameter schemas: each states the rule the server applies, from the rule's own home ----

/// Longest settings key a request may name without its "settings." prefix, which the server
/// adds: the whole key must still fit [`settings_key::MAX_KEY_LEN`].
pub const MAX_SETTINGS_NAME_LEN: usize =
    settings_key::MAX_KEY_LEN - controller::SETTINGS_ROOT.len() - 1;

fn string_schema(pattern: String, min: usize, max: usize) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .min_length(Some(min))
        .max_length(Some(max))
        .build()
}

/// `tx`: a transaction name as the datastore accepts it.
fn tx_name_schema() -> Object {
    string_schema(
        datastore::transaction_name_pattern(),
        1,
        datastore::MAX_TRANSACTION_NAME_LEN,
    )
}

/// Comma-separated settings keys, each of the key grammar and short enough to get its prefix.
/// An empty value is refused (as Bottlerocket does): leave the parameter out instead.
fn settings_key_list_schema() -> Object {
    string_schema(settings_key::key_list_pattern(), 1, MAX_SETTINGS_NAME_LEN)
}

/// A settings key prefix: a (partial) dotted key short enough to get its "settings." prefix;
/// not empty (leave the parameter out for everything).
fn settings_prefix_schema() -> Object {
    string_schema(settings_key::key_pattern(), 1, MAX_SETTINGS_NAME_LEN)
}

/// Comma-separated full data keys; not empty (leave the parameter out for everything).
fn data_key_list_schema() -> Object {
    string_schema(
        settings_key::key_list_pattern(),
        1,
        settings_key::MAX_KEY_LEN,
    )
}

/// Comma-separated names, or a name prefix; not empty.
fn names_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(settings_key::MAX_KEY_LEN))
        .build()
}

/// A commit id of the settings history: an unsigned 64-bit number.
fn commit_id_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
        .maximum(Some(u64::MAX))
        .build()
}

/// One query parameter of the document.
fn query_param(name: &str, required: bool, description: &str, schema: Object) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(if required {
            Required::True
        } else {
            Required::False
        })
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

/// Documents a query struct from rows of (name, required, schema, description): by hand rather
/// than derived, because each schema comes from the rule's own home (a pattern built from the
/// key grammar, a limit from the datastore), which the derive's literal attributes cannot take.
macro_rules! query_params {
    ($ty:ty { $( $name:literal, $required:expr, $schema:expr, $description:expr; )* }) => {
        impl IntoParams for $ty {
            fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
                vec![$( query_param($name, $required, $description, $schema) ),*]
            }
        }
    };
}

const TX_DESCRIPTION: &str =
    "Transaction name (default \"default\"): letters, digits, _ and -, as long as the schema allows.";

query_params!(TxQuery {
    "tx", false, tx_name_schema(), TX_DESCRIPTION;
});
query_params!(SettingsQuery {
    "keys", false, settings_key_list_schema(),
        "Comma-separated dotted keys, e.g. motd,ntp.time-servers (\"settings.\" is added when missing); with prefix, the answer holds both. Segments other than letters, digits, _ and - are quoted: kernel.sysctl.\"net.ipv4.ip_forward\".";
    "prefix", false, settings_prefix_schema(),
        "A key prefix (\"settings.\" is added when missing); with keys, the answer holds both.";
});
query_params!(PrefixQuery {
    "prefix", false, settings_prefix_schema(),
        "Only what lies under this dotted prefix, e.g. settings.motd or os (a prefix naming no root is taken under settings).";
});
query_params!(KeysQuery {
    "keys", false, settings_key_list_schema(),
        "Comma-separated dotted keys (\"settings.\" is added when missing); all keys that have one when absent.";
});
query_params!(RequiredKeysQuery {
    "keys", true, settings_key_list_schema(),
        "Comma-separated dotted keys (\"settings.\" is added when missing).";
});
query_params!(UndoQuery {
    "id", false, commit_id_schema(),
        "The commit to revert (an id from GET /history); the newest not yet undone when absent.";
});
query_params!(NamesQuery {
    "names", false, names_schema(), "Comma-separated names; all when absent.";
    "prefix", false, names_schema(), "Only names that start with this prefix.";
});
query_params!(OsQuery {
    "prefix", false, names_schema(),
        "Only the fields whose names start with this, e.g. arch or v (\"os.\" may be given too).";
});
query_params!(crate::boot_report::BootReportQuery {
    "target", false, string_schema(crate::logs::unit_pattern(), 1, crate::logs::MAX_GIVEN_UNIT_NAME_LEN),
        "The one unit whose chain to report, e.g. containerd or kubelet.service (a name that does not end in a unit type gets .service); apiserver.service and configured.target when absent.";
});
query_params!(crate::logs::LogsQuery {
    "unit", false, string_schema(crate::logs::unit_list_pattern(), 1, crate::logs::MAX_UNITS * (crate::logs::MAX_GIVEN_UNIT_NAME_LEN + 1) - 1),
        "Comma-separated systemd units whose entries to show (at most 16), e.g. apiserver or kubelet.service; a name that does not end in a unit type (.service, .socket, .timer, ...) gets .service.";
    "priority", false, string_schema(crate::logs::priority_pattern(), 1, 7),
        "Only entries at this syslog priority or more important: 0-7, or emerg, alert, crit, err, warning, notice, info, debug.";
    "since", false, string_schema(crate::logs::time_pattern(), 3, 40),
        "Only entries written at or after this time: RFC 3339 (2026-12-07T06:53:05Z), or relative to now (-10m; s, m, h or d). A since after until matches nothing.";
    "until", false, string_schema(crate::logs::time_pattern(), 3, 40),
        "Only entries written at or before this time, written as since.";
    "boot", false, string_schema(crate::logs::boot_pattern(), 1, 32),
        "Only entries of one boot: 0 the newest in the journal (normally this one), -1 the one before, ..., or a 32-hex boot id. A boot the journal does not have is a 404.";
    "grep", false, string_schema("^[^\\u0000]*$".to_string(), 1, crate::logs::MAX_GREP_LEN),
        "Only entries whose message matches this PCRE2 pattern (journalctl --grep: case-insensitive when all lowercase). A pattern journalctl cannot compile is a 400.";
    "lines", false, string_schema(crate::logs::lines_pattern(), 1, 5),
        "How many of the newest matching entries (1 to 10000, default 100).";
    "follow", false, ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["true", "false"])).build(),
        "true: answer with the newest `lines` entries, then keep sending new ones as they are written, as application/x-ndjson (one entry per line), until the client disconnects.";
});
query_params!(crate::audit::AuditQuery {
    "since", false, string_schema(crate::logs::time_pattern(), 3, 40),
        "Only entries of requests that arrived at or after this time: RFC 3339 (2026-12-07T06:53:05Z), or relative to now (-10m; s, m, h or d).";
    "lines", false, string_schema(crate::logs::lines_pattern(), 1, 5),
        "How many of the newest matching entries (1 to 10000, default 100).";
});
query_params!(ApplyQuery {
    "keys", false, data_key_list_schema(),
        "Comma-separated keys whose configuration to re-render, written in full (settings.motd); everything when absent.";
});

fn split_list(list: &Option<String>) -> Vec<String> {
    list.as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

// ---- bodies ----

/// Body of PATCH /settings/keypair.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyPairRequest {
    /// Settings as "key=value" strings, e.g. "motd=hi" or "settings.ntp.time-servers=[...]".
    pub request_payload: Vec<String>,
}

/// The history document's entry for a commit the datastore recorded.
/// The server's own bookkeeping (the try-mode record) is left out: it is not a setting.
fn history_entry(r: datastore::CommitRecord) -> HistoryEntry {
    HistoryEntry {
        id: r.id,
        time: r.time,
        transaction: r.transaction,
        changes: r
            .changes
            .into_iter()
            .filter(|c| !crate::provisional::is_internal(&c.key))
            .map(|c| HistoryChange {
                key: c.key,
                old: c.old,
                new: c.new,
            })
            .collect(),
        caller: r.caller,
    }
}

/// Who sent a request, for the history: the connection's peer credentials and program, as the
/// audit trail records them.
fn caller(peer: Option<Extension<crate::audit::Peer>>) -> Option<api_types::audit::Caller> {
    peer.map(|Extension(peer)| peer.caller())
}

// ---- running datastore work off the async threads ----

/// Runs a read. When no writer holds the lock it reads right here: a read is a few small files
/// from the page cache, cheaper than handing it to a blocking thread and back (that hand-off was
/// most of the cost of a single-key GET). When a writer holds the lock (a commit waiting for
/// the disk), the read waits on a blocking thread instead, never on an async one.
pub(crate) async fn read<T, F>(state: &AppState, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&(dyn DataStore + Send + Sync)) -> Result<T, ApiError> + Send + 'static,
{
    match state.store.try_read() {
        Ok(guard) => return f(&**guard),
        Err(std::sync::TryLockError::Poisoned(poisoned)) => return f(&**poisoned.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => {}
    }
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || {
        let guard = store
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&**guard)
    })
    .await
    .map_err(|e| ApiError::internal(format!("request task failed: {e}")))?
}

async fn write<T, F>(state: &AppState, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut (dyn DataStore + Send + Sync)) -> Result<T, ApiError> + Send + 'static,
{
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || {
        let mut guard = store
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut **guard)
    })
    .await
    .map_err(|e| ApiError::internal(format!("request task failed: {e}")))?
}

// ---- routes ----

/// Settings, services, configuration files and OS facts in one document.
#[utoipa::path(get, path = "/", params(PrefixQuery),
    responses((status = 200, description = "The model, filtered by prefix", body = models::Model),
              (status = 400, body = ErrorBody)))]
async fn get_model(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<PrefixQuery>,
) -> Result<Json<Value>, ApiError> {
    let Some(prefix) = q.prefix else {
        return get_whole_model(state).await;
    };
    let prefix = controller::non_empty("prefix", &prefix)?;
    // A prefix that names no part of the model ("motd") is taken as a settings prefix.
    let prefix = if controller::MODEL_ROOTS
        .iter()
        .any(|root| controller::prefix_within(prefix, root).is_some())
    {
        prefix.to_string()
    } else {
        controller::settings_prefix(prefix)
    };
    let os = match controller::prefix_within(&prefix, "os") {
        Some(_) => controller::os_fields(os_info(&state)?, &prefix),
        None => None,
    };
    let mut out = read(&state, move |ds| {
        let mut out = Map::new();
        for root in ["settings", "services", "configuration-files"] {
            let Some(find) = controller::prefix_within(&prefix, root) else {
                continue;
            };
            let pairs = ds.get_prefix(&find, &Committed::Live)?;
            let tree = if pairs.is_empty() {
                // The whole of an empty root is shown as {}; an unmatched deeper prefix not at all.
                if find.len() > root.len() + 1 {
                    continue;
                }
                Value::Object(Map::new())
            } else {
                datastore::serialization::from_pairs(&pairs, Some(root))?
            };
            out.insert(root.to_string(), tree);
        }
        Ok(out)
    })
    .await?;
    if let Some(os) = os {
        out.insert("os".to_string(), os);
    }
    Ok(Json(Value::Object(out)))
}

async fn get_whole_model(state: AppState) -> Result<Json<Value>, ApiError> {
    let os = os_info(&state)?;
    let mut out = read(&state, move |ds| {
        let mut out = Map::new();
        for root in ["settings", "services", "configuration-files"] {
            out.insert(
                root.to_string(),
                controller::get_tree(ds, root, &Committed::Live)?,
            );
        }
        Ok(out)
    })
    .await?;
    out.insert("os".to_string(), os);
    Ok(Json(Value::Object(out)))
}

/// Live settings: all, some keys, those under a prefix, or the keys and those under the prefix.
#[utoipa::path(get, path = "/settings", params(SettingsQuery),
    responses((status = 200, description = "Settings (without the outer \"settings\")", body = models::Settings),
              (status = 400, body = ErrorBody)))]
async fn get_settings(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<SettingsQuery>,
) -> Result<Json<Value>, ApiError> {
    let value = match (q.keys.is_some(), q.prefix) {
        (true, Some(prefix)) => {
            let keys = split_list(&q.keys);
            read(&state, move |ds| {
                let mut both = controller::get_settings_keys(ds, &keys, &Committed::Live)?;
                let under = controller::get_settings_prefix(ds, &prefix, &Committed::Live)?;
                controller::merge(&mut both, under);
                Ok(both)
            })
            .await?
        }
        (true, None) => {
            let keys = split_list(&q.keys);
            if keys.is_empty() {
                return Err(ApiError::bad_request(
                    "?keys= names no key; give e.g. ?keys=settings.motd or leave it out",
                ));
            }
            read(&state, move |ds| {
                controller::get_settings_keys(ds, &keys, &Committed::Live)
            })
            .await?
        }
        (false, Some(prefix)) => {
            controller::non_empty("prefix", &prefix)?;
            read(&state, move |ds| {
                controller::get_settings_prefix(ds, &prefix, &Committed::Live)
            })
            .await?
        }
        (false, None) => {
            read(&state, |ds| {
                controller::get_tree(ds, "settings", &Committed::Live)
            })
            .await?
        }
    };
    Ok(Json(value))
}

/// Validates settings and stores them in a pending transaction (nothing changes until commit).
#[utoipa::path(patch, path = "/settings", params(TxQuery),
    request_body(content = models::Settings, description = "Partial settings, without the outer \"settings\""),
    responses((status = 204, description = "Stored in the pending transaction"),
              (status = 400, description = "Malformed, unknown or invalid setting; nothing written", body = ErrorBody),
              (status = 413, body = ErrorBody)))]
async fn patch_settings(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<TxQuery>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(Extension<Changes>, StatusCode), ApiError> {
    let tx = q.name()?;
    let changes = write(&state, move |ds| controller::set_settings(ds, &body, &tx)).await?;
    Ok((Extension(changes), StatusCode::NO_CONTENT))
}

/// Like PATCH /settings, from "key=value" strings.
#[utoipa::path(patch, path = "/settings/keypair", params(TxQuery),
    request_body = KeyPairRequest,
    responses((status = 204, description = "Stored in the pending transaction"),
              (status = 400, body = ErrorBody)))]
async fn patch_settings_keypair(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<TxQuery>,
    ApiJson(body): ApiJson<KeyPairRequest>,
) -> Result<(Extension<Changes>, StatusCode), ApiError> {
    let tx = q.name()?;
    let settings = controller::keypairs_to_settings(&body.request_payload)?;
    let changes = write(&state, move |ds| {
        controller::set_settings(ds, &settings, &tx)
    })
    .await?;
    Ok((Extension(changes), StatusCode::NO_CONTENT))
}

/// Pending settings of a transaction.
#[utoipa::path(get, path = "/tx", params(TxQuery),
    responses((status = 200, body = models::Settings), (status = 400, body = ErrorBody)))]
async fn get_tx(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<TxQuery>,
) -> Result<Json<Value>, ApiError> {
    let tx = q.name()?;
    let value = read(&state, move |ds| {
        controller::get_tree(ds, "settings", &Committed::Pending { tx })
    })
    .await?;
    Ok(Json(value))
}

/// Drops a pending transaction; answers with the keys it held.
#[utoipa::path(delete, path = "/tx", params(TxQuery),
    responses((status = 200, body = Vec<String>), (status = 400, body = ErrorBody)))]
async fn delete_tx(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<TxQuery>,
) -> Result<(Extension<Changes>, Json<Vec<String>>), ApiError> {
    let tx = q.name()?;
    let keys = write(&state, move |ds| Ok(ds.delete_transaction(&tx)?)).await?;
    let keys: Vec<String> = keys.into_iter().map(|k| k.name().to_string()).collect();
    Ok((
        Extension(Changes::keys(keys.iter().map(String::as_str))),
        Json(keys),
    ))
}

/// Names of the transactions that hold pending settings.
#[utoipa::path(get, path = "/tx/list", responses((status = 200, body = Vec<String>)))]
async fn list_tx(State(state): State<AppState>) -> Result<Json<Vec<String>>, ApiError> {
    let list = read(&state, |ds| Ok(ds.list_transactions()?)).await?;
    Ok(Json(list.into_iter().collect()))
}

fn nothing_pending(tx: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("transaction '{tx}' has no pending settings to commit"),
    )
}

/// Makes a transaction live, all or nothing; answers with the keys whose value changed.
#[utoipa::path(post, path = "/tx/commit", params(TxQuery),
    responses((status = 200, body = Vec<String>),
              (status = 422, description = "Nothing pending", body = ErrorBody)))]
async fn commit_tx(
    State(state): State<AppState>,
    peer: Option<Extension<crate::audit::Peer>>,
    ApiQuery(q): ApiQuery<TxQuery>,
) -> Result<(Extension<Changes>, Json<Vec<String>>), ApiError> {
    let tx = q.name()?;
    let changed =
        crate::group_commit::commit(&state.store, &state.commits, tx.clone(), caller(peer))
            .await?
            .ok_or_else(|| nothing_pending(&tx))?;
    Ok((
        Extension(Changes::keys(changed.iter().map(String::as_str))),
        Json(changed),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyQuery {
    /// Comma-separated keys whose configuration to re-render, written in full
    /// (settings.motd); everything when absent.
    pub keys: Option<String>,
}

/// Renders configuration and restarts services for the given keys (all when none are given).
#[utoipa::path(post, path = "/tx/apply", params(ApplyQuery),
    responses((status = 204, description = "Handed to the renderer"), (status = 400, body = ErrorBody),
              (status = 500, body = ErrorBody)))]
async fn apply_tx(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ApplyQuery>,
) -> Result<(Extension<Changes>, StatusCode), ApiError> {
    let keys = split_list(&q.keys);
    if q.keys.is_some() && keys.is_empty() {
        return Err(ApiError::bad_request(
            "?keys= names no key; give the keys to apply, or leave it out to apply everything",
        ));
    }
    for key in &keys {
        controller::data_key(key)?;
    }
    let changes = Changes::keys(keys.iter().map(String::as_str));
    state
        .applier
        .apply(if keys.is_empty() { None } else { Some(keys) })?;
    Ok((Extension(changes), StatusCode::NO_CONTENT))
}

/// Commits a transaction and applies the keys that changed.
#[utoipa::path(post, path = "/tx/commit_and_apply", params(TxQuery),
    responses((status = 200, description = "Keys whose value changed", body = Vec<String>),
              (status = 422, description = "Nothing pending", body = ErrorBody),
              (status = 500, body = ErrorBody)))]
async fn commit_and_apply_tx(
    State(state): State<AppState>,
    peer: Option<Extension<crate::audit::Peer>>,
    ApiQuery(q): ApiQuery<TxQuery>,
) -> Result<(Extension<Changes>, Json<Vec<String>>), ApiError> {
    let tx = q.name()?;
    let changed =
        crate::group_commit::commit(&state.store, &state.commits, tx.clone(), caller(peer))
            .await?
            .ok_or_else(|| nothing_pending(&tx))?;
    let changes = Changes::keys(changed.iter().map(String::as_str));
    if !changed.is_empty() {
        state.applier.apply(Some(changed.clone()))?;
    }
    Ok((Extension(changes), Json(changed)))
}

/// Previews a transaction without changing anything: the settings that would change, the
/// services that would restart and a unified diff of every configuration file that would change.
/// Ballast's own route; Bottlerocket has no equivalent.
#[utoipa::path(post, path = "/tx/dry-run", params(TxQuery),
    responses((status = 200, description = "What committing the transaction would do", body = Preview),
              (status = 422, description = "Nothing pending, or the preview failed", body = ErrorBody),
              (status = 503, description = "No renderer configured", body = ErrorBody)))]
async fn dry_run_tx(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<TxQuery>,
) -> Result<Json<Preview>, ApiError> {
    let tx = q.name()?;
    let pending_tx = tx.clone();
    let pending = read(&state, move |ds| {
        controller::get_tree(ds, "settings", &Committed::Pending { tx: pending_tx })
    })
    .await?;
    if pending.as_object().is_none_or(|m| m.is_empty()) {
        return Err(nothing_pending(&tx));
    }
    Ok(Json(state.applier.dry_run(&tx).await?))
}

// ---- try mode ----

/// The query of POST /tx/provisional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TryQuery {
    /// Transaction name (default "default").
    pub tx: Option<String>,
    /// How long the change stays unless confirmed: 120, 120s, 2m or 1h.
    pub timeout: String,
}

query_params!(TryQuery {
    "tx", false, tx_name_schema(), TX_DESCRIPTION;
    "timeout", true, string_schema(api_types::provisional::timeout_pattern(), 1, 6),
        "How long the change stays unless confirmed: whole seconds, or a number with s, m or h (120, 120s, 2m, 1h); at least 1s, at most 24h.";
});

/// Commits a transaction and applies it provisionally (Ballast only): unless POST /tx/confirm
/// comes within the timeout, the server restores the previous values and applies them; a
/// reboot before the confirm restores them too. The change and the record of its previous
/// values are one commit. One try at a time.
#[utoipa::path(post, path = "/tx/provisional", params(TryQuery),
    responses((status = 200, description = "Committed and handed to the renderer; the try as GET /tx/provisional shows it", body = api_types::provisional::Provisional),
              (status = 400, description = "Bad transaction name or timeout (the message says why)", body = ErrorBody),
              (status = 409, description = "A try is already pending (the message names it), or the boot's settings are not committed yet", body = ErrorBody),
              (status = 422, description = "Nothing pending, or nothing that would change", body = ErrorBody),
              (status = 500, body = ErrorBody)))]
async fn start_try(
    State(state): State<AppState>,
    peer: Option<Extension<crate::audit::Peer>>,
    ApiQuery(q): ApiQuery<TryQuery>,
) -> Result<
    (
        Extension<Changes>,
        Json<api_types::provisional::Provisional>,
    ),
    ApiError,
> {
    let tx = TxQuery { tx: q.tx }.name()?;
    let timeout =
        api_types::provisional::parse_timeout(&q.timeout).map_err(ApiError::bad_request)?;
    let caller = caller(peer);
    let boot_id = state.try_mode.boot_id.clone();
    let record = write(&state, move |ds| {
        crate::provisional::start(ds, &tx, timeout, &boot_id, caller)
    })
    .await?;
    state.try_mode.wake();
    state
        .applier
        .apply(Some(record.changes.iter().map(|c| c.key.clone()).collect()))?;
    Ok((
        Extension(crate::provisional::start_changes(&record)),
        Json(record.document(&state.try_mode.boot_id)),
    ))
}

/// The pending try (Ballast only): the keys with their previous and new values (secret ones
/// replaced by "REDACTED"), the deadline, the seconds left and who started it.
#[utoipa::path(get, path = "/tx/provisional",
    responses((status = 200, description = "The pending try", body = api_types::provisional::Provisional),
              (status = 404, description = "No try is pending", body = ErrorBody),
              (status = 500, body = ErrorBody)))]
async fn get_provisional(
    State(state): State<AppState>,
) -> Result<Json<api_types::provisional::Provisional>, ApiError> {
    let record = read(&state, crate::provisional::load).await?;
    match record {
        Some(record) => Ok(Json(record.document(&state.try_mode.boot_id))),
        None => Err(ApiError::not_found("no try is pending")),
    }
}

/// Keeps the pending try (Ballast only): its values stay and nothing is reverted. Answers with
/// the try that was kept.
#[utoipa::path(post, path = "/tx/confirm",
    responses((status = 200, description = "Kept; the try as it was", body = api_types::provisional::Provisional),
              (status = 409, description = "No try is pending, or its deadline has passed (the revert is under way)", body = ErrorBody),
              (status = 500, body = ErrorBody)))]
async fn confirm_try(
    State(state): State<AppState>,
    peer: Option<Extension<crate::audit::Peer>>,
) -> Result<
    (
        Extension<Changes>,
        Json<api_types::provisional::Provisional>,
    ),
    ApiError,
> {
    let boot_id = state.try_mode.boot_id.clone();
    let caller = caller(peer);
    let record = write(&state, move |ds| {
        crate::provisional::confirm(ds, &boot_id, caller.as_ref())
    })
    .await?;
    state.try_mode.wake();
    let mut document = record.document(&state.try_mode.boot_id);
    document.remaining_seconds = 0;
    Ok((
        Extension(crate::provisional::confirm_changes(&record)),
        Json(document),
    ))
}

fn os_info(state: &AppState) -> Result<Value, ApiError> {
    // The bodies name the flag, not the file; the log has the path.
    let text = std::fs::read_to_string(&state.os_release).map_err(|e| {
        tracing::error!("cannot read {}: {e}", state.os_release.display());
        ApiError::internal(format!(
            "cannot read the os-release file (--os-release): {e}"
        ))
    })?;
    let info = models::OsInfo::from_os_release(&text).map_err(|e| {
        tracing::error!("{} is malformed: {e}", state.os_release.display());
        ApiError::internal(format!(
            "the os-release file (--os-release) is malformed: {e}"
        ))
    })?;
    serde_json::to_value(info).map_err(|e| ApiError::internal(e.to_string()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OsQuery {
    /// Only the fields whose names start with this, e.g. arch or v ("os." may be given too).
    pub prefix: Option<String>,
}

/// The answer of GET /os: every field of [`models::OsInfo`] without a prefix, only the fields
/// the prefix selects with one (possibly none).
#[derive(ToSchema)]
#[schema(as = OsFields)]
#[allow(dead_code)] // documents the answer; the handler builds it from OsInfo's JSON
struct OsFields {
    /// Human-readable name and version, e.g. "Ballast OS 0.1.0 (dev)".
    pretty_name: Option<String>,
    /// Variant the image was built as, e.g. "dev".
    variant_id: Option<String>,
    /// Image version, e.g. "0.1.0".
    version_id: Option<String>,
    /// Build identifier, e.g. a commit hash.
    build_id: Option<String>,
    /// CPU architecture, e.g. "x86_64".
    arch: Option<String>,
}

/// Name, variant, version, build and architecture of the running OS, or the fields a prefix
/// selects.
#[utoipa::path(get, path = "/os", params(OsQuery),
    responses((status = 200, description = "All five fields, or those the prefix selects", body = OsFields),
              (status = 400, body = ErrorBody), (status = 500, body = ErrorBody)))]
async fn get_os(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<OsQuery>,
) -> Result<Json<Value>, ApiError> {
    let os = os_info(&state)?;
    let Some(prefix) = q.prefix else {
        return Ok(Json(os));
    };
    let prefix = controller::non_empty("prefix", &prefix)?;
    // The "os" is implied here, so a bare field prefix gets it, as in Bottlerocket.
    let prefix = if prefix.starts_with("os") {
        prefix.to_string()
    } else {
        format!("os.{prefix}")
    };
    Ok(Json(
        controller::os_fields(os, &prefix).unwrap_or_else(|| Value::Object(Map::new())),
    ))
}

/// Services affected by each key (its own metadata and its parents').
#[utoipa::path(get, path = "/metadata/affected-services", params(RequiredKeysQuery),
    responses((status = 200, body = BTreeMap<String, Vec<String>>), (status = 400, body = ErrorBody)))]
async fn get_affected_services(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<RequiredKeysQuery>,
) -> Result<Json<BTreeMap<String, BTreeSet<String>>>, ApiError> {
    let keys = split_list(&Some(q.keys));
    if keys.is_empty() {
        return Err(ApiError::bad_request(
            "give the keys to look up, e.g. ?keys=settings.motd",
        ));
    }
    Ok(Json(
        read(&state, move |ds| controller::affected_services(ds, &keys)).await?,
    ))
}

/// Templates declared for keys (all keys that have one when none are given).
#[utoipa::path(get, path = "/metadata/templates", params(KeysQuery),
    responses((status = 200, body = BTreeMap<String, String>), (status = 400, body = ErrorBody)))]
async fn get_templates(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<KeysQuery>,
) -> Result<Json<BTreeMap<String, Value>>, ApiError> {
    let keys = split_list(&q.keys);
    if q.keys.is_some() && keys.is_empty() {
        return Err(ApiError::bad_request(
            "?keys= names no key; give e.g. ?keys=settings.motd, or leave it out for all templates",
        ));
    }
    Ok(Json(
        read(&state, move |ds| {
            controller::get_metadata(ds, controller::TEMPLATE, &keys)
        })
        .await?,
    ))
}

/// Commands that generate settings at boot, by key.
#[utoipa::path(get, path = "/metadata/setting-generators",
    responses((status = 200, body = BTreeMap<String, String>)))]
async fn get_setting_generators(
    State(state): State<AppState>,
) -> Result<Json<BTreeMap<String, Value>>, ApiError> {
    Ok(Json(
        read(&state, |ds| {
            controller::get_metadata(ds, controller::SETTING_GENERATOR, &[])
        })
        .await?,
    ))
}

/// Services with their configuration files and restart commands.
#[utoipa::path(get, path = "/services", params(NamesQuery),
    responses((status = 200, body = BTreeMap<String, models::Service>), (status = 400, body = ErrorBody),
              (status = 404, description = "A name in ?names= does not exist", body = ErrorBody)))]
async fn get_services(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<NamesQuery>,
) -> Result<Json<Value>, ApiError> {
    let (names, prefix) = q.checked()?;
    Ok(Json(
        read(&state, move |ds| {
            controller::get_named_tree(ds, "services", &names, prefix.as_deref())
        })
        .await?,
    ))
}

/// Configuration files with their path, template and mode.
#[utoipa::path(get, path = "/configuration-files", params(NamesQuery),
    responses((status = 200, body = BTreeMap<String, models::ConfigurationFile>), (status = 400, body = ErrorBody),
              (status = 404, description = "A name in ?names= does not exist", body = ErrorBody)))]
async fn get_configuration_files(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<NamesQuery>,
) -> Result<Json<Value>, ApiError> {
    let (names, prefix) = q.checked()?;
    Ok(Json(
        read(&state, move |ds| {
            controller::get_named_tree(ds, "configuration-files", &names, prefix.as_deref())
        })
        .await?,
    ))
}

/// The settings history, oldest first: every commit with its changed keys, old and new values.
#[utoipa::path(get, path = "/history", responses((status = 200, body = Vec<HistoryEntry>)))]
async fn get_history(State(state): State<AppState>) -> Result<Json<Vec<HistoryEntry>>, ApiError> {
    Ok(Json(history(&state).await?))
}

/// The settings history as `GET /history` answers it.
pub(crate) async fn history(state: &AppState) -> Result<Vec<HistoryEntry>, ApiError> {
    let records = read(state, |ds| Ok(ds.history()?)).await?;
    Ok(records.into_iter().map(history_entry).collect())
}

/// The live settings as `GET /settings` answers them (without the outer "settings").
pub(crate) async fn live_settings(state: &AppState) -> Result<Value, ApiError> {
    read(state, |ds| {
        controller::get_tree(ds, "settings", &Committed::Live)
    })
    .await
}

/// Reverts a commit as a new commit, then applies the keys it changed. Without `id` it reverts
/// the newest commit that is neither an undo nor already undone, so repeated undos walk back.
#[utoipa::path(post, path = "/history/undo", params(UndoQuery),
    responses((status = 200, body = HistoryEntry),
              (status = 404, description = "No such commit", body = ErrorBody),
              (status = 422, description = "Nothing left to undo", body = ErrorBody)))]
async fn undo_history(
    State(state): State<AppState>,
    peer: Option<Extension<crate::audit::Peer>>,
    ApiQuery(q): ApiQuery<UndoQuery>,
) -> Result<(Extension<Changes>, Json<HistoryEntry>), ApiError> {
    let caller = caller(peer);
    let record = write(&state, move |ds| {
        let id = match q.id {
            Some(id) => id,
            None => controller::newest_undoable(ds)?.ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "no commit in the settings history is left to undo",
                )
            })?,
        };
        Ok(ds.undo(Some(id), caller.as_ref())?)
    })
    .await?;
    let changes = Changes::with_values(
        record
            .changes
            .iter()
            .map(|c| (c.key.as_str(), c.new.as_deref())),
    );
    let changed: Vec<String> = record
        .changes
        .iter()
        .map(|c| c.key.clone())
        .filter(|k| !crate::provisional::is_internal(k))
        .collect();
    if changed.len() < record.changes.len() {
        // The undo touched a try-mode record: the timer looks again.
        state.try_mode.wake();
    }
    if !changed.is_empty() {
        state.applier.apply(Some(changed))?;
    }
    Ok((Extension(changes), Json(history_entry(record))))
}

// ---- updates ----

/// The update status: state (Idle, Available, Staged, Ready), what the last refresh found, the
/// partition sets, the most recent action and, while a prepare runs, its progress.
#[utoipa::path(get, path = "/updates/status",
    responses((status = 200, body = UpdateStatus),
              (status = 500, description = "The updater's status failed", body = ErrorBody),
              (status = 503, description = "The updater cannot be run (see --updater-command)", body = ErrorBody)))]
async fn get_update_status(State(state): State<AppState>) -> Result<Json<UpdateStatus>, ApiError> {
    Ok(Json(state.updates.status().await?))
}

/// The update daemon's report of its latest decision (Ballast only); shown as `daemon` in GET
/// /updates/status until the next report.
#[utoipa::path(put, path = "/updates/daemon", request_body = api_types::update::DaemonReport,
    responses((status = 204, description = "Recorded"),
              (status = 400, body = ErrorBody)))]
async fn put_daemon_report(
    State(state): State<AppState>,
    ApiJson(report): ApiJson<api_types::update::DaemonReport>,
) -> Result<StatusCode, ApiError> {
    state.updates.record_daemon(report).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn start_update_action(state: &AppState, cmd: CommandType) -> Result<StatusCode, ApiError> {
    // The updater reads its configuration from rendered files: a setting committed just before
    // this request (say, the repository URL) must have reached them before the updater runs.
    state.applier.settled(crate::apply::SETTLE_TIMEOUT).await?;
    state.updates.start(cmd).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Checks the update repository for updates (`updog check-update`). Allowed in every state;
/// moves Idle or Available to Available when an update is chosen, else to Idle. Runs in the
/// background: follow it in GET /updates/status.
#[utoipa::path(post, path = "/actions/refresh-updates",
    responses((status = 204, description = "Started"),
              (status = 423, description = "Another update action is running", body = ErrorBody),
              (status = 500, body = ErrorBody),
              (status = 503, description = "The updater cannot be run (see --updater-command)", body = ErrorBody)))]
async fn refresh_updates(State(state): State<AppState>) -> Result<StatusCode, ApiError> {
    start_update_action(&state, CommandType::Refresh).await
}

/// Downloads the chosen update and writes it to the inactive partition set (`updog
/// update-image`). From Available or Staged; Staged on success, Available on failure. Runs in
/// the background; GET /updates/status shows its progress.
#[utoipa::path(post, path = "/actions/prepare-update",
    responses((status = 204, description = "Started"),
              (status = 409, description = "The update state does not allow it", body = ErrorBody),
              (status = 423, description = "Another update action is running", body = ErrorBody),
              (status = 500, body = ErrorBody),
              (status = 503, description = "The updater cannot be run (see --updater-command)", body = ErrorBody)))]
async fn prepare_update(State(state): State<AppState>) -> Result<StatusCode, ApiError> {
    start_update_action(&state, CommandType::Prepare).await
}

/// Makes the staged update boot next, once (`updog update-apply`). From Staged to Ready.
#[utoipa::path(post, path = "/actions/activate-update",
    responses((status = 204, description = "Started"),
              (status = 409, description = "The update state does not allow it", body = ErrorBody),
              (status = 423, description = "Another update action is running", body = ErrorBody),
              (status = 500, body = ErrorBody),
              (status = 503, description = "The updater cannot be run (see --updater-command)", body = ErrorBody)))]
async fn activate_update(State(state): State<AppState>) -> Result<StatusCode, ApiError> {
    start_update_action(&state, CommandType::Activate).await
}

/// Undoes an activation: the running image boots next again (`updog update-revert`). From
/// Ready to Staged.
#[utoipa::path(post, path = "/actions/deactivate-update",
    responses((status = 204, description = "Started"),
              (status = 409, description = "The update state does not allow it", body = ErrorBody),
              (status = 423, description = "Another update action is running", body = ErrorBody),
              (status = 500, body = ErrorBody),
              (status = 503, description = "The updater cannot be run (see --updater-command)", body = ErrorBody)))]
async fn deactivate_update(State(state): State<AppState>) -> Result<StatusCode, ApiError> {
    start_update_action(&state, CommandType::Deactivate).await
}

/// Reboots the node (runs --reboot-command, `systemctl reboot` by default). Refused while an
/// update action runs.
#[utoipa::path(post, path = "/actions/reboot",
    responses((status = 204, description = "The reboot command ran"),
              (status = 423, description = "An update action is running", body = ErrorBody),
              (status = 500, description = "The reboot command failed", body = ErrorBody),
              (status = 503, description = "The reboot command cannot be run (see --reboot-command)", body = ErrorBody)))]
async fn reboot(State(state): State<AppState>) -> Result<StatusCode, ApiError> {
    state.updates.reboot().await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- the journal ----

/// The node's journal (Ballast only): the newest entries that match the filters, oldest first,
/// as a JSON array; with `follow=true`, a stream of entries (application/x-ndjson, one per
/// line) that goes on as new ones are written, until the client disconnects. Without follow the
/// answer is bounded: journalctl gets 10 s, and when the entries would take more than 16 MiB
/// the oldest are left out.
#[utoipa::path(get, path = "/logs", params(crate::logs::LogsQuery),
    responses((status = 200, description = "The entries, oldest first; with follow=true one per line, as they come",
                content((Vec<api_types::logs::LogEntry> = "application/json"),
                        (api_types::logs::LogEntry = "application/x-ndjson"))),
              (status = 400, description = "A parameter is malformed (the message names it), or journalctl cannot use the grep pattern", body = ErrorBody),
              (status = 404, description = "The journal has no such boot", body = ErrorBody),
              (status = 500, description = "journalctl failed (its stderr is in the message) or took longer than 10 s", body = ErrorBody),
              (status = 503, description = "journalctl cannot be run (see --journalctl)", body = ErrorBody)))]
async fn get_logs(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<crate::logs::LogsQuery>,
) -> Result<Response, ApiError> {
    let filter = q.filter(jiff::Timestamp::now())?;
    if !filter.follow {
        return Ok(Json(crate::logs::read(&state.journal, &filter).await?).into_response());
    }
    let stream = crate::logs::follow(&state.journal, &filter).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, api_types::logs::NDJSON)],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

// ---- the audit trail ----

/// The audit trail (Ballast only): the newest entries, oldest first, one for every request
/// that asked to change something (any method but GET, except POST /tx/dry-run), with the
/// caller's uid, gid, pid and program from the socket's peer credentials, the method, the path
/// and query, the keys concerned (values of secret settings never) and the answer's status.
#[utoipa::path(get, path = "/audit", params(crate::audit::AuditQuery),
    responses((status = 200, description = "The entries, oldest first", body = Vec<api_types::audit::AuditEntry>),
              (status = 400, description = "A parameter is malformed (the message names it)", body = ErrorBody),
              (status = 500, description = "The audit file cannot be read", body = ErrorBody)))]
async fn get_audit(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<crate::audit::AuditQuery>,
) -> Result<Json<Vec<api_types::audit::AuditEntry>>, ApiError> {
    let filter = q.filter(jiff::Timestamp::now())?;
    Ok(Json(crate::audit::read(state.audit.clone(), filter).await?))
}

// ---- the node's state ----

/// Every systemd unit with its load, active and sub state (Ballast only), in systemctl's
/// order; each failed unit with its newest journal entries (at most 10), or why they could not
/// be read.
#[utoipa::path(get, path = "/units",
    responses((status = 200, description = "Every unit systemd has loaded", body = Vec<api_types::status::Unit>),
              (status = 500, description = "systemctl failed (its stderr is in the message), took longer than 10 s or printed something else", body = ErrorBody),
              (status = 503, description = "systemctl cannot be run (see --systemctl)", body = ErrorBody)))]
async fn get_units(
    State(state): State<AppState>,
) -> Result<Json<Vec<api_types::status::Unit>>, ApiError> {
    Ok(Json(
        crate::units::list(&state.node.systemctl, &state.journal).await?,
    ))
}

/// The node's state in one answer (Ballast only): units (counts by state, the failed ones with
/// their last journal entries), the A/B boot state (signpost), the running version and the
/// update state. A part that cannot be read is {"error": sentence} in its place; the answer
/// is still a 200.
#[utoipa::path(get, path = "/status",
    responses((status = 200, description = "Each part, or {\"error\": ...} in its place", body = api_types::status::NodeStatus)))]
async fn get_status(State(state): State<AppState>) -> Json<api_types::status::NodeStatus> {
    Json(crate::node_status::read(&state).await)
}

/// Where the boot's time went (Ballast only), from systemd: how long the firmware, the loader,
/// the kernel, the initrd and the service manager took (null for a phase systemd does not
/// know; finished false while the boot is in progress), and for apiserver.service and
/// configured.target (or ?target=) the chain of units each waited for, as
/// `systemd-analyze critical-chain` finds it: when each became active and how long it took
/// to start, in microseconds.
#[utoipa::path(get, path = "/report/boot", params(crate::boot_report::BootReportQuery),
    responses((status = 200, description = "The phases and the chains", body = api_types::boot_report::BootReport),
              (status = 400, description = "?target= is not a unit name (the message says why)", body = ErrorBody),
              (status = 404, description = "systemd has no unit named by ?target=", body = ErrorBody),
              (status = 500, description = "systemctl failed (its stderr is in the message), took longer than 10 s or printed something else", body = ErrorBody),
              (status = 503, description = "systemctl cannot be run (see --systemctl)", body = ErrorBody)))]
async fn get_boot_report(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<crate::boot_report::BootReportQuery>,
) -> Result<Json<api_types::boot_report::BootReport>, ApiError> {
    Ok(Json(
        crate::boot_report::report(&state.node.systemctl, &q).await?,
    ))
}

// ---- the CIS report ----

/// The query of GET /report/cis; an unknown parameter is a 400.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CisReportQuery {
    /// 1, or 2 for both levels; 1 when absent.
    pub level: Option<String>,
    /// json (the default) or text.
    pub format: Option<String>,
}

query_params!(CisReportQuery {
    "level", false, ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["1", "2"])).build(),
        "The benchmark's profile level: 1, or 2 for levels 1 and 2 together (level 2 includes level 1). 1 when absent.";
    "format", false, ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["json", "text"])).build(),
        "json (the default): the report as a document; text: the report for a person, one line per item with its evidence below it.";
});

/// The node against the CIS Bottlerocket Benchmark (Bottlerocket's route, checked by Ballast's
/// own code): each item up to the level with PASS, FAIL or MANUAL and the facts it was decided
/// on (sysctl values, the verity root, lockdown, SELinux, the time service, journald, the
/// firewall's loaded ruleset). Reads the node; changes nothing.
#[utoipa::path(get, path = "/report/cis", params(CisReportQuery),
    responses((status = 200, description = "The report: a document, or text/plain with format=text",
                content((api_types::cis::CisReport = "application/json"), (String = "text/plain"))),
              (status = 400, description = "level is not 1 or 2, or format is not json or text", body = ErrorBody),
              (status = 500, description = "The checks could not be run", body = ErrorBody)))]
async fn get_cis_report(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<CisReportQuery>,
) -> Result<Response, ApiError> {
    let level = match q.level.as_deref() {
        None | Some("1") => cis::Level::One,
        Some("2") => cis::Level::Two,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "level must be 1 or 2, not '{}'",
                other.escape_debug()
            )))
        }
    };
    let text = match q.format.as_deref() {
        None | Some("json") => false,
        Some("text") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "format must be json or text, not '{}'",
                other.escape_debug()
            )))
        }
    };
    let root = state.bundle.root.clone();
    let systemctl = cis::Systemctl::new(state.node.systemctl.argv().to_vec());
    let report = tokio::task::spawn_blocking(move || {
        let node = cis::Node::new(root, &systemctl);
        cis::report(&node, level)
    })
    .await
    .map_err(|e| ApiError::internal(format!("the CIS checks did not finish: {e}")))?;
    Ok(if text {
        (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8",
            )],
            report.to_text(),
        )
            .into_response()
    } else {
        Json(report).into_response()
    })
}

// ---- the support bundle ----

/// The query of GET /support-bundle; an unknown parameter is a 400.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportBundleQuery {
    /// The age recipient to encrypt the archive to.
    pub recipient: Option<String>,
}

query_params!(SupportBundleQuery {
    "recipient", false, string_schema(crate::support_bundle::recipient_pattern(), crate::support_bundle::RECIPIENT_LEN.0, crate::support_bundle::RECIPIENT_LEN.1),
        "An age recipient, X25519 (age1...) or post-quantum hybrid (age1pq1...), as `age-keygen -y` prints it: the archive is encrypted to it on the node and the answer is an age file (application/octet-stream) that only the matching identity opens. A recipient that does not parse (its checksum is checked too) is a 400 that says why.";
});

/// The answer of GET /support-bundle in the document: bytes (a gzip-compressed tar archive).
pub struct SupportBundleArchive;

impl utoipa::PartialSchema for SupportBundleArchive {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(utoipa::openapi::schema::SchemaFormat::KnownFormat(
                utoipa::openapi::schema::KnownFormat::Binary,
            )))
            .description(Some("A gzip-compressed tar archive"))
            .into()
    }
}

impl ToSchema for SupportBundleArchive {}

/// A support bundle (Ballast only): a gzip-compressed tar archive whose one directory,
/// ballast-support-HOSTNAME-UTCTIME/, holds the journal of the current boot (newest 20000
/// entries), the node's status, the units, the settings and the settings history with every
/// secret value replaced by "REDACTED", the audit trail, the mounts and their disk usage, the
/// network state, the kernel's command line, version and log, and MANIFEST.json listing each
/// part with its size or the error that kept it out. A part that cannot be read leaves the
/// answer a 200. Recorded in the audit trail, although it changes nothing.
#[utoipa::path(get, path = "/support-bundle", params(SupportBundleQuery),
    responses((status = 200, description = "The archive (Content-Disposition names its file); with recipient, the archive encrypted to it as an age file",
                content((SupportBundleArchive = "application/gzip"), (SupportBundleArchive = "application/octet-stream"))),
              (status = 400, description = "The recipient is not an age X25519 recipient (the message says why)", body = ErrorBody),
              (status = 500, description = "The archive could not be written", body = ErrorBody)))]
async fn get_support_bundle(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<SupportBundleQuery>,
) -> Result<Response, ApiError> {
    let recipient = q
        .recipient
        .as_deref()
        .map(crate::support_bundle::parse_recipient)
        .transpose()?;
    let bundle = crate::support_bundle::collect(&state).await;
    let mut file = format!("{}.tar.gz", bundle.top);
    let mut content_type = api_types::support_bundle::CONTENT_TYPE;
    if recipient.is_some() {
        file.push_str(api_types::support_bundle::ENCRYPTED_SUFFIX);
        content_type = api_types::support_bundle::ENCRYPTED_CONTENT_TYPE;
    }
    let archive = tokio::task::spawn_blocking(move || {
        let archive = bundle.archive()?;
        match &recipient {
            Some(recipient) => crate::support_bundle::encrypt(&archive, recipient),
            None => Ok(archive),
        }
    })
    .await
    .map_err(|e| ApiError::internal(format!("request task failed: {e}")))?
    .map_err(|e| ApiError::internal(format!("cannot write the support bundle: {e}")))?;
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, content_type.to_string()),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        archive,
    )
        .into_response())
}

/// The OpenAPI document, serialized once when the router is built.
#[derive(Clone)]
struct OpenApiBytes(axum::body::Bytes);

/// This document.
#[utoipa::path(get, path = "/openapi.json",
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
async fn get_openapi(axum::Extension(spec): axum::Extension<OpenApiBytes>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        spec.0,
    )
        .into_response()
}

/// A command in a running host container (Ballast's `apiclient exec`, as Bottlerocket's): the
/// request upgrades to a WebSocket. Binary frames carry stdin (client to server) and the
/// output (server to client); text frames carry JSON control messages (client: Initialize
/// {target, command, tty?}, ContentComplete, Winch {rows, cols}; server: Capacity
/// {max_messages_outstanding, messages_written}). The Close frame's reason is "exit N" or
/// "error: SENTENCE" (an unknown or stopped target, a containerd that does not answer).
/// Recorded in the audit trail.
#[utoipa::path(get, path = "/exec",
    responses((status = 101, description = "Switching to the WebSocket protocol"),
              (status = 400, description = "Not a WebSocket upgrade request", body = ErrorBody)))]
async fn exec(
    State(state): State<AppState>,
    upgrade: Result<
        axum::extract::ws::WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|e| {
        ApiError::bad_request(format!(
            "GET /exec must be a WebSocket upgrade ({e}); use `apiclient exec TARGET -- COMMAND`"
        ))
    })?;
    let config = state.exec.clone();
    Ok(upgrade.on_upgrade(move |socket| crate::exec::session(socket, config)))
}
