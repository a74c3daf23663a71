//! One frame's tracks as a `GstStructure`: the body of the `InsProTracksMeta` custom meta and of
//! the `inspro-tracks` element messages. Parallel flat arrays, one entry (or 4) per track, so
//! that C, Python (`Gst.Structure.get_array`, no gst-python overrides needed) and Rust read them
//! with the stock API:
//!
//! ```text
//! InsProTracksMeta, frame=(guint64)12, key-frame=(boolean)false, width=(int)640, height=(int)360,
//!   ids=(guint64)< 1, 4 >, labels=(string)< person, dog >, classes=(int)< 0, 17 >,
//!   states=(string)< tracked, new >, scores=(float)< 0.91, 0.62 >,
//!   boxes=(float)< x0, y0, x1, y1, x0, y0, x1, y1 >,
//!   mask-rects=(int)< x, y, w, h, x, y, w, h >, masks=(string)< "<COCO RLE counts>", ... >,
//!   current-zones=(string)< "door", "" >, entered-zones=(string)< "door,hall", "" >,
//!   ended-ids=(guint64)< 2 >;
//! ```

use inspro::model::ModelConfig;
use inspro::tracking::rules::{RuleState, Rules};
use inspro::tracking::{box_crop_rle, ProcessedFrame, TrackEvent, TrackState};
use inspro::ytvis::Rle;

/// A track visible on this frame.
pub struct TrackOut {
    pub id: u64,
    pub class: usize,
    pub label: String,
    pub state: TrackState,
    pub score: f32,
    pub box_xyxy: [f32; 4],
    /// x, y, w, h of the crop the mask covers, frame pixels.
    pub mask_rect: [usize; 4],
    /// The mask over `mask_rect` (COCO size [h, w]).
    pub mask: Rle,
    /// With a `rules` file: the zones the track is in, and every zone it has been in.
    pub current_zones: Vec<String>,
    pub entered_zones: Vec<String>,
}

/// A line crossed on this frame (`rules` file).
pub struct LineCrossing {
    pub line: String,
    pub direction: &'static str,
    pub id: u64,
    pub label: String,
}

/// What the meta and the message say about one frame.
pub struct FrameTracks {
    pub frame: u64,
    pub key_frame: bool,
    pub width: usize,
    pub height: usize,
    pub tracks: Vec<TrackOut>,
    /// Tracks removed on this frame or by a reset just before it.
    pub ended: Vec<u64>,
}

impl FrameTracks {
    /// Tracks seen on this frame (`New` or `Tracked`); `Lost` ones stay out of the frame's
    /// list until they are seen again or end.
    pub fn collect(p: &ProcessedFrame, cfg: &ModelConfig, earlier_ended: Vec<u64>) -> Self {
        let out = &p.output;
        let mut ended = earlier_ended;
        ended.extend(p.reset_events.iter().map(|e| e.track().id));
        let mut tracks = Vec::new();
        for e in &p.events {
            let t = match e {
                TrackEvent::New(t) => t,
                TrackEvent::Update(t) if t.state == TrackState::Tracked => t,
                TrackEvent::Update(_) => continue,
                TrackEvent::End(t, _) => {
                    ended.push(t.id);
                    continue;
                }
            };
            // Boxes clipped to the frame (the network's may overhang it).
            let g = &out.geometry;
            let (w, h) = (g.orig_width as f32, g.orig_height as f32);
            let b = t.box_xyxy;
            let box_xyxy = [
                b[0].clamp(0.0, w),
                b[1].clamp(0.0, h),
                b[2].clamp(0.0, w),
                b[3].clamp(0.0, h),
            ];
            let (origin, mask) = box_crop_rle(out, t.slot, &box_xyxy);
            tracks.push(TrackOut {
                id: t.id,
                class: t.label,
                label: cfg.class_name(t.label),
                state: t.state,
                score: t.score,
                box_xyxy,
                mask_rect: [origin[0], origin[1], mask.w as usize, mask.h as usize],
                mask,
                current_zones: Vec::new(),
                entered_zones: Vec::new(),
            });
        }
        FrameTracks {
            frame: out.frame_index,
            key_frame: out.key_frame,
            width: out.geometry.orig_width,
            height: out.geometry.orig_height,
            tracks,
            ended,
        }
    }

    /// Apply a `rules` file: tracks failing their label's filter leave the list, the others get
    /// their zones; returns this frame's line crossings.
    pub fn apply_rules(&mut self, rules: &Rules, state: &mut RuleState) -> Vec<LineCrossing> {
        let mut crossings = Vec::new();
        for id in &self.ended {
            state.forget(*id);
        }
        if rules.is_empty() {
            return crossings;
        }
        self.tracks
            .retain(|t| rules.passes(&t.label, t.score, &t.box_xyxy));
        for t in &mut self.tracks {
            if t.state == TrackState::Lost {
                continue;
            }
            let o = state.observe(rules, t.id, &t.label, &t.box_xyxy);
            crossings.extend(o.crossings.into_iter().map(|(line, dir)| LineCrossing {
                line,
                direction: dir.as_str(),
                id: t.id,
                label: t.label.clone(),
            }));
            t.current_zones = o.current_zones;
            t.entered_zones = o.entered_zones;
        }
        crossings
    }

    pub fn structure(&self, name: &str) -> gst::Structure {
        let ts = &self.tracks;
        let state = |s: TrackState| match s {
            TrackState::New => "new",
            TrackState::Tracked => "tracked",
            TrackState::Lost => "lost",
            TrackState::Removed => "removed",
        };
        gst::Structure::builder(name)
            .field("frame", self.frame)
            .field("key-frame", self.key_frame)
            .field("width", self.width as i32)
            .field("height", self.height as i32)
            .field("ids", gst::Array::new(ts.iter().map(|t| t.id)))
            .field(
                "labels",
                gst::Array::new(ts.iter().map(|t| t.label.as_str())),
            )
            .field(
                "classes",
                gst::Array::new(ts.iter().map(|t| t.class as i32)),
            )
            .field("states", gst::Array::new(ts.iter().map(|t| state(t.state))))
            .field("scores", gst::Array::new(ts.iter().map(|t| t.score)))
            .field("boxes", gst::Array::new(ts.iter().flat_map(|t| t.box_xyxy)))
            .field(
                "mask-rects",
                gst::Array::new(ts.iter().flat_map(|t| t.mask_rect.map(|v| v as i32))),
            )
            .field(
                "masks",
                gst::Array::new(ts.iter().map(|t| t.mask.to_compressed())),
            )
            .field(
                "current-zones",
                gst::Array::new(ts.iter().map(|t| t.current_zones.join(","))),
            )
            .field(
                "entered-zones",
                gst::Array::new(ts.iter().map(|t| t.entered_zones.join(","))),
            )
            .field("ended-ids", gst::Array::new(self.ended.iter().copied()))
            .build()
    }
}
