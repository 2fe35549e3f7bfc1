//! `vsim`: see [`vjob_simulator::cli`].

fn main() -> std::process::ExitCode {
    vjob_simulator::cli::main()
}
