//! XEP-0085 Chat State Notifications.

use super::PayloadError;
use crate::xml::Element;

pub const NS: &str = "http://jabber.org/protocol/chatstates";

/// A chat state, one element in the chat states namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChatState {
    Active,
    Composing,
    Paused,
    Inactive,
    Gone,
}

impl ChatState {
    pub const ALL: [ChatState; 5] = [
        ChatState::Active,
        ChatState::Composing,
        ChatState::Paused,
        ChatState::Inactive,
        ChatState::Gone,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChatState::Active => "active",
            ChatState::Composing => "composing",
            ChatState::Paused => "paused",
            ChatState::Inactive => "inactive",
            ChatState::Gone => "gone",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The chat state carried by a message, if any (the first one).
    pub fn of_message(message: &Element) -> Option<Self> {
        message.elements().find_map(|e| ChatState::try_from(e).ok())
    }
}

impl TryFrom<&Element> for ChatState {
    type Error = PayloadError;
    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        if el.ns != NS {
            return Err(PayloadError::UnexpectedElement {
                name: "active",
                ns: NS,
            });
        }
        ChatState::from_name(&el.name).ok_or(PayloadError::Invalid("chat state"))
    }
}

impl From<ChatState> for Element {
    fn from(c: ChatState) -> Element {
        Element::new(c.as_str(), NS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payloads::test_util::xml;

    #[test]
    fn xep_0085_examples() {
        // §5.1, Example 1: a content message with <active/>.
        let m = xml("<message
              from='bernardo@shakespeare.lit/pda'
              to='francisco@shakespeare.lit'
              type='chat'>
              <body>Who's there?</body>
              <active xmlns='http://jabber.org/protocol/chatstates'/>
            </message>");
        assert_eq!(ChatState::of_message(&m), Some(ChatState::Active));
        // Example 3: a standalone notification.
        let m = xml("<message
              from='bernardo@shakespeare.lit/pda'
              to='francisco@shakespeare.lit/elsinore'
              type='chat'>
              <composing xmlns='http://jabber.org/protocol/chatstates'/>
            </message>");
        assert_eq!(ChatState::of_message(&m), Some(ChatState::Composing));
        for c in ChatState::ALL {
            assert_eq!(ChatState::try_from(&Element::from(c)), Ok(c));
        }
        assert!(ChatState::try_from(&Element::new("sleeping", NS)).is_err());
        assert!(ChatState::try_from(&Element::new("active", "jabber:client")).is_err());
    }
}
