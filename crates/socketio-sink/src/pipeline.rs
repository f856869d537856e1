//! One connection's write pipeline: batches are written in the order they were called, and
//! in [`Delivery::Acknowledged`] one ack at a time confirms every batch written before it.
//!
//! Socket.IO is ordered on one websocket and servers handle a connection's events in order,
//! so the ack of an emit confirms that emit and everything written before it. A batch's last
//! emit asks for an ack when none is outstanding and either no later batch is called yet (the
//! end of a burst) or half the batches the connection may have on their way are unconfirmed
//! (so the other half is written while the ack travels). Otherwise it goes plainly when a
//! later batch is called (an ack that batch or a later one asks covers it), or, with no
//! batch after it, is held back (the batch's other emits are written): the next batch
//! writes it plainly before its own, or the holder sends it with an ack once the outstanding
//! one is in. So never more than one ack is outstanding, batches keep flowing while an ack
//! travels, and every written batch is covered by an ack that is outstanding or will be
//! asked for.
//!
//! All of a connection's batch futures are polled by the batch worker; they wait on each
//! other through this state, under a `std` mutex never held across an `.await`.

use std::collections::BTreeMap;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::time::{Instant, Sleep};

use crate::client::{Argument, Broken, Link, LinkConfig};
use crate::emit::{Delivery, Name};
use crate::error::{AckTimedOut, BoxError, EmitTimedOut, LostHow};

/// One event on the wire: its name and single argument.
pub(crate) type Event = (Name, Argument);

/// The pipeline of one connection.
#[derive(Debug)]
pub(crate) struct Pipeline {
    state: Mutex<State>,
    /// Events written and not yet acknowledged, over every connection of the sink.
    unconfirmed: Arc<AtomicU64>,
}

#[derive(Debug, Default)]
struct State {
    /// The ticket the next batch gets; tickets follow call order.
    next_ticket: u64,
    /// The ticket whose turn it is to write; `== next_ticket` when nobody writes.
    serving: u64,
    /// The outstanding ack, if any.
    ack: Option<Outstanding>,
    /// Every batch with a smaller ticket is confirmed.
    confirmed: u64,
    /// The last emit of batch `ticket`, held back while an ack was outstanding.
    held: Option<Held>,
    /// Batch futures waiting for their turn or their confirmation, by ticket.
    wakers: BTreeMap<u64, Waker>,
}

#[derive(Debug, Clone, Copy)]
struct Outstanding {
    /// The ticket of the batch whose last emit asked for it.
    covers: u64,
    deadline: Instant,
}

#[derive(Debug)]
struct Held {
    ticket: u64,
    event: Event,
}

/// What a batch waiting for its confirmation does next.
enum Wait {
    Confirmed,
    Failed(BoxError),
    /// Its held emit goes out with an ack, in the write turn `turn`.
    SendHeld(Event, u64),
}

impl State {
    fn wake_all(&mut self) {
        for (_, waker) in std::mem::take(&mut self.wakers) {
            waker.wake();
        }
    }

    /// Wakes the batch that may write next and the holder of a held emit, who sends it once
    /// nobody writes: what a change of turn concerns.
    fn wake_writers(&mut self) {
        for ticket in [
            Some(self.serving),
            self.held.as_ref().map(|held| held.ticket),
        ] {
            if let Some(waker) = ticket.and_then(|ticket| self.wakers.remove(&ticket)) {
                waker.wake();
            }
        }
    }

    /// Wakes the batches an ack confirmed, and the writers (the ack slot is free again).
    fn wake_confirmed(&mut self) {
        let waiting = self.wakers.split_off(&self.confirmed);
        for (_, waker) in std::mem::replace(&mut self.wakers, waiting) {
            waker.wake();
        }
        self.wake_writers();
    }

    fn register(&mut self, ticket: u64, waker: &Waker) {
        match self.wakers.get_mut(&ticket) {
            Some(slot) => slot.clone_from(waker),
            None => {
                self.wakers.insert(ticket, waker.clone());
            }
        }
    }
}

