//! TLS for every listener: the configured certificate, or a self-signed one
//! generated once into `<data_dir>/tls` so that a fresh install has TLS too.

use anyhow::{anyhow, Context};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;

/// The crypto provider used everywhere (only `ring` is compiled in).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Paths of the certificate and key in use, generating them when needed.
pub fn cert_paths(cfg: &Config) -> anyhow::Result<(PathBuf, PathBuf)> {
    if let Some(t) = &cfg.tls {
        return Ok((t.cert.clone(), t.key.clone()));
    }
    let dir = cfg.data_dir().join("tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if !cert.exists() || !key.exists() {
        std::fs::create_dir_all(&dir).context("creating the tls directory")?;
        let names = vec![cfg.hostname.clone(), "localhost".into(), "127.0.0.1".into()];
        let generated = rcgen::generate_simple_self_signed(names)
            .map_err(|e| anyhow!("generating a self-signed certificate: {e}"))?;
        write_private(&key, generated.key_pair.serialize_pem().as_bytes())?;
        std::fs::write(&cert, generated.cert.pem()).context("writing the certificate")?;
        tracing::info!("generated a self-signed certificate in the data directory");
    }
    Ok((cert, key))
}

fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .context("writing the private key")?;
    f.write_all(data)?;
    Ok(())
}

pub fn acceptor(cfg: &Config) -> anyhow::Result<TlsAcceptor> {
    let (cert_path, key_path) = cert_paths(cfg)?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(&cert_path).context("opening tls.cert")?,
    ))
    .collect::<Result<_, _>>()
    .context("reading tls.cert")?;
    if certs.is_empty() {
        return Err(anyhow!("config key `tls.cert`: no certificate in the file"));
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(&key_path).context("opening tls.key")?,
    ))
    .context("reading tls.key")?
    .ok_or_else(|| anyhow!("config key `tls.key`: no private key in the file"))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and key do not fit together")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
