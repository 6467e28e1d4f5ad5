//! Who may talk to a node, and about which spaces.
//!
//! A secure node (started with a certificates directory, see [`certs`])
//! serves gRPC over TLS only. Callers come in three kinds:
//! - **nodes** present a node certificate (signed by the cluster's CA and
//!   valid for the name [`NODE_NAME`]). Only they may call the `Internal`
//!   service or send a request marked as forwarded.
//! - **operators** present a client certificate signed by the same CA, and
//!   may use every space.
//! - **token holders** present no certificate but an `authorization: Bearer`
//!   token ([`token`]), and may use only the spaces it names, read-only if
//!   it says so.
//!
//! Every request is checked at the edge node before it is routed. A
//! forwarded request carries the original token, and the node serving it
//! checks it again, so a scope holds whichever node a request reaches.
//!
//! An insecure node (`--insecure`, loopback only) trusts every caller as a
//! node, as a development cluster on one machine does.

pub mod certs;
pub mod token;

use std::path::Path;
use std::sync::Arc;

use ring::hmac;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::ServerConfig;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use tonic::{Request, Status};

pub use token::{Claims, TokenKey};

/// Longest a client may take over its TLS handshake on the gRPC port.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The name every node certificate is valid for, besides its hosts. Nodes
/// dial each other expecting it, so a client certificate (which lacks it)
/// can never pass for a node, whatever address a peer has.
pub const NODE_NAME: &str = "node.mnemo.internal";

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A 32-byte key for `purpose`, derived from the cluster key (so the
/// gossip and token keys are independent of each other).
pub(crate) fn derive(cluster_key: &[u8], purpose: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, cluster_key), purpose);
    let mut key = [0u8; 32];
    key.copy_from_slice(tag.as_ref());
    key
}

fn read(dir: &Path, file: &str) -> Result<Vec<u8>, Error> {
    let path = dir.join(file);
    std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()).into())
}

/// Reads a key, refusing one that others than its owner may read (as ssh
/// does): a copied key with loose permissions is a leaked key.
fn read_secret(dir: &Path, file: &str) -> Result<Vec<u8>, Error> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(file);
    let meta =
        std::fs::metadata(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} may be read by others (mode {mode:o}); `chmod 600` it",
            path.display()
        )
        .into());
    }
    read(dir, file)
}

/// A node's secrets and TLS settings, loaded from its certificates
/// directory.
pub struct Security {
    /// TLS for the node's listener: its certificate, and client
    /// certificates checked against the CA when presented.
    pub server_tls: ServerTlsConfig,
    /// TLS for calls to other nodes: the node's certificate as the client
    /// identity, the peer checked against the CA and [`NODE_NAME`].
    pub peer_tls: ClientTlsConfig,
    /// Key of the MAC on every gossip packet.
    pub gossip_key: [u8; 32],
    /// TLS for the HTTP port: the same certificate and CA, HTTP/1.1 and
    /// HTTP/2.
    pub http_tls: Arc<ServerConfig>,
    tokens: TokenKey,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Security { .. }")
    }
}

impl Security {
    /// Loads `ca.crt`, `<node>.crt`, `<node>.key` and `cluster.key` from
    /// `dir`, refusing a certificate that is not a node's.
    pub fn load(dir: &Path, node: &str) -> Result<Self, Error> {
        let ca = read(dir, "ca.crt")?;
        let (crt, key) = (
            read(dir, &format!("{node}.crt"))?,
            read_secret(dir, &format!("{node}.key"))?,
        );
        let der = first_certificate(&crt)
            .ok_or_else(|| format!("{}/{node}.crt holds no certificate", dir.display()))?;
        if !is_node_certificate(&der) {
            return Err(format!(
                "{}/{node}.crt is not a node certificate (it is not valid for {NODE_NAME}); \
                 make one with `mnemo certs create --dir {} --nodes {node}`",
                dir.display(),
                dir.display()
            )
            .into());
        }
        let cluster_key = certs::read_cluster_key(dir)?;
        let http_tls = Arc::new(http_tls(&ca, &crt, &key)?);
        let identity = Identity::from_pem(&crt, &key);
        Ok(Security {
            // A client that opens a connection and never finishes its
            // handshake is dropped, not kept waiting for.
            server_tls: ServerTlsConfig::new()
                .identity(identity.clone())
                .client_ca_root(Certificate::from_pem(&ca))
                .client_auth_optional(true)
                .timeout(TLS_HANDSHAKE_TIMEOUT),
            peer_tls: ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&ca))
                .identity(identity)
                .domain_name(NODE_NAME),
            gossip_key: derive(&cluster_key, b"mnemo gossip v1"),
            http_tls,
            tokens: TokenKey::new(&cluster_key),
        })
    }
}

