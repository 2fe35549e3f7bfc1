//! Multifactor priority and fair share in vjobd: usage counted from the records (vcpus of the
//! running vjobs, per user), each waiting vjob's factors and rank ([`vjob_core::fairshare`]),
//! and what `vstat --priority` and `vstat --shares` show.
//!
//! Usage advances before every decision; ranks are computed again every `[priority] recalc`
//! (usage and age change all the time), and at once for vjobs that have none yet. A vjob whose
//! rank changed is touched, so the decision board reads it again. The usage is kept in the
//! store, so a restart does not forgive anyone.

use std::collections::{BTreeSet, HashMap};

use vjob_api::{JobState, PriorityInfo, ShareInfo};
use vjob_core::fairshare::{Factors, Ranking, Usage};

use crate::core_loop::{now_ms, Core};
use crate::jobs::Job;

/// The store's meta key of the decayed usage.
pub(crate) const USAGE_KEY: &str = "fairshare_usage";

/// Ranking's state, kept across rounds.
#[derive(Default)]
pub(crate) struct FairBook {
    pub ranking: Option<Ranking>,
    pub usage: Usage,
    /// Each user's fair-share factor at the last computation.
    factors: HashMap<String, f64>,
    /// Each job's rank and factors at its last computation.
    ranks: HashMap<u64, (i64, Factors)>,
    /// Jobs with no rank yet (submitted since).
    pub unranked: BTreeSet<u64>,
    computed_at: Option<u64>,
    /// The usage changed since it was last written.
    pub usage_dirty: bool,
}

impl FairBook {
    pub fn new(ranking: Option<Ranking>, usage: Usage) -> FairBook {
        FairBook {
            ranking,
            usage,
            ..Default::default()
        }
    }

    /// A job's rank (0 without ranking).
    pub fn rank(&self, id: u64) -> i64 {
        self.ranks.get(&id).map_or(0, |r| r.0)
    }
}

impl Core {
    /// Before a decision: usage advanced to now, and ranks computed again where they are due.
    pub(crate) fn settle_priorities(&mut self) {
        let Some(ranking) = self.fair.ranking.clone() else {
            return;
        };
        let now = now_ms();
        if let Some((half_life, _)) = &ranking.fairshare {
            let running: Vec<(String, u64)> = (self.rec.active.iter())
                .filter_map(|id| self.rec.jobs.get(id))
                .filter(|j| j.state == JobState::Running)
                .map(|j| (j.user.clone(), j.vcpus()))
                .collect();
            self.fair
                .usage
                .advance(now, *half_life, running.iter().map(|(u, c)| (u.as_str(), *c)));
        }
        let due = self.fair.computed_at.is_none_or(|t| now >= t + ranking.recalc_ms);
        let ids: Vec<u64> = match due {
            true => {
                self.fair.computed_at = Some(now);
                // Written with the next commit: at most once per computation, not per round.
                self.fair.usage_dirty = ranking.fairshare.is_some();
                self.fair.factors = self.user_factors();
                self.fair.unranked.clear();
                self.rec.active.iter().copied().collect()
            }
            false => std::mem::take(&mut self.fair.unranked).into_iter().collect(),
        };
        for id in ids {
            let Some(job) = self.rec.jobs.get(&id).filter(|j| !j.state.is_final()) else {
                self.fair.ranks.remove(&id);
                continue;
            };
            let f = self.factors_of(job, now, &ranking);
            let rank = f.priority(&ranking.weights);
            if self.fair.ranks.insert(id, (rank, f)).is_none_or(|(old, _)| old != rank) {
                self.touch(id);
            }
        }
    }

    /// Each user's fair-share factor now.
    fn user_factors(&self) -> HashMap<String, f64> {
        let Some((_, shares)) = self.fair.ranking.as_ref().and_then(|r| r.fairshare.as_ref()) else {
            return HashMap::new();
        };
        let users: BTreeSet<&str> = (self.rec.active.iter())
            .filter_map(|id| self.rec.jobs.get(id))
            .map(|j| j.user.as_str())
            .collect();
        (shares.standing(&self.fair.usage, users.into_iter()).into_iter())
            .map(|s| (s.user, s.factor))
            .collect()
    }

    fn factors_of(&self, job: &Job, now: u64, ranking: &Ranking) -> Factors {
        let queue = self.rec.queues.get(&job.queue).map_or(0, |q| q.priority);
        let cluster: u64 = self.nodes.iter().map(|n| n.cfg.cpus as u64).sum();
        let fairshare = match ranking.fairshare {
            None => 1.0,
            // A user first seen since the last computation has no usage yet.
            Some(_) => self.fair.factors.get(&job.user).copied().unwrap_or(1.0),
        };
        let waited = match job.start_ms {
            None => now.saturating_sub(job.submit_ms),
            Some(_) => 0,
        };
        Factors::of(
            &ranking.weights,
            queue,
            job.priority,
            waited,
            fairshare,
            job.vcpus(),
            cluster,
        )
    }

    /// `vstat --priority`: every waiting job's priority and weighted factors, highest first.
    pub(crate) fn priorities(&self) -> Vec<PriorityInfo> {
        let Some(w) = self.fair.ranking.as_ref().map(|r| r.weights) else {
            return Vec::new();
        };
        let mut out: Vec<PriorityInfo> = (self.rec.active.iter())
            .filter_map(|id| self.rec.jobs.get(id))
            .filter(|j| matches!(j.state, JobState::Queued | JobState::Held | JobState::Suspended))
            .filter_map(|j| {
                let (rank, f) = self.fair.ranks.get(&j.id)?;
                Some(PriorityInfo {
                    id: j.label(),
                    user: j.user.clone(),
                    queue: j.queue.clone(),
                    priority: *rank,
                    queue_factor: w.queue * f.queue,
                    job_factor: w.job * f.job,
                    age_factor: w.age * f.age,
                    fairshare_factor: w.fairshare * f.fairshare,
                    size_factor: w.size * f.size,
                })
            })
            .collect();
        out.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.id.cmp(&b.id)));
        out
    }

    /// `vstat --shares`: every user's shares, usage and factor.
    pub(crate) fn shares(&self) -> (f64, Vec<ShareInfo>) {
        let Some((half_life, shares)) = self.fair.ranking.as_ref().and_then(|r| r.fairshare.as_ref()) else {
            return (0.0, Vec::new());
        };
        let users: BTreeSet<&str> = self.rec.jobs.values().map(|j| j.user.as_str()).collect();
        let list = (shares.standing(&self.fair.usage, users.into_iter()).into_iter())
            .map(|s| ShareInfo {
                user: s.user,
                account: s.path.join("/"),
                shares_raw: s.shares_raw,
                shares_norm: s.shares_norm,
                usage_raw: s.usage_raw,
                usage_norm: s.usage_norm,
                usage_effective: s.usage_effective,
                factor: s.factor,
            })
            .collect();
        (*half_life as f64 / 1000.0, list)
    }
}
