//! DUKPT against the published test vectors (ANSI X9.24-1 and -3).

use super::*;
use cipher::BlockCipherDecrypt;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn up(bytes: &[u8]) -> String {
    hex::encode_upper(bytes)
}

// ---- TDES ------------------------------------------------------------

// ANSI X9.24-1:2009 A.4 test data: BDK, initial KSN and IPEK, as quoted
// in openemv/dukpt test/dukpt_tdes_test.c ("ANSI X9.24-1:2009 A.4 DUKPT
// Test Data Examples").
const TDES_BDK: &str = "0123456789ABCDEFFEDCBA9876543210";
const TDES_IKSN: &str = "FFFF9876543210E00000";
const TDES_IPEK: &str = "6AC292FAA1315B4D858AB3A3D7D5933A";

#[test]
fn tdes_ipek_matches_x9_24_1_annex_a() {
    let ipek = tdes_ipek(&h(TDES_BDK), &h(TDES_IKSN)).unwrap();
    assert_eq!(up(&*ipek), TDES_IPEK);
    // The counter bits are ignored (moov-io/dukpt pkg/des/des_test.go
    // derives the same IPEK from KSN ...E00001).
    let ipek = tdes_ipek(&h(TDES_BDK), &h("FFFF9876543210E00001")).unwrap();
    assert_eq!(up(&*ipek), TDES_IPEK);
}

// ANSI X9.24-1:2009 A.4.2 (initial sequence) and A.4.3 (rollover
// sequence) current transaction keys, from openemv/dukpt
// test/dukpt_tdes_test.c (txn_key_verify, txn_key_verify2).
const TDES_TRANSACTION_KEYS: &[(&str, &str)] = &[
    ("FFFF9876543210E00001", "042666B49184CFA368DE9628D0397BC9"),
    ("FFFF9876543210E00002", "C46551CEF9FD24B0AA9AD834130D3BC7"),
    ("FFFF9876543210E00003", "0DF3D9422ACA56E547676D07AD6BADFA"),
    ("FFFF9876543210E00004", "279C0F6AEED0BE652B2C733E1383AE91"),
    ("FFFF9876543210E00005", "5F8DC6D2C845C125508DDC048093B83F"),
    ("FFFF9876543210E00006", "5E415CB0BAF9F03CD0C14B63FB62FF43"),
    ("FFFF9876543210E00007", "0C8F780B7C8B49D0AE84A9EB2A6CE660"),
    ("FFFF9876543210E00008", "27F66D5244FF62E1AA6F6120EDEB4280"),
    ("FFFF9876543210E00009", "27E31064FDC565698900E2057F658E7E"),
    ("FFFF9876543210E0000A", "6CF2500A22507C7CC776CEADC1E33014"),
    ("FFFF9876543210E0000B", "3E8260BA04B2D620C01482B3819A18B7"),
    ("FFFF9876543210E0000C", "B716E1E11CF53D80726CAEE75C3A624F"),
    ("FFFF9876543210E0000D", "E072EDF95340535FB6C581C58FBF2533"),
    ("FFFF9876543210E0000E", "A80046087F5B8F245AAD95E18429084F"),
    ("FFFF9876543210E0000F", "93DD5B956C4878472E453AAEFD32A5AA"),
    ("FFFF9876543210E00010", "59598DCBD9BD94C094165CE453585F57"),
    ("FFFF9876543210E00011", "2B5F01F4F0CC05EA639D523231BF1BA2"),
    ("FFFF9876543210E00012", "9CF640F279C2AEE615F725EEEAC2CBAF"),
    ("FFFF9876543210E00013", "C3DF489FDF1153B4F03DE97C27DC4C2F"),
    ("FFFF9876543210E00014", "658488507721B3F14737FA93F923CBD2"),
    ("FFFF9876543210E00015", "E161D1956A61F6D2F37AFD7F9CC3699A"),
    ("FFFF9876543210EFF800", "F9CDFEBF4F5B1D9EB3EC12454527E176"),
    ("FFFF9876543210EFF801", "5BEE92627E97825C911BF619DF72CA3B"),
    ("FFFF9876543210EFF802", "64CA2F8AB93F61B01620B00BF77C7301"),
    ("FFFF9876543210EFF804", "35A168695B3BA83307E871C42021DD37"),
    ("FFFF9876543210EFF808", "12C380FCB72ED3C26FC6079AF63F4787"),
    ("FFFF9876543210EFF810", "D8007C833A1E3C49C6889B97A68C54FF"),
    ("FFFF9876543210EFF820", "A9C9FF9B735FDD49591F296B0BF0FD70"),
    ("FFFF9876543210EFF840", "0E3E221062CB5E03A384602783A004FA"),
    ("FFFF9876543210EFF880", "CA8225C587124DFBB87F279C0BE29727"),
    ("FFFF9876543210EFF900", "906AAC1751D4971A144D52C76C6E1F97"),
    ("FFFF9876543210EFFA00", "2B9E2CE7C2750337E10B54D2989EA6AF"),
    ("FFFF9876543210EFFC00", "F9430DF975082491C77BE4EF4FDB91EE"),
    ("FFFF9876543210F00000", "AA4D58DB653EC74A48C75F2F047DD2B5"),
];

