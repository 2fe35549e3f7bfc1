//! `vdel`: see [`vjob_submit::vdel`].

fn main() -> std::process::ExitCode {
    vjob_submit::vdel::main()
}
