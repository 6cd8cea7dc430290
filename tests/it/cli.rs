//! The `cardswitch iso` commands, run as the real binary.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use cardswitch::iso8583::json::JsonMessage;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/golden");

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cardswitch"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn decode_json_matches_the_golden_fields() {
    for dialect in ["iso87ascii", "iso87binary"] {
        let file = format!("{GOLDEN}/{dialect}/0200.hex");
        let out = stdout(&run(
            &["iso", "decode", "-d", dialect, "--json", "--reveal", &file],
            None,
        ));
        assert_eq!(out.lines().count(), 1, "exactly one JSON object");
        let got = JsonMessage::parse(&out).unwrap();
        let expected = JsonMessage::parse(
            &std::fs::read_to_string(format!("{GOLDEN}/{dialect}/0200.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(got, expected, "{dialect}");
    }
}

#[test]
fn decode_masks_card_data_unless_revealed() {
    let file = format!("{GOLDEN}/iso87binary/0100.hex");
    let table = stdout(&run(&["iso", "decode", "-d", "iso87binary", &file], None));
    assert!(table.contains("371449*****8431"), "{table}");
    assert!(!table.contains("371449635398431"), "{table}");
    assert!(
        table.contains("PAN - PRIMARY ACCOUNT NUMBER"),
        "names each field"
    );
    let json = stdout(&run(
        &["iso", "decode", "-d", "iso87binary", "--json", &file],
        None,
    ));
    assert!(!json.contains("371449635398431"), "{json}");
}

#[test]
fn encode_reproduces_the_golden_bytes() {
    for dialect in ["iso87ascii", "iso87binary"] {
        for name in ["0200", "0400", "0800"] {
            let json = std::fs::read_to_string(format!("{GOLDEN}/{dialect}/{name}.json")).unwrap();
            let hex = std::fs::read_to_string(format!("{GOLDEN}/{dialect}/{name}.hex")).unwrap();
            let out = stdout(&run(&["iso", "encode", "-d", dialect, "-"], Some(&json)));
            assert_eq!(out.trim(), hex.trim(), "{dialect}/{name}");
        }
    }
}

#[test]
fn framed_with_a_tpdu_round_trips_through_both_commands() {
    let json = r#"{"mti":"0800","fields":{"7":"1125143015","11":"000001","70":"301"}}"#;
    let framed = stdout(&run(
        &[
            "iso",
            "encode",
            "-d",
            "iso87binary",
            "--framing",
            "binary2",
            "--header",
            "5",
            "--header-bytes",
            "6000030000",
            json,
        ],
        None,
    ));
    // 33 bytes: TPDU 5, MTI 2, two bitmaps 16, fields 7, 11, 70: 5 + 3 + 2.
    assert!(framed.starts_with("00216000030000"), "{framed}");
    let back = stdout(&run(
        &[
            "iso",
            "decode",
            "-d",
            "iso87binary",
            "--framing",
            "binary2",
            "--header",
            "5",
            "--json",
            "-",
        ],
        Some(&framed),
    ));
    assert_eq!(
        JsonMessage::parse(&back).unwrap(),
        JsonMessage::parse(json).unwrap()
    );
}

#[test]
fn malformed_input_exits_non_zero_with_the_precise_error() {
    let bad = hex::encode("0200200000000000000000A000");
    let out = run(&["iso", "decode", "-d", "iso87ascii", &bad], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("field 3: byte 0x41 at position 2"), "{err}");
    assert!(err.contains("response code 30"), "{err}");

    let out = run(&["iso", "decode", "-d", "iso99", "00"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown dialect `iso99`"));

    let out = run(
        &[
            "iso",
            "encode",
            "-d",
            "iso87ascii",
            r#"{"mti":"0200","fields":{"3":"12"}}"#,
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("field 3: length 2 but the field is fixed at 6")
    );
}

#[test]
fn dialect_prints_the_field_table() {
    let out = stdout(&run(&["iso", "dialect", "iso87binary"], None));
    assert!(out.contains("n ..19"), "{out}");
    assert!(out.contains("TRACK 2 DATA"), "{out}");
}

/// The other printing commands end quietly on a closed output too (#16.7):
/// `iso`, `tokens`, `config check` and `sim bank`'s counters; the read end
/// of the pipe is closed before each starts, so every write fails.
#[test]
fn printing_commands_end_quietly_on_a_closed_output() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    let tokens = tokens.to_str().unwrap();
    for name in ["cardswitch.toml", "terminals.toml", "routes.toml"] {
        std::fs::copy(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures")
                .join(name),
            dir.path().join(name),
        )
        .unwrap();
    }
    cardswitch::journal::generate_data_key(&dir.path().join("data.key")).unwrap();
    let config = dir.path().join("cardswitch.toml");
    let config = config.to_str().unwrap();
    let commands: Vec<Vec<&str>> = vec![
        vec!["iso", "dialect", "iso87binary"],
        vec![
            "iso",
            "encode",
            "--dialect",
            "iso87ascii",
            r#"{"mti": "0800", "fields": {"11": "000001"}}"#,
        ],
        vec![
            "tokens", "--file", tokens, "add", "otto", "--role", "operator",
        ],
        vec!["tokens", "--file", tokens, "list"],
        vec!["config", "check", config],
    ];
    for args in commands {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_cardswitch"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}
