//! What each API request does, and who may ask it. Runs inside the core loop; every change is
//! committed before the answer leaves (see [`crate::core_loop`]).

use vjob_api::{
    ApiError, JobOutcome, JobQuery, JobRef, JobState, NodeAdminState, NodeInfo, Op, QueueSettings, Reply,
    SubmitRequest, JOBS_LINE_PREFIX, JOBS_LINE_SUFFIX,
};

use super::Identity;
use crate::config::check_name;
use crate::core_loop::{now_ms, Core};
use crate::jobs::{Job, Queue, VmPhase};
use crate::spec::JobSpec;
use vjob_api::display::size as format_size;
use vjob_core::model::{Model, NodeIdx, VmState};
use vjob_core::plan::place::Placer;
use vjob_hypervisor::DomainState;

fn admin_only(who: &Identity, what: &str) -> Result<(), ApiError> {
    if who.admin {
        Ok(())
    } else {
        Err(ApiError::permission(format!(
            "{what} needs an administrator; {} is not one (administrators are listed under `admins` in the cluster configuration)",
            who.user
        )))
    }
}

impl Core {
    pub(super) fn handle(&mut self, who: &Identity, op: Op) -> Result<Reply, ApiError> {
        match op {
            Op::Ping => Ok(Reply::Pong {
                version: env!("CARGO_PKG_VERSION").to_string(),
                user: who.user.clone(),
                uid: who.uid,
                admin: who.admin,
            }),
            Op::Submit(req) => {
                crate::failpoint::hit("core-submit").map_err(|e| ApiError::unavailable(e.to_string()))?;
                self.submit(who, *req)
            }
            Op::Jobs(q) => Ok(Reply::Jobs {
                jobs: self
                    .select_jobs(&q)
                    .into_iter()
                    .map(|j| j.info(now_ms(), q.full))
                    .collect(),
            }),
            Op::Accounting(q) => self.accounting(&q),
            Op::Priorities => Ok(Reply::Priorities {
                configured: self.fair.ranking.is_some(),
                jobs: self.priorities(),
            }),
            Op::Shares => {
                let (half_life_s, users) = self.shares();
                Ok(Reply::Shares {
                    configured: half_life_s > 0.0,
                    half_life_s,
                    users,
                })
            }
            Op::Delete { ids } => Ok(self.per_job(who, ids, "delete", Core::cancel)),
            Op::Hold { ids } => Ok(self.per_job(who, ids, "hold", Core::hold)),
            Op::Release { ids } => Ok(self.per_job(who, ids, "release", Core::release)),
            Op::JobSet { id, throttle } => self.array_set(who, id, throttle),
            Op::Status => Ok(Reply::Status(self.status())),
            Op::Nodes => Ok(Reply::Nodes {
                nodes: self.list_nodes(),
            }),
            Op::Queues => {
                let jobs: Vec<&Job> = self.rec.active.iter().filter_map(|id| self.rec.jobs.get(id)).collect();
                Ok(Reply::Queues {
                    queues: self.rec.queues.values().map(|q| q.info(&jobs)).collect(),
                })
            }
            Op::QueueCreate(s) => {
                admin_only(who, "creating a queue")?;
                self.queue_create(s)
            }
            Op::QueueDelete { name } => {
                admin_only(who, "deleting a queue")?;
                self.queue_delete(&name)
            }
            Op::QueueSet(s) => {
                admin_only(who, "changing a queue")?;
                self.queue_set(s)
            }
            Op::NodeSet { name, state } => {
                admin_only(who, "changing a node's state")?;
                self.node_set(&name, state)
            }
            Op::NodePower { name, on } => {
                admin_only(who, "switching a node on or off")?;
                self.power_by_hand(&name, on).map(|message| Reply::Done { message })
            }
            Op::NodeLost { name } => {
                admin_only(who, "declaring a node lost")?;
                self.declare_lost(&name).map(|message| Reply::Done { message })
            }
            Op::Suspend { id } => {
                admin_only(who, "suspending a vjob by hand")?;
                let id = self.resolve_one(id)?;
                self.admin_suspend(id)
            }
            Op::Resume { id } => {
                admin_only(who, "resuming a vjob by hand")?;
                let id = self.resolve_one(id)?;
                self.admin_resume(id)
            }
            Op::Snapshot => {
                let (built, _) = self.build_decision(true, vjob_core::decision::Scope::Whole);
                let instance = built.instance.expect("a snapshot is always built");
                Ok(Reply::Snapshot {
                    instance: vjob_instances::btrplace::instance_json(&instance),
                })
            }
            Op::Migrate { id, vm, to } => {
                admin_only(who, "migrating a vjob by hand")?;
                let id = self.resolve_one(id)?;
                self.admin_migrate(id, vm, &to)
            }
            Op::PlacementReload => {
                admin_only(who, "reloading the placement scripts")?;
                self.placement_reload()
            }
        }
    }

