//! Reading what the renderer needs from the API server.

use crate::error::{self, Result};
use models::{ConfigurationFile, Service};
use serde::de::DeserializeOwned;
use serde_json::Value;
use snafu::{ensure, ResultExt};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// How many keys go into one `/metadata/affected-services` request, to keep URIs short.
const KEYS_PER_REQUEST: usize = 64;

/// A client of the API server's Unix socket.
#[derive(Debug, Clone)]
pub struct Api {
    socket: PathBuf,
}

impl Api {
    pub fn new(socket: impl AsRef<Path>) -> Api {
        Api {
            socket: socket.as_ref().to_path_buf(),
        }
    }

    /// GETs `uri` and parses the 2xx answer as `T`.
    pub async fn get<T: DeserializeOwned>(&self, uri: &str) -> Result<T> {
        let (status, body) = apiclient::raw_request(&self.socket, uri, "GET", None)
            .await
            .context(error::RequestSnafu {
                uri,
                socket: &self.socket,
            })?;
        ensure!(
            (200..300).contains(&status),
            error::StatusSnafu {
                uri,
                status,
                message: apiclient::server_message(&body),
            }
        );
        serde_json::from_str(&body).context(error::ResponseSnafu { uri })
    }

    /// Live settings, without the outer `settings`.
    pub async fn settings(&self) -> Result<Value> {
        self.get("/settings").await
    }

    /// The pending settings of transaction `tx`, without the outer `settings`.
    pub async fn pending(&self, tx: &str) -> Result<Value> {
        self.get(&format!("/tx?tx={}", apiclient::encode_query_value(tx)))
            .await
    }

    /// The running OS, as `GET /os` reports it.
    pub async fn os(&self) -> Result<Value> {
        self.get("/os").await
    }

    pub async fn services(&self) -> Result<BTreeMap<String, Service>> {
        self.get("/services").await
    }

    pub async fn configuration_files(&self) -> Result<BTreeMap<String, ConfigurationFile>> {
        self.get("/configuration-files").await
    }

    /// The union of the services affected by `keys`.
    pub async fn affected_services(&self, keys: &[String]) -> Result<BTreeSet<String>> {
        let mut services = BTreeSet::new();
        for chunk in keys.chunks(KEYS_PER_REQUEST) {
            let list: Vec<String> = chunk
                .iter()
                .map(|k| apiclient::encode_query_value(k))
                .collect();
            let uri = format!("/metadata/affected-services?keys={}", list.join(","));
            let answer: BTreeMap<String, BTreeSet<String>> = self.get(&uri).await?;
            services.extend(answer.into_values().flatten());
        }
        Ok(services)
    }
}
