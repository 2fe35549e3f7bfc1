//! The Standard Workload Format (SWF) of the Parallel Workloads Archive: one job a line, 18
//! whitespace-separated fields, `-1` for unknown, header comments starting with `;`
//! (`; MaxNodes: 100`, `; MaxProcs: 100`).

/// One job of a trace, as the simulator uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceJob {
    pub id: u64,
    /// Seconds from the trace's start.
    pub submit_s: u64,
    /// The recorded run time (field 4): known to the simulator, never to a policy.
    pub run_s: u64,
    /// Processors (field 5, else field 8).
    pub procs: u32,
    /// The user's estimate (field 9), the only run time a policy may use.
    pub requested_s: Option<u64>,
    /// Memory per processor in KiB (field 7, else field 10).
    pub mem_kib_per_proc: Option<u64>,
    pub user: i64,
}

/// A parsed trace.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Trace {
    pub jobs: Vec<TraceJob>,
    /// Jobs without a usable size or run time.
    pub skipped: usize,
    pub max_nodes: Option<u32>,
    pub max_procs: Option<u32>,
}

fn header(line: &str, key: &str) -> Option<u32> {
    let rest = line.trim_start_matches(';').trim();
    let value = rest.strip_prefix(key)?.trim_start().strip_prefix(':')?;
    value.trim().parse().ok()
}

/// Parses a trace; `file` names it in errors (`kth.swf: line 7: ...`).
pub fn parse(file: &str, text: &str) -> Result<Trace, String> {
    let mut t = Trace::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with(';') {
            t.max_nodes = t.max_nodes.or(header(line, "MaxNodes"));
            t.max_procs = t.max_procs.or(header(line, "MaxProcs"));
            continue;
        }
        let f: Vec<i64> = line
            .split_whitespace()
            .map(|x| x.parse::<f64>().map(|v| v as i64))
            .collect::<Result<_, _>>()
            .map_err(|_| format!("{file}: line {}: not a job record of numbers", i + 1))?;
        if f.len() < 18 {
            return Err(format!(
                "{file}: line {}: {} fields, a job record has 18",
                i + 1,
                f.len()
            ));
        }
        let known = |x: i64| (x >= 0).then_some(x as u64);
        let procs = [f[4], f[7]].into_iter().find(|&p| p > 0);
        let (Some(procs), Some(run_s), Some(submit_s)) = (procs, known(f[3]), known(f[1])) else {
            t.skipped += 1;
            continue;
        };
        t.jobs.push(TraceJob {
            id: f[0].max(0) as u64,
            submit_s,
            run_s,
            procs: procs as u32,
            requested_s: known(f[8]).filter(|&r| r > 0),
            mem_kib_per_proc: known(f[6]).filter(|&m| m > 0).or(known(f[9]).filter(|&m| m > 0)),
            user: f[11],
        });
    }
    t.jobs.sort_by_key(|j| (j.submit_s, j.id));
    Ok(t)
}