impl Pipeline {
    /// A pipeline for `link`: its waiters are woken when the link breaks.
    pub(crate) fn new(link: &Link, unconfirmed: Arc<AtomicU64>) -> Arc<Self> {
        let pipeline = Arc::new(Self {
            state: Mutex::default(),
            unconfirmed,
        });
        let waiters = Arc::downgrade(&pipeline);
        link.on_broken(move || {
            if let Some(pipeline) = waiters.upgrade() {
                pipeline.lock().wake_all();
            }
        });
        pipeline
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next batch's place in the write order; taken in `call`, so call order holds.
    pub(crate) fn ticket(&self) -> u64 {
        let mut state = self.lock();
        state.next_ticket += 1;
        state.next_ticket - 1
    }

    /// Writes `events` in turn `ticket` and, in `Acknowledged`, waits for their ack.
    pub(crate) fn deliver(
        self: Arc<Self>,
        link: Link,
        config: Arc<LinkConfig>,
        ticket: u64,
        items: u64,
        events: Vec<Event>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send + 'static {
        // Armed from the call on: a future dropped even before its first poll breaks the
        // link, so the turns after its ticket are not left waiting for it.
        let guard = Abandoned {
            pipeline: Arc::clone(&self),
            link: link.clone(),
            counted: 0,
            armed: true,
        };
        self.run(guard, link, config, ticket, items, events)
    }

    async fn run(
        self: Arc<Self>,
        mut guard: Abandoned,
        link: Link,
        config: Arc<LinkConfig>,
        ticket: u64,
        items: u64,
        mut events: Vec<Event>,
    ) -> Result<(), BoxError> {
        let held = poll_fn(|cx| self.poll_turn(ticket, &link, cx)).await?;
        let acknowledged = config.delivery == Delivery::Acknowledged;
        let last = if acknowledged { events.pop() } else { None };
        let needs_ack = last.is_some();
        let writes = async {
            if let Some(held) = held {
                link.emit(held.0, held.1).await?;
            }
            for (event, argument) in events {
                link.emit(event, argument).await?;
            }
            match last {
                Some(last) => self.ask_or_hold(&link, &config, ticket, last).await,
                None => Ok(()),
            }
        };
        let written = tokio::time::timeout(config.emit_timeout, writes).await;
        self.release(ticket);
        match written {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(error),
            Err(_) => return Err(timed_out(&link, config.emit_timeout)),
        }
        if !needs_ack || !self.awaits_confirmation(ticket) {
            guard.armed = false;
            return Ok(());
        }
        self.unconfirmed.fetch_add(items, Ordering::Relaxed);
        guard.counted = items;
        let mut timer = None;
        let outcome = loop {
            match poll_fn(|cx| self.poll_confirmed(ticket, &link, &config, &mut timer, cx)).await {
                Wait::Confirmed => break Ok(()),
                Wait::Failed(error) => break Err(error),
                Wait::SendHeld((event, argument), turn) => {
                    let send = self.send_with_ack(&link, &config, ticket, event, argument);
                    let sent = tokio::time::timeout(config.emit_timeout, send).await;
                    self.release(turn);
                    match sent {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => break Err(error),
                        Err(_) => break Err(timed_out(&link, config.emit_timeout)),
                    }
                }
            }
        };
        guard.armed = false;
        outcome
    }

    /// Ready with the emit an earlier batch held back, once it is `ticket`'s turn to write.
    fn poll_turn(
        &self,
        ticket: u64,
        link: &Link,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Event>, BoxError>> {
        let mut state = self.lock();
        if link.is_broken() {
            return Poll::Ready(Err(link.broken_error()));
        }
        if state.serving == ticket {
            return Poll::Ready(Ok(state.held.take().map(|held| held.event)));
        }
        state.register(ticket, cx.waker());
        Poll::Pending
    }

    /// Ends write turn `turn`: the next may write.
    fn release(&self, turn: u64) {
        let mut state = self.lock();
        if state.serving == turn {
            state.serving += 1;
        }
        state.wake_writers();
    }

    /// Sends `ticket`'s last emit with an ack if none is outstanding and either no batch
    /// follows or `ack_every` batches are unconfirmed; else plainly if a batch follows (a
    /// later ack covers it); else holds it back.
    async fn ask_or_hold(
        self: &Arc<Self>,
        link: &Link,
        config: &LinkConfig,
        ticket: u64,
        (event, argument): Event,
    ) -> Result<(), BoxError> {
        let ask = {
            let mut state = self.lock();
            // A later batch is already called on this connection (only `call` takes tickets
            // while we hold the turn): it writes after us and can carry the ack.
            let follows = state.next_ticket > ticket + 1;
            let unconfirmed = (ticket + 1).saturating_sub(state.confirmed);
            if state.ack.is_none() && (!follows || unconfirmed >= config.ack_every) {
                state.ack = Some(Outstanding {
                    covers: ticket,
                    deadline: Instant::now() + config.ack_timeout,
                });
                Some(())
            } else if follows {
                None
            } else {
                state.held = Some(Held {
                    ticket,
                    event: (event, argument),
                });
                return Ok(());
            }
        };
        match ask {
            None => link.emit(event, argument).await,
            Some(()) => {
                self.send_with_ack(link, config, ticket, event, argument)
                    .await
            }
        }
    }

    /// Sends batch `covers`'s last emit with the ack recorded as outstanding.
    async fn send_with_ack(
        self: &Arc<Self>,
        link: &Link,
        config: &LinkConfig,
        covers: u64,
        event: Name,
        argument: Argument,
    ) -> Result<(), BoxError> {
        let pipeline = Arc::downgrade(self);
        link.emit_with_ack(event, argument, config.ack_timeout, move || {
            if let Some(pipeline) = pipeline.upgrade() {
                pipeline.acked(covers);
            }
        })
        .await
    }

    /// The ack asked for by batch `covers` arrived: it and every batch before it are in.
    fn acked(&self, covers: u64) {
        let mut state = self.lock();
        if matches!(state.ack, Some(ack) if ack.covers == covers) {
            state.ack = None;
        }
        state.confirmed = state.confirmed.max(covers + 1);
        state.wake_confirmed();
    }

    /// Whether batch `ticket` wrote an emit that an ack covers or will cover.
    fn awaits_confirmation(&self, ticket: u64) -> bool {
        let state = self.lock();
        state.confirmed <= ticket
    }

    fn poll_confirmed(
        &self,
        ticket: u64,
        link: &Link,
        config: &LinkConfig,
        timer: &mut Option<Pin<Box<Sleep>>>,
        cx: &mut Context<'_>,
    ) -> Poll<Wait> {
        let mut state = self.lock();
        if state.confirmed > ticket {
            return Poll::Ready(Wait::Confirmed);
        }
        if link.is_broken() {
            return Poll::Ready(Wait::Failed(link.broken_error()));
        }
        let ours = matches!(&state.held, Some(held) if held.ticket == ticket);
        if ours && state.ack.is_none() && state.serving == state.next_ticket {
            // Nobody follows to write it: send it with an ack in a turn of our own.
            let held = state.held.take().map(|held| held.event);
            let turn = state.next_ticket;
            state.next_ticket += 1;
            state.ack = Some(Outstanding {
                covers: ticket,
                deadline: Instant::now() + config.ack_timeout,
            });
            if let Some(event) = held {
                return Poll::Ready(Wait::SendHeld(event, turn));
            }
        }
        if let Some(ack) = state.ack.filter(|ack| ack.covers == ticket) {
            // Ours to time out.
            let timer =
                timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(ack.deadline)));
            if timer.deadline() != ack.deadline {
                timer.as_mut().reset(ack.deadline);
            }
            if timer.as_mut().poll(cx).is_ready() {
                drop(state); // failing the link wakes every waiter, under the lock
                link.fail(Broken::AckTimedOut(config.ack_timeout));
                return Poll::Ready(Wait::Failed(Box::new(AckTimedOut {
                    after: config.ack_timeout,
                })));
            }
        }
        state.register(ticket, cx.waker());
        Poll::Pending
    }
}

fn timed_out(link: &Link, after: std::time::Duration) -> BoxError {
    link.fail(Broken::EmitTimedOut(after));
    Box::new(EmitTimedOut { after })
}

/// Keeps the counts right however a batch ends, and breaks the link if its future is
/// dropped before it finished: the write order and the ack chain would be lost.
struct Abandoned {
    pipeline: Arc<Pipeline>,
    link: Link,
    counted: u64,
    armed: bool,
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        self.pipeline
            .unconfirmed
            .fetch_sub(self.counted, Ordering::Relaxed);
        if self.armed {
            self.link.fail(Broken::Lost(Arc::new(LostHow::Abandoned)));
        }
    }
}
