//! TLS material and credentials made at first start and kept in the data
//! directory: a CA, a serving certificate signed by it, a bearer token, and the
//! kubeconfig that ties them together for `kubectl` and kube-rs.
//!
//! The CA and token persist across restarts so existing kubeconfigs keep
//! working; the serving certificate is re-issued at every start because its
//! subject names follow the listen address, which may change.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::Error;

/// Credentials of one apiserver installation.
pub struct Credentials {
    /// PEM of the CA certificate clients trust.
    pub ca_pem: String,
    /// The bearer token clients present.
    pub token: String,
    /// rustls server configuration with the serving certificate.
    pub server_config: Arc<rustls::ServerConfig>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::DataDir {
        path: path.to_path_buf(),
        source,
    }
}

fn tls_err(what: &str) -> impl FnOnce(rcgen::Error) -> Error + '_ {
    move |e| Error::Tls(format!("{what}: {e}"))
}

/// Writes `contents` to `path` readable by the owner only, atomically (write
/// to a temporary file, then rename) so a crash never leaves half a key.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(io_err(&tmp))?;
    file.write_all(contents).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// The CA's parameters. They are deterministic so the issuer can be rebuilt
/// from the persisted key alone, without parsing the stored certificate.
fn ca_params() -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(tls_err("CA params"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "switchboard-ca");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// Loads the credentials under `data_dir`, making whatever is missing.
///
/// `extra_names` are added to the serving certificate's subject names beside
/// loopback and the in-cluster `kubernetes` service names.
pub fn load_or_create(
    data_dir: &Path,
    listen: SocketAddr,
    extra_ips: &[IpAddr],
) -> Result<Credentials, Error> {
    let pki = data_dir.join("pki");
    fs::create_dir_all(&pki).map_err(io_err(&pki))?;
    let ca_key_path = pki.join("ca.key");
    let ca_crt_path = pki.join("ca.crt");

    let (ca_key, ca_pem) = if ca_key_path.exists() && ca_crt_path.exists() {
        let key_pem = fs::read_to_string(&ca_key_path).map_err(io_err(&ca_key_path))?;
        let key = KeyPair::from_pem(&key_pem).map_err(tls_err("reading pki/ca.key"))?;
        let pem = fs::read_to_string(&ca_crt_path).map_err(io_err(&ca_crt_path))?;
        (key, pem)
    } else {
        let key = KeyPair::generate().map_err(tls_err("generating the CA key"))?;
        let cert = ca_params()?
            .self_signed(&key)
            .map_err(tls_err("signing the CA"))?;
        write_private(&ca_key_path, key.serialize_pem().as_bytes())?;
        write_private(&ca_crt_path, cert.pem().as_bytes())?;
        (key, cert.pem())
    };
    let issuer = Issuer::new(ca_params()?, ca_key);

    let names = vec![
        "localhost".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
    ];
    let mut ips: Vec<IpAddr> = vec![[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()];
    let listen_ip = (!listen.ip().is_unspecified()).then_some(listen.ip());
    for ip in listen_ip.iter().chain(extra_ips) {
        if !ips.contains(ip) {
            ips.push(*ip);
        }
    }
    let mut params = CertificateParams::new(names).map_err(tls_err("serving certificate names"))?;
    params
        .subject_alt_names
        .extend(ips.into_iter().map(SanType::IpAddress));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "switchboard-apiserver");
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(tls_err("generating the serving key"))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(tls_err("signing the serving certificate"))?;

    let token_path = data_dir.join("token");
    let token = if token_path.exists() {
        fs::read_to_string(&token_path)
            .map_err(io_err(&token_path))?
            .trim()
            .to_string()
    } else {
        let token = new_token();
        write_private(&token_path, token.as_bytes())?;
        token
    };

    let chain = vec![cert.der().clone()];
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let mut server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Tls(format!("protocol versions: {e}")))?
    .with_no_client_auth()
    .with_single_cert(chain, key_der)
    .map_err(|e| Error::Tls(format!("serving certificate: {e}")))?;
    server_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

    Ok(Credentials {
        ca_pem,
        token,
        server_config: Arc::new(server_config),
    })
}

/// A 256-bit random token, hex encoded.
fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `DATA_DIR/kubeconfig` for `server` (an `https://` URL) and returns its path.
pub fn write_kubeconfig(
    data_dir: &Path,
    server: &str,
    creds: &Credentials,
) -> Result<PathBuf, Error> {
    let ca = base64::engine::general_purpose::STANDARD.encode(creds.ca_pem.as_bytes());
    let contents = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: switchboard
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: admin
  user:
    token: {token}
contexts:
- name: switchboard
  context:
    cluster: switchboard
    user: admin
    namespace: default
current-context: switchboard
",
        token = creds.token
    );
    let path = data_dir.join("kubeconfig");
    write_private(&path, contents.as_bytes())?;
    Ok(path)
}