    /// Reads the datacenter's scripts again; they replace the old ones only if they are valid,
    /// every job's script still evaluates with them, and no vjob not ended is left unable to run.
    fn placement_reload(&mut self) -> Result<Reply, ApiError> {
        let mut cfg = self.cfg.clone();
        cfg.datacenter = crate::placement::datacenter(&cfg)
            .map_err(|e| ApiError::invalid(format!("the placement scripts were not changed:\n{e}")))?;
        let mut rules = std::collections::HashMap::new();
        let mut problems = Vec::new();
        for &id in &self.rec.active {
            let job = &self.rec.jobs[&id];
            if job.state.is_final() {
                continue;
            }
            let demand = job.spec.vm.demands();
            let job_rules = match &job.spec.placement {
                Some(p) => match crate::placement::job(&cfg, &job.spec.name, p) {
                    Ok(jp) => Some(jp.rules),
                    Err(e) => {
                        problems.push(format!("job {id}: its script no longer evaluates: {e}"));
                        continue;
                    }
                },
                None => None,
            };
            let check = job_rules.clone().unwrap_or_default();
            if let Some(why) = crate::placement::never_fits(&cfg, &cfg.datacenter, &check, &demand) {
                problems.push(format!("job {id} could never run: {why}"));
            } else if cfg.datacenter.banned().len() >= cfg.nodes.len() {
                problems.push(format!("job {id} could never run: every node is banned"));
            }
            if let Some(r) = job_rules {
                rules.insert(id, std::sync::Arc::new(r));
            }
        }
        if !problems.is_empty() {
            return Err(ApiError::invalid(format!(
                "the placement scripts were not changed:\n{}",
                problems.join("\n")
            )));
        }
        let n = cfg.datacenter.constraints.len();
        self.cfg = cfg;
        self.rules = rules;
        self.board.rebuild = true;
        self.pace.need_decision = true;
        Ok(Reply::Done {
            message: format!("placement reloaded: {n} datacenter constraints"),
        })
    }

