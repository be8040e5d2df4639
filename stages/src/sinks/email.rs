//! `Email`: sends the firings of rules that carry an `email` target through
//! SMTP — STARTTLS (or implicit TLS), authentication — as plain-text mail a
//! treasury desk reads.
//!
//! Which rules mail whom is read from the history store, as the `Webhook`
//! stage reads its targets, so firings stay small on the alerts topic. The
//! firings of one write that go to the same addresses become one message:
//! with the shared `batch: (max_wait: "10s")` a burst of firings within ten
//! seconds is one email, not ten. A message that cannot be sent now (the
//! server is down, busy, or answers 4xx) is tried again by the shared `retry`
//! policy; one the server refuses for good (5xx), or one still failing when
//! the retries are spent, goes to the error output with the reason.

use std::collections::BTreeMap;
use std::time::Duration;

use fxflow_engine::{
    async_trait, BuildContext, ConfigProblem, Envelope, ItemError, Kinds, ResourceUse, Shape, Sink, SinkError, Stage,
    StageConfig, StageError,
};
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use crate::backends::STORE_KINDS;
use crate::fx::notice::Notice;
use crate::fx::{kind, AlertFired, FxEvent};
use crate::store::RuleCache;

/// Mails alert firings to the addresses of their rules.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// A `Postgres` or `Sqlite` resource holding the rules (with their `email` targets).
    pub store: String,
    /// The SMTP server's host name.
    pub host: String,
    /// Its port: 587 (submission, STARTTLS) by default; 465 with `tls: Tls`.
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default)]
    pub tls: SmtpTls,
    /// Accept a server certificate from an issuer that is not trusted (a test
    /// server, an internal relay with its own CA); the certificate must still
    /// name `host`. Off by default.
    #[serde(default)]
    pub accept_invalid_certs: bool,
    /// SMTP user, e.g. `"${FXFLOW_SMTP_USER}"`; with `password`, the client authenticates.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// The sender, e.g. `"fxflow alerts <alerts@example.com>"`.
    pub from: String,
    /// How long one message may take to send.
    #[serde(default = "default_timeout", with = "fxflow_engine::duration")]
    #[schemars(schema_with = "fxflow_engine::duration::schema")]
    pub timeout: Duration,
}

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS; a server that does not offer it is refused.
    #[default]
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS at all: only for a relay on the same host or a test server.
    None,
}

