//! `switchboard run -- CMD ARGS`: runs a command with the service
//! environment variables of the namespace (as `switchboard env` prints them)
//! added to its environment, so a program written for a pod can be tried
//! from the host. The command replaces this process (exec), so its exit
//! status and signals are its own.

use std::ffi::OsString;
use std::process::ExitCode;

use super::env::service_env;
use crate::GlobalArgs;
use crate::client;

/// Flags of `run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// As for a pod with `enableServiceLinks: false`: only the `kubernetes`
    /// service's variables.
    #[arg(long)]
    pub no_service_links: bool,
    /// The command and its arguments (put them after `--`).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<OsString>,
}

/// Runs `run`: only returns if the command could not be started.
pub async fn run(global: &GlobalArgs, args: RunArgs) -> anyhow::Result<ExitCode> {
    let client = client::client(global).await?;
    let env = service_env(&client, client::namespace(global), !args.no_service_links).await?;
    let Some((program, rest)) = args.command.split_first() else {
        // clap's `required = true` guarantees a command.
        anyhow::bail!("no command given");
    };
    let mut cmd = std::process::Command::new(program);
    // Service variables win over inherited ones of the same name: the
    // command should see the cluster as it is now, not a stale export.
    cmd.args(rest).envs(env);
    let err = exec(&mut cmd);
    let shown = program.to_string_lossy();
    // The shell's conventions: 127 not found, 126 found but not runnable.
    let code = match err.kind() {
        std::io::ErrorKind::NotFound => {
            eprintln!("error: command not found: {shown}");
            127
        }
        std::io::ErrorKind::PermissionDenied => {
            eprintln!("error: cannot run {shown}: permission denied");
            126
        }
        _ => {
            eprintln!("error: cannot run {shown}: {err}");
            126
        }
    };
    Ok(ExitCode::from(code))
}

#[cfg(unix)]
fn exec(cmd: &mut std::process::Command) -> std::io::Error {
    use std::os::unix::process::CommandExt as _;
    cmd.exec()
}

#[cfg(not(unix))]
fn exec(cmd: &mut std::process::Command) -> std::io::Error {
    match cmd.status() {
        Ok(status) => std::process::exit(status.code().unwrap_or(1)),
        Err(e) => e,
    }
}
