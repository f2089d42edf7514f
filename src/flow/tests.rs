//! Every transition of the flow core, on in-memory values: what goes in,
//! what comes out. The races fixed in the drivers are here as sequences of
//! events.

use std::time::{Duration, Instant};

use super::*;

fn limit(bytes: usize) -> Limit<'static> {
    Limit {
        bytes,
        items: usize::MAX,
        budget: None,
    }
}

#[test]
fn opening_refuses_an_id_in_use_and_past_the_limit() {
    let mut t: Flows<&str> = Flows::new(2, 1, 1);
    assert_eq!(t.open(7, "a").unwrap(), 1);
    assert!(matches!(t.open(7, "b"), Err(Refused::InUse("b"))));
    let (id, serial) = t.open_next("c").unwrap();
    assert_eq!((id, serial), (1, 2), "the owner's ids start at its first");
    assert!(matches!(t.open(9, "d"), Err(Refused::Full("d"))));
    assert!(matches!(t.open_next("e"), Err(Refused::Full("e"))));
    assert!(
        matches!(t.reserve(), Err(Refused::Full(()))),
        "a reservation counts too"
    );
    assert_eq!(t.remove(7).map(Slot::into_value), Some("a"));
    assert_eq!(t.open(9, "d").unwrap(), 3);
    assert_eq!(t.len(), 2);
}

#[test]
fn an_id_used_again_is_another_flow() {
    // A worker starts JavaScript's call on flow 5 (serial s1); meanwhile
    // the call ends and JavaScript opens another call under the same id.
    // What the worker then does under (5, s1) reaches nothing.
    let mut t: Flows<Gate<&str, u32>> = Flows::new(8, 2, 2);
    let Ok(s1) = t.open(5, Gate::default()) else {
        panic!("opens")
    };
    assert!(t.remove(5).is_some());
    let Ok(s2) = t.open(5, Gate::default()) else {
        panic!("opens again")
    };
    assert_ne!(s1, s2);
    assert!(t.get_serial(5, s1).is_none(), "the old call is gone");
    let g = t.get_serial(5, s2).expect("the new call");
    assert!(matches!(g.item(1, 1, 1, &limit(10)), Ok(Route::Waits)));
    assert!(g.handle().is_none(), "the new call has not started");
    // The old call's end reaches only the old call.
    assert!(t.remove_serial(5, s1).is_none());
    assert!(t.remove_serial(5, s2).is_some());
}

#[test]
fn a_cancel_while_a_flow_is_set_up_is_kept_for_it() {
    // A deferred request's id is handed out, its cancel hook registered,
    // and the caller cancels before the flow is in place: the flow, once
    // filled, says it was cancelled, and nothing is left behind.
    let mut t: Flows<&str> = Flows::new(4, 2, 2);
    let id = t.reserve().unwrap();
    assert_eq!(id, 2);
    assert!(matches!(t.cancel(id), Cancelled::Reserved));
    assert!(matches!(
        t.fill(id, "reply"),
        Err(Unfilled::Cancelled("reply"))
    ));
    assert!(t.is_empty());
    // Not cancelled: it is filled, and a cancel then finds it open.
    let id = t.reserve().unwrap();
    assert_eq!(id, 4, "ids are not handed out twice");
    assert!(t.fill(id, "reply").is_ok());
    match t.cancel(id) {
        Cancelled::Open(s) => assert!(s.is_cancelled()),
        _ => panic!("the flow is open"),
    }
    assert!(matches!(t.cancel(99), Cancelled::Unknown));
    // The caller went while it was being set up: withdrawn, then filled.
    let id = t.reserve().unwrap();
    assert!(t.withdraw(id).is_none(), "nothing in place yet");
    assert!(matches!(t.fill(id, "x"), Err(Unfilled::Cancelled("x"))));
    // The owner closed while a flow was being set up: it finds it gone,
    // and nothing opens any more.
    let id = t.reserve().unwrap();
    assert_eq!(t.close().len(), 1);
    assert!(matches!(t.fill(id, "late"), Err(Unfilled::Gone("late"))));
    assert!(t.is_empty());
    assert!(matches!(t.reserve(), Err(Refused::Closed(()))));
    assert!(matches!(t.open(1, "after"), Err(Refused::Closed("after"))));
}

