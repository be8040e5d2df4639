//! What the API sees of the stream it watches: the current price of every
//! pair (the rate board) and the live feeds behind `/stream/rates` and
//! `/stream/alerts`.
//!
//! The watcher applies each batch at once: the board keeps the newest price
//! per pair, and the rate feed *conflates* — per batch, each pair's newest
//! price goes out once — so the cost per batch is bounded by the number of
//! pairs, whatever the pipeline's speed. Firings are never conflated.
//!
//! Feeds are broadcast channels of pre-serialized items: a client that falls
//! more than the channel's capacity behind is cut off (and counted) instead
//! of slowing anyone. The last items are kept in a ring, so a client that
//! reconnects with `Last-Event-ID` gets what it missed if it is still there.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::body::Bytes;
use tokio::sync::broadcast;

use super::model::{FiringView, RateView};
use crate::fx::{FxEvent, Pair};
use crate::store::PriceKind;

/// One item of a live feed, serialized once for every client.
#[derive(Debug)]
pub struct FeedItem {
    /// Sequence number within the feed (the SSE `id`).
    pub seq: u64,
    pub pair: Pair,
    /// Whose it is (a firing's tenant); None: everyone's.
    pub tenant: Option<Arc<str>>,
    pub json: String,
}

/// A live feed: broadcast plus a ring of recent items for resumption.
pub struct Feed {
    pub event: &'static str,
    sender: broadcast::Sender<Arc<FeedItem>>,
    ring: Mutex<VecDeque<Arc<FeedItem>>>,
    ring_capacity: usize,
    next_seq: AtomicU64,
    /// Which run of the process numbered the items (milliseconds since the Unix epoch at
    /// start): SSE ids are `{run}-{seq}`, so a client's `Last-Event-ID` from before a restart
    /// is not mistaken for a position in this run's numbering (it would skip everything up to it).
    pub run: u64,
}

impl Feed {
    pub fn new(event: &'static str, capacity: usize, ring_capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Feed {
            event,
            sender,
            ring: Mutex::new(VecDeque::with_capacity(ring_capacity)),
            ring_capacity,
            next_seq: AtomicU64::new(1),
            run: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    }

    /// The SSE id of the item numbered `seq`.
    pub fn event_id(run: u64, seq: u64) -> String {
        format!("{run}-{seq}")
    }

    /// The sequence number a client's `Last-Event-ID` names in this run (`None`: another run's,
    /// or not an id of ours: the client starts from now).
    pub fn seen(&self, last_event_id: &str) -> Option<u64> {
        let (run, seq) = last_event_id.trim().split_once('-')?;
        (run.parse::<u64>().ok()? == self.run).then(|| seq.parse().ok())?
    }

