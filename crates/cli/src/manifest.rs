//! Reading manifests: files, directories (`*.yaml`, `*.yml`, `*.json`, sorted)
//! and stdin; multi-document YAML, JSON objects and `List` kinds. Every error
//! names the file and the document.

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::Deserialize as _;
use serde_json::Value;

/// One object read from a manifest, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Where the object came from.
    pub origin: Origin,
    /// The object as JSON.
    pub object: Value,
}

/// A file and a 1-based document number inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file (`-` for stdin).
    pub file: String,
    /// 1-based document number in the file.
    pub document: usize,
    /// 1-based index in a `List`'s items, when the object came from one.
    pub item: Option<usize>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {}", self.file, self.document)?;
        if let Some(item) = self.item {
            write!(f, ", item {item}")?;
        }
        write!(f, ")")
    }
}

impl Document {
    /// `apiVersion` of the object (validated present by the parser).
    pub fn api_version(&self) -> &str {
        self.object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// `kind` of the object (validated present by the parser).
    pub fn kind(&self) -> &str {
        self.object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// `metadata.name` of the object (validated present by the parser).
    pub fn name(&self) -> &str {
        self.object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// `metadata.namespace`, if set.
    pub fn namespace(&self) -> Option<&str> {
        self.object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }
}

/// Reads every `-f` argument in order: a file, a directory or `-` (stdin).
pub fn read_all(sources: &[PathBuf]) -> anyhow::Result<Vec<Document>> {
    let mut docs = Vec::new();
    for source in sources {
        if source.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| anyhow::anyhow!("cannot read stdin: {e}"))?;
            docs.extend(parse("-", &text, Format::Guess)?);
            continue;
        }
        for file in expand(source)? {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            docs.extend(parse(
                &file.display().to_string(),
                &text,
                Format::of(&file),
            )?);
        }
    }
    Ok(docs)
}

/// A file as itself; a directory as its manifests in name order (not recursive).
fn expand(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path)
        .map_err(|e| anyhow::anyhow!("cannot read directory {}: {e}", path.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| anyhow::anyhow!("cannot read directory {}: {e}", path.display()))?;
        let p = entry.path();
        let is_manifest = matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        );
        if is_manifest && p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// How to parse a manifest's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML, possibly several `---`-separated documents.
    Yaml,
    /// JSON, one or more concatenated values.
    Json,
    /// JSON when the text starts with `{` or `[`, YAML otherwise (stdin).
    Guess,
}

impl Format {
    /// The format a file's extension names; YAML when it names none.
    pub fn of(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// Parses a manifest's text into objects; `file` names it in errors.
pub fn parse(file: &str, text: &str, format: Format) -> anyhow::Result<Vec<Document>> {
    let format = match format {
        Format::Guess if text.trim_start().starts_with(['{', '[']) => Format::Json,
        Format::Guess => Format::Yaml,
        f => f,
    };
    let mut values = Vec::new();
    match format {
        Format::Json => {
            let stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
            for (i, value) in stream.enumerate() {
                let value = value.map_err(|e| {
                    anyhow::anyhow!("{file} (document {}): invalid JSON: {e}", i + 1)
                })?;
                values.push((i + 1, value));
            }
        }
        _ => {
            for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
                let value = Value::deserialize(doc).map_err(|e| {
                    anyhow::anyhow!("{file} (document {}): invalid YAML: {e}", i + 1)
                })?;
                values.push((i + 1, value));
            }
        }
    }

    let mut docs = Vec::new();
    for (document, value) in values {
        // Empty documents (`---` at the start or end, comments only) are skipped as kubectl does.
        if value.is_null() {
            continue;
        }
        let origin = Origin {
            file: file.to_string(),
            document,
            item: None,
        };
        if value.get("kind").and_then(Value::as_str) == Some("List") {
            let items = match value.get("items") {
                Some(Value::Array(items)) => items.clone(),
                Some(Value::Null) | None => Vec::new(),
                Some(_) => anyhow::bail!("{origin}: List.items must be a list of objects"),
            };
            for (j, item) in items.into_iter().enumerate() {
                let origin = Origin {
                    item: Some(j + 1),
                    ..origin.clone()
                };
                docs.push(check(origin, item)?);
            }
        } else {
            docs.push(check(origin, value)?);
        }
    }
    Ok(docs)
}

/// Checks that a value is an object with the fields every request needs.
fn check(origin: Origin, object: Value) -> anyhow::Result<Document> {
    if !object.is_object() {
        anyhow::bail!("{origin}: expected an object with apiVersion, kind and metadata");
    }
    for field in ["apiVersion", "kind"] {
        match object.get(field) {
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(_) => anyhow::bail!("{origin}: {field} must be a non-empty string"),
            None => anyhow::bail!("{origin}: {field} is missing"),
        }
    }
    let name = object.pointer("/metadata/name").and_then(Value::as_str);
    if name.is_none_or(str::is_empty) {
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        anyhow::bail!("{origin}: {kind}: metadata.name is missing");
    }
    Ok(Document { origin, object })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_DOCS: &str = "\
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports: [{port: 80}]
---
# only a comment
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: apps}
";

