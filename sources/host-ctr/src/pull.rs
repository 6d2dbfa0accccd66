//! Client-side pull into the host containerd (containerd 1.6 has no Transfer service): the
//! manifest and blobs come from the registry through an OCI distribution client, trying the
//! mirrors of `settings.container-registry` first, and go into containerd's content store; the
//! image record points at the manifest; each layer is unpacked into an overlayfs snapshot named
//! by its chain ID, so a second pull of the same image unpacks nothing.

use crate::config::{Credential, HostCtrConfig};
use crate::error::{self, Result};
use crate::store::ImageStore;
use base64::Engine as _;
use containerd_client::types::Descriptor;
use ctr_client::{Containerd, SNAPSHOTTER};
use futures::StreamExt;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::manifest::{
    OciDescriptor, IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

/// The CA bundle rendered from `settings.pki`; added to the registry client's trusted roots.
pub use constants::CA_BUNDLE;

const ACCEPTED: &[&str] = &[
    OCI_IMAGE_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

/// A pulled and unpacked image.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The reference the image record is named by (the setting's source).
    pub name: String,
    /// The image configuration document.
    pub config: Value,
    /// The chain ID of the top layer: the parent of a container's snapshot.
    pub top_chain: String,
}

/// One place to pull from: a mirror or the registry itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]`.
    pub host: String,
    /// Plain HTTP (a mirror given as `http://...`).
    pub insecure: bool,
}

/// The registry host of a reference as settings name it (`docker.io` for Docker Hub).
fn registry_of(reference: &Reference) -> &str {
    reference.registry()
}

/// Where to pull `reference` from, in order: its registry's mirrors, the `*` mirrors, then
/// the registry itself over HTTPS.
pub fn endpoints(reference: &Reference, config: &HostCtrConfig) -> Result<Vec<Endpoint>> {
    let registry = registry_of(reference);
    let mut out = Vec::new();
    for key in [registry, "*"] {
        let Some(mirror) = config.mirrors.get(key) else {
            continue;
        };
        for endpoint in &mirror.endpoints {
            let (insecure, rest) = if let Some(rest) = endpoint.strip_prefix("http://") {
                (true, rest)
            } else if let Some(rest) = endpoint.strip_prefix("https://") {
                (false, rest)
            } else {
                (false, endpoint.as_str())
            };
            let host = rest.split('/').next().unwrap_or_default();
            if host.is_empty() {
                return Err(error::Error::BadMirror {
                    registry: key.to_string(),
                    endpoint: endpoint.clone(),
                });
            }
            out.push(Endpoint {
                host: host.to_string(),
                insecure,
            });
        }
    }
    out.push(Endpoint {
        host: reference.resolve_registry().to_string(),
        insecure: false,
    });
    Ok(out)
}

/// The credentials for `host`, as the rendered file names Docker Hub.
pub fn auth_for(host: &str, config: &HostCtrConfig) -> Result<RegistryAuth> {
    let names: &[&str] = match host {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
            &["registry-1.docker.io", "docker.io"]
        }
        _ => &[host],
    };
    let Some(cred) = names.iter().find_map(|n| config.creds.get(*n)) else {
        return Ok(RegistryAuth::Anonymous);
    };
    credential_auth(host, cred)
}

fn credential_auth(host: &str, cred: &Credential) -> Result<RegistryAuth> {
    if let (Some(user), Some(password)) = (&cred.username, &cred.password) {
        return Ok(RegistryAuth::Basic(user.clone(), password.clone()));
    }
    if let Some(auth) = &cred.auth {
        let bad = || error::Error::BadAuth {
            registry: host.to_string(),
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth)
            .map_err(|_| bad())?;
        let text = String::from_utf8(decoded).map_err(|_| bad())?;
        let (user, password) = text.split_once(':').ok_or_else(bad)?;
        return Ok(RegistryAuth::Basic(user.to_string(), password.to_string()));
    }
    if let Some(token) = &cred.identitytoken {
        return Ok(RegistryAuth::Bearer(token.clone()));
    }
    Ok(RegistryAuth::Anonymous)
}