impl Trace {
    /// The trace laid `k` times over itself on a cluster `k` times larger: copy `i` is shifted
    /// by `i/k` of the trace's span, wrapping around, and its users are its own. The offered
    /// load per processor stays the recorded one, with `k` times as many jobs, so a trace of a
    /// hundred processors becomes one of thousands (how the large replays of the benchmarks
    /// are made from the shared traces). Only its first `limit` jobs are made: each copy is
    /// the trace in order cut where its shift wraps around, so the copies' runs are merged in
    /// order and the merge stops there (a replay of the first jobs of a large overlay holds
    /// only those).
    pub fn overlay(&self, k: u32, limit: usize) -> Trace {
        use std::cmp::Reverse;
        let k = k.max(1) as u64;
        let first = self.jobs.iter().map(|j| j.submit_s).min().unwrap_or(0);
        let span = self.jobs.iter().map(|j| j.submit_s - first).max().unwrap_or(0) + 1;
        let users = self.jobs.iter().map(|j| j.user).max().unwrap_or(0) + 1;
        let ids = self.jobs.iter().map(|j| j.id).max().unwrap_or(0) + 1;
        let mut order: Vec<&TraceJob> = self.jobs.iter().collect();
        order.sort_by_key(|j| (j.submit_s, j.id));
        let copy = |i: u64, j: &TraceJob| TraceJob {
            id: j.id + ids * i,
            submit_s: first + (j.submit_s - first + span * i / k) % span,
            user: j.user + users * i as i64,
            ..j.clone()
        };
        // Runs of jobs in order, as (copy, from, to) over `order`: per copy, the jobs its
        // shift wraps around to the start, then the others.
        let mut runs = Vec::with_capacity(2 * k as usize);
        for i in 0..k {
            let shift = span * i / k;
            let cut = order.partition_point(|j| j.submit_s - first + shift < span);
            runs.extend([(i, cut, order.len()), (i, 0, cut)].into_iter().filter(|r| r.1 < r.2));
        }
        let key = |r: usize, pos: usize| {
            let j = copy(runs[r].0, order[pos]);
            Reverse((j.submit_s, j.id, r, pos))
        };
        let mut heads: std::collections::BinaryHeap<_> = (0..runs.len()).map(|r| key(r, runs[r].1)).collect();
        let mut jobs = Vec::with_capacity(limit.min(self.jobs.len() * k as usize));
        while jobs.len() < limit {
            let Some(Reverse((_, _, r, pos))) = heads.pop() else {
                break;
            };
            jobs.push(copy(runs[r].0, order[pos]));
            if pos + 1 < runs[r].2 {
                heads.push(key(r, pos + 1));
            }
        }
        Trace {
            jobs,
            skipped: self.skipped * k as usize,
            max_nodes: self.max_nodes.map(|n| n * k as u32),
            max_procs: self.max_procs.map(|p| p * k as u32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_headers_jobs_and_skips_unusable_ones() {
        let text = "; MaxNodes: 100\n; MaxProcs: 128\n\
            1 0 10 3600 4 -1 -1 4 7200 -1 1 3 3 -1 -1 -1 -1 -1\n\
            2 5 0 -1 4 -1 -1 4 7200 -1 1 3 3 -1 -1 -1 -1 -1\n\
            3 9 0 60 -1 -1 2048 2 -1 -1 1 4 3 -1 -1 -1 -1 -1\n";
        let t = parse("t.swf", text).unwrap();
        assert_eq!((t.max_nodes, t.max_procs, t.skipped), (Some(100), Some(128), 1));
        assert_eq!(t.jobs.len(), 2);
        assert_eq!(t.jobs[0].requested_s, Some(7200));
        assert_eq!(
            (t.jobs[1].procs, t.jobs[1].requested_s, t.jobs[1].mem_kib_per_proc),
            (2, None, Some(2048))
        );
        assert!(parse("t.swf", "1 2 3\n")
            .unwrap_err()
            .starts_with("t.swf: line 1: 3 fields"));
    }

    #[test]
    fn an_overlay_keeps_the_load_per_processor_and_multiplies_the_jobs() {
        let text = "; MaxNodes: 4\n; MaxProcs: 4\n1 0 0 10 2 -1 -1 2 20 -1 1 7 -1 -1 -1 -1 -1 -1\n2 100 0 10 1 -1 -1 1 20 -1 1 8 -1 -1 -1 -1 -1 -1\n";
        let t = parse("t.swf", text).unwrap();
        let o = t.overlay(2, usize::MAX);
        assert_eq!((o.jobs.len(), o.max_nodes, o.max_procs), (4, Some(8), Some(8)));
        let submits: Vec<u64> = o.jobs.iter().map(|j| j.submit_s).collect();
        assert_eq!(
            submits,
            vec![0, 49, 50, 100],
            "the copy is shifted by half the span, wrapping around"
        );
        let users: std::collections::BTreeSet<i64> = o.jobs.iter().map(|j| j.user).collect();
        assert_eq!(users.len(), 4, "each copy's users are its own");
        assert_eq!(t.overlay(1, usize::MAX), t);
    }

    #[test]
    fn a_limited_overlay_is_the_first_jobs_of_the_whole_one_in_submission_order() {
        // Out of order, with ties of submission times, over a span that the shifts wrap.
        let lines = [(3, 40), (1, 0), (2, 0), (4, 99), (5, 40), (6, 7), (7, 61)];
        let text: String = (lines.iter())
            .map(|(id, t)| format!("{id} {t} 0 10 1 -1 -1 1 20 -1 1 {id} -1 -1 -1 -1 -1 -1\n"))
            .collect();
        let t = parse("t.swf", &text).unwrap();
        for k in [1, 2, 3, 7] {
            let whole = t.overlay(k, usize::MAX);
            // Every copy made, then sorted: what the merge must give.
            let span = 100;
            let mut sorted: Vec<TraceJob> = (0..k as u64)
                .flat_map(|i| {
                    t.jobs.iter().map(move |j| TraceJob {
                        id: j.id + 8 * i,
                        submit_s: (j.submit_s + span * i / k as u64) % span,
                        user: j.user + 8 * i as i64,
                        ..j.clone()
                    })
                })
                .collect();
            sorted.sort_by_key(|j| (j.submit_s, j.id));
            assert_eq!(whole.jobs, sorted, "k = {k}");
            for limit in 0..=whole.jobs.len() + 1 {
                let first = t.overlay(k, limit);
                assert_eq!(
                    first.jobs[..],
                    whole.jobs[..limit.min(whole.jobs.len())],
                    "k = {k}, limit {limit}"
                );
            }
        }
    }
}
