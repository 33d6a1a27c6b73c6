//! Connections to PostgreSQL, plain or over TLS (rustls), as the database URL asks.
//!
//! `sslmode=require`, `verify-ca` and `verify-full` all mean one thing here: encrypt, and verify the server's
//! certificate and host name, against the system's trusted roots or, with `sslrootcert=<PEM file>`, against that
//! file's certificates (for a private CA or a self-signed server). This is stricter than libpq's `require`, which
//! encrypts without checking whom it talks to; drakon does not offer that. `disable`, `allow` and `prefer` (and no
//! `sslmode`) connect without TLS.
//!
//! [`connect`] opens one connection and spawns the task that drives it, forwarding the server's asynchronous
//! messages (notifications) to a channel, so the rest of the crate never sees the stream type.

use std::sync::Arc;

use drakon_core::store::StoreError;
use tokio::sync::mpsc;
use tokio_postgres::config::SslMode;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How to reach the database: its settings, and the TLS connector when it asks for TLS.
#[derive(Clone)]
pub struct Target {
    pub config: Config,
    tls: Option<MakeRustlsConnect>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("tls", &self.tls.is_some()).finish_non_exhaustive()
    }
}

/// What the URL's `sslmode` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Verified,
}

/// Takes `sslmode` and `sslrootcert` out of a `postgres://` URL's query (tokio-postgres knows neither
/// `verify-full` nor `sslrootcert`), returning the rest of the URL and both values.
fn split_tls_params(url: &str) -> (String, Option<String>, Option<String>) {
    let Some((base, query)) = url.split_once('?') else { return (url.to_owned(), None, None) };
    let (mut mode, mut root) = (None, None);
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", v)) => mode = Some(v.to_owned()),
            Some(("sslrootcert", v)) => root = Some(v.to_owned()),
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() { base.to_owned() } else { format!("{base}?{}", rest.join("&")) };
    (url, mode, root)
}

fn bad(message: String) -> StoreError {
    StoreError::Database(message)
}

impl Target {
    /// Reads a database URL (`postgres://…`, or libpq's `key=value` form without the TLS parameters).
    pub fn parse(url: &str) -> Result<Target, StoreError> {
        let (rest, mode, root) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            split_tls_params(url)
        } else {
            (url.to_owned(), None, None)
        };
        let mut config: Config = rest.parse().map_err(|e| bad(format!("bad database URL: {e}")))?;
        let mode = match mode.as_deref() {
            None => match config.get_ssl_mode() {
                SslMode::Require => Mode::Verified,
                _ => Mode::Plain,
            },
            Some("disable" | "allow" | "prefer") => Mode::Plain,
            Some("require" | "verify-ca" | "verify-full") => Mode::Verified,
            Some(other) => {
                return Err(bad(format!(
                    "bad database URL: sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
                )));
            }
        };
        if mode == Mode::Plain {
            if root.is_some() {
                return Err(bad("bad database URL: sslrootcert needs sslmode=require or verify-full".into()));
            }
            config.ssl_mode(SslMode::Disable);
            return Ok(Target { config, tls: None });
        }
        config.ssl_mode(SslMode::Require);
        let roots = match root {
            Some(path) => roots_from_file(&path)?,
            None => system_roots()?,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(format!("TLS setup failed: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Target { config, tls: Some(MakeRustlsConnect::new(tls)) })
    }

    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }
}

fn roots_from_file(path: &str) -> Result<rustls::RootCertStore, StoreError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(format!("cannot read sslrootcert {path}: {e}")))?;
    for cert in certs {
        let cert = cert.map_err(|e| bad(format!("cannot read sslrootcert {path}: {e}")))?;
        roots.add(cert).map_err(|e| bad(format!("sslrootcert {path}: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad(format!("sslrootcert {path} holds no certificate")));
    }
    Ok(roots)
}

fn system_roots() -> Result<rustls::RootCertStore, StoreError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(bad(format!(
            "sslmode asks for TLS, but no trusted root certificate was found on this system ({:?}); install \
             ca-certificates or name the server's CA with sslrootcert=<PEM file>",
            found.errors.first().map(ToString::to_string)
        )));
    }
    Ok(roots)
}

/// Opens a connection and spawns its driver; the server's notifications arrive on the returned channel, which
/// closes when the connection ends.
pub async fn connect(
    target: &Target,
) -> Result<(Client, mpsc::UnboundedReceiver<AsyncMessage>), tokio_postgres::Error> {
    match &target.tls {
        None => drive(target.config.connect(NoTls).await?),
        Some(tls) => drive(target.config.connect(tls.clone()).await?),
    }
}

fn drive<S, T>(
    (client, mut connection): (Client, tokio_postgres::Connection<S, T>),
) -> Result<(Client, mpsc::UnboundedReceiver<AsyncMessage>), tokio_postgres::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(message) => {
                    // Nobody listening (a pool connection): the message is dropped, as before.
                    let _ = tx.send(message);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "a PostgreSQL connection ended");
                    break;
                }
            }
        }
    });
    Ok((client, rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_the_url() {
        let (url, mode, root) = split_tls_params("postgres://u@h:5432/db?sslmode=verify-full&sslrootcert=/ca.pem");
        assert_eq!(
            (url.as_str(), mode.as_deref(), root.as_deref()),
            ("postgres://u@h:5432/db", Some("verify-full"), Some("/ca.pem"))
        );
        let (url, mode, root) = split_tls_params("postgres://u@h/db?connect_timeout=3&sslmode=disable");
        assert_eq!(
            (url.as_str(), mode.as_deref(), root),
            ("postgres://u@h/db?connect_timeout=3", Some("disable"), None)
        );
    }

    #[test]
    fn modes_mean_plain_or_verified() {
        assert!(!Target::parse("postgres://u@h/db").unwrap().uses_tls());
        assert!(!Target::parse("postgres://u@h/db?sslmode=prefer").unwrap().uses_tls());
        let e = Target::parse("postgres://u@h/db?sslmode=sometimes").unwrap_err().to_string();
        assert!(e.contains("sslmode=sometimes"), "{e}");
        let e = Target::parse("postgres://u@h/db?sslrootcert=/ca.pem").unwrap_err().to_string();
        assert!(e.contains("sslrootcert needs"), "{e}");
        let e =
            Target::parse("postgres://u@h/db?sslmode=require&sslrootcert=/nonexistent.pem").unwrap_err().to_string();
        assert!(e.contains("cannot read sslrootcert"), "{e}");
    }
}
