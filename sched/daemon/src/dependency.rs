//! Dependencies between jobs, as Slurm spells them (`--dependency afterok:12:13,afterany:14`):
//! a job waits in the queue until they are met, and one that can never be met stays queued with
//! that reason, or is cancelled when it was submitted with `--kill-on-invalid-dep`.
//!
//! - `after:ID[:ID...]`: each has started (or was cancelled before it could); an ID is a job,
//!   an array (all of its tasks) or one task (`12[3]`, or `12_3` as Slurm writes it);
//! - `afterok`: each completed with exit code 0; `afternotok`: each ended otherwise (failed,
//!   cancelled, or a non-zero exit); `afterany`: each ended;
//! - `singleton`: no job of the same user and name submitted before it is still unfinished;
//! - terms joined by `,` must all be met, by `?` any one of them.
//!
//! Evaluating is pure ([`Dependency::status`], over the jobs it names), so the decision board
//! and a fresh one agree; [`Core::settle_dependencies`] touches the jobs whose status changed
//! before each decision.

use serde::{Deserialize, Serialize};
use vjob_api::array::JobRef;
use vjob_api::JobState;

use crate::core_loop::{now_ms, Core};
use crate::jobs::Job;

/// A job's dependency, as parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    /// `,`: every term; `?`: any one.
    pub all: bool,
    pub terms: Vec<Term>,
    /// Cancel the job when the dependency can never be met.
    #[serde(default)]
    pub kill_on_invalid: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Term {
    /// The jobs named: as given until [`Dependency::resolve`], plain job ids after it (records
    /// written before tasks could be named hold bare numbers, which read the same).
    After(Vec<JobRef>),
    AfterOk(Vec<JobRef>),
    AfterNotOk(Vec<JobRef>),
    AfterAny(Vec<JobRef>),
    Singleton,
}

/// Where a dependency stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Met,
    /// Not yet: why.
    Waiting(String),
    /// Never: why.
    Never(String),
}

