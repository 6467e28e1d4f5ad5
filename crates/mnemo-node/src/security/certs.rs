//! Making a certificates directory: a CA, a certificate per node, one for
//! the operator's client, and the cluster key.
//!
//! | file | what it is | who needs it |
//! | --- | --- | --- |
//! | `ca.crt` | the cluster's CA | every node and every client |
//! | `ca.key` | the CA's key | only `mnemo certs create` (keep it offline) |
//! | `<node>.crt`, `<node>.key` | a node's certificate | that node |
//! | `client.crt`, `client.key` | a client certificate with full access | the operator |
//! | `cluster.key` | 32 random bytes: gossip MAC and token keys | every node, `mnemo token create` |
//!
//! Running it again on the same directory keeps what is there (the CA,
//! the cluster key, existing certificates) and adds what is missing, so
//! a new node's certificate is signed by the same CA.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::NODE_NAME;

/// Hosts a node certificate is valid for when none are given.
pub const DEFAULT_HOSTS: [&str; 2] = ["localhost", "127.0.0.1"];

/// What [`create`] did, file by file.
#[derive(Debug, Default)]
pub struct Created {
    /// Files written.
    pub written: Vec<PathBuf>,
    /// Files that existed and were kept as they were.
    pub kept: Vec<PathBuf>,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Makes (or completes) the certificates directory `dir` for `nodes`,
/// whose certificates are valid for `hosts` (plus the name nodes use among
/// themselves).
pub fn create(dir: &Path, nodes: &[String], hosts: &[String]) -> Result<Created, Error> {
    for node in nodes {
        crate::validate_id(node).map_err(|e| format!("node {node:?}: {e}"))?;
        if matches!(node.as_str(), "ca" | "client" | "cluster") {
            return Err(
                format!("node id {node:?} is the name of another file in the directory").into(),
            );
        }
    }
    for host in hosts {
        // rcgen takes IPs and DNS names; refuse anything else here, by name.
        if host.parse::<std::net::IpAddr>().is_err()
            && rcgen::string::Ia5String::try_from(host.as_str()).is_err()
        {
            return Err(format!("host {host:?} is neither an IP address nor a DNS name").into());
        }
    }
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let (ca_key_path, ca_crt_path) = (dir.join("ca.key"), dir.join("ca.crt"));
    if !ca_key_path.exists() {
        // A new CA would not have signed what is already here: refuse
        // rather than leave a directory whose certificates trust apart.
        if ca_crt_path.exists() {
            return Err(format!(
                "{} exists without ca.key; new certificates need the CA's key (bring ca.key \
                 back into {})",
                ca_crt_path.display(),
                dir.display()
            )
            .into());
        }
        let leaves = nodes.iter().map(String::as_str).chain(["client"]);
        if let Some(stale) = leaves
            .map(|n| dir.join(format!("{n}.crt")))
            .find(|p| p.exists())
        {
            return Err(format!(
                "{} exists but there is no CA here; remove it, or bring ca.crt and ca.key back",
                stale.display()
            )
            .into());
        }
    }
    let mut created = Created::default();

    let cluster_key = dir.join("cluster.key");
    if cluster_key.exists() {
        created.kept.push(cluster_key);
    } else {
        let mut key = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
            .map_err(|_| "no randomness for the cluster key")?;
        write_private(&cluster_key, hex(&key).as_bytes())?;
        created.written.push(cluster_key);
    }

    let ca_params = ca_params()?;
    let ca_key = if ca_key_path.exists() {
        if !ca_crt_path.exists() {
            return Err(format!("{} exists without ca.crt", ca_key_path.display()).into());
        }
        created.kept.extend([ca_crt_path, ca_key_path.clone()]);
        let pem = fs::read_to_string(&ca_key_path)
            .map_err(|e| format!("cannot read {}: {e}", ca_key_path.display()))?;
        KeyPair::from_pem(&pem).map_err(|e| format!("{}: {e}", ca_key_path.display()))?
    } else {
        let key = KeyPair::generate()?;
        let cert = ca_params.self_signed(&key)?;
        write_private(&ca_key_path, key.serialize_pem().as_bytes())?;
        write_public(&ca_crt_path, cert.pem().as_bytes())?;
        created.written.extend([ca_crt_path, ca_key_path]);
        key
    };
    // The CA certificate is made from fixed parameters, so the same
    // parameters and key sign as that certificate's subject.
    let issuer = Issuer::new(ca_params, ca_key);

    let mut node_names = vec![NODE_NAME.to_owned()];
    node_names.extend(hosts.iter().cloned());
    for node in nodes {
        leaf(
            dir,
            node,
            &format!("mnemo node {node}"),
            node_names.clone(),
            true,
            &issuer,
            &mut created,
        )?;
    }
    leaf(
        dir,
        "client",
        "mnemo client",
        Vec::new(),
        false,
        &issuer,
        &mut created,
    )?;
    Ok(created)
}

fn ca_params() -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "mnemo CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2045, 1, 1);
    Ok(params)
}

/// Writes `<name>.crt`/`<name>.key` signed by `issuer` unless both exist.
fn leaf(
    dir: &Path,
    name: &str,
    common_name: &str,
    names: Vec<String>,
    node: bool,
    issuer: &Issuer<'_, KeyPair>,
    created: &mut Created,
) -> Result<(), Error> {
    let (crt, key_path) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    if crt.exists() && key_path.exists() {
        created.kept.extend([crt, key_path]);
        return Ok(());
    }
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = if node {
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ]
    } else {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    };
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2035, 1, 1);
    let key = KeyPair::generate()?;
    let signed = params.signed_by(&key, issuer)?;
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    write_public(&crt, signed.pem().as_bytes())?;
    created.written.extend([crt, key_path]);
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Reads the cluster key of `dir`: at least 32 bytes as hex.
pub(crate) fn read_cluster_key(dir: &Path) -> Result<Vec<u8>, Error> {
    let path = dir.join("cluster.key");
    let text = String::from_utf8(super::read_secret(dir, "cluster.key")?)
        .map_err(|_| format!("{} is not text", path.display()))?;
    let text = text.trim();
    let bytes: Option<Vec<u8>> = (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    match bytes {
        Some(b) if b.len() >= 32 => Ok(b),
        _ => Err(format!("{} must hold at least 32 bytes as hex", path.display()).into()),
    }
}

fn write_public(path: &Path, contents: &[u8]) -> Result<(), Error> {
    fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()).into())
}

/// Writes a secret readable by its owner only (created that way, never
/// briefly readable by others).
fn write_private(path: &Path, contents: &[u8]) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(contents)
        .map_err(|e| format!("cannot write {}: {e}", path.display()).into())
}
