//! # Background
//!
//! A host container is a long-running container beside the host's own services, for an
//! operator (`admin`, a root shell) or for the node's own tools (`control`): Bottlerocket's
//! `host-ctr`, for Ballast. Settings `host-containers.NAME {source, enabled, superpowered,
//! user-data}` are rendered, with the registry mirrors and credentials of
//! `settings.container-registry`, into [`constants::HOST_CTR_CONFIG`]. The renderer's restart
//! command for them is `host-ctr sync` ([`sync`]), which starts, restarts or stops one
//! `host-containers@NAME.service` per container; each unit runs `host-ctr run NAME` ([`run`]).
//!
//! Host containers live in their own containerd ([`constants::HOST_CONTAINERD_SOCKET`], own
//! root and state, namespace [`constants::HOST_CONTAINERD_NAMESPACE`]), so workloads and the
//! CRI never see them. containerd 1.6 has no Transfer service, so the pull is done here
//! ([`pull`]): manifest and blobs from the registry into containerd's content store, the image
//! record, each layer unpacked into an overlayfs snapshot through the diff service. The
//! container is then created with an OCI runtime spec ([`spec`]) and its task started; its
//! output goes to the unit's journal; SIGTERM stops and removes it.
//!
//! The containerd connection is the `ctr-client` crate, shared with the API server (`GET
//! /exec`) and the health gate's command probes, which add processes to a running container's
//! task; the calls only a pull makes (content store, image records, diff service) are
//! [`store::ImageStore`], here.
//!
//! Inside every host container: the host network, the API socket at
//! [`constants::API_SOCKET`], its persistent directory (on the data partition, under
//! [`constants::HOST_CONTAINERS_STORAGE`]) at `/.ballast/host-containers/NAME` with the
//! decoded user data in the file `user-data`. A superpowered one also gets all capabilities,
//! the devices, the host PID namespace and the host root read-only at
//! [`constants::HOST_ROOTFS_INSIDE`].
//!
//! # Usage
//!
//! ```text
//! host-ctr sync         # after a render: bring every host-containers@NAME unit in line
//! host-ctr run admin    # in host-containers@admin.service: pull, run, wait
//! host-ctr bootstrap    # in bootstrap-containers.service: each bootstrap container, once
//! ```
//!
//! A pull that fails (no registry reachable, a wrong password) is one journal line naming the
//! source and each endpoint's error, retried with backoff from 5 s to 60 s; the unit stays
//! active meanwhile, so nothing else on the node waits for it or fails.
//!
//! # Current limitations
//!
//! * The image's `User` is ignored: the process runs as root (uid 0), as Bottlerocket's host
//!   containers do.
//! * An `identitytoken` is sent as a bearer token; no OAuth refresh exchange is made.
//! * Only linux/amd64 images; an index is resolved to that platform's manifest, and the image
//!   record points at that manifest (the index itself is not stored).
//! * Changing mirrors or credentials does not restart running containers (they are already
//!   pulled); a container still retrying its pull picks the new values up at its next try.
//! * No garbage collection of old images beyond containerd's own (a replaced image stays in
//!   the content store until containerd collects it).
#![forbid(unsafe_code)]

pub mod bootstrap;
pub mod config;
pub mod error;
pub mod pull;
pub mod run;
pub mod spec;
pub mod store;
pub mod sync;

pub use config::HostCtrConfig;
pub use error::{Error, Result};
pub use run::{run, Outcome, Paths};
