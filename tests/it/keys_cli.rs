//! `cardswitch keys`, run as the real binary: a key custodian's session from
//! a new master key to rotation. No output ever shows key material.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Two clear components of the classic test key
/// 0123456789ABCDEFFEDCBA9876543210 (KCV 08D7B4), XORed at import.
const COMPONENT_1: &str = "11111111111111111111111111111111";
const KEY: &str = "0123456789ABCDEFFEDCBA9876543210";

fn keys(dir: &Path, args: &[&str], stdin: &str) -> Output {
    keys_at(
        &dir.join("keys.store"),
        Some(&dir.join("master.key")),
        args,
        stdin,
    )
}

/// `cardswitch keys --store STORE [--master-key-file MASTER] ARGS…`.
fn keys_at(store: &Path, master: Option<&Path>, args: &[&str], stdin: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cardswitch"));
    command.arg("keys").arg("--store").arg(store);
    if let Some(master) = master {
        command.arg("--master-key-file").arg(master);
    }
    let mut child = command
        .args(args)
        .env_remove("CARDSWITCH_MASTER_KEY")
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn xor_hex(a: &str, b: &str) -> String {
    let (a, b) = (hex::decode(a).unwrap(), hex::decode(b).unwrap());
    hex::encode_upper(a.iter().zip(&b).map(|(x, y)| x ^ y).collect::<Vec<u8>>())
}

#[test]
fn a_key_custodian_session() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let master = d.join("master.key");
    let out = ok(keys(
        d,
        &["init", "--new-master-key", master.to_str().unwrap()],
        "",
    ));
    assert!(out.contains("created key store"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&master).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let generated = ok(keys(
        d,
        &[
            "generate",
            "--id",
            "zpk-bank-a",
            "--type",
            "zpk",
            "--alg",
            "tdes2",
        ],
        "",
    ));
    assert!(generated.contains("zpk-bank-a"));

    // Two components with their check values; the second is chosen so the
    // XOR is the classic test key.
    let c1 = COMPONENT_1;
    let c2 = xor_hex(c1, KEY);
    let kcv = |hex: &str| {
        cardswitch::security::SecretKey::new(
            cardswitch::security::KeyAlgorithm::Tdes2,
            &hex::decode(hex).unwrap(),
        )
        .unwrap()
        .kcv()
    };
    let input = format!("{c1} {}\n{c2} {}\n", kcv(c1), kcv(&c2));
    let imported = ok(keys(
        d,
        &[
            "import",
            "--id",
            "tak-1",
            "--type",
            "tak",
            "--alg",
            "tdes2",
            "--components",
            "2",
        ],
        &input,
    ));
    assert!(imported.contains("08D7B4"), "{imported}");

    // A component whose check value does not match is refused.
    let bad = keys(
        d,
        &[
            "import",
            "--id",
            "tak-2",
            "--type",
            "tak",
            "--alg",
            "tdes2",
            "--components",
            "2",
        ],
        &format!("{c1} 000000\n{c2}\n"),
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("component 1: check value is"));

    let rotated = ok(keys(d, &["rotate", "zpk-bank-a"], ""));
    assert!(rotated.contains("  2 active"), "{rotated}");
    let list = ok(keys(d, &["list"], ""));
    assert_eq!(
        list.lines().filter(|l| l.starts_with("zpk-bank-a")).count(),
        2
    );
    assert!(list.contains("retired"));
    let csv = ok(keys(d, &["export-kcv"], ""));
    assert!(csv.starts_with("id,type,algorithm,version,state,kcv\n"));
    assert!(csv.contains("tak-1,tak,tdes2,1,active,08D7B4"), "{csv}");

    // No key material anywhere: not in any output, not in the store file.
    let store = std::fs::read(d.join("keys.store")).unwrap();
    for secret in [KEY, c1, c2.as_str()] {
        for text in [&generated, &imported, &rotated, &list, &csv] {
            assert!(!text.contains(secret));
        }
        let bytes = hex::decode(secret).unwrap();
        assert!(!store.windows(bytes.len()).any(|w| w == bytes.as_slice()));
        assert!(
            !String::from_utf8_lossy(&store)
                .to_uppercase()
                .contains(secret)
        );
    }

    // A master key others can read is refused.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&master, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = keys(d, &["list"], "");
        assert!(!refused.status.success());
        assert!(String::from_utf8_lossy(&refused.stderr).contains("chmod 600"));
    }
}