    fn submit(&mut self, who: &Identity, req: SubmitRequest) -> Result<Reply, ApiError> {
        let file = if req.file.is_empty() {
            "<spec>".to_string()
        } else {
            req.file.clone()
        };
        let (mut spec, skipped) =
            crate::spec::from_submission(&file, &req.spec, &req.files, &req.flags, req.ignore_unknown_directives)
                .map_err(ApiError::invalid)?;
        if let Some(dep) = spec.dependency.as_mut() {
            dep.resolve(|r| self.resolve(r))
                .map_err(|e| ApiError::invalid(format!("{file}: --dependency: {}", e.message)))?;
        }
        let array = spec.array.take();
        let rules = self.placement_of(&mut spec)?;
        let queue_name = match spec.queue.clone() {
            Some(q) => q,
            None => self
                .rec
                .queues
                .values()
                .find(|q| q.default)
                .map(|q| q.name.clone())
                .ok_or_else(|| ApiError::invalid("no queue given and no default queue exists; name one with -q"))?,
        };
        let queue = self.rec.queues.get(&queue_name).ok_or_else(|| {
            let known: Vec<&str> = self.rec.queues.keys().map(|s| s.as_str()).collect();
            ApiError::invalid(format!(
                "{file}: no queue named `{queue_name}` (queues: {})",
                known.join(", ")
            ))
        })?;
        if !queue.enabled {
            return Err(ApiError::invalid(format!(
                "queue `{queue_name}` is disabled: it accepts no submissions"
            )));
        }
        self.choose_image(&file, &mut spec)?;
        self.check_fits_cluster(&file, &spec)?;
        spec.queue = Some(queue_name.clone());
        let first = self.rec.next_id;
        let tasks = Core::tasks_of(array.as_ref(), first);
        self.rec.next_id += tasks.len() as u64;
        let rules = rules.map(std::sync::Arc::new);
        let now = now_ms();
        for (id, task) in &tasks {
            let mut job = Job::new(
                &self.cfg.cluster,
                *id,
                who.user.clone(),
                who.uid,
                queue_name.clone(),
                spec.clone(),
                file.clone(),
                req.cwd.clone(),
                req.hold,
                now,
            );
            job.array = *task;
            for (line, what) in &skipped {
                job.event(now, format!("directive on line {line} skipped: {what}"));
            }
            if job.spec.dependency.is_some() {
                self.deps_pending.insert(*id);
            }
            if self.fair.ranking.is_some() {
                self.fair.unranked.insert(*id);
            }
            self.rec.jobs.insert(*id, job);
            self.rec.active.insert(*id);
            if let Some(r) = &rules {
                self.rules.insert(*id, r.clone());
            }
            self.touch(*id);
        }
        if array.is_some() {
            self.arrays.insert(first, tasks.iter().map(|(id, _)| *id).collect());
        }
        self.pace.need_decision = true;
        Ok(Reply::Submitted { id: first })
    }

    /// A spec's placement script: its VMs become the spec's, and its rules are checked to be
    /// able to hold on this cluster; `None` without a script.
    fn placement_of(&self, spec: &mut JobSpec) -> Result<Option<vjob_core::placement::VjobRules>, ApiError> {
        let Some(p) = spec.placement.as_mut() else {
            return Ok(None);
        };
        let jp = crate::placement::job(&self.cfg, &spec.name, p).map_err(ApiError::invalid)?;
        p.names = jp.rules.names.clone();
        spec.vm = jp.vm;
        let demand = spec.vm.demands();
        if let Some(why) = crate::placement::never_fits(&self.cfg, &self.cfg.datacenter, &jp.rules, &demand) {
            return Err(ApiError::invalid(format!(
                "the vjob can never run on this cluster: {why}"
            )));
        }
        Ok(Some(jp.rules))
    }

    /// With guest images configured (libvirt), checks each VM's image, or picks the only one,
    /// and takes the image's memory when the spec names none.
    fn choose_image(&self, file: &str, spec: &mut JobSpec) -> Result<(), ApiError> {
        if self.cfg.images.is_empty() {
            return Ok(());
        }
        let image = self.image_named(file, spec.vm.image.as_deref())?;
        spec.vm.image = Some(image.name.clone());
        if let (true, Some(m)) = (spec.vm.default_memory, image.memory) {
            spec.vm.memory = m;
        }
        for i in 0..spec.vm.each.len() {
            let name = self.image_named(file, spec.vm.each[i].image.as_deref())?.name.clone();
            spec.vm.each[i].image = Some(name);
        }
        Ok(())
    }

