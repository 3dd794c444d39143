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
    let e = Config::from_toml("[database]\nurl = \"postgres://x\"").unwrap_err();
    assert!(e.to_string().contains("database.url"), "{e}");
    assert!(!e.to_string().contains('\n'));
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
