//! Placement scripts in vjobd: the datacenter's (the configuration's `placement` files, which
//! name its nodes and state rules for every vjob through `$ALL_VMS`) and each job's (its spec's
//! `[placement]`, which declares its VMs with the configuration's templates and states where
//! they may run). Both are btrpsl; both end as planner constraints the decisions keep.

use std::path::PathBuf;

use vjob_btrpsl::{Context, Errors, Library};
use vjob_core::decision::Demands;
pub use vjob_core::placement::Datacenter;
use vjob_core::placement::VjobRules;

use crate::config::Config;
use crate::spec::{PlacementSpec, VmShape, VmTemplate, MAX_VMS_PER_JOB};

/// What scripts may name in this cluster: its templates and nodes, and `$ALL_VMS`.
fn context(cfg: &Config, default_namespace: Option<String>) -> Context {
    Context {
        templates: Some(cfg.templates.iter().map(|t| t.name.clone()).collect()),
        nodes: Some(cfg.nodes.iter().map(|n| n.name.clone()).collect()),
        globals: [vjob_core::placement::all_vms_global()].into(),
        default_namespace,
    }
}

/// Where scripts' imports are found: the directories of the datacenter's scripts.
fn include(cfg: &Config) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for p in &cfg.placement {
        let d = p
            .parent()
            .map(|d| d.to_path_buf())
            .unwrap_or_else(|| PathBuf::from("."));
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    dirs
}

fn node_names(cfg: &Config) -> Vec<String> {
    cfg.nodes.iter().map(|n| n.name.clone()).collect()
}

