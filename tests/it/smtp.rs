//! A minimal SMTP server for tests: accepts mail on a random loopback port and keeps it; can
//! be switched "down" (answers 421 to every connection), and can speak TLS (implicit, as for
//! `smtps://`, or after STARTTLS) with a certificate made for the test.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// How the server uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain SMTP.
    None,
    /// TLS from the first byte (`smtps://`).
    Implicit,
    /// Plain until STARTTLS, which it offers and requires before MAIL.
    StartTls,
}

/// One received message.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

impl Mail {
    /// The Subject header.
    /// The Subject header, unfolded (a long one continues on lines that start with a space).
    pub fn subject(&self) -> String {
        let mut lines = self.data.lines().skip_while(|l| !l.starts_with("Subject: "));
        let mut s = lines
            .next()
            .and_then(|l| l.strip_prefix("Subject: "))
            .unwrap_or_default()
            .to_owned();
        for l in lines.take_while(|l| l.starts_with(' ') || l.starts_with('\t')) {
            s.push_str(l);
        }
        s
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
    /// With TLS: the PEM of the certificate it presents (for 127.0.0.1 and localhost).
    pub cert_pem: Option<String>,
}

impl SmtpServer {
    pub async fn start() -> SmtpServer {
        SmtpServer::start_with(TlsMode::None).await
    }

    pub async fn start_with(tls: TlsMode) -> SmtpServer {
        let (acceptor, cert_pem) = match tls {
            TlsMode::None => (None, None),
            _ => {
                let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
                let pem = cert.cert.pem();
                let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
                    tokio_rustls::rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    vec![cert.cert.der().clone()],
                    tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into()),
                )
                .unwrap();
                (Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))), Some(pem))
            }
        };
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
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let shared = Shared {
                        mails: m,
                        up,
                        refuse: rf,
                        auths: au,
                    };
                    let _ = match (tls, acceptor) {
                        (TlsMode::Implicit, Some(a)) => match a.accept(sock).await {
                            Ok(s) => session(s, &shared, false).await.map(|_| ()),
                            Err(_) => Ok(()),
                        },
                        (TlsMode::StartTls, Some(a)) => match session(sock, &shared, true).await {
                            // The client asked for TLS: the same connection goes on encrypted.
                            Ok(Some(plain)) => match a.accept(plain).await {
                                Ok(s) => session(s, &shared, false).await.map(|_| ()),
                                Err(_) => Ok(()),
                            },
                            other => other.map(|_| ()),
                        },
                        _ => session(sock, &shared, false).await.map(|_| ()),
                    };
                });
            }
        });
        SmtpServer {
            port,
            mails,
            up,
            refuse,
            auths,
            cert_pem,
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

/// What every session of one server shares.
struct Shared {
    mails: Arc<Mutex<Vec<Mail>>>,
    up: bool,
    refuse: Arc<Mutex<std::collections::HashMap<String, String>>>,
    auths: Arc<Mutex<Vec<String>>>,
}

/// One SMTP conversation on `sock`. With `starttls`, the server offers STARTTLS and requires it
/// before MAIL; when the client sends it, the stream is handed back to be wrapped in TLS.
async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    sock: S,
    shared: &Shared,
    starttls: bool,
) -> std::io::Result<Option<S>> {
    let Shared {
        mails,
        up,
        refuse,
        auths,
    } = shared;
    let up = *up;
    let (r, mut w) = tokio::io::split(sock);
    let mut r = BufReader::new(r);
    if !up {
        w.write_all(b"421 4.3.2 Service not available, try later\r\n").await?;
        return Ok(None);
    }
    w.write_all(b"220 localhost ESMTP test\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let cmd = line.trim_end().to_owned();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            if starttls {
                w.write_all(b"250-localhost\r\n250-STARTTLS\r\n250 8BITMIME\r\n")
                    .await?;
            } else {
                w.write_all(b"250-localhost\r\n250-8BITMIME\r\n250-AUTH PLAIN\r\n250 SMTPUTF8\r\n")
                    .await?;
            }
        } else if starttls && upper == "STARTTLS" {
            w.write_all(b"220 2.0.0 Ready to start TLS\r\n").await?;
            w.flush().await?;
            return Ok(Some(r.into_inner().unsplit(w)));
        } else if starttls && upper.starts_with("MAIL FROM:") {
            w.write_all(b"530 5.7.0 Must issue a STARTTLS command first\r\n")
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
                    return Ok(None);
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
            return Ok(None);
        } else {
            w.write_all(b"502 Command not implemented\r\n").await?;
        }
    }
}
