//! MACs, PIN translation and DUKPT through the running switch over real TCP
//! on 127.0.0.1, with the simulators: terminals MAC in iso87ascii under
//! their TAK, the bank MACs in iso87binary under another key (its ZAK), and
//! PIN blocks are re-enciphered from the terminal's zone to the bank's.

use crate::common;
use crate::common::daemon::{Daemon, Destination, Listener, Terminal};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cardswitch::iso8583::framing::{Frame, FrameCodec};
use cardswitch::iso8583::{Dialect, Message, Mti};
use cardswitch::security::mac::{self, MacAlgorithm};
use cardswitch::security::pin::{self, PinFormat};
use cardswitch::security::profile::{MacProfile, PinKey, PinProfile, Protection};
use cardswitch::security::{SecretKey, dukpt};
use cardswitch::server::Running;
use cardswitch::sim::{BankHandle, BankSim, PosConfig, Rules, Scenario, TxnTemplate};
use common::test_key;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

const BIN: &str = "476173";
const BAD_BIN: &str = "522222";
const PAN: &str = "4761739001010119";

fn ascii() -> Arc<Dialect> {
    Dialect::builtin("iso87ascii").unwrap().unwrap()
}

fn retail(id: &str) -> Option<MacProfile> {
    Some(MacProfile {
        algorithm: MacAlgorithm::Retail,
        key: test_key(id),
    })
}

fn static_pin(id: &str, format: PinFormat) -> Option<PinProfile> {
    Some(PinProfile {
        key: PinKey::Static(test_key(id)),
        format,
    })
}

