//! The core loop driven by hand on the simulated backend: observations are built and ordered
//! by the test, so races between node reports become deterministic.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use vjob_api::{JobState, Op as ApiOp, Reply, SubmitRequest};
use vjob_hypervisor::sim::SimCluster;

use super::*;
use crate::exec::{Backends, CallDone};
use crate::{open_backends, Identity, NodeAnswer, NodeReport};

/// A core on two simulated nodes, n1 and n2, whose loop the test turns.
struct Rig {
    core: Core,
    done: Receiver<CallDone>,
    backends: Backends,
    sim: SimCluster,
    dir: PathBuf,
}

fn config(dir: &std::path::Path, extra_top: &str) -> Config {
    config_with_tables(dir, extra_top, "")
}

/// [`config`] with more tables (`[power]`, say) at its end.
fn config_with_tables(dir: &std::path::Path, extra_top: &str, tables: &str) -> Config {
    config_of(dir, extra_top, 2, "50ms", tables)
}

/// A configuration of `nodes` simulated nodes n1, n2, ... of 2 cpus and 4 GiB each.
fn config_of(dir: &std::path::Path, extra_top: &str, nodes: usize, node_timeout: &str, tables: &str) -> Config {
    let nodes: String = (1..=nodes)
        .map(|i| format!("[[node]]\nname = \"n{i}\"\ncpus = 2\nmemory = \"4GiB\"\n"))
        .collect();
    let text = format!(
        "{extra_top}state_dir = \"{}\"\nadmins = [\"root\"]\n\
         [hypervisor]\nbackend = \"sim\"\nsim_dir = \"{}\"\nboot_time = \"20ms\"\npause_time = \"1ms\"\ndestroy_time = \"1ms\"\n\
         save_overhead = \"10ms\"\nmigrate_overhead = \"10ms\"\n\
         {nodes}[scheduler]\nnode_timeout = \"{node_timeout}\"\n{tables}",
        dir.join("state").display(),
        dir.join("sim").display(),
    );
    Config::parse("test.toml", &text).unwrap()
}

