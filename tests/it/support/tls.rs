//! A throwaway certificate authority with a server+client certificate for
//! 127.0.0.1, made with the `openssl` command, for etcd over TLS.

use std::path::{Path, PathBuf};
use std::process::Command;

/// PEM files of a test CA and a certificate it signed (server and client use).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The certificate (SAN 127.0.0.1, serverAuth + clientAuth).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian package openssl)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl TlsFiles {
    /// Generates the files in `dir`.
    pub fn generate(dir: &Path) -> Self {
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        openssl(
            dir,
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=test-ca",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            ]
            .concat(),
        );
        openssl(
            dir,
            &[&["req"][..], &ec, &["-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=127.0.0.1"]]
                .concat(),
        );
        std::fs::write(
            dir.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature\n",
        )
        .unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "node.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "node.pem",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
            ],
        );
        Self { ca: dir.join("ca.pem"), cert: dir.join("node.pem"), key: dir.join("node.key") }
    }

    /// etcd-client TLS options trusting the CA and presenting the certificate.
    pub fn client_options(&self) -> etcd_client::TlsOptions {
        let read = |p: &PathBuf| std::fs::read(p).unwrap();
        etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(read(&self.ca)))
            .identity(etcd_client::Identity::from_pem(read(&self.cert), read(&self.key)))
    }
}