/// An error's message followed by those of its causes, each once.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The chain IDs of layers with the given diff IDs (OCI image spec): the first is its diff
/// ID, each next one `sha256(previous + " " + diff ID)`.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match out.last() {
            None => diff_id.clone(),
            Some(previous) => sha256_digest(format!("{previous} {diff_id}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// The certificates of a PEM bundle, one PEM document each (a client certificate is read
/// from one document, not from a whole bundle).
pub fn split_pem(bundle: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = bundle;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let Some(end) = rest[start..].find(END) else {
            break;
        };
        let stop = start + end + END.len();
        out.push(format!("{}\n", &rest[start..stop]));
        rest = &rest[stop..];
    }
    out
}

/// The roots a registry's certificate is checked against: Mozilla's (the `webpki-root-certs`
/// crate, as Bottlerocket ships Mozilla's bundle by default) and the node's own from
/// `settings.pki`. Given explicitly, because the node has no system store for rustls's
/// platform verifier to find.
fn trusted_roots() -> Vec<Certificate> {
    let mut roots: Vec<Certificate> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|der| Certificate {
            encoding: CertificateEncoding::Der,
            data: der.to_vec(),
        })
        .collect();
    if let Ok(bundle) = std::fs::read_to_string(CA_BUNDLE) {
        roots.extend(split_pem(&bundle).into_iter().map(|pem| Certificate {
            encoding: CertificateEncoding::Pem,
            data: pem.into_bytes(),
        }));
    }
    roots
}

