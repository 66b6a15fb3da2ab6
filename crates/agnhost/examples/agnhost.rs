//! Runs agnhost standalone, for trying it by hand:
//! `cargo run -p switchboard-agnhost --example agnhost -- netexec --http-port=8080`.

fn main() -> std::process::ExitCode {
    switchboard_agnhost::main(std::env::args_os().collect())
}
