//! `_prepare`: the inputs checked field by field and sorted into per-(video, category) cells of
//! ground-truth and detected tracks.

use std::collections::{HashMap, HashSet};

use super::super::json::{GroundTruth, GtAnnotation, Video, VideoResult};
use super::{mean_or_zero, sort_by_score, Cell, Prepared, Track, MAX_DETS};
use crate::ytvis::error::YtvisError;
use crate::ytvis::rle::Rle;

impl Prepared {
    pub(super) fn new(
        gt: &GroundTruth,
        gt_file: &str,
        results: &[VideoResult],
        results_file: &str,
    ) -> Result<Self, YtvisError> {
        let videos = index_videos(gt, gt_file)?;
        let cat_ids = category_ids(gt, gt_file)?;
        let mut cells: HashMap<(u64, u64), Cell> = HashMap::new();
        let mut ann_ids = HashSet::new();
        let in_gt = Listed {
            videos: &videos,
            cat_ids: &cat_ids,
            file: gt_file,
            videos_name: "videos",
            categories_name: "categories",
        };
        for (ai, ann) in gt.annotations.iter().enumerate() {
            let track = gt_track(ann, ai, &in_gt, &mut ann_ids)?;
            cells
                .entry((ann.video_id, ann.category_id))
                .or_default()
                .gts
                .push(track);
        }
        let in_results = Listed {
            file: results_file,
            videos_name: "the ground truth",
            categories_name: "the ground truth's categories",
            ..in_gt
        };
        for (ri, res) in results.iter().enumerate() {
            let track = result_track(res, ri, &in_results)?;
            cells
                .entry((res.video_id, res.category_id))
                .or_default()
                .dts
                .push(track);
        }
        let max_det = MAX_DETS[MAX_DETS.len() - 1];
        for cell in cells.values_mut() {
            sort_by_score(&mut cell.dts, |t| t.score);
            cell.dts.truncate(max_det);
        }
        let mut vid_ids: Vec<u64> = videos.keys().copied().collect();
        vid_ids.sort_unstable();
        let mut cats: Vec<(u64, String)> = gt
            .categories
            .iter()
            .map(|c| (c.id, c.name.clone()))
            .collect();
        cats.sort_by_key(|c| c.0);
        Ok(Prepared {
            vid_ids,
            cats,
            cells,
        })
    }
}

/// The ground truth's videos by id: ids unique, as many file names as frames.
fn index_videos<'a>(
    gt: &'a GroundTruth,
    gt_file: &str,
) -> Result<HashMap<u64, &'a Video>, YtvisError> {
    let mut videos = HashMap::new();
    for (i, v) in gt.videos.iter().enumerate() {
        if videos.insert(v.id, v).is_some() {
            return Err(YtvisError::invalid(
                gt_file,
                format!("videos[{i}].id"),
                format!("video id {} appears twice", v.id),
            ));
        }
        if v.file_names.len() != v.length {
            return Err(YtvisError::invalid(
                gt_file,
                format!("videos[{i}].file_names"),
                format!(
                    "{} file names but length is {}",
                    v.file_names.len(),
                    v.length
                ),
            ));
        }
    }
    Ok(videos)
}

/// The ground truth's category ids, each once.
fn category_ids(gt: &GroundTruth, gt_file: &str) -> Result<HashSet<u64>, YtvisError> {
    let mut cat_ids = HashSet::new();
    for (i, c) in gt.categories.iter().enumerate() {
        if !cat_ids.insert(c.id) {
            return Err(YtvisError::invalid(
                gt_file,
                format!("categories[{i}].id"),
                format!("category id {} appears twice", c.id),
            ));
        }
    }
    Ok(cat_ids)
}

/// Ground-truth annotation `ai` as a track; `ann_ids` collects the ids seen so far.
fn gt_track(
    ann: &GtAnnotation,
    ai: usize,
    listed: &Listed<'_, '_>,
    ann_ids: &mut HashSet<u64>,
) -> Result<Track, YtvisError> {
    let gt_file = listed.file;
    let at = |field: &str| format!("annotations[{ai}].{field}");
    if ann.id == 0 || !ann_ids.insert(ann.id) {
        return Err(YtvisError::invalid(
            gt_file,
            at("id"),
            format!(
                "annotation id {} is {}; ytvoseval needs unique ids > 0",
                ann.id,
                if ann.id == 0 { "zero" } else { "repeated" }
            ),
        ));
    }
    let video = listed.check(ann.video_id, ann.category_id, &at)?;
    let masks = frame_masks(&ann.segmentations, video, gt_file, &at, |s, path| {
        let rle = s
            .to_rle(video.height, video.width)
            .map_err(|reason| YtvisError::invalid(gt_file, path, reason))?;
        if let Some(r) = &rle {
            check_size([r.h, r.w], video, gt_file, path)?;
        }
        Ok(rle)
    })?;
    let avg_area = match &ann.areas {
        Some(areas) => {
            check_frame_count(areas.len(), video, gt_file, at("areas"))?;
            let l: Vec<f64> = areas
                .iter()
                .flatten()
                .copied()
                .filter(|&a| a != 0.0)
                .collect();
            mean_or_zero(&l)
        }
        None => average_mask_area(&masks),
    };
    Ok(Track {
        masks,
        avg_area,
        iscrowd: ann.iscrowd != 0,
        score: 0.0,
    })
}

