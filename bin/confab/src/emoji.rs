//! Emoji for display: `:shortcode:`s (`:thumbsup:` → 👍) and classic emoticons (`:)` → 🙂)
//! in message text become the emoji they stand for. Only what is shown changes; what is
//! sent and archived stays as typed, so other clients convert (or not) as they like.

/// Shortcodes (the common GitHub/Slack names), without the colons.
const SHORTCODES: &[(&str, &str)] = &[
    ("smile", "😄"),
    ("smiley", "😃"),
    ("grin", "😁"),
    ("laughing", "😆"),
    ("joy", "😂"),
    ("slightly_smiling_face", "🙂"),
    ("wink", "😉"),
    ("blush", "😊"),
    ("heart_eyes", "😍"),
    ("kissing_heart", "😘"),
    ("stuck_out_tongue", "😛"),
    ("sunglasses", "😎"),
    ("thinking", "🤔"),
    ("neutral_face", "😐"),
    ("confused", "😕"),
    ("disappointed", "😞"),
    ("cry", "😢"),
    ("sob", "😭"),
    ("angry", "😠"),
    ("scream", "😱"),
    ("open_mouth", "😮"),
    ("sleeping", "😴"),
    ("thumbsup", "👍"),
    ("+1", "👍"),
    ("thumbsdown", "👎"),
    ("-1", "👎"),
    ("ok_hand", "👌"),
    ("wave", "👋"),
    ("clap", "👏"),
    ("pray", "🙏"),
    ("muscle", "💪"),
    ("heart", "❤️"),
    ("broken_heart", "💔"),
    ("fire", "🔥"),
    ("tada", "🎉"),
    ("star", "⭐"),
    ("sparkles", "✨"),
    ("rocket", "🚀"),
    ("coffee", "☕"),
    ("beer", "🍺"),
    ("pizza", "🍕"),
    ("cake", "🍰"),
    ("eyes", "👀"),
    ("100", "💯"),
    ("check", "✔️"),
    ("x", "❌"),
    ("warning", "⚠️"),
    ("question", "❓"),
    ("poop", "💩"),
    ("ghost", "👻"),
    ("sun", "☀️"),
    ("rainbow", "🌈"),
];

/// Classic emoticons. Longer ones first where one is a prefix of another (`:-)` before `:)`
/// is not needed since matching is exact per token, but `:'(` must not become `:(`).
const EMOTICONS: &[(&str, &str)] = &[
    (":)", "🙂"),
    (":-)", "🙂"),
    ("(:", "🙂"),
    (":D", "😃"),
    (":-D", "😃"),
    ("xD", "😆"),
    ("XD", "😆"),
    (";)", "😉"),
    (";-)", "😉"),
    (":(", "🙁"),
    (":-(", "🙁"),
    (":'(", "😢"),
    (":P", "😛"),
    (":-P", "😛"),
    (":p", "😛"),
    (":-p", "😛"),
    (":O", "😮"),
    (":-O", "😮"),
    (":o", "😮"),
    (":|", "😐"),
    (":-|", "😐"),
    (":/", "😕"),
    (":-/", "😕"),
    (":*", "😘"),
    (":-*", "😘"),
    ("B)", "😎"),
    ("B-)", "😎"),
    ("<3", "❤️"),
    ("</3", "💔"),
];

/// The emoji a shortcode name (without colons) stands for.
pub fn shortcode(name: &str) -> Option<&'static str> {
    SHORTCODES.iter().find(|(n, _)| *n == name).map(|(_, e)| *e)
}

fn emoticon(token: &str) -> Option<&'static str> {
    EMOTICONS.iter().find(|(t, _)| *t == token).map(|(_, e)| *e)
}

/// Shows `text` with emoji: every `:name:` that is a known shortcode, and every
/// whitespace-separated word that is exactly a known emoticon (so `http://x` or `a:)b`
/// stay as they are), replaced by its emoji. Whitespace is kept as it was.
pub fn render(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // Words and the whitespace between them, in order.
    let mut rest = text;
    while !rest.is_empty() {
        let ws_end = rest
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(rest.len());
        out.push_str(&rest[..ws_end]);
        rest = &rest[ws_end..];
        let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let word = &rest[..word_end];
        match emoticon(word) {
            Some(e) => out.push_str(e),
            None => out.push_str(&shortcodes_in(word)),
        }
        rest = &rest[word_end..];
    }
    out
}

/// Replaces the known `:name:` shortcodes inside one word.
fn shortcodes_in(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    let mut rest = word;
    while let Some(start) = rest.find(':') {
        let after = &rest[start + 1..];
        match after.find(':') {
            Some(len) => match shortcode(&after[..len]) {
                Some(e) => {
                    out.push_str(&rest[..start]);
                    out.push_str(e);
                    rest = &after[len + 1..];
                }
                None => {
                    // Not a shortcode: keep the first colon, try again from the second.
                    out.push_str(&rest[..start + 1]);
                    rest = after;
                }
            },
            None => break,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn emoticons_become_emoji() {
        assert_eq!(render(":)"), "🙂");
        assert_eq!(render("hi :) there ;-)"), "hi 🙂 there 😉");
        assert_eq!(render(":'( <3"), "😢 ❤️");
        assert_eq!(render("  :D\n:("), "  😃\n🙁");
    }

    #[test]
    fn shortcodes_become_emoji() {
        assert_eq!(render(":thumbsup:"), "👍");
        assert_eq!(render("great:+1::tada:!"), "great👍🎉!");
        assert_eq!(render("a :fire: b"), "a 🔥 b");
    }

    #[test]
    fn other_text_stays() {
        assert_eq!(render("http://example.org/a:b"), "http://example.org/a:b");
        assert_eq!(render("a:)b"), "a:)b");
        assert_eq!(render(":notacode: 12:30:45"), ":notacode: 12:30:45");
        assert_eq!(render("time 10:x:"), "time 10❌");
        assert_eq!(render(""), "");
        assert_eq!(render("naïve ünïcode :"), "naïve ünïcode :");
    }
}
