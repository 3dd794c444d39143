//! `socialsyncer config reference`: every configuration key with its default, whether a
//! reload (SIGHUP) applies it, and what it does, as Markdown (`docs/configuration.md`, which a
//! test keeps current). The descriptions are the `///` docs of the config structs, read from
//! their source as compiled into the binary; the defaults are `Config::default()` serialized.

use std::fmt::Write;

use super::Config;

/// The config structs' source files.
const SOURCES: [&str; 4] = [
    include_str!("mod.rs"),
    include_str!("platforms.rs"),
    include_str!("connect.rs"),
    include_str!("custody.rs"),
];

/// One field of a config struct: its key, its Rust type and its docs.
struct Field {
    key: String,
    ty: String,
    doc: String,
}

/// The fields of `pub struct name { ... }` in the sources, with their docs.
fn fields(name: &str) -> Option<Vec<Field>> {
    let head = format!("pub struct {name} {{");
    let src = SOURCES.iter().find(|s| s.contains(&head))?;
    let body = src.split(&head).nth(1)?.split("\n}").next()?;
    let mut out = Vec::new();
    let mut doc = Vec::new();
    for line in body.lines().map(str::trim) {
        if let Some(d) = line.strip_prefix("///") {
            doc.push(d.trim().to_owned());
        } else if let Some(f) = line.strip_prefix("pub ") {
            let (key, ty) = f.split_once(':')?;
            out.push(Field {
                key: key.trim().to_owned(),
                ty: ty.trim().trim_end_matches(',').to_owned(),
                doc: doc.join(" "),
            });
            doc.clear();
        } else if !line.starts_with("#[") {
            doc.clear();
        }
    }
    Some(out)
}

/// The struct a field's type names (through `Option<>` and `Vec<>`), and whether it is a list.
fn inner(ty: &str) -> (&str, bool) {
    let mut t = ty;
    let mut list = false;
    loop {
        if let Some(i) = t.strip_prefix("Option<").and_then(|s| s.strip_suffix('>')) {
            t = i;
        } else if let Some(i) = t.strip_prefix("Vec<").and_then(|s| s.strip_suffix('>')) {
            t = i;
            list = true;
        } else {
            return (t, list);
        }
    }
}

/// Whether a reload applies the key (see [`Config::with_reloadable`]).
pub fn reloads_live(key: &str) -> bool {
    key.starts_with("email.")
        || key.starts_with("schedule.")
        || key == "log.level"
        || (key.starts_with("platforms.") && key.ends_with(".rate_limit"))
}

/// The default of `path` as `Config::default()` serializes it (`None`: unset).
fn default_of(defaults: &toml::Value, path: &str) -> Option<String> {
    let mut v = defaults;
    for part in path.split('.') {
        v = v.get(part)?;
    }
    Some(match v {
        toml::Value::String(s) if s.is_empty() => "\"\"".into(),
        toml::Value::Array(a) if a.is_empty() => "[]".into(),
        other => other.to_string(),
    })
}

/// One table's rows: `prefix` is its dotted name; nested structs become tables of their own.
fn table(out: &mut String, defaults: &toml::Value, name: &str, prefix: &str, header: &str) {
    let Some(own) = fields(name) else { return };
    let mut rows = String::new();
    let mut nested = Vec::new();
    for f in own {
        let (ty, list) = inner(&f.ty);
        let path = format!("{prefix}.{}", f.key);
        if name == "PlatformsConfig" {
            // Five tables of one shape: shown once.
            if f.key == "instagram" {
                nested.push((
                    ty.to_owned(),
                    "platforms.<platform>".to_owned(),
                    "[platforms.<platform>]".to_owned(),
                ));
            }
            continue;
        }
        if fields(ty).is_some() {
            let h = if list {
                format!("[[{path}]]")
            } else {
                format!("[{path}]")
            };
            nested.push((ty.to_owned(), path, h));
            continue;
        }
        // The five platform tables serialize alike: instagram's stands for them.
        let lookup = path.replace("<platform>", "instagram");
        let default = default_of(defaults, &lookup).map(|d| format!("`{}`", d.replace('|', "\\|")));
        let live = if reloads_live(&path) { "yes" } else { "restart" };
        let _ = writeln!(
            rows,
            "| `{}` | {} | {live} | {} |",
            f.key,
            default.unwrap_or_else(|| "unset".into()),
            f.doc.replace('|', "\\|")
        );
    }
    if !rows.is_empty() {
        let _ = write!(
            out,
            "\n## `{header}`\n\n| Key | Default | Reload | What it does |\n| --- | --- | --- | --- |\n{rows}"
        );
    }
    for (ty, path, h) in nested {
        table(out, defaults, &ty, &path, &h);
    }
}

/// The whole reference, as Markdown.
pub fn reference() -> String {
    let defaults = toml::Value::try_from(Config::default()).unwrap_or(toml::Value::Table(Default::default()));
    let mut out = String::from(
        "# Configuration reference\n\n\
         Generated by `socialsyncer config reference` from the config structs' documentation; do not edit \
         (a test fails when this file is stale: regenerate it with \
         `cargo run -q -- config reference > docs/configuration.md`).\n\n\
         Every key may also be set in the environment: `SOCIALSYNCER__SECTION__KEY` (two underscores \
         between parts, e.g. `SOCIALSYNCER__SERVER__LISTEN=127.0.0.1:9090`). **Reload**: `yes` when \
         `systemctl reload` (SIGHUP) applies a change; `restart` when it takes a restart (the reload's log \
         line names such keys). **Default** `unset`: the key is optional, and its description says what \
         applies without it. `[platforms.<platform>]` is one table for each of `instagram`, `facebook`, \
         `threads`, `tiktok` and `twitter` (or `x`).\n",
    );
    let Some(top) = fields("Config") else { return out };
    for f in top {
        let (ty, _) = inner(&f.ty);
        table(&mut out, &defaults, ty, &f.key, &format!("[{}]", f.key));
    }
    out
}
