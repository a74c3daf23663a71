//! The InsPro network (paper §3) in candle: ResNet + FPN, Sparse R-CNN dynamic instance
//! interaction stages, the CondInst mask path and the intra-query attention over the feature bank.

pub mod roi_align;
