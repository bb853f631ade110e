//! XEP-0077 In-Band Registration: creating an account before logging in (on a stream of
//! its own, encrypted as the configuration says), changing the password and cancelling the
//! account of a running client. Like XMPPFramework's `XMPPStream` registration calls.

use crate::client::{iq, targets, Client, Config};
use crate::error::Error;
use confab_proto::payloads::data_form::{DataForm, Field, FieldType, FormType};
use confab_proto::payloads::register::{RegisterQuery, NS};
use confab_proto::{ns, Element, IqType, Jid, StanzaError, StanzaErrorCondition, StreamError};
use confab_stream::client::{connect_unauthenticated, ClientError};
use confab_stream::{Transport, XmlStream};

/// The stream feature a server offering in-band registration announces (XEP-0077 §8).
pub const FEATURE_NS: &str = "http://jabber.org/features/iq-register";

/// Most elements read while waiting for one iq reply on the registration stream, so a
/// server sending other things forever cannot keep the client reading.
const MAX_ELEMENTS_PER_REPLY: usize = 32;

/// Why a registration request failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// The username is taken (`conflict`).
    #[error("the username is already registered")]
    Conflict,
    /// Something given is not acceptable, e.g. a too short password or a missing field
    /// (`not-acceptable`, or `jid-malformed` for a username that is no valid localpart).
    #[error("not acceptable{}", text_suffix(.0))]
    NotAcceptable(Option<String>),
    /// The server does not allow this (`not-allowed`: registration closed, only by
    /// invitation, or password change / removal turned off).
    #[error("not allowed{}", text_suffix(.0))]
    NotAllowed(Option<String>),
    /// The server offers no in-band registration (`service-unavailable`,
    /// `feature-not-implemented`).
    #[error("in-band registration is not offered")]
    NotSupported,
    /// Another error reply.
    #[error("refused: {0}")]
    Refused(StanzaError),
    /// The server asks for fields this client was not given (their names).
    #[error("the server also asks for {0:?}")]
    MissingFields(Vec<String>),
    /// Connecting, TLS, the stream or the reply failed.
    #[error(transparent)]
    Client(#[from] Error),
}

fn text_suffix(t: &Option<String>) -> String {
    t.as_deref().map(|t| format!(": {t}")).unwrap_or_default()
}

impl From<StanzaError> for RegistrationError {
    fn from(e: StanzaError) -> Self {
        match e.condition {
            StanzaErrorCondition::Conflict => RegistrationError::Conflict,
            StanzaErrorCondition::NotAcceptable | StanzaErrorCondition::JidMalformed => {
                RegistrationError::NotAcceptable(e.text)
            }
            StanzaErrorCondition::NotAllowed => RegistrationError::NotAllowed(e.text),
            StanzaErrorCondition::ServiceUnavailable
            | StanzaErrorCondition::FeatureNotImplemented => RegistrationError::NotSupported,
            _ => RegistrationError::Refused(e),
        }
    }
}

fn from_client_error(e: Error) -> RegistrationError {
    match e {
        Error::Stanza { error, .. } => error.into(),
        e => RegistrationError::Client(e),
    }
}

/// What the server asks of a new account (its answer to the registration get).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrationFields {
    /// The server's instructions, if any.
    pub instructions: Option<String>,
    /// The fields it asks for: a data form's (XEP-0077 §4) when it sent one, else the
    /// legacy fields it listed (`username`, `password`, `email`, …).
    pub fields: Vec<String>,
    /// The data form, when the server sent one (it is filled and submitted instead of the
    /// legacy fields).
    pub form: Option<DataForm>,
}

impl RegistrationFields {
    fn from_query(q: &Element) -> Result<RegistrationFields, RegistrationError> {
        let parsed = RegisterQuery::try_from(q).map_err(|e| {
            RegistrationError::Client(Error::Protocol(format!("registration fields: {e}")))
        })?;
        let form = parsed
            .form
            .filter(|f| f.type_ == FormType::Form && f.form_type() == Some(NS));
        let fields = match &form {
            Some(f) => f
                .fields
                .iter()
                .filter(|f| {
                    !matches!(f.effective_type(), FieldType::Hidden | FieldType::Fixed)
                        && f.var.is_some()
                })
                .filter_map(|f| f.var.clone())
                .collect(),
            // Every child but the informational ones names a field.
            None => q
                .elements()
                .filter(|e| e.ns == NS)
                .map(|e| e.name.clone())
                .filter(|n| !matches!(n.as_str(), "instructions" | "registered" | "remove"))
                .collect(),
        };
        Ok(RegistrationFields {
            instructions: parsed.instructions,
            fields,
            form,
        })
    }