/// Writes [`trusted_roots`] as one PEM bundle to `path` and points `SSL_CERT_FILE` at it.
///
/// The registry client builds a default HTTP client inside (whatever the configuration), and
/// that one asks rustls's platform verifier for the system's roots; a node has none (its
/// `/etc/pki/tls/certs/ca-bundle.crt` holds only `settings.pki`, often nothing), and the
/// client then panics. Call this once at start, before any other thread runs.
pub fn install_trust_store(path: &Path) -> Result<()> {
    let mut bundle = String::new();
    for root in trusted_roots() {
        match root.encoding {
            CertificateEncoding::Pem => bundle.push_str(&String::from_utf8_lossy(&root.data)),
            CertificateEncoding::Der => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(&root.data);
                bundle.push_str("-----BEGIN CERTIFICATE-----\n");
                for line in encoded.as_bytes().chunks(64) {
                    bundle.push_str(&String::from_utf8_lossy(line));
                    bundle.push('\n');
                }
                bundle.push_str("-----END CERTIFICATE-----\n");
            }
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| error::Error::Io {
            action: "create".into(),
            path: dir.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(path, bundle).map_err(|source| error::Error::Io {
        action: "write".into(),
        path: path.to_path_buf(),
        source,
    })?;
    std::env::set_var("SSL_CERT_FILE", path);
    Ok(())
}

fn client_for(endpoint: &Endpoint, source: &str) -> Result<Client> {
    Client::try_from(ClientConfig {
        protocol: if endpoint.insecure {
            ClientProtocol::HttpsExcept(vec![endpoint.host.clone()])
        } else {
            ClientProtocol::Https
        },
        platform_resolver: Some(Box::new(oci_client::client::linux_amd64_resolver)),
        tls_certs_only: trusted_roots(),
        ..Default::default()
    })
    .map_err(|e| error::Error::Fetch {
        what: "a registry client".into(),
        reference: source.to_string(),
        endpoint: endpoint.host.clone(),
        message: with_causes(&e),
    })
}

fn to_containerd(d: &OciDescriptor) -> Descriptor {
    Descriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size,
        ..Default::default()
    }
}

fn descriptor(value: &Value) -> Option<OciDescriptor> {
    Some(OciDescriptor {
        media_type: value["mediaType"].as_str()?.to_string(),
        digest: value["digest"].as_str()?.to_string(),
        size: value["size"].as_i64()?,
        ..Default::default()
    })
}

/// Pulls `source` into containerd under a lease named after `name`, unpacks it and records
/// the image. Tries each endpoint in turn; the error lists why each failed.
pub async fn pull(
    containerd: &Containerd,
    name: &str,
    source: &str,
    config: &HostCtrConfig,
) -> Result<Pulled> {
    let reference = Reference::from_str(source).map_err(|e| error::Error::BadReference {
        reference: source.to_string(),
        message: e.to_string(),
    })?;
    let leased = containerd.with_lease(&format!("host-ctr-{name}")).await?;
    let mut failures = Vec::new();
    let mut result = None;
    for endpoint in endpoints(&reference, config)? {
        match pull_from(&leased, &reference, source, &endpoint, config).await {
            Ok(pulled) => {
                result = Some(pulled);
                break;
            }
            Err(e @ error::Error::Ctr { .. }) => {
                let _ = leased.release().await;
                return Err(e);
            }
            Err(e) => {
                tracing::warn!("{e}");
                failures.push(e.to_string());
            }
        }
    }
    leased.release().await?;
    result.ok_or_else(|| error::Error::AllEndpointsFailed {
        reference: source.to_string(),
        failures,
    })
}

async fn pull_from(
    containerd: &Containerd,
    reference: &Reference,
    source: &str,
    endpoint: &Endpoint,
    config: &HostCtrConfig,
) -> Result<Pulled> {
    let there = match reference.digest() {
        Some(digest) => Reference::with_digest(
            endpoint.host.clone(),
            reference.repository().to_string(),
            digest.to_string(),
        ),
        None => Reference::with_tag(
            endpoint.host.clone(),
            reference.repository().to_string(),
            reference.tag().unwrap_or("latest").to_string(),
        ),
    };
    let fetch_error = |what: &str, e: &dyn std::fmt::Display| error::Error::Fetch {
        what: what.to_string(),
        reference: source.to_string(),
        endpoint: endpoint.host.clone(),
        message: e.to_string(),
    };
    // The HTTP client's own message hides the cause ("error sending request"): add it.
    let fetch_failed = |what: &str, e: &oci_client::errors::OciDistributionError| {
        fetch_error(what, &with_causes(e))
    };
    let client = client_for(endpoint, source)?;
    let auth = auth_for(&endpoint.host, config)?;
    let (mut body, mut digest) = client
        .pull_manifest_raw(&there, &auth, ACCEPTED)
        .await
        .map_err(|e| fetch_failed("the manifest", &e))?;
    let mut manifest: Value =
        serde_json::from_slice(&body).map_err(|e| fetch_error("the manifest", &e))?;
    if manifest.get("manifests").is_some() {
        let chosen = manifest["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["platform"]["os"] == "linux" && m["platform"]["architecture"] == "amd64")
            .and_then(|m| m["digest"].as_str())
            .ok_or_else(|| error::Error::BadImage {
                reference: source.to_string(),
                message: "its index has no linux/amd64 manifest".into(),
            })?
            .to_string();
        (body, digest) = client
            .pull_manifest_raw(&there.clone_with_digest(chosen), &auth, ACCEPTED)
            .await
            .map_err(|e| fetch_failed("the platform manifest", &e))?;
        manifest = serde_json::from_slice(&body).map_err(|e| fetch_error("the manifest", &e))?;
    }
    if sha256_digest(&body) != digest {
        return Err(fetch_error(
            "the manifest",
            &format!("its content does not match its digest {digest}"),
        ));
    }
    let bad_image = |message: &str| error::Error::BadImage {
        reference: source.to_string(),
        message: message.to_string(),
    };
    let config_desc =
        descriptor(&manifest["config"]).ok_or_else(|| bad_image("its manifest has no config"))?;
    let layers: Vec<OciDescriptor> = manifest["layers"]
        .as_array()
        .ok_or_else(|| bad_image("its manifest has no layers"))?
        .iter()
        .map(|l| descriptor(l).ok_or_else(|| bad_image("a layer descriptor is incomplete")))
        .collect::<Result<_>>()?;

    // The configuration: small, read whole, checked, stored.
    let mut config_bytes = Vec::new();
    client
        .pull_blob(&there, &config_desc, &mut config_bytes)
        .await
        .map_err(|e| fetch_failed("the image configuration", &e))?;
    if sha256_digest(&config_bytes) != config_desc.digest {
        return Err(fetch_error(
            "the image configuration",
            &"its content does not match its digest",
        ));
    }
    let image_config: Value = serde_json::from_slice(&config_bytes)
        .map_err(|e| bad_image(&format!("its configuration is not JSON: {e}")))?;
    let diff_ids: Vec<String> = image_config["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if diff_ids.len() != layers.len() {
        return Err(bad_image(&format!(
            "{} layers but {} diff IDs",
            layers.len(),
            diff_ids.len()
        )));
    }
    let chains = chain_ids(&diff_ids);
    let top_chain = chains.last().cloned().unwrap_or_default();

    // Layers, streamed from the registry into the content store.
    for layer in &layers {
        if containerd.has_content(&layer.digest).await? {
            continue;
        }
        let stream = client
            .pull_blob_stream(&there, layer)
            .await
            .map_err(|e| fetch_failed(&format!("layer {}", layer.digest), &e))?;
        let failed: Arc<Mutex<Option<String>>> = Arc::default();
        let failed_in = failed.clone();
        let chunks = stream
            .stream
            .take_while(move |chunk| {
                let ok = match chunk {
                    Ok(_) => true,
                    Err(e) => {
                        if let Ok(mut slot) = failed_in.lock() {
                            *slot = Some(e.to_string());
                        }
                        false
                    }
                };
                futures::future::ready(ok)
            })
            .filter_map(|chunk| futures::future::ready(chunk.ok()));
        let written = containerd
            .write_content(&to_containerd(layer), chunks, HashMap::new())
            .await;
        if let Some(message) = failed.lock().ok().and_then(|mut s| s.take()) {
            return Err(fetch_error(&format!("layer {}", layer.digest), &message));
        }
        written?;
    }
    let mut config_labels = HashMap::new();
    if !top_chain.is_empty() {
        config_labels.insert(
            format!("containerd.io/gc.ref.snapshot.{SNAPSHOTTER}"),
            top_chain.clone(),
        );
    }
    if !containerd.has_content(&config_desc.digest).await? {
        let data = bytes::Bytes::from(config_bytes);
        containerd
            .write_content(
                &to_containerd(&config_desc),
                futures::stream::iter([data]),
                config_labels,
            )
            .await?;
    }
    let manifest_desc = Descriptor {
        media_type: manifest["mediaType"]
            .as_str()
            .unwrap_or(OCI_IMAGE_MEDIA_TYPE)
            .to_string(),
        digest: digest.clone(),
        size: i64::try_from(body.len()).unwrap_or(i64::MAX),
        ..Default::default()
    };
    if !containerd.has_content(&digest).await? {
        let mut labels = HashMap::new();
        labels.insert(
            "containerd.io/gc.ref.content.config".to_string(),
            config_desc.digest.clone(),
        );
        for (i, layer) in layers.iter().enumerate() {
            labels.insert(
                format!("containerd.io/gc.ref.content.l.{i}"),
                layer.digest.clone(),
            );
        }
        containerd
            .write_content(&manifest_desc, futures::stream::iter([body]), labels)
            .await?;
    }

    unpack(containerd, &layers, &diff_ids, &chains).await?;
    containerd.put_image(source, manifest_desc).await?;
    tracing::info!(
        "pulled {source} ({digest}, {} layers) from {}",
        layers.len(),
        endpoint.host
    );
    Ok(Pulled {
        name: source.to_string(),
        config: image_config,
        top_chain,
    })
}

/// Unpacks each layer not yet unpacked into a committed snapshot named by its chain ID.
async fn unpack(
    containerd: &Containerd,
    layers: &[OciDescriptor],
    diff_ids: &[String],
    chains: &[String],
) -> Result<()> {
    let mut parent = String::new();
    for ((layer, diff_id), chain) in layers.iter().zip(diff_ids).zip(chains) {
        if !containerd.has_snapshot(chain).await? {
            let key = format!("host-ctr-extract-{}-{chain}", std::process::id());
            let mounts = containerd.prepare_snapshot(&key, &parent).await?;
            let applied = match containerd.apply_layer(&to_containerd(layer), mounts).await {
                Ok(applied) => applied,
                Err(e) => {
                    let _ = containerd.remove_snapshot(&key).await;
                    return Err(e.into());
                }
            };
            if &applied != diff_id {
                let _ = containerd.remove_snapshot(&key).await;
                return Err(error::Error::BadImage {
                    reference: layer.digest.clone(),
                    message: format!("layer unpacks to {applied}, but the config says {diff_id}"),
                });
            }
            if let Err(e) = containerd.commit_snapshot(&key, chain).await {
                let _ = containerd.remove_snapshot(&key).await;
                // Another pull may have committed the same chain meanwhile.
                if !containerd.has_snapshot(chain).await? || e.is_not_found() {
                    return Err(e.into());
                }
            }
        }
        parent = chain.clone();
    }
    Ok(())
}

/// Writes `data` to `path` with mode 0600 (user data may hold secrets).
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Mirror;

    #[test]
    fn bundles_split_into_certificates_and_roots_are_never_empty() {
        let one = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----";
        let bundle = format!("# settings.pki.a\n{one}\n\n# settings.pki.b\n{one}\n");
        assert_eq!(split_pem(&bundle), [format!("{one}\n"), format!("{one}\n")]);
        assert!(split_pem("# nothing trusted\n").is_empty());
        assert!(trusted_roots().len() > 100);
        // A client builds even where the system has no CA store (a node).
        let endpoint = Endpoint {
            host: "registry.example".into(),
            insecure: false,
        };
        client_for(&endpoint, "registry.example/a:1").unwrap();
    }

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a = "sha256:aa".to_string();
        let b = "sha256:bb".to_string();
        let chains = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chains[0], a);
        assert_eq!(chains[1], sha256_digest(b"sha256:aa sha256:bb"));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn mirrors_come_first_and_keep_their_scheme() {
        let mut config = HostCtrConfig::default();
        config.mirrors.insert(
            "10.0.2.103:5080".into(),
            Mirror {
                endpoints: vec!["http://127.0.0.1:5000/v2".into()],
            },
        );
        config.mirrors.insert(
            "*".into(),
            Mirror {
                endpoints: vec!["https://all.example".into()],
            },
        );
        let r = Reference::from_str("10.0.2.103:5080/ballast/admin:v1").unwrap();
        let e = endpoints(&r, &config).unwrap();
        let hosts: Vec<(&str, bool)> = e.iter().map(|e| (e.host.as_str(), e.insecure)).collect();
        assert_eq!(
            hosts,
            [
                ("127.0.0.1:5000", true),
                ("all.example", false),
                ("10.0.2.103:5080", false)
            ]
        );
    }

    #[test]
    fn credentials_by_host() {
        let mut config = HostCtrConfig::default();
        config.creds.insert(
            "registry-1.docker.io".into(),
            Credential {
                auth: Some(base64::engine::general_purpose::STANDARD.encode("bob:pw")),
                ..Default::default()
            },
        );
        config.creds.insert(
            "bad.example".into(),
            Credential {
                auth: Some("bm9jb2xvbg==".into()),
                ..Default::default()
            },
        );
        assert!(matches!(
            auth_for("docker.io", &config).unwrap(),
            RegistryAuth::Basic(u, p) if u == "bob" && p == "pw"
        ));
        assert!(matches!(
            auth_for("quay.io", &config).unwrap(),
            RegistryAuth::Anonymous
        ));
        let err = auth_for("bad.example", &config).unwrap_err().to_string();
        assert!(err.contains("bad.example"), "{err}");
    }
}
