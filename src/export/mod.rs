//! The network written out as ONNX graphs, module by module, from the same weights.
