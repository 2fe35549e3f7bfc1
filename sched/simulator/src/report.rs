//! Metrics of a simulation run, and their presentations: a readable summary, one JSON object,
//! and an SVG with utilization and queue length over time (and a Gantt chart of vjob states for
//! small runs).

use serde::Serialize;

use crate::engine::{Outcome, Phase};

/// Bounded slowdown threshold, seconds (the usual 10 s).
pub const TAU_S: f64 = 10.0;

/// The headline numbers of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    pub policy: String,
    pub jobs: usize,
    pub skipped: usize,
    pub mean_wait_s: f64,
    pub mean_bounded_slowdown: f64,
    pub max_bounded_slowdown: f64,
    /// Busy core-seconds / available core-seconds over the makespan.
    pub utilization: f64,
    pub makespan_s: f64,
    pub suspends: u64,
    pub resumes: u64,
    pub pauses: u64,
    pub migrations: u64,
    pub bytes_moved: u64,
    /// Virtual time spent in context switches: the durations of every suspend, resume and
    /// migration, added up (VM-seconds).
    pub switch_s: f64,
    pub decisions: u64,
    /// The scheduler's own compute time per decision (policy and planner), wall clock.
    pub median_decision_ms: f64,
    pub p95_decision_ms: f64,
    pub p99_decision_ms: f64,
    /// Rounds that planned something, their median decision time and the median VMs planned over.
    pub planned_rounds: usize,
    pub median_planned_round_ms: f64,
    pub median_vms_per_round: f64,
    /// Energy the nodes drew from the first submission to the last job's end, and what they
    /// would have drawn with every node on.
    pub energy_kwh: f64,
    pub energy_kwh_without_power_management: f64,
    pub node_boots: u64,
    pub node_shutdowns: u64,
    pub wall_s: f64,
    /// Each user's mean wait, seconds (users as the trace names them).
    pub user_mean_wait_s: std::collections::BTreeMap<String, f64>,
}

