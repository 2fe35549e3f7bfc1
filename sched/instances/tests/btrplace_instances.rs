//! Every BtrPlace benchmark instance in the shared reference data is solved, and its plan passes
//! the independent checker. Where the data is absent: skipped and recorded, or failed under CI.

use std::path::Path;

#[path = "../../../tests/common/prerequisite.rs"]
mod prerequisite;

#[test]
fn every_shared_btrplace_instance_is_solved_and_checked() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/btrplace");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        prerequisite::missing(
            "every_shared_btrplace_instance_is_solved_and_checked",
            &format!(
                "no reference data at {} (the shared data beside the checkout)",
                dir.display()
            ),
        );
        return;
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".json.gz"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no instance in {}", dir.display());
    for f in files {
        let loaded = vjob_instances::btrplace::load(&f).unwrap();
        let plan = vjob_core::plan::solve(&loaded.instance).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let errors = vjob_core::check::check(&loaded.instance, &plan);
        assert!(errors.is_empty(), "{}: {errors:?}", f.display());
        // The plan survives a round trip through BtrPlace's format.
        let json = vjob_instances::btrplace::plan_json(&loaded, &plan);
        let back = vjob_instances::btrplace::parse_plan(&loaded, &json).unwrap();
        assert_eq!(back.actions.len(), plan.actions.len());
        eprintln!("{}: {} actions, valid", f.display(), plan.actions.len());
    }
}