/// A dialect file like `base` with a 16-byte field 52, for AES PIN blocks
/// (format 4).
fn wide_pin_dialect(dir: &Path, base: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("specs/{base}.toml")).unwrap();
    let text: String = text
        .lines()
        .map(|line| {
            if line.starts_with("52 ") {
                line.replace("fixed = 8", "fixed = 16")
            } else if line.starts_with("name = ") {
                format!("name = \"{base}-pin16\"")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = dir.join(format!("{base}-pin16.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

async fn bank(dialect: Arc<Dialect>, security: Protection, pin: &str) -> BankHandle {
    Arc::new(
        BankSim::new(dialect, FrameCodec::default(), Rules::default())
            .with_security(security, Some(pin)),
    )
    .start(TcpListener::bind("127.0.0.1:0").await.unwrap())
    .unwrap()
}

struct Setup {
    running: Running,
    good: BankHandle,
    bad: BankHandle,
    _dir: tempfile::TempDir,
}

/// The switch with two banks: `bank` (right ZAK, checks PIN 1234 under
/// its ZPK) and `rogue` (MACs with a key the switch does not share).
async fn setup(bank_dialect: &str, zpk: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let bank_dialect_path = match bank_dialect {
        "wide" => wide_pin_dialect(dir.path(), "iso87binary"),
        name => PathBuf::from(name),
    };
    let dialect = Dialect::resolve(&bank_dialect_path.to_string_lossy()).unwrap();
    let zpk_format = if zpk == "zpk-aes" {
        PinFormat::Iso4
    } else {
        PinFormat::Iso3
    };
    let good = bank(
        Arc::clone(&dialect),
        Protection {
            mac: retail("zak"),
            require_mac: false,
            pin: static_pin(zpk, zpk_format),
        },
        "1234",
    )
    .await;
    let bad = bank(
        Dialect::builtin("iso87binary").unwrap().unwrap(),
        Protection {
            mac: retail("tak"),
            ..Protection::default()
        },
        "1234",
    )
    .await;
    let wide_terminal = wide_pin_dialect(dir.path(), "iso87ascii");
    let zpk_format = format!("{zpk_format:?}").to_lowercase();
    let running = Daemon::new(dir.path())
        // The journal seals PANs under the key store's data key.
        .data_key_from_store()
        .timeout_ms(2000)
        .listener(Listener::new("pos", "iso87ascii"))
        .listener(Listener::new("pos-aes", wide_terminal.to_string_lossy()))
        .destination(
            Destination::new("bank", good.addr(), bank_dialect_path.to_string_lossy()).security(
                &format!(
                    r#"mac = "retail", mac_key = "zak", pin_key = "{zpk}", pin_format = "{zpk_format}""#
                ),
            ),
        )
        .destination(
            Destination::new("rogue", bad.addr(), "iso87binary")
                .security(r#"mac = "retail", mac_key = "zak""#),
        )
        .route(BIN, "bank")
        .route(BAD_BIN, "rogue")
        .terminal(Terminal::new("TERM0001", "M1").security(
            r#"mac = "retail", mac_key = "tak", require_mac = true, pin_key = "tpk", pin_format = "iso0""#,
        ))
        .terminal(
            Terminal::new("DUKPT001", "M2")
                .security(r#"dukpt = "tdes", dukpt_bdk = "bdk", ksn_field = 62"#),
        )
        .terminal(
            Terminal::new("DUKPT002", "M3")
                .security(r#"dukpt = "aes", dukpt_bdk = "bdk-aes", ksn_field = 62"#),
        )
        .start_in_process()
        .await;
    Setup {
        running,
        good,
        bad,
        _dir: dir,
    }
}

fn terminal_security() -> Protection {
    Protection {
        mac: retail("tak"),
        require_mac: false,
        pin: static_pin("tpk", PinFormat::Iso0),
    }
}

async fn pos(
    addr: SocketAddr,
    bin: &str,
    pin: Option<&str>,
    expect: &str,
    count: u64,
) -> cardswitch::sim::PosReport {
    let scenario = Scenario::new(vec![
        TxnTemplate::purchase("purchase", bin, 1500).expecting(Some(expect)),
    ])
    .unwrap();
    let mut cfg = PosConfig::new(addr, ascii(), FrameCodec::default(), scenario);
    cfg.count = count;
    cfg.pipeline = 4;
    cfg.timeout = Duration::from_secs(5);
    cfg.security = terminal_security();
    cfg.pin = pin.map(String::from);
    cardswitch::sim::run(cfg).await.unwrap()
}

async fn connect(addr: SocketAddr) -> Framed<TcpStream, FrameCodec> {
    Framed::new(
        TcpStream::connect(addr).await.unwrap(),
        FrameCodec::default(),
    )
}

async fn exchange(
    conn: &mut Framed<TcpStream, FrameCodec>,
    dialect: &Dialect,
    frame: Bytes,
) -> (Message, Bytes) {
    conn.send(Frame {
        header: Bytes::new(),
        message: frame,
    })
    .await
    .unwrap();
    let frame = conn.next().await.unwrap().unwrap();
    (
        Message::decode(dialect, frame.message.clone()).unwrap(),
        frame.message,
    )
}

fn purchase(terminal: &str, stan: u32) -> Message {
    let mut m = Message::new(Mti::parse("0200").unwrap());
    m.set(2, PAN)
        .set(3, "000000")
        .set(4, "000000002500")
        .set(7, "1126120000")
        .set(11, format!("{stan:06}"))
        .set(41, terminal.to_string())
        .set(49, "978");
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn macs_and_pin_translation_round_trip_through_the_switch() {
    let s = setup("iso87binary", "zpk").await;
    let addr = s.running.address("pos").unwrap();

    // MAC'd terminals, PIN 1234 under the TPK (format 0): the bank checks
    // the switch's MAC under the ZAK, finds 1234 under its ZPK (format 3),
    // and its MAC'd answers reach the terminals with the switch's MAC.
    let ok = pos(addr, BIN, Some("1234"), "00", 200).await;
    assert!(ok.all_checked_out(), "{ok:?}");
    let bank = s.good.stats().snapshot();
    assert_eq!(bank.pins_verified, 200);
    assert_eq!((bank.mac_failures, bank.pin_failures), (0, 0));

    // A wrong PIN survives translation as a wrong PIN: the bank declines.
    let wrong = pos(addr, BIN, Some("9999"), "55", 20).await;
    assert!(wrong.all_checked_out(), "{wrong:?}");
    assert_eq!(s.good.stats().snapshot().pin_failures, 20);

    // Card present: the PAN comes from track 2 only, and the PIN block is
    // bound to it.
    let mut m = purchase("TERM0001", 899);
    m.remove(2);
    m.set(35, format!("{PAN}=29122011234567890"));
    m.set(
        52,
        pin::encipher(PinFormat::Iso0, &test_key("tpk"), b"1234", PAN).unwrap(),
    );
    let signed = mac::sign(&ascii(), &mut m, MacAlgorithm::Retail, &test_key("tak")).unwrap();
    let mut conn = connect(addr).await;
    let (answer, _) = exchange(&mut conn, &ascii(), signed).await;
    assert_eq!(answer.response_code(), Some("00"));
    assert_eq!(s.good.stats().snapshot().pins_verified, 201);

    // A tampered MAC, and a missing one (the profile requires MACs): 63,
    // and nothing reaches the bank.
    let financial = |b: cardswitch::sim::BankStatsSnapshot| b.requests - b.network;
    let before = financial(s.good.stats().snapshot());
    let mut conn = connect(addr).await;
    let mut m = purchase("TERM0001", 900);
    let signed = mac::sign(&ascii(), &mut m, MacAlgorithm::Retail, &test_key("tak")).unwrap();
    let mut tampered = signed.to_vec();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
    let (answer, _) = exchange(&mut conn, &ascii(), Bytes::from(tampered)).await;
    assert_eq!(answer.response_code(), Some("63"));
    assert!(
        answer.mac().is_none(),
        "no MAC under the terminal's key on an answer to unauthenticated fields"
    );
    let unsigned = purchase("TERM0001", 901).to_bytes(&ascii()).unwrap();
    let (answer, _) = exchange(&mut conn, &ascii(), unsigned).await;
    assert_eq!(answer.response_code(), Some("63"));
    assert_eq!(financial(s.good.stats().snapshot()), before);
    assert_eq!(
        s.running
            .switch()
            .stats()
            .mac_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );

    // A PIN for a bank without a zone PIN key cannot be forwarded: 96.
    let no_zone = pos(addr, BAD_BIN, Some("1234"), "96", 2).await;
    assert!(no_zone.all_checked_out(), "{no_zone:?}");

    // A bank answering under a key the switch does not share: its answer
    // counts as no answer, so the terminal gets 91 and a reversal is owed.
    let rogue = pos(addr, BAD_BIN, None, "91", 3).await;
    assert!(rogue.all_checked_out(), "{rogue:?}");
    let rogue_stats = s.running.switch().destination("rogue").unwrap().stats();
    assert!(
        rogue_stats
            .mac_failures
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    );
    assert!(
        s.running
            .switch()
            .stats()
            .reversals_queued
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    );
    assert!(s.bad.stats().snapshot().mac_failures >= 3);
    s.running.shutdown().await;
    s.good.stop().await;
    s.bad.stop().await;
}

/// X9.24-1:2009 Annex A: BDK 0123456789ABCDEFFEDCBA9876543210 (the `bdk`
/// test key), KSN FFFF9876543210E00001.
const TDES_KSN: &str = "FFFF9876543210E00001";
/// X9.24-3:2017 test vectors: AES-128 BDK FEDCBA9876543210F1F1F1F1F1F1F1F1
/// (the `bdk-aes` test key), initial key id 1234567890123456, counter 1.
const AES_KSN: &str = "123456789012345600000001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format0_tdes_in_format4_aes_out_and_dukpt_terminals() {
    // The bank takes AES PIN blocks (format 4) in a 16-byte field 52.
    let s = setup("wide", "zpk-aes").await;
    let addr = s.running.address("pos").unwrap();
    let ok = pos(addr, BIN, Some("1234"), "00", 50).await;
    assert!(ok.all_checked_out(), "{ok:?}");
    assert_eq!(s.good.stats().snapshot().pins_verified, 50);

    // TDES DUKPT terminal: PIN 1234 in format 0 under the transaction's PIN
    // key, KSN in field 62.
    let bdk = test_key("bdk");
    let ksn = hex::decode(TDES_KSN).unwrap();
    let key = dukpt::tdes_working_key(bdk.expose(), &ksn, dukpt::TdesVariant::Pin).unwrap();
    let key = SecretKey::new(cardswitch::security::KeyAlgorithm::Tdes2, &key[..]).unwrap();
    let mut m = purchase("DUKPT001", 700);
    m.set(
        52,
        pin::encipher(PinFormat::Iso0, &key, b"1234", PAN).unwrap(),
    );
    m.set(62, TDES_KSN);
    let mut conn = connect(addr).await;
    let (answer, _) = exchange(&mut conn, &ascii(), m.to_bytes(&ascii()).unwrap()).await;
    assert_eq!(answer.response_code(), Some("00"));

    // The same terminal with a PIN block under another transaction's key.
    let other = hex::decode("FFFF9876543210E00002").unwrap();
    let wrong = dukpt::tdes_working_key(bdk.expose(), &other, dukpt::TdesVariant::Pin).unwrap();
    let wrong = SecretKey::new(cardswitch::security::KeyAlgorithm::Tdes2, &wrong[..]).unwrap();
    let mut m = purchase("DUKPT001", 701);
    m.set(
        52,
        pin::encipher(PinFormat::Iso0, &wrong, b"1234", PAN).unwrap(),
    );
    m.set(62, TDES_KSN);
    let (answer, _) = exchange(&mut conn, &ascii(), m.to_bytes(&ascii()).unwrap()).await;
    assert_eq!(
        answer.response_code(),
        Some("55"),
        "no PIN survives the wrong key"
    );

    // AES DUKPT terminal on a listener with a 16-byte field 52.
    let wide =
        Dialect::resolve(&wide_pin_dialect(s._dir.path(), "iso87ascii").to_string_lossy()).unwrap();
    let aes_bdk = test_key("bdk-aes");
    let key = dukpt::aes_working_key(
        aes_bdk.expose(),
        &hex::decode(AES_KSN).unwrap(),
        dukpt::AesKeyUsage::PinEncryption,
        dukpt::AesKeyType::Aes128,
    )
    .unwrap();
    let key = SecretKey::new(cardswitch::security::KeyAlgorithm::Aes128, &key).unwrap();
    let mut m = purchase("DUKPT002", 702);
    m.set(
        52,
        pin::encipher(PinFormat::Iso4, &key, b"1234", PAN).unwrap(),
    );
    m.set(62, AES_KSN);
    let mut conn = connect(s.running.address("pos-aes").unwrap()).await;
    let (answer, _) = exchange(&mut conn, &wide, m.to_bytes(&wide).unwrap()).await;
    assert_eq!(answer.response_code(), Some("00"));
    assert_eq!(s.good.stats().snapshot().pins_verified, 52);
    s.running.shutdown().await;
    s.good.stop().await;
    s.bad.stop().await;
}

#[test]
fn security_settings_are_checked_at_load_and_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"{journal}
{security}
[switch]
acquirer_id = "4123456"
[[listener]]
name = "pos"
address = "127.0.0.1:0"
dialect = "iso87ascii"
[[destination]]
name = "bank"
address = "127.0.0.1:9"
dialect = "iso87binary"
security = {{ pin_key = "zpk-aes" }}
[[terminal]]
id = "T1"
merchant_id = "M1"
name_location = "SHOP"
mcc = "5411"
currency = "978"
security = {{ mac = "retail", mac_key = "zak", pin_key = "nope" }}
[[terminal]]
id = "T2"
merchant_id = "M1"
name_location = "SHOP"
mcc = "5411"
currency = "978"
security = {{ mac = "aes-cmac", mac_key = "tak", require_mac = true }}
[[terminal]]
id = "T3"
merchant_id = "M1"
name_location = "SHOP"
mcc = "5411"
currency = "978"
security = {{ dukpt = "aes", dukpt_bdk = "bdk", ksn_field = 52 }}
[[destination]]
name = "bank2"
address = "127.0.0.1:9"
dialect = "iso87binary"
security = {{ pin_key = "zpk", pin_format = "iso1" }}
"#,
        journal = common::journal_section(dir.path()),
        security = common::security_section(dir.path()),
    );
    let path = dir.path().join("cardswitch.toml");
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cardswitch"))
        .args(["config", "check"])
        .arg(&path)
        .env_remove("CARDSWITCH_MASTER_KEY")
        .output()
        .unwrap();
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for expected in [
        "destination[0].security.pin_format: Iso4 blocks are 16 bytes",
        "terminal[0].security.mac_key: key `zak` is a zak key, not a tak key",
        "terminal[0].security.pin_key: no key `nope` in the store",
        "terminal[1].security.mac_key: MAC algorithm aes-cmac needs key algorithm aes128, aes192 or aes256, not tdes2",
        "terminal[2].security.dukpt_bdk: dukpt = \"aes\" needs an aes128, aes192 or aes256 BDK, not tdes2",
        "terminal[2].security.ksn_field: must be a data field other than 52, 64 and 128",
        "destination[1].security.pin_format: iso1 is not bound to the PAN",
    ] {
        assert!(
            errors.contains(expected),
            "missing {expected:?} in:\n{errors}"
        );
    }
    for secret in common::TEST_KEYS.iter().map(|k| k.3) {
        assert!(!errors.contains(secret), "a key in an error message");
    }

    // Without its master key the store cannot open; the error says where
    // the key may come from.
    std::fs::remove_file(dir.path().join("master.key")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cardswitch"))
        .args(["config", "check"])
        .arg(&path)
        .env_remove("CARDSWITCH_MASTER_KEY")
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        errors.contains("security.key_store: master key from"),
        "{errors}"
    );
    assert!(
        !errors.contains("set [security] key_store"),
        "the store is configured; only its opening failed: {errors}"
    );

    // A wrong master key: the store's own error, and nothing that asks for
    // a store to be configured (#16.20).
    let master = dir.path().join("master.key");
    std::fs::write(&master, "00".repeat(32)).unwrap();
    std::fs::set_permissions(&master, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cardswitch"))
        .args(["config", "check"])
        .arg(&path)
        .env_remove("CARDSWITCH_MASTER_KEY")
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(errors.contains("security.key_store:"), "{errors}");
    assert!(
        !errors.contains("set [security] key_store"),
        "misleading advice: {errors}"
    );
}
