//! TCP accepting: one task per worker accepts on every listening socket of
//! that worker, instead of one task per socket.
//!
//! Why: a node proxy listens on every ClusterIP, so 10k Services are 10k
//! sockets per worker, and a tokio task per socket (its header, scheduler
//! handle and the accept future's state) cost ~640 B each (heaptrack:
//! 6.4 MB at 10k) for sockets that are idle almost all the time. Here each
//! socket is a slot in its worker's acceptor: the tokio listener, its pool
//! and a small waker that names the slot. When a socket becomes readable,
//! tokio's reactor wakes that waker, which queues the slot and wakes the
//! acceptor; the acceptor polls only the queued slots, so an accept costs
//! the same system calls as with a task per socket (the reactor's
//! `epoll_wait`, `accept4` until `EAGAIN`) and no scan of idle sockets.
//!
//! Sockets are bound by the sync loop (so a bind error is reported at
//! once) and handed to the acceptor over a channel, which registers them
//! with its own worker's reactor. Dropping a [`Listening`] closes its
//! sockets: the acceptor drops them when it reads the removal, as an
//! aborted task dropped its socket at its next poll.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures::task::AtomicWaker;
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::time::Sleep;

use crate::pool::Pool;

/// How long a socket whose `accept` failed (EMFILE and friends) rests
/// before it is tried again, instead of spinning on the error.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);

enum Command {
    /// Serve `socket` for `pool` under `id`.
    Add {
        id: u64,
        socket: std::net::TcpListener,
        pool: Arc<Pool>,
    },
    /// Close the socket of `id`.
    Remove(u64),
}

/// The acceptors of every worker, in worker order.
pub(crate) struct Acceptors {
    workers: Arc<[mpsc::UnboundedSender<Command>]>,
    next_id: AtomicU64,
}

impl Acceptors {
    /// Starts one acceptor on each runtime. An acceptor ends when this
    /// value and every [`Listening`] are gone (or with its runtime).
    pub fn start(runtimes: &[Handle]) -> Acceptors {
        let workers = runtimes
            .iter()
            .map(|rt| {
                let (tx, rx) = mpsc::unbounded_channel();
                rt.spawn(run(rx));
                tx
            })
            .collect();
        Acceptors {
            workers,
            next_id: AtomicU64::new(0),
        }
    }

    /// Serves `sockets` for `pool`: the `i`-th on worker `i`'s acceptor.
    /// The sockets must be listening and non-blocking.
    pub fn listen(&self, sockets: Vec<std::net::TcpListener>, pool: &Arc<Pool>) -> Listening {
        debug_assert!(sockets.len() <= self.workers.len());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        for (socket, worker) in sockets.into_iter().zip(self.workers.iter()) {
            // A send fails only when the worker's runtime is gone, which
            // drops the socket with the command: nothing to clean up.
            let _ = worker.send(Command::Add {
                id,
                socket,
                pool: Arc::clone(pool),
            });
        }
        Listening {
            id,
            workers: Arc::clone(&self.workers),
        }
    }
}

/// One frontend's TCP sockets (one per worker); dropping it closes them.
pub(crate) struct Listening {
    id: u64,
    workers: Arc<[mpsc::UnboundedSender<Command>]>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        for worker in self.workers.iter() {
            let _ = worker.send(Command::Remove(self.id));
        }
    }
}

/// Slots whose socket may have a connection to accept, and the acceptor
/// task to wake when one is added.
#[derive(Default)]
struct ReadyQueue {
    ids: Mutex<Vec<u64>>,
    task: AtomicWaker,
}

/// The waker a socket's readiness is registered with: queues its slot.
struct SlotWaker {
    id: u64,
    /// Already in the queue: a second wake before the acceptor polls the
    /// slot adds nothing.
    queued: AtomicBool,
    queue: Arc<ReadyQueue>,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.queue
                .ids
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(self.id);
            self.queue.task.wake();
        }
    }
}

