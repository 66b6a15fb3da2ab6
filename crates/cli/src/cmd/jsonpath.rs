//! A small subset of kubectl's JSONPath templates: literal text with
//! `{.a.b[0].c}` and `{.items[*].metadata.name}` expressions.

use serde_json::Value;

/// Renders `template` against `root`.
///
/// Supported: `.field` steps, `[N]` indexes (negative from the end) and `[*]`
/// wildcards; `{.}` is the root. Several results are joined with a space,
/// strings print bare, other values as JSON, as kubectl does.
pub fn render(template: &str, root: &Value) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .map(|c| open + c)
            .ok_or_else(|| format!("unclosed expression in {template:?}"))?;
        let expr = rest[open + 1..close].trim();
        let values = evaluate(expr, root)?;
        let text: Vec<String> = values
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        out.push_str(&text.join(" "));
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn evaluate<'a>(expr: &str, root: &'a Value) -> Result<Vec<&'a Value>, String> {
    let path = expr.strip_prefix('$').unwrap_or(expr);
    if !path.starts_with('.') && !path.is_empty() {
        return Err(format!(
            "unsupported JSONPath expression {expr:?}: expected {{.field...}}"
        ));
    }
    let mut current = vec![root];
    for step in path.split('.').skip(1).filter(|s| !s.is_empty()) {
        let (field, indexes) = match step.find('[') {
            Some(i) => (&step[..i], &step[i..]),
            None => (step, ""),
        };
        if !field.is_empty() {
            current = current.into_iter().filter_map(|v| v.get(field)).collect();
        }
        let mut idx = indexes;
        while let Some(inner) = idx.strip_prefix('[') {
            let end = inner
                .find(']')
                .ok_or_else(|| format!("unclosed [ in JSONPath expression {expr:?}"))?;
            let sel = &inner[..end];
            current = if sel == "*" {
                current
                    .into_iter()
                    .flat_map(|v| match v {
                        Value::Array(a) => a.iter().collect::<Vec<_>>(),
                        Value::Object(m) => m.values().collect(),
                        _ => Vec::new(),
                    })
                    .collect()
            } else {
                let n: i64 = sel
                    .parse()
                    .map_err(|_| format!("unsupported index [{sel}] in {expr:?}"))?;
                current
                    .into_iter()
                    .filter_map(|v| {
                        let a = v.as_array()?;
                        let i = if n < 0 { a.len() as i64 + n } else { n };
                        usize::try_from(i).ok().and_then(|i| a.get(i))
                    })
                    .collect()
            };
            idx = &inner[end + 1..];
        }
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dotted_paths_indexes_and_wildcards() {
        let svc =
            json!({"spec": {"clusterIP": "127.96.0.7", "ports": [{"port": 80}, {"port": 443}]}});
        assert_eq!(render("{.spec.clusterIP}", &svc).unwrap(), "127.96.0.7");
        assert_eq!(render("{.spec.ports[0].port}", &svc).unwrap(), "80");
        assert_eq!(render("{.spec.ports[-1].port}", &svc).unwrap(), "443");
        assert_eq!(
            render("ports={.spec.ports[*].port}!", &svc).unwrap(),
            "ports=80 443!"
        );
        assert_eq!(render("{.spec.missing}", &svc).unwrap(), "");
        assert!(render("{.spec", &svc).is_err());
    }
}
