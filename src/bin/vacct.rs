//! `vacct`: see [`vjob_submit::vacct`].

fn main() -> std::process::ExitCode {
    vjob_submit::vacct::main()
}
