//! `vsim`: see [`vjob_simulator::cli`].

/// A replay allocates and frees small blocks for every VM it places, names and plans; with
/// mimalloc the simulation of the scale benchmark's traces runs 1.3x to 1.6x faster than with
/// the system allocator (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    vjob_simulator::cli::main()
}
