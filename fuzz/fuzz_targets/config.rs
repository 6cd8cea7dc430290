//! The configuration loader (`config.rs`): `Config::from_toml` on arbitrary
//! text, and the terminal and route files it names. The first byte picks
//! what the rest is: 0 mod 3, the main config file; 1, the terminals file;
//! 2, the routes file (each loaded through the fixture's main config, as
//! `config check`, `serve` and SIGHUP load them). Paths resolve in a scratch
//! directory holding the fixture's other files and a data key. Never panic.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use cardswitch::config::Config;
use libfuzzer_sys::fuzz_target;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures");

struct Scratch {
    dir: PathBuf,
    main: String,
}

fn scratch() -> &'static Scratch {
    static S: OnceLock<Scratch> = OnceLock::new();
    S.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        };
        let dir =
            PathBuf::from(base).join(format!("cardswitch-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["terminals.toml", "routes.toml"] {
            std::fs::copy(format!("{FIXTURES}/{name}"), dir.join(name)).unwrap();
        }
        let key = dir.join("data.key");
        let _ = std::fs::remove_file(&key);
        use std::os::unix::fs::OpenOptionsExt;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true).mode(0o600);
        std::io::Write::write_all(
            &mut options.open(&key).unwrap(),
            b"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
        )
        .unwrap();
        let main = std::fs::read_to_string(format!("{FIXTURES}/cardswitch.toml")).unwrap();
        Config::from_toml(&main, &dir.join("cardswitch.toml")).expect("the fixture loads");
        Scratch { dir, main }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let s = scratch();
    let path = s.dir.join("cardswitch.toml");
    match mode % 3 {
        0 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = Config::from_toml(text, &path);
            }
        }
        which => {
            let (key, file) = if which == 1 {
                ("terminals_file", "fuzz-terminals.toml")
            } else {
                ("routes_file", "fuzz-routes.toml")
            };
            std::fs::write(s.dir.join(file), rest).unwrap();
            // SIGHUP re-reads the main file from disk.
            let main = s.main.replacen(
                &format!(
                    "{key} = \"{}\"",
                    if which == 1 {
                        "terminals.toml"
                    } else {
                        "routes.toml"
                    }
                ),
                &format!("{key} = \"{file}\""),
                1,
            );
            std::fs::write(&path, &main).unwrap();
            if let Ok(config) = Config::from_toml(&main, &path) {
                let _ = config.reload_tables();
            }
        }
    }
});
