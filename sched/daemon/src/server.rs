//! The API server: a Unix stream socket (mode 0666: every local user may connect) speaking
//! newline-delimited JSON ([`vjob_api`]). Who is asking comes from the kernel (`SO_PEERCRED`),
//! never from the request; what each caller may do is decided in the core by uid.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Sender, TrySendError};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use vjob_api::{ApiError, Request, Response, MAX_REQUEST_BYTES, PROTOCOL_VERSION};

use super::{Answer, Command, Identity};
use crate::config::Config;
use crate::error::DaemonError;

/// Resolves uids to identities, once per uid.
struct Identities {
    admins: Vec<String>,
    admin_groups: Vec<String>,
    cache: Mutex<HashMap<u32, Identity>>,
}

impl Identities {
    fn get(&self, uid: u32, gid: u32) -> Identity {
        if let Some(i) = self.cache.lock().expect("identity cache").get(&uid) {
            return i.clone();
        }
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten();
        let name = user
            .as_ref()
            .map(|u| u.name.clone())
            .unwrap_or_else(|| format!("uid{uid}"));
        let in_admin_group = !self.admin_groups.is_empty()
            && user.as_ref().is_some_and(|u| {
                let Ok(cname) = std::ffi::CString::new(u.name.clone()) else {
                    return false;
                };
                nix::unistd::getgrouplist(&cname, nix::unistd::Gid::from_raw(gid))
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|g| nix::unistd::Group::from_gid(g).ok().flatten())
                    .any(|g| self.admin_groups.contains(&g.name))
            });
        let identity = Identity {
            uid,
            admin: uid == 0 || self.admins.contains(&name) || in_admin_group,
            user: name,
        };
        self.cache.lock().expect("identity cache").insert(uid, identity.clone());
        identity
    }
}

/// Binds the socket, refusing to steal it from a daemon that still answers.
async fn bind(path: &Path) -> Result<UnixListener, DaemonError> {
    let socket = |what: &'static str, p: &Path| {
        let path = p.to_path_buf();
        move |source| DaemonError::Socket { what, path, source }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(socket("create the socket's directory", dir))?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(DaemonError::SocketTaken {
                path: path.to_path_buf(),
            });
        }
        std::fs::remove_file(path).map_err(socket("remove the stale socket", path))?;
    }
    let listener = UnixListener::bind(path).map_err(socket("listen on", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .map_err(socket("open to every local user the socket", path))?;
    Ok(listener)
}

/// Serves clients until SIGINT or SIGTERM.
pub async fn serve(cfg: Config, core: Sender<Command>) -> Result<(), DaemonError> {
    let listener = bind(&cfg.socket).await?;
    tracing::info!(socket = %cfg.socket.display(), "vjobd is listening");
    let ids = Arc::new(Identities {
        admins: cfg.admins.clone(),
        admin_groups: cfg.admin_groups.clone(),
        cache: Mutex::new(HashMap::new()),
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|source| {
        DaemonError::Start {
            what: "catch SIGTERM",
            source,
        }
    })?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let core = core.clone();
                let ids = ids.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_client(stream, core, ids).await {
                        tracing::debug!(error = %e, "client connection ended with an error");
                    }
                });
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    tracing::info!("stopping");
    let _ = std::fs::remove_file(&cfg.socket);
    Ok(())
}

/// Serves one client; an error ends its connection (the daemon goes on).
async fn serve_client(stream: UnixStream, core: Sender<Command>, ids: Arc<Identities>) -> std::io::Result<()> {
    let cred = stream.peer_cred()?;
    let ids2 = ids.clone();
    let who = tokio::task::spawn_blocking(move || ids2.get(cred.uid(), cred.gid()))
        .await
        .map_err(std::io::Error::other)?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        let n = (&mut lines)
            .take(MAX_REQUEST_BYTES as u64 + 1)
            .read_line(&mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        let response = if n > MAX_REQUEST_BYTES {
            let r = Answer::Response(Response::new(Err(ApiError::invalid(format!(
                "request larger than {MAX_REQUEST_BYTES} bytes"
            )))));
            write_line(&mut write, &r).await?;
            return Ok(());
        } else {
            answer(&line, &who, &core).await
        };
        write_line(&mut write, &response).await?;
    }
}

async fn answer(line: &str, who: &Identity, core: &Sender<Command>) -> Answer {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let r = match parse(line) {
        Ok(op) => match core.try_send(Command {
            who: who.clone(),
            op,
            reply: tx,
        }) {
            Ok(()) => {
                return rx
                    .await
                    .unwrap_or_else(|_| unavailable("vjobd stopped before answering"))
            }
            Err(TrySendError::Full(_)) => Err(ApiError::unavailable("vjobd is overloaded; retry in a moment")),
            Err(TrySendError::Disconnected(_)) => Err(ApiError::unavailable("vjobd is stopping")),
        },
        Err(e) => Err(e),
    };
    Answer::Response(Response::new(r))
}

fn unavailable(m: &str) -> Answer {
    Answer::Response(Response::new(Err(ApiError::unavailable(m))))
}

fn parse(line: &str) -> Result<vjob_api::Op, ApiError> {
    let req: Request = serde_json::from_str(line).map_err(|e| ApiError::invalid(format!("malformed request: {e}")))?;
    if req.v != PROTOCOL_VERSION {
        return Err(ApiError::invalid(format!(
            "this vjobd speaks protocol version {PROTOCOL_VERSION}, the client {}: use the commands of the same release",
            req.v
        )));
    }
    Ok(req.op)
}

async fn write_line(w: &mut tokio::net::unix::OwnedWriteHalf, a: &Answer) -> std::io::Result<()> {
    match a {
        Answer::Response(r) => {
            let mut bytes = serde_json::to_vec(r).expect("responses serialize");
            bytes.push(b'\n');
            w.write_all(&bytes).await
        }
        Answer::Line(line) => {
            w.write_all(line.as_bytes()).await?;
            w.write_all(b"\n").await
        }
    }
}
