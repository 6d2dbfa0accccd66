//! What the pull needs of containerd beyond [`ctr_client`]: the content store, image records
//! and the diff service that unpacks a layer into a snapshot. Only `host-ctr` pulls, so these
//! calls live here, over the shared connection's channel and request metadata.

use containerd_client::services::v1::{
    content_client::ContentClient, diff_client::DiffClient, images_client::ImagesClient,
    AbortRequest, ApplyRequest, CreateImageRequest, Image, InfoRequest, UpdateImageRequest,
    WriteAction, WriteContentRequest,
};
use containerd_client::tonic::Code;
use containerd_client::types::Descriptor;
use ctr_client::error::refused;
use ctr_client::{Containerd, Mount, Result};
use futures::{Stream, StreamExt};
use std::collections::HashMap;

/// Bytes of a blob per content write message (gRPC's default message limit is 4 MiB).
const WRITE_CHUNK: usize = 1 << 20;

/// The content, image and diff calls of a pull, on a [`Containerd`] connection.
#[allow(async_fn_in_trait)]
pub trait ImageStore {
    /// Whether the content store holds `digest`.
    async fn has_content(&self, digest: &str) -> Result<bool>;

    /// Writes a blob from a stream of chunks into the content store, committed under its
    /// digest (containerd checks the digest and size) with `labels`.
    async fn write_content<S>(
        &self,
        descriptor: &Descriptor,
        chunks: S,
        labels: HashMap<String, String>,
    ) -> Result<()>
    where
        S: Stream<Item = bytes::Bytes> + Send + 'static;

    /// Creates or updates the image record `name` pointing at `target`.
    async fn put_image(&self, name: &str, target: Descriptor) -> Result<()>;

    /// Applies layer `layer` (a blob in the content store) onto `mounts`; returns the digest
    /// of the uncompressed layer, which must be the image's diff ID.
    async fn apply_layer(&self, layer: &Descriptor, mounts: Vec<Mount>) -> Result<String>;
}

impl ImageStore for Containerd {
    async fn has_content(&self, digest: &str) -> Result<bool> {
        let result = ContentClient::new(self.channel())
            .info(self.request(InfoRequest {
                digest: digest.to_string(),
            }))
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(status) if status.code() == Code::NotFound => Ok(false),
            Err(status) => Err(refused(format!("looking up {digest}"))(status)),
        }
    }

    async fn write_content<S>(
        &self,
        descriptor: &Descriptor,
        chunks: S,
        labels: HashMap<String, String>,
    ) -> Result<()>
    where
        S: Stream<Item = bytes::Bytes> + Send + 'static,
    {
        let reference = format!("host-ctr-{}", descriptor.digest);
        let mut content = ContentClient::new(self.channel());
        // An ingest left by an interrupted pull would make the first write's offset wrong.
        let _ = content
            .abort(self.request(AbortRequest {
                r#ref: reference.clone(),
            }))
            .await;
        let total = descriptor.size;
        let expected = descriptor.digest.clone();
        let write_ref = reference.clone();
        let writes = chunks
            .flat_map(|chunk| {
                futures::stream::iter(
                    chunk
                        .chunks(WRITE_CHUNK)
                        .map(bytes::Bytes::copy_from_slice)
                        .collect::<Vec<_>>(),
                )
            })
            .scan(0i64, move |offset, data| {
                let len = i64::try_from(data.len()).unwrap_or(i64::MAX);
                let request = WriteContentRequest {
                    action: WriteAction::Write as i32,
                    r#ref: write_ref.clone(),
                    total,
                    expected: String::new(),
                    offset: *offset,
                    data: data.to_vec(),
                    labels: HashMap::new(),
                };
                *offset += len;
                futures::future::ready(Some(request))
            });
        let commit = WriteContentRequest {
            action: WriteAction::Commit as i32,
            r#ref: reference.clone(),
            total,
            expected,
            // At the end: containerd truncates the ingest when a request's offset is 0.
            offset: total,
            data: Vec::new(),
            labels,
        };
        let requests = writes.chain(futures::stream::once(async move { commit }));
        let mut responses = content
            .write(self.request(requests))
            .await
            .map_err(refused(format!("writing {}", descriptor.digest)))?
            .into_inner();
        while let Some(response) = responses.next().await {
            let response = response.map_err(refused(format!("writing {}", descriptor.digest)))?;
            if response.action == WriteAction::Commit as i32 {
                return Ok(());
            }
        }
        Ok(())
    }

    async fn put_image(&self, name: &str, target: Descriptor) -> Result<()> {
        let image = Image {
            name: name.to_string(),
            target: Some(target),
            ..Default::default()
        };
        let mut images = ImagesClient::new(self.channel());
        let created = images
            .create(self.request(CreateImageRequest {
                image: Some(image.clone()),
                ..Default::default()
            }))
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::AlreadyExists => images
                .update(self.request(UpdateImageRequest {
                    image: Some(image),
                    ..Default::default()
                }))
                .await
                .map(|_| ())
                .map_err(refused(format!("updating image {name}"))),
            Err(status) => Err(refused(format!("creating image {name}"))(status)),
        }
    }

    async fn apply_layer(&self, layer: &Descriptor, mounts: Vec<Mount>) -> Result<String> {
        let applied = DiffClient::new(self.channel())
            .apply(self.request(ApplyRequest {
                diff: Some(layer.clone()),
                mounts,
                ..Default::default()
            }))
            .await
            .map_err(refused(format!("applying layer {}", layer.digest)))?
            .into_inner()
            .applied;
        Ok(applied.map(|d| d.digest).unwrap_or_default())
    }
}