#[test]
fn a_flow_past_its_deadline_ends_once_and_later_events_find_nothing() {
    // A call times out; the reply that comes after finds no flow.
    let mut t: Flows<&str> = Flows::new(4, 1, 1);
    let now = Instant::now();
    let (id, serial) = t.open_next("call").unwrap();
    t.get_mut(id)
        .unwrap()
        .set_deadline(Some(now + Duration::from_secs(1)));
    assert!(t.expire(id, serial, now).is_none(), "not yet");
    assert!(
        t.expire(id, serial + 1, now + Duration::from_secs(2))
            .is_none()
    );
    assert_eq!(
        t.expire(id, serial, now + Duration::from_secs(1))
            .map(Slot::into_value),
        Some("call")
    );
    assert!(t.remove(id).is_none(), "the reply after the timeout");
    assert!(t.expire(id, serial, now + Duration::from_secs(9)).is_none());
    // A flow without a deadline never expires.
    let (id, serial) = t.open_next("no deadline").unwrap();
    assert!(
        t.expire(id, serial, now + Duration::from_secs(86_400))
            .is_none()
    );
}

#[test]
fn the_deadline_is_armed_once() {
    let mut t: Flows<()> = Flows::new(4, 1, 1);
    let (id, _) = t.open_next(()).unwrap();
    let s = t.get_mut(id).unwrap();
    assert_eq!(s.arm(), None, "no deadline: nothing to arm");
    let at = Instant::now() + Duration::from_secs(1);
    s.set_deadline(Some(at));
    assert_eq!(s.arm(), Some(at));
    assert_eq!(s.arm(), None, "a timer holds it already");
    assert_eq!(s.deadline(), Some(at));
}

#[test]
fn credit_paces_and_refuses_overrun() {
    let mut c = Credit::new(100);
    assert!(c.can_send(60));
    c.take_send(60);
    assert!(!c.can_send(60));
    c.grant_send(60);
    assert!(c.can_send(100));
    // An item over the window goes alone.
    assert!(c.can_send(500));
    assert!(c.receive(80));
    assert!(!c.receive(30), "over the window");
    assert_eq!(c.consume(80), Some(80));
    assert!(c.receive(500), "one big item when nothing is outstanding");
}

#[test]
fn consumed_items_grant_credit_in_batches() {
    let mut s = Stream::new(100);
    for _ in 0..4 {
        assert!(s.receive(10));
    }
    assert_eq!(s.consume(10), None, "less than a quarter, more outstanding");
    assert_eq!(s.consume(10), None);
    assert_eq!(s.consume(10), Some(30), "a quarter of the window");
    assert_eq!(s.consume(10), Some(10), "nothing left outstanding");
    assert_eq!(s.consume(0), None, "nothing to grant");
}

#[test]
fn several_senders_waiting_for_credit_are_all_woken() {
    // Two clones of a call's handle wait for credit at once: one credit
    // frame wakes both (neither replaces the other).
    let mut s = Stream::new(100);
    assert!(matches!(s.send(100), Ok(Sending::Now)));
    let Ok(Sending::Wait(a)) = s.send(10) else {
        panic!("no credit left")
    };
    let Ok(Sending::Wait(b)) = s.send(10) else {
        panic!("no credit left")
    };
    assert_eq!(s.waiters.len(), 2);
    let mut out = vec![];
    s.grant(20, &mut out, |_| unreachable!());
    assert!(out.is_empty(), "nothing was queued");
    assert_eq!((a.try_recv(), b.try_recv()), (Ok(()), Ok(())));
    assert!(matches!(s.send(10), Ok(Sending::Now)));
    assert!(matches!(s.send(10), Ok(Sending::Now)));
    // A cancel disconnects whoever waits.
    let Ok(Sending::Wait(c)) = s.send(10) else {
        panic!("no credit left")
    };
    s.cancel();
    assert_eq!(c.recv(), Err(crossbeam_channel::RecvError));
}

#[test]
fn offered_items_wait_in_order_and_leave_as_credit_comes() {
    let mut s = Stream::new(10);
    let l = limit(1000);
    assert_eq!(s.offer(b"a".to_vec(), 8, &l), Ok(Some(b"a".to_vec())));
    assert_eq!(s.offer(b"b".to_vec(), 8, &l), Ok(None), "no credit");
    assert_eq!(
        s.offer(b"c".to_vec(), 1, &l),
        Ok(None),
        "behind b, though it fits"
    );
    // A blocking sender waits behind the queue too.
    assert!(matches!(s.send(1), Ok(Sending::Wait(_))));
    assert!(!s.close(), "the close waits behind the items");
    assert!(!s.close(), "a second close adds nothing");
    assert_eq!(s.offer(b"d".to_vec(), 1, &l), Err(Refusal::Closed));
    assert!(matches!(s.send(1), Err(Refusal::Closed)));
    let mut out = vec![];
    s.grant(4, &mut out, |o| o.extend_from_slice(b"!"));
    assert!(out.is_empty(), "b needs 8");
    s.grant(8, &mut out, |o| o.extend_from_slice(b"!"));
    assert_eq!(out, b"bc!", "in order, the close last");
    assert!(s.is_send_closed());
}

