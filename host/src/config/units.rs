//! Units and ranges: durations (`250ms`, `2s`), sizes (`64MiB`), whole numbers and fractions,
//! each checked against the range its key allows (see `ranges`). Parsing never panics: a
//! number too large for its type is an error like any other.

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::time::Duration;

use crate::config::error::{ConfigError, Ctx, Sp, shown};

/// Digits a duration may have: far more than any range needs, few enough for `u128` sums.
const MAX_DURATION_DIGITS: usize = 30;

/// Parses `250ms`, `2s`, `1.5s`, `1m`, `1h` (units `us`, `µs`, `ms`, `s`, `m`, `min`, `h`).
/// Exact to the nanosecond; a duration over `u64::MAX` seconds is an error, not a panic.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let not_a_duration = || {
        format!(
            "{} is not a duration: write a number and a unit, such as `100ms` or `2s`",
            shown(text)
        )
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(not_a_duration());
    }
    if whole.len() + fraction.len() > MAX_DURATION_DIGITS {
        return Err(format!(
            "{} has too many digits for a duration",
            shown(text)
        ));
    }
    let nanos_per_unit: u128 = match unit.trim() {
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" | "min" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "" => return Err(not_a_duration()),
        other => {
            return Err(format!(
                "{} is not a unit of time: use `us`, `ms`, `s`, `m` or `h`",
                shown(other)
            ));
        }
    };
    let too_long = || format!("{} is too long a duration", shown(text));
    // At most 30 digits, so the mantissa and the power of ten both fit in `u128`.
    let mantissa: u128 = format!("{whole}{fraction}")
        .parse()
        .map_err(|_| not_a_duration())?;
    let nanos = mantissa.checked_mul(nanos_per_unit).ok_or_else(too_long)?
        / 10u128.pow(fraction.len() as u32);
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_long())?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// Parses `64MiB`, `512KiB`, `1GiB`, `4096` or `4096B` (bytes); also `KB`, `MB`, `GB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(format!(
            "{} is not a size: write a number and a unit, such as `64MiB`",
            shown(text)
        ));
    }
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "{} is not a unit of size: use `KiB`, `MiB` or `GiB`",
                shown(other)
            ));
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("{} is too large a size", shown(text)))
}

/// A duration as a person writes it: `5ms`, `1s`, `1m`, `1h`.
pub(crate) fn fmt_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    let units: [(u128, &str); 5] = [
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
    ];
    for (size, unit) in units {
        if nanos >= size && nanos.is_multiple_of(size) {
            return format!("{}{unit}", nanos / size);
        }
    }
    if nanos == 0 {
        "0s".to_string()
    } else {
        format!("{}us", d.as_secs_f64() * 1e6)
    }
}

/// A size as a person writes it: `64KiB`, `16MiB`, `4GiB`, or bytes.
pub(crate) fn fmt_size(bytes: u64) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}

/// A whole number with `_` between groups of three digits, as TOML allows it to be written.
pub(crate) fn fmt_whole(n: impl Display) -> String {
    let digits = n.to_string();
    if digits.len() <= 4 {
        return digits;
    }
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('_');
        }
        out.push(c);
    }
    out
}

/// A whole number in `range`; the message names the range and the number as written.
pub(crate) fn whole<T>(
    cx: &Ctx,
    raw: &Sp<i128>,
    key: &str,
    range: &RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: Copy + Display + TryFrom<i128>,
    i128: TryFrom<T>,
{
    let lo = i128::try_from(*range.start()).unwrap_or(i128::MIN);
    let hi = i128::try_from(*range.end()).unwrap_or(i128::MAX);
    let out_of_range = || {
        cx.err(
            &raw.span(),
            key,
            format!(
                "must be a whole number from {} to {}, found {}",
                fmt_whole(range.start()),
                fmt_whole(range.end()),
                cx.number(&raw.span()),
            ),
        )
    };
    let n = *raw.get_ref();
    if !(lo..=hi).contains(&n) {
        return Err(out_of_range());
    }
    T::try_from(n).map_err(|_| out_of_range())
}

/// A duration in `range`.
pub(crate) fn duration(
    cx: &Ctx,
    raw: &Sp<String>,
    key: &str,
    range: &RangeInclusive<Duration>,
) -> Result<Duration, ConfigError> {
    let allowed = format!(
        "from {} to {}",
        fmt_duration(*range.start()),
        fmt_duration(*range.end())
    );
    let d = parse_duration(raw.get_ref())
        .map_err(|m| cx.err(&raw.span(), key, format!("{m}: it must be {allowed}")))?;
    if !range.contains(&d) {
        return Err(cx.err(
            &raw.span(),
            key,
            format!("must be {allowed}, found {}", shown(raw.get_ref())),
        ));
    }
    Ok(d)
}

/// A size in `range`.
pub(crate) fn size(
    cx: &Ctx,
    raw: &Sp<String>,
    key: &str,
    range: &RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let allowed = format!(
        "from {} to {}",
        fmt_size(*range.start()),
        fmt_size(*range.end())
    );
    let bytes = parse_size(raw.get_ref())
        .map_err(|m| cx.err(&raw.span(), key, format!("{m}: it must be {allowed}")))?;
    if !range.contains(&bytes) {
        return Err(cx.err(
            &raw.span(),
            key,
            format!("must be {allowed}, found {}", shown(raw.get_ref())),
        ));
    }
    Ok(bytes)
}

/// A fraction from 0 to 1; above 0 unless `zero` is allowed. NaN is refused.
pub(crate) fn fraction(cx: &Ctx, raw: &Sp<f64>, key: &str, zero: bool) -> Result<f64, ConfigError> {
    let f = *raw.get_ref();
    let low_ok = if zero { f >= 0.0 } else { f > 0.0 };
    if low_ok && f <= 1.0 {
        return Ok(f);
    }
    let allowed = if zero {
        "a fraction from 0 to 1, such as 0.5"
    } else {
        "a fraction above 0 and at most 1, such as 0.5"
    };
    Err(cx.err(
        &raw.span(),
        key,
        format!("must be {allowed}, found {}", cx.number(&raw.span())),
    ))
}
