//! `vplan`: see [`vjob_vplan`].

fn main() -> std::process::ExitCode {
    vjob_vplan::main()
}
