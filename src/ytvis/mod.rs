//! YouTube-VIS as `youtubevos/cocoapi` defines it: the json formats, COCO RLE, the official video
//! AP/AR (`ytvoseval`) and a synthetic benchmark in the same layout.

pub mod clip;
pub mod error;
pub mod eval;
pub mod json;
pub mod rle;
pub mod score_calibration;
pub mod synth;
pub mod track_quality;

pub use error::YtvisError;
pub use eval::{evaluate, evaluate_files, evaluate_named, CategoryAp, EvalSummary};
pub use json::{
    load_ground_truth, load_results, results_from_ground_truth, Category, GroundTruth,
    GtAnnotation, RleCounts, RleJson, Segmentation, Video, VideoResult,
};
pub use rle::Rle;
pub use synth::{
    generate_video, write_clip, write_dataset, ClipOptions, SynthObject, SynthOptions, SynthVideo,
};
