//! Unit tests of `config`.

use super::*;

#[test]
fn example_config_parses() {
    let c = Config::from_toml(EXAMPLE_CONFIG).unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:8080");
    assert_eq!(c.health.warn_before.0, Duration::from_secs(7 * 86_400));
    assert_eq!(
        c.database.sqlite_path().unwrap(),
        PathBuf::from("state/socialsyncer.db")
    );
}

#[test]
fn errors_name_the_key() {
    let e = Config::from_toml("[schedule]\nconcurrency = \"many\"").unwrap_err();
    assert!(e.to_string().contains("concurrency"), "{e}");
    let e = Config::from_toml("[server]\nlisten = \"nowhere\"").unwrap_err();
    assert!(e.to_string().contains("server.listen"), "{e}");
    let e = Config::from_toml("[health]\nwarn_before = \"soon\"").unwrap_err();
    assert!(e.to_string().contains("warn_before"), "{e}");
    let e = Config::from_toml("[server]\nlisten_on = \"x\"").unwrap_err();
    assert!(e.to_string().contains("listen_on"), "{e}");
    let e = Config::from_toml("[schedule]\ncron = \"every day\"").unwrap_err();
    assert!(e.to_string().contains("schedule.cron"), "{e}");
    let e = Config::from_toml("[database]\nurl = \"mysql://u:hunter2@x/db\"").unwrap_err();
    assert!(e.to_string().contains("database.url"), "{e}");
    assert!(!e.to_string().contains('\n'));
    assert!(
        !e.to_string().contains("hunter2"),
        "the URL's password is repeated: {e}"
    );
}

#[test]
fn a_postgres_url_never_shows_its_password() {
    // Every daemon must seal with the same key: PostgreSQL needs it named.
    let e = Config::from_toml("[database]\nurl = \"postgres://app:hunter2@db.example/ss\"").unwrap_err();
    assert!(e.to_string().contains("security.token_key_file"), "{e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let e = Config::from_toml("[database]\nurl = \"postgres://app:hunter2@/ss\"\n[security]\ntoken_key_file = \"k\"")
        .unwrap_err();
    assert!(e.to_string().contains("database.url"), "{e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let c = Config::from_toml(
        "[database]\nurl = \"postgres://app:hunter2@db.example:5433/ss?sslmode=require&password=hunter3\"\n\
         [security]\ntoken_key_file = \"k\"",
    )
    .unwrap();
    let shown = c.redacted_toml();
    assert!(!shown.contains("hunter2") && !shown.contains("hunter3"), "{shown}");
    assert!(
        shown.contains("postgres://app:[redacted]@db.example:5433/ss?sslmode=require&password=[redacted]"),
        "{shown}"
    );
    assert_eq!(
        crate::config::redact_url_in(
            "error connecting to postgres://app:hunter2@db.example:5433/ss: no",
            &c.database.url
        ),
        "error connecting to postgres://app:[redacted]@db.example:5433/ss: no"
    );
}

#[test]
fn platform_defaults() {
    let c = Config::default();
    assert_eq!(
        c.platforms
            .facebook
            .base_url(Platform::Facebook, InstagramLogin::Facebook),
        "https://graph.facebook.com"
    );
    assert!(
        c.platforms
            .instagram
            .required_permissions(Platform::Instagram, InstagramLogin::Facebook)
            .contains(&"instagram_content_publish".to_owned())
    );
}
