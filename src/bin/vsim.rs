//! `vsim`: see [`vjob_sched::vsim`].

fn main() -> std::process::ExitCode {
    vjob_sched::vsim::main()
}
