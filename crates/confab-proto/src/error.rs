//! Every stream error (RFC 6120 §4.9.3) and stanza error (RFC 6120 §8.3.3) condition.

use crate::ns;
use crate::xml::Element;

macro_rules! conditions {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The element name defined by the RFC.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
            pub fn from_name(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$variant),)+ _ => None }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

conditions!(
    /// Stream error conditions, RFC 6120 §4.9.3.
    StreamErrorCondition {
        BadFormat => "bad-format",
        BadNamespacePrefix => "bad-namespace-prefix",
        Conflict => "conflict",
        ConnectionTimeout => "connection-timeout",
        HostGone => "host-gone",
        HostUnknown => "host-unknown",
        ImproperAddressing => "improper-addressing",
        InternalServerError => "internal-server-error",
        InvalidFrom => "invalid-from",
        InvalidNamespace => "invalid-namespace",
        InvalidXml => "invalid-xml",
        NotAuthorized => "not-authorized",
        NotWellFormed => "not-well-formed",
        PolicyViolation => "policy-violation",
        RemoteConnectionFailed => "remote-connection-failed",
        Reset => "reset",
        ResourceConstraint => "resource-constraint",
        RestrictedXml => "restricted-xml",
        SeeOtherHost => "see-other-host",
        SystemShutdown => "system-shutdown",
        UndefinedCondition => "undefined-condition",
        UnsupportedEncoding => "unsupported-encoding",
        UnsupportedFeature => "unsupported-feature",
        UnsupportedStanzaType => "unsupported-stanza-type",
        UnsupportedVersion => "unsupported-version",
    }
);

conditions!(
    /// Stanza error conditions, RFC 6120 §8.3.3.
    StanzaErrorCondition {
        BadRequest => "bad-request",
        Conflict => "conflict",
        FeatureNotImplemented => "feature-not-implemented",
        Forbidden => "forbidden",
        Gone => "gone",
        InternalServerError => "internal-server-error",
        ItemNotFound => "item-not-found",
        JidMalformed => "jid-malformed",
        NotAcceptable => "not-acceptable",
        NotAllowed => "not-allowed",
        NotAuthorized => "not-authorized",
        PolicyViolation => "policy-violation",
        RecipientUnavailable => "recipient-unavailable",
        Redirect => "redirect",
        RegistrationRequired => "registration-required",
        RemoteServerNotFound => "remote-server-not-found",
        RemoteServerTimeout => "remote-server-timeout",
        ResourceConstraint => "resource-constraint",
        ServiceUnavailable => "service-unavailable",
        SubscriptionRequired => "subscription-required",
        UndefinedCondition => "undefined-condition",
        UnexpectedRequest => "unexpected-request",
    }
);

conditions!(
    /// The `type` of a stanza error, RFC 6120 §8.3.2.
    StanzaErrorType {
        Auth => "auth",
        Cancel => "cancel",
        Continue => "continue",
        Modify => "modify",
        Wait => "wait",
    }
);

impl StanzaErrorCondition {
    /// The error type RFC 6120 §8.3.3 gives for each condition.
    pub fn default_type(self) -> StanzaErrorType {
        use StanzaErrorCondition::*;
        match self {
            BadRequest | JidMalformed | NotAcceptable | PolicyViolation | Redirect => {
                StanzaErrorType::Modify
            }
            Forbidden | NotAuthorized | RegistrationRequired | SubscriptionRequired => {
                StanzaErrorType::Auth
            }
            RecipientUnavailable | RemoteServerTimeout | ResourceConstraint | UnexpectedRequest => {
                StanzaErrorType::Wait
            }
            _ => StanzaErrorType::Cancel,
        }
    }
}

/// A stream-level error: sent, then the stream is closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamError {
    pub condition: StreamErrorCondition,
    pub text: Option<String>,
    /// An application-specific condition (RFC 6120 §4.9.4), e.g. XEP-0198's
    /// `<handled-count-too-high/>`.
    pub app: Option<Element>,
}

impl StreamError {
    pub fn new(condition: StreamErrorCondition) -> Self {
        StreamError {
            condition,
            text: None,
            app: None,
        }
    }

    pub fn with_text(condition: StreamErrorCondition, text: impl Into<String>) -> Self {
        StreamError {
            condition,
            text: Some(text.into()),
            app: None,
        }
    }

