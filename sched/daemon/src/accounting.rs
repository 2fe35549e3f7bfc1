//! Accounting, as `sacct` reads it: a record of every job the store holds, ended ones however
//! long ago (not only within `keep_finished`), with what its context switches cost; and the
//! purge of records older than `[scheduler] purge_after`.
//!
//! The records are the jobs themselves: nothing is copied at the end of a job, so a record is
//! exactly what `vstat -f` said of it.

use vjob_api::acct::{field_named, value, UserTotals, FIELDS};
use vjob_api::{AcctQuery, AcctRecord, ApiError, Reply};

use crate::core_loop::{now_ms, Core};
use crate::jobs::Job;

/// How often records are looked at for purging (or twice per `purge_after`, if shorter).
const PURGE_EVERY_MS: u64 = 60_000;

impl Job {
    pub fn acct_record(&self, now: u64) -> AcctRecord {
        let secs = |ms: u64| ms as f64 / 1000.0;
        let run_ms = self.elapsed_ms(now);
        AcctRecord {
            id: self.label(),
            job_id: self.id,
            name: self.name.clone(),
            user: self.user.clone(),
            queue: self.queue.clone(),
            state: self.state,
            exit_code: self.exit_code,
            submit: secs(self.submit_ms),
            start: self.start_ms.map(secs),
            end: self.end_ms.map(secs),
            elapsed_s: self
                .start_ms
                .map_or(0.0, |s| secs(self.end_ms.unwrap_or(now).saturating_sub(s))),
            run_s: secs(run_ms),
            suspended_s: secs(self.acct.suspended_ms(now)),
            suspends: self.acct.suspends,
            resumes: self.acct.resumes,
            migrations: self.acct.migrations,
            vcpu_s: self.vcpus() as f64 * secs(run_ms),
            bytes_moved: self.acct.bytes_moved,
            vms: self.vms.len() as u32,
            energy_j: self.energy_j,
        }
    }
}

impl Core {
    /// What a query asks: the records it selects (in job id order), their fields rendered, or
    /// totals per user.
    pub(crate) fn accounting(&self, q: &AcctQuery) -> Result<Reply, ApiError> {
        let fields = (q.fields.iter())
            .map(|f| {
                field_named(f)
                    .map(|i| FIELDS[i].0)
                    .ok_or_else(|| ApiError::invalid(format!("no accounting field `{f}`")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let records = self.records(q)?;
        if q.per_user {
            let mut users: std::collections::BTreeMap<&str, UserTotals> = Default::default();
            for r in &records {
                let t = users.entry(&r.user).or_insert_with(|| UserTotals {
                    user: r.user.clone(),
                    ..Default::default()
                });
                t.add(r);
            }
            return Ok(Reply::AcctUsers {
                users: users.into_values().collect(),
            });
        }
        if fields.is_empty() {
            return Ok(Reply::Accounting { records });
        }
        let rows = (records.iter())
            .map(|r| fields.iter().map(|f| value(f, r, q.plain_numbers)).collect())
            .collect();
        Ok(Reply::AcctRows { rows })
    }

    /// The records a query selects, in job id order.
    fn records(&self, q: &AcctQuery) -> Result<Vec<AcctRecord>, ApiError> {
        let now = now_ms();
        let ms = |s: f64| (s.max(0.0) * 1000.0) as u64;
        let (since, until) = (q.since.map(ms), q.until.map(ms));
        let wanted = |j: &Job| {
            (q.users.is_empty() || q.users.contains(&j.user))
                && (q.states.is_empty() || q.states.contains(&j.state))
                && since.is_none_or(|t| j.end_ms.is_none_or(|e| e >= t))
                && until.is_none_or(|t| j.submit_ms < t)
        };
        let records = if q.ids.is_empty() {
            self.rec
                .jobs
                .values()
                .filter(|j| wanted(j))
                .map(|j| j.acct_record(now))
                .collect()
        } else {
            let mut ids = Vec::new();
            for r in &q.ids {
                ids.extend(self.resolve(*r)?);
            }
            ids.sort_unstable();
            ids.dedup();
            ids.iter()
                .map(|id| &self.rec.jobs[id])
                .filter(|j| wanted(j))
                .map(|j| j.acct_record(now))
                .collect()
        };
        Ok(records)
    }

    /// Deletes the records of jobs that ended more than `purge_after` ago (nothing of them
    /// left on the nodes), at most once a minute.
    pub(crate) fn maybe_purge(&mut self) {
        let Some(keep) = self.cfg.scheduler.purge_after_ms else {
            return;
        };
        let now = now_ms();
        if now < self.purged_at + PURGE_EVERY_MS.min(keep / 2) {
            return;
        }
        self.purged_at = now;
        let old: Vec<u64> = (self.rec.jobs.values())
            .filter(|j| j.state.is_final() && !self.rec.active.contains(&j.id))
            .filter(|j| j.end_ms.is_some_and(|e| now.saturating_sub(e) > keep))
            .map(|j| j.id)
            .collect();
        if old.is_empty() {
            return;
        }
        for id in &old {
            let job = self.rec.jobs.remove(id).expect("listed above");
            self.rec.json_cache.remove(id);
            self.dirty.jobs.remove(id);
            if let Some(a) = job.array {
                if let Some(tasks) = self.arrays.get_mut(&a.id) {
                    tasks.retain(|t| t != id);
                    if tasks.is_empty() {
                        self.arrays.remove(&a.id);
                    }
                }
            }
        }
        tracing::info!(
            jobs = old.len(),
            "purged the records of jobs that ended past purge_after"
        );
        self.dirty.purged.extend(old);
    }
}
