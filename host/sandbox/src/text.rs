//! Guest text: every string a plugin hands the host (a reject or retry reason, an init error,
//! a panic message, a log line, a trap's backtrace of guest function names) passes through
//! [`guest_text`] before the host copies it anywhere.
//!
//! Two threats: size, and forgery. A reason of 16 MiB copied into the dead letter of each of
//! a batch's events fills a disk in a few calls, so a text is cut at [`MAX_GUEST_TEXT`]
//! bytes, and the cut says how much was dropped. A reason holding a line break followed by
//! `weir: error: …` would write a line into the host's log that looks like the host's own, so
//! control characters are escaped (`\n`, `\u{1b}`): a guest's text is always one line.

/// Bytes of guest text the host keeps from one string.
pub const MAX_GUEST_TEXT: usize = 1024;

/// `bytes` as one line of at most [`MAX_GUEST_TEXT`] bytes (plus the cut's note): lossy
/// UTF-8, control characters escaped, the rest cut with its size.
pub fn guest_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len().min(MAX_GUEST_TEXT) + 32);
    let mut kept = 0usize;
    for (at, c) in text.char_indices() {
        let before = out.len();
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
        if out.len() > MAX_GUEST_TEXT {
            out.truncate(before);
            let cut = bytes.len().saturating_sub(kept);
            out.push_str(&format!("… [cut: {cut} more bytes]"));
            return out;
        }
        kept = at + c.len_utf8();
    }
    out
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
    fn a_long_text_is_cut_with_its_size() {
        let long = vec![b'x'; 16 << 20];
        let text = guest_text(&long);
        assert!(text.len() < MAX_GUEST_TEXT + 40, "{}", text.len());
        assert!(
            text.ends_with(&format!(
                "[cut: {} more bytes]",
                (16 << 20) - MAX_GUEST_TEXT
            )),
            "{text}"
        );
        assert_eq!(guest_text(b"short"), "short");
    }
}