    /// The configured guest image `name`, or the only one when `None`.
    fn image_named(&self, file: &str, name: Option<&str>) -> Result<&crate::config::ImageConfig, ApiError> {
        let images = &self.cfg.images;
        let names = || images.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ");
        match name {
            Some(name) => images.iter().find(|i| i.name == name).ok_or_else(|| {
                ApiError::invalid(format!(
                    "{file}: field vm.image: no image named `{name}` (images: {})",
                    names()
                ))
            }),
            None if images.len() == 1 => Ok(&images[0]),
            None => Err(ApiError::invalid(format!(
                "{file}: field vm.image: name the guest image to boot ({})",
                names()
            ))),
        }
    }

    /// Refuses a vjob that no configuration of the cluster could ever hold.
    fn check_fits_cluster(&self, file: &str, spec: &JobSpec) -> Result<(), ApiError> {
        let usable: Vec<_> = self
            .nodes
            .iter()
            .filter(|n| n.admin != NodeAdminState::Offline)
            .collect();
        let shapes = spec.vm.shapes();
        for (shape, _) in &shapes {
            let (cpus, mem) = (shape.vcpus as u64, shape.memory);
            if !usable.iter().any(|n| n.cfg.cpus as u64 >= cpus && n.cfg.memory >= mem) {
                let biggest = self
                    .nodes
                    .iter()
                    .map(|n| format!("{} cpus/{}", n.cfg.cpus, format_size(n.cfg.memory)))
                    .max()
                    .unwrap_or_default();
                return Err(ApiError::invalid(format!(
                    "{file}: a VM of {cpus} vcpus and {} is bigger than every node (largest: {biggest}); no placement could ever run it",
                    format_size(mem)
                )));
            }
        }
        let total_cpus: u64 = usable.iter().map(|n| n.cfg.cpus as u64).sum();
        let total_mem: u64 = usable.iter().map(|n| n.cfg.memory).sum();
        let too_many = |what: String| {
            ApiError::invalid(format!(
                "{file}: {what} cannot all fit in the whole cluster ({} nodes, {total_cpus} cpus, {}), even empty",
                usable.len(),
                format_size(total_mem)
            ))
        };
        if let [(shape, count)] = shapes.as_slice() {
            // The VMs are alike: on an empty cluster each node holds as many as its scarcest
            // resource allows, and they fit if those add up.
            let (cpus, mem) = (shape.vcpus as u64, shape.memory);
            let room: u64 = usable
                .iter()
                .map(|n| (n.cfg.cpus as u64 / cpus.max(1)).min(n.cfg.memory / mem.max(1)))
                .sum();
            if room < *count as u64 {
                return Err(too_many(format!(
                    "{count} VMs of {cpus} vcpus and {}",
                    format_size(mem)
                )));
            }
            return Ok(());
        }
        // VMs of several shapes: what they need together must not exceed the whole cluster.
        let (cpus, mem) = spec.vm.totals();
        if cpus > total_cpus || mem > total_mem {
            return Err(too_many(format!(
                "{} VMs of {cpus} vcpus and {} in all",
                spec.vm.count,
                format_size(mem)
            )));
        }
        Ok(())
    }

    /// The jobs a query selects: those named, else active ones and those that ended within
    /// `keep_finished` (all with `all`), of one user if asked.
    fn select_jobs(&self, q: &JobQuery) -> Vec<&Job> {
        let now = now_ms();
        let keep = self.cfg.scheduler.keep_finished_ms;
        let wanted = |j: &Job| q.user.as_ref().is_none_or(|u| &j.user == u);
        if !q.ids.is_empty() {
            return q
                .ids
                .iter()
                .flat_map(|r| self.resolve(*r).unwrap_or_default())
                .filter_map(|id| self.rec.jobs.get(&id))
                .filter(|j| wanted(j))
                .collect();
        }
        let recent = |j: &Job| !j.state.is_final() || j.end_ms.is_some_and(|e| now.saturating_sub(e) <= keep);
        self.rec
            .jobs
            .values()
            .filter(|j| wanted(j) && (q.all || recent(j)))
            .collect()
    }