impl Rig {
    fn new(tag: &str) -> Rig {
        let dir = std::env::temp_dir().join(format!("vjob-core-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Rig::open(dir, "")
    }

    fn open(dir: PathBuf, extra_top: &str) -> Rig {
        let cfg = config(&dir, extra_top);
        Rig::from_config(dir, cfg)
    }

    fn from_config(dir: PathBuf, cfg: Config) -> Rig {
        std::fs::create_dir_all(&cfg.state_dir).unwrap();
        let backends = open_backends(&cfg).unwrap();
        let (tx, done) = crossbeam_channel::unbounded();
        let exec = Executor::start(backends.clone(), 4, tx);
        let sim = SimCluster::open(&cfg.hypervisor.sim_dir, &[], cfg.hypervisor.durations).unwrap();
        let first = Observation {
            started: Instant::now(),
            nodes: Vec::new(),
            images: None,
        };
        let core = Core::open(cfg, exec, first).unwrap();
        let mut rig = Rig {
            core,
            done,
            backends,
            sim,
            dir,
        };
        rig.observe(&["n1", "n2"]);
        rig
    }

    /// This rig's vjobd stopped and another started on its state (as after `kill -9` once the
    /// last commit is on disk).
    fn restart(mut self) -> Rig {
        let dir = std::mem::take(&mut self.dir);
        drop(self);
        Rig::open(dir, "")
    }

    fn root() -> Identity {
        Identity {
            uid: 0,
            user: "root".into(),
            admin: true,
        }
    }

    fn submit(&mut self, spec: &str) -> u64 {
        let req = SubmitRequest {
            file: "job.toml".into(),
            spec: spec.into(),
            ..Default::default()
        };
        match self.core.handle(&Rig::root(), ApiOp::Submit(Box::new(req))).unwrap() {
            Reply::Submitted { id } => id,
            other => panic!("{other:?}"),
        }
    }

    /// A report of `node` as it answers now.
    fn report(&self, node: &str) -> NodeReport {
        let began = Instant::now();
        let answer = match crate::poll::list_with_boot_id(self.backends[node].as_ref()) {
            Ok((d, boot_id)) => NodeAnswer::Listed(d, boot_id),
            Err(e) => NodeAnswer::Failed(e.to_string()),
        };
        NodeReport {
            node: node.into(),
            began,
            answer,
        }
    }

    /// One observation of the nodes, their reports in this order.
    fn observe(&mut self, order: &[&str]) {
        let nodes: Vec<NodeReport> = order.iter().map(|n| self.report(n)).collect();
        let started = nodes.iter().map(|r| r.began).min().unwrap_or_else(Instant::now);
        self.core.reconcile(Observation {
            started,
            nodes,
            images: None,
        });
    }

    /// Takes in every call's result until nothing is in flight.
    fn drain(&mut self) {
        let t0 = Instant::now();
        while self.core.calls.run.is_some() || !self.core.calls.cleanups.is_empty() {
            assert!(t0.elapsed() < Duration::from_secs(20), "calls do not end");
            if let Ok(d) = self.done.recv_timeout(Duration::from_millis(100)) {
                self.core.on_done(d);
            }
        }
    }

    /// A decision round, carried out to its end. The board kept across rounds decides as one
    /// built afresh.
    fn decide(&mut self) {
        let (kept, _) = self.core.kept_decision(vjob_core::decision::Scope::Whole);
        let (fresh, _) = self.core.build_decision(false, vjob_core::decision::Scope::Whole);
        assert_eq!(kept, fresh, "the kept board and a fresh one disagree");
        self.core.decide();
        self.drain();
    }

    fn job(&self, id: u64) -> &Job {
        &self.core.rec.jobs[&id]
    }

    fn names_on(&self, node: &str) -> Vec<String> {
        self.backends[node]
            .list()
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .collect()
    }

    fn set_down(&self, node: &str, down: bool) {
        let marker = self.sim.down_marker(node);
        if down {
            std::fs::write(marker, "").unwrap();
        } else {
            std::fs::remove_file(marker).unwrap();
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

const ONE_VM: &str = "name = \"j\"\n[vm]\ncount = 1\nvcpus = 2\nmemory = \"1GiB\"\n[run]\nscript = \"x\"\n";

/// Submits `spec`, lets it start, observes. Returns the job and the node of its first VM.
fn started(rig: &mut Rig, spec: &str) -> (u64, String) {
    let id = rig.submit(spec);
    rig.decide();
    rig.observe(&["n1", "n2"]);
    assert_eq!(rig.job(id).state, JobState::Running, "{:?}", rig.job(id).events);
    (id, rig.job(id).vms[0].node.clone().unwrap())
}

/// Node `node` stops answering and, past the node timeout, is declared lost by hand although
/// its VMs go on (as a node whose domains come back when it is switched on again): what a
/// stale copy is.
fn lose_keeping_vms(rig: &mut Rig, node: &str) {
    rig.set_down(node, true);
    rig.observe(&["n1", "n2"]);
    std::thread::sleep(Duration::from_millis(60));
    rig.core.declare_lost(node).unwrap();
    rig.observe(&["n1", "n2"]);
}

/// Node `node` answers again and is switched on by hand.
fn bring_back(rig: &mut Rig, node: &str) {
    rig.set_down(node, false);
    rig.core.power_by_hand(node, true).unwrap();
    rig.drain();
}

/// Job `id` is queued again, and its reason says `why`.
fn assert_queued_because(rig: &Rig, id: u64, why: &str) {
    let job = rig.job(id);
    assert_eq!(job.state, JobState::Queued, "{:?}", job.events);
    assert!(job.reason.as_deref().unwrap_or("").contains(why), "{:?}", job.reason);
}

/// Runs a 1-VM job, loses its node, lets it start again on the other one. Returns (job, lost
/// node, other node).
fn requeued_elsewhere(rig: &mut Rig) -> (u64, String, String) {
    let id = rig.submit(ONE_VM);
    rig.decide();
    rig.observe(&["n1", "n2"]);
    assert_eq!(rig.job(id).state, JobState::Running);
    let first = rig.job(id).vms[0].node.clone().unwrap();
    let other = if first == "n1" { "n2" } else { "n1" }.to_string();
    lose_keeping_vms(rig, &first);
    assert_eq!(rig.job(id).state, JobState::Queued, "requeued once its node is lost");
    assert_eq!(rig.job(id).stale, vec![(format!("vjob-{id}-0"), first.clone())]);
    rig.decide();
    rig.observe(&[&other, &first]);
    assert_eq!(rig.job(id).state, JobState::Running);
    assert_eq!(rig.job(id).vms[0].node.as_deref(), Some(other.as_str()));
    (id, first, other)
}

#[test]
fn regression_stale_copy_on_a_returning_node_is_destroyed_when_its_listing_comes_last() {
    let mut rig = Rig::new("stale-last");
    let (id, first, other) = requeued_elsewhere(&mut rig);
    let vm = format!("vjob-{id}-0");
    bring_back(&mut rig, &first);
    assert_eq!(
        (rig.names_on(&first), rig.names_on(&other)),
        (vec![vm.clone()], vec![vm.clone()])
    );
    // The live copy's node answers first, the returning node (with the stale copy) last.
    rig.observe(&[&other, &first]);
    rig.drain();
    assert!(rig.names_on(&first).is_empty(), "the stale copy is destroyed");
    assert_eq!(rig.names_on(&other), vec![vm.clone()], "the live copy is left alone");
    assert!(rig.job(id).stale.is_empty(), "forgotten once the destroy is confirmed");
    rig.observe(&[&other, &first]);
    let job = rig.job(id);
    assert_eq!(
        (job.state, job.vms[0].node.as_deref()),
        (JobState::Running, Some(other.as_str()))
    );
}

#[test]
fn regression_stale_copy_is_kept_until_its_node_answers_even_when_other_rounds_miss_it() {
    let mut rig = Rig::new("stale-kept");
    let (id, first, other) = requeued_elsewhere(&mut rig);
    // Rounds where the lost node is missing altogether, or still fails: the record stays.
    rig.observe(&[&other]);
    rig.observe(&[&other, &first]);
    rig.drain();
    assert_eq!(rig.job(id).stale.len(), 1, "nothing confirmed the destroy yet");
    bring_back(&mut rig, &first);
    rig.observe(&[&first, &other]);
    rig.drain();
    assert!(rig.names_on(&first).is_empty());
    assert!(rig.job(id).stale.is_empty());
}

#[test]
fn a_requeued_vjob_waits_for_its_stale_copy_rather_than_starting_beside_it() {
    let mut rig = Rig::new("stale-wait");
    let id = rig.submit(ONE_VM);
    rig.decide();
    rig.observe(&["n1", "n2"]);
    let first = rig.job(id).vms[0].node.clone().unwrap();
    let other = if first == "n1" { "n2" } else { "n1" }.to_string();
    // The other node is offline: the vjob can only start again where its stale copy is.
    rig.core.nodes.iter_mut().find(|n| n.cfg.name == other).unwrap().admin = vjob_api::NodeAdminState::Offline;
    lose_keeping_vms(&mut rig, &first);
    assert_eq!(rig.job(id).state, JobState::Queued);
    bring_back(&mut rig, &first);
    // Its node answers: the stale copy's destroy is under way, and no decision starts the VM
    // there before it is confirmed.
    rig.observe(&[&first, &other]);
    rig.core.decide();
    assert!(
        rig.job(id).reason.as_deref().unwrap_or("").contains("stale copy"),
        "{:?}",
        rig.job(id).reason
    );
    rig.drain();
    assert!(rig.job(id).stale.is_empty());
    rig.observe(&[&first, &other]);
    rig.decide();
    rig.observe(&[&first, &other]);
    assert_eq!(rig.job(id).state, JobState::Running);
    assert_eq!(
        rig.names_on(&first),
        vec![format!("vjob-{id}-0")],
        "one copy, the new one"
    );
}

#[test]
fn another_clusters_vms_on_shared_nodes_are_load_never_adopted_nor_destroyed() {
    let dir = std::env::temp_dir().join(format!("vjob-core-two-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut alpha = Rig::open(dir.join("a"), "cluster = \"alpha\"\n");
    // beta's simulated nodes are alpha's.
    let bdir = dir.join("b");
    let mut cfg = config(&bdir, "cluster = \"beta\"\n");
    cfg.hypervisor.sim_dir = alpha.core.cfg.hypervisor.sim_dir.clone();
    let mut beta = Rig::from_config(bdir, cfg);
    let a = alpha.submit(ONE_VM);
    alpha.decide();
    alpha.observe(&["n1", "n2"]);
    let a_node = alpha.job(a).vms[0].node.clone().unwrap();
    assert_eq!(alpha.job(a).vms[0].name, format!("alpha-{a}-0"));
    // beta sees alpha's VM as load: its own 2-cpu VM goes to the other node.
    let b = beta.submit(ONE_VM);
    beta.observe(&["n1", "n2"]);
    beta.decide();
    beta.observe(&["n1", "n2"]);
    let b_node = beta.job(b).vms[0].node.clone().unwrap();
    assert_ne!(a_node, b_node, "placed around the other cluster's VM");
    // beta's job ends (cancelled): beta destroys its own VM, and only its own.
    beta.core
        .handle(&Rig::root(), ApiOp::Delete { ids: vec![b.into()] })
        .unwrap();
    for _ in 0..3 {
        beta.observe(&["n1", "n2"]);
        beta.drain();
    }
    assert!(beta.names_on(&b_node).is_empty());
    assert_eq!(
        beta.names_on(&a_node),
        vec![format!("alpha-{a}-0")],
        "alpha's VM untouched"
    );
    // A beta restarted from its state adopts nothing of alpha's.
    assert!(beta
        .core
        .rec
        .jobs
        .values()
        .all(|j| j.vms.iter().all(|v| v.name.starts_with("beta-"))));
    alpha.observe(&["n1", "n2"]);
    assert_eq!(alpha.job(a).state, JobState::Running);
    drop(beta);
    drop(alpha);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs a 1-VM job, then its node stops answering for longer than the node timeout (observed
/// before and after). Returns (job, its node).
fn running_then_silent_past_the_timeout(rig: &mut Rig) -> (u64, String) {
    let id = rig.submit(ONE_VM);
    rig.decide();
    rig.observe(&["n1", "n2"]);
    let first = rig.job(id).vms[0].node.clone().unwrap();
    rig.set_down(&first, true);
    rig.observe(&["n1", "n2"]);
    std::thread::sleep(Duration::from_millis(60));
    rig.observe(&["n1", "n2"]);
    (id, first)
}

#[test]
fn a_silent_node_is_switched_off_before_its_vjob_starts_over_even_across_a_restart() {
    let mut rig = Rig::new("fence");
    let (id, first) = running_then_silent_past_the_timeout(&mut rig);
    // Past the timeout the switch-off is under way; the vjob waits for it, still running there.
    let i = rig.core.node_idx(&first).unwrap() as usize;
    assert!(rig.core.nodes[i].fence.under_way);
    assert_eq!(rig.job(id).state, JobState::Running);
    assert!(rig
        .job(id)
        .events
        .iter()
        .any(|(_, m)| m.contains("switching it off (fencing)")));
    rig.drain();
    assert_eq!(rig.core.nodes[i].power.state, vjob_core::power::PowerState::Fenced);
    assert_ne!(rig.sim.power(&first).unwrap(), vjob_hypervisor::sim::SimPower::On);
    assert_eq!(
        rig.job(id).state,
        JobState::Running,
        "requeued at the next observation only"
    );

    // vjobd dies here; the restarted one finds the node fenced and requeues the vjob.
    rig.core.flush().unwrap();
    let mut rig = rig.restart();
    rig.observe(&["n1", "n2"]);
    assert_queued_because(&rig, id, "was switched off (fenced): its VMs there are lost");
    rig.decide();
    rig.observe(&["n1", "n2"]);
    let other = if first == "n1" { "n2" } else { "n1" };
    assert_eq!(rig.job(id).vms[0].node.as_deref(), Some(other));
    assert_eq!(rig.job(id).state, JobState::Running);
}

/// Chaos seed 100: a node fenced and switched on again by hand before the next observation
/// listed empty, and its vjobs' VMs were taken for vanished (the vjobs failed) instead of lost.
#[test]
fn regression_a_fenced_node_switched_on_before_the_requeue_still_requeues_its_vjobs() {
    let dir = std::env::temp_dir().join(format!("vjob-core-fence-on-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = config_with_tables(
        &dir,
        "",
        "[power]\nboot_time = \"10ms\"\nidle_time = \"1h\"\nconsolidate = false\n",
    );
    let mut rig = Rig::from_config(dir, cfg);
    let (id, first) = running_then_silent_past_the_timeout(&mut rig);
    rig.drain();
    // Fenced; an administrator switches it on at once, and it answers (empty) before vjobd
    // observes again.
    bring_back(&mut rig, &first);
    std::thread::sleep(Duration::from_millis(30));
    rig.observe(&["n1", "n2"]);
    assert_queued_because(&rig, id, "(fenced): its VMs there are lost");
    let i = rig.core.node_idx(&first).unwrap() as usize;
    assert_eq!(
        rig.core.nodes[i].power.lost, None,
        "no longer lost once its vjobs started over"
    );
}

/// Chaos seed 150: a hold that came while a plan was booting the vjob was taken; its VMs ran
/// under a held (then released, queued) job, ended, and the job could never finish.
#[test]
fn regression_a_hold_while_its_vjob_is_being_started_is_refused() {
    let mut rig = Rig::new("hold-starting");
    let id = rig.submit(ONE_VM);
    rig.core.decide();
    assert!(rig.core.calls.run.is_some(), "the boot is under way");
    let r = rig
        .core
        .handle(&Rig::root(), ApiOp::Hold { ids: vec![id.into()] })
        .unwrap();
    let Reply::PerJob { outcomes } = r else { panic!("{r:?}") };
    let e = outcomes[0].result.as_ref().unwrap_err();
    assert!(e.message.contains("being started"), "{}", e.message);
    rig.drain();
    rig.observe(&["n1", "n2"]);
    assert_eq!(rig.job(id).state, JobState::Running);
}

/// Chaos seed 202: a suspended vjob's VM was restored just before a crash and ended before the
/// restart; the job, still `suspended` in the records with its VM ended, could never finish.
#[test]
fn regression_a_suspended_vjob_whose_vm_ran_to_its_end_unknown_to_the_records_completes() {
    let mut rig = Rig::new("ended-unknown");
    let id = rig.submit(
        "name = \"j\"\n[vm]\ncount = 1\nvcpus = 2\nmemory = \"1GiB\"\n[run]\nscript = \"x\"\nsim_runtime = \"300ms\"\n",
    );
    rig.decide();
    rig.observe(&["n1", "n2"]);
    rig.core.handle(&Rig::root(), ApiOp::Suspend { id: id.into() }).unwrap();
    rig.decide();
    rig.observe(&["n1", "n2"]);
    assert_eq!(rig.job(id).state, JobState::Suspended);
    // Behind vjobd's back: restored on n1, and over.
    let vm = rig.job(id).vms[0].name.clone();
    let image = rig.core.image_path(&vm);
    rig.backends["n1"].restore(&image, false).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    rig.observe(&["n1", "n2"]);
    let job = rig.job(id);
    assert_eq!(
        (job.state, job.exit_code),
        (JobState::Completed, Some(0)),
        "{:?}",
        job.events
    );
}

/// Chaos seed 451: a restore completed on its node, vjobd was killed before it heard, and the
/// restarted daemon adopted the running VM, its image still on disk. The vjob ended and vjobd
/// was killed again before it removed the image: started again, it no longer looked at the
/// ended job, and the image stayed for ever. A job with an image left is active again.
#[test]
fn regression_an_image_left_by_a_restore_unknown_to_the_records_is_removed_after_a_restart() {
    let mut rig = Rig::new("left-image");
    let id = rig.submit(ONE_VM);
    rig.decide();
    rig.observe(&["n1", "n2"]);
    assert_eq!(rig.job(id).state, JobState::Running);
    let image = rig.core.image_path(&format!("vjob-{id}-0"));
    std::fs::create_dir_all(image.parent().unwrap()).unwrap();
    std::fs::write(&image, "saved memory").unwrap();
    rig.core
        .handle(&Rig::root(), ApiOp::Delete { ids: vec![id.into()] })
        .unwrap();
    rig.observe(&["n1", "n2"]);
    rig.drain();
    assert!(rig.names_on("n1").is_empty() && rig.names_on("n2").is_empty());
    rig.core.flush().unwrap();
    let mut rig = rig.restart();
    for _ in 0..3 {
        rig.observe(&["n1", "n2"]);
        rig.drain();
    }
    assert!(!image.exists(), "the image is removed");
    assert!(!rig.core.rec.active.contains(&id), "and then the job is done with");
}

/// Chaos seed 504: with one node lost for good, a sleeping VM whose image had vanished was
/// never given up on (not every node listed), and its restore was tried for ever. A node lost,
/// fenced or switched off holds nothing: the VM is lost, and its vjob says so.
#[test]
fn regression_a_vanished_image_is_given_up_on_even_with_a_node_lost_for_good() {
    let mut rig = Rig::new("vanished-image");
    let (id, host) = started(&mut rig, ONE_VM);
    let other = if host == "n1" { "n2" } else { "n1" }.to_string();
    rig.core.handle(&Rig::root(), ApiOp::Suspend { id: id.into() }).unwrap();
    rig.decide();
    rig.observe(&["n1", "n2"]);
    assert_eq!(rig.job(id).vms[0].phase, VmPhase::Sleeping);
    std::fs::remove_file(rig.core.image_path(&format!("vjob-{id}-0"))).unwrap();
    lose_keeping_vms(&mut rig, &other);
    rig.observe(&["n1", "n2"]);
    rig.drain();
    let job = rig.job(id);
    assert_eq!(job.vms[0].phase, VmPhase::Gone, "{:?}", job.events);
    assert!(
        job.events.iter().any(|(_, m)| m.contains("lost its saved image")),
        "{:?}",
        job.events
    );
}

/// Chaos seed 821: a node lost for good was switched on again and answered, empty, before vjobd
/// had taken its VMs for lost; a VM missing from a node that answers counted as vanished, and
/// its vjob failed. The node's new boot id says it rebooted: its vjobs start over.
#[test]
fn regression_a_node_that_rebooted_between_two_listings_starts_its_vjobs_over() {
    let mut rig = Rig::new("rebooted");
    let (id, host) = started(&mut rig, ONE_VM);
    // Switched off and on again between two observations, its VM lost with the power.
    rig.sim.set_power_times(0, 0);
    rig.sim.switch(&host, false).unwrap();
    rig.sim.switch(&host, true).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    assert!(rig.names_on(&host).is_empty(), "the VM went with the power");
    rig.observe(&["n1", "n2"]);
    let why = format!("node {host} rebooted (its boot id changed): its VMs there are lost");
    assert_queued_because(&rig, id, &why);
    let i = rig.core.node_idx(&host).unwrap() as usize;
    assert_eq!(rig.core.nodes[i].power.lost, None, "the node takes VMs again");
    // The stale record of its VM is forgotten once the node confirms it holds no copy.
    rig.drain();
    rig.observe(&["n1", "n2"]);
    assert!(rig.job(id).stale.is_empty());
    rig.decide();
    rig.observe(&["n1", "n2"]);
    assert_eq!(rig.job(id).state, JobState::Running, "{:?}", rig.job(id).events);
}

/// A vjob's VM whose node is switched on again (the same boot) is not lost: a boot id that does
/// not change says nothing.
#[test]
fn a_node_that_answers_again_with_the_same_boot_keeps_its_vjobs() {
    let mut rig = Rig::new("same-boot");
    let (id, host) = started(&mut rig, ONE_VM);
    rig.set_down(&host, true);
    rig.observe(&["n1", "n2"]);
    rig.set_down(&host, false);
    rig.observe(&["n1", "n2"]);
    let job = rig.job(id);
    assert_eq!(
        (job.state, job.vms[0].node.as_deref()),
        (JobState::Running, Some(host.as_str()))
    );
}

/// Seen while chaos seed 821 was shrunk: a requeued vjob whose stale copy sat on a drained
/// node stayed eligible on the kept decision board once that node answered again (a drained
/// node's answering changed none of the states the board was rebuilt on), while a board built
/// from the records kept it waiting for the stale copy's destroy.
#[test]
fn regression_the_kept_board_sees_a_stale_copys_node_answer_again_while_drained() {
    let mut rig = Rig::new("stale-drained");
    let (_, other) = started(&mut rig, &ONE_VM.replace("vcpus = 2", "vcpus = 1"));
    let (id, first) = started(&mut rig, ONE_VM);
    assert_ne!(first, other);
    lose_keeping_vms(&mut rig, &first);
    assert_eq!(rig.job(id).state, JobState::Queued);
    rig.core.nodes.iter_mut().find(|n| n.cfg.name == first).unwrap().admin = vjob_api::NodeAdminState::Drain;
    rig.core.board.rebuild = true;
    // It waits for room: its node is drained, the other one full.
    rig.decide();
    assert_eq!(rig.job(id).state, JobState::Queued);
    // Committed, and seen by the kept board since: nothing is left marked changed.
    rig.core.flush().unwrap();
    rig.decide();
    rig.core.flush().unwrap();
    // Its node answers again, drained: the stale copy's destroy starts.
    bring_back(&mut rig, &first);
    rig.observe(&[&first, &other]);
    let (kept, _) = rig.core.kept_decision(vjob_core::decision::Scope::Whole);
    let (fresh, _) = rig.core.build_decision(false, vjob_core::decision::Scope::Whole);
    assert_eq!(kept, fresh, "the kept board drifted from the records");
    rig.drain();
}

/// A 2-VM vjob on two of three nodes (n1 to n3, 10 s node timeout): one of its nodes is lost
/// and repaired, the other cut off (on, silent, within the timeout; its VM runs on), and the
/// vjob requeued. Returns (rig, job, the cut-off node).
fn requeued_with_a_copy_on_a_silent_node(tag: &str) -> (Rig, u64, String) {
    let dir = std::env::temp_dir().join(format!("vjob-core-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let power = "[power]\nboot_time = \"10ms\"\nidle_time = \"1h\"\nconsolidate = false\n";
    let cfg = config_of(&dir, "", 3, "10s", power);
    let mut rig = Rig::from_config(dir, cfg);
    rig.observe(&ALL3);
    // Two VMs of a whole node each: on two nodes, the third left free.
    let id = rig.submit(&ONE_VM.replace("count = 1", "count = 2"));
    rig.decide();
    rig.observe(&ALL3);
    assert_eq!(rig.job(id).state, JobState::Running);
    let (a, b) = (
        rig.job(id).vms[0].node.clone().unwrap(),
        rig.job(id).vms[1].node.clone().unwrap(),
    );
    rig.set_down(&a, true);
    rig.observe(&ALL3);
    rig.core.declare_lost(&a).unwrap();
    rig.set_down(&b, true);
    rig.observe(&ALL3);
    assert_eq!(rig.job(id).state, JobState::Queued, "requeued for the loss of {a}");
    // Node a is repaired: with the free node, there is room for the vjob again.
    bring_back(&mut rig, &a);
    std::thread::sleep(Duration::from_millis(30));
    rig.observe(&ALL3);
    rig.drain();
    rig.observe(&ALL3);
    rig.decide();
    assert_queued_because(&rig, id, &format!("node {b} to answer or be fenced"));
    (rig, id, b)
}

const ALL3: [&str; 3] = ["n1", "n2", "n3"];

/// Chaos seed 906: a vjob requeued because one of its nodes was lost started its VMs again
/// while another of its VMs went on executing on a node that was on but cut off, not yet
/// fenced: that VM ran twice. A stale copy on a node that may hold it keeps the vjob waiting
/// until the node answers (and the copy is destroyed) or is fenced.
#[test]
fn regression_a_requeued_vjob_waits_for_a_silent_node_that_may_still_run_a_copy_of_its_vm() {
    let (mut rig, id, b) = requeued_with_a_copy_on_a_silent_node("silent-copy");
    // Node b answers again: its copy is destroyed, then the vjob starts.
    rig.set_down(&b, false);
    rig.observe(&ALL3);
    rig.drain();
    rig.observe(&ALL3);
    assert!(rig.job(id).stale.is_empty(), "{:?}", rig.job(id).stale);
    rig.decide();
    rig.observe(&ALL3);
    assert_eq!(rig.job(id).state, JobState::Running, "{:?}", rig.job(id).events);
}

/// The same, but the silent node, which holds nothing of the records but the stale copy, never
/// answers: past the node timeout it is fenced, and the vjob starts without it.
#[test]
fn a_silent_node_holding_only_a_stale_copy_is_fenced_and_the_vjob_starts_without_it() {
    let (mut rig, id, b) = requeued_with_a_copy_on_a_silent_node("silent-copy-fenced");
    rig.core.cfg.scheduler.node_timeout_ms = 50;
    std::thread::sleep(Duration::from_millis(60));
    rig.observe(&ALL3);
    rig.drain();
    let i = rig.core.node_idx(&b).unwrap() as usize;
    assert_eq!(rig.core.nodes[i].power.state, vjob_core::power::PowerState::Fenced);
    rig.observe(&ALL3);
    rig.decide();
    rig.observe(&ALL3);
    let job = rig.job(id);
    assert_eq!(job.state, JobState::Running, "{:?}", job.events);
    assert!(job.vms.iter().all(|v| v.node.as_deref() != Some(b.as_str())));
}
