//! `vstat`: see [`vjob_submit::vstat`].

fn main() -> std::process::ExitCode {
    vjob_submit::vstat::main()
}