#[test]
fn tdes_transaction_keys_match_x9_24_1_annex_a() {
    for (ksn, expected) in TDES_TRANSACTION_KEYS {
        let key = tdes_transaction_key(&h(TDES_BDK), &h(ksn)).unwrap();
        assert_eq!(up(&*key), *expected, "KSN {ksn}");
    }
}

// ANSI X9.24-1:2009 A.4.2 / A.4.3 encrypted PIN blocks: ISO format 0
// block 041274EDCBA9876F (PIN 1234, PAN 4012345678909) under the PIN
// variant, from openemv/dukpt test/dukpt_tdes_test.c
// (encrypted_pinblock_verify, encrypted_pinblock_verify2).
const TDES_ENCRYPTED_PIN_BLOCKS: &[(&str, &str)] = &[
    ("FFFF9876543210E00001", "1B9C1845EB993A7A"),
    ("FFFF9876543210E00002", "10A01C8D02C69107"),
    ("FFFF9876543210E00003", "18DC07B94797B466"),
    ("FFFF9876543210E00010", "D5D9638559EF53D6"),
    ("FFFF9876543210E00012", "7A21BD10F36DC41D"),
    ("FFFF9876543210E00015", "72105C22EBC791E6"),
    ("FFFF9876543210EFF800", "33365F5CC6F23C35"),
    ("FFFF9876543210EFFC00", "DEFC6F09F8927B71"),
    ("FFFF9876543210F00000", "73EC88AD0AC5830E"),
];

#[test]
fn tdes_pin_key_encrypts_x9_24_1_pin_blocks() {
    let clear = u64::from_be_bytes(h("041274EDCBA9876F").try_into().unwrap());
    for (ksn, expected) in TDES_ENCRYPTED_PIN_BLOCKS {
        let key = tdes_working_key(&h(TDES_BDK), &h(ksn), TdesVariant::Pin).unwrap();
        let encrypted = tdes2_encrypt(&key, clear);
        assert_eq!(up(&encrypted.to_be_bytes()), *expected, "KSN {ksn}");
    }
}

// PIN and MAC (request) variant keys for the X9.24-1:2009 Annex A KSNs,
// from marianovolker/jmps-public
// C++/Spotcheck/SpotCheckTrunk/Uploader/GVRlib/dukpt2.py
// (dukpt2000_verify_table: SMIDR, PIN_KEY, MAC_KEY).
const TDES_PIN_MAC_KEYS: &[(&str, &str, &str)] = &[
    (
        "FFFF9876543210E00001",
        "042666B49184CF5C68DE9628D0397B36",
        "042666B4918430A368DE9628D03984C9",
    ),
    (
        "FFFF9876543210E00002",
        "C46551CEF9FD244FAA9AD834130D3B38",
        "C46551CEF9FDDBB0AA9AD834130DC4C7",
    ),
    (
        "FFFF9876543210E00003",
        "0DF3D9422ACA561A47676D07AD6BAD05",
        "0DF3D9422ACAA9E547676D07AD6B52FA",
    ),
    (
        "FFFF9876543210E00010",
        "59598DCBD9BD943F94165CE453585FA8",
        "59598DCBD9BD6BC094165CE45358A057",
    ),
    (
        "FFFF9876543210E00012",
        "9CF640F279C2AE1915F725EEEAC2CB50",
        "9CF640F279C251E615F725EEEAC234AF",
    ),
    (
        "FFFF9876543210E10000",
        "2F9A0C0B46ECCBA1F8287A7A071AF54B",
        "2F9A0C0B46EC345EF8287A7A071A0AB4",
    ),
    (
        "FFFF9876543210EFF800",
        "F9CDFEBF4F5B1D61B3EC12454527E189",
        "F9CDFEBF4F5BE29EB3EC124545271E76",
    ),
    (
        "FFFF9876543210EFFC00",
        "F9430DF97508246EC77BE4EF4FDB9111",
        "F9430DF97508DB91C77BE4EF4FDB6EEE",
    ),
    (
        "FFFF9876543210F00000",
        "AA4D58DB653EC7B548C75F2F047DD24A",
        "AA4D58DB653E384A48C75F2F047D2DB5",
    ),
];

