//! Starting a node: open the store, bind the listener, serve the public and
//! internal services with health and reflection beside them.

use std::net::SocketAddr;
use std::sync::Arc;

use mnemo_proto::v1::{internal_server::InternalServer, mnemo_server::MnemoServer};
use mnemo_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;

use crate::config::{MAX_MESSAGE_BYTES, NodeConfig};
use crate::internal::InternalService;
use crate::node::Node;
use crate::service::MnemoService;

/// A node that is serving.
pub struct Running {
    /// The node.
    pub node: Arc<Node>,
    /// The address the gRPC server is bound to.
    pub local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Running {
    /// Stops serving and waits for in-flight requests to finish.
    pub async fn shutdown(self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let _ = self.stop.send(true);
        self.server.await??;
        Ok(())
    }

    /// Waits until the server ends (it does not on its own, short of an error).
    pub async fn wait(self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.server.await??;
        Ok(())
    }

    /// A sender that stops the server when `true` is sent.
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }
}

/// Opens the node's store and starts serving on `config.listen`.
pub async fn start(
    config: NodeConfig,
) -> Result<Running, Box<dyn std::error::Error + Send + Sync>> {
    let store = tokio::task::block_in_place(|| Store::open(&config.data_dir))?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let local_addr = listener.local_addr()?;
    let node = Arc::new(Node {
        id: config.id.clone(),
        addr: local_addr.to_string(),
        store,
        config,
    });

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<MnemoServer<MnemoService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(mnemo_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let public = MnemoServer::new(MnemoService::new(Arc::clone(&node)))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let internal = InternalServer::new(InternalService::new(Arc::clone(&node)))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);

    let (stop, mut stopped) = watch::channel(false);
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(health_service)
            .add_service(reflection)
            .add_service(public)
            .add_service(internal)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                let _ = stopped.wait_for(|s| *s).await;
            }),
    );
    tracing::info!(id = %node.id, addr = %local_addr, "node serving");
    Ok(Running {
        node,
        local_addr,
        stop,
        server,
    })
}