fn default_port() -> u16 {
    587
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

#[async_trait]
impl StageConfig<FxEvent> for EmailConfig {
    fn shape(&self) -> Shape {
        Shape::Sink
    }

    fn accepts(&self) -> Kinds {
        Kinds::only(&[kind::ALERT_FIRED])
    }

    fn resources(&self) -> Vec<ResourceUse> {
        vec![ResourceUse::one_of("store", &self.store, STORE_KINDS)]
    }

    fn check(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if self.host.trim().is_empty() {
            problems.push(ConfigProblem::field("host", "name the SMTP server").with_hint("host: \"smtp.example.com\""));
        }
        if self.from.parse::<Mailbox>().is_err() {
            problems.push(
                ConfigProblem::field("from", format!("`{}` is not an email address", self.from))
                    .with_hint("from: \"fxflow alerts <alerts@example.com>\""),
            );
        }
        if self.username.is_some() != self.password.is_some() {
            problems.push(ConfigProblem::field(
                "password",
                "give both `username` and `password`, or neither",
            ));
        }
        if self.timeout.is_zero() {
            problems.push(ConfigProblem::field("timeout", "must be longer than zero"));
        }
        problems
    }

    async fn build(&self, cx: &BuildContext) -> Result<Stage<FxEvent>, StageError> {
        let store = crate::backends::open_store(&cx.resources, &self.store, false).await?;
        let from: Mailbox = self.from.parse().map_err(StageError::new)?;
        let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(self.host.clone())
            .port(self.port)
            .timeout(Some(self.timeout));
        let parameters = || {
            TlsParameters::builder(self.host.clone())
                .dangerous_accept_invalid_certs(self.accept_invalid_certs)
                .build_rustls()
                .map_err(|e| StageError::new(format!("TLS for {}: {e}", self.host)))
        };
        transport = match self.tls {
            SmtpTls::StartTls => transport.tls(Tls::Required(parameters()?)),
            SmtpTls::Tls => transport.tls(Tls::Wrapper(parameters()?)),
            SmtpTls::None => transport.tls(Tls::None),
        };
        if let (Some(user), Some(password)) = (&self.username, &self.password) {
            transport = transport.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Stage::Sink(Box::new(EmailSink {
            from,
            transport: transport.build(),
            rules: RuleCache::new(store),
            server: format!("{}:{}", self.host, self.port),
        })))
    }
}

struct EmailSink {
    from: Mailbox,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    rules: RuleCache,
    /// `host:port`, for messages.
    server: String,
}

/// One message: the firings (by batch index) for one set of addresses.
struct Letter<'a> {
    to: Vec<Mailbox>,
    firings: Vec<(usize, &'a AlertFired)>,
}

/// Subject and text of a message with these firings (at least one).
pub fn compose(firings: &[&AlertFired]) -> (String, String) {
    let notices: Vec<Notice> = firings.iter().map(|f| Notice::of(f)).collect();
    let subject = match notices.as_slice() {
        [one] => format!("[fxflow] {}", one.headline),
        [first, rest @ ..] => format!(
            "[fxflow] {} alerts: {} and {} more",
            notices.len(),
            first.headline,
            rest.len()
        ),
        [] => "[fxflow] alerts".to_owned(),
    };
    let mut body = String::new();
    for notice in &notices {
        body.push_str(&notice.headline);
        body.push_str("\n\n");
        body.push_str(&notice.lines());
        body.push('\n');
    }
    body.push_str("-- \nSent by fxflow for the alert rules above.\n");
    (subject, body)
}

#[async_trait]
impl Sink<FxEvent> for EmailSink {
    async fn write(&mut self, batch: &[Envelope<FxEvent>]) -> Result<(), SinkError> {
        // Firings by their rule's addresses, in batch order.
        let mut letters: BTreeMap<Vec<String>, Letter> = BTreeMap::new();
        let mut failed = Vec::new();
        for (index, envelope) in batch.iter().enumerate() {
            let FxEvent::AlertFired(fired) = &envelope.event else {
                continue;
            };
            let rule = self.rules.get(&fired.rule_id).await?;
            let Some(target) = rule.and_then(|r| r.email) else {
                continue;
            };
            let mut addresses = target.to.clone();
            addresses.sort();
            addresses.dedup();
            let parsed: Result<Vec<Mailbox>, _> = addresses.iter().map(|a| a.parse::<Mailbox>()).collect();
            match parsed {
                Ok(to) if !to.is_empty() => letters
                    .entry(addresses)
                    .or_insert_with(|| Letter {
                        to,
                        firings: Vec::new(),
                    })
                    .firings
                    .push((index, fired)),
                Ok(_) => {}
                Err(e) => failed.push(ItemError {
                    index,
                    message: format!("rule {}: an address does not parse: {e}", fired.rule_id),
                    retryable: false,
                }),
            }
        }
        let sent = letters.values().map(|letter| self.send(letter));
        let results: Vec<Result<(), (String, bool)>> = futures_util::future::join_all(sent).await;
        for (letter, result) in letters.values().zip(results) {
            if let Err((message, retryable)) = result {
                failed.extend(letter.firings.iter().map(|(index, _)| ItemError {
                    index: *index,
                    message: message.clone(),
                    retryable,
                }));
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(SinkError::items(
                format!("{} of {} firings were not mailed", failed.len(), batch.len()),
                failed,
            ))
        }
    }
}

impl EmailSink {
    /// Send one message; `Err((why, worth retrying))`.
    async fn send(&self, letter: &Letter<'_>) -> Result<(), (String, bool)> {
        let firings: Vec<&AlertFired> = letter.firings.iter().map(|(_, f)| *f).collect();
        let (subject, body) = compose(&firings);
        let mut message = Message::builder().from(self.from.clone()).subject(subject);
        for to in &letter.to {
            message = message.to(to.clone());
        }
        let message = message
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| (format!("building the message: {e}"), false))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) => {
                // 5xx: the server refuses this message for good; anything else may pass later.
                let retryable = !e.is_permanent();
                tracing::warn!(server = %self.server, retryable, error = %e, "Sending an alert email failed.");
                Err((format!("SMTP {}: {e}", self.server), retryable))
            }
        }
    }
}
