//! InsPro Edge: online video instance segmentation (InsPro, NeurIPS 2022) for edge boxes.
//!
//! `model` holds the network in candle, `tracking` the per-stream state that carries each
//! (instance query, proposal box) pair from frame to frame, `ytvis` the YouTube-VIS formats,
//! COCO RLE, the official video AP and the synthetic benchmark, `train` the trainer, `export` the
//! ONNX writer, `runtime` the engines, and `edge` (feature `edge`) the daemon.

pub mod export;
pub mod frame;
pub mod model;
pub mod names;
pub mod render;
pub mod rng;
pub mod runtime;
pub mod tracking;
pub mod train;
pub mod video;
pub mod ytvis;

#[cfg(feature = "edge")]
pub mod edge;
