//! The edge daemon (`inspro run`): GStreamer ingest, an engine thread per camera, tracks, MQTT
//! publishing with a spool, sd_notify and Prometheus metrics. docs/edge.md describes it.

pub mod clips;
pub mod config;
pub mod control;
pub mod daemon;
pub mod discovery;
pub mod engine;
pub mod events;
pub mod http;
pub mod ingest;
pub mod jpeg;
pub mod live;
pub mod metrics;
pub mod mqtt;
pub mod overlay;
pub mod polygons;
pub mod queue;
pub mod snapshots;
pub mod spool;
pub mod state;
pub mod store;
pub mod tls;
pub mod topics;

pub use config::{ConfigError, EdgeConfig, EX_CONFIG};
pub use daemon::{run, DaemonError, Exit, RunOptions, EX_RESTART};
