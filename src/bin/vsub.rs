//! `vsub`: see [`vjob_submit::vsub`].

fn main() -> std::process::ExitCode {
    vjob_submit::vsub::main()
}
