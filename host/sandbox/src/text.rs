//! Guest text: every string a plugin hands the host (a reject or retry reason, an init error,
//! a panic message, a log line, a trap's backtrace of guest function names, and each text of
//! what `describe` returns: the stage's name and version, each setting's name, help and
//! default) passes through [`guest_text`] before the host copies it anywhere.
//!
//! Each text is made safe once, where the host takes it, so that whatever prints it later (a
//! log line, `weir plugin inspect`, `weir check`'s errors, a JSON report, the admin API) can
//! print it as it is: a plugin's description is cleaned when the plugin is loaded
//! (`plugin::describe`), a failure's reason when the call returns, a log line when the guest
//! writes it.
//!
//! Two threats: size, and forgery. A reason of 16 MiB copied into the dead letter of each of
//! a batch's events fills a disk in a few calls, so a text is cut at [`MAX_GUEST_TEXT`]
//! bytes, and the cut says how much was dropped. A reason holding a line break followed by
//! `weir: error: …` would write a line into the host's log that looks like the host's own, so
//! control characters are escaped (`\n`, `\u{1b}`): a guest's text is always one line. So
//! are the characters that are not control characters but act like them on a screen: the
//! Unicode line and paragraph separators, which some viewers break lines at, and the
//! bidirectional marks and overrides, which make a line read otherwise than it is written.

/// Bytes of guest text the host keeps from one string, the note of a cut included.
pub const MAX_GUEST_TEXT: usize = 1024;

/// Room kept for the note that says how much was cut.
const NOTE_ROOM: usize = 48;

/// `bytes` as one line of at most [`MAX_GUEST_TEXT`] bytes: lossy UTF-8, control characters
/// (and the others of [`needs_escape`]) escaped, and when it is longer, its start and a note
/// of how many bytes were cut.
pub fn guest_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len().min(MAX_GUEST_TEXT));
    // Where to cut if the whole does not fit: the last point with room for the note.
    let mut cut_at: Option<(usize, usize)> = None;
    for (at, c) in text.char_indices() {
        if out.len() <= MAX_GUEST_TEXT - NOTE_ROOM {
            cut_at = Some((out.len(), at));
        }
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
        if out.len() > MAX_GUEST_TEXT {
            let (keep, kept_in) = cut_at.unwrap_or((0, 0));
            out.truncate(keep);
            let cut = bytes.len().saturating_sub(kept_in);
            out.push_str(&format!("… [cut: {cut} more bytes]"));
            return out;
        }
    }
    out
}

/// Whether guest text shows `c` escaped: a control character, a line or paragraph separator,
/// or a bidirectional mark, embedding, override or isolate.
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' // line and paragraph separators
                | '\u{061c}' | '\u{200e}' | '\u{200f}' // bidirectional marks
                | '\u{202a}'..='\u{202e}' // embeddings and overrides
                | '\u{2066}'..='\u{2069}' // isolates
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forged_log_line_stays_on_one_line() {
        let text = guest_text(b"bad event\nweir: error: forged\x1b[31m");
        assert!(!text.contains('\n') && !text.contains('\x1b'), "{text}");
        assert!(text.contains("\\nweir: error: forged"), "{text}");
    }

    #[test]
    fn separators_and_bidirectional_overrides_are_escaped() {
        let text = guest_text("a\u{2028}b\u{202e}c\u{2067}d\u{85}e".as_bytes());
        assert_eq!(text, "a\\u{2028}b\\u{202e}c\\u{2067}d\\u{85}e");
        assert_eq!(guest_text("naïve – ok".as_bytes()), "naïve – ok");
    }

    #[test]
    fn a_long_text_is_cut_with_its_size() {
        let long = vec![b'x'; 16 << 20];
        let text = guest_text(&long);
        assert!(text.len() <= MAX_GUEST_TEXT, "{}", text.len());
        let kept = text.find('…').expect("a cut text has a note");
        assert!(
            text.ends_with(&format!("[cut: {} more bytes]", (16 << 20) - kept)),
            "{text}"
        );
        let escaped = guest_text(&vec![b'\n'; 4096]);
        assert!(escaped.len() <= MAX_GUEST_TEXT, "{}", escaped.len());
        assert_eq!(guest_text(b"short"), "short");
    }
}
