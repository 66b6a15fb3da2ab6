//! The client commands, one module each, and what they share: turning
//! manifest objects into requests and API objects into JSON.

pub mod apply;
pub mod delete;
pub mod describe;
pub mod env;
#[cfg(test)]
mod fake;
pub mod get;
pub mod jsonpath;
pub mod logs;
pub mod rollout;
pub mod run;

use std::process::ExitCode;

use kube::api::DynamicObject;
use serde_json::Value;
use switchboard_api::ResourceType;

use crate::GlobalArgs;
use crate::manifest::Document;

/// A manifest object resolved against the registry: its type and namespace.
pub struct Target<'a> {
    /// The resource type.
    pub rt: &'static ResourceType,
    /// The namespace (`None` for cluster-scoped types).
    pub namespace: Option<String>,
    /// The object.
    pub doc: &'a Document,
}

/// Resolves a manifest object's type and namespace: the object's own
/// namespace, else `-n`, else `default`; a conflict with an explicit `-n` is
/// an error, as in kubectl.
pub fn resolve<'a>(global: &GlobalArgs, doc: &'a Document) -> Result<Target<'a>, String> {
    let rt = ResourceType::from_kind(doc.api_version(), doc.kind()).ok_or_else(|| {
        format!(
            "no resource type for apiVersion {:?}, kind {:?}",
            doc.api_version(),
            doc.kind()
        )
    })?;
    let namespace = if rt.namespaced {
        match (doc.namespace(), global.namespace.as_deref()) {
            (Some(own), Some(flag)) if own != flag => {
                return Err(format!(
                    "the namespace from the provided object {own:?} does not match the namespace {flag:?}; you must pass '--namespace={own}' to perform this operation"
                ));
            }
            (Some(own), _) => Some(own.to_string()),
            (None, flag) => Some(flag.unwrap_or("default").to_string()),
        }
    } else {
        None
    };
    Ok(Target { rt, namespace, doc })
}

/// An API object as JSON with `apiVersion` and `kind` filled in (list items
/// may come without them).
pub fn to_value(rt: &ResourceType, obj: &DynamicObject) -> Value {
    let mut v = serde_json::to_value(obj).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        // Keep apiVersion and kind first, as kubectl prints them.
        let mut out = serde_json::Map::new();
        out.insert("apiVersion".into(), Value::String(rt.api_version()));
        out.insert("kind".into(), Value::String(rt.kind.to_string()));
        for (k, val) in std::mem::take(map) {
            if k != "apiVersion" && k != "kind" {
                out.insert(k, val);
            }
        }
        *map = out;
    }
    v
}

/// kubectl's `List` wrapper for several objects.
pub fn list_of(items: Vec<Value>) -> Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": items,
        "metadata": {"resourceVersion": ""},
    })
}

/// A value as YAML, or as pretty JSON with a final newline.
pub fn value_text(value: &Value, yaml: bool) -> anyhow::Result<String> {
    Ok(if yaml {
        serde_yaml::to_string(value)?
    } else {
        serde_json::to_string_pretty(value)? + "\n"
    })
}

/// What a command prints, gathered so tests can read it.
#[derive(Debug, Default)]
pub struct Printed {
    /// Text for stdout.
    pub stdout: String,
    /// Text for stderr.
    pub stderr: String,
    /// Whether some object failed (exit code 1).
    pub failed: bool,
}

impl Printed {
    /// Records a failure line for stderr.
    pub fn error(&mut self, line: String) {
        self.stderr.push_str(&line);
        self.stderr.push('\n');
        self.failed = true;
    }

    /// Writes the text out and turns the outcome into the exit code.
    pub fn emit(self) -> anyhow::Result<ExitCode> {
        use std::io::Write as _;
        std::io::stdout().write_all(self.stdout.as_bytes())?;
        std::io::stdout().flush()?;
        std::io::stderr().write_all(self.stderr.as_bytes())?;
        Ok(if self.failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    }
}