#[test]
fn tdes_pin_and_mac_request_variants() {
    for (ksn, pin, mac) in TDES_PIN_MAC_KEYS {
        let key = tdes_working_key(&h(TDES_BDK), &h(ksn), TdesVariant::Pin).unwrap();
        assert_eq!(up(&*key), *pin, "PIN key, KSN {ksn}");
        let key = tdes_working_key(&h(TDES_BDK), &h(ksn), TdesVariant::MacRequest).unwrap();
        assert_eq!(up(&*key), *mac, "MAC key, KSN {ksn}");
    }
}

// Data encryption (request) keys, variant 0000000000FF0000 then
// encrypted under itself, from shenyan1206/dukpt test/test_dukpt.js
// ("data" column; its "std", "pin" and "mac" columns agree with the
// vectors above).
const TDES_DATA_KEYS: &[(&str, &str)] = &[
    ("FFFF9876543210E00001", "448D3F076D8304036A55A3D7E0055A78"),
    ("FFFF9876543210E00002", "F1BE73B36135C5C26CF937D50ABBE5AF"),
    ("FFFF9876543210E00003", "EEEEF522C67239E4A2A65FEBF4C511F4"),
    ("FFFF9876543210E00004", "BCF2610997C3AC3C5F13AE965A1B773B"),
    ("FFFF9876543210E00005", "F3054D8B7471284BDB4EE18AFC3B091B"),
];

#[test]
fn tdes_data_request_keys() {
    for (ksn, expected) in TDES_DATA_KEYS {
        let key = tdes_working_key(&h(TDES_BDK), &h(ksn), TdesVariant::DataRequest).unwrap();
        assert_eq!(up(&*key), *expected, "KSN {ksn}");
    }
}

/// TDES-CBC with a zero IV over zero-padded `data`.
fn tdes_cbc(key: &[u8; 16], data: &[u8]) -> Vec<u8> {
    let mut chain = 0u64;
    let mut out = Vec::new();
    for chunk in data.chunks(8) {
        let mut block = [0u8; 8];
        block[..chunk.len()].copy_from_slice(chunk);
        chain = tdes2_encrypt(key, u64::from_be_bytes(block) ^ chain);
        out.extend_from_slice(&chain.to_be_bytes());
    }
    out
}

/// ISO 9797-1 MAC algorithm 3 (ANSI X9.19 retail MAC), zero padding.
fn retail_mac(key: &[u8; 16], data: &[u8]) -> [u8; 8] {
    let halves = Halves::from_bytes(key);
    let mut chain = 0u64;
    for chunk in data.chunks(8) {
        let mut block = [0u8; 8];
        block[..chunk.len()].copy_from_slice(chunk);
        chain = des_encrypt(*halves.left, u64::from_be_bytes(block) ^ chain);
    }
    let mut block = chain.to_be_bytes();
    Des::new((&halves.right.to_be_bytes()).into()).decrypt_block((&mut block).into());
    des_encrypt(*halves.left, u64::from_be_bytes(block)).to_be_bytes()
}