fn refused(out: &Output) -> String {
    assert!(!out.status.success(), "expected a refusal");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `keys init --new-master-key` never replaces a master key file, and
/// checks everything before it writes anything: a store that exists is
/// refused before a new key file is made, and a key file that exists is
/// refused before a store is made (#16.5).
#[test]
fn init_never_overwrites_a_master_key_and_writes_nothing_when_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let master = d.join("master.key");
    let store = d.join("keys.store");
    ok(keys(
        d,
        &["init", "--new-master-key", master.to_str().unwrap()],
        "",
    ));
    ok(keys(
        d,
        &[
            "generate", "--id", "tak-1", "--type", "tak", "--alg", "tdes2",
        ],
        "",
    ));
    let key_before = std::fs::read(&master).unwrap();
    let store_before = std::fs::read(&store).unwrap();

    // Again over the same store and key file: refused, both untouched, and
    // the store still opens under its key.
    let again = keys(
        d,
        &["init", "--new-master-key", master.to_str().unwrap()],
        "",
    );
    let err = refused(&again);
    assert!(err.contains("exists already"), "{err}");
    assert!(
        std::fs::read(&master).unwrap() == key_before,
        "master key file unchanged"
    );
    assert!(
        std::fs::read(&store).unwrap() == store_before,
        "store unchanged"
    );
    assert!(ok(keys(d, &["list"], "")).contains("tak-1"));

    // A new store path with the existing key file: refused, the key file
    // untouched, no store made.
    let other = d.join("other.store");
    let err = refused(&keys_at(
        &other,
        None,
        &["init", "--new-master-key", master.to_str().unwrap()],
        "",
    ));
    assert!(
        err.contains("master.key") && err.contains("exists already"),
        "{err}"
    );
    assert!(
        std::fs::read(&master).unwrap() == key_before,
        "master key file unchanged"
    );
    assert!(!other.exists());

    // The existing store with a new key file path: refused before the key
    // file is written.
    let fresh = d.join("fresh.key");
    let err = refused(&keys_at(
        &store,
        None,
        &["init", "--new-master-key", fresh.to_str().unwrap()],
        "",
    ));
    assert!(
        err.contains("keys.store") && err.contains("exists already"),
        "{err}"
    );
    assert!(!fresh.exists());
    assert!(
        std::fs::read(&store).unwrap() == store_before,
        "store unchanged"
    );

    // A store in a directory that does not exist: refused before the key
    // file is written.
    let err = refused(&keys_at(
        &d.join("missing").join("keys.store"),
        None,
        &["init", "--new-master-key", fresh.to_str().unwrap()],
        "",
    ));
    assert!(err.contains("missing"), "{err}");
    assert!(!fresh.exists());

    // Two different master keys named at once: refused, nothing written.
    let err = refused(&keys_at(
        &other,
        Some(&master),
        &["init", "--new-master-key", fresh.to_str().unwrap()],
        "",
    ));
    assert!(err.contains("--new-master-key"), "{err}");
    assert!(!fresh.exists() && !other.exists());
}

/// `keys list | head -0`: a closed standard output ends the command
/// quietly, without a panic (#16.7).
#[test]
fn a_closed_output_ends_keys_commands_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let master = d.join("master.key");
    ok(keys(
        d,
        &["init", "--new-master-key", master.to_str().unwrap()],
        "",
    ));
    ok(keys(
        d,
        &[
            "generate", "--id", "tak-1", "--type", "tak", "--alg", "tdes2",
        ],
        "",
    ));
    for args in [&["list"][..], &["export-kcv"], &["rotate", "tak-1"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_cardswitch"))
            .arg("keys")
            .arg("--store")
            .arg(d.join("keys.store"))
            .arg("--master-key-file")
            .arg(&master)
            .args(args)
            .env_remove("CARDSWITCH_MASTER_KEY")
            .env_remove("CREDENTIALS_DIRECTORY")
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