/// A rustls server configuration from PEM files: `crt`/`key` as the
/// node's identity, client certificates optional and checked against `ca`,
/// HTTP/2 and HTTP/1.1 offered.
fn http_tls(ca: &[u8], crt: &[u8], key: &[u8]) -> Result<ServerConfig, Error> {
    use rustls_pki_types::PrivateKeyDer;
    use rustls_pki_types::pem::PemObject;
    use tokio_rustls::rustls::RootCertStore;
    use tokio_rustls::rustls::server::WebPkiClientVerifier;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca) {
        roots.add(cert?)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let chain = CertificateDer::pem_slice_iter(crt).collect::<Result<Vec<_>, _>>()?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, PrivateKeyDer::from_pem_slice(key)?)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The key `mnemo token create` signs with, from `dir/cluster.key`.
pub fn token_key(dir: &Path) -> Result<TokenKey, Error> {
    Ok(TokenKey::new(&certs::read_cluster_key(dir)?))
}

/// TLS for a client of a secure node: the node checked against
/// `dir/ca.crt`, and `dir/client.crt`/`client.key` presented when
/// `present_certificate` and they exist.
pub fn client_tls(dir: &Path, present_certificate: bool) -> Result<ClientTlsConfig, Error> {
    let mut tls =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(dir, "ca.crt")?));
    let (crt, key) = (dir.join("client.crt"), dir.join("client.key"));
    if present_certificate && crt.exists() && key.exists() {
        tls = tls.identity(Identity::from_pem(
            read(dir, "client.crt")?,
            read_secret(dir, "client.key")?,
        ));
    }
    Ok(tls)
}

/// The first certificate of a PEM file, as DER.
fn first_certificate(pem: &[u8]) -> Option<CertificateDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem).next()?.ok()
}

/// True when `der` (a certificate the TLS handshake already checked
/// against the CA) names [`NODE_NAME`].
fn is_node_certificate(der: &CertificateDer<'_>) -> bool {
    let Ok(cert) = webpki::EndEntityCert::try_from(der) else {
        return false;
    };
    let name = ServerName::try_from(NODE_NAME).expect("a valid DNS name");
    cert.verify_is_valid_for_subject_name(&name).is_ok()
}

/// Who sent a request, as the edge check found.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Presented a node certificate (or the node is insecure).
    node: bool,
    /// The token's grant; `None`: every space, read and write.
    scope: Option<Arc<Claims>>,
    /// The `authorization` header as received, passed on with a forwarded
    /// request.
    authorization: Option<AsciiMetadataValue>,
}

impl Caller {
    /// A caller with every right: an insecure node's callers, and the
    /// node itself.
    pub fn trusted() -> Self {
        Caller {
            node: true,
            scope: None,
            authorization: None,
        }
    }

    /// The caller of `request`, as the gate recorded it. A request that
    /// did not pass the gate may touch nothing.
    pub fn of<T>(request: &Request<T>) -> Caller {
        request
            .extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or_else(|| Caller {
                node: false,
                scope: Some(Arc::new(Claims {
                    spaces: Vec::new(),
                    read_only: true,
                    expires: None,
                })),
                authorization: None,
            })
    }

    /// The `authorization` header as received, if any, as text (what a
    /// forwarded request carries on a hop stream). `Err`: it is not text.
    pub fn authorization_text(&self) -> Result<Option<&str>, tonic::metadata::errors::ToStrError> {
        self.authorization.as_ref().map(|a| a.to_str()).transpose()
    }

    /// Puts the caller's token on a request this node forwards, so the
    /// serving node checks the same scope.
    pub fn pass_on(&self, metadata: &mut MetadataMap) {
        if let Some(authorization) = &self.authorization {
            metadata.insert("authorization", authorization.clone());
        }
    }

    /// Refuses a caller whose token has expired since the gate let it in:
    /// a stream outlives the check at its start.
    pub fn still_valid(&self) -> Result<(), Status> {
        let Some(at) = self.scope.as_ref().and_then(|c| c.expires) else {
            return Ok(());
        };
        if unix_now() >= at {
            return Err(Status::unauthenticated(
                token::TokenError::Expired(at).to_string(),
            ));
        }
        Ok(())
    }

    /// Refuses unless the caller may read `space`.
    pub fn may_read(&self, space: &str) -> Result<(), Status> {
        match &self.scope {
            Some(claims) if !claims.covers(space) => Err(out_of_scope(claims, &[space])),
            _ => Ok(()),
        }
    }

