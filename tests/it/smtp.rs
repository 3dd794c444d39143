//! A minimal SMTP server for tests: accepts mail on a random loopback port and keeps it; can
//! be switched "down" (answers 421 to every connection).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One received message.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

impl Mail {
    /// The Subject header.
    pub fn subject(&self) -> String {
        self.data
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or_default()
            .to_owned()
    }

    /// The data with quoted-printable soft breaks and `=3D` undone, for searching.
    pub fn text(&self) -> String {
        self.data.replace("=\r\n", "").replace("=3D", "=")
    }
}

pub struct SmtpServer {
    pub port: u16,
    pub mails: Arc<Mutex<Vec<Mail>>>,
    pub up: Arc<AtomicBool>,
    /// Addresses answered at RCPT TO with this reply (e.g. "550 5.1.1 No such user").
    pub refuse: Arc<Mutex<std::collections::HashMap<String, String>>>,
    /// `user:password` of every AUTH PLAIN the server accepted.
    pub auths: Arc<Mutex<Vec<String>>>,
}

impl SmtpServer {
    pub async fn start() -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let up = Arc::new(AtomicBool::new(true));
        let refuse = Arc::new(Mutex::new(std::collections::HashMap::new()));
        let auths = Arc::new(Mutex::new(Vec::new()));
        let (m, u, rf, au) = (mails.clone(), up.clone(), refuse.clone(), auths.clone());
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (m, up, rf, au) = (m.clone(), u.load(Ordering::SeqCst), rf.clone(), au.clone());
                tokio::spawn(async move {
                    let _ = session(sock, m, up, rf, au).await;
                });
            }
        });
        SmtpServer {
            port,
            mails,
            up,
            refuse,
            auths,
        }
    }

    /// Answers RCPT TO for `address` with `reply` from now on.
    pub fn refuse(&self, address: &str, reply: &str) {
        self.refuse.lock().unwrap().insert(address.to_owned(), reply.to_owned());
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }
}

async fn session(
    sock: tokio::net::TcpStream,
    mails: Arc<Mutex<Vec<Mail>>>,
    up: bool,
    refuse: Arc<Mutex<std::collections::HashMap<String, String>>>,
    auths: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    if !up {
        w.write_all(b"421 4.3.2 Service not available, try later\r\n").await?;
        return Ok(());
    }
    w.write_all(b"220 localhost ESMTP test\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_owned();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            w.write_all(b"250-localhost\r\n250-8BITMIME\r\n250-AUTH PLAIN\r\n250 SMTPUTF8\r\n")
                .await?;
        } else if upper.starts_with("AUTH PLAIN ") {
            // RFC 4616: base64 of authzid NUL authcid NUL password.
            use base64::Engine;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(cmd[11..].trim())
                .unwrap_or_default();
            let parts: Vec<String> = raw
                .split(|b| *b == 0)
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            if parts.len() == 3 {
                auths.lock().unwrap().push(format!("{}:{}", parts[1], parts[2]));
                w.write_all(b"235 2.7.0 Authentication successful\r\n").await?;
            } else {
                w.write_all(b"501 5.5.2 Cannot decode response\r\n").await?;
            }
        } else if upper.starts_with("HELO") || upper.starts_with("RSET") || upper.starts_with("NOOP") {
            w.write_all(b"250 OK\r\n").await?;
        } else if upper.starts_with("MAIL FROM:") {
            from = cmd[10..].trim().to_owned();
            to.clear();
            w.write_all(b"250 OK\r\n").await?;
        } else if upper.starts_with("RCPT TO:") {
            let address = cmd[8..].trim().trim_start_matches('<').trim_end_matches('>').to_owned();
            let refused = refuse.lock().unwrap().get(&address).cloned();
            match refused {
                Some(reply) => w.write_all(format!("{reply}\r\n").as_bytes()).await?,
                None => {
                    to.push(address);
                    w.write_all(b"250 OK\r\n").await?;
                }
            }
        } else if upper == "DATA" {
            w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" {
                    break;
                }
                // Undo SMTP dot-stuffing.
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            mails.lock().unwrap().push(Mail {
                from: from.clone(),
                to: to.clone(),
                data,
            });
            w.write_all(b"250 OK queued\r\n").await?;
        } else if upper.starts_with("QUIT") {
            w.write_all(b"221 Bye\r\n").await?;
            return Ok(());
        } else {
            w.write_all(b"502 Command not implemented\r\n").await?;
        }
    }
}