    pub fn publish(&self, pair: Pair, tenant: Option<Arc<str>>, json: String) {
        let item = Arc::new(FeedItem {
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
            pair,
            tenant,
            json,
        });
        {
            let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
            if ring.len() == self.ring_capacity {
                ring.pop_front();
            }
            if self.ring_capacity > 0 {
                ring.push_back(item.clone());
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.sender.send(item);
    }

    /// Subscribe, and the items after `last_seen` still in the ring (oldest first).
    pub fn subscribe(&self, last_seen: Option<u64>) -> (broadcast::Receiver<Arc<FeedItem>>, Vec<Arc<FeedItem>>) {
        // Subscribe first, then copy the ring: an item published in between is
        // in both, and the reader skips what it already sent by sequence number.
        let receiver = self.sender.subscribe();
        let missed = match last_seen {
            Some(seen) => {
                let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
                ring.iter().filter(|item| item.seq > seen).cloned().collect()
            }
            None => Vec::new(),
        };
        (receiver, missed)
    }

    pub fn clients(&self) -> usize {
        self.sender.receiver_count()
    }
}

struct Board {
    rates: BTreeMap<Pair, RateView>,
    /// Pairs whose price is still the one primed from the store: a placeholder the
    /// stream's first price replaces, however old (a replay of the past must not stay
    /// hidden behind a newer stored price, e.g. the ECB reference rates).
    primed: std::collections::HashSet<Pair>,
    version: u64,
}

/// The newest price of every pair seen, with its change.
pub struct RateBoard {
    board: RwLock<Board>,
    /// `GET /rates` without filters, serialized once per version.
    cached: Mutex<Option<(u64, Bytes)>>,
}

impl Default for RateBoard {
    fn default() -> Self {
        RateBoard {
            board: RwLock::new(Board {
                rates: BTreeMap::new(),
                primed: Default::default(),
                version: 0,
            }),
            cached: Mutex::new(None),
        }
    }
}

impl RateBoard {
    /// Apply a batch of watched events: returns each pair's newest new price
    /// (for the feed), in pair order. Prices older than the board's are ignored.
    pub fn apply<'a>(&self, events: impl IntoIterator<Item = &'a FxEvent>) -> Vec<RateView> {
        let mut updated: HashMap<Pair, RateView> = HashMap::new();
        let mut board = self.board.write().unwrap_or_else(|e| e.into_inner());
        for event in events {
            let Some(price) = event.price() else { continue };
            let mid = price.mid();
            let primed = board.primed.remove(&price.pair);
            let change = match board.rates.get(&price.pair) {
                _ if primed => None,
                Some(current) if price.ts < current.ts => continue,
                Some(current) => Some(mid - current.mid),
                None => None,
            };
            let view = RateView {
                pair: price.pair.to_string(),
                kind: PriceKind::of(event).into(),
                bid: price.bid,
                ask: price.ask,
                mid,
                change,
                ts: price.ts,
                source: price.source.to_string(),
                decimals: price.pair.display_decimals(),
            };
            board.rates.insert(price.pair, view.clone());
            updated.insert(price.pair, view);
        }
        if !updated.is_empty() {
            board.version += 1;
        }
        let mut updated: Vec<RateView> = updated.into_values().collect();
        updated.sort_by(|a, b| a.pair.cmp(&b.pair));
        updated
    }

    /// A price known from before this start (the store), if the stream has not given a newer one.
    pub fn prime(&self, rate: RateView) {
        let Ok(pair) = rate.pair.parse::<Pair>() else { return };
        let mut board = self.board.write().unwrap_or_else(|e| e.into_inner());
        if let std::collections::btree_map::Entry::Vacant(slot) = board.rates.entry(pair) {
            slot.insert(rate);
            board.primed.insert(pair);
            board.version += 1;
        }
    }

    pub fn get(&self, pair: Pair) -> Option<RateView> {
        self.board
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .rates
            .get(&pair)
            .cloned()
    }

    pub fn all(&self) -> Vec<RateView> {
        self.board
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .rates
            .values()
            .cloned()
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.board.read().unwrap_or_else(|e| e.into_inner()).rates.is_empty()
    }

    /// The body of `GET /rates` (no filter), rebuilt only when a price changed.
    pub fn all_json(&self) -> Bytes {
        let board = self.board.read().unwrap_or_else(|e| e.into_inner());
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((version, body)) = cached.as_ref() {
            if *version == board.version {
                return body.clone();
            }
        }
        let body = Bytes::from(
            serde_json::to_vec(&super::model::RatesResponse {
                rates: board.rates.values().cloned().collect(),
                at: None,
            })
            .unwrap_or_default(),
        );
        *cached = Some((board.version, body.clone()));
        body
    }
}

/// The rate board and both feeds of one API stage.
pub struct View {
    pub board: RateBoard,
    pub rates: Feed,
    pub alerts: Feed,
}

impl View {
    pub fn new(feed_capacity: usize, ring_capacity: usize) -> Self {
        View {
            board: RateBoard::default(),
            rates: Feed::new("rate", feed_capacity, ring_capacity),
            alerts: Feed::new("alert", feed_capacity, ring_capacity),
        }
    }