    /// Refuses unless the caller may write to `space`.
    pub fn may_write(&self, space: &str) -> Result<(), Status> {
        self.may_read(space)?;
        match &self.scope {
            Some(claims) if claims.read_only => Err(Status::permission_denied(format!(
                "the token is read-only; it cannot write to space {space:?}"
            ))),
            _ => Ok(()),
        }
    }

    /// Refuses, naming every one of them, unless the caller may read all
    /// of `spaces`: a query is never silently trimmed to the token's scope.
    pub fn may_read_all(&self, spaces: &[String]) -> Result<(), Status> {
        let Some(claims) = &self.scope else {
            return Ok(());
        };
        let outside: Vec<&str> = spaces
            .iter()
            .map(String::as_str)
            .filter(|s| !claims.covers(s))
            .collect();
        if outside.is_empty() {
            Ok(())
        } else {
            Err(out_of_scope(claims, &outside))
        }
    }

    /// Refuses a token holder: cluster-wide operations (status,
    /// decommission) are for operators and nodes.
    pub fn may_operate(&self, what: &str) -> Result<(), Status> {
        if self.scope.is_some() {
            return Err(Status::permission_denied(format!(
                "{what} needs a client certificate; a token opens spaces only"
            )));
        }
        Ok(())
    }
}

fn out_of_scope(claims: &Claims, spaces: &[&str]) -> Status {
    let (noun, list) = match spaces {
        [one] => ("space", format!("{one:?}")),
        many => ("spaces", format!("{many:?}")),
    };
    Status::permission_denied(format!(
        "the token does not open {noun} {list}; it opens {}",
        claims.spaces.join(", ")
    ))
}

/// The check in front of a node's services. It records the [`Caller`] in
/// the request's extensions for the handlers.
#[derive(Clone)]
pub struct Gate {
    /// `None` on an insecure node.
    security: Option<Arc<Security>>,
}

impl Gate {
    /// The gate of a node with `security` (`None`: insecure, open to all).
    pub fn new(security: Option<Arc<Security>>) -> Self {
        Gate { security }
    }

    /// True when callers must present credentials.
    pub fn is_secure(&self) -> bool {
        self.security.is_some()
    }

    /// Who sent `request`, or why it is refused.
    fn identify<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let certs = crate::places::peer_certs(request.extensions());
        self.caller(
            certs.as_deref().and_then(|c| c.first()),
            request.metadata().get("authorization"),
        )
    }

    /// Who presented `leaf` (the TLS client certificate, already checked
    /// against the CA) and `authorization`, or why they are refused.
    pub fn caller(
        &self,
        leaf: Option<&CertificateDer<'_>>,
        authorization: Option<&AsciiMetadataValue>,
    ) -> Result<Caller, Status> {
        let Some(security) = &self.security else {
            return Ok(Caller::trusted());
        };
        let node = leaf.is_some_and(is_node_certificate);
        let Some(authorization) = authorization else {
            return match leaf {
                Some(_) => Ok(Caller {
                    node,
                    scope: None,
                    authorization: None,
                }),
                None => Err(Status::unauthenticated(
                    "this node needs a client certificate or a token \
                     (authorization: Bearer <token>, from `mnemo token create`)",
                )),
            };
        };
        let claims = security
            .tokens
            .verify(bearer(authorization)?, unix_now())
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        Ok(Caller {
            node,
            scope: Some(Arc::new(claims)),
            authorization: Some(authorization.clone()),
        })
    }

    /// The public service's check: identifies the caller, and honours the
    /// forwarded marker from nodes only.
    pub fn public(&self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let caller = self.identify(&request)?;
        if !caller.node && request.metadata().contains_key(mnemo_proto::FORWARDED_BY) {
            return Err(Status::permission_denied(format!(
                "{} is honoured only from cluster nodes (a node certificate)",
                mnemo_proto::FORWARDED_BY
            )));
        }
        request.extensions_mut().insert(caller);
        Ok(request)
    }

    /// The internal service's check: nodes only.
    pub fn internal(&self, request: Request<()>) -> Result<Request<()>, Status> {
        let caller = self.identify(&request)?;
        if !caller.node {
            return Err(Status::permission_denied(
                "the Internal service answers cluster nodes only (a node certificate)",
            ));
        }
        Ok(request)
    }
}

/// The token of an `authorization: Bearer <token>` header.
fn bearer(value: &AsciiMetadataValue) -> Result<&str, Status> {
    let malformed =
        || Status::unauthenticated("the authorization header is not \"Bearer <token>\"");
    let text = value.to_str().map_err(|_| malformed())?;
    // The scheme name is case-insensitive (RFC 9110).
    match text.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(token.trim()),
        _ => Err(malformed()),
    }
}

/// Seconds since the Unix epoch, as token expiries count them.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
