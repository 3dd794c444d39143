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
--accent:#2457d6;--accent-fg:#fff;--ok:#1a7f37;--bad:#c62828;--warn:#b45f06;--unk:#8c959f;--empty:#e6e9ee}\
@media (prefers-color-scheme:dark){:root{--bg:#111418;--fg:#e6e9ee;--muted:#9aa4b2;--card:#1b2027;\
--line:#2e3540;--accent:#6d97ff;--accent-fg:#0b0e12;--ok:#56d364;--bad:#ff7b72;--warn:#e3b341;--unk:#6e7681;--empty:#252b33}}\
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
@media (max-width:480px){main{margin:1rem auto}.card{padding:1rem}.actions button{flex:1}}\
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(5.5rem,1fr));gap:.5rem;margin:1rem 0}\
.tile{border:1px solid var(--line);border-radius:10px;padding:.5rem .75rem}\
.tile b{display:block;font-size:1.6rem;line-height:1.2}\
.healthy{color:var(--ok)}.warning{color:var(--warn)}.unhealthy,.person{color:var(--bad)}.unknown{color:var(--muted)}\
.pill{display:inline-block;border:1px solid currentColor;border-radius:999px;padding:0 .5rem;font-size:.78rem;\
font-weight:600;white-space:nowrap}\
ul.accounts{list-style:none;margin:0;padding:0}\
ul.accounts>li{border-top:1px solid var(--line);padding:.6rem 0}\
.head{display:flex;flex-wrap:wrap;gap:.25rem .6rem;align-items:baseline}\
.head a{font-weight:600;overflow-wrap:anywhere}.head .avail{margin-left:auto;font-size:.85rem;color:var(--muted)}\
.bar{display:flex;gap:1px;height:1.6rem;margin:.35rem 0 0}\
.bar i{flex:1;border-radius:2px;background:var(--ok)}\
.bar .b{background:var(--empty)}.bar .w{background:var(--warn)}.bar .r{background:var(--bad)}.bar .n{background:var(--unk)}\
.scale{display:flex;justify-content:space-between;font-size:.75rem;color:var(--muted)}\
.scale .p{display:none}\
@media (max-width:480px){.bar i:nth-child(-n+60){display:none}.scale .d{display:none}.scale .p{display:inline}}\
.person-card{border:1px solid var(--bad);border-radius:10px;padding:.6rem .8rem;margin:.5rem 0}\
.person-card p{margin:.25rem 0}\
a.button{display:inline-block;border-radius:8px;padding:.4rem .9rem;background:var(--accent);color:var(--accent-fg);\
text-decoration:none;font-weight:600;margin-top:.25rem}\
svg.band{width:100%;height:2.2rem;display:block;margin:.5rem 0 0}\
svg.band .g{fill:var(--ok)}svg.band .w{fill:var(--warn)}svg.band .r{fill:var(--bad)}svg.band .n{fill:var(--unk)}\
svg.band .b{fill:var(--empty)}\
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;margin:.5rem 0}\
dl.facts dt{color:var(--muted)}dl.facts dd{margin:0;overflow-wrap:anywhere}\
nav.pages{display:flex;justify-content:space-between;gap:1rem;margin-top:1rem}\
a{color:var(--accent)}th.wide{width:45%}\
@media (max-width:480px){table.stack{table-layout:auto}table.stack thead{display:none}\
table.stack tr{display:block;border-top:1px solid var(--line);padding:.35rem 0}\
table.stack td{display:block;border:0;padding:.05rem 0}\
table.stack td[data-label]::before{content:attr(data-label) \": \";color:var(--muted)}\
dl.facts{grid-template-columns:1fr;gap:0}dl.facts dd{margin-bottom:.45rem}}";

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

/// Sets the headers every page carries: HTML, the strict policy, no sniffing, no referrer
/// (a status page's address holds its share token), never indexed.
pub fn page_headers(response: &mut Response) {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CONTENT_SECURITY_POLICY, CSP.clone());
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert("x-robots-tag", HeaderValue::from_static("noindex"));
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
