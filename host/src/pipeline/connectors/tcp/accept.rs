//! The accept task of the TCP source: takes connections until the run stops, each within the
//! connection cap, and runs a `connection` task for each; then waits for them to end.
//!
//! A connection over the cap is closed as soon as it is accepted (the kernel has already
//! completed its handshake, so the client sees it closed rather than refused) and counted in
//! the node's `connections.refused`. When the run stops, the connections the kernel has
//! already completed are accepted too (a client whose `connect` returned may have written
//! already), then the listener is closed.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
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
    // What the kernel completed before the stop is the clients': take it, then close. A
    // client connecting from now on is refused by the kernel.
    match listener.into_std() {
        Ok(listener) => {
            while let Ok((stream, peer)) = listener.accept() {
                let taken = stream
                    .set_nonblocking(true)
                    .and_then(|()| TcpStream::from_std(stream));
                match (taken, Arc::clone(&slots).try_acquire_owned()) {
                    (Ok(stream), Ok(slot)) => {
                        let serve =
                            connection::serve(stream, peer, Arc::clone(&shared), tx.clone(), slot);
                        connections.spawn(serve);
                    }
                    (Err(e), _) => {
                        tracing::warn!(source = %shared.name, "cannot take a connection: {e}")
                    }
                    (_, Err(_)) => shared.refused(peer),
                }
            }
        }
        Err(e) => tracing::warn!(source = %shared.name, "cannot take the last connections: {e}"),
    }
    drop(tx);
    while connections.join_next().await.is_some() {}
}
