//! The Socket.IO server: records every event on `/`, echoes it to its sender (unless told
//! not to) and acknowledges the emits that ask for it, as the real dashboard does; and, on
//! the same port, the web view: the page, and for sockets that carry the token, the history
//! then the live stream, and the counters.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};
use serde_json::Value;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Data, Event, SocketRef};
use socketioxide::handler::FromMessageParts;
use socketioxide::socket::Socket;
use socketioxide::SocketIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::log::{Log, Numbered, Received};
use crate::web::{Guard, Route};

/// The event a relay sends with its own state (breaker, store depth, dead letters): shown
/// by the page, not recorded as a Claude Code event.
pub const STATUS_EVENT: &str = "sluice_status";

/// The room of the sockets that carry the token: the pages.
const VIEWERS: &str = "viewers";

/// How many events go in one `history` message.
const HISTORY_CHUNK: usize = 1_000;

/// How often the pages get the counters.
const STATS_EVERY: Duration = Duration::from_secs(1);

/// Connections open, pages among them, and the last state each relay sent.
#[derive(Debug, Default)]
pub(crate) struct Presence {
    connections: AtomicUsize,
    viewers: AtomicUsize,
    /// By relay (its `relay_pid`, else its connection): the connection it last sent on,
    /// and what it sent. A relay that reconnects keeps its place.
    relays: Mutex<BTreeMap<String, (String, Value)>>,
}

impl Presence {
    /// The last state each connected relay sent, in the order of their connections' ids.
    pub(crate) fn relays(&self) -> Vec<Value> {
        self.relays
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|(_, status)| status.clone())
            .collect()
    }

    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

/// How the dashboard answers an emit that asks for an acknowledgement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Acks {
    /// At once, once the event is recorded (the default; what claude-mpm's server does).
    #[default]
    Immediate,
    /// This long after the event was recorded: a slow server.
    After(Duration),
    /// Never: a server that does not acknowledge.
    Never,
    /// At once, except an event whose payload's JSON text contains this: a server whose
    /// handler fails on one payload and so never acknowledges it.
    Refusing(&'static str),
}

/// Whether the dashboard sends each event back to its sender.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Echo {
    /// To its sender (the default): the real dashboard re-broadcasts every event to all its
    /// clients.
    #[default]
    ToSender,
    /// Never: a plain server that records and acknowledges only (as `interop/server.js`).
    /// Such a server writes nothing back to an emit that asks for no ack, so the TCP ACK of
    /// that emit waits for the server's delayed-ACK timer.
    Off,
}

/// Every argument of an event. socketioxide hands a handler the first argument unless the
/// type asks for a tuple: this one deserializes as a tuple of any length, so it gets all of
/// them (the event name is skipped by the parser).
struct Args(Vec<Value>);

impl<'de> Deserialize<'de> for Args {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Every;
        impl<'de> Visitor<'de> for Every {
            type Value = Args;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an event's arguments")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Args, A::Error> {
                let mut args = Vec::new();
                while let Some(arg) = seq.next_element()? {
                    args.push(arg);
                }
                Ok(Args(args))
            }
        }
        deserializer.deserialize_tuple(usize::MAX, Every)
    }
}

/// Whether the event asked for an ack (socketioxide's [`AckSender`] does not say).
struct AckRequested(bool);

impl<A: Adapter> FromMessageParts<A> for AckRequested {
    type Error = Infallible;

    fn from_message_parts(
        _: &Arc<Socket<A>>,
        _: &mut socketioxide::handler::Value,
        ack_id: &Option<i64>,
    ) -> Result<Self, Infallible> {
        Ok(Self(ack_id.is_some()))
    }
}

