//! The `draw=true` overlay: each visible track's mask tinted in its colour, its box outlined, and
//! a tag "<id> <LABEL>" in a built-in 5x7 font (no font files, no extra element).

use super::pixels::Canvas;

/// One track to draw: its mask (row-major over `mask_rect` = x, y, w, h) may be empty.
pub struct Mark<'a> {
    pub id: u64,
    pub label: &'a str,
    pub box_xyxy: [f32; 4],
    pub mask_rect: [usize; 4],
    pub mask: &'a [u8],
}

/// Colours by id (Tableau 10), so a track keeps its colour from frame to frame.
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

pub fn colour(id: u64) -> [u8; 3] {
    PALETTE[(id % PALETTE.len() as u64) as usize]
}

/// Mask opacity out of 255.
const MASK_ALPHA: u8 = 110;

pub fn draw(canvas: &mut Canvas<'_>, marks: &[Mark<'_>]) {
    // Lines and glyphs grow with the frame: 1 px up to 360 lines, 2 px to 720, ...
    let scale = (canvas.height / 360).max(1);
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
        let (tw, th) = (text.len() * 6 * scale + scale, 9 * scale);
        let ty = if y0 >= th { y0 - th } else { y0 };
        canvas.fill(x0, ty, x0 + tw, ty + th, ink);
        text_at(canvas, x0 + scale, ty + scale, &text, scale, white);
    }
}

fn text_at(
    canvas: &mut Canvas<'_>,
    x: usize,
    y: usize,
    text: &str,
    scale: usize,
    ink: super::pixels::Ink,
) {
    for (i, ch) in text.chars().enumerate() {
        let rows = glyph(ch);
        let gx = x + i * 6 * scale;
        for (r, bits) in rows.iter().enumerate() {
            for c in 0..5 {
                if bits & (0x10 >> c) != 0 {
                    canvas.fill(
                        gx + c * scale,
                        y + r * scale,
                        gx + (c + 1) * scale,
                        y + (r + 1) * scale,
                        ink,
                    );
                }
            }
        }
    }
}

/// 5x7 glyphs, one byte per row, bit 4 = leftmost column.
fn glyph(ch: char) -> [u8; 7] {
    match ch.to_ascii_uppercase() {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        '_' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        '#' => [0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A],
        ' ' => [0; 7],
        _ => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04], // '?'
    }
}

#[cfg(test)]
mod tests {
    use super::super::pixels::{Canvas, Layout, Yuv};
    use super::*;
    use gst_video::{VideoColorMatrix, VideoColorRange, VideoFormat};

    #[test]
    fn mask_box_and_tag_land_in_the_right_pixels() {
        let (w, h) = (64, 48);
        let mut rgb = vec![0u8; w * h * 3];
        let mask = vec![1u8; 10 * 10];
        {
            let mut c = Canvas {
                layout: Layout::of(VideoFormat::Rgb).unwrap(),
                width: w,
                height: h,
                data: [&mut rgb, &mut [], &mut []],
                strides: [w * 3, 0, 0],
                yuv: Yuv::new(VideoColorMatrix::Rgb, VideoColorRange::Unknown),
            };
            let marks = [Mark {
                id: 3,
                label: "circle",
                box_xyxy: [20.0, 20.0, 40.0, 40.0],
                mask_rect: [25, 25, 10, 10],
                mask: &mask,
            }];
            draw(&mut c, &marks);
        }
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
