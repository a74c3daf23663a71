//! Multi-level RoIAlign (detectron2 ROIAlignV2) as a candle CustomOp.