    /// The registration set for `username`/`password` and `extra` fields: the form filled
    /// in when there is one, else the legacy fields. Fields the server requires (the form's
    /// `required` ones, every legacy one) that are not given are [`RegistrationError::MissingFields`].
    fn submission(
        &self,
        username: &str,
        password: &str,
        extra: &[(&str, &str)],
    ) -> Result<Element, RegistrationError> {
        let value = |var: &str| -> Option<String> {
            match var {
                "username" => Some(username.to_string()),
                "password" => Some(password.to_string()),
                _ => extra
                    .iter()
                    .find(|(k, _)| *k == var)
                    .map(|(_, v)| v.to_string()),
            }
        };
        let mut missing = Vec::new();
        let mut query = Element::new("query", NS);
        match &self.form {
            Some(form) => {
                let mut fields = vec![Field::form_type(NS)];
                for f in &form.fields {
                    let Some(var) = f.var.as_deref() else {
                        continue;
                    };
                    if var == "FORM_TYPE" || f.effective_type() == FieldType::Fixed {
                        continue;
                    }
                    match value(var) {
                        Some(v) => fields.push(Field::new(var, [v])),
                        None if f.required => missing.push(var.to_string()),
                        None => {}
                    }
                }
                query.push_child(DataForm::new(FormType::Submit, fields).into());
            }
            None => {
                for var in &self.fields {
                    match value(var) {
                        Some(v) => query.push_child(Element::new(var.clone(), NS).text(v)),
                        None => missing.push(var.clone()),
                    }
                }
            }
        }
        if missing.is_empty() {
            Ok(query)
        } else {
            Err(RegistrationError::MissingFields(missing))
        }
    }
}

/// A stream before authentication, used for one registration.
struct PreAuth {
    stream: XmlStream<Transport>,
    features: Element,
    next_id: u32,
}

impl PreAuth {
    async fn connect(config: &Config) -> Result<PreAuth, RegistrationError> {
        let mut last = None;
        for t in targets(&config.options, &config.endpoint).await? {
            let mut o = config.options.clone();
            o.addr = t.addr;
            o.tls = t.tls;
            match tokio::time::timeout(config.connect_timeout, connect_unauthenticated(&o)).await {
                Ok(Ok((stream, features))) => {
                    return Ok(PreAuth {
                        stream,
                        features,
                        next_id: 0,
                    })
                }
                Ok(Err(e)) => last = Some(Error::Connect(e)),
                Err(_) => last = Some(Error::Timeout),
            }
        }
        Err(last
            .unwrap_or_else(|| Error::Dns("no address to connect to".into()))
            .into())
    }

    /// Sends an iq to the server and waits (bounded in time and elements) for its reply.
    async fn request(
        &mut self,
        type_: IqType,
        payload: Element,
        timeout: std::time::Duration,
    ) -> Result<Element, RegistrationError> {
        self.next_id += 1;
        let id = format!("reg{}", self.next_id);
        let el = iq(type_, None, payload).attr("id", id.clone());
        let io = |e: std::io::Error| RegistrationError::Client(Error::Write(e.to_string()));
        self.stream
            .write_element(&el, ns::CLIENT)
            .await
            .map_err(io)?;
        let wait = async {
            for _ in 0..MAX_ELEMENTS_PER_REPLY {
                let e = self
                    .stream
                    .next_element()
                    .await
                    .map_err(|e| Error::Connect(ClientError::from(e)))?;
                if let Some(se) = StreamError::from_element(&e) {
                    return Err(Error::Connect(ClientError::Stream(se)));
                }
                if e.name == "iq" && e.get_attr("id") == Some(id.as_str()) {
                    return Ok(e);
                }
                tracing::debug!(element = %e.name, "ignoring element while registering");
            }
            Err(Error::Protocol(
                "no reply to the registration request".into(),
            ))
        };
        let reply = tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| Error::Timeout)??;
        match reply.get_attr("type") {
            Some("result") => Ok(reply),
            Some("error") => Err(StanzaError::from_stanza(&reply)
                .unwrap_or_else(|| StanzaError::new(StanzaErrorCondition::UndefinedCondition))
                .into()),
            _ => Err(Error::Protocol("reply of type neither result nor error".into()).into()),
        }
    }

    async fn close(mut self) {
        let _ = self.stream.write_bytes(b"</stream:stream>").await;
        let _ = self.stream.shutdown().await;
    }
}

/// Asks the server, before logging in, what a new account needs (XEP-0077 §3.1).
pub async fn registration_fields(config: &Config) -> Result<RegistrationFields, RegistrationError> {
    let mut s = PreAuth::connect(config).await?;
    let r = fields_on(&mut s, config).await;
    s.close().await;
    r
}

async fn fields_on(
    s: &mut PreAuth,
    config: &Config,
) -> Result<RegistrationFields, RegistrationError> {
    if s.features.get_child("register", FEATURE_NS).is_none() {
        // The feature is advisory (§8); servers that omit it may still answer.
        tracing::debug!("server does not announce in-band registration; asking anyway");
    }
    let reply = s
        .request(
            IqType::Get,
            Element::new("query", NS),
            config.request_timeout,
        )
        .await?;
    let q = reply.get_child("query", NS).ok_or_else(|| {
        RegistrationError::Client(Error::Protocol(
            "registration result without a query".into(),
        ))
    })?;
    RegistrationFields::from_query(q)
}

