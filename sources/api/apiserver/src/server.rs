//! HTTP routes: request parsing, the call into [`crate::controller`], and the answer. Every route
//! is declared once with `#[utoipa::path]`, so the router and the OpenAPI document come from the
//! same declarations and cannot drift apart.

use crate::apply::Applier;
use crate::controller::{self, DEFAULT_TX};
use crate::error::{ApiError, ErrorBody};
use crate::updates::status::{CommandType, UpdateStatus};
use crate::updates::Updates;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use datastore::{Committed, DataStore};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use utoipa::openapi::OpenApi as OpenApiDoc;
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

/// Builds the router and the OpenAPI document from the same route declarations.
pub fn router(state: AppState) -> (Router, OpenApiDoc) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(get_model))
        .routes(routes!(get_settings, patch_settings))
        .routes(routes!(patch_settings_keypair))
        .routes(routes!(get_tx, delete_tx))
        .routes(routes!(list_tx))
        .routes(routes!(commit_tx))
        .routes(routes!(apply_tx))
        .routes(routes!(commit_and_apply_tx))
        .routes(routes!(dry_run_tx))
        .routes(routes!(get_os))
        .routes(routes!(get_affected_services))
        .routes(routes!(get_templates))
        .routes(routes!(get_setting_generators))
        .routes(routes!(get_services))
        .routes(routes!(get_configuration_files))
        .routes(routes!(get_history))
        .routes(routes!(undo_history))
        .routes(routes!(get_update_status))
        .routes(routes!(refresh_updates))
        .routes(routes!(prepare_update))
        .routes(routes!(activate_update))
        .routes(routes!(deactivate_update))
        .routes(routes!(reboot))
        .routes(routes!(get_openapi))
        .with_state(state)
        .split_for_parts();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    let spec = Arc::new(doc.clone());
    let router = router
        .layer(axum::Extension(spec))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method);
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

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
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

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SettingsQuery {
    /// Comma-separated dotted keys, e.g. settings.motd,settings.ntp.
    pub keys: Option<String>,
    /// A key prefix; "settings." is added when missing.
    pub prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PrefixQuery {
    /// Only what lies under this dotted prefix, e.g. settings.motd or os.
    pub prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct KeysQuery {
    /// Comma-separated dotted keys.
    pub keys: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NamesQuery {
    /// Comma-separated names.
    pub names: Option<String>,
    /// A name prefix.
    pub prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UndoQuery {
    /// The commit to revert; the newest when absent.
    pub id: Option<u64>,
}

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

/// One key changed by a commit: old and new values as stored JSON text (null when absent).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryChange {
    pub key: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// A commit in the settings history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryEntry {
    /// Sequence number, increasing with every commit.
    pub id: u64,
    /// RFC 3339 time of the commit, UTC.
    pub time: String,
    /// The transaction committed ("undo-N" for an undo).
    pub transaction: String,
    pub changes: Vec<HistoryChange>,
}

impl From<datastore::CommitRecord> for HistoryEntry {
    fn from(r: datastore::CommitRecord) -> Self {
        HistoryEntry {
            id: r.id,
            time: r.time,
            transaction: r.transaction,
            changes: r
                .changes
                .into_iter()
                .map(|c| HistoryChange {
                    key: c.key,
                    old: c.old,
                    new: c.new,
                })
                .collect(),
        }
    }
}

// ---- running datastore work off the async threads ----

async fn read<T, F>(state: &AppState, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&(dyn DataStore + Send + Sync)) -> Result<T, ApiError> + Send + 'static,
{
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
    let prefix = q.prefix.unwrap_or_default();
    let roots = ["settings", "services", "configuration-files", "os"];
    // A prefix that names no root ("motd") is taken as a settings prefix.
    let prefix = if prefix.is_empty()
        || roots
            .iter()
            .any(|r| prefix.starts_with(r) || r.starts_with(prefix.as_str()))
    {
        prefix
    } else {
        controller::settings_prefix(&prefix)
    };
    let os = if "os".starts_with(prefix.as_str()) || prefix.starts_with("os") {
        Some(os_info(&state)?)
    } else {
        None
    };
    let mut out = read(&state, move |ds| {
        let mut out = Map::new();
        for root in ["settings", "services", "configuration-files"] {
            let tree = if prefix.is_empty() || root.starts_with(prefix.as_str()) {
                controller::get_tree(ds, root, &Committed::Live)?
            } else if prefix.starts_with(&format!("{root}.")) {
                let pairs = ds.get_prefix(&prefix, &Committed::Live)?;
                if pairs.is_empty() {
                    continue;
                }
                datastore::serialization::from_pairs(&pairs, Some(root))?
            } else {
                continue;
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

/// Live settings: all, some keys, or those under a prefix.
#[utoipa::path(get, path = "/settings", params(SettingsQuery),
    responses((status = 200, description = "Settings (without the outer \"settings\")", body = models::Settings),
              (status = 400, body = ErrorBody)))]
async fn get_settings(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<SettingsQuery>,
) -> Result<Json<Value>, ApiError> {
    let value = match (q.keys.is_some(), q.prefix) {
        (true, Some(_)) => {
            return Err(ApiError::bad_request(
                "give either ?keys= or ?prefix=, not both",
            ))
        }
        (true, None) => {
            let keys = split_list(&q.keys);
            read(&state, move |ds| {
                controller::get_settings_keys(ds, &keys, &Committed::Live)
            })
            .await?
        }
        (false, Some(prefix)) => {
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
) -> Result<StatusCode, ApiError> {
    let tx = q.name()?;
    write(&state, move |ds| controller::set_settings(ds, &body, &tx)).await?;
    Ok(StatusCode::NO_CONTENT)
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
) -> Result<StatusCode, ApiError> {
    let tx = q.name()?;
    let settings = controller::keypairs_to_settings(&body.request_payload)?;
    write(&state, move |ds| {
        controller::set_settings(ds, &settings, &tx)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
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
) -> Result<Json<Vec<String>>, ApiError> {
    let tx = q.name()?;
    let keys = write(&state, move |ds| Ok(ds.delete_transaction(&tx)?)).await?;
    Ok(Json(
        keys.into_iter().map(|k| k.name().to_string()).collect(),
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
    ApiQuery(q): ApiQuery<TxQuery>,
) -> Result<Json<Vec<String>>, ApiError> {
    let tx = q.name()?;
    let tx2 = tx.clone();
    let changed = write(&state, move |ds| controller::commit(ds, &tx2)).await?;
    changed.map(Json).ok_or_else(|| nothing_pending(&tx))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ApplyQuery {
    /// Comma-separated keys whose configuration to re-render; everything when absent.
    pub keys: Option<String>,
}

/// Renders configuration and restarts services for the given keys (all when none are given).
#[utoipa::path(post, path = "/tx/apply", params(ApplyQuery),
    responses((status = 204, description = "Handed to the renderer"), (status = 400, body = ErrorBody),
              (status = 500, body = ErrorBody)))]
async fn apply_tx(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ApplyQuery>,
) -> Result<StatusCode, ApiError> {
    let keys = split_list(&q.keys);
    for key in &keys {
        controller::data_key(key)?;
    }
    state
        .applier
        .apply(if keys.is_empty() { None } else { Some(keys) })?;
    Ok(StatusCode::NO_CONTENT)
}

/// Commits a transaction and applies the keys that changed.
#[utoipa::path(post, path = "/tx/commit_and_apply", params(TxQuery),
    responses((status = 200, description = "Keys whose value changed", body = Vec<String>),
              (status = 422, description = "Nothing pending", body = ErrorBody),
              (status = 500, body = ErrorBody)))]
async fn commit_and_apply_tx(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<TxQuery>,
) -> Result<Json<Vec<String>>, ApiError> {
    let tx = q.name()?;
    let tx2 = tx.clone();
    let changed = write(&state, move |ds| controller::commit(ds, &tx2))
        .await?
        .ok_or_else(|| nothing_pending(&tx))?;
    if !changed.is_empty() {
        state.applier.apply(Some(changed.clone()))?;
    }
    Ok(Json(changed))
}

/// Previews a transaction without changing anything: the settings that would change, the
/// services that would restart and a unified diff of every configuration file that would change.
/// Ballast's own route; Bottlerocket has no equivalent.
#[utoipa::path(post, path = "/tx/dry-run", params(TxQuery),
    responses((status = 200, description = "What committing the transaction would do", body = Object),
              (status = 422, description = "Nothing pending, or the preview failed", body = ErrorBody),
              (status = 503, description = "No renderer configured", body = ErrorBody)))]
async fn dry_run_tx(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<TxQuery>,
) -> Result<Json<Value>, ApiError> {
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

fn os_info(state: &AppState) -> Result<Value, ApiError> {
    let text = std::fs::read_to_string(&state.os_release).map_err(|e| {
        ApiError::internal(format!("cannot read {}: {e}", state.os_release.display()))
    })?;
    let info = models::OsInfo::from_os_release(&text).map_err(|e| {
        ApiError::internal(format!("{} is malformed: {e}", state.os_release.display()))
    })?;
    serde_json::to_value(info).map_err(|e| ApiError::internal(e.to_string()))
}

/// Name, variant, version, build and architecture of the running OS.
#[utoipa::path(get, path = "/os",
    responses((status = 200, body = models::OsInfo), (status = 500, body = ErrorBody)))]
async fn get_os(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(os_info(&state)?))
}

/// Services affected by each key (its own metadata and its parents').
#[utoipa::path(get, path = "/metadata/affected-services", params(KeysQuery),
    responses((status = 200, body = BTreeMap<String, Vec<String>>), (status = 400, body = ErrorBody)))]
async fn get_affected_services(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<KeysQuery>,
) -> Result<Json<BTreeMap<String, BTreeSet<String>>>, ApiError> {
    let keys = split_list(&q.keys);
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
    responses((status = 200, body = BTreeMap<String, models::Service>), (status = 400, body = ErrorBody)))]
async fn get_services(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<NamesQuery>,
) -> Result<Json<Value>, ApiError> {
    let names = split_list(&q.names);
    Ok(Json(
        read(&state, move |ds| {
            controller::get_named_tree(ds, "services", &names, q.prefix.as_deref())
        })
        .await?,
    ))
}

/// Configuration files with their path, template and mode.
#[utoipa::path(get, path = "/configuration-files", params(NamesQuery),
    responses((status = 200, body = BTreeMap<String, models::ConfigurationFile>), (status = 400, body = ErrorBody)))]
