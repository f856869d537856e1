//! What the sink publishes: [`Message`], one event, and how a dashboard event becomes one.

use std::fmt;

/// One event to publish: one JetStream message with `Nats-Msg-Id: event_id`, on the subject
/// `<prefix>.<host>.<session>.<event>`.
///
/// Build it from its parts with [`Message::new`], or from the text of a dashboard event
/// (`claude_event`, the hook's payload) with [`Message::from_claude_event`], which reads the
/// id, session and event name from the payload itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub(crate) event_id: String,
    pub(crate) session: String,
    pub(crate) event: String,
    pub(crate) payload: String,
}

impl Message {
    /// A message from its parts. `payload` is published as it is (JSON text, for sluice);
    /// `event_id` is the message's `Nats-Msg-Id`, so it must be unique per event and the same
    /// when the event is sent again. `session` and `event` become subject tokens (sanitised:
    /// see [`token`](crate::token)).
    pub fn new(
        event_id: impl Into<String>,
        session: impl Into<String>,
        event: impl Into<String>,
        payload: impl Into<String>,
    ) -> Self {
        Self {
            event_id: event_id.into(),
            session: session.into(),
            event: event.into(),
            payload: payload.into(),
        }
    }

    /// A message from the JSON text of a dashboard event, as the hook writes it (see the
    /// project's PROTOCOL.md): the id is `data.event_id`, the session `data.session_id`, the
    /// event `subtype` (`pre_tool`), or else `data.hook_event_name`, or else `_`. The text is
    /// published as it is.
    ///
    /// ```
    /// use sluice_nats_sink::Message;
    ///
    /// let text = r#"{"subtype":"pre_tool","data":{"event_id":"e1","session_id":"s1"}}"#;
    /// let message = Message::from_claude_event(text.to_string())?;
    /// assert_eq!((message.event_id(), message.session(), message.event()), ("e1", "s1", "pre_tool"));
    /// # Ok::<(), sluice_nats_sink::NotAnEvent>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`NotAnEvent`] when the text is not a JSON object or has no `data.event_id` string:
    /// without an id, a repeat could not be told from a new event.
    pub fn from_claude_event(payload: String) -> Result<Self, NotAnEvent> {
        #[derive(serde::Deserialize)]
        struct Event<'a> {
            #[serde(borrow, default)]
            subtype: Option<std::borrow::Cow<'a, str>>,
            #[serde(borrow)]
            data: Option<Data<'a>>,
        }
        #[derive(serde::Deserialize)]
        struct Data<'a> {
            #[serde(borrow, default)]
            event_id: Option<std::borrow::Cow<'a, str>>,
            #[serde(borrow, default)]
            session_id: Option<std::borrow::Cow<'a, str>>,
            #[serde(borrow, default)]
            hook_event_name: Option<std::borrow::Cow<'a, str>>,
        }
        let parsed: Event<'_> = serde_json::from_str(&payload).map_err(|_| NotAnEvent {
            reason: "not a JSON object with a data object",
        })?;
        let data = parsed.data.ok_or(NotAnEvent {
            reason: "no data object",
        })?;
        let event_id = data.event_id.ok_or(NotAnEvent {
            reason: "no data.event_id",
        })?;
        let event = match (parsed.subtype, &data.hook_event_name) {
            (Some(subtype), _) => subtype.into_owned(),
            (None, Some(name)) => name.to_string(),
            (None, None) => String::new(),
        };
        let (event_id, session) = (
            event_id.into_owned(),
            data.session_id.map(|s| s.into_owned()).unwrap_or_default(),
        );
        Ok(Self {
            event_id,
            session,
            event,
            payload,
        })
    }

    /// The event's id, sent as `Nats-Msg-Id`.
    pub fn event_id(&self) -> &str {
        &self.event_id
    }

    /// The session, before sanitising.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// The event's name, before sanitising.
    pub fn event(&self) -> &str {
        &self.event
    }

    /// The payload, as published.
    pub fn payload(&self) -> &str {
        &self.payload
    }
}

/// A dashboard event's text that [`Message::from_claude_event`] cannot publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAnEvent {
    reason: &'static str,
}

impl fmt::Display for NotAnEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a sluice event: {}", self.reason)
    }
}

impl std::error::Error for NotAnEvent {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dashboard_event_names_its_id_session_and_event() {
        let text = r#"{"subtype":"pre_tool","data":{"event_id":"e\"1","session_id":"s1","hook_event_name":"PreToolUse"}}"#;
        let message = Message::from_claude_event(text.to_string()).unwrap();
        assert_eq!(message.event_id(), "e\"1");
        assert_eq!(message.session(), "s1");
        assert_eq!(message.event(), "pre_tool");
        assert_eq!(message.payload(), text);

        let text = r#"{"subtype":"a\u002eb","data":{"event_id":"e1"}}"#;
        let message = Message::from_claude_event(text.to_string()).unwrap();
        assert_eq!(message.event(), "a.b");

        let text = r#"{"data":{"event_id":"e2","hook_event_name":"Stop"}}"#;
        let message = Message::from_claude_event(text.to_string()).unwrap();
        assert_eq!((message.session(), message.event()), ("", "Stop"));
    }

    #[test]
    fn an_event_without_an_id_is_refused() {
        for text in ["[]", "not json", r#"{"subtype":"x"}"#, r#"{"data":{}}"#] {
            assert!(
                Message::from_claude_event(text.to_string()).is_err(),
                "{text}"
            );
        }
    }
}
