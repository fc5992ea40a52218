//! The updates server: tells WebSocket subscribers when a mutable slot on a Tahoe storage node
//! changes, and, to those who ask, proves it.
//!
//! `tahoe-updates-server` (this crate's binary, `src/main.rs`) runs beside one Tahoe-LAFS storage
//! node. It reads the node's TLS certificate and swissnum, watches its share directory, and
//! serves `/v1/mutable_updates` (specified in the repository's `docs/mutable-updates-v1.md`)
//! over pinned TLS: a client
//! subscribes to storage indexes and is told each slot's seqnum now (`status`) and every time it
//! rises (`update`), with the slot's signed proof if it asked for `options.proofs`.
//!
//! # Data flow
//!
//! ```text
//! storage/shares/<p>/<SI>/<n> --inotify--> watcher (own thread) --SlotChange--> endpoint.forward_changes
//!        |   reads header + proof                |                                   |
//!        |   (share)                             v  SlotDirectory lookups            v  hub.publish
//!        |                                 SharedIndex (RwLock map)             per-connection queues
//!        |                                       ^                                   |
//!        |                                       |  status replies                   v
//!  client --TCP--> endpoint.serve --budget--> TLS+upgrade (one deadline) --> connection::run_session
//! ```
//!
//! # Modules
//!
//! - [`share`]: parses a share file's header (seqnum, SDMF/MDMF, immutable) and cuts out its
//!   proof ([`share::read_share`]); pure parsing, total on any bytes.
//! - [`watcher`]: the share-directory watcher ([`watcher::ShareWatcher`]): start-up scan, one
//!   inotify watch per folder, re-read on `CLOSE_WRITE`, polling past the watch limit, retries
//!   with backoff after EMFILE/EIO, proofs checked under their own key before they are served;
//!   reports its own death so that the binary exits non-zero.
//! - [`slots`]: what the endpoint needs from any slot source ([`slots::SlotDirectory`],
//!   [`slots::SlotChange`]); embed the endpoint with a source of your own through these.
//! - [`endpoint`]: accepts connections within the [`limits::ConnectionBudget`], runs TLS and the
//!   authenticated upgrade under one deadline, refuses the excess with close 1013 and a reason.
//! - `connection` (private): one session: subscribe/unsubscribe, status with seqnums and proofs,
//!   batching, pings, the rate meter, the fragment and idle limits, the global reply budget.
//! - [`frames`]: a pass-through stream that follows the client's WebSocket frame headers, so that
//!   an unfinished fragmented message can be timed.
//! - [`hub`]: SI → subscribers index; a change is rendered once per form (with and without a
//!   proof) and queued to each subscriber without waiting; a full queue closes that connection.
//! - [`limits`]: every limit with its default, the message-rate meter, the connection budget
//!   (global, per address, sized under `RLIMIT_NOFILE`) and the reply-bytes budget.
//! - [`metrics`]: counters and the loopback Prometheus page.
//! - [`cluster`]: the watcher and edge roles of a deployment joined by a NATS broker
//!   (`--role watcher|edge`, the repository's `docs/scaling.md`):
//!   - [`cluster::subjects`]: subjects and JSON (per-SI changes, seqnum queries, heartbeats);
//!   - [`cluster::watcher_role`]: publishes the share watcher's [`slots::SlotChange`]s and
//!     answers queries from the [`slots::SlotDirectory`] of the node's headers;
//!   - [`cluster::edge`]: [`cluster::edge::EdgeSource`], a [`slots::SlotDirectory`] fed by the
//!     broker, told by the hub's [`hub::InterestListener`] when an SI gains its first or loses
//!     its last subscriber, announcing only rises above the highest seqnum seen, and asking
//!     the watchers again after every (re)connect instead of trusting the broker;
//!   - [`cluster::BrokerLink`]: the reconnecting broker connection and its metrics (degraded).
//!
//!   ```text
//!   watcher (per node) --tahoe.mutable.<SI>--> nats-server --only held SIs--> edge --> hub --> sessions
//!        ^                                         |                          |
//!        +------- tahoe.mutable-query (request, every watcher replies) <------+ on (re)connect
//!   ```
//! - [`node`]: finds the certificate, key, swissnum and storage directory of a node directory.

pub mod cluster;
pub(crate) mod connection;
pub mod endpoint;
pub mod frames;
pub mod hub;
pub mod limits;
pub mod metrics;
pub mod node;
pub mod share;
pub mod slots;
pub mod watcher;
