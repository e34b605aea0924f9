//! The `intellifill` binary. Everything lives in the library; `main` only hands the command line over.

fn main() -> std::process::ExitCode {
    intellifill::cli::main()
}
