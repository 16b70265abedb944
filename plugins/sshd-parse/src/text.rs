//! Bytes as text: a log line is checked for UTF-8 before it is parsed, sixteen bytes at a
//! time where the component has wasm SIMD.

/// `bytes` as text, if it is UTF-8. ASCII, which nearly every log line is, is recognised a
/// block at a time and needs no more: the core library's check looks at four bytes at a time
/// on wasm32.
pub fn text(bytes: &[u8]) -> Option<&str> {
    if is_ascii(bytes) {
        // SAFETY: every byte is below 0x80, and ASCII is UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes).ok()
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn is_ascii(bytes: &[u8]) -> bool {
    use core::arch::wasm32::{u8x16_bitmask, u8x16_splat, v128, v128_or};
    let blocks = bytes.chunks_exact(16);
    let tail = blocks.remainder();
    let mut high = u8x16_splat(0);
    for block in blocks {
        // SAFETY: `block` holds exactly 16 bytes, read without assuming any alignment.
        high = v128_or(high, unsafe {
            std::ptr::read_unaligned(block.as_ptr().cast::<v128>())
        });
    }
    u8x16_bitmask(high) == 0 && tail.is_ascii()
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn is_ascii(bytes: &[u8]) -> bool {
    bytes.is_ascii()
}
