//! What a name may be made of: nodes (sources, stages, sinks), setting keys, environment
//! variables. Each check returns the reason as a message, for the caller to place.

use crate::config::error::shown;
use crate::config::ranges::{NAME_LEN, SETTING_KEY_LEN};

/// Longest environment variable name accepted.
const ENV_NAME_MAX: usize = 256;

/// A node name: 1 to 64 ASCII letters, digits, `_` or `-` (see [`NAME_LEN`]).
pub(crate) fn node(name: &str) -> Result<(), String> {
    let fits = NAME_LEN.contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if fits {
        return Ok(());
    }
    Err(format!(
        "{} is not a usable name: a name is {} to {} letters, digits, `_` or `-` \
         (it appears in logs, metrics, API paths and headers)",
        shown(name),
        NAME_LEN.start(),
        NAME_LEN.end()
    ))
}

/// A setting key: 1 to 64 ASCII letters, digits, `_`, `-` or `.` (see [`SETTING_KEY_LEN`]).
pub(crate) fn setting_key(key: &str) -> Result<(), String> {
    let fits = SETTING_KEY_LEN.contains(&key.len())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if fits {
        return Ok(());
    }
    Err(format!(
        "{} is not a usable setting name: a setting name is {} to {} letters, digits, `_`, `-` or `.`",
        shown(key),
        SETTING_KEY_LEN.start(),
        SETTING_KEY_LEN.end()
    ))
}

/// An environment variable name: a letter or `_`, then letters, digits or `_`, at most 256.
/// Blocks names with `=` or NUL, which the environment cannot hold and the C library would
/// read as another variable or cut short.
pub(crate) fn env(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let fits = name.len() <= ENV_NAME_MAX
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if fits {
        return Ok(());
    }
    Err(format!(
        "{} is not an environment variable name: use letters, digits and `_`, not starting \
         with a digit, such as `WEIR_ADMIN_TOKEN`",
        shown(name)
    ))
}
