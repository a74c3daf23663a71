//! The contact sheet: up to `cap` thumbnails spread over a stream of unknown length, each with
//! its frame number, in a PNG of four columns.

use std::path::{Path, PathBuf};

use image::{imageops, RgbImage};

use super::canvas::Canvas;
use super::font;

/// Thumbnails are at most this wide.
pub const THUMB_WIDTH: u32 = 320;
const COLUMNS: usize = 4;
const GAP: u32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum SheetError {
    #[error("{}: no frames for the contact sheet", path.display())]
    Empty { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: image::ImageError,
    },
}

/// Keeps every `step`-th frame and doubles the step (dropping every other kept frame) when full.
pub struct ContactSheet {
    cap: usize,
    step: u64,
    size: (usize, usize),
    thumbs: Vec<(u64, RgbImage)>,
}

impl ContactSheet {
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(2),
            step: 1,
            size: (0, 0),
            thumbs: Vec::new(),
        }
    }

    /// Frames kept so far.
    pub fn len(&self) -> usize {
        self.thumbs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.thumbs.is_empty()
    }

    /// Offer frame `index` (packed RGB, `w` x `h`). A new frame size starts the sheet again.
    pub fn offer(&mut self, index: u64, rgb: &[u8], w: usize, h: usize) {
        if (w, h) != self.size {
            self.thumbs.clear();
            self.step = 1;
            self.size = (w, h);
        }
        if self.thumbs.len() == self.cap {
            self.step *= 2;
            let step = self.step;
            self.thumbs.retain(|(i, _)| i % step == 0);
        }
        if !index.is_multiple_of(self.step) {
            return;
        }
        let Some(img) = RgbImage::from_raw(w as u32, h as u32, rgb.to_vec()) else {
            return;
        };
        let tw = THUMB_WIDTH.min(img.width());
        let th = (img.height() * tw / img.width().max(1)).max(1);
        let mut thumb = if tw == img.width() {
            img
        } else {
            imageops::resize(&img, tw, th, imageops::FilterType::Triangle)
        };
        let (tw, th) = (thumb.width() as usize, thumb.height() as usize);
        let mut canvas = Canvas::rgb(&mut thumb, tw, th);
        let text = index.to_string();
        let (black, white) = (canvas.ink([0, 0, 0]), canvas.ink([255, 255, 255]));
        canvas.fill(
            2,
            2,
            2 + font::text_width(&text, 2),
            2 + font::LINE * 2,
            black,
        );
        font::text_at(&mut canvas, 4, 4, &text, 2, white);
        self.thumbs.push((index, thumb));
    }

    /// Write the sheet; returns how many frames it shows.
    pub fn write_png(&self, path: &Path) -> Result<usize, SheetError> {
        let Some((_, first)) = self.thumbs.first() else {
            return Err(SheetError::Empty {
                path: path.to_path_buf(),
            });
        };
        let (tw, th) = (first.width(), first.height());
        let cols = COLUMNS.min(self.thumbs.len()) as u32;
        let rows = self.thumbs.len().div_ceil(COLUMNS) as u32;
        let mut sheet = RgbImage::from_pixel(
            cols * (tw + GAP) + GAP,
            rows * (th + GAP) + GAP,
            image::Rgb([24, 24, 24]),
        );
        for (i, (_, t)) in self.thumbs.iter().enumerate() {
            let (c, r) = (i as u32 % cols, i as u32 / cols);
            imageops::overlay(
                &mut sheet,
                t,
                i64::from(GAP + c * (tw + GAP)),
                i64::from(GAP + r * (th + GAP)),
            );
        }
        sheet.save(path).map_err(|source| SheetError::Write {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(self.thumbs.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_at_most_cap_frames_spread_over_the_stream() {
        let mut sheet = ContactSheet::new(4);
        let rgb = vec![100u8; 8 * 6 * 3];
        for i in 0..100 {
            sheet.offer(i, &rgb, 8, 6);
        }
        let kept: Vec<u64> = sheet.thumbs.iter().map(|(i, _)| *i).collect();
        assert!(kept.len() <= 4 && kept.len() >= 2, "{kept:?}");
        assert!(kept.windows(2).all(|w| w[1] - w[0] == kept[1] - kept[0]));
        assert!(*kept.last().unwrap_or(&0) >= 50, "{kept:?}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sheet.png");
        assert_eq!(sheet.write_png(&path).unwrap(), kept.len());
        assert!(image::open(&path).is_ok());
        let empty = ContactSheet::new(4);
        assert!(matches!(
            empty.write_png(&path),
            Err(SheetError::Empty { .. })
        ));
    }
}