/// Serves Socket.IO and the page on `listener`, recording into `log`, answering acks by
/// `acks` and echoing by `echo`.
pub(crate) async fn serve(
    listener: TcpListener,
    log: Log,
    acks: Acks,
    echo: Echo,
    guard: Guard,
    presence: Arc<Presence>,
) {
    // socketioxide queues at most `max_buffer_size` packets per client (128 by default) and
    // fails a send beyond, acks included: with every event echoed, a client that reads more
    // slowly than it writes would lose acks. The real dashboard (python-socketio) queues
    // without such a bound.
    let (svc, io) = SocketIo::builder().max_buffer_size(1 << 16).build_svc();
    let counters = {
        let (io, log, presence) = (io.clone(), log.clone(), Arc::clone(&presence));
        async move {
            let mut every = tokio::time::interval(STATS_EVERY);
            loop {
                every.tick().await;
                let _ = io.to(VIEWERS).emit("stats", &stats(&log, &presence)).await;
            }
        }
    };
    let (viewing, present) = (guard.clone(), Arc::clone(&presence));
    io.ns("/", async move |socket: SocketRef| {
        let recorder = log.clone();
        let presence = Arc::clone(&present);
        presence.connections.fetch_add(1, Ordering::Relaxed);
        let viewer = viewing.admits(socket.req_parts().uri.query());
        if viewer {
            presence.viewers.fetch_add(1, Ordering::Relaxed);
            socket.join(VIEWERS);
            let _ = socket.emit("stats", &stats(&log, &presence));
            follow(&log, &socket);
        }
        {
            let presence = Arc::clone(&presence);
            socket.on_disconnect(move |socket: SocketRef| {
                presence.connections.fetch_sub(1, Ordering::Relaxed);
                if viewer {
                    presence.viewers.fetch_sub(1, Ordering::Relaxed);
                }
                let sid = socket.id.to_string();
                presence
                    .relays
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .retain(|_, (last, _)| *last != sid);
                std::future::ready(())
            });
        }
        // Acks asked for on this connection and not yet sent.
        let pending = Arc::new(AtomicUsize::new(0));
        // A plain closure returning a ready future: socketioxide calls it in arrival order
        // and spawns only the (empty) future, so the log keeps the wire order.
        socket.on_fallback(
            move |Event(event): Event,
                  Data::<Args>(Args(args)): Data<Args>,
                  AckRequested(requested): AckRequested,
                  ack: AckSender,
                  sender: SocketRef| {
                let data = args.first().cloned().unwrap_or(Value::Null);
                if event == STATUS_EVENT {
                    // A relay's own state: the latest one per connection, shown by the page.
                    let sid = sender.id.to_string();
                    let relay = data["relay_pid"]
                        .as_u64()
                        .map_or_else(|| sid.clone(), |pid| pid.to_string());
                    presence
                        .relays
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(relay, (sid, data));
                    return std::future::ready(());
                }
                let refused =
                    matches!(acks, Acks::Refusing(marker) if data.to_string().contains(marker));
                // The real dashboard re-broadcasts every event to its clients, the sender
                // included: echoed to the sender here. Besides the cost, that shapes TCP:
                // the echo carries the ACK of the sender's segments at once (see the sink's
                // documentation on Nagle's algorithm).
                if echo == Echo::ToSender {
                    let _ = sender.emit(&event, &data);
                }
                recorder.push(Received {
                    namespace: "/".to_string(),
                    event,
                    args: args.len(),
                    data,
                });
                if pending.load(Ordering::Acquire) > 0 {
                    recorder.arrived_while_ack_pending();
                }
                if requested {
                    let now = pending.fetch_add(1, Ordering::AcqRel) + 1;
                    recorder.ack_requested(now);
                    answer(
                        ack,
                        if refused { Acks::Never } else { acks },
                        &recorder,
                        &pending,
                    );
                }
                std::future::ready(())
            },
        );
    });
    let accept = async move {
        let mut connections = JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of file descriptors, say: let some close before trying again.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            // Acks and pings are small writes: sent at once, not held by Nagle's algorithm
            // until the client's delayed ACK (as the reference's aiohttp server does).
            let _ = stream.set_nodelay(true);
            let (svc, guard) = (svc.clone(), guard.clone());
            // The guard first: the page and its assets are answered here, refusals too;
            // the rest goes to Socket.IO.
            let route = hyper::service::service_fn(move |request: Request<Incoming>| {
                let answer = match guard.route(&request) {
                    Route::Answer(response) => {
                        Some(response.map(|body| Either::Right(Full::new(body))))
                    }
                    Route::SocketIo => None,
                };
                let svc = svc.clone();
                async move {
                    match answer {
                        Some(response) => Ok(response),
                        None => hyper::service::Service::call(&svc, request)
                            .await
                            .map(|response| response.map(Either::Left)),
                    }
                }
            });
            connections.spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), route)
                    .with_upgrades()
                    .await;
            });
        }
    };
    tokio::join!(accept, counters);
}

/// The counters the pages show in their header.
fn stats(log: &Log, presence: &Presence) -> Value {
    let counters = log.counters();
    let relays = presence.relays();
    serde_json::json!({
        "events": counters.events,
        "sessions": counters.sessions,
        "duplicates": counters.duplicates,
        "connections": presence.connections(),
        "viewers": presence.viewers.load(Ordering::Relaxed),
        "relays": relays,
    })
}

/// Sends a page the history, then every new event, with nothing between the two. A page
/// that cannot keep up (its queue full) is disconnected rather than shown a gap: it
/// reconnects and gets the history again.
fn follow(log: &Log, socket: &SocketRef) {
    /// One `history` message: up to [`HISTORY_CHUNK`] events, already serialized.
    #[derive(serde::Serialize)]
    struct History<'a> {
        epoch: &'a str,
        events: &'a [Numbered],
        last: bool,
    }
    let epoch = log.epoch().to_string();
    let history = |events: &[Numbered]| {
        let mut chunks = events.chunks(HISTORY_CHUNK).peekable();
        if chunks.peek().is_none() {
            let _ = socket.emit(
                "history",
                &History {
                    epoch: &epoch,
                    events: &[],
                    last: true,
                },
            );
        }
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            let _ = socket.emit(
                "history",
                &History {
                    epoch: &epoch,
                    events: chunk,
                    last,
                },
            );
        }
    };
    let page = socket.clone();
    log.follow(history, move |numbered| {
        if !page.connected() {
            return false;
        }
        if page.emit("event", numbered).is_err() {
            let page = page.clone();
            tokio::spawn(async move {
                let _ = page.disconnect();
            });
            return false;
        }
        true
    });
}

/// Sends the ack now, later or never.
fn answer(ack: AckSender, acks: Acks, log: &Log, pending: &Arc<AtomicUsize>) {
    let send = {
        let log = log.clone();
        let pending = Arc::clone(pending);
        move || {
            pending.fetch_sub(1, Ordering::AcqRel);
            if ack.send(&()).is_ok() {
                log.ack_sent();
            }
        }
    };
    match acks {
        Acks::Immediate | Acks::Refusing(_) => send(),
        Acks::After(delay) => {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                send();
            });
        }
        Acks::Never => {}
    }
}