    /// The answer to a job listing, as a response line, from cached JSON where it is valid.
    pub(super) fn jobs_line(&mut self, q: &JobQuery) -> String {
        let now = now_ms();
        let ids: Vec<u64> = self.select_jobs(q).iter().map(|j| j.id).collect();
        let mut line = String::with_capacity(JOBS_LINE_PREFIX.len() + ids.len() * 360);
        line.push_str(JOBS_LINE_PREFIX);
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            let job = &self.rec.jobs[id];
            let cacheable = !q.full && job.state != JobState::Running && !self.dirty.jobs.contains(id);
            if cacheable {
                let json = self.rec.json_cache.entry(*id).or_insert_with(|| {
                    serde_json::to_string(&job.info(now, false))
                        .expect("jobs serialize")
                        .into()
                });
                line.push_str(json);
            } else {
                line.push_str(&serde_json::to_string(&job.info(now, q.full)).expect("jobs serialize"));
            }
        }
        line.push_str(JOBS_LINE_SUFFIX);
        line
    }

    fn status(&self) -> vjob_api::ServerStatus {
        let mut jobs = std::collections::BTreeMap::new();
        for j in self.rec.active.iter().filter_map(|id| self.rec.jobs.get(id)) {
            *jobs.entry(j.state.as_str().to_string()).or_insert(0) += 1;
        }
        let up = self.nodes.iter().filter(|n| n.up).count() as u32;
        vjob_api::ServerStatus {
            version: env!("CARGO_PKG_VERSION").to_string(),
            cluster: self.cfg.cluster.clone(),
            backend: match self.cfg.hypervisor.backend {
                crate::config::Backend::Sim => "sim".into(),
                crate::config::Backend::Libvirt => "libvirt".into(),
            },
            rounds: self.pace.rounds,
            observations: self.pace.observations,
            busy: self.plan_running(),
            nodes_up: up,
            nodes_down: self.nodes.len() as u32 - up,
            jobs,
        }
    }

    fn list_nodes(&self) -> Vec<NodeInfo> {
        let mut use_of: std::collections::HashMap<&str, (u32, u64, Vec<String>)> = Default::default();
        for job in self.rec.active.iter().filter_map(|id| self.rec.jobs.get(id)) {
            for (i, v) in job.vms.iter().enumerate() {
                if matches!(v.phase, VmPhase::Running | VmPhase::Paused) {
                    if let Some(n) = &v.node {
                        let e = use_of.entry(n.as_str()).or_default();
                        // A VM paused in memory holds no processor.
                        let shape = job.spec.vm.shape(i);
                        if v.phase == VmPhase::Running {
                            e.0 += shape.vcpus;
                        }
                        e.1 += shape.memory;
                        e.2.push(v.name.clone());
                    }
                }
            }
        }
        // A listing may predate a move of one of ours: by name, except for stale copies.
        let ours: std::collections::HashSet<&str> = self
            .rec
            .active
            .iter()
            .filter_map(|id| self.rec.jobs.get(id))
            .flat_map(|j| j.vms.iter())
            .map(|v| v.name.as_str())
            .collect();
        let stale = self.stale_copies();
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let (mut cpus_used, mut memory_used, vms) = use_of.remove(n.cfg.name.as_str()).unwrap_or_default();
                let mut other_vms = Vec::new();
                for d in &n.domains {
                    let stale_copy = stale.contains(&(d.name.clone(), n.cfg.name.clone()));
                    if (ours.contains(d.name.as_str()) && !stale_copy)
                        || matches!(d.state, DomainState::Ended { .. } | DomainState::Crashed)
                    {
                        continue;
                    }
                    if d.state == DomainState::Running {
                        cpus_used += d.vcpus;
                    }
                    memory_used += d.memory;
                    other_vms.push(d.name.clone());
                }
                NodeInfo {
                    name: n.cfg.name.clone(),
                    state: n.admin,
                    up: n.up,
                    cpus: n.cfg.cpus,
                    memory: n.cfg.memory,
                    cpus_used,
                    memory_used,
                    vms,
                    other_vms,
                    power: n.power.state.as_str().to_string(),
                    power_reason: n.power.reason.clone(),
                    watts: self.node_watts(i as vjob_core::model::NodeIdx),
                    energy_j: n.power.energy_j,
                    boots: n.power.boots,
                    shutdowns: n.power.shutdowns,
                }
            })
            .collect()
    }

    /// Does `f` to each job the references name (every task of an array), where `who` may.
    fn per_job(
        &mut self,
        who: &Identity,
        refs: Vec<JobRef>,
        what: &str,
        f: fn(&mut Core, u64) -> Result<String, ApiError>,
    ) -> Reply {
        let mut outcomes = Vec::new();
        for r in refs {
            let ids = match self.resolve(r) {
                Ok(ids) => ids,
                Err(e) => {
                    outcomes.push(JobOutcome { id: r, result: Err(e) });
                    continue;
                }
            };
            for id in ids {
                let j = &self.rec.jobs[&id];
                let label = j.label();
                let result = match j.uid != who.uid && !who.admin {
                    true => Err(ApiError::permission(format!(
                        "job {label} belongs to {}: only its owner or an administrator may {what} it",
                        j.user
                    ))),
                    false => f(self, id),
                };
                outcomes.push(JobOutcome { id: label, result });
            }
        }
        Reply::PerJob { outcomes }
    }

    fn cancel(&mut self, id: u64) -> Result<String, ApiError> {
        let now = now_ms();
        let job = self.rec.jobs.get_mut(&id).expect("checked by per_job");
        let name = job.label();
        // Cancelling what already ended is no error (workflow tools cancel without asking first).
        if job.state.is_final() {
            return Ok(format!("job {name} had already ended: {}", job.state.as_str()));
        }
        job.set_state(JobState::Cancelled, now)
            .map_err(|e| ApiError::conflict(format!("job {name}: {e}")))?;
        job.reason = Some("cancelled".into());
        job.event(now, "cancelled");
        self.touch(id);
        self.pace.need_decision = true;
        Ok(format!("job {name} cancelled"))
    }

    fn hold(&mut self, id: u64) -> Result<String, ApiError> {
        let now = now_ms();
        // A plan starting or resuming it would leave its VMs running under a held job.
        let moving = self
            .calls
            .run
            .as_ref()
            .is_some_and(|(_, _, touched)| touched.contains(&id))
            || self.rec.jobs[&id].vms.iter().any(|v| self.is_busy(&v.name));
        let job = self.rec.jobs.get_mut(&id).expect("checked by per_job");
        let name = job.label();
        if moving && job.state != JobState::Held {
            return Err(ApiError::conflict(format!(
                "job {name} is being started, resumed or suspended right now: hold it again in a moment"
            )));
        }
        match job.state {
            JobState::Queued | JobState::Suspended => {
                job.set_state(JobState::Held, now)
                    .map_err(|e| ApiError::conflict(format!("job {name}: {e}")))?;
                job.event(now, "held");
                self.touch(id);
                Ok(format!("job {name} held"))
            }
            JobState::Held => Ok(format!("job {name} was already held")),
            s => Err(ApiError::conflict(format!(
                "job {name} is {}: only queued or suspended jobs can be held",
                s.as_str()
            ))),
        }
    }

    fn release(&mut self, id: u64) -> Result<String, ApiError> {
        let now = now_ms();
        let job = self.rec.jobs.get_mut(&id).expect("checked by per_job");
        let name = job.label();
        if job.state != JobState::Held {
            return Err(ApiError::conflict(format!(
                "job {name} is {}, not held",
                job.state.as_str()
            )));
        }
        let to = if job.vms.iter().any(|v| v.phase == VmPhase::Sleeping) {
            JobState::Suspended
        } else {
            JobState::Queued
        };
        job.set_state(to, now)
            .map_err(|e| ApiError::conflict(format!("job {name}: {e}")))?;
        job.event(now, "released");
        self.touch(id);
        self.pace.need_decision = true;
        Ok(format!("job {name} released"))
    }

    fn queue_create(&mut self, s: QueueSettings) -> Result<Reply, ApiError> {
        check_name(&s.name).map_err(|m| ApiError::invalid(format!("queue name: {m}")))?;
        if self.rec.queues.contains_key(&s.name) {
            return Err(ApiError::conflict(format!("queue `{}` already exists", s.name)));
        }
        let q = Queue {
            name: s.name.clone(),
            priority: s.priority.unwrap_or(0),
            enabled: s.enabled.unwrap_or(true),
            started: s.started.unwrap_or(true),
            default: false,
            max_running: s.max_running.filter(|&m| m > 0),
            max_user_running: s.max_user_running.filter(|&m| m > 0),
        };
        self.rec.queues.insert(q.name.clone(), q);
        self.dirty.queues.insert(s.name.clone());
        if s.default == Some(true) {
            self.set_default_queue(&s.name);
        }
        Ok(Reply::Done {
            message: format!("queue {} created", s.name),
        })
    }

    fn set_default_queue(&mut self, name: &str) {
        for q in self.rec.queues.values_mut() {
            let d = q.name == name;
            if q.default != d {
                q.default = d;
                self.dirty.queues.insert(q.name.clone());
            }
        }
    }

    fn queue_delete(&mut self, name: &str) -> Result<Reply, ApiError> {
        if !self.rec.queues.contains_key(name) {
            return Err(ApiError::not_found(format!("no queue named `{name}`")));
        }
        let holding = self
            .rec
            .active
            .iter()
            .filter_map(|id| self.rec.jobs.get(id))
            .filter(|j| j.queue == name && !j.state.is_final())
            .count();
        if holding > 0 {
            return Err(ApiError::conflict(format!(
                "queue `{name}` still holds {holding} unfinished jobs: delete or let them finish first"
            )));
        }
        self.rec.queues.remove(name);
        self.dirty.queues.remove(name);
        self.dirty.deleted_queues.push(name.to_string());
        Ok(Reply::Done {
            message: format!("queue {name} deleted"),
        })
    }

    fn queue_set(&mut self, s: QueueSettings) -> Result<Reply, ApiError> {
        let q = self
            .rec
            .queues
            .get_mut(&s.name)
            .ok_or_else(|| ApiError::not_found(format!("no queue named `{}`", s.name)))?;
        let mut changes = Vec::new();
        if let Some(p) = s.priority {
            q.priority = p;
            changes.push(format!("priority={p}"));
        }
        if let Some(e) = s.enabled {
            q.enabled = e;
            changes.push(if e { "enabled" } else { "disabled" }.to_string());
        }
        if let Some(st) = s.started {
            q.started = st;
            changes.push(if st { "started" } else { "stopped" }.to_string());
        }
        if let Some(m) = s.max_running {
            q.max_running = (m > 0).then_some(m);
            changes.push(format!("max_running={m}"));
        }
        if let Some(m) = s.max_user_running {
            q.max_user_running = (m > 0).then_some(m);
            changes.push(format!("max_user_running={m}"));
        }
        self.dirty.queues.insert(s.name.clone());
        if s.default == Some(true) {
            self.set_default_queue(&s.name);
            changes.push("default".into());
        }
        self.pace.need_decision = true;
        if changes.is_empty() {
            return Err(ApiError::invalid("nothing to change: give at least one setting"));
        }
        Ok(Reply::Done {
            message: format!("queue {}: {}", s.name, changes.join(", ")),
        })
    }

    fn node_set(&mut self, name: &str, state: NodeAdminState) -> Result<Reply, ApiError> {
        let n = self
            .nodes
            .iter_mut()
            .find(|n| n.cfg.name == name)
            .ok_or_else(|| ApiError::not_found(format!("no node named `{name}`")))?;
        n.admin = state;
        self.dirty.nodes.insert(name.to_string());
        self.pace.need_decision = true;
        Ok(Reply::Done {
            message: format!("node {name} is now {}", state.as_str()),
        })
    }

    fn admin_suspend(&mut self, id: u64) -> Result<Reply, ApiError> {
        let now = now_ms();
        let job = self
            .rec
            .jobs
            .get_mut(&id)
            .ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
        let name = job.label();
        if job.state != JobState::Running {
            return Err(ApiError::conflict(format!(
                "job {name} is {}: only a running vjob can be suspended",
                job.state.as_str()
            )));
        }
        job.admin_suspended = true;
        job.event(now, "suspension requested by an administrator");
        self.touch(id);
        self.pace.need_decision = true;
        Ok(Reply::Done {
            message: format!("job {name} will be suspended"),
        })
    }

    fn admin_resume(&mut self, id: u64) -> Result<Reply, ApiError> {
        let now = now_ms();
        let job = self
            .rec
            .jobs
            .get_mut(&id)
            .ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
        let name = job.label();
        if !job.admin_suspended {
            return Err(ApiError::conflict(format!("job {name} was not suspended by hand")));
        }
        job.admin_suspended = false;
        job.event(now, "resume allowed by an administrator");
        self.touch(id);
        self.pace.need_decision = true;
        Ok(Reply::Done {
            message: format!("job {name} may resume as soon as room allows"),
        })
    }

    fn admin_migrate(&mut self, id: u64, vm: usize, to: &str) -> Result<Reply, ApiError> {
        let job = self
            .rec
            .jobs
            .get(&id)
            .ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
        let name = job.label();
        if job.state != JobState::Running {
            return Err(ApiError::conflict(format!(
                "job {name} is {}: only a running vjob can be migrated",
                job.state.as_str()
            )));
        }
        let v = job.vms.get(vm).ok_or_else(|| {
            ApiError::invalid(format!(
                "job {name} has {} VMs (0 to {})",
                job.vms.len(),
                job.vms.len() - 1
            ))
        })?;
        let dest: NodeIdx = self
            .node_idx(to)
            .ok_or_else(|| ApiError::not_found(format!("no node named `{to}`")))?;
        if v.node.as_deref() == Some(to) {
            return Err(ApiError::conflict(format!("VM {} already runs on {to}", v.name)));
        }
        let n = &self.nodes[dest as usize];
        if n.admin != NodeAdminState::Online || !n.up {
            return Err(ApiError::conflict(format!(
                "node {to} is {} and takes no VM",
                if n.up { n.admin.as_str() } else { "down" }
            )));
        }
        // Room on the destination, counting what runs there now.
        let mut m = Model::cpu_and_memory();
        m.add_node(to, true, &[n.cfg.cpus as u64, n.cfg.memory]);
        for j in self.rec.active.iter().filter_map(|i| self.rec.jobs.get(i)) {
            for (i, x) in j.vms.iter().enumerate() {
                if matches!(x.phase, VmPhase::Running | VmPhase::Paused) && x.node.as_deref() == Some(to) {
                    let shape = j.spec.vm.shape(i);
                    let cpus = if x.phase == VmPhase::Running {
                        shape.vcpus as u64
                    } else {
                        0
                    };
                    m.add_vm(x.name.clone(), VmState::Running, 0, &[cpus, shape.memory]);
                }
            }
        }
        let shape = job.spec.vm.shape(vm);
        if !Placer::from_model(&m).fits(0, &[shape.vcpus as u64, shape.memory]) {
            return Err(ApiError::conflict(format!(
                "node {to} has no room for VM {} ({} vcpus, {})",
                v.name,
                shape.vcpus,
                format_size(shape.memory)
            )));
        }
        let name = v.name.clone();
        self.rec.manual_moves.insert(name.clone(), to.to_string());
        self.pace.need_decision = true;
        Ok(Reply::Done {
            message: format!("VM {name} will migrate to {to}"),
        })
    }
}
