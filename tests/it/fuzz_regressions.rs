//! Regression tests for what the cargo-fuzz targets found (docs/fuzzing.md):
//! each test replays the minimised input of one finding.

use cardswitch::admin::auth::{AuthFailure, Tokens, bearer};

/// `tokens` target, 2026-12-07: `bearer` accepted a header whose "token"
/// had spaces inside it (`Bearer xa256 = "…"` gave the token `xa256 = "…"`),
/// though a bearer token is one word (RFC 6750 token68). Such a header is
/// not a Bearer credential: `scheme`, not `unknown_token`.
#[test]
fn a_bearer_token_with_spaces_inside_is_not_a_credential() {
    let header: &[u8] =
        b"Bearer xa256 = \"ffe054fe7ae0c6bdc65c3af9b61d5209f439851db43d0ba5997337df154668eb\"";
    assert_eq!(bearer(Some(header)), Err(AuthFailure::Scheme));
    assert_eq!(bearer(Some(b"Bearer a\tb")), Err(AuthFailure::Scheme));
    assert_eq!(
        Tokens::default().check(Some(header)),
        Err(AuthFailure::Scheme)
    );
    // Spaces around the one word are still ignored, in any case of scheme.
    assert_eq!(bearer(Some(b"bearer   abc  ")), Ok("abc"));
    assert_eq!(bearer(Some(b"BEARER\tabc")), Ok("abc"));
}
