//! The one renderer of every front-end (daemon overlay, `inspro segment`, the element's
//! `draw=true`): each track's mask tinted in its colour, its box outlined and a tag
//! "<id> <LABEL>" above it, on any [`canvas::Canvas`] (packed RGB or 4:2:0 YUV planes). One
//! palette keyed by track id, so a track has one colour everywhere; one font; one contact sheet.

pub mod canvas;
pub mod font;
pub mod sheet;

pub use canvas::{Canvas, Ink, Layout, Matrix, Planes, Yuv};
pub use sheet::ContactSheet;

use crate::runtime::FrameOutput;
use crate::tracking::{Track, TrackState};

/// One track to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    pub id: u64,
    pub label: String,
    /// Frame pixels.
    pub box_xyxy: [f32; 4],
    /// x, y, w, h of the crop `mask` covers.
    pub mask_rect: [usize; 4],
    /// Row-major over `mask_rect`, non-zero = object; may be empty (no mask drawn).
    pub mask: Vec<u8>,
}

/// Colours by track id (Tableau 10), so a track keeps its colour from frame to frame.
const PALETTE: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// A track's colour.
pub fn colour(id: u64) -> [u8; 3] {
    PALETTE[(id % PALETTE.len() as u64) as usize]
}

/// A chart's series `i`: `first` (a neutral colour for the total or the rest), then the tracks'
/// palette in order, so every picture the product draws uses one set of colours.
pub fn series_colour(i: usize, first: [u8; 3]) -> [u8; 3] {
    match i.checked_sub(1) {
        None => first,
        Some(k) => colour(k as u64),
    }
}

/// Mask opacity out of 255.
const MASK_ALPHA: u8 = 110;

/// The marks of the tracks seen on this frame (lost ones are not drawn), masks cut to their boxes.
pub fn track_marks(
    out: &FrameOutput,
    tracks: &[&Track],
    class_name: impl Fn(usize) -> String,
) -> Vec<Mark> {
    tracks
        .iter()
        .filter(|t| t.state != TrackState::Lost && t.slot < out.num_slots())
        .map(|t| {
            let rect = out.box_rect(&t.box_xyxy);
            let mask = out
                .mask_logits_in(t.slot, rect)
                .into_iter()
                .map(|v| u8::from(v > 0.0))
                .collect();
            Mark {
                id: t.id,
                label: class_name(t.label),
                box_xyxy: t.box_xyxy,
                mask_rect: [rect[0], rect[1], rect[2] - rect[0], rect[3] - rect[1]],
                mask,
            }
        })
        .collect()
}

/// Line width and glyph scale for a frame: 1 px up to 360 lines, 2 px to 720, ...
pub fn scale_for(height: usize) -> usize {
    (height / 360).max(1)
}

/// Draw `marks` onto the canvas.
pub fn draw(canvas: &mut Canvas<'_>, marks: &[Mark]) {
    let scale = scale_for(canvas.height);
    let white = canvas.ink([255, 255, 255]);
    for m in marks {
        let ink = canvas.ink(colour(m.id));
        let [mx, my, mw, mh] = m.mask_rect;
        if m.mask.len() == mw * mh {
            for (dy, row) in m.mask.chunks_exact(mw.max(1)).enumerate() {
                for (dx, &on) in row.iter().enumerate() {
                    if on != 0 {
                        canvas.blend(mx + dx, my + dy, ink, MASK_ALPHA);
                    }
                }
            }
        }
        let clamp = |v: f32, hi: usize| (v.max(0.0) as usize).min(hi.saturating_sub(1));
        let x0 = clamp(m.box_xyxy[0], canvas.width);
        let y0 = clamp(m.box_xyxy[1], canvas.height);
        let x1 = clamp(m.box_xyxy[2], canvas.width).max(x0);
        let y1 = clamp(m.box_xyxy[3], canvas.height).max(y0);
        let t = scale;
        canvas.fill(x0, y0, x1 + 1, y0 + t, ink);
        canvas.fill(x0, (y1 + 1).saturating_sub(t), x1 + 1, y1 + 1, ink);
        canvas.fill(x0, y0, x0 + t, y1 + 1, ink);
        canvas.fill((x1 + 1).saturating_sub(t), y0, x1 + 1, y1 + 1, ink);
        // The tag sits above the box, or inside it at the top edge of the frame.
        let text = format!("{} {}", m.id, m.label.to_ascii_uppercase());
        let th = font::LINE * scale;
        let ty = if y0 >= th { y0 - th } else { y0 };
        canvas.fill(x0, ty, x0 + font::text_width(&text, scale), ty + th, ink);
        font::text_at(canvas, x0 + scale, ty + scale, &text, scale, white);
    }
}

/// A packed RGB copy of `rgb` (rows of `3·width` bytes) with `marks` drawn on it.
pub fn draw_rgb(mut rgb: Vec<u8>, width: usize, height: usize, marks: &[Mark]) -> Vec<u8> {
    draw(&mut Canvas::rgb(&mut rgb, width, height), marks);
    rgb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_box_and_tag_land_in_the_right_pixels() {
        let (w, h) = (64, 48);
        let marks = [Mark {
            id: 3,
            label: "circle".into(),
            box_xyxy: [20.0, 20.0, 40.0, 40.0],
            mask_rect: [25, 25, 10, 10],
            mask: vec![1u8; 10 * 10],
        }];
        let rgb = draw_rgb(vec![0u8; w * h * 3], w, h, &marks);
        let px = |x: usize, y: usize| &rgb[(y * w + x) * 3..(y * w + x) * 3 + 3];
        assert_eq!(px(20, 30), &colour(3)[..], "left edge of the box");
        assert_eq!(px(40, 30), &colour(3)[..], "right edge (inclusive)");
        let m = px(30, 30);
        assert!(
            m[0] > 0 && m != &colour(3)[..],
            "mask tinted, not opaque: {m:?}"
        );
        assert_eq!(px(5, 5), &[0, 0, 0], "untouched");
        assert_eq!(px(22, 30), &[0, 0, 0], "inside the box, outside the mask");
        // Tag above the box: 9 rows, coloured background with white glyph pixels.
        let tag: Vec<_> = (11..20)
            .flat_map(|y| (20..40).map(move |x| (x, y)))
            .collect();
        assert!(tag.iter().any(|&(x, y)| px(x, y) == [255, 255, 255]));
        assert!(tag.iter().any(|&(x, y)| px(x, y) == colour(3)));
    }
}
