//! The accept task of the TCP source: takes connections until the run stops, each within the
//! connection cap, and runs a `connection` task for each; then waits for them to end.
//!
//! A connection over the cap is closed as soon as it is accepted (the kernel has already
//! completed its handshake, so the client sees it closed rather than refused) and counted in
//! the node's `connections.refused`.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use super::Piece;
use super::connection::{self, Shared};

/// Pause after a failed accept (such as running out of file descriptors), so that a pending
/// connection the host cannot take does not spin the accept loop.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Accepts connections until the run stops, then waits for the open ones to hand over what
/// they read and end. Holds a sender to the batcher until then, so that the batcher ends only
/// after every connection.
pub(super) async fn accept(listener: TcpListener, shared: Arc<Shared>, tx: mpsc::Sender<Piece>) {
    let slots = Arc::new(Semaphore::new(shared.max_connections));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = shared.stop.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                        shared.refused(peer);
                        continue;
                    };
                    connections.spawn(connection::serve(stream, peer, Arc::clone(&shared), tx.clone(), slot));
                }
                Err(e) => {
                    tracing::warn!(source = %shared.name, "cannot accept a connection: {e}");
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                }
            },
        }
    }
    // No new connection: a client connecting now is refused by the kernel.
    drop(listener);
    drop(tx);
    while connections.join_next().await.is_some() {}
}
