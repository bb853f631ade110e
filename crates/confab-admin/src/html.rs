//! Server-rendered pages: escaping, the page frame (navigation, language switch) and the
//! small pieces forms are made of. Every form that changes something carries the CSRF token.

use crate::i18n::Lang;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The hidden CSRF field of a form.
pub fn csrf_field(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(csrf)
    )
}

/// What the frame of a page needs: the language, and for a logged-in administrator the
/// CSRF token (navigation, logout and the language switch are shown only then).
pub struct Frame<'a> {
    pub lang: Lang,
    pub csrf: Option<&'a str>,
    pub admin: Option<&'a str>,
}

/// A whole page: head, navigation, `body`.
pub fn page(frame: &Frame<'_>, title: &str, body: &str) -> String {
    let l = frame.lang;
    let mut nav = String::new();
    if let (Some(csrf), Some(admin)) = (frame.csrf, frame.admin) {
        nav.push_str("<nav><a class=\"brand\" href=\"/dashboard\">Confab</a>");
        for (href, key) in [
            ("/dashboard", "nav.dashboard"),
            ("/users", "nav.users"),
            ("/sessions", "nav.sessions"),
            ("/rooms", "nav.rooms"),
            ("/settings", "nav.settings"),
            ("/audit", "nav.audit"),
            ("/api-tokens", "nav.api"),
        ] {
            nav.push_str(&format!("<a href=\"{href}\">{}</a>", esc(l.t(key))));
        }
        nav.push_str(&format!(
            "<span class=\"who\">{}</span><form method=\"post\" action=\"/logout\" class=\"inline\">{}<button>{}</button></form>",
            esc(admin),
            csrf_field(csrf),
            esc(l.t("nav.logout"))
        ));
        nav.push_str(&language_switch(l, csrf));
        nav.push_str("</nav>");
    } else {
        // Before login: plain links (GET, no state but the cookie of the language).
        nav.push_str("<nav><span class=\"brand\">Confab</span>");
        for other in Lang::ALL {
            if other != l {
                nav.push_str(&format!(
                    "<a href=\"?lang={}\" lang=\"{}\">{}</a>",
                    other.tag(),
                    other.tag(),
                    other.own_name()
                ));
            }
        }
        nav.push_str("</nav>");
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · {console}</title><link rel=\"stylesheet\" href=\"/static/console.css\">\
<script src=\"/static/console.js\" defer></script></head>\
<body>{nav}<main><h1>{title}</h1>{body}</main></body></html>\n",
        lang = l.tag(),
        title = esc(title),
        console = esc(l.t("console")),
    )
}

fn language_switch(l: Lang, csrf: &str) -> String {
    let mut opts = String::new();
    for other in Lang::ALL {
        opts.push_str(&format!(
            "<option value=\"{}\"{}>{}</option>",
            other.tag(),
            if other == l { " selected" } else { "" },
            other.own_name()
        ));
    }
    format!(
        "<form method=\"post\" action=\"/language\" class=\"inline lang\">{}<label>{} <select name=\"lang\" id=\"lang\">{opts}</select></label><button>{}</button></form>",
        csrf_field(csrf),
        esc(l.t("language")),
        esc(l.t("switch"))
    )
}

/// A notice above a page's content (`ok` or `error`).
pub fn notice(kind: &str, text: &str) -> String {
    format!(
        "<p class=\"notice {kind}\" role=\"status\">{}</p>",
        esc(text)
    )
}

/// An HTML response with the given status.
pub fn respond(status: StatusCode, html: String) -> Response {
    let mut r = (status, html).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// A 303 to `to` (after a form, so a reload does not post it again).
pub fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Seconds as `3d 4h 5m 6s`.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86400,
        secs % 86400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    if d > 0 {
        format!("{d}d {h}h {m}m")
    } else if h > 0 {
        format!("{h}h {m}m {s}s")
    } else {
        format!("{m}m {s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(duration(93784), "1d 2h 3m");
        assert_eq!(duration(61), "1m 1s");
    }
}
