//! TLS for terminal listeners and bank links.
//!
//! A listener is described by [`ServerTlsFiles`] and served through a
//! [`TlsAcceptor`]; a bank link is described by [`ClientTlsFiles`] and dialled
//! through a [`TlsConnector`]. Both read PEM files, accept TLS 1.2 and 1.3 only
//! and use the `ring` crypto provider.
//!
//! Both are reloadable: [`TlsAcceptor::reload`] and [`TlsConnector::reload`]
//! re-read the files and swap in a new configuration for the connections made
//! afterwards. A connection already established keeps the session it was
//! negotiated with, so certificates can be rotated (on `SIGHUP`, say) without
//! dropping anyone. A reload that fails keeps the previous configuration.
//!
//! Errors name the file and the reason; they never carry key material.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;

/// An error loading TLS certificates, keys or trust anchors.
///
/// Messages name the file concerned and the reason; they never include key
/// bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be opened, read or parsed as PEM.
    #[error("TLS file {}: {reason}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        reason: ReadError,
    },
    /// A certificate file holds no `CERTIFICATE` section.
    #[error("TLS file {}: no certificate found", .path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A key file holds no private key section (PKCS#8, PKCS#1 or SEC1).
    #[error("TLS key file {}: no private key found", .path.display())]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// A CA file holds a certificate that cannot be used as a trust anchor.
    #[error("TLS CA file {}: {reason}", .path.display())]
    TrustAnchor {
        /// The CA file.
        path: PathBuf,
        /// Why it was refused.
        #[source]
        reason: TrustAnchorError,
    },
    /// The certificate and key could not be combined into a configuration
    /// (unsupported key type, key not matching the certificate, …).
    #[error("TLS certificate {} with key {}: {reason}", .cert.display(), .key.display())]
    CertifiedKey {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why they were refused.
        #[source]
        reason: rustls::Error,
    },
    /// Only one of a client certificate and its key was configured.
    #[error("TLS client certificate and key must be given together (got {given} only)")]
    IncompleteClientCert {
        /// The one that was given.
        given: PathBuf,
    },
    /// The server name to verify a bank's certificate against is not a valid
    /// DNS name or IP address.
    #[error("TLS server name {name:?}: {reason}")]
    ServerName {
        /// The configured name.
        name: String,
        /// Why it is invalid.
        #[source]
        reason: rustls::pki_types::InvalidDnsNameError,
    },
    /// Any other error building the TLS configuration.
    #[error("TLS configuration: {0}")]
    Config(#[source] rustls::Error),
}

/// Why a PEM file could not be read. PEM errors are described without
/// the file's contents (a malformed line of a key file could otherwise end
/// up in a log).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The file could not be read.
    #[error(transparent)]
    Io(std::io::Error),
    /// A key file could not be read, or others may read it.
    #[error(transparent)]
    PrivateFile(#[from] base::files::PrivateFileError),
    /// A PEM section has no END line.
    #[error("PEM section has no END line")]
    MissingSectionEnd,
    /// A PEM BEGIN line is malformed.
    #[error("malformed PEM BEGIN line")]
    IllegalSectionStart,
    /// A PEM section holds invalid base64.
    #[error("invalid base64 in PEM section")]
    Base64,
    /// A PEM section is too large.
    #[error("PEM section too large")]
    SectionTooLarge,
    /// The file holds no PEM items.
    #[error("no PEM items found")]
    NoItemsFound,
    /// Any other PEM error.
    #[error("invalid PEM")]
    Invalid,
}

impl From<pem::Error> for ReadError {
    fn from(err: pem::Error) -> ReadError {
        match err {
            pem::Error::Io(e) => ReadError::Io(e),
            pem::Error::MissingSectionEnd { .. } => ReadError::MissingSectionEnd,
            pem::Error::IllegalSectionStart { .. } => ReadError::IllegalSectionStart,
            pem::Error::Base64Decode(_) => ReadError::Base64,
            pem::Error::SectionTooLarge => ReadError::SectionTooLarge,
            pem::Error::NoItemsFound => ReadError::NoItemsFound,
            _ => ReadError::Invalid,
        }
    }
}

/// Why a CA file's certificates cannot be trust anchors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustAnchorError {
    /// A certificate cannot be a trust anchor.
    #[error(transparent)]
    Certificate(rustls::Error),
    /// No client certificate verifier can be built on them.
    #[error(transparent)]
    Verifier(rustls::server::VerifierBuilderError),
}

/// The PEM files of a TLS terminal listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    /// The server certificate chain, leaf first.
    pub cert: PathBuf,
    /// The server private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by one of the CAs
    /// in this file (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