/// Evaluates the datacenter's scripts; every error, one a line.
pub fn datacenter(cfg: &Config) -> Result<Datacenter, String> {
    let mut lib = Library::new(include(cfg), context(cfg, None));
    let mut scripts = Vec::new();
    let mut errors = Vec::new();
    for f in &cfg.placement {
        match lib.load_file(f) {
            Ok(s) => scripts.push(s),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let evaluated: Vec<&vjob_btrpsl::Evaluated> = scripts.iter().map(|s| s.as_ref()).collect();
    match Datacenter::from_scripts(&evaluated, &node_names(cfg)) {
        Ok(dc) if errors.is_empty() => Ok(dc),
        Ok(_) => Err(errors.join("\n")),
        Err(e) => {
            errors.push(e);
            Err(errors.join("\n"))
        }
    }
}

/// A job's VMs and rules, from its placement script.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPlacement {
    pub vm: VmTemplate,
    pub rules: VjobRules,
}

/// Evaluates a job's placement script (namespace: the job's name unless it says otherwise)
/// with the cluster's templates and nodes; the VMs it declares become the vjob's, in order.
pub fn job(cfg: &Config, name: &str, p: &PlacementSpec) -> Result<JobPlacement, String> {
    let mut lib = Library::new(include(cfg), context(cfg, Some(name.to_string())));
    let script = lib
        .load_text(&p.file, &p.script)
        .map_err(|e| shifted(e, p.line_offset))?;
    if script.vms.is_empty() {
        return Err(format!(
            "{}: the placement script declares no VM (`VM[1..3] : TEMPLATE;`)",
            p.file
        ));
    }
    if script.vms.len() > MAX_VMS_PER_JOB as usize {
        return Err(format!("{}: at most {MAX_VMS_PER_JOB} VMs per vjob", p.file));
    }
    let template = |t: &Option<String>| {
        cfg.templates
            .iter()
            .find(|x| Some(&x.name) == t.as_ref())
            .expect("templates were checked by the evaluation")
    };
    let shapes: Vec<VmShape> = script
        .vms
        .iter()
        .map(|v| {
            let t = template(&v.template);
            VmShape {
                vcpus: t.vcpus,
                memory: t.memory,
                image: t.image.clone(),
            }
        })
        .collect();
    let mut rules = VjobRules::from_script(&script, &node_names(cfg)).map_err(|e| e.to_string())?;
    // Report lines of the spec for an inline script.
    if p.line_offset > 0 {
        for o in &mut rules.origins {
            *o = shift_origin(o, &p.file, p.line_offset);
        }
    }
    Ok(JobPlacement {
        vm: VmTemplate::from_shapes(shapes),
        rules,
    })
}

/// Script errors with their lines moved by `offset` (an inline script's lines in its spec).
fn shifted(e: Errors, offset: u32) -> String {
    e.0.into_iter()
        .map(|mut x| {
            x.line += offset;
            x.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `text (file:line)` with the line moved by `offset`.
fn shift_origin(origin: &str, file: &str, offset: u32) -> String {
    let tail = format!("({file}:");
    match origin.rfind(&tail) {
        Some(i) => {
            let line: u32 = origin[i + tail.len()..].trim_end_matches(')').parse().unwrap_or(0);
            format!("{}({file}:{})", &origin[..i], line + offset)
        }
        None => origin.to_string(),
    }
}

/// Why a vjob can never run on this cluster even empty, by its rules (and the datacenter's
/// bans of every VM), if it cannot.
pub fn never_fits(cfg: &Config, dc: &Datacenter, rules: &VjobRules, demand: &Demands) -> Option<String> {
    let capacity: Vec<Vec<u64>> = cfg
        .nodes
        .iter()
        .map(|n| vjob_core::resources::cpu_memory(n.cpus as u64, n.memory))
        .collect();
    let banned = dc.banned();
    rules.never_fits(&capacity, demand, &|n| !banned.contains(&n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &std::path::Path, datacenter: &str) -> Config {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("datacenter.btrp"), datacenter).unwrap();
        let text = format!(
            "state_dir = '{}'\nplacement = ['datacenter.btrp']\n\
             [[template]]\nname = 'small'\nvcpus = 1\nmemory = '1GiB'\n\
             [[template]]\nname = 'big'\nvcpus = 4\nmemory = '1GiB'\n\
             [[node]]\nname = 'n1'\ncpus = 4\nmemory = '8GiB'\n[[node]]\nname = 'n2'\ncpus = 4\nmemory = '8GiB'\n\
             [[node]]\nname = 'n3'\ncpus = 4\nmemory = '8GiB'\n[[node]]\nname = 'n4'\ncpus = 4\nmemory = '8GiB'\n",
            dir.join("state").display()
        );
        let file = dir.join("cluster.toml");
        std::fs::write(&file, &text).unwrap();
        Config::parse(&file.display().to_string(), &text).unwrap()
    }

    fn spec(script: &str) -> PlacementSpec {
        PlacementSpec {
            file: "app.toml".into(),
            script: script.into(),
            line_offset: 10,
            names: Vec::new(),
        }
    }

    #[test]
    fn a_jobs_script_declares_its_vms_and_sees_the_datacenters_racks() {
        let dir = std::env::temp_dir().join(format!("vjob-placement-{}", std::process::id()));
        let c = cfg(
            &dir,
            "namespace datacenter;\n$racks = {@n[1,2], @n[3,4]};\nban($ALL_VMS, @n4);\nexport $racks to *;\n",
        );
        let dc = datacenter(&c).unwrap();
        assert_eq!(dc.banned(), vec![3]);
        let j = job(
            &c,
            "app",
            &spec("import datacenter;\nVM[1..3] : small;\nspread($me);\namong($me, $datacenter.racks);\n"),
        )
        .unwrap();
        assert_eq!((j.vm.count, j.vm.vcpus), (3, 1));
        assert_eq!(j.rules.names, vec!["VM1", "VM2", "VM3"]);
        assert!(j.rules.origins[0].ends_with("(app.toml:13)"), "{:?}", j.rules.origins);
        // Three spread VMs fit n1..n3, but no rack of two nodes holds them apart.
        let why = never_fits(&c, &dc, &j.rules, &j.vm.demands()).unwrap();
        assert!(why.contains("no group of nodes is large enough for its 3 VMs"), "{why}");
        let j = job(
            &c,
            "two",
            &spec("import datacenter;\nVM[1..2] : small;\nspread($me);\namong($me, $datacenter.racks);\n"),
        )
        .unwrap();
        assert_eq!(never_fits(&c, &dc, &j.rules, &j.vm.demands()), None);
        let j = job(&c, "five", &spec("VM[1..5] : small;\nspread($me);\n")).unwrap();
        let why = never_fits(&c, &dc, &j.rules, &j.vm.demands()).unwrap();
        assert!(why.starts_with("spread($me); (app.toml:12): spreads 5 VMs"), "{why}");
        assert!(why.ends_with("only 3 nodes can host them"), "{why}");
        // VMs of several templates keep each its own shape.
        let j = job(&c, "mixed", &spec("VM[1..2] : small;\nVM3 : big;\n")).unwrap();
        assert_eq!((j.vm.count, j.vm.totals()), (3, (6, 3 << 30)));
        assert_eq!((j.vm.shape(1).vcpus, j.vm.shape(2).vcpus), (1, 4));
        // Two big VMs apart need two nodes of a rack with 4 free cpus: n3 and n4, but n4 is banned.
        let j = job(
            &c,
            "bigs",
            &spec("import datacenter;\nVM1 : small;\nVM[2..3] : big;\nspread(VM[2..3]);\namong(VM[2..3], $datacenter.racks);\n"),
        )
        .unwrap();
        assert_eq!(
            never_fits(&c, &dc, &j.rules, &j.vm.demands()),
            None,
            "n1, n2 hold them apart"
        );
        let j = job(&c, "bigs", &spec("VM1 : small;\nVM[2..5] : big;\nspread(VM[2..5]);\n")).unwrap();
        let why = never_fits(&c, &dc, &j.rules, &j.vm.demands()).unwrap();
        assert!(why.ends_with("only 3 nodes can host them"), "{why}");
        let e = job(&c, "bad", &spec("VM1 : huge;\nban(VM1, @n9);\n")).unwrap_err();
        assert_eq!(e.lines().count(), 2, "{e}");
        assert!(e.starts_with("app.toml:11:1: unknown template `huge`"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
