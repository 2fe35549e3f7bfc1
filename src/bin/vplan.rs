//! `vplan`: see [`vjob_sched::vplan`].

fn main() -> std::process::ExitCode {
    vjob_sched::vplan::main()
}
