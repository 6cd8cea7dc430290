//! The test certificate authority: a CA made by rcgen at test time, and
//! leaf certificates it signs, as PEM text or written as PEM files. The
//! only one in the tree: every TLS test uses it.

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

    /// The CA's certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A leaf signed by this CA, as (certificate PEM, key PEM): a server
    /// certificate for `localhost`, or a client certificate.
    pub fn leaf(&self, name: &str, server: bool) -> (String, String) {
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
        (cert.pem(), key.serialize_pem())
    }

    /// Writes `NAME.crt`, `NAME.key` (a [`leaf`](Ca::leaf) of this CA) and
    /// `NAME-ca.crt` (this CA) into `dir`, and returns the three paths.
    pub fn issue(&self, dir: &Path, name: &str, server: bool) -> (PathBuf, PathBuf, PathBuf) {
        let (cert, key) = self.leaf(name, server);
        let write = |file: String, text: &str| {
            let path = dir.join(file);
            cardswitch::files::write_private_atomically(&path, text.as_bytes()).unwrap();
            path
        };
        (
            write(format!("{name}.crt"), &cert),
            write(format!("{name}.key"), &key),
            write(format!("{name}-ca.crt"), &self.pem),
        )
    }
}

/// A self-signed client certificate named `name`, signed by no CA, as
/// (certificate PEM, key PEM).
pub fn self_signed_client(name: &str) -> (String, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}
