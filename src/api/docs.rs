//! `GET /docs`: the OpenAPI document rendered for people, on the server, from the same
//! document `/v1/openapi.json` serves: every route with its parameters, body, answers (with
//! their headers) and examples, then every schema. No script and nothing fetched: the page
//! is one response with the built-in stylesheet, under the strict Content-Security-Policy of
//! socialsyncer's pages.

use std::fmt::Write;
use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::html::{CSP, esc, html_page};

/// The page, rendered once per process (the document never changes while the daemon runs).
pub async fn serve() -> Response {
    static PAGE: LazyLock<String> = LazyLock::new(|| render(super::openapi::document()));
    (
        [
            (
                header::CONTENT_TYPE,
                "text/html; charset=utf-8".parse().expect("a valid header"),
            ),
            (header::CONTENT_SECURITY_POLICY, CSP.clone()),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                "nosniff".parse().expect("a valid header"),
            ),
        ],
        PAGE.clone(),
    )
        .into_response()
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The schema's type as a reader wants it: a link for a `$ref`, `[T]` for an array.
fn type_of(s: &Value) -> String {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("<a href=\"#schema-{0}\">{0}</a>", esc(name));
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = e.iter().map(|v| format!("<code>{}</code>", esc(&plain(v)))).collect();
        return format!("one of {}", values.join(", "));
    }
    if let Some(any) = s.get("oneOf").or_else(|| s.get("anyOf")).and_then(Value::as_array) {
        return any.iter().map(type_of).collect::<Vec<_>>().join(" or ");
    }
    let t = match s.get("type") {
        Some(Value::Array(ts)) => ts.iter().map(plain).collect::<Vec<_>>().join(" or "),
        Some(t) => plain(t),
        None => "any".into(),
    };
    match s.get("items") {
        Some(items) if t.starts_with("array") => format!("[{}]", type_of(items)),
        _ => esc(&t),
    }
}

fn plain(v: &Value) -> String {
    v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())
}

fn text(v: &Value, key: &str) -> String {
    esc(v.get(key).and_then(Value::as_str).unwrap_or_default())
}

fn example(out: &mut String, v: Option<&Value>) {
    if let Some(e) = v {
        let pretty = serde_json::to_string_pretty(e).unwrap_or_default();
        let _ = write!(out, "<pre>{}</pre>", esc(&pretty));
    }
}

fn operation(out: &mut String, method: &str, path: &str, op: &Value) {
    let id = text(op, "operationId");
    let _ = write!(
        out,
        "<section class=\"op\" id=\"op-{id}\"><h2><span class=\"method\">{}</span><code>{}</code></h2><p>{}</p>",
        method.to_uppercase(),
        esc(path),
        text(op, "summary")
    );
    if let Some(d) = op.get("description").and_then(Value::as_str) {
        let _ = write!(out, "<p class=\"muted\">{}</p>", esc(d));
    }
    let keyed = op
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|r| r.get("api_key").is_some()));
    let _ = write!(
        out,
        "<p><small>{}</small></p>",
        if keyed {
            "Needs an API key: <code>Authorization: Bearer sk_...</code>"
        } else {
            "No key needed."
        }
    );
    if let Some(params) = op.get("parameters").and_then(Value::as_array).filter(|p| !p.is_empty()) {
        out.push_str("<h3>Parameters</h3><table class=\"stack\"><thead><tr><th>Name</th><th>In</th><th>Type</th><th>Description</th></tr></thead>");
        for p in params {
            let required = if p.get("required").and_then(Value::as_bool) == Some(true) {
                " (required)"
            } else {
                ""
            };
            let _ = write!(
                out,
                "<tr><td><code>{}</code>{required}</td><td data-label=\"In\">{}</td><td data-label=\"Type\">{}</td><td>{}</td></tr>",
                text(p, "name"),
                text(p, "in"),
                p.get("schema").map(type_of).unwrap_or_default(),
                text(p, "description")
            );
        }
        out.push_str("</table>");
    }
    if let Some(body) = op.pointer("/requestBody/content/application~1json") {
        let _ = write!(
            out,
            "<h3>Request body</h3><p>{}</p>",
            body.get("schema").map(type_of).unwrap_or_default()
        );
        example(out, body.get("example"));
    }
    if let Some(responses) = op.get("responses").and_then(Value::as_object) {
        out.push_str("<h3>Answers</h3><table class=\"stack\"><thead><tr><th>Status</th><th>Body</th><th>Headers</th><th>Meaning</th></tr></thead>");
        for (status, r) in responses {
            let body = r
                .pointer("/content/application~1json/schema")
                .map(type_of)
                .unwrap_or_default();
            let headers: Vec<String> = r
                .get("headers")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(name, h)| format!("<code>{}</code>: {}", esc(name), text(h, "description")))
                .collect();
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td data-label=\"Body\">{body}</td><td>{}</td><td>{}</td></tr>",
                esc(status),
                headers.join("<br>"),
                text(r, "description")
            );
        }
        out.push_str("</table>");
        if let Some(e) = op.pointer("/responses/200/content/application~1json/example") {
            out.push_str("<p>Example answer:</p>");
            example(out, Some(e));
        }
    }
    out.push_str("</section>");
}

