//! Evaluation during training: the model over in-memory videos, scored with the official video AP
//! and the track quality.

use std::collections::HashSet;

use super::data::Dataset;
use super::TrainError;
use crate::frame::FrameRef;
use crate::model::InsPro;
use crate::tracking::{ResultOptions, VideoAccumulator};
use crate::ytvis::eval::{track_quality, TrackQuality};
use crate::ytvis::EvalSummary;

/// Run the model over in-memory videos and score them with the official video AP.
pub fn evaluate_dataset(
    model: &InsPro,
    data: &Dataset,
    max_videos: usize,
) -> Result<(EvalSummary, TrackQuality), TrainError> {
    let mut results = Vec::new();
    let mut gt = data.gt.clone();
    let keep: HashSet<u64> = data.videos.iter().take(max_videos).map(|v| v.id).collect();
    gt.videos.retain(|v| keep.contains(&v.id));
    gt.annotations.retain(|a| keep.contains(&a.video_id));
    for v in data.videos.iter().filter(|v| keep.contains(&v.id)) {
        let mut state = model.init_state(v.width, v.height)?;
        let mut acc = VideoAccumulator::new();
        for f in &v.frames {
            let out = model.step(&FrameRef::packed(v.width, v.height, f), &mut state)?;
            acc.add(&out);
        }
        results.extend(acc.finish(v.id, &data.category_ids, &ResultOptions::default()));
    }
    let quality = track_quality(&gt, &results, 0.5, 0.5);
    Ok((crate::ytvis::evaluate(&gt, &results)?, quality))
}
