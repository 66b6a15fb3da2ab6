//! `switchboard delete`: by manifest, by name or by label selector.

use std::path::PathBuf;
use std::process::ExitCode;

use kube::api::{DeleteParams, ListParams};

use super::{Printed, resolve};
use crate::GlobalArgs;
use crate::client;

/// Flags of `delete`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// Delete the objects of these manifests (files, directories or `-`).
    #[arg(short = 'f', long = "filename", conflicts_with = "args")]
    pub files: Vec<PathBuf>,
    /// KIND NAME... (or KIND with -l).
    pub args: Vec<String>,
    /// Delete the objects of KIND matching this label selector.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Keep going when an object is already gone.
    #[arg(long)]
    pub ignore_not_found: bool,
}

/// Runs `delete`.
pub async fn run(global: &GlobalArgs, args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let client = client::client(global).await?;
    delete(&client, global, &args).await?.emit()
}

/// Deletes the objects `args` names and gathers what `delete` prints.
pub async fn delete(
    client: &kube::Client,
    global: &GlobalArgs,
    args: &DeleteArgs,
) -> anyhow::Result<Printed> {
    let mut out = Printed::default();
    let mut targets = Vec::new();
    if !args.files.is_empty() {
        for doc in crate::manifest::read_all(&args.files)? {
            let t = resolve(global, &doc).map_err(|e| {
                anyhow::anyhow!("{}: {}/{}: {e}", doc.origin, doc.kind(), doc.name())
            })?;
            targets.push((t.rt, t.namespace, doc.name().to_string()));
        }
    }
    if args.files.is_empty() {
        let Some((kind, names)) = args.args.split_first() else {
            anyhow::bail!("you must specify -f FILE, or KIND NAME..., or KIND -l SELECTOR");
        };
        let rt = client::lookup(kind)?;
        let ns = rt.namespaced.then(|| client::namespace(global).to_string());
        match (&args.selector, names.is_empty()) {
            (Some(sel), true) => {
                let api = client::api(client, rt, ns.as_deref());
                let list = api
                    .list(&ListParams::default().labels(sel))
                    .await
                    .map_err(|e| anyhow::anyhow!(client::describe_error(&e)))?;
                if list.items.is_empty() {
                    out.stderr.push_str("No resources found\n");
                }
                for o in list.items {
                    let name = o.metadata.name.unwrap_or_default();
                    targets.push((rt, ns.clone(), name));
                }
            }
            (None, false) => {
                targets.extend(names.iter().map(|n| (rt, ns.clone(), n.clone())));
            }
            (Some(_), false) => {
                anyhow::bail!("name cannot be provided when a selector is specified")
            }
            (None, true) => anyhow::bail!(
                "resource(s) were provided, but no name was specified: use KIND NAME... or -l SELECTOR"
            ),
        }
    }

    for (rt, ns, name) in targets {
        let api = client::api(client, rt, ns.as_deref());
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                out.stdout
                    .push_str(&format!("{} deleted\n", client::quoted_name(rt, &name)));
            }
            Err(e) if args.ignore_not_found && client::is_not_found(&e) => {}
            Err(e) => out.error(client::describe_error(&e)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod against_fake {
    use super::*;
    use crate::cmd::fake::{global, seeded};
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct H {
        #[command(flatten)]
        delete: DeleteArgs,
    }

    async fn delete_with(client: &kube::Client, argv: &[&str]) -> Printed {
        let args = H::try_parse_from(std::iter::once("delete").chain(argv.iter().copied()))
            .unwrap()
            .delete;
        delete(client, &global(None), &args).await.unwrap()
    }

    #[tokio::test]
    async fn by_name_by_selector_and_by_file() {
        let client = seeded().await;
        let out = delete_with(&client, &["svc", "web", "nope"]).await;
        assert_eq!(out.stdout, "service \"web\" deleted\n");
        assert_eq!(
            out.stderr,
            "Error from server (NotFound): services \"nope\" not found\n"
        );
        assert!(out.failed);

        let out = delete_with(&client, &["pods", "-l", "app=web"]).await;
        assert_eq!(
            out.stdout,
            "pod \"web-0\" deleted\npod \"web-1\" deleted\npod \"web-2\" deleted\n"
        );

        let client = seeded().await;
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/web.yaml");
        let out = delete_with(&client, &["-f", path]).await;
        assert_eq!(out.stdout.lines().count(), 4, "{}", out.stdout);
        assert!(!out.failed);
    }
}
