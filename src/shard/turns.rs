//! First come, first served turns on one shard: a ticket is taken synchronously when work
//! arrives, and turns are given in ticket order, whatever order the waiters are polled in.
//!
//! The produce path takes a partition's ticket before its first `.await`, so the batches of one
//! connection reach the partition's idempotence check and offset assignment in the order the
//! client sent them. glommio's `Semaphore` does not promise that: a newcomer may take a freed
//! permit before the waiter it was freed for wakes up, and an idempotent producer's pipelined
//! batches would then be judged out of order (`OutOfOrderSequence`).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use futures::channel::oneshot;

#[derive(Debug, Default)]
struct TurnsState {
    next_ticket: u64,
    serving: u64,
    /// Tickets dropped before their turn: skipped when the turn reaches them.
    abandoned: BTreeSet<u64>,
    /// Waiters not served yet, by ticket.
    waiting: BTreeMap<u64, oneshot::Sender<()>>,
}

impl TurnsState {
    /// Ends the current turn and wakes the next live ticket.
    fn advance(&mut self) {
        self.serving += 1;
        while self.abandoned.remove(&self.serving) {
            self.serving += 1;
        }
        if let Some(waiter) = self.waiting.remove(&self.serving) {
            let _ = waiter.send(());
        }
    }
}

/// A FIFO of turns. Lives on one shard; never borrowed across an `.await`.
#[derive(Debug, Default)]
pub struct Turns {
    state: RefCell<TurnsState>,
}

impl Turns {
    /// A place in line, taken now.
    pub fn ticket(&self) -> Ticket<'_> {
        let mut state = self.state.borrow_mut();
        let number = state.next_ticket;
        state.next_ticket += 1;
        Ticket { turns: self, number, served: false }
    }
}

/// A place in line. Dropped before its turn, it gives its place up.
#[derive(Debug)]
pub struct Ticket<'a> {
    turns: &'a Turns,
    number: u64,
    served: bool,
}

impl<'a> Ticket<'a> {
    /// Waits for this ticket's turn; the turn lasts until the [`Turn`] is dropped.
    pub async fn turn(mut self) -> Turn<'a> {
        loop {
            let woken = {
                let mut state = self.turns.state.borrow_mut();
                if state.serving == self.number {
                    self.served = true;
                    return Turn { turns: self.turns };
                }
                let (sender, receiver) = oneshot::channel();
                state.waiting.insert(self.number, sender);
                receiver
            };
            // A dropped sender cannot happen while `self` lives; the loop re-checks either way.
            let _ = woken.await;
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.served {
            return;
        }
        let mut state = self.turns.state.borrow_mut();
        state.waiting.remove(&self.number);
        if state.serving == self.number {
            state.advance();
        } else {
            state.abandoned.insert(self.number);
        }
    }
}

/// The current turn; the next ticket's turn starts when this is dropped.
#[derive(Debug)]
pub struct Turn<'a> {
    turns: &'a Turns,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.turns.state.borrow_mut().advance();
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use futures::executor::LocalPool;
    use futures::task::LocalSpawnExt;

    use super::*;

    /// Tickets taken 0, 1, 2 but spawned (so first polled) in the order 2, 0, 1: the turns still
    /// go 0, 1, 2, each one ending before the next starts.
    #[test]
    fn turns_follow_ticket_order_not_poll_order() {
        let turns = Rc::new(Turns::default());
        let order = Rc::new(RefCell::new(Vec::new()));
        let mut pool = LocalPool::new();
        let (gate_sender, gate) = oneshot::channel::<()>();
        let mut gate = Some(gate);
        for number in [2u64, 0, 1] {
            let (turns, order) = (turns.clone(), order.clone());
            let gate = if number == 0 { gate.take() } else { None };
            pool.spawner()
                .spawn_local(async move {
                    // Tickets are numbered by taking them in 0, 1, 2 order below.
                    let ticket = Ticket { turns: &turns, number, served: false };
                    let turn = ticket.turn().await;
                    order.borrow_mut().push(("start", number));
                    if let Some(gate) = gate {
                        let _ = gate.await; // holds turn 0 until the test opens the gate
                    }
                    order.borrow_mut().push(("end", number));
                    drop(turn);
                })
                .unwrap();
        }
        turns.state.borrow_mut().next_ticket = 3;
        pool.run_until_stalled();
        assert_eq!(*order.borrow(), [("start", 0)], "1 and 2 wait while 0 holds its turn");
        gate_sender.send(()).unwrap();
        pool.run_until_stalled();
        let expected = [("start", 0), ("end", 0), ("start", 1), ("end", 1), ("start", 2), ("end", 2)];
        assert_eq!(*order.borrow(), expected);
    }

    /// A ticket dropped before its turn (its request was cancelled) is skipped, whether it is
    /// dropped while waiting or when the turn has already reached it.
    #[test]
    fn abandoned_tickets_are_skipped() {
        let turns = Turns::default();
        let first = turns.ticket();
        let second = turns.ticket();
        let third = turns.ticket();
        drop(second);
        let mut pool = LocalPool::new();
        let turn = pool.run_until(first.turn());
        drop(turn);
        let turn = pool.run_until(third.turn());
        drop(turn);
        let fourth = turns.ticket();
        drop(fourth); // its turn had come: the next one is served at once
        let fifth = turns.ticket();
        let _turn = pool.run_until(fifth.turn());
        assert_eq!(turns.state.borrow().serving, 4);
    }
}