    /// Apply one batch of watched events.
    pub fn apply(&self, events: &[&FxEvent]) {
        let updated = self.board.apply(events.iter().copied());
        for rate in updated {
            if let (Ok(pair), Ok(json)) = (rate.pair.parse::<Pair>(), serde_json::to_string(&rate)) {
                self.rates.publish(pair, None, json);
            }
        }
        for event in events {
            if let FxEvent::AlertFired(fired) = event {
                if let Ok(json) = serde_json::to_string(&FiringView::from(fired)) {
                    self.alerts.publish(fired.pair, fired.tenant.clone(), json);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fx::{CrossRate, Currency, SourceName};
    use chrono::{TimeZone, Utc};
    use rust_decimal::Decimal;

    fn cross(pair: &str, mid: &str, day: u32) -> FxEvent {
        let pair: Pair = pair.parse().unwrap();
        let mid: Decimal = mid.parse().unwrap();
        FxEvent::CrossRate(CrossRate {
            pair,
            bid: mid,
            ask: mid,
            ts: Utc.with_ymd_and_hms(2024, 1, day, 0, 0, 0).unwrap(),
            source: SourceName::intern("ecb").unwrap(),
            via: Currency::EUR,
        })
    }

    #[test]
    fn the_board_keeps_the_newest_price_and_its_change() {
        let board = RateBoard::default();
        let updated = board.apply([&cross("EUR/USD", "1.10", 2), &cross("EUR/USD", "1.12", 3)]);
        assert_eq!(updated.len(), 1, "one update per pair per batch (conflated)");
        assert_eq!(updated[0].mid.to_string(), "1.12");
        assert_eq!(updated[0].change.unwrap().to_string(), "0.02");
        assert_eq!(updated[0].kind, super::super::model::PriceKindView::Quote);
        // An older price changes nothing.
        assert!(board.apply([&cross("EUR/USD", "1.00", 1)]).is_empty());
        let gbp_jpy = board.apply([&cross("GBP/JPY", "180.5", 3)]);
        assert_eq!(gbp_jpy[0].kind, super::super::model::PriceKindView::Cross);
        assert_eq!(gbp_jpy[0].change, None);
        assert_eq!(board.all().len(), 2);
    }

    #[test]
    fn a_price_primed_from_the_store_gives_way_to_the_streams_first_even_an_older_one() {
        let board = RateBoard::default();
        let stored = board.apply([&cross("EUR/USD", "1.17", 20)]).remove(0);
        let board = RateBoard::default();
        board.prime(stored);
        // A replay of the past: its first price replaces the placeholder, with no change.
        let first = board.apply([&cross("EUR/USD", "1.10", 2)]);
        assert_eq!((first[0].mid.to_string(), first[0].change), ("1.10".into(), None));
        // From then on the newest price wins as usual.
        assert!(board.apply([&cross("EUR/USD", "1.00", 1)]).is_empty());
        assert_eq!(
            board.apply([&cross("EUR/USD", "1.12", 3)])[0]
                .change
                .unwrap()
                .to_string(),
            "0.02"
        );
    }

    #[test]
    fn the_cached_body_follows_every_change() {
        let board = RateBoard::default();
        board.apply([&cross("EUR/USD", "1.10", 2)]);
        let first = board.all_json();
        assert_eq!(first, board.all_json(), "unchanged board, same body");
        board.apply([&cross("EUR/USD", "1.11", 3)]);
        let second = board.all_json();
        assert_ne!(first, second);
        assert!(String::from_utf8_lossy(&second).contains("\"mid\":\"1.11\""));
    }

    #[test]
    fn a_feed_replays_what_a_reconnecting_client_missed() {
        let feed = Feed::new("rate", 16, 4);
        let pair: Pair = "EUR/USD".parse().unwrap();
        for i in 0..6 {
            feed.publish(pair, None, format!("{{\"n\":{i}}}"));
        }
        let (_rx, missed) = feed.subscribe(Some(3));
        let seqs: Vec<u64> = missed.iter().map(|i| i.seq).collect();
        assert_eq!(
            seqs,
            vec![4, 5, 6],
            "the ring holds the last 4: 3..=6, of which after 3"
        );
        let (_rx, missed) = feed.subscribe(None);
        assert!(missed.is_empty());
    }
}