/// Registers the account of `config` (`options.username`, `options.password`) in-band,
/// before logging in: asks for the fields, fills the data form (or the legacy fields) with
/// the username, password and `extra` fields (e.g. `("email", "…")`), and submits it on
/// the same stream. Log in afterwards with [`Client::connect`] and the same config.
pub async fn register_account(
    config: &Config,
    extra: &[(&str, &str)],
) -> Result<(), RegistrationError> {
    let mut s = PreAuth::connect(config).await?;
    let r = async {
        let fields = fields_on(&mut s, config).await?;
        let set = fields.submission(&config.options.username, &config.options.password, extra)?;
        s.request(IqType::Set, set, config.request_timeout).await?;
        Ok(())
    }
    .await;
    s.close().await;
    r
}

/// Changes the logged-in account's password (XEP-0077 §3.3). The new password applies to
/// the next login: update the configuration used for reconnecting.
pub async fn change_password(client: &Client, new_password: &str) -> Result<(), RegistrationError> {
    let me = client.jid().to_bare();
    let username = me.node().map(|n| n.to_string()).unwrap_or_default();
    let query = Element::new("query", NS)
        .child(Element::new("username", NS).text(username))
        .child(Element::new("password", NS).text(new_password));
    let domain = Jid::from(me.domain().to_owned());
    client
        .request(iq(IqType::Set, Some(&domain), query))
        .await
        .map_err(from_client_error)?;
    Ok(())
}

/// Cancels (deletes) the logged-in account (XEP-0077 §3.2). The server ends the stream
/// afterwards; a server that closes it before its result arrives counts as done.
pub async fn cancel_account(client: &Client) -> Result<(), RegistrationError> {
    let query = Element::new("query", NS).child(Element::new("remove", NS));
    match client.request(iq(IqType::Set, None, query)).await {
        Ok(_) => Ok(()),
        // §3.2: the server may close the stream right away (Prosody sends
        // `<not-authorized/>` as a stream error once the account is gone).
        Err(Error::Disconnected) => Ok(()),
        Err(e) => Err(from_client_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_fragment(xml: &str) -> Option<Element> {
        confab_proto::parser::parse_fragment(
            xml,
            confab_proto::ns::CLIENT,
            &confab_proto::parser::Limits::default(),
        )
    }

    fn query(xml: &str) -> Element {
        parse_fragment(xml).expect("xml")
    }

    #[test]
    fn legacy_fields_filled_and_missing_ones_named() {
        let q = query(
            "<query xmlns='jabber:iq:register'><instructions>hi</instructions>\
             <username/><password/><email/></query>",
        );
        let f = RegistrationFields::from_query(&q).expect("fields");
        assert_eq!(f.fields, ["username", "password", "email"]);
        assert!(matches!(
            f.submission("u", "p", &[]),
            Err(RegistrationError::MissingFields(m)) if m == ["email"]
        ));
        let set = f
            .submission("u", "p", &[("email", "u@example.org")])
            .expect("set");
        let parsed = RegisterQuery::try_from(&set).expect("query");
        assert_eq!(parsed.username.as_deref(), Some("u"));
        assert_eq!(parsed.email.as_deref(), Some("u@example.org"));
    }

    #[test]
    fn a_form_is_filled_instead() {
        let q = query(
            "<query xmlns='jabber:iq:register'><username/><password/>\
             <x xmlns='jabber:x:data' type='form'>\
             <field type='hidden' var='FORM_TYPE'><value>jabber:iq:register</value></field>\
             <field type='text-single' var='username'><required/></field>\
             <field type='text-private' var='password'><required/></field>\
             <field type='text-single' var='nick'/></x></query>",
        );
        let f = RegistrationFields::from_query(&q).expect("fields");
        assert!(f.form.is_some());
        assert_eq!(f.fields, ["username", "password", "nick"]);
        let set = f
            .submission("u", "p", &[])
            .expect("optional nick may be left out");
        let parsed = RegisterQuery::try_from(&set).expect("query");
        let form = parsed.form.expect("submitted form");
        assert_eq!(form.type_, FormType::Submit);
        assert_eq!(form.value("username"), Some("u"));
        assert_eq!(form.value("password"), Some("p"));
        assert_eq!(form.field("nick"), None);
        assert_eq!(parsed.username, None);
    }

    #[test]
    fn conditions_map_to_typed_errors() {
        let e = |c| RegistrationError::from(StanzaError::new(c));
        assert!(matches!(
            e(StanzaErrorCondition::Conflict),
            RegistrationError::Conflict
        ));
        assert!(matches!(
            e(StanzaErrorCondition::NotAcceptable),
            RegistrationError::NotAcceptable(None)
        ));
        assert!(matches!(
            e(StanzaErrorCondition::NotAllowed),
            RegistrationError::NotAllowed(None)
        ));
        assert!(matches!(
            e(StanzaErrorCondition::ServiceUnavailable),
            RegistrationError::NotSupported
        ));
        assert!(matches!(
            e(StanzaErrorCondition::BadRequest),
            RegistrationError::Refused(_)
        ));
    }
}