/// The videos and categories a track may name, and how an error names them.
#[derive(Clone, Copy)]
struct Listed<'a, 'v> {
    videos: &'a HashMap<u64, &'v Video>,
    cat_ids: &'a HashSet<u64>,
    file: &'a str,
    videos_name: &'a str,
    categories_name: &'a str,
}

impl<'v> Listed<'_, 'v> {
    /// The track's video, when both it and the category are listed.
    fn check(
        &self,
        video_id: u64,
        category_id: u64,
        at: &dyn Fn(&str) -> String,
    ) -> Result<&'v Video, YtvisError> {
        let invalid =
            |field: &str, reason: String| YtvisError::invalid(self.file, at(field), reason);
        let video = self.videos.get(&video_id).copied().ok_or_else(|| {
            invalid(
                "video_id",
                format!("video {video_id} is not in {}", self.videos_name),
            )
        })?;
        if !self.cat_ids.contains(&category_id) {
            return Err(invalid(
                "category_id",
                format!("category {category_id} is not in {}", self.categories_name),
            ));
        }
        Ok(video)
    }
}

/// Result `ri` as a track: a known video and category, a finite score, a mask per frame of the
/// video's size.
fn result_track(
    res: &VideoResult,
    ri: usize,
    listed: &Listed<'_, '_>,
) -> Result<Track, YtvisError> {
    let results_file = listed.file;
    let at = |field: &str| format!("[{ri}].{field}");
    let video = listed.check(res.video_id, res.category_id, &at)?;
    if !res.score.is_finite() {
        return Err(YtvisError::invalid(
            results_file,
            at("score"),
            format!("score {} is not a finite number", res.score),
        ));
    }
    let masks = frame_masks(&res.segmentations, video, results_file, &at, |r, path| {
        check_size(r.size, video, results_file, path)?;
        r.to_rle()
            .map(Some)
            .map_err(|reason| YtvisError::invalid(results_file, path, reason))
    })?;
    let avg_area = average_mask_area(&masks);
    Ok(Track {
        masks,
        avg_area,
        iscrowd: false,
        score: res.score,
    })
}

/// A track's `segmentations` as one mask per frame of `video`, their count checked; `decode` turns
/// an entry into its mask (or none), naming it by `path` in errors.
fn frame_masks<S>(
    segmentations: &[Option<S>],
    video: &Video,
    file: &str,
    at: &dyn Fn(&str) -> String,
    decode: impl Fn(&S, &str) -> Result<Option<Rle>, YtvisError>,
) -> Result<Vec<Option<Rle>>, YtvisError> {
    check_frame_count(segmentations.len(), video, file, at("segmentations"))?;
    segmentations
        .iter()
        .enumerate()
        .map(|(fi, seg)| match seg {
            None => Ok(None),
            Some(s) => decode(s, &at(&format!("segmentations[{fi}]"))),
        })
        .collect()
}

/// `avg_area` of a track: mean of its non-null, non-zero frame areas, 0 when there are none.
fn average_mask_area(masks: &[Option<Rle>]) -> f64 {
    let l: Vec<f64> = masks
        .iter()
        .flatten()
        .map(|r| r.area() as f64)
        .filter(|&a| a != 0.0)
        .collect();
    mean_or_zero(&l)
}

/// A per-frame list (at json path `field`) has one entry per frame of `video`.
fn check_frame_count(
    entries: usize,
    video: &Video,
    file: &str,
    field: String,
) -> Result<(), YtvisError> {
    if entries != video.length {
        return Err(YtvisError::invalid(
            file,
            field,
            format!(
                "{entries} entries but video {} has {} frames",
                video.id, video.length
            ),
        ));
    }
    Ok(())
}

/// A mask at json path `path` is `[height, width]` of `video`.
fn check_size(size: [u32; 2], video: &Video, file: &str, path: &str) -> Result<(), YtvisError> {
    let [rh, rw] = size;
    let (h, w) = (video.height, video.width);
    if (rh, rw) != (h, w) {
        return Err(YtvisError::invalid(
            file,
            format!("{path}.size"),
            format!("[{rh}, {rw}] but video {} is {h}x{w}", video.id),
        ));
    }
    Ok(())
}