// Data encrypted (TDES-CBC, zero IV, zero padding) and MACed (X9.19)
// under the request and response variants, for plaintext
// "4012345678909D987", from moov-io/dukpt pkg/des/des_test.go
// (InitialSequence: DataReqEnc, DataResEnc, RequestMac, ResponseMac).
// Checks the response variants, for which no key vector was found.
const TDES_DATA_AND_MACS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "FFFF9876543210E00001",
        "FC0D53B7EA1FDA9EE68AAF2E70D9B9506229BE2AA993F04F",
        "1FCC89AF66222F27B903898BB2BC8589CDBFDE5EC6AFCC25",
        "9CCC78173FC4FB64",
        "20364223C1FF00FA",
    ),
    (
        "FFFF9876543210E00002",
        "A2B4E70F846E63D68775B7215EB4563DFD3037244C61CC13",
        "5B692A6B1FDD5E25B0DEFAFDE1672E402F8011360CFF3508",
        "F608A9BCA6FFC311",
        "D1FCA6BEF05D24D2",
    ),
    (
        "FFFF9876543210E00005",
        "9FD7BD1EC28845ACA93367A9DA9317BD555C6B33AE22D365",
        "7D4C109E49E83355A556AE949EED359F4404E7A2F0167C00",
        "0202B96339022058",
        "5CBE3E81D1D2A0FB",
    ),
];

#[test]
fn tdes_request_and_response_variants_encrypt_and_mac() {
    let plain = b"4012345678909D987";
    for (ksn, data_req, data_res, mac_req, mac_res) in TDES_DATA_AND_MACS {
        let key = |variant| tdes_working_key(&h(TDES_BDK), &h(ksn), variant).unwrap();
        let k = key(TdesVariant::DataRequest);
        assert_eq!(
            up(&tdes_cbc(&k, plain)),
            *data_req,
            "data request, KSN {ksn}"
        );
        let k = key(TdesVariant::DataResponse);
        assert_eq!(
            up(&tdes_cbc(&k, plain)),
            *data_res,
            "data response, KSN {ksn}"
        );
        let k = key(TdesVariant::MacRequest);
        assert_eq!(
            up(&retail_mac(&k, plain)),
            *mac_req,
            "MAC request, KSN {ksn}"
        );
        let k = key(TdesVariant::MacResponse);
        assert_eq!(
            up(&retail_mac(&k, plain)),
            *mac_res,
            "MAC response, KSN {ksn}"
        );
    }
}

#[test]
fn tdes_rejects_bad_lengths() {
    let ksn = h(TDES_IKSN);
    for len in [0, 8, 15, 17, 24, 32] {
        let bdk = vec![0x11; len];
        let expected = DukptError::BdkLength {
            expected: "16",
            actual: len,
        };
        assert_eq!(tdes_ipek(&bdk, &ksn).unwrap_err(), expected);
        assert_eq!(tdes_transaction_key(&bdk, &ksn).unwrap_err(), expected);
        assert_eq!(
            tdes_working_key(&bdk, &ksn, TdesVariant::Pin).unwrap_err(),
            expected
        );
    }
    let bdk = h(TDES_BDK);
    for len in [0, 8, 9, 11, 12] {
        let ksn = vec![0xE0; len];
        let expected = DukptError::KsnLength {
            expected: 10,
            actual: len,
        };
        assert_eq!(tdes_ipek(&bdk, &ksn).unwrap_err(), expected);
        assert_eq!(tdes_transaction_key(&bdk, &ksn).unwrap_err(), expected);
    }
}

#[test]
fn tdes_rejects_invalid_counters() {
    let bdk = h(TDES_BDK);
    // Counter zero: the IPEK itself, never a transaction key.
    assert_eq!(
        tdes_transaction_key(&bdk, &h(TDES_IKSN)).unwrap_err(),
        DukptError::ZeroCounter
    );
    // 0x0007FF has eleven bits set; an originating device skips it.
    assert_eq!(
        tdes_working_key(&bdk, &h("FFFF9876543210E007FF"), TdesVariant::Pin).unwrap_err(),
        DukptError::CounterBits {
            counter: 0x7FF,
            bits: 11,
            max: 10
        }
    );
    // All 21 counter bits set.
    assert!(matches!(
        tdes_transaction_key(&bdk, &h("FFFF9876543210FFFFFF")),
        Err(DukptError::CounterBits { bits: 21, .. })
    ));
    // Ten bits set is the most allowed (the last key, 0x1FF800, is in
    // the rollover table above).
    assert!(tdes_transaction_key(&bdk, &h("FFFF9876543210E003FF")).is_ok());
}

// ---- AES -------------------------------------------------------------