async fn get_configuration_files(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<NamesQuery>,
) -> Result<Json<Value>, ApiError> {
    let names = split_list(&q.names);
    Ok(Json(
        read(&state, move |ds| {
            controller::get_named_tree(ds, "configuration-files", &names, q.prefix.as_deref())
        })
        .await?,
    ))
}

/// The settings history, oldest first: every commit with its changed keys, old and new values.
#[utoipa::path(get, path = "/history", responses((status = 200, body = Vec<HistoryEntry>)))]
async fn get_history(State(state): State<AppState>) -> Result<Json<Vec<HistoryEntry>>, ApiError> {
    let records = read(&state, |ds| Ok(ds.history()?)).await?;
    Ok(Json(records.into_iter().map(HistoryEntry::from).collect()))
}

/// Reverts a commit as a new commit, then applies the keys it changed. Without `id` it reverts
/// the newest commit that is neither an undo nor already undone, so repeated undos walk back.
#[utoipa::path(post, path = "/history/undo", params(UndoQuery),
    responses((status = 200, body = HistoryEntry),
              (status = 404, description = "No such commit", body = ErrorBody),
              (status = 422, description = "Nothing left to undo", body = ErrorBody)))]
async fn undo_history(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<UndoQuery>,
) -> Result<Json<HistoryEntry>, ApiError> {
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
        Ok(ds.undo(Some(id))?)
    })
    .await?;
    let changed: Vec<String> = record.changes.iter().map(|c| c.key.clone()).collect();
    if !changed.is_empty() {
        state.applier.apply(Some(changed))?;
    }
    Ok(Json(record.into()))
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

async fn start_update_action(state: &AppState, cmd: CommandType) -> Result<StatusCode, ApiError> {
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

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "OpenAPI 3.1 document")))]
async fn get_openapi(axum::Extension(spec): axum::Extension<Arc<OpenApiDoc>>) -> Response {
    Json(spec.as_ref().clone()).into_response()
}
