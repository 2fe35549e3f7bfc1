//! Job arrays in the daemon: one job record per task, named `ID[INDEX]`, submitted in one
//! commit; how a command's job reference (`12`, `12[3]`) becomes job ids; and the throttle,
//! which the context-switch policy enforces as a group limit (at most N tasks running).
//!
//! An array of N tasks takes the N job ids from its own; every task carries its array's id,
//! its index and the throttle ([`ArrayTask`]), so the store needs no table of its own and a
//! restart rebuilds [`Core::arrays`] from the jobs.

use vjob_api::{ApiError, JobRef, Reply};

use super::Identity;
use crate::core_loop::{now_ms, Core};
use crate::jobs::{ArrayTask, Job};

impl Core {
    /// The arrays' tasks, by array id, in index order, from the job records.
    pub(crate) fn index_arrays(
        jobs: &std::collections::BTreeMap<u64, Job>,
    ) -> std::collections::BTreeMap<u64, Vec<u64>> {
        let mut arrays: std::collections::BTreeMap<u64, Vec<(u32, u64)>> = Default::default();
        for j in jobs.values() {
            if let Some(a) = j.array {
                arrays.entry(a.id).or_default().push((a.index, j.id));
            }
        }
        arrays
            .into_iter()
            .map(|(id, mut tasks)| {
                tasks.sort_unstable();
                (id, tasks.into_iter().map(|(_, job)| job).collect())
            })
            .collect()
    }

    /// The jobs a reference names: a job, every task of an array, or one task.
    pub(crate) fn resolve(&self, r: JobRef) -> Result<Vec<u64>, ApiError> {
        match (r.index, self.arrays.get(&r.id)) {
            (None, Some(tasks)) => Ok(tasks.clone()),
            (None, None) if self.rec.jobs.contains_key(&r.id) => Ok(vec![r.id]),
            (None, None) => Err(ApiError::not_found(format!("no job {r}"))),
            (Some(i), Some(tasks)) => tasks
                .iter()
                .copied()
                .find(|t| self.rec.jobs[t].array.is_some_and(|a| a.index == i))
                .map(|t| vec![t])
                .ok_or_else(|| {
                    let indices: Vec<u32> = tasks
                        .iter()
                        .filter_map(|t| self.rec.jobs[t].array.map(|a| a.index))
                        .collect();
                    ApiError::not_found(format!(
                        "array {} has no task {i} (its tasks: {})",
                        r.id,
                        vjob_api::array::fold_indices(&indices)
                    ))
                }),
            (Some(_), None) => Err(ApiError::not_found(format!("no job {r}: {} is not an array", r.id))),
        }
    }

    /// The one job a reference names; an array of several tasks is refused.
    pub(crate) fn resolve_one(&self, r: JobRef) -> Result<u64, ApiError> {
        match self.resolve(r)?.as_slice() {
            [one] => Ok(*one),
            many => Err(ApiError::invalid(format!(
                "{r} is an array of {} tasks: name one, as {r}[INDEX]",
                many.len()
            ))),
        }
    }

    /// `vqmgr job set ID --throttle N`: at most N tasks of the array run at once (0: no limit).
    pub(crate) fn array_set(&mut self, who: &Identity, r: JobRef, throttle: Option<u32>) -> Result<Reply, ApiError> {
        let Some(throttle) = throttle else {
            return Err(ApiError::invalid("nothing to change: give --throttle N"));
        };
        if r.index.is_some() || !self.arrays.contains_key(&r.id) {
            return Err(ApiError::invalid(format!(
                "{r} is not an array: a throttle applies to a whole array (name it by its id)"
            )));
        }
        let tasks = self.arrays[&r.id].clone();
        let owner = &self.rec.jobs[&tasks[0]];
        if owner.uid != who.uid && !who.admin {
            return Err(ApiError::permission(format!(
                "array {r} belongs to {}: only its owner or an administrator may change it",
                owner.user
            )));
        }
        let limit = (throttle > 0).then_some(throttle);
        let now = now_ms();
        for id in tasks {
            let job = self.rec.jobs.get_mut(&id).expect("indexed");
            if let Some(a) = job.array.as_mut() {
                a.throttle = limit;
            }
            if !job.state.is_final() {
                job.event(
                    now,
                    format!(
                        "array throttle set to {}",
                        limit.map_or("none".into(), |n| n.to_string())
                    ),
                );
            }
            self.touch(id);
        }
        self.pace.need_decision = true;
        Ok(Reply::Done {
            message: match limit {
                Some(n) => format!("array {r}: at most {n} tasks run at once"),
                None => format!("array {r}: no throttle"),
            },
        })
    }

    /// The tasks of a submission: one job without an array, else one per index (ids from
    /// `first` on, in index order).
    pub(crate) fn tasks_of(array: Option<&vjob_api::ArraySpec>, first: u64) -> Vec<(u64, Option<ArrayTask>)> {
        match array {
            None => vec![(first, None)],
            Some(a) => a
                .indices
                .iter()
                .enumerate()
                .map(|(k, &index)| {
                    let task = ArrayTask {
                        id: first,
                        index,
                        throttle: a.throttle,
                    };
                    (first + k as u64, Some(task))
                })
                .collect(),
        }
    }
}
