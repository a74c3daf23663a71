//! Engines that run one frame of the network: candle (the pure-Rust reference) and ONNX Runtime
//! (CPU / CUDA / TensorRT execution providers).