#[test]
fn a_closed_stream_a_full_queue_and_a_spent_budget_are_told_apart() {
    let budget = Budget::new(25);
    let l = Limit {
        bytes: 20,
        items: usize::MAX,
        budget: Some(&budget),
    };
    let mut s = Stream::new(1);
    let mut t = Stream::new(1);
    s.send(1).ok();
    t.send(1).ok();
    assert_eq!(s.offer(vec![0; 15], 1, &l), Ok(None));
    // This flow's own limit: 15 wait, 10 more would pass 20.
    assert_eq!(
        s.offer(vec![0; 10], 1, &l),
        Err(Refusal::Full(Full::Queue {
            waiting: 15,
            items: 1,
            limit: 20
        }))
    );
    // Another flow has room of its own, but the budget over both is spent.
    assert_eq!(
        t.offer(vec![0; 11], 1, &l),
        Err(Refusal::Full(Full::Budget {
            used: 15,
            limit: 25
        }))
    );
    assert_eq!(t.offer(vec![0; 10], 1, &l), Ok(None));
    assert_eq!(budget.used(), 25);
    // Charges come back as items leave: written, or dropped with the flow.
    let mut out = vec![];
    s.grant(1, &mut out, |_| {});
    assert_eq!((out.len(), budget.used()), (15, 10));
    drop(t);
    assert_eq!(budget.used(), 0);
}

#[test]
fn a_gate_holds_items_until_the_start_then_lets_them_through_in_order() {
    let mut g: Gate<&str, u32> = Gate::default();
    let l = limit(100);
    assert!(matches!(g.item(1, 1, 1, &l), Ok(Route::Waits)));
    assert!(matches!(g.close(), Route::Waits));
    assert!(matches!(g.close(), Route::Waits), "repeated: nothing added");
    let Start::Send(h, batch) = g.start("h") else {
        panic!("items wait")
    };
    assert_eq!(h, "h", "the starter sends them through its handle");
    assert_eq!(batch.len(), 2);
    assert!(matches!(batch[0], Queued::Item { item: 1, .. }));
    assert!(matches!(batch[1], Queued::Close));
    // While the starter sends them, new items still wait (only it sends).
    assert!(matches!(g.item(2, 1, 1, &l), Ok(Route::Waits)));
    assert_eq!(g.handle(), Some(&"h"), "a cancel reaches the call");
    let Start::Send(_, batch) = g.start("h") else {
        panic!("one more waits")
    };
    assert_eq!(batch.len(), 1);
    assert!(matches!(g.start("h"), Start::Open));
    assert!(matches!(g.item(3, 1, 1, &l), Ok(Route::Through(&"h", 3))));
    assert!(matches!(g.close(), Route::Through(&"h", ())));
}

#[test]
fn a_gate_refuses_past_its_limits_and_gives_charges_back() {
    let budget = Budget::new(1000);
    let l = Limit {
        bytes: 10,
        items: 2,
        budget: Some(&budget),
    };
    let mut g: Gate<(), u32> = Gate::default();
    assert!(g.item(1, 4, 100, &l).is_ok());
    assert_eq!(
        g.item(2, 7, 100, &l).err(),
        Some(Full::Queue {
            waiting: 4,
            items: 1,
            limit: 10
        })
    );
    assert!(g.item(2, 4, 100, &l).is_ok());
    assert!(
        matches!(g.item(3, 1, 100, &l), Err(Full::Queue { items: 2, .. })),
        "at most two entries"
    );
    assert_eq!(budget.used(), 200);
    g.clear();
    assert_eq!(budget.used(), 0);
    assert!(g.item(4, 10, 1000, &l).is_ok(), "room again");
    assert!(matches!(
        g.item(5, 0, 1, &l),
        Err(Full::Budget {
            used: 1000,
            limit: 1000
        })
    ));
}