fn percentile(v: &[u64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    s[((s.len() - 1) as f64 * p).round() as usize] as f64
}

impl Metrics {
    pub fn of(policy: &str, o: &Outcome, skipped: usize, wall_s: f64) -> Metrics {
        let n = o.jobs.max(1) as f64;
        let mut wait = 0.0;
        let mut bsld_sum = 0.0;
        let mut bsld_max: f64 = 0.0;
        let mut busy = 0.0;
        for i in 0..o.jobs {
            let (resp, run) = (o.response_ms[i] as f64 / 1000.0, o.run_ms[i] as f64 / 1000.0);
            wait += resp - run;
            let b = (resp / run.max(TAU_S)).max(1.0);
            bsld_sum += b;
            bsld_max = bsld_max.max(b);
            busy += run * o.procs[i] as f64;
        }
        let makespan = o.last_end_ms.saturating_sub(o.first_submit_ms) as f64 / 1000.0;
        let mut per_user: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
        for i in 0..o.users.len().min(o.jobs) {
            let e = per_user.entry(o.users[i].clone()).or_default();
            e.0 += (o.response_ms[i] as f64 - o.run_ms[i] as f64) / 1000.0;
            e.1 += 1.0;
        }
        Metrics {
            policy: policy.to_string(),
            jobs: o.jobs,
            skipped,
            mean_wait_s: wait / n,
            mean_bounded_slowdown: bsld_sum / n,
            max_bounded_slowdown: bsld_max,
            utilization: if makespan > 0.0 {
                busy / (makespan * o.total_cores as f64)
            } else {
                0.0
            },
            makespan_s: makespan,
            suspends: o.suspends,
            resumes: o.resumes,
            pauses: o.pauses,
            migrations: o.migrations,
            bytes_moved: o.bytes_moved,
            switch_s: o.switch_ms as f64 / 1000.0,
            decisions: o.decisions,
            median_decision_ms: percentile(&o.decision_us, 0.5) / 1000.0,
            p95_decision_ms: percentile(&o.decision_us, 0.95) / 1000.0,
            p99_decision_ms: percentile(&o.decision_us, 0.99) / 1000.0,
            planned_rounds: o.planned.len(),
            median_planned_round_ms: percentile(&o.planned.iter().map(|p| p.0).collect::<Vec<_>>(), 0.5) / 1000.0,
            median_vms_per_round: percentile(&o.planned.iter().map(|p| p.1 as u64).collect::<Vec<_>>(), 0.5),
            energy_kwh: o.energy_j / 3.6e6,
            energy_kwh_without_power_management: o.energy_all_on_j / 3.6e6,
            node_boots: o.node_boots,
            node_shutdowns: o.node_shutdowns,
            wall_s,
            user_mean_wait_s: per_user.into_iter().map(|(u, (w, n))| (u, w / n)).collect(),
        }
    }

    pub fn summary(&self) -> String {
        format!(
            "policy {}: {} jobs ({} skipped)\n  mean wait {:.0} s, mean bounded slowdown {:.2} (max {:.0}), utilization {:.3}, makespan {:.0} s\n  context switches: {} suspends, {} resumes, {} pauses, {} migrations, {} moved, {:.0} VM-s switching\n  {} decisions, median {:.3} ms (p95 {:.3} ms, p99 {:.3} ms); {} planned, median {:.1} ms over {:.0} VMs; simulated in {:.2} s\n  energy {:.1} kWh ({:.1} kWh with every node on), {} node boots, {} shutdowns\n",
            self.policy,
            self.jobs,
            self.skipped,
            self.mean_wait_s,
            self.mean_bounded_slowdown,
            self.max_bounded_slowdown,
            self.utilization,
            self.makespan_s,
            self.suspends,
            self.resumes,
            self.pauses,
            self.migrations,
            vjob_api::display::size(self.bytes_moved),
            self.switch_s,
            self.decisions,
            self.median_decision_ms,
            self.p95_decision_ms,
            self.p99_decision_ms,
            self.planned_rounds,
            self.median_planned_round_ms,
            self.median_vms_per_round,
            self.wall_s,
            self.energy_kwh,
            self.energy_kwh_without_power_management,
            self.node_boots,
            self.node_shutdowns
        )
    }
}

/// An SVG: utilization and queue length over time; below them, for runs of at most `gantt_max`
/// jobs, a Gantt chart of each vjob's states.
pub fn svg(title: &str, o: &Outcome, gantt_max: usize) -> String {
    let (w, h) = (1000.0, 220.0);
    let t0 = o.first_submit_ms as f64;
    let t1 = (o.last_end_ms as f64).max(t0 + 1.0);
    let x = |t: u64| 60.0 + (t as f64 - t0) / (t1 - t0) * (w - 80.0);
    let max_q = o.samples.iter().map(|s| s.queued).max().unwrap_or(1).max(1) as f64;
    let cores = o.total_cores.max(1) as f64;
    let mut util = String::new();
    let mut queue = String::new();
    let mut last: Option<(f64, f64, f64)> = None;
    for s in &o.samples {
        let (px, pu, pq) = (
            x(s.t_ms),
            20.0 + (1.0 - s.busy_cores as f64 / cores) * 160.0,
            240.0 + (1.0 - s.queued as f64 / max_q) * 160.0,
        );
        if let Some((_, lu, lq)) = last {
            util.push_str(&format!("{px:.1},{lu:.1} "));
            queue.push_str(&format!("{px:.1},{lq:.1} "));
        }
        util.push_str(&format!("{px:.1},{pu:.1} "));
        queue.push_str(&format!("{px:.1},{pq:.1} "));
        last = Some((px, pu, pq));
    }
    let jobs = o
        .segments
        .iter()
        .map(|s| s.job)
        .max()
        .map(|m| m as usize + 1)
        .unwrap_or(0);
    let gantt = jobs > 0 && jobs <= gantt_max;
    let row = if gantt {
        (400.0 / jobs as f64).clamp(2.0, 12.0)
    } else {
        0.0
    };
    let total_h = 2.0 * h + if gantt { jobs as f64 * row + 40.0 } else { 0.0 };
    let mut out = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{total_h}' font-family='sans-serif' font-size='12'>\n\
         <rect width='100%' height='100%' fill='white'/>\n\
         <text x='60' y='14'>{title}: utilization (busy cores / {cores})</text>\n\
         <rect x='60' y='20' width='{}' height='160' fill='none' stroke='#999'/>\n\
         <polyline fill='none' stroke='#2a7' points='{util}'/>\n\
         <text x='60' y='234'>queue length (waiting or suspended vjobs, max {max_q})</text>\n\
         <rect x='60' y='240' width='{}' height='160' fill='none' stroke='#999'/>\n\
         <polyline fill='none' stroke='#c52' points='{queue}'/>\n",
        w - 80.0,
        w - 80.0
    );
    if gantt {
        let y0 = 2.0 * h + 20.0;
        out.push_str(&format!(
            "<text x='60' y='{}'>vjobs: running (green), waiting (grey), suspended (orange), paused (yellow), switching (blue)</text>\n",
            y0 - 4.0
        ));
        for s in &o.segments {
            let color = match s.phase {
                Phase::Running => "#2a7",
                Phase::Waiting => "#ccc",
                Phase::Suspended => "#e93",
                Phase::Paused => "#ec3",
                Phase::Starting | Phase::Suspending => "#36c",
                _ => continue,
            };
            out.push_str(&format!(
                "<rect x='{:.1}' y='{:.1}' width='{:.2}' height='{:.1}' fill='{color}'/>\n",
                x(s.start_ms),
                y0 + s.job as f64 * row,
                (x(s.end_ms) - x(s.start_ms)).max(0.3),
                (row - 1.0).max(1.0)
            ));
        }
    }
    out.push_str("</svg>\n");
    out
}
