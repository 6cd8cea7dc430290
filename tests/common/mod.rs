//! Shared by the integration tests: the [`daemon::Daemon`] builder,
//! the test CA ([`ca::Ca`]), an HTTP client for the admin API, and the
//! journal and key-store sections with their key files.

pub mod ca;
pub mod daemon;
pub mod http;

use std::path::Path;

/// Creates a data key in `dir` and returns the `[journal]` section of a
/// config that journals into `dir/journal`.
pub fn journal_section(dir: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let key = dir.join("data.key");
    if !key.exists() {
        cardswitch::journal::generate_data_key(&key).unwrap();
    }
    format!(
        "[journal]\ndir = \"{}\"\ndata_key_file = \"{}\"\nsaf_retry_min_ms = 50\nsaf_retry_max_ms = 500\n",
        dir.join("journal").display(),
        key.display()
    )
}

/// Clear test keys, imported into the store [`security_section`] makes:
/// `(id, type, algorithm, hex)`.
pub const TEST_KEYS: [(&str, &str, &str, &str); 8] = [
    ("tak", "tak", "tdes2", "0123456789ABCDEFFEDCBA9876543210"),
    ("tpk", "tpk", "tdes2", "89ABCDEF0123456776543210FEDCBA98"),
    ("zak", "zak", "tdes2", "FEDCBA98765432100123456789ABCDEF"),
    ("zpk", "zpk", "tdes2", "0F1E2D3C4B5A69788796A5B4C3D2E1F0"),
    (
        "zpk-aes",
        "zpk",
        "aes128",
        "00112233445566778899AABBCCDDEEFF",
    ),
    ("bdk", "bdk", "tdes2", "0123456789ABCDEFFEDCBA9876543210"),
    (
        "bdk-aes",
        "bdk",
        "aes128",
        "FEDCBA9876543210F1F1F1F1F1F1F1F1",
    ),
    (
        "data",
        "data",
        "aes256",
        "6A5F0C9E3B2D18F47A1C0E9B8D7F6A5B4C3D2E1F0A9B8C7D6E5F4A3B2C1D0E9F",
    ),
];

/// The test key `id` of [`TEST_KEYS`].
pub fn test_key(id: &str) -> cardswitch::security::SecretKey {
    let (_, _, alg, hex) = TEST_KEYS.iter().find(|k| k.0 == id).unwrap();
    cardswitch::security::SecretKey::new(alg.parse().unwrap(), &hex::decode(hex).unwrap()).unwrap()
}

/// Writes a master key file (mode 0600) and a key store holding
/// [`TEST_KEYS`] in `dir`, and returns the `[security]` section naming them.
pub fn security_section(dir: &Path) -> String {
    use cardswitch::security::keys::{KeyStore, MasterKey};
    std::fs::create_dir_all(dir).unwrap();
    let master = dir.join("master.key");
    let store = dir.join("keys.store");
    if !store.exists() {
        cardswitch::files::write_private_atomically(&master, MasterKey::generate_hex().as_bytes())
            .unwrap();
        let mut keys = KeyStore::create(&store, MasterKey::from_file(&master).unwrap()).unwrap();
        for (id, key_type, alg, hex) in TEST_KEYS {
            keys.import(
                id,
                key_type.parse().unwrap(),
                alg.parse().unwrap(),
                &[(zeroize::Zeroizing::new(hex.to_string()), None)],
            )
            .unwrap();
        }
        keys.save().unwrap();
    }
    format!(
        "[security]\nkey_store = \"{}\"\nmaster_key_file = \"{}\"\n",
        store.display(),
        master.display()
    )
}

/// `count` purchases of 1.00 on `bin` from the POS simulator (iso87ascii,
/// 2-byte binary lengths), each expecting `expected`.
pub async fn purchases(
    addr: std::net::SocketAddr,
    bin: &str,
    expected: &str,
    count: u64,
) -> cardswitch::sim::report::PosReport {
    use cardswitch::iso8583::Dialect;
    use cardswitch::iso8583::framing::{FrameCodec, LengthPrefix};
    use cardswitch::sim::pos::{self, PosConfig};
    use cardswitch::sim::scenario::{Scenario, TxnTemplate};
    let mut cfg = PosConfig::new(
        addr,
        Dialect::builtin("iso87ascii").unwrap().unwrap(),
        FrameCodec::new(LengthPrefix::Binary2),
        Scenario::new(vec![
            TxnTemplate::purchase("p", bin, 100).expecting(Some(expected)),
        ])
        .unwrap(),
    );
    cfg.count = count;
    pos::run(cfg).await.unwrap()
}

/// Sends `request` to the switch on an iso87ascii connection and reads the
/// answer.
pub async fn exchange(
    conn: &mut tokio_util::codec::Framed<
        tokio::net::TcpStream,
        cardswitch::iso8583::framing::FrameCodec,
    >,
    request: &cardswitch::iso8583::Message,
) -> cardswitch::iso8583::Message {
    use cardswitch::iso8583::{Dialect, Message, framing::Frame};
    use futures_util::{SinkExt, StreamExt};
    let ascii = Dialect::builtin("iso87ascii").unwrap().unwrap();
    conn.send(Frame {
        header: bytes::Bytes::new(),
        message: request.to_bytes(&ascii).unwrap(),
    })
    .await
    .unwrap();
    let frame = conn.next().await.unwrap().unwrap();
    Message::decode(&ascii, frame.message).unwrap()
}
