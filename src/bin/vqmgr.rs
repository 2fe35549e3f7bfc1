//! `vqmgr`: see [`vjob_submit::vqmgr`].

fn main() -> std::process::ExitCode {
    vjob_submit::vqmgr::main()
}
