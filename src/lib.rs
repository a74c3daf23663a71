//! InsPro Edge: online video instance segmentation (InsPro, NeurIPS 2022) for edge boxes.
//!
//! `model` holds the network in candle, `tracking` the per-stream state that carries each
//! (instance query, proposal box) pair from frame to frame, `ytvis` the YouTube-VIS formats,
//! COCO RLE, the official video AP and the synthetic benchmark.

pub mod model;
pub mod tracking;
pub mod ytvis;
