//! socialsyncer's own HTML pages (the connect pages): server-rendered, no JavaScript, one small
//! built-in stylesheet (light and dark) allowed by its hash in a strict
//! Content-Security-Policy, and every text escaped.

use std::sync::LazyLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::Digest;

/// The stylesheet, inline in every page.
const CSS: &str = "\
:root{color-scheme:light dark;--bg:#f6f7f9;--fg:#1c2330;--muted:#5b6575;--card:#fff;--line:#d9dee6;\
--accent:#2457d6;--accent-fg:#fff;--ok:#1a7f37;--bad:#c62828}\
@media (prefers-color-scheme:dark){:root{--bg:#111418;--fg:#e6e9ee;--muted:#9aa4b2;--card:#1b2027;\
--line:#2e3540;--accent:#6d97ff;--accent-fg:#0b0e12;--ok:#56d364;--bad:#ff7b72}}\
*{box-sizing:border-box}\
body{margin:0;background:var(--bg);color:var(--fg);font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}\
main{max-width:34rem;margin:3rem auto;padding:0 1rem}\
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:1.5rem}\
h1{font-size:1.35rem;margin:0 0 .75rem}\
p{margin:.5rem 0}.muted,small{color:var(--muted)}\
.ok h1{color:var(--ok)}.bad h1{color:var(--bad)}\
fieldset{border:0;margin:1rem 0;padding:0}legend{font-weight:600;margin-bottom:.5rem}\
label.row{display:flex;gap:.75rem;align-items:center;padding:.6rem .75rem;border:1px solid var(--line);\
border-radius:8px;margin:.4rem 0;cursor:pointer}\
label.row span{flex:1;overflow-wrap:anywhere}\
input[type=checkbox]{width:1.15rem;height:1.15rem;accent-color:var(--accent)}\
.actions{display:flex;gap:.75rem;flex-wrap:wrap;margin-top:1.25rem}\
button{font:inherit;border-radius:8px;padding:.6rem 1.1rem;border:1px solid var(--accent);\
background:var(--accent);color:var(--accent-fg);cursor:pointer}\
button.secondary{background:transparent;color:var(--fg);border-color:var(--line)}\
footer{margin-top:1rem;font-size:.85rem;color:var(--muted);text-align:center}\
main.wide{max-width:64rem;overflow-wrap:anywhere}\
table{border-collapse:collapse;width:100%;table-layout:fixed;font-size:.9rem;margin:.5rem 0}\
th,td{border-top:1px solid var(--line);padding:.35rem .5rem;text-align:left;vertical-align:top;overflow-wrap:anywhere}\
@media (max-width:480px){table{font-size:.8rem}th,td{padding:.3rem .25rem}}\
code,pre{font:.85rem/1.45 ui-monospace,SFMono-Regular,Menlo,monospace;overflow-wrap:anywhere}\
pre{overflow-x:auto;background:var(--bg);border:1px solid var(--line);border-radius:8px;padding:.75rem}\
section.op{border-top:1px solid var(--line);margin-top:1.5rem;padding-top:.5rem}\
h2{font-size:1.1rem;margin:1rem 0 .5rem}h3{font-size:1rem;margin:1rem 0 .25rem}\
.method{display:inline-block;min-width:4rem;font-weight:700;color:var(--accent)}\
@media (max-width:480px){main{margin:1rem auto}.card{padding:1rem}.actions button{flex:1}}";

/// The Content-Security-Policy of every page: nothing but the stylesheet above, no script,
/// forms only to this origin, never framed.
pub static CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(CSS.as_bytes()));
    HeaderValue::from_str(&format!(
        "default-src 'none'; style-src 'sha256-{hash}'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
});

/// HTML-escapes text a tenant, a platform or a person wrote.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page: `title` is escaped here; `body` is HTML the caller built from escaped text.
/// `class` is the card's (`ok`, `bad` or empty).
pub fn document(status: StatusCode, title: &str, class: &str, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html_page(title, class, "", body),
    )
        .into_response()
}

/// The HTML of a page; `main_class` widens it (`wide`: reference pages).
pub fn html_page(title: &str, class: &str, main_class: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\"><title>{t} · socialsyncer</title>\
         <style>{CSS}</style></head><body><main class=\"{main_class}\"><div class=\"card {class}\"><h1>{t}</h1>{body}</div>\
         <footer>socialsyncer</footer></main></body></html>",
        t = esc(title),
    )
}

/// A page of one paragraph of plain text.
pub fn message(status: StatusCode, title: &str, class: &str, text: &str) -> Response {
    document(status, title, class, &format!("<p>{}</p>", esc(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_the_policy_allows_only_the_stylesheet() {
        assert_eq!(
            esc("<script>\"x\" & 'y'</script>"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
        let csp = CSP.to_str().unwrap();
        assert!(csp.starts_with("default-src 'none'; style-src 'sha256-"), "{csp}");
        assert!(!csp.contains("script-src") && !csp.contains("unsafe"), "{csp}");
    }
}
