//! `switchboard get`: tables with kubectl's columns, or the objects as YAML,
//! JSON, names or a JSONPath template.

use std::process::ExitCode;

use kube::api::ListParams;
use serde_json::Value;

use super::{Printed, list_of, to_value, value_text};
use crate::GlobalArgs;
use crate::client;
use crate::table::{self, Columns};

/// Flags of `get`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// Resource type: plural, singular, short name or kind (svc, pods, ep, ns, ...).
    pub kind: String,
    /// Names of objects; all objects when none is given.
    pub names: Vec<String>,
    /// List across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Label selector, e.g. `app=web,tier!=db`.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Field selector, e.g. `metadata.name=web`.
    #[arg(long)]
    pub field_selector: Option<String>,
    /// Output format: wide, yaml, json, name or jsonpath=TEMPLATE.
    #[arg(short = 'o', long, value_parser = parse_output)]
    pub output: Option<Output>,
}

/// An output format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The table with extra columns.
    Wide,
    /// YAML.
    Yaml,
    /// JSON.
    Json,
    /// `type/name` lines.
    Name,
    /// A JSONPath template.
    JsonPath(String),
}

/// Parses `-o`.
pub fn parse_output(s: &str) -> Result<Output, String> {
    Ok(match s {
        "wide" => Output::Wide,
        "yaml" => Output::Yaml,
        "json" => Output::Json,
        "name" => Output::Name,
        _ => match s.strip_prefix("jsonpath=") {
            Some(t) => Output::JsonPath(t.to_string()),
            None => {
                return Err(format!(
                    "unable to match a printer suitable for the output format {s:?}, allowed formats are: json,jsonpath,name,wide,yaml"
                ));
            }
        },
    })
}

/// Runs `get`.
pub async fn run(global: &GlobalArgs, args: GetArgs) -> anyhow::Result<ExitCode> {
    let client = client::client(global).await?;
    get(&client, global, &args, jiff::Timestamp::now())
        .await?
        .emit()
}

/// Fetches and renders what `get` prints, ages relative to `now`.
pub async fn get(
    client: &kube::Client,
    global: &GlobalArgs,
    args: &GetArgs,
    now: jiff::Timestamp,
) -> anyhow::Result<Printed> {
    let rt = client::lookup(&args.kind)?;
    let ns = client::namespace(global);
    let all = args.all_namespaces && rt.namespaced;
    let api = client::api(client, rt, if all { None } else { Some(ns) });
    let mut out = Printed::default();

    let mut objects: Vec<Value> = Vec::new();
    if args.names.is_empty() {
        let mut lp = ListParams::default();
        if let Some(l) = &args.selector {
            lp = lp.labels(l);
        }
        if let Some(f) = &args.field_selector {
            lp = lp.fields(f);
        }
        let list = api
            .list(&lp)
            .await
            .map_err(|e| anyhow::anyhow!(client::describe_error(&e)))?;
        objects.extend(list.items.iter().map(|o| to_value(rt, o)));
    } else {
        for name in &args.names {
            match api.get(name).await {
                Ok(o) => objects.push(to_value(rt, &o)),
                Err(e) => out.error(client::describe_error(&e)),
            }
        }
    }

    let single = args.names.len() == 1 && objects.len() == 1;
    let listing = args.names.is_empty();
    if listing && objects.is_empty() && !matches!(args.output, Some(Output::Yaml | Output::Json)) {
        out.stderr
            .push_str(&no_resources(rt.namespaced && !all, ns));
        out.stderr.push('\n');
        return Ok(out);
    }
    match &args.output {
        Some(Output::Yaml | Output::Json) => {
            let yaml = args.output == Some(Output::Yaml);
            if single {
                out.stdout = value_text(&objects[0], yaml)?;
            } else if !objects.is_empty() || listing {
                out.stdout = value_text(&list_of(objects), yaml)?;
            }
        }
        Some(Output::JsonPath(template)) => {
            let root = if single {
                objects.swap_remove(0)
            } else {
                list_of(objects)
            };
            out.stdout = super::jsonpath::render(template, &root)
                .map_err(|e| anyhow::anyhow!("error executing jsonpath: {e}"))?;
        }
        Some(Output::Name) => {
            for o in &objects {
                let name = o
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                out.stdout.push_str(&client::type_name(rt, name));
                out.stdout.push('\n');
            }
        }
        Some(Output::Wide) | None if objects.is_empty() => {}
        Some(Output::Wide) | None => {
            let columns = Columns {
                namespace: all,
                wide: args.output == Some(Output::Wide),
            };
            out.stdout = table::build(rt.kind, &objects, columns, now).render();
        }
    }
    Ok(out)
}

