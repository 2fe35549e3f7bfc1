//! Why the daemon cannot start or go on: one variant per thing that failed, its cause kept as
//! the source (printed once, after it, by the binary).

use std::path::PathBuf;

use crate::store::StoreError;
use crate::tomlfile::FileError;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration file is unreadable or invalid (its message names file, line, field).
    #[error(transparent)]
    Config(#[from] FileError),
    #[error("cannot create the state directory {}", path.display())]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the simulated cluster in {}", path.display())]
    SimCluster {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Node(#[from] vjob_hypervisor::HvError),
    #[error("this vjobd was built without the libvirt backend: build it with --features libvirt")]
    NoLibvirt,
    #[error("the state store")]
    Store(#[from] StoreError),
    #[error("cannot {what}")]
    Start {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: another vjobd is already listening there; stop it first", path.display())]
    SocketTaken { path: PathBuf },
    #[error("cannot {what} {}", path.display())]
    Socket {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
