//! The bearer token of a listener's guarded routes, and the file a token may be kept in.
//!
//! The check runs as a route layer, before any other layer and before a body is read, so a
//! request without the token costs neither its upload nor a change: it gets 401 and nothing
//! else happens. It compares the SHA-256 of both tokens in constant time, so neither the
//! token's contents nor its length leak through timing.

use std::io::Read;
use std::path::Path;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A bearer token, kept as its SHA-256 only.
#[derive(Clone)]
pub struct Token {
    digest: [u8; 32],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not even the digest goes to logs.
        f.write_str("Token(..)")
    }
}

impl Token {
    pub fn new(token: &str) -> Token {
        Token {
            digest: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// Whether `headers` carry `Authorization: Bearer` with this token.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(given) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let given: [u8; 32] = Sha256::digest(given.trim().as_bytes()).into();
        given.ct_eq(&self.digest).into()
    }

    /// `routes` behind this token: a request without it gets 401 before any layer added
    /// to `routes` earlier runs.
    pub fn guard(&self, routes: Router) -> Router {
        routes.route_layer(middleware::from_fn_with_state(self.clone(), check))
    }
}

async fn check(State(token): State<Token>, request: Request, next: Next) -> Response {
    if !token.admits(request.headers()) {
        let body = super::ErrorBody {
            error: "a valid bearer token is required".to_string(),
        };
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(body),
        )
            .into_response();
    }
    next.run(request).await
}

/// Largest token file read. A token is a line of text; blocks a file such as `/dev/zero`
/// (or a log named by mistake) from being read into memory.
const MAX_TOKEN_FILE: u64 = 4096;

/// Why a token file was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read it: {0}")]
    Read(#[from] std::io::Error),
    #[error("it is not a regular file")]
    NotAFile,
    #[error(
        "others than its owner have access to it (mode {0:04o}), so they may read the token: \
         run `chmod 600` on it"
    )]
    Open(u32),
    #[error("it is over {MAX_TOKEN_FILE} bytes: a token file holds the token alone")]
    TooLarge,
    #[error("it is not UTF-8 text")]
    NotText,
}

/// The token in a file that only its owner may read or write, without the spaces and line
/// ends around it. The mode is read from the open file, so the file checked is the file read.
pub fn read_token_file(path: &Path) -> Result<String, TokenFileError> {
    use std::os::unix::fs::PermissionsExt;
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(TokenFileError::NotAFile);
    }
    let mode = meta.permissions().mode() & 0o7777;
    // Group or others: read access shows them the token, write access lets them set one.
    if mode & 0o077 != 0 {
        return Err(TokenFileError::Open(mode));
    }
    let mut bytes = Vec::new();
    file.take(MAX_TOKEN_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_TOKEN_FILE {
        return Err(TokenFileError::TooLarge);
    }
    let text = String::from_utf8(bytes).map_err(|_| TokenFileError::NotText)?;
    Ok(text.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let token = Token::new("0123456789abcdef");
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            token.admits(&headers)
        };
        assert!(with("Bearer 0123456789abcdef"));
        assert!(!with("Bearer 0123456789abcdeF"));
        assert!(!with("Bearer 0123456789abcde"));
        assert!(!with("Basic 0123456789abcdef"));
        assert!(!token.admits(&HeaderMap::new()));
    }
}
