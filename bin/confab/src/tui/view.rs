//! Drawing the [`Model`]: the roster pane (presence, unread counts) on the left, the open
//! conversation with its typing line and the input on the right, the status line below.

use super::model::{Author, Availability, Connection, Key, Model};
use crate::emoji;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;

/// The presence mark before a contact.
fn mark(a: Availability) -> (&'static str, Color) {
    match a {
        Availability::Online => ("●", Color::Green),
        Availability::Away => ("◐", Color::Yellow),
        Availability::Busy => ("◍", Color::Red),
        Availability::Offline => ("○", Color::DarkGray),
    }
}

/// Draws the whole screen; returns how many rows of the open conversation lie above its
/// pane when it shows the newest (how far it can scroll up before the top).
pub fn draw(frame: &mut Frame, m: &Model) -> u16 {
    let [main, status] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(1)]).areas(frame.area());
    let [roster, chat] =
        Layout::horizontal([Constraint::Length(38), Constraint::Min(10)]).areas(main);
    draw_roster(frame, roster, m);
    let above = draw_chat(frame, chat, m);
    draw_status(frame, status, m);
    above
}

fn draw_roster(frame: &mut Frame, area: Rect, m: &Model) {
    let mut lines = Vec::new();
    for (jid, c) in &m.contacts {
        let (sym, color) = mark(c.availability());
        let selected = m.open.as_ref() == Some(&Key::Contact(jid.clone()));
        let mut spans = vec![
            Span::styled(format!("{sym} "), Style::default().fg(color)),
            Span::raw(
                c.name
                    .clone()
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| jid.clone()),
            ),
        ];
        if c.unread > 0 {
            spans.push(Span::styled(
                format!(" ({})", c.unread),
                Style::default().add_modifier(Modifier::BOLD),
            ));
        }
        if c.requested {
            spans.push(Span::styled(" [asks]", Style::default().fg(Color::Yellow)));
        } else if c.asking {
            spans.push(Span::styled(
                " [asked]",
                Style::default().fg(Color::DarkGray),
            ));
        }
        if c.typing {
            spans.push(Span::raw(" ✎"));
        }
        lines.push(highlight(Line::from(spans), selected));
    }
    if !m.rooms.is_empty() {
        lines.push(Line::from(""));
        lines.push(Line::styled(
            "Rooms",
            Style::default().add_modifier(Modifier::BOLD),
        ));
    }
    for (jid, r) in &m.rooms {
        let selected = m.open.as_ref() == Some(&Key::Room(jid.clone()));
        let mut spans = vec![Span::raw("# "), Span::raw(jid.clone())];
        if r.unread > 0 {
            spans.push(Span::styled(
                format!(" ({})", r.unread),
                Style::default().add_modifier(Modifier::BOLD),
            ));
        }
        lines.push(highlight(Line::from(spans), selected));
    }
    let block = Block::default().borders(Borders::ALL).title(" Contacts ");
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn highlight(line: Line<'static>, selected: bool) -> Line<'static> {
    if selected {
        line.style(Style::default().add_modifier(Modifier::REVERSED))
    } else {
        line
    }
}

fn draw_chat(frame: &mut Frame, area: Rect, m: &Model) -> u16 {
    let [log, typing, input] = Layout::vertical([
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(3),
    ])
    .areas(area);
    let title = match &m.open {
        Some(Key::Contact(j)) => format!(" {j} "),
        Some(Key::Room(r)) => {
            let nick = m.rooms.get(r).map(|r| r.nick.as_str()).unwrap_or_default();
            format!(" {r} (as {nick}) ")
        }
        None => " no conversation: Tab to pick one, /help ".to_string(),
    };
    let lines: Vec<Line> = m
        .open_lines()
        .map(|l| {
            let (who, style) = match &l.author {
                Author::Me => ("me".to_string(), Style::default().fg(Color::Cyan)),
                Author::Them(n) => (n.clone(), Style::default().fg(Color::Magenta)),
                Author::System => ("*".to_string(), Style::default().fg(Color::DarkGray)),
            };
            let mut spans = vec![
                Span::styled(format!("{who}: "), style.add_modifier(Modifier::BOLD)),
                Span::raw(emoji::render(&l.text)),
            ];
            if l.delivered {
                spans.push(Span::styled(" ✓", Style::default().fg(Color::Green)));
            }
            if l.delayed {
                spans.push(Span::styled(
                    " (earlier)",
                    Style::default().fg(Color::DarkGray),
                ));
            }
            Line::from(spans)
        })
        .collect();
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner = block.inner(log);
    frame.render_widget(block, log);
    let paragraph = Paragraph::new(lines).wrap(Wrap { trim: false });
    // Follow the bottom unless scrolled up.
    let total = u16::try_from(paragraph.line_count(inner.width)).unwrap_or(u16::MAX);
    let bottom = total.saturating_sub(inner.height);
    let offset = bottom.saturating_sub(m.scroll);
    frame.render_widget(paragraph.scroll((offset, 0)), inner);

    let typing_text = m
        .open_typing()
        .map(|who| format!(" {who} is typing…"))
        .unwrap_or_default();
    frame.render_widget(
        Paragraph::new(typing_text).style(Style::default().fg(Color::DarkGray)),
        typing,
    );

    let block = Block::default().borders(Borders::ALL);
    let width = input.width.saturating_sub(2) as usize;
    // Show the end of a long input.
    let chars: Vec<char> = m.input.chars().collect();
    let shown: String = chars[chars.len().saturating_sub(width.saturating_sub(1))..]
        .iter()
        .collect();
    frame.render_widget(Paragraph::new(shown.clone()).block(block), input);
    let x = input.x + 1 + ratatui::text::Line::from(shown).width() as u16;
    frame.set_cursor_position((x.min(input.right().saturating_sub(2)), input.y + 1));
    bottom
}

fn draw_status(frame: &mut Frame, area: Rect, m: &Model) {
    let (conn, color) = match &m.connection {
        Connection::Online => ("online".to_string(), Color::Green),
        Connection::Reconnecting(why) => (format!("reconnecting ({why})"), Color::Yellow),
        Connection::Offline(why) => (format!("offline: {why}"), Color::Red),
    };
    let mut spans = vec![
        Span::styled(
            format!(" {} ", m.me),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::styled(format!("[{conn}] "), Style::default().fg(color)),
    ];
    if let Some((text, is_error)) = &m.notice {
        let style = if *is_error {
            Style::default().fg(Color::Red)
        } else {
            Style::default()
        };
        spans.push(Span::styled(text.clone(), style));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::model::{Command, RosterEntry};
    use confab_client::{ChatEvent, ChatMessage, ChatState, Jid};
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn screen(m: &Model) -> String {
        let mut t = Terminal::new(TestBackend::new(100, 16)).expect("terminal");
        t.draw(|f| {
            draw(f, m);
        })
        .expect("draws");
        let buf = t.backend().buffer().clone();
        let mut out = String::new();
        for y in 0..buf.area.height {
            for x in 0..buf.area.width {
                out.push_str(buf[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    #[test]
    fn shows_roster_emoji_tick_typing_and_status() {
        let mut m = Model::new("alice@localhost", "t");
        m.on_roster(RosterEntry {
            jid: "bob@localhost".into(),
            name: None,
            subscription: "both".into(),
            asking: false,
            removed: false,
        });
        m.on_chat(ChatEvent::Message(ChatMessage {
            id: Some("m1".into()),
            from: Some(Jid::new("bob@localhost/desk").expect("jid")),
            body: Some("hi :) :thumbsup:".into()),
            ..ChatMessage::default()
        }));
        let s = screen(&m);
        assert!(s.contains("○ bob@localhost (1)"), "{s}");
        assert!(s.contains("alice@localhost [online]"), "{s}");

        m.open(Key::Contact("bob@localhost".into()));
        for c in "yo :D".chars() {
            m.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
        }
        let sent = m.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
        let Some(Command::Send { id, .. }) = sent.first() else {
            panic!("{sent:?}")
        };
        m.on_chat(ChatEvent::Delivered {
            from: Jid::new("bob@localhost/desk").expect("jid"),
            id: id.clone(),
        });
        m.on_chat(ChatEvent::State {
            from: Jid::new("bob@localhost/desk").expect("jid"),
            state: ChatState::Composing,
        });
        let s = screen(&m);
        // Wide emoji take two cells; the test buffer keeps the second one empty.
        let squeezed = s
            .replace("🙂 ", "🙂")
            .replace("👍 ", "👍")
            .replace("😃 ", "😃");
        assert!(squeezed.contains("bob@localhost: hi 🙂 👍"), "{s}");
        assert!(squeezed.contains("me: yo 😃 ✓"), "{s}");
        assert!(s.contains("bob@localhost is typing…"), "{s}");
        assert!(!s.contains("(1)"), "{s}");
    }
}