impl Dependency {
    /// Parses `afterok:1:2,afterany:3` or `afterok:1?afternotok:2` (PBS ids such as
    /// `12.server` count by their number).
    pub fn parse(text: &str) -> Result<Dependency, String> {
        let t = text.trim();
        if t.contains(',') && t.contains('?') {
            return Err(format!("`{t}`: join the terms with `,` (all) or `?` (any), not both"));
        }
        let all = !t.contains('?');
        let terms = t
            .split([',', '?'])
            .map(term)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| format!("dependency `{t}`: {m}"))?;
        Ok(Dependency {
            all,
            terms,
            kill_on_invalid: false,
        })
    }

    /// The jobs it names.
    pub fn ids(&self) -> impl Iterator<Item = JobRef> + '_ {
        self.terms
            .iter()
            .flat_map(|t| match t {
                Term::After(ids) | Term::AfterOk(ids) | Term::AfterNotOk(ids) | Term::AfterAny(ids) => ids.as_slice(),
                Term::Singleton => &[],
            })
            .copied()
    }

    /// Replaces each reference by the job ids it means (`jobs_of`: an array's id means every
    /// one of its tasks, fixed from submission on; `12[3]` one task), or says which names none.
    pub fn resolve<E>(&mut self, jobs_of: impl Fn(JobRef) -> Result<Vec<u64>, E>) -> Result<(), E> {
        for t in &mut self.terms {
            if let Term::After(ids) | Term::AfterOk(ids) | Term::AfterNotOk(ids) | Term::AfterAny(ids) = t {
                let mut plain = Vec::with_capacity(ids.len());
                for r in ids.iter() {
                    plain.extend(jobs_of(*r)?.into_iter().map(JobRef::job));
                }
                *ids = plain;
            }
        }
        Ok(())
    }

    /// Where it stands for job `me`, with `jobs` the records.
    pub fn status(&self, me: &Job, jobs: &std::collections::BTreeMap<u64, Job>) -> Status {
        let each: Vec<Status> = self.terms.iter().map(|t| term_status(t, me, jobs)).collect();
        let waiting = || {
            each.iter()
                .filter_map(|s| match s {
                    Status::Waiting(w) => Some(w.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(if self.all { ", " } else { " or " })
        };
        let never = || {
            each.iter()
                .filter_map(|s| match s {
                    Status::Never(w) => Some(w.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let met = |s: &Status| *s == Status::Met;
        let is_never = |s: &Status| matches!(s, Status::Never(_));
        match self.all {
            true if each.iter().all(met) => Status::Met,
            true if each.iter().any(is_never) => Status::Never(never()),
            false if each.iter().any(met) => Status::Met,
            false if each.iter().all(is_never) => Status::Never(never()),
            _ => Status::Waiting(waiting()),
        }
    }
}

fn term(text: &str) -> Result<Term, String> {
    let mut parts = text.trim().split(':');
    let kind = parts.next().unwrap_or("");
    let ids = || -> Result<Vec<JobRef>, String> {
        let ids: Vec<JobRef> = parts
            .clone()
            .map(|p| {
                if p.contains('+') {
                    return Err(format!("`{p}`: a delay after a job (+minutes) is not supported"));
                }
                p.parse::<JobRef>()
            })
            .collect::<Result<_, _>>()?;
        if ids.is_empty() {
            return Err(format!("`{kind}` needs job ids (`{kind}:12:13`)"));
        }
        Ok(ids)
    };
    Ok(match kind {
        "after" => Term::After(ids()?),
        "afterok" => Term::AfterOk(ids()?),
        "afternotok" => Term::AfterNotOk(ids()?),
        "afterany" => Term::AfterAny(ids()?),
        "singleton" if parts.next().is_none() => Term::Singleton,
        "singleton" => return Err("`singleton` takes no job ids".into()),
        other => {
            return Err(format!(
                "unknown kind `{other}` (after, afterok, afternotok, afterany, singleton)"
            ))
        }
    })
}

fn term_status(t: &Term, me: &Job, jobs: &std::collections::BTreeMap<u64, Job>) -> Status {
    let ok = |j: &Job| j.state == JobState::Completed && j.exit_code == Some(0);
    let check = |ids: &[JobRef], what: &str, met: &dyn Fn(&Job) -> bool, never: &dyn Fn(&Job) -> bool| {
        let mut waiting = Vec::new();
        for JobRef { id, .. } in ids {
            let Some(j) = jobs.get(id) else {
                return Status::Never(format!("job {id} does not exist"));
            };
            if never(j) {
                return Status::Never(format!("job {} {}", j.label(), j.state.as_str()));
            }
            if !met(j) {
                waiting.push(format!("job {} to {what} (it is {})", j.label(), j.state.as_str()));
            }
        }
        match waiting.is_empty() {
            true => Status::Met,
            false => Status::Waiting(waiting.join(", ")),
        }
    };
    match t {
        Term::After(ids) => check(ids, "start", &|j| j.start_ms.is_some() || j.state.is_final(), &|_| {
            false
        }),
        Term::AfterOk(ids) => check(ids, "complete", &ok, &|j| j.state.is_final() && !ok(j)),
        Term::AfterNotOk(ids) => check(ids, "fail", &|j| j.state.is_final() && !ok(j), &ok),
        Term::AfterAny(ids) => check(ids, "end", &|j| j.state.is_final(), &|_| false),
        Term::Singleton => match jobs
            .range(..me.id)
            .map(|(_, j)| j)
            .find(|j| !j.state.is_final() && j.user == me.user && j.spec.name == me.spec.name)
        {
            Some(j) => Status::Waiting(format!("job {} of the same name to end (singleton)", j.label())),
            None => Status::Met,
        },
    }
}

impl Core {
    /// Before a decision: each queued job with a dependency whose status changed since the last
    /// round is touched (the board reads it again), and one that can never be met is cancelled
    /// when it asked for that.
    pub(crate) fn settle_dependencies(&mut self) {
        let now = now_ms();
        let mut changed = Vec::new();
        let mut done = Vec::new();
        for id in &self.deps_pending {
            let Some(job) = self.rec.jobs.get(id) else {
                done.push(*id);
                continue;
            };
            let Some(dep) = job.spec.dependency.as_ref() else {
                done.push(*id);
                continue;
            };
            if job.state.is_final() || job.start_ms.is_some() {
                done.push(*id);
                continue;
            }
            let status = dep.status(job, &self.rec.jobs);
            if self.dep_status.get(id) != Some(&status) {
                changed.push((*id, status, dep.kill_on_invalid));
            }
        }
        for id in done {
            self.deps_pending.remove(&id);
            self.dep_status.remove(&id);
        }
        for (id, status, kill) in changed {
            if let (Status::Never(why), true) = (&status, kill) {
                if let Some(job) = self.rec.jobs.get_mut(&id) {
                    let why = format!("its dependency can never be met: {why}");
                    if job.set_state(JobState::Cancelled, now).is_ok() {
                        job.event(now, format!("cancelled: {why}"));
                        job.reason = Some(why);
                    }
                }
            }
            self.dep_status.insert(id, status);
            self.touch(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_parse_as_slurm_writes_them() {
        let d = Dependency::parse("afterok:12:13.server,afterany:14").unwrap();
        assert!(d.all);
        let jobs = |ids: &[u64]| ids.iter().map(|&id| JobRef::job(id)).collect::<Vec<_>>();
        assert_eq!(
            d.terms,
            vec![Term::AfterOk(jobs(&[12, 13])), Term::AfterAny(jobs(&[14]))]
        );
        let d = Dependency::parse("afternotok:1?singleton").unwrap();
        assert!(!d.all);
        assert_eq!(d.terms, vec![Term::AfterNotOk(jobs(&[1])), Term::Singleton]);
        assert_eq!(d.ids().collect::<Vec<_>>(), jobs(&[1]));
        let d = Dependency::parse("afterany:7[2]:7_3:8[4].server").unwrap();
        let tasks = vec![JobRef::task(7, 2), JobRef::task(7, 3), JobRef::task(8, 4)];
        assert_eq!(d.terms, vec![Term::AfterAny(tasks)]);
    }

    #[test]
    fn resolving_replaces_arrays_and_tasks_by_job_ids() {
        // Array 3 has tasks 3, 4, 5 (indices 0, 1, 2); job 12 is a plain job.
        let jobs_of = |r: JobRef| match (r.id, r.index) {
            (3, None) => Ok(vec![3, 4, 5]),
            (3, Some(i)) if i < 3 => Ok(vec![3 + u64::from(i)]),
            (12, None) => Ok(vec![12]),
            _ => Err(format!("no job {r}")),
        };
        let mut d = Dependency::parse("afterok:12:3,afterany:3[2]").unwrap();
        d.resolve(jobs_of).unwrap();
        let plain = |ids: &[u64]| ids.iter().map(|&id| JobRef::job(id)).collect::<Vec<_>>();
        assert_eq!(
            d.terms,
            vec![Term::AfterOk(plain(&[12, 3, 4, 5])), Term::AfterAny(plain(&[5]))]
        );
        let mut d = Dependency::parse("afterok:3[7]").unwrap();
        assert_eq!(d.resolve(jobs_of).unwrap_err(), "no job 3[7]");
    }

    #[test]
    fn records_written_with_bare_numbers_still_read() {
        let d: Dependency = serde_json::from_str(r#"{"all":true,"terms":[{"after_ok":[4,5]}]}"#).unwrap();
        assert_eq!(d.terms, vec![Term::AfterOk(vec![JobRef::job(4), JobRef::job(5)])]);
    }

    #[test]
    fn bad_terms_say_why() {
        for (bad, says) in [
            ("afterok", "needs job ids"),
            ("afterok:x", "`x` is not a job id"),
            ("afterok:3[x]", "`3[x]` is not a job id"),
            ("before:1", "unknown kind `before`"),
            ("afterok:1,afterany:2?after:3", "not both"),
            ("after:1+5", "delay"),
            ("singleton:3", "takes no job ids"),
        ] {
            let e = Dependency::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