/// The PEM files and server name of a TLS bank link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTlsFiles {
    /// The trust anchors the bank's certificate must chain to.
    pub ca: PathBuf,
    /// The name (DNS name or IP address) the bank's certificate must carry.
    pub server_name: String,
    /// Our client certificate chain for mutual TLS; needs `key`.
    pub cert: Option<PathBuf>,
    /// The private key of `cert`.
    pub key: Option<PathBuf>,
}

/// A reloadable TLS acceptor for a terminal listener.
pub struct TlsAcceptor {
    files: ServerTlsFiles,
    current: RwLock<tokio_rustls::TlsAcceptor>,
}

impl TlsAcceptor {
    /// Reads the files and builds the server configuration.
    pub fn load(files: ServerTlsFiles) -> Result<Self, TlsError> {
        let acceptor = build_acceptor(&files)?;
        Ok(Self {
            files,
            current: RwLock::new(acceptor),
        })
    }

    /// Re-reads the files and uses the new configuration for connections
    /// accepted from now on. On error the previous configuration stays in
    /// use and the error is returned.
    pub fn reload(&self) -> Result<(), TlsError> {
        let acceptor = build_acceptor(&self.files)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = acceptor;
        tracing::info!(cert = %self.files.cert.display(), "TLS listener certificates reloaded");
        Ok(())
    }

    /// The current acceptor. Handshakes started with it keep its
    /// configuration even if [`reload`](Self::reload) is called meanwhile.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The files this acceptor was loaded from.
    pub fn files(&self) -> &ServerTlsFiles {
        &self.files
    }
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// A reloadable TLS connector for a bank link.
pub struct TlsConnector {
    files: ClientTlsFiles,
    server_name: ServerName<'static>,
    current: RwLock<tokio_rustls::TlsConnector>,
}

impl TlsConnector {
    /// Reads the files, checks the server name and builds the client
    /// configuration.
    pub fn load(files: ClientTlsFiles) -> Result<Self, TlsError> {
        let server_name = parse_server_name(&files.server_name)?;
        let connector = build_connector(&files)?;
        Ok(Self {
            files,
            server_name,
            current: RwLock::new(connector),
        })
    }

    /// Re-reads the files and uses the new configuration for connections
    /// made from now on. On error the previous configuration stays in use
    /// and the error is returned.
    pub fn reload(&self) -> Result<(), TlsError> {
        let connector = build_connector(&self.files)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = connector;
        tracing::info!(ca = %self.files.ca.display(), "TLS bank link certificates reloaded");
        Ok(())
    }

    /// The current connector. Connections made with it keep its
    /// configuration even if [`reload`](Self::reload) is called meanwhile.
    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The name the bank's certificate is verified against.
    pub fn server_name(&self) -> ServerName<'static> {
        self.server_name.clone()
    }

    /// The files this connector was loaded from.
    pub fn files(&self) -> &ClientTlsFiles {
        &self.files
    }
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn build_acceptor(files: &ServerTlsFiles) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let certs = read_certs(&files.cert)?;
    let key = read_key(&files.key)?;
    let provider = provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(VERSIONS)
        .map_err(TlsError::Config)?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let roots = read_roots(ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::TrustAnchor {
                    path: ca.clone(),
                    reason: TrustAnchorError::Verifier(e),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::CertifiedKey {
            cert: files.cert.clone(),
            key: files.key.clone(),
            reason: e,
        })?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

fn build_connector(files: &ClientTlsFiles) -> Result<tokio_rustls::TlsConnector, TlsError> {
    let roots = read_roots(&files.ca)?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(TlsError::Config)?
        .with_root_certificates(roots);
    let config = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert)?;
            let key_der = read_key(key)?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| TlsError::CertifiedKey {
                    cert: cert.clone(),
                    key: key.clone(),
                    reason: e,
                })?
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(given), None) | (None, Some(given)) => {
            return Err(TlsError::IncompleteClientCert {
                given: given.clone(),
            });
        }
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

fn parse_server_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(name.to_owned()).map_err(|e| TlsError::ServerName {
        name: name.to_owned(),
        reason: e,
    })
}

fn read_error(path: &Path, err: pem::Error) -> TlsError {
    TlsError::Read {
        path: path.to_path_buf(),
        reason: err.into(),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// Reads a private key, refusing a file that group or others may read.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = base::files::read_private_file(path).map_err(|e| TlsError::Read {
        path: path.to_path_buf(),
        reason: e.into(),
    })?;
    PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: path.to_path_buf(),
        },
        other => read_error(path, other),
    })
}

fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots.add(cert).map_err(|e| TlsError::TrustAnchor {
            path: path.to_path_buf(),
            reason: TrustAnchorError::Certificate(e),
        })?;
    }
    Ok(roots)
}