// ANSI X9.24-3:2017 Annex B.1 / supplementary test vectors: BDKs,
// initial key ID and initial keys, from openemv/dukpt
// test/dukpt_aes_test.c (bdk128, bdk256, ikid, ik128_verify,
// ik256_verify).
const AES128_BDK: &str = "FEDCBA9876543210F1F1F1F1F1F1F1F1";
const AES256_BDK: &str = "FEDCBA9876543210F1F1F1F1F1F1F1F1FEDCBA9876543210F1F1F1F1F1F1F1F1";
const AES_IKID: &str = "1234567890123456";
const AES128_IK: &str = "1273671EA26AC29AFA4D1084127652A1";
const AES256_IK: &str = "CE9CE0C101D1138F97FB6CAD4DF045A7083D4EAE2D35A31789D01CCF0949550F";

fn aes_ksn_for(counter: u32) -> Vec<u8> {
    let mut ksn = h(AES_IKID);
    ksn.extend_from_slice(&counter.to_be_bytes());
    ksn
}

#[test]
fn aes_initial_keys_match_x9_24_3() {
    let ik = aes_initial_key(&h(AES128_BDK), &h(AES_IKID)).unwrap();
    assert_eq!(up(&ik), AES128_IK);
    let ik = aes_initial_key(&h(AES256_BDK), &h(AES_IKID)).unwrap();
    assert_eq!(up(&ik), AES256_IK);
}

// ANSI X9.24-3:2017 supplementary test vectors: intermediate derivation
// ("transaction") keys for the AES-128 BDK, from openemv/dukpt
// test/dukpt_aes128_test.c at commit 042e26b25f4b34bb48e85924177092beb9d1d3f2
// (txn_key_verify, txn_key_verify2, txn_key_verify3).
const AES128_DERIVATION_KEYS: &[(u32, &str)] = &[
    (0x0000_0001, "4F21B565BAD9835E112B6465635EAE44"),
    (0x0000_0002, "2F34D68DE10F68D38091A73B9E7C437C"),
    (0x0000_0003, "031504E530365CF81264238540518318"),
    (0x0000_0004, "0EEFC7ADA628BA68878DA9165A8A1887"),
    (0x0000_0005, "C2A7AC328A5DA2D6002D62465BFC028B"),
    (0x0000_0006, "D30F7D9351DA58448A2F5E92B4EE3B7D"),
    (0x0000_0007, "A8253CEED9AC042C54F75D35C8352278"),
    (0x0000_0008, "718EE6CF0B27E53D5F7AF99C4D8146A2"),
    (0x0001_FFFE, "E21E8C8D347F8561A2BE752DAA85A111"),
    (0x0002_0000, "F7AE9025468A25D37B7249CFFED224C8"),
    (0x0002_0001, "692C8EA4013645135B36497131DF9D2C"),
    (0xFFFE_2000, "48E585B694EB0B18D5C35443E163C0BA"),
    (0xFFFE_4000, "396C2C7CA1EA701C03B86B7D41F0C562"),
    (0xFFFE_8000, "0387625F189B58AE03EF0E8CCA41105E"),
    (0xFFFF_0000, "F6BA59389BD14A9855BE9727E7C52E3C"),
];

// The same for the AES-256 BDK, from openemv/dukpt
// test/dukpt_aes256_test.c (same commit).
const AES256_DERIVATION_KEYS: &[(u32, &str)] = &[
    (
        0x0000_0001,
        "54AC2B32B145EA4A554CB8BC44B17467063A799856B1CCC2A138D36E8DBF78B3",
    ),
    (
        0x0000_0008,
        "20A796D5077D51B8E7613893A4F095B134E02917DC84BD391F3661D0873FF308",
    ),
    (
        0x0001_FFFE,
        "A289508CBF1228452CD86AB77B15CB35577AC828C18BB66681E5A16D6C9CCED3",
    ),
    (
        0x0002_0001,
        "44110A1102748D4A3AC326F53D8CAC650212590CA7126D54546DDE0F20E89CEE",
    ),
    (
        0xFFFF_0000,
        "6D6DB7AAAE8B3EA90E57A39E4BBA71E173B21B446B30A78D64BFC6A8806C55EE",
    ),
];

