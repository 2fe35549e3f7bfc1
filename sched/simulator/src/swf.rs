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
    /// are made from the shared traces).
    pub fn overlay(&self, k: u32) -> Trace {
        let k = k.max(1);
        let first = self.jobs.iter().map(|j| j.submit_s).min().unwrap_or(0);
        let span = self.jobs.iter().map(|j| j.submit_s - first).max().unwrap_or(0) + 1;
        let mut jobs = Vec::with_capacity(self.jobs.len() * k as usize);
        let users = self.jobs.iter().map(|j| j.user).max().unwrap_or(0) + 1;
        let ids = self.jobs.iter().map(|j| j.id).max().unwrap_or(0) + 1;
        for i in 0..k as u64 {
            let shift = span * i / k as u64;
            for j in &self.jobs {
                jobs.push(TraceJob {
                    id: j.id + ids * i,
                    submit_s: first + (j.submit_s - first + shift) % span,
                    user: j.user + users * i as i64,
                    ..j.clone()
                });
            }
        }
        jobs.sort_by_key(|j| (j.submit_s, j.id));
        Trace {
            jobs,
            skipped: self.skipped * k as usize,
            max_nodes: self.max_nodes.map(|n| n * k),
            max_procs: self.max_procs.map(|p| p * k),
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
        let o = t.overlay(2);
        assert_eq!((o.jobs.len(), o.max_nodes, o.max_procs), (4, Some(8), Some(8)));
        let submits: Vec<u64> = o.jobs.iter().map(|j| j.submit_s).collect();
        assert_eq!(
            submits,
            vec![0, 49, 50, 100],
            "the copy is shifted by half the span, wrapping around"
        );
        let users: std::collections::BTreeSet<i64> = o.jobs.iter().map(|j| j.user).collect();
        assert_eq!(users.len(), 4, "each copy's users are its own");
        assert_eq!(t.overlay(1), t);
    }
}
