//! Durable state: jobs, queues and node administrative states in SQLite (WAL mode), under the
//! state directory. The only code that speaks SQL.
//!
//! Writes come in batches, one transaction each ([`Store::write`]): the daemon gathers every
//! request that arrived meanwhile, applies them in memory, writes them in one commit, and only
//! then answers. One `fsync` then covers many submissions (group commit), and an answered
//! submission is on disk: `kill -9` at any moment loses nothing that was acknowledged.
//!
//! Records are stored as JSON documents beside a few indexed columns: the schema of a job can
//! grow (new fields with defaults) without migrations.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

use crate::jobs::{Job, NodeRecord, Queue};

/// A storage failure, with the database it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Injected(#[from] crate::failpoint::Injected),
    #[error("state database {}", path.display())]
    Sql {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state database {}: record {key} is unreadable (restore it from a backup or remove the record)", path.display())]
    Corrupt {
        path: PathBuf,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot create the state directory {}", path.display())]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Changes to write in one transaction.
#[derive(Default)]
pub struct Batch<'a> {
    pub jobs: Vec<&'a Job>,
    /// Jobs whose records are purged.
    pub deleted_jobs: Vec<u64>,
    pub queues: Vec<&'a Queue>,
    pub deleted_queues: Vec<String>,
    pub nodes: Vec<&'a NodeRecord>,
    /// Daemon-wide settings by key (e.g. the learned action durations), as JSON.
    pub meta: Vec<(&'static str, String)>,
}

impl Batch<'_> {
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
            && self.deleted_jobs.is_empty()
            && self.queues.is_empty()
            && self.deleted_queues.is_empty()
            && self.nodes.is_empty()
            && self.meta.is_empty()
    }
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state);
CREATE TABLE IF NOT EXISTS queues (name TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (name TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
";

impl Store {
    /// Opens (or creates) the database in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::Dir {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let path = state_dir.join("vjob.db");
        let sql = |source| StoreError::Sql {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(sql)?;
        // WAL: readers never block the writer; FULL: a commit is on disk when it returns.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        Ok(Store { conn, path })
    }

    fn sql(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sql {
            path: self.path.clone(),
            source,
        }
    }

    fn load<T: serde::de::DeserializeOwned>(&self, query: &str) -> Result<Vec<T>, StoreError> {
        let mut stmt = self.conn.prepare(query).map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (key, data) = row.map_err(|e| self.sql(e))?;
            let item = serde_json::from_str(&data).map_err(|source| StoreError::Corrupt {
                path: self.path.clone(),
                key,
                source,
            })?;
            out.push(item);
        }
        Ok(out)
    }

    pub fn jobs(&self) -> Result<Vec<Job>, StoreError> {
        self.load("SELECT CAST(id AS TEXT), data FROM jobs ORDER BY id")
    }
    pub fn queues(&self) -> Result<Vec<Queue>, StoreError> {
        self.load("SELECT name, data FROM queues ORDER BY name")
    }
    pub fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.load("SELECT name, data FROM nodes ORDER BY name")
    }

    /// Whether this database was ever initialized (queues seeded).
    pub fn initialized(&self) -> Result<bool, StoreError> {
        Ok(self.meta("initialized")?.is_some())
    }

    /// A daemon-wide setting written with [`Batch::meta`].
    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// Writes a batch in one transaction; returns once it is on disk.
    pub fn write(&mut self, batch: &Batch<'_>) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        crate::failpoint::hit("store-commit")?;
        let path = self.path.clone();
        let sql = |source| StoreError::Sql {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        {
            let mut put_job = tx
                .prepare_cached("INSERT INTO jobs (id, state, data) VALUES (?1, ?2, ?3) ON CONFLICT(id) DO UPDATE SET state = excluded.state, data = excluded.data")
                .map_err(sql)?;
            for job in &batch.jobs {
                let data = serde_json::to_string(job).expect("jobs serialize");
                put_job
                    .execute(params![job.id as i64, job.state.as_str(), data])
                    .map_err(sql)?;
            }
            let mut del_job = tx.prepare_cached("DELETE FROM jobs WHERE id = ?1").map_err(sql)?;
            for id in &batch.deleted_jobs {
                del_job.execute(params![*id as i64]).map_err(sql)?;
            }
            let mut put_queue = tx
                .prepare_cached("INSERT OR REPLACE INTO queues (name, data) VALUES (?1, ?2)")
                .map_err(sql)?;
            for q in &batch.queues {
                put_queue
                    .execute(params![q.name, serde_json::to_string(q).expect("queues serialize")])
                    .map_err(sql)?;
            }
            let mut del_queue = tx.prepare_cached("DELETE FROM queues WHERE name = ?1").map_err(sql)?;
            for name in &batch.deleted_queues {
                del_queue.execute(params![name]).map_err(sql)?;
            }
            let mut put_node = tx
                .prepare_cached("INSERT OR REPLACE INTO nodes (name, data) VALUES (?1, ?2)")
                .map_err(sql)?;
            for n in &batch.nodes {
                put_node
                    .execute(params![n.name, serde_json::to_string(n).expect("nodes serialize")])
                    .map_err(sql)?;
            }
            let mut put_meta = tx
                .prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")
                .map_err(sql)?;
            for (key, value) in &batch.meta {
                put_meta.execute(params![key, value]).map_err(sql)?;
            }
            if !batch.queues.is_empty() {
                tx.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('initialized', '1')",
                    [],
                )
                .map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::JobSpec;
    use vjob_api::{JobState, NodeAdminState};

    #[test]
    fn jobs_queues_and_nodes_survive_reopening() {
        let dir = std::env::temp_dir().join(format!("vjob-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let spec = JobSpec::parse("j.toml", "[run]\nscript = 'x'\n").unwrap();
        let mut job = Job::new(
            "vjob",
            1,
            "u".into(),
            1000,
            "batch".into(),
            spec,
            "j.toml".into(),
            None,
            false,
            5,
        );
        let q = Queue {
            name: "batch".into(),
            priority: 1,
            enabled: true,
            started: true,
            default: true,
            max_running: None,
            max_user_running: Some(2),
        };
        let n = NodeRecord {
            name: "n1".into(),
            state: NodeAdminState::Drain,
            power: Default::default(),
        };
        {
            let mut s = Store::open(&dir).unwrap();
            assert!(!s.initialized().unwrap());
            s.write(&Batch {
                jobs: vec![&job],
                queues: vec![&q],
                deleted_queues: vec![],
                deleted_jobs: vec![],
                nodes: vec![&n],
                meta: vec![("durations", "{\"boot_ms\":1}".into())],
            })
            .unwrap();
            job.set_state(JobState::Running, 10).unwrap();
            s.write(&Batch {
                jobs: vec![&job],
                ..Default::default()
            })
            .unwrap();
        }
        let s = Store::open(&dir).unwrap();
        assert!(s.initialized().unwrap());
        assert_eq!(s.jobs().unwrap(), vec![job]);
        assert_eq!(s.queues().unwrap(), vec![q]);
        assert_eq!(s.nodes().unwrap(), vec![n]);
        assert_eq!(s.meta("durations").unwrap().as_deref(), Some("{\"boot_ms\":1}"));
        assert_eq!(s.meta("nothing").unwrap(), None);
    }
}