#[test]
fn aes_derivation_keys_match_x9_24_3() {
    let ikid: [u8; 8] = h(AES_IKID).try_into().unwrap();
    for (bdk, bdk_type, vectors) in [
        (AES128_BDK, AesKeyType::Aes128, AES128_DERIVATION_KEYS),
        (AES256_BDK, AesKeyType::Aes256, AES256_DERIVATION_KEYS),
    ] {
        let ik = aes_initial_key(&h(bdk), &ikid).unwrap();
        for (counter, expected) in vectors {
            let key = aes_derivation_key(&ik, bdk_type, &ikid, *counter).unwrap();
            assert_eq!(up(&key), *expected, "counter {counter:#x}");
        }
    }
}

// ANSI X9.24-3:2017 Annex B / supplementary test vectors: AES-128
// working keys from the AES-128 BDK, from 5n00py/paysec
// crates/paysec-dukpt/tests/test_working_key.rs (AES_128_VECTORS:
// counter, PIN encryption, MAC generation, data encryption (encrypt)).
const AES128_WORKING_KEYS: &[(u32, &str, &str, &str)] = &[
    (
        0x0000_0001,
        "AF8CB133A78F8DC2D1359F18527593FB",
        "A2DC23DE6FDE0824A2BC321E08E4B8B7",
        "A35C412EFD41FDB98B69797C02DCD08F",
    ),
    (
        0x0000_0002,
        "D30BDC73EC9714B000BEC66BDB7B6D09",
        "484C3B06E8562704528CD5B46FB12FB6",
        "D639514AA33AC43AD9229E433D6D4E5B",
    ),
    (
        0x0000_0003,
        "7D69F01F3B45449F62C7816ECE723268",
        "A5DF7D9D800CA769766F0C77CA4E6E6C",
        "EF17F6AB45B4820C93A3DCB21BC491AD",
    ),
    (
        0x0000_0004,
        "91A0588318EC2673214271F70137896E",
        "E6E4679647D8A9057C1FC15537CB4C4E",
        "B3BD44C08BB6BA27C3BB4711D7D70387",
    ),
    (
        0x0000_0005,
        "35A43BC9EFEB09C756204B57E3FB7D4D",
        "0588185FE1FF8C7E22FAD78C1C61F065",
        "CA02DF6F30B39E14BD0B4A30E460920F",
    ),
    (
        0x0001_FFFE,
        "DDF7E08A84B5478C498D007C743BF762",
        "6D7623AD652734B8FAE1B6E093EACE3D",
        "8E4E5D5E0F01C54F01F4ACA1C8F8EDCE",
    ),
    (
        0x0002_0000,
        "AB828BE7B58C7EC5D5ED0D5D320A0C9D",
        "0B59D3D7D93028D97135FB895CACE24E",
        "13361208975755318FE7AE28C9616014",
    ),
];

#[test]
fn aes128_working_keys_match_x9_24_3() {
    let bdk = h(AES128_BDK);
    for (counter, pin, mac, data) in AES128_WORKING_KEYS {
        let ksn = aes_ksn_for(*counter);
        for (usage, expected) in [
            (AesKeyUsage::PinEncryption, pin),
            (AesKeyUsage::MacGeneration, mac),
            (AesKeyUsage::DataEncrypt, data),
        ] {
            let key = aes_working_key(&bdk, &ksn, usage, AesKeyType::Aes128).unwrap();
            assert_eq!(up(&key), *expected, "{usage:?}, counter {counter:#x}");
        }
    }
}

// Every usage for counter 1, AES-128 BDK and working keys, from
// 5n00py/paysec crates/paysec-dukpt/tests/test_working_key.rs
// (test_all_working_key_usages_aes_128_counter_1).
#[test]
fn aes128_all_usages_counter_1() {
    let bdk = h(AES128_BDK);
    let ksn = aes_ksn_for(1);
    for (usage, expected) in [
        (
            AesKeyUsage::KeyEncryption,
            "36A724B7BEFA5A25F5E7B5782A4554A2",
        ),
        (
            AesKeyUsage::PinEncryption,
            "AF8CB133A78F8DC2D1359F18527593FB",
        ),
        (
            AesKeyUsage::MacGeneration,
            "A2DC23DE6FDE0824A2BC321E08E4B8B7",
        ),
        (
            AesKeyUsage::MacVerification,
            "DBB463945B286C07CD3AD82EE96FD9C9",
        ),
        (AesKeyUsage::MacBoth, "85675439D18D7F1158BD8E3EAA3D502B"),
        (AesKeyUsage::DataEncrypt, "A35C412EFD41FDB98B69797C02DCD08F"),
        (AesKeyUsage::DataDecrypt, "16292C6EA8F64C5420A0584BFBC577BE"),
        (AesKeyUsage::DataBoth, "A308E080DD15A1B741F1721BF67DE11C"),
        (
            AesKeyUsage::KeyDerivation,
            "30E54D3C69B22501A7FC43969D81D5C0",
        ),
    ] {
        let key = aes_working_key(&bdk, &ksn, usage, AesKeyType::Aes128).unwrap();
        assert_eq!(up(&key), expected, "{usage:?}");
    }
}

