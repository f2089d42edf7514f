//! `wsprd`: the daemon and its tools. See `wsprd help` and
//! `docs/cli.md`.

mod cli;

fn main() {
    std::process::exit(cli::main());
}
