//! The test certificate authority: a CA made by rcgen at test time, and
//! leaf certificates it signs, written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair,
};

/// A test certificate authority.
pub struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// A new self-signed CA named `name` (its own key: two CAs never trust
    /// each other's leaves).
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes `NAME.crt`, `NAME.key` (a leaf signed by this CA: a server
    /// certificate for `localhost`, or a client certificate) and
    /// `NAME-ca.crt` (this CA) into `dir`, and returns the three paths.
    pub fn issue(&self, dir: &Path, name: &str, server: bool) -> (PathBuf, PathBuf, PathBuf) {
        let sans = if server {
            vec!["localhost".to_string()]
        } else {
            vec![]
        };
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let write = |file: String, text: &str| {
            let path = dir.join(file);
            cardswitch::files::write_private_atomically(&path, text.as_bytes()).unwrap();
            path
        };
        (
            write(format!("{name}.crt"), &cert.pem()),
            write(format!("{name}.key"), &key.serialize_pem()),
            write(format!("{name}-ca.crt"), &self.pem),
        )
    }
}
