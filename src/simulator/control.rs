//! Driving the simulator from a test: starting it, issuing tokens, changing behaviours.

use super::*;

impl Simulator {
    /// Starts on `127.0.0.1:0`.
    pub async fn start() -> std::io::Result<Simulator> {
        Self::start_on("127.0.0.1:0").await
    }

    /// Starts on `addr`.
    pub async fn start_on(addr: &str) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            calls: Default::default(),
            refreshes: Default::default(),
            token_calls: Default::default(),
            in_flight: AtomicU64::new(0),
            most_in_flight: AtomicU64::new(0),
            arrivals: Mutex::new(Vec::new()),
        });
        let shutdown = CancellationToken::new();
        let app = router(shared.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            // No Nagle delay: an answer goes out at once, as a platform's would.
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
        Ok(Simulator { addr, shared, shutdown })
    }

    /// Starts on `127.0.0.1:0` in a thread of its own with a single-threaded runtime, as a
    /// platform would be: apart from the daemon's runtime. The thread ends when the simulator
    /// is dropped.
    pub fn start_in_thread() -> std::io::Result<Simulator> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new().name("simulator".into()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                match Simulator::start().await {
                    Ok(sim) => {
                        let stop = sim.shutdown.clone();
                        let _ = tx.send(Ok(sim));
                        stop.cancelled().await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        })?;
        rx.recv().map_err(std::io::Error::other)?
    }

    /// The base URL to configure for `p`.
    pub fn base_url(&self, p: Platform) -> String {
        format!("http://{}/{}", self.addr, p.as_str())
    }

    /// The `[platforms.*]` config for a daemon using this simulator; secrets are written as
    /// files into `secrets_dir`.
    pub fn config_toml(&self, secrets_dir: &std::path::Path) -> std::io::Result<String> {
        let write = |name: &str, value: &str| -> std::io::Result<String> {
            let path = secrets_dir.join(name);
            std::fs::write(&path, value)?;
            Ok(path.display().to_string().replace('\\', "/"))
        };
        let fb = write("facebook_app_secret", APP_SECRET)?;
        let tt = write("tiktok_client_secret", TIKTOK_CLIENT_SECRET)?;
        let tw = write("twitter_client_secret", TWITTER_CLIENT_SECRET)?;
        let ig = write("instagram_login_app_secret", INSTAGRAM_LOGIN_APP_SECRET)?;
        let th = write("threads_app_secret", THREADS_APP_SECRET)?;
        let (fb_url, ig_url, th_url, tt_url, tw_url) = (
            self.base_url(Platform::Facebook),
            self.base_url(Platform::Instagram),
            self.base_url(Platform::Threads),
            self.base_url(Platform::Tiktok),
            self.base_url(Platform::Twitter),
        );
        // Each platform's consent page is the simulator's (Instagram's serves both logins).
        Ok(format!(
            "[platforms.facebook]\nbase_url = \"{fb_url}\"\napp_id = \"{APP_ID}\"\napp_secret_file = \"{fb}\"\n\
             authorize_url = \"{fb_url}/dialog/oauth\"\n\
             [platforms.instagram]\nbase_url = \"{ig_url}\"\nauthorize_url = \"{ig_url}/oauth/authorize\"\n\
             login_base_url = \"{ig_url}-login\"\n\
             login_app_id = \"{INSTAGRAM_LOGIN_APP_ID}\"\nlogin_app_secret_file = \"{ig}\"\n\
             [platforms.threads]\nbase_url = \"{th_url}\"\napp_id = \"{THREADS_APP_ID}\"\napp_secret_file = \"{th}\"\n\
             authorize_url = \"{th_url}/oauth/authorize\"\n\
             [platforms.tiktok]\nbase_url = \"{tt_url}\"\nclient_key = \"{TIKTOK_CLIENT_KEY}\"\nclient_secret_file = \"{tt}\"\n\
             authorize_url = \"{tt_url}/v2/auth/authorize/\"\n\
             [platforms.twitter]\nbase_url = \"{tw_url}\"\nclient_id = \"{TWITTER_CLIENT_ID}\"\nclient_secret_file = \"{tw}\"\n\
             authorize_url = \"{tw_url}/i/oauth2/authorize\"\n",
        ))
    }

    /// Issues a token.
    pub fn issue(&self, platform: Platform, spec: TokenSpec) -> Issued {
        issue_in(&mut self.shared.lock(), platform, spec)
    }

    /// Makes `token`'s grant one where the person has `pages` (each with its Instagram
    /// account, if any) and granted "current Pages only": `granted` (`debug_token` then lists
    /// `granular_scopes` with their `target_ids`).
    pub fn grant_only(&self, token: &str, pages: &[(&str, Option<&str>)], granted: &[&str]) {
        self.shared
            .lock()
            .persons
            .insert(token.to_owned(), consent::Person::new(pages, granted));
    }

    /// Changes a token in place.
    pub fn update(&self, token: &str, f: impl FnOnce(&mut SimToken)) {
        if let Some(t) = self.shared.lock().tokens.get_mut(token) {
            f(t);
        }
    }

    /// A token's current record.
    pub fn token(&self, token: &str) -> Option<SimToken> {
        self.shared.lock().tokens.get(token).cloned()
    }

    /// How many access tokens of `user_id` on `p` still work (valid and unexpired).
    pub fn live_tokens(&self, p: Platform, user_id: &str) -> usize {
        let now = domain::now();
        self.shared
            .lock()
            .tokens
            .values()
            .filter(|t| {
                t.platform == p
                    && t.user_id == user_id
                    && t.state == TokenState::Valid
                    && t.expires_at.is_none_or(|e| e > now)
            })
            .count()
    }

    /// Whether a refresh token is still accepted.
    pub fn refresh_token_live(&self, token: &str) -> bool {
        self.shared.lock().refresh.contains_key(token)
    }

    /// Makes a refresh token unusable (as if it expired or was used elsewhere).
    pub fn invalidate_refresh_token(&self, token: &str) {
        self.shared.lock().refresh.remove(token);
    }

    /// Makes every request to `p` behave as `b` (e.g. the whole platform is down).
    pub fn set_platform_behavior(&self, p: Platform, b: Behavior) {
        self.shared.lock().modes.insert(p, b);
    }

    /// Adds a fixed latency to every answer of `p`.
    pub fn set_latency(&self, p: Platform, d: Duration) {
        self.shared.lock().latency.insert(p, d);
    }

    /// Sets the answer tweaks of `p`.
    pub fn set_tweaks(&self, p: Platform, t: Tweaks) {
        self.shared.lock().tweaks.insert(p, t);
    }

    /// Refreshes of `p` that issued new tokens so far.
    pub fn refreshes(&self, p: Platform) -> u64 {
        self.shared.refreshes[idx(p)].load(Ordering::Relaxed)
    }

    /// Calls that reached `p`'s token endpoint so far, whatever it answered (a refused or
    /// burnt refresh token included): what proves a refresh was not attempted twice.
    pub fn token_calls(&self, p: Platform) -> u64 {
        self.shared.token_calls[idx(p)].load(Ordering::Relaxed)
    }

    /// Requests served for `p` so far.
    pub fn calls(&self, p: Platform) -> u64 {
        self.shared.calls[idx(p)].load(Ordering::Relaxed)
    }

    /// Times `refresh_token` was presented to a token endpoint, refused uses included (a
    /// used one is refused: TikTok and X refresh tokens are single-use).
    pub fn refresh_token_uses(&self, refresh_token: &str) -> u64 {
        self.shared.lock().refresh_uses.get(refresh_token).copied().unwrap_or(0)
    }

    /// Requests made with `token` so far.
    pub fn calls_with(&self, token: &str) -> u64 {
        self.token(token).map_or(0, |t| t.calls)
    }

    /// The most requests (of all platforms) that were being answered at once.
    pub fn most_in_flight(&self) -> u64 {
        self.shared.most_in_flight.load(Ordering::Relaxed)
    }

    /// The platform of every request so far, in the order they arrived.
    pub fn arrivals(&self) -> Vec<Platform> {
        self.shared.arrivals.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
