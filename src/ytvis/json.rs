//! YouTube-VIS json, as read by `youtubevos/cocoapi: PythonAPI/pycocotools/ytvos.py` (`YTVOS`,
//! `loadRes`, `annToRLE`): ground truth (videos, annotations, categories) and results.

use std::fmt;
use std::path::Path;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::error::YtvisError;
use super::rle::Rle;

/// A ground-truth file (`instances.json`, `train.json`, ...).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licenses: Option<serde_json::Value>,
    pub videos: Vec<Video>,
    /// `null` in the public val/test files, which carry no annotations.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub annotations: Vec<GtAnnotation>,
    pub categories: Vec<Category>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Video {
    pub id: u64,
    pub width: u32,
    pub height: u32,
    pub length: usize,
    /// Frame paths relative to `JPEGImages/`, e.g. `"0b6db1c6fd/00005.jpg"`.
    pub file_names: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Category {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub supercategory: String,
}

/// One object track: a segmentation, box and area per frame, `None` where the object is absent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GtAnnotation {
    pub id: u64,
    pub video_id: u64,
    pub category_id: u64,
    #[serde(default)]
    pub iscrowd: u8,
    pub segmentations: Vec<Option<Segmentation>>,
    /// Per frame `[x, y, width, height]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bboxes: Option<Vec<Option<[f64; 4]>>>,
    /// Per frame mask area; ytvoseval averages the non-null, non-zero ones into the track's area.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub areas: Option<Vec<Option<f64>>>,
}

/// One predicted track, as in the results json uploaded to CodaLab.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VideoResult {
    pub video_id: u64,
    /// The dataset's category id (not a contiguous index).
    pub category_id: u64,
    pub score: f64,
    /// One entry per frame of the video, at the video's original size.
    pub segmentations: Vec<Option<RleJson>>,
}

/// A per-frame segmentation: RLE or polygons (`[[x0, y0, x1, y1, ...], ...]`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Segmentation {
    Rle(RleJson),
    Polygons(Vec<Vec<f64>>),
}

/// `{"size": [h, w], "counts": ...}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RleJson {
    pub size: [u32; 2],
    pub counts: RleCounts,
}

/// RLE counts: the compressed string of `rleToString`, or the plain list of runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum RleCounts {
    Compressed(String),
    Uncompressed(Vec<u32>),
}

impl RleJson {
    /// Compressed form of `rle`, as pycocotools' `encode` writes it.
    pub fn from_rle(rle: &Rle) -> RleJson {
        RleJson {
            size: [rle.h, rle.w],
            counts: RleCounts::Compressed(rle.to_compressed()),
        }
    }

    /// Decodes and checks that the runs cover exactly `h * w` pixels; the error is the reason.
    pub fn to_rle(&self) -> Result<Rle, String> {
        let [h, w] = self.size;
        let rle = match &self.counts {
            RleCounts::Compressed(s) => Rle::from_compressed(s, h, w).map_err(|e| e.to_string())?,
            RleCounts::Uncompressed(c) => Rle {
                h,
                w,
                counts: c.clone(),
            },
        };
        let total = rle.total();
        if total != h as u64 * w as u64 {
            return Err(format!(
                "runs cover {total} pixels but size {h}x{w} has {}",
                h as u64 * w as u64
            ));
        }
        Ok(rle)
    }
}

impl Segmentation {
    /// What `annToRLE` gives for this frame of a `h` x `w` video; `None` for an empty polygon
    /// list, which ytvoseval treats as absent.
    pub fn to_rle(&self, h: u32, w: u32) -> Result<Option<Rle>, String> {
        match self {
            Segmentation::Rle(r) => r.to_rle().map(Some),
            Segmentation::Polygons(p) if p.is_empty() => Ok(None),
            Segmentation::Polygons(p) => Rle::from_polygons(p, h, w)
                .map(Some)
                .map_err(|e| e.to_string()),
        }
    }
}

impl GroundTruth {
    pub fn video(&self, id: u64) -> Option<&Video> {
        self.videos.iter().find(|v| v.id == id)
    }
}

/// Reads a ground-truth json.
pub fn load_ground_truth(path: &Path) -> Result<GroundTruth, YtvisError> {
    let bytes = std::fs::read(path).map_err(|e| YtvisError::io(path, e))?;
    parse_json(&bytes, &path.display().to_string())
}

/// Reads a results json (a list of [`VideoResult`]).
pub fn load_results(path: &Path) -> Result<Vec<VideoResult>, YtvisError> {
    let bytes = std::fs::read(path).map_err(|e| YtvisError::io(path, e))?;
    parse_json(&bytes, &path.display().to_string())
}

/// Parses json bytes into `T`, naming `file` and the json path of the first problem.
pub fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    file: &str,
) -> Result<T, YtvisError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        YtvisError::Json {
            file: file.to_string(),
            path,
            reason: e.into_inner().to_string(),
        }
    })?;
    de.end().map_err(|e| YtvisError::Json {
        file: file.to_string(),
        path: ".".to_string(),
        reason: e.to_string(),
    })?;
    Ok(value)
}

/// Writes `value` as compact json.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), YtvisError> {
    let bytes = serde_json::to_vec(value).map_err(|e| YtvisError::Json {
        file: path.display().to_string(),
        path: ".".to_string(),
        reason: e.to_string(),
    })?;
    std::fs::write(path, bytes).map_err(|e| YtvisError::io(path, e))
}

/// The ground truth restated as results with score 1.0 (polygons rasterised, RLE compressed):
/// scoring these against `gt` gives AP 1.0.
pub fn results_from_ground_truth(gt: &GroundTruth) -> Result<Vec<VideoResult>, YtvisError> {
    let mut out = Vec::with_capacity(gt.annotations.len());
    for (ai, ann) in gt.annotations.iter().enumerate() {
        let video = gt.video(ann.video_id).ok_or_else(|| {
            YtvisError::invalid(
                "ground truth",
                format!("annotations[{ai}].video_id"),
                format!("video {} is not in videos", ann.video_id),
            )
        })?;
        let mut segmentations = Vec::with_capacity(ann.segmentations.len());
        for (fi, seg) in ann.segmentations.iter().enumerate() {
            let rle = match seg {
                None => None,
                Some(s) => s.to_rle(video.height, video.width).map_err(|reason| {
                    YtvisError::invalid(
                        "ground truth",
                        format!("annotations[{ai}].segmentations[{fi}]"),
                        reason,
                    )
                })?,
            };
            segmentations.push(rle.as_ref().map(RleJson::from_rle));
        }
        out.push(VideoResult {
            video_id: ann.video_id,
            category_id: ann.category_id,
            score: 1.0,
            segmentations,
        });
    }
    Ok(out)
}

fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

impl<'de> Deserialize<'de> for Segmentation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Segmentation;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "an RLE {\"size\": [h, w], \"counts\": ...}, a list of polygons, or null",
                )
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Segmentation, A::Error> {
                RleJson::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(Segmentation::Rle)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Segmentation, A::Error> {
                Vec::<Vec<f64>>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(Segmentation::Polygons)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RleCounts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RleCounts;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("RLE counts as a compressed string or a list of run lengths")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RleCounts, E> {
                Ok(RleCounts::Compressed(s.to_string()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<RleCounts, E> {
                Ok(RleCounts::Compressed(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RleCounts, A::Error> {
                Vec::<u32>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(RleCounts::Uncompressed)
            }
        }
        d.deserialize_any(V)
    }
}