struct Slot {
    listener: TcpListener,
    pool: Arc<Pool>,
    state: Arc<SlotWaker>,
    /// `state` as a `Waker`, made once rather than per poll.
    waker: Waker,
}

/// The acceptor of one worker: runs until every sender is gone.
async fn run(mut commands: mpsc::UnboundedReceiver<Command>) {
    let queue = Arc::new(ReadyQueue::default());
    let mut slots: HashMap<u64, Slot> = HashMap::new();
    // Swapped with the queue's vector, so neither reallocates per wake.
    let mut ready: Vec<u64> = Vec::new();
    let mut resting: Vec<u64> = Vec::new();
    let mut backoff: Option<Pin<Box<Sleep>>> = None;
    std::future::poll_fn(|cx| {
        queue.task.register(cx.waker());
        if let Some(sleep) = &mut backoff
            && sleep.as_mut().poll(cx).is_ready()
        {
            backoff = None;
            for id in resting.drain(..) {
                if let Some(slot) = slots.get(&id) {
                    slot.waker.wake_by_ref();
                }
            }
        }
        loop {
            match commands.poll_recv(cx) {
                Poll::Ready(Some(Command::Add { id, socket, pool })) => {
                    add(&mut slots, &queue, id, socket, pool);
                }
                Poll::Ready(Some(Command::Remove(id))) => {
                    slots.remove(&id);
                    // The map keeps its largest size otherwise; after a
                    // mass removal, give the memory back.
                    if slots.capacity() > 64 && slots.len() < slots.capacity() / 4 {
                        slots.shrink_to_fit();
                    }
                }
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => break,
            }
        }
        std::mem::swap(
            &mut ready,
            &mut queue.ids.lock().unwrap_or_else(|p| p.into_inner()),
        );
        for id in ready.drain(..) {
            let Some(slot) = slots.get(&id) else {
                continue; // removed since it was queued
            };
            // Cleared before polling, so a wake during the poll queues it
            // again rather than being lost.
            slot.state.queued.store(false, Ordering::Release);
            if !accept(slot) {
                resting.push(id);
                if backoff.is_none() {
                    let mut sleep = Box::pin(tokio::time::sleep(ERROR_BACKOFF));
                    // Registers the timer with this task's waker.
                    let _ = sleep.as_mut().poll(cx);
                    backoff = Some(sleep);
                }
            }
        }
        Poll::Pending
    })
    .await;
}

fn add(
    slots: &mut HashMap<u64, Slot>,
    queue: &Arc<ReadyQueue>,
    id: u64,
    socket: std::net::TcpListener,
    pool: Arc<Pool>,
) {
    // Registered with the reactor of the runtime this acceptor runs on.
    let listener = match TcpListener::from_std(socket) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(service = %pool.key.service, error = %e, "cannot register a listener");
            return;
        }
    };
    let state = Arc::new(SlotWaker {
        id,
        queued: AtomicBool::new(false),
        queue: Arc::clone(queue),
    });
    let waker = Waker::from(Arc::clone(&state));
    // Polled in this round, which registers its readiness interest.
    waker.wake_by_ref();
    slots.insert(
        id,
        Slot {
            listener,
            pool,
            state,
            waker,
        },
    );
}

/// Accepts every pending connection of `slot`, each into its own task;
/// false when `accept` failed and the slot should rest.
fn accept(slot: &Slot) -> bool {
    let mut cx = Context::from_waker(&slot.waker);
    loop {
        match slot.listener.poll_accept(&mut cx) {
            Poll::Ready(Ok((client, peer))) => spawn(&slot.pool, client, peer),
            Poll::Ready(Err(e)) => {
                tracing::warn!(error = %e, service = %slot.pool.key.service, "accept failed");
                return false;
            }
            // No connection left, or tokio's cooperative budget is spent
            // (then the slot's waker has queued it for the next round).
            Poll::Pending => return true,
        }
    }
}

fn spawn(pool: &Arc<Pool>, client: tokio::net::TcpStream, peer: SocketAddr) {
    tokio::spawn(crate::tcp::handle(Arc::clone(pool), client, peer));
}
