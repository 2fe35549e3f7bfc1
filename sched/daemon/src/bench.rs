//! What the decision benchmark measures, set up inside the crate (the core's records are not
//! public): a daemon core on a large simulated cluster, every node running a vjob's VMs, and one
//! job arriving at a time. Not part of the daemon's interface.

use std::time::{Duration, Instant};

use vjob_api::{JobState, Op, Reply, SubmitRequest};
use vjob_core::decision::Scope;
use vjob_hypervisor::{DomainInfo, DomainState};

use crate::config::Config;
use crate::core_loop::{now_ms, Core};
use crate::exec::Executor;
use crate::jobs::VmPhase;
use crate::{open_backends, Identity, Observation};

/// One round's times: the kept board's decision, and the same decision from a board built
/// afresh (the cost of a full re-plan).
pub struct RoundTimes {
    pub kept: Duration,
    pub fresh: Duration,
    /// Actions of the plan.
    pub actions: usize,
}

/// A core on `nodes` simulated nodes of `cpus` processors, each running one vjob of
/// `vms_per_node` one-processor VMs.
pub struct DecisionBench {
    core: Core,
    dir: std::path::PathBuf,
}

impl DecisionBench {
    pub fn new(nodes: usize, cpus: u32, vms_per_node: usize) -> DecisionBench {
        let dir = std::env::temp_dir().join(format!("vjob-bench-decision-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut text = format!(
            "state_dir = \"{}\"\nadmins = [\"root\"]\n[hypervisor]\nbackend = \"sim\"\n",
            dir.join("state").display()
        );
        for n in 0..nodes {
            text.push_str(&format!(
                "[[node]]\nname = \"n{n}\"\ncpus = {cpus}\nmemory = \"64GiB\"\n"
            ));
        }
        let cfg = Config::parse("bench.toml", &text).expect("a valid configuration");
        std::fs::create_dir_all(&cfg.state_dir).expect("a state directory");
        let backends = open_backends(&cfg).expect("the simulated nodes");
        let (tx, _rx) = crossbeam_channel::unbounded();
        let exec = Executor::start(backends, 1, tx);
        let first = Observation {
            started: Instant::now(),
            nodes: Vec::new(),
            images: None,
        };
        let mut core = Core::open(cfg, exec, first).expect("a core");
        let spec = format!(
            "name = \"r\"\n[vm]\ncount = {vms_per_node}\nvcpus = 1\nmemory = \"1GiB\"\n[run]\nscript = \"x\"\n"
        );
        for n in 0..nodes {
            let id = submit(&mut core, &spec);
            let job = core.rec.jobs.get_mut(&id).expect("submitted");
            for v in job.vms.iter_mut() {
                v.phase = VmPhase::Running;
                v.node = Some(format!("n{n}"));
            }
            job.set_state(JobState::Running, now_ms()).expect("queued to running");
            core.nodes[n].domains = job
                .vms
                .iter()
                .map(|v| DomainInfo {
                    name: v.name.clone(),
                    state: DomainState::Running,
                    vcpus: 1,
                    memory: 1 << 30,
                    busy: false,
                })
                .collect();
        }
        core.flush().expect("the records written");
        core.sync_board();
        DecisionBench { core, dir }
    }

    /// One job of one VM arrives; the round decides where it starts. The job is then taken
    /// away again, so that every round sees the same cluster.
    pub fn round(&mut self) -> RoundTimes {
        let id = submit(
            &mut self.core,
            "name = \"new\"\n[vm]\ncount = 1\nvcpus = 1\nmemory = \"1GiB\"\n[run]\nscript = \"x\"\n",
        );
        let t0 = Instant::now();
        let (built, _) = self.core.kept_decision(Scope::Touched);
        let plan = built
            .plan
            .clone()
            .or_else(|| vjob_core::plan::solve(built.instance.as_ref()?).ok());
        let kept = t0.elapsed();
        let t1 = Instant::now();
        let (fresh, _) = self.core.build_decision(false, Scope::Whole);
        let _ = fresh.instance.as_ref().map(vjob_core::plan::solve);
        let fresh_t = t1.elapsed();
        assert_eq!(built.decision.run, vec![id], "the arriving job starts");
        self.core.rec.jobs.remove(&id);
        self.core.rec.active.remove(&id);
        self.core.dirty.jobs.remove(&id);
        self.core.board.jobs.insert(id);
        RoundTimes {
            kept,
            fresh: fresh_t,
            actions: plan.map_or(0, |p| p.actions.len()),
        }
    }
}

impl Drop for DecisionBench {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn submit(core: &mut Core, spec: &str) -> u64 {
    let who = Identity {
        uid: 0,
        user: "root".into(),
        admin: true,
    };
    let req = SubmitRequest {
        file: "bench.toml".into(),
        spec: spec.into(),
        ..Default::default()
    };
    match core.handle(&who, Op::Submit(Box::new(req))) {
        Ok(Reply::Submitted { id }) => id,
        other => panic!("submission refused: {other:?}"),
    }
}