    /// Adds an application-specific condition element.
    pub fn with_app(mut self, app: Element) -> Self {
        self.app = Some(app);
        self
    }

    pub fn to_element(&self) -> Element {
        let mut e = Element::new("error", ns::STREAM)
            .child(Element::new(self.condition.as_str(), ns::STREAMS));
        if let Some(t) = &self.text {
            e.push_child(Element::new("text", ns::STREAMS).text(t.clone()));
        }
        if let Some(app) = &self.app {
            e.push_child(app.clone());
        }
        e
    }

    /// Reads a received `<stream:error/>`.
    pub fn from_element(e: &Element) -> Option<Self> {
        if !e.is("error", ns::STREAM) {
            return None;
        }
        let condition = e
            .elements()
            .filter(|c| c.ns == ns::STREAMS)
            .find_map(|c| StreamErrorCondition::from_name(&c.name))?;
        let text = e.get_child("text", ns::STREAMS).map(|t| t.text_content());
        let app = e.elements().find(|c| c.ns != ns::STREAMS).cloned();
        Some(StreamError {
            condition,
            text,
            app,
        })
    }
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.text {
            Some(t) => write!(f, "{} ({t})", self.condition),
            None => write!(f, "{}", self.condition),
        }
    }
}

impl std::error::Error for StreamError {}

/// A stanza-level error, carried in a `type='error'` reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StanzaError {
    pub type_: StanzaErrorType,
    pub condition: StanzaErrorCondition,
    pub text: Option<String>,
    /// The entity that generated the error (RFC 6120 §8.3.2 `by`).
    pub by: Option<String>,
}

impl StanzaError {
    pub fn new(condition: StanzaErrorCondition) -> Self {
        StanzaError {
            type_: condition.default_type(),
            condition,
            text: None,
            by: None,
        }
    }

    pub fn with_text(condition: StanzaErrorCondition, text: impl Into<String>) -> Self {
        StanzaError {
            text: Some(text.into()),
            ..StanzaError::new(condition)
        }
    }

    /// The `<error/>` child in the given stanza namespace (jabber:client or jabber:server).
    pub fn to_element(&self, stanza_ns: &str) -> Element {
        let mut e = Element::new("error", crate::xml::namespace(stanza_ns))
            .attr("type", self.type_.as_str());
        if let Some(by) = &self.by {
            e.set_attr("by", by.clone());
        }
        e.push_child(Element::new(self.condition.as_str(), ns::STANZAS));
        if let Some(t) = &self.text {
            e.push_child(Element::new("text", ns::STANZAS).text(t.clone()));
        }
        e
    }

    /// Reads the `<error/>` child of a received error stanza.
    pub fn from_stanza(stanza: &Element) -> Option<Self> {
        let e = stanza.elements().find(|c| c.name == "error")?;
        let condition = e
            .elements()
            .filter(|c| c.ns == ns::STANZAS)
            .find_map(|c| StanzaErrorCondition::from_name(&c.name))?;
        let type_ = e
            .get_attr("type")
            .and_then(StanzaErrorType::from_name)
            .unwrap_or_else(|| condition.default_type());
        Some(StanzaError {
            type_,
            condition,
            text: e.get_child("text", ns::STANZAS).map(|t| t.text_content()),
            by: e.get_attr("by").map(str::to_string),
        })
    }
}

impl std::fmt::Display for StanzaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.text {
            Some(t) => write!(f, "{} ({t})", self.condition),
            None => write!(f, "{}", self.condition),
        }
    }
}

impl std::error::Error for StanzaError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_stream_conditions_round_trip() {
        assert_eq!(StreamErrorCondition::ALL.len(), 25);
        for c in StreamErrorCondition::ALL {
            let e = StreamError::with_text(*c, "why");
            assert_eq!(StreamError::from_element(&e.to_element()), Some(e));
        }
    }

    #[test]
    fn all_stanza_conditions_round_trip() {
        assert_eq!(StanzaErrorCondition::ALL.len(), 22);
        for c in StanzaErrorCondition::ALL {
            let err = StanzaError::new(*c);
            let stanza = Element::new("iq", ns::CLIENT).child(err.to_element(ns::CLIENT));
            assert_eq!(StanzaError::from_stanza(&stanza), Some(err));
        }
        assert_eq!(
            StanzaError::new(StanzaErrorCondition::ServiceUnavailable).to_element(ns::CLIENT).to_xml(ns::CLIENT),
            "<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
        );
    }
}
