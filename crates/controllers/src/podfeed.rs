//! One Pod watch for every controller of the process, as kube-controller-
//! manager's controllers share one Pod informer.
//!
//! Each pod arrives once, is reduced once to a [`PodView`], and the same
//! `Arc` goes to every controller's cache (the EndpointSlice controller's
//! [`crate::podcache`], the workload controllers' pods). Two watches held
//! two reductions of each of the cluster's pods and decoded every pod event
//! twice.

use std::sync::{Arc, Mutex, MutexGuard};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::controller::drive;
use crate::podview::PodView;

/// What a controller does with each pod event (applies it to its cache and
/// enqueues work; it must not block).
type Handler = Box<dyn Fn(&Event<Arc<PodView>>) + Send + Sync>;

/// See the module docs.
pub(crate) struct PodFeed {
    handlers: Mutex<Vec<Handler>>,
    /// How many handlers have subscribed.
    subscribed: watch::Sender<usize>,
}

impl Default for PodFeed {
    fn default() -> Self {
        PodFeed {
            handlers: Mutex::default(),
            subscribed: watch::channel(0).0,
        }
    }
}

impl PodFeed {
    fn handlers(&self) -> MutexGuard<'_, Vec<Handler>> {
        // A handler that panicked leaves the list itself whole.
        self.handlers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a handler; every event from then on reaches it.
    pub(crate) fn subscribe(&self, handler: impl Fn(&Event<Arc<PodView>>) + Send + Sync + 'static) {
        let mut handlers = self.handlers();
        handlers.push(Box::new(handler));
        self.subscribed.send_replace(handlers.len());
    }

    /// Hands one event to every handler.
    pub(crate) fn dispatch(&self, ev: Event<Pod>) {
        let ev = match ev {
            Event::Apply(pod) => Event::Apply(Arc::new(PodView::from(&pod))),
            Event::Delete(pod) => Event::Delete(Arc::new(PodView::from(&pod))),
            Event::Init => Event::Init,
            Event::InitApply(pod) => Event::InitApply(Arc::new(PodView::from(&pod))),
            Event::InitDone => Event::InitDone,
        };
        for handler in self.handlers().iter() {
            handler(&ev);
        }
    }

    /// Waits for `handlers` subscriptions (so that none misses the first
    /// list), then watches every Pod; runs until the process ends (watch
    /// errors are retried with backoff).
    pub(crate) async fn run(&self, client: Client, handlers: usize) {
        let mut subscribed = self.subscribed.subscribe();
        // The sender lives in `self`, so the wait can only end by the count.
        let _ = subscribed.wait_for(|n| *n >= handlers).await;
        let stream = watcher(Api::<Pod>::all(client), watcher::Config::default());
        drive(stream, |ev| self.dispatch(ev)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn pod(name: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.namespace = Some("default".into());
        p.metadata.name = Some(name.into());
        p
    }

    #[test]
    fn every_handler_gets_the_same_view_of_each_event() {
        let feed = PodFeed::default();
        let seen: Arc<Mutex<Vec<Arc<PodView>>>> = Arc::default();
        let starts = Arc::new(AtomicUsize::new(0));
        for _ in 0..2 {
            let (seen, starts) = (seen.clone(), starts.clone());
            feed.subscribe(move |ev| match ev {
                Event::Apply(p) | Event::InitApply(p) | Event::Delete(p) => {
                    seen.lock().expect("not poisoned").push(p.clone());
                }
                Event::Init => {
                    starts.fetch_add(1, Ordering::Relaxed);
                }
                Event::InitDone => {}
            });
        }
        assert_eq!(*feed.subscribed.borrow(), 2);
        feed.dispatch(Event::Init);
        feed.dispatch(Event::InitApply(pod("a")));
        feed.dispatch(Event::Apply(pod("b")));
        assert_eq!(starts.load(Ordering::Relaxed), 2);
        let seen = seen.lock().expect("not poisoned");
        let names: Vec<&str> = seen.iter().map(|p| &*p.name).collect();
        assert_eq!(names, ["a", "a", "b", "b"]);
        // One reduction per event, shared: the caches hold one copy.
        assert!(Arc::ptr_eq(&seen[0], &seen[1]));
        assert!(Arc::ptr_eq(&seen[2], &seen[3]));
    }
}