// AES-128 and AES-256 working keys from the AES-256 BDK, counter 1
// ("ASC X9 supplemental X9.24-3 test vectors"), from 5n00py/paysec
// crates/paysec-dukpt/tests/test_working_key.rs
// (test_derive_aes_128_working_keys_from_aes_256_bdk,
// test_derive_aes_256_working_keys_from_aes_256_bdk).
#[test]
fn aes256_bdk_working_keys_counter_1() {
    let bdk = h(AES256_BDK);
    let ksn = aes_ksn_for(1);
    for (usage, key_type, expected) in [
        (
            AesKeyUsage::PinEncryption,
            AesKeyType::Aes128,
            "09C9C432966811D6B2C3336BAC1B1202",
        ),
        (
            AesKeyUsage::MacGeneration,
            AesKeyType::Aes128,
            "F04A1FABD4176E15490CEC82E217A96D",
        ),
        (
            AesKeyUsage::DataEncrypt,
            AesKeyType::Aes128,
            "616D59AE91F8CC7016F89FDA29605FA4",
        ),
        (
            AesKeyUsage::PinEncryption,
            AesKeyType::Aes256,
            "8C1AB7BEE973829E30242E0BBBDD4946D540C98FC1B5BDCF94790001A23FD502",
        ),
        (
            AesKeyUsage::MacGeneration,
            AesKeyType::Aes256,
            "61DABDF4B340CF461EE860B1D1AB55357142BD2D6977306859CF49AEFE8F1549",
        ),
        (
            AesKeyUsage::DataEncrypt,
            AesKeyType::Aes256,
            "71EB36C9A6B7F801D1D1700C29741FC5A5C4E9B45D742DA7AF6992B8AA29AF58",
        ),
    ] {
        let key = aes_working_key(&bdk, &ksn, usage, key_type).unwrap();
        assert_eq!(up(&key), expected, "{usage:?} {key_type:?}");
    }
}

// Counter 0x1FFFF has seventeen bits set, so `aes_working_key` refuses
// it, but the supplementary vectors still list its keys (5n00py/paysec
// crates/paysec-dukpt/tests/test_working_key.rs, AES_128_VECTORS): check
// the seventeen-step walk through the unvalidated internals.
#[test]
fn aes128_seventeen_bit_counter_walk() {
    let ikid: [u8; 8] = h(AES_IKID).try_into().unwrap();
    let ik = aes_initial_key(&h(AES128_BDK), &ikid).unwrap();
    let dk = aes_derivation_key(&ik, AesKeyType::Aes128, &ikid, 0x1_FFFF).unwrap();
    for (usage, expected) in [
        (
            AesKeyUsage::PinEncryption,
            "73BA667D6368A2086E72576DF41A4037",
        ),
        (
            AesKeyUsage::MacGeneration,
            "8B543DCF4A31EA3AB47DAD16B8ABD404",
        ),
        (AesKeyUsage::DataEncrypt, "D18ACA30B4D63DB61CE474D3F57733D3"),
    ] {
        let data = counter_data(&ikid, 0x1_FFFF);
        let key = aes_derive(&dk, usage.indicator(), AesKeyType::Aes128, data).unwrap();
        assert_eq!(up(&key), expected, "{usage:?}");
    }
    assert_eq!(
        aes_working_key(
            &h(AES128_BDK),
            &aes_ksn_for(0x1_FFFF),
            AesKeyUsage::PinEncryption,
            AesKeyType::Aes128
        )
        .unwrap_err(),
        DukptError::CounterBits {
            counter: 0x1_FFFF,
            bits: 17,
            max: 16
        }
    );
}