fn schema(out: &mut String, name: &str, s: &Value) {
    let _ = write!(out, "<section class=\"op\" id=\"schema-{0}\"><h3>{0}</h3>", esc(name));
    if let Some(d) = s.get("description").and_then(Value::as_str) {
        let _ = write!(out, "<p class=\"muted\">{}</p>", esc(d));
    }
    let required: Vec<&str> = s
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    match s.get("properties").and_then(Value::as_object) {
        Some(props) => {
            out.push_str(
                "<table class=\"stack\"><thead><tr><th>Field</th><th>Type</th><th>Description</th></tr></thead>",
            );
            for (field, p) in props {
                let req = if required.contains(&field.as_str()) {
                    ""
                } else {
                    " (optional)"
                };
                let _ = write!(
                    out,
                    "<tr><td><code>{}</code>{req}</td><td data-label=\"Type\">{}</td><td>{}</td></tr>",
                    esc(field),
                    type_of(p),
                    text(p, "description")
                );
            }
            out.push_str("</table>");
        }
        None => {
            let _ = write!(out, "<p>{}</p>", type_of(s));
        }
    }
    out.push_str("</section>");
}

/// The page's HTML.
pub fn render(doc: &Value) -> String {
    let mut body = format!(
        "<p>{}</p><p>The machine-readable document: <a href=\"/v1/openapi.json\"><code>/v1/openapi.json</code></a> \
         (OpenAPI {}).</p><h2>Routes</h2><table class=\"stack\">",
        doc.pointer("/info/description")
            .and_then(Value::as_str)
            .map(esc)
            .unwrap_or_default(),
        doc.get("openapi").and_then(Value::as_str).map(esc).unwrap_or_default()
    );
    let paths = doc.get("paths").and_then(Value::as_object);
    let ops: Vec<(&str, &String, &Value)> = paths
        .into_iter()
        .flatten()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter_map(move |m| item.get(*m).map(|op| (*m, path, op)))
        })
        .collect();
    for (method, path, op) in &ops {
        let _ = write!(
            body,
            "<tr><td><span class=\"method\">{}</span></td><td><a href=\"#op-{}\"><code>{}</code></a></td><td>{}</td></tr>",
            method.to_uppercase(),
            text(op, "operationId"),
            esc(path),
            text(op, "summary")
        );
    }
    body.push_str("</table>");
    for (method, path, op) in &ops {
        operation(&mut body, method, path, op);
    }
    body.push_str("<h2>Schemas</h2>");
    for (name, s) in doc
        .pointer("/components/schemas")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        schema(&mut body, name, s);
    }
    html_page("socialsyncer API", "", "wide", &body)
}
