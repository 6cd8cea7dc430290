//! The admin token file (`admin/auth.rs`): arbitrary bytes loaded as a
//! token file (`Tokens::load`, as `serve`, `config check` and every reload
//! do; `tokens list` reads it the same way), then arbitrary `Authorization`
//! header values checked against it (`bearer`, `Tokens::check`). Never
//! panic; a header `bearer` accepts gives a token that is non-empty, trimmed
//! visible ASCII.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use cardswitch::admin::auth::{self, Tokens};
use libfuzzer_sys::fuzz_target;

fn dir() -> &'static PathBuf {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        };
        let dir =
            PathBuf::from(base).join(format!("cardswitch-fuzz-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    // The file, then (after the first 0xFF byte, if any) header values
    // separated by newlines.
    let (file, headers) = match data.iter().position(|&b| b == 0xFF) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let path = dir().join("tokens.toml");
    std::fs::write(&path, file).unwrap();
    let loaded = Tokens::load(&path);
    let _ = auth::list(&path);
    for header in headers.split(|&b| b == b'\n') {
        if let Ok(token) = auth::bearer(Some(header)) {
            assert!(!token.is_empty());
            assert!(token.bytes().all(|b| b.is_ascii_graphic()));
        }
        if let Ok(tokens) = &loaded {
            let _ = tokens.check(Some(header));
            let _ = tokens.authenticate(std::str::from_utf8(header).unwrap_or_default());
        }
    }
    let _ = auth::bearer(None);
});