#[test]
fn aes_key_type_lengths() {
    let bdk = h(AES256_BDK);
    let ksn = aes_ksn_for(3);
    for key_type in [
        AesKeyType::Tdes2,
        AesKeyType::Tdes3,
        AesKeyType::Aes128,
        AesKeyType::Aes192,
        AesKeyType::Aes256,
    ] {
        let key = aes_working_key(&bdk, &ksn, AesKeyUsage::PinEncryption, key_type).unwrap();
        assert_eq!(key.len(), key_type.byte_len());
    }
    // An AES-192 BDK derives an initial key of its own length.
    let bdk192 = h("FEDCBA9876543210F1F1F1F1F1F1F1F1FEDCBA9876543210");
    assert_eq!(aes_initial_key(&bdk192, &h(AES_IKID)).unwrap().len(), 24);
}

#[test]
fn aes_rejects_bad_input() {
    let ksn = aes_ksn_for(1);
    let usage = AesKeyUsage::PinEncryption;
    for len in [0, 8, 15, 17, 20, 31, 33, 48] {
        let bdk = vec![0x22; len];
        let expected = DukptError::BdkLength {
            expected: "16, 24 or 32",
            actual: len,
        };
        assert_eq!(aes_initial_key(&bdk, &h(AES_IKID)).unwrap_err(), expected);
        assert_eq!(
            aes_working_key(&bdk, &ksn, usage, AesKeyType::Aes128).unwrap_err(),
            expected
        );
    }
    let bdk = h(AES128_BDK);
    for len in [0, 7, 9, 12] {
        assert_eq!(
            aes_initial_key(&bdk, &vec![0x12; len]).unwrap_err(),
            DukptError::InitialKeyIdLength { actual: len }
        );
    }
    for len in [0, 8, 10, 11, 13, 16] {
        assert_eq!(
            aes_working_key(&bdk, &vec![0x12; len], usage, AesKeyType::Aes128).unwrap_err(),
            DukptError::KsnLength {
                expected: 12,
                actual: len
            }
        );
    }
    assert_eq!(
        aes_working_key(&bdk, &aes_ksn_for(0), usage, AesKeyType::Aes128).unwrap_err(),
        DukptError::ZeroCounter
    );
    assert_eq!(
        aes_working_key(&bdk, &aes_ksn_for(u32::MAX), usage, AesKeyType::Aes128).unwrap_err(),
        DukptError::CounterBits {
            counter: u32::MAX,
            bits: 32,
            max: 16
        }
    );
    for key_type in [AesKeyType::Aes192, AesKeyType::Aes256] {
        assert_eq!(
            aes_working_key(&bdk, &ksn, usage, key_type).unwrap_err(),
            DukptError::WorkingKeyTooStrong {
                working_bits: key_type.bits(),
                bdk_bits: 128
            }
        );
    }
    // TDES working keys may come from an AES-128 BDK.
    assert!(aes_working_key(&bdk, &ksn, usage, AesKeyType::Tdes3).is_ok());
}

#[test]
fn errors_never_show_key_bytes() {
    let bdk = h(TDES_BDK);
    let errors = [
        tdes_transaction_key(&bdk, &h(TDES_IKSN)).unwrap_err(),
        tdes_transaction_key(&bdk[..15], &h(TDES_IKSN)).unwrap_err(),
        aes_working_key(
            &h(AES128_BDK),
            &aes_ksn_for(u32::MAX),
            AesKeyUsage::PinEncryption,
            AesKeyType::Aes128,
        )
        .unwrap_err(),
    ];
    for error in errors {
        for text in [format!("{error}"), format!("{error:?}")] {
            let text = text.to_ascii_uppercase();
            assert!(!text.contains("0123456789ABCDEF"), "{text}");
            assert!(!text.contains("FEDCBA98"), "{text}");
        }
    }
}

proptest::proptest! {
    #[test]
    fn arbitrary_input_never_panics(
        bdk in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
        ksn in proptest::collection::vec(proptest::num::u8::ANY, 0..16),
    ) {
        let _ = tdes_ipek(&bdk, &ksn);
        let _ = tdes_working_key(&bdk, &ksn, TdesVariant::DataResponse);
        let _ = aes_initial_key(&bdk, &ksn);
        let _ = aes_working_key(&bdk, &ksn, AesKeyUsage::DataBoth, AesKeyType::Aes256);
    }
}
