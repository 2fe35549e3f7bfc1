//! The thin client: one connection to `vjobd`, one JSON line out and one back per call.
//!
//! The socket is found from `--socket`, then the `VJOB_SOCKET` environment variable, then
//! [`vjob_api::DEFAULT_SOCKET`].

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use vjob_api::{ApiError, ErrorKind, Op, Reply, Request, Response, DEFAULT_SOCKET, SOCKET_ENV};

use crate::Exit;

/// Why a call failed.
#[derive(Debug)]
pub enum ClientError {
    /// The daemon answered with a refusal.
    Api(ApiError),
    /// The daemon could not be reached.
    Connect { socket: PathBuf, err: std::io::Error },
    /// The connection broke or the answer was unreadable.
    Io(String),
    /// The request is larger than vjobd takes: nothing was sent.
    TooLarge { bytes: usize, limit: usize },
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Api(e) => f.write_str(&e.message),
            ClientError::Connect { socket, err } => write!(
                f,
                "cannot reach vjobd at {}: {err} (is vjobd running? name its socket with --socket or {SOCKET_ENV})",
                socket.display()
            ),
            ClientError::Io(m) => f.write_str(m),
            ClientError::TooLarge { bytes, limit } => write!(
                f,
                "the request is {}, more than vjobd takes ({}); nothing was sent",
                vjob_api::display::size(*bytes as u64),
                vjob_api::display::size(*limit as u64)
            ),
        }
    }
}

impl std::error::Error for ClientError {}

impl ClientError {
    pub fn exit(&self) -> Exit {
        match self {
            ClientError::Connect { .. } => Exit::Unreachable,
            ClientError::Api(_) | ClientError::Io(_) | ClientError::TooLarge { .. } => Exit::Refused,
        }
    }
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            ClientError::Api(e) => Some(e.kind),
            _ => None,
        }
    }
}

/// Where to find the daemon: the flag, the environment, or the default.
pub fn socket_path(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| {
            std::env::var_os(SOCKET_ENV)
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// A connection to the daemon.
pub struct Client {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    line: Vec<u8>,
}

impl Client {
    pub fn connect(socket: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(socket).map_err(|err| ClientError::Connect {
            socket: socket.to_path_buf(),
            err,
        })?;
        let reader = BufReader::new(stream.try_clone().map_err(|e| ClientError::Io(e.to_string()))?);
        Ok(Client {
            writer: stream,
            reader,
            line: Vec::new(),
        })
    }

    /// Sends a request and returns the raw answer line (without checking that it is UTF-8:
    /// large listings pass through untouched).
    pub fn call_raw(&mut self, op: Op) -> Result<&[u8], ClientError> {
        let mut bytes = serde_json::to_vec(&Request::new(op)).expect("requests serialize");
        // The daemon reads at most this much of a line and drops the connection after it: say
        // so here rather than let the write break on a closed socket.
        if bytes.len() > vjob_api::MAX_REQUEST_BYTES {
            return Err(ClientError::TooLarge {
                bytes: bytes.len(),
                limit: vjob_api::MAX_REQUEST_BYTES,
            });
        }
        bytes.push(b'\n');
        let broken = |e: std::io::Error| ClientError::Io(format!("the connection to vjobd broke: {e}"));
        self.writer.write_all(&bytes).map_err(broken)?;
        self.line.clear();
        let n = self.reader.read_until(b'\n', &mut self.line).map_err(broken)?;
        if n == 0 {
            return Err(ClientError::Io(
                "vjobd closed the connection without answering (it stopped or crashed): see vjobd's log, \
                 and check with vstat whether the request was done once vjobd is back"
                    .into(),
            ));
        }
        Ok(&self.line)
    }

    /// Sends a request and returns the daemon's answer.
    pub fn call(&mut self, op: Op) -> Result<Reply, ClientError> {
        let line = self.call_raw(op)?;
        let r: Response =
            serde_json::from_slice(line).map_err(|e| ClientError::Io(format!("unreadable answer from vjobd: {e}")))?;
        r.into_result().map_err(ClientError::Api)
    }
}

/// Connects to the socket found from `flag` and makes one call.
pub fn call_once(flag: Option<&Path>, op: Op) -> Result<Reply, ClientError> {
    Client::connect(&socket_path(flag))?.call(op)
}

/// An answer of an unexpected kind: a version mismatch between command and daemon.
pub fn unexpected(reply: &Reply) -> ClientError {
    ClientError::Io(format!("unexpected answer from vjobd: {reply:?}"))
}