    #[test]
    fn multi_document_yaml_skips_empty_documents() {
        let docs = parse("a.yaml", TWO_DOCS, Format::Yaml).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[0].kind(), docs[0].name()), ("Service", "web"));
        assert_eq!(docs[0].namespace(), None);
        assert_eq!((docs[1].kind(), docs[1].name()), ("Pod", "web-0"));
        assert_eq!(docs[1].namespace(), Some("apps"));
        assert_eq!(docs[1].origin.to_string(), "a.yaml (document 3)");
        assert_eq!(docs[0].object["spec"]["ports"][0]["port"], 80);
    }

    #[test]
    fn json_list_is_expanded_into_its_items() {
        let text = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"Service","metadata":{"name":"a"}},
            {"apiVersion":"v1","kind":"Service","metadata":{"name":"b"}}]}"#;
        let docs = parse("l.json", text, Format::Json).unwrap();
        let names: Vec<_> = docs.iter().map(Document::name).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(docs[1].origin.to_string(), "l.json (document 1, item 2)");
    }

    #[test]
    fn a_single_json_object_is_one_document() {
        let text = r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x"}}"#;
        let docs = parse("-", text, Format::Guess).unwrap();
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].kind(), "Namespace");
    }

    #[test]
    fn bad_yaml_names_the_file_and_the_document() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\nkind: [unclosed\n";
        let err = parse("bad.yaml", text, Format::Yaml)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("bad.yaml (document 2): invalid YAML:"),
            "{err}"
        );
    }

    #[test]
    fn bad_json_names_the_file() {
        let err = parse("bad.json", "{\"kind\": ", Format::Json)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("bad.json (document 1): invalid JSON:"),
            "{err}"
        );
    }

    #[test]
    fn missing_fields_are_named() {
        let err = parse(
            "m.yaml",
            "kind: Service\nmetadata: {name: a}\n",
            Format::Yaml,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(err, "m.yaml (document 1): apiVersion is missing");
        let err = parse("m.yaml", "apiVersion: v1\nkind: Service\n", Format::Yaml)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "m.yaml (document 1): Service: metadata.name is missing"
        );
        let err = parse("m.yaml", "- 1\n- 2\n", Format::Yaml)
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected an object"), "{err}");
    }

    #[test]
    fn directories_read_manifests_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let obj = |n: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {n}}}\n");
        std::fs::write(dir.path().join("b.yml"), obj("b")).unwrap();
        std::fs::write(dir.path().join("a.yaml"), obj("a")).unwrap();
        std::fs::write(
            dir.path().join("c.json"),
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
        let docs = read_all(&[dir.path().to_path_buf()]).unwrap();
        let names: Vec<_> = docs.iter().map(Document::name).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }
}