/// kubectl's message for an empty listing.
pub fn no_resources(namespaced: bool, ns: &str) -> String {
    if namespaced {
        format!("No resources found in {ns} namespace.")
    } else {
        "No resources found".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_formats_parse() {
        assert_eq!(parse_output("wide"), Ok(Output::Wide));
        assert_eq!(
            parse_output("jsonpath={.spec.clusterIP}"),
            Ok(Output::JsonPath("{.spec.clusterIP}".into()))
        );
        assert!(
            parse_output("table")
                .unwrap_err()
                .contains("allowed formats")
        );
    }

    #[test]
    fn empty_listing_message_names_the_namespace() {
        assert_eq!(
            no_resources(true, "default"),
            "No resources found in default namespace."
        );
        assert_eq!(no_resources(false, "default"), "No resources found");
    }
}

#[cfg(test)]
mod against_fake {
    use super::*;
    use crate::cmd::fake::{global, seeded};
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct H {
        #[command(flatten)]
        get: GetArgs,
    }

    async fn get_with(client: &kube::Client, ns: Option<&str>, argv: &[&str]) -> Printed {
        let args = H::try_parse_from(std::iter::once("get").chain(argv.iter().copied()))
            .unwrap()
            .get;
        let now: jiff::Timestamp = "2026-01-01T00:03:02Z".parse().unwrap();
        get(client, &global(ns), &args, now).await.unwrap()
    }

    #[tokio::test]
    async fn tables_names_yaml_and_jsonpath() {
        let client = seeded().await;
        let out = get_with(&client, None, &["svc"]).await;
        let mut lines = out.stdout.lines();
        assert_eq!(
            lines.next(),
            Some("NAME   TYPE        CLUSTER-IP    EXTERNAL-IP   PORT(S)   AGE")
        );
        let row = lines.next().unwrap();
        assert!(row.starts_with("web    ClusterIP   127.96.0."), "{row}");
        assert!(row.ends_with("<none>        80/TCP    3m2s"), "{row}");

        let out = get_with(&client, None, &["pods", "-A", "-o", "wide"]).await;
        assert!(
            out.stdout.starts_with(
                "NAMESPACE   NAME    READY   STATUS    RESTARTS   AGE    IP       NODE\n"
            ),
            "{}",
            out.stdout
        );
        assert_eq!(out.stdout.lines().count(), 4);

        let out = get_with(&client, None, &["po", "-l", "app=web", "-o", "name"]).await;
        assert_eq!(out.stdout, "pod/web-0\npod/web-1\npod/web-2\n");

        let out = get_with(
            &client,
            None,
            &["svc", "web", "-o", "jsonpath={.spec.clusterIP}"],
        )
        .await;
        assert!(
            out.stdout.starts_with("127.96.0.") && !out.stdout.contains('\n'),
            "{:?}",
            out.stdout
        );

        let out = get_with(&client, None, &["service", "web", "-o", "yaml"]).await;
        assert!(
            out.stdout.starts_with("apiVersion: v1\nkind: Service\n"),
            "{}",
            out.stdout
        );
        let out = get_with(&client, None, &["pods", "-o", "json"]).await;
        let list: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(list["kind"], "List");
        assert_eq!(list["items"].as_array().map(Vec::len), Some(3));
    }

    #[tokio::test]
    async fn missing_objects_and_empty_namespaces() {
        let client = seeded().await;
        let out = get_with(&client, None, &["svc", "nope"]).await;
        assert!(out.failed);
        assert_eq!(
            out.stderr,
            "Error from server (NotFound): services \"nope\" not found\n"
        );
        let out = get_with(&client, Some("empty"), &["svc"]).await;
        assert!(!out.failed);
        assert_eq!(out.stdout, "");
        assert_eq!(out.stderr, "No resources found in empty namespace.\n");
    }
}
