//! The rows of `vstat`'s job listings: one per job, except that the queued tasks of an array
//! that wait for the same reason fold into one row, `12[5-99]`, as squeue folds pending array
//! tasks (`vstat -r` lists every task).

use vjob_api::array::fold_indices;
use vjob_api::{JobInfo, JobState};

/// One row: the job it shows and the id it is shown under.
pub struct Row<'j> {
    pub job: &'j JobInfo,
    /// `12`, `12[3]`, or the folded tasks `12[4-99]`.
    pub id: String,
}

/// Each job a row, in order (`fold`: runs of queued tasks of one array waiting for the same
/// reason are one row, shown as the first of them).
pub fn rows(jobs: &[JobInfo], fold: bool) -> Vec<Row<'_>> {
    let mut rows = Vec::with_capacity(jobs.len());
    let mut i = 0;
    while i < jobs.len() {
        let first = &jobs[i];
        let run = match fold {
            true => jobs[i..].iter().take_while(|j| same_waiting_task(first, j)).count(),
            false => 0,
        };
        if run < 2 {
            rows.push(Row {
                job: first,
                id: first.job_ref().to_string(),
            });
            i += 1;
            continue;
        }
        let indices: Vec<u32> = jobs[i..i + run].iter().filter_map(|j| j.array_index).collect();
        rows.push(Row {
            job: first,
            id: format!("{}[{}]", first.array_id.unwrap_or(first.id), fold_indices(&indices)),
        });
        i += run;
    }
    rows
}

/// Whether `j` is a queued task of `first`'s array waiting as `first` does (`first` too).
fn same_waiting_task(first: &JobInfo, j: &JobInfo) -> bool {
    let queued = |x: &JobInfo| x.state == JobState::Queued && !x.exiting && x.array_id.is_some();
    queued(first) && queued(j) && j.array_id == first.array_id && j.reason == first.reason
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: u64, state: JobState, reason: &str) -> JobInfo {
        JobInfo {
            id,
            array_id: None,
            array_index: None,
            name: "sweep".into(),
            user: "ann".into(),
            queue: "batch".into(),
            state,
            exiting: false,
            priority: 0,
            exit_code: None,
            reason: Some(reason.into()),
            vms: Vec::new(),
            vcpus: 1,
            memory: 1 << 30,
            submit_time: 0.0,
            start_time: None,
            end_time: None,
            elapsed_s: 0.0,
            walltime_s: None,
            preemptions: 0,
            detail: None,
        }
    }

    fn task(array: u64, index: u32, state: JobState, reason: &str) -> JobInfo {
        JobInfo {
            array_id: Some(array),
            array_index: Some(index),
            ..job(array + u64::from(index), state, reason)
        }
    }

    #[test]
    fn queued_tasks_waiting_alike_fold_and_the_others_stay_rows() {
        let mut jobs = vec![
            task(10, 0, JobState::Running, "-"),
            task(10, 1, JobState::Queued, "throttle"),
            task(10, 2, JobState::Queued, "throttle"),
            task(10, 3, JobState::Queued, "throttle"),
            task(10, 5, JobState::Queued, "throttle"),
            task(10, 6, JobState::Queued, "held"),
        ];
        jobs.push(job(20, JobState::Queued, "throttle"));
        let ids: Vec<String> = rows(&jobs, true).into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["10[0]", "10[1-3,5]", "10[6]", "20"]);
        let every: Vec<String> = rows(&jobs, false).into_iter().map(|r| r.id).collect();
        assert_eq!(every.len(), 7);
        assert_eq!(every[1], "10[1]");
    }
}
