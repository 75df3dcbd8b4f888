//! Mail to users (lettre over SMTP, `[mail] smtp_url`): the e-mail check
//! of an account request, the activation link of an approved one. Without
//! a mail server nothing is sent: requests stay unverified (the admin sees
//! it) and the approving admin is shown the activation link instead.
//! A failed send is logged (never the server's password) and does not undo
//! what it reported.

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::MailConfig;
use crate::server::redact_url;

/// Sends mail, or knows it cannot (a clone shares the connection pool).
#[derive(Clone, Debug)]
pub struct Mailer {
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Option<Mailbox>,
}

impl Mailer {
    /// The mailer `[mail]` describes (checked by `Config::parse`).
    pub fn new(config: &MailConfig) -> Result<Mailer, String> {
        let from: Mailbox = config.from.parse().map_err(|e| format!("mail.from: '{}' is not a mailbox ({e})", config.from))?;
        let transport = match &config.smtp_url {
            None => None,
            Some(url) => Some(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| format!("mail.smtp_url: '{}' is not an SMTP URL ({e})", redact_url(url)))?
                    .build(),
            ),
        };
        Ok(Mailer { transport, from: Some(from) })
    }

    /// A mailer that sends nothing.
    pub fn none() -> Mailer {
        Mailer { transport: None, from: None }
    }

    /// Whether mail goes out.
    pub fn enabled(&self) -> bool {
        self.transport.is_some()
    }

    /// Sends a plain-text mail; whether it went.
    pub async fn send(&self, to: &str, subject: &str, body: String) -> bool {
        let (Some(transport), Some(from)) = (&self.transport, &self.from) else { return false };
        let to: Mailbox = match to.parse() {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(%to, error = %e, "mail not sent: not a mailbox");
                return false;
            }
        };
        let message = match Message::builder().from(from.clone()).to(to.clone()).subject(subject).body(body) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(%to, error = %e, "mail not sent: cannot build it");
                return false;
            }
        };
        match transport.send(message).await {
            Ok(_) => {
                tracing::info!(%to, subject, "mail sent");
                true
            }
            Err(e) => {
                tracing::warn!(%to, subject, error = %e, "mail not sent");
                false
            }
        }
    }
}
