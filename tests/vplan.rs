//! End-to-end tests of `vplan script` (btrpsl scripts evaluated and printed) and of
//! `vplan solve --script` (a script's constraints added to an instance, kept by the plan).

#[path = "common/prerequisite.rs"]
mod prerequisite;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

fn vplan(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_vplan")).args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

fn scripts() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/btrpsl/main/examples");
    if d.is_dir() {
        return Some(d);
    }
    prerequisite::missing("vplan script", &format!("no btrpsl examples at {}", d.display()));
    None
}

#[test]
fn vplan_script_prints_what_a_script_declares_exports_and_constrains() {
    let Some(d) = scripts() else { return };
    let adv = d.join("advanced");
    let app = adv.join("clients/app1.btrp");
    let (code, out, err) = vplan(&[
        "script",
        app.to_str().unwrap(),
        "--include",
        adv.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["namespace"], "clients.app1");
    assert_eq!(v["vms"].as_array().unwrap().len(), 30);
    assert_eq!(
        v["vms"][0],
        json!({"name": "clients.app1.VM1", "template": "large", "options": {"clone": true, "boot": 10, "halt": 5}})
    );
    assert_eq!(v["exports"]["$me"].as_array().unwrap().len(), 30);
    let spreads = v["constraints"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["id"] == "spread")
        .count();
    assert_eq!(spreads, 3);
    // The admin's script sees the client's VMs, and the datacenter's racks.
    let admin = adv.join("admin/sysadmin.btrp");
    let (code, out, err) = vplan(&["script", admin.to_str().unwrap(), "--include", adv.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("namespace admin.sysadmin"), "{out}");
    assert!(out.contains("admin.sysadmin.entropy : large"), "{out}");
    assert!(
        out.contains(r#"{"continuous":true,"id":"ban","nodes":["@srv-210"],"vm":"clients.app1.VM1"}"#),
        "{out}"
    );
}

#[test]
fn vplan_script_exits_1_with_every_error_line() {
    let dir = tempdir("bad-script");
    let f = dir.join("app.btrp");
    std::fs::write(
        &f,
        "namespace app;\nVM[1..3] : small;\nspread(VM[1..4]);\n$x = 1 +;\nfence(VM1, {});\n",
    )
    .unwrap();
    let (code, out, err) = vplan(&["script", f.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(
        lines[0].starts_with(&format!("{}:3:", f.display())) && lines[0].contains("unknown VM `VM4`"),
        "{err}"
    );
    assert!(lines[1].starts_with(&format!("{}:4:", f.display())), "{err}");
    assert!(
        lines[2].starts_with(&format!("{}:5:", f.display())) && lines[2].contains("empty sets"),
        "{err}"
    );
}

#[test]
fn vplan_solve_keeps_the_constraints_of_a_script() {
    let dir = tempdir("solve-script");
    // Four nodes of 4 cores named n1..n4, three ready VMs of 2 cores named app.VM1..3.
    let nodes: serde_json::Map<String, Value> = (0..4)
        .map(|n| (n.to_string(), json!({"runningVMs": [], "sleepingVMs": []})))
        .collect();
    let instance = json!({
        "model": {
            "mapping": {"onlineNodes": nodes, "offlineNodes": [], "readyVMs": [0, 1, 2]},
            "attributes": {"nodes": {}, "vms": {}},
            "views": [
                {"id": "shareableResource", "rcId": "cpu", "defCapacity": 4, "defConsumption": 2, "nodes": {}, "vms": {}},
                {"id": "ns", "type": "vm", "map": {"app.VM1": 0, "app.VM2": 1, "app.VM3": 2}},
                {"id": "ns", "type": "node", "map": {"@n1": 0, "@n2": 1, "@n3": 2, "@n4": 3}}
            ]
        },
        "constraints": [{"id": "running", "vm": 0}, {"id": "running", "vm": 1}, {"id": "running", "vm": 2}],
        "objective": {"id": "minimizeMTTR"}
    });
    let inst = dir.join("i.json");
    std::fs::write(&inst, instance.to_string()).unwrap();
    let script = dir.join("app.btrp");
    std::fs::write(
        &script,
        "namespace app;\nVM[1..3] : small;\nspread($me);\nban($me, @n1);\n",
    )
    .unwrap();
    let plan = dir.join("plan.json");
    let (code, out, err) = vplan(&[
        "solve",
        inst.to_str().unwrap(),
        "--script",
        script.to_str().unwrap(),
        "--check",
        "--json",
        "--out",
        plan.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["constraints"], 3 + 1 + 3, "{out}");
    assert_eq!(v["valid"], true);
    let p: Value = serde_json::from_slice(&std::fs::read(&plan).unwrap()).unwrap();
    let mut hosts: Vec<i64> = p["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["id"] == "bootVM")
        .map(|a| a["on"].as_i64().unwrap())
        .collect();
    hosts.sort();
    assert_eq!(hosts, vec![1, 2, 3], "spread over n2..n4, none on the banned n1: {p}");
    // Without room for the spread the instance is unsatisfiable, and says so.
    std::fs::write(
        &script,
        "namespace app;\nVM[1..3] : small;\nspread($me);\nban($me, @n[1,2]);\n",
    )
    .unwrap();
    let (code, _, err) = vplan(&["solve", inst.to_str().unwrap(), "--script", script.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unsatisfiable"), "{err}");
    // A script naming what the instance does not have is an error with its line.
    std::fs::write(&script, "namespace app;\nVM[1..4] : small;\nroot(VM4);\n").unwrap();
    let (code, _, err) = vplan(&["solve", inst.to_str().unwrap(), "--script", script.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("app.btrp:3: root(VM4);: VM `app.VM4` is not in the instance"),
        "{err}"
    );
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vjob-vplan-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
