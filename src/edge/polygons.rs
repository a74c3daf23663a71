//! Masks as polygons for `publish.mask_format = "polygon"`: the outer contours of a box-crop
//! mask (Moore-neighbour tracing per 8-connected component, Douglas-Peucker simplified).

use crate::ytvis::Rle;

/// Outer contours of a box-crop mask as polygons `[x, y, x, y, ...]` in frame pixels
/// (Moore-neighbour tracing per 8-connected component, Douglas-Peucker simplified).
pub fn polygons(rle: &Rle, origin: [usize; 2], tolerance: f64) -> Vec<Vec<f64>> {
    let (h, w) = (rle.h as usize, rle.w as usize);
    let mask = rle.decode_row_major();
    let mut label = vec![false; h * w];
    let mut out = Vec::new();
    let at = |x: i64, y: i64| -> bool {
        x >= 0
            && y >= 0
            && (x as usize) < w
            && (y as usize) < h
            && mask[y as usize * w + x as usize] != 0
    };
    // Moore neighbourhood, clockwise from west (image coordinates, y down).
    const DIRS: [(i64, i64); 8] = [
        (-1, 0),
        (-1, -1),
        (0, -1),
        (1, -1),
        (1, 0),
        (1, 1),
        (0, 1),
        (-1, 1),
    ];
    for y0 in 0..h {
        for x0 in 0..w {
            if mask[y0 * w + x0] == 0 || label[y0 * w + x0] {
                continue;
            }
            // Mark the component (8-connected flood fill).
            let mut stack = vec![(x0, y0)];
            label[y0 * w + x0] = true;
            while let Some((x, y)) = stack.pop() {
                for (dx, dy) in DIRS {
                    let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                    if at(nx, ny) && !label[ny as usize * w + nx as usize] {
                        label[ny as usize * w + nx as usize] = true;
                        stack.push((nx as usize, ny as usize));
                    }
                }
            }
            // Trace its outer boundary from the top-left pixel; we entered it from the west.
            let start = (x0 as i64, y0 as i64);
            let mut contour = vec![start];
            let mut cur = start;
            let mut back = 0usize; // direction index pointing to the background we came from
            let limit = 4 * h * w + 8;
            for _ in 0..limit {
                let mut found = None;
                for k in 1..=8 {
                    let d = (back + k) % 8;
                    let (nx, ny) = (cur.0 + DIRS[d].0, cur.1 + DIRS[d].1);
                    if at(nx, ny) {
                        found = Some((d, (nx, ny)));
                        break;
                    }
                }
                let Some((d, next)) = found else { break }; // a single pixel
                                                            // The new backtrack: the background neighbour swept just before `next`, as seen
                                                            // from `next`.
                back = if d % 2 == 0 { (d + 6) % 8 } else { (d + 5) % 8 };
                if next == start && contour.len() > 1 {
                    break;
                }
                contour.push(next);
                cur = next;
            }
            let pts: Vec<(f64, f64)> = if contour.len() < 3 {
                // Tiny blob: its pixel square(s).
                let (x, y) = (contour[0].0 as f64, contour[0].1 as f64);
                vec![(x, y), (x + 1.0, y), (x + 1.0, y + 1.0), (x, y + 1.0)]
            } else {
                simplify_closed(
                    &contour
                        .iter()
                        .map(|&(x, y)| (x as f64, y as f64))
                        .collect::<Vec<_>>(),
                    tolerance,
                )
            };
            out.push(
                pts.iter()
                    .flat_map(|&(x, y)| [x + origin[0] as f64, y + origin[1] as f64])
                    .collect(),
            );
        }
    }
    out
}

fn simplify_closed(pts: &[(f64, f64)], tol: f64) -> Vec<(f64, f64)> {
    if pts.len() < 4 || tol <= 0.0 {
        return pts.to_vec();
    }
    // Split at the point farthest from the first, simplify both halves.
    let d2 = |a: (f64, f64), b: (f64, f64)| (a.0 - b.0).powi(2) + (a.1 - b.1).powi(2);
    let far = (1..pts.len())
        .max_by(|&i, &j| d2(pts[0], pts[i]).total_cmp(&d2(pts[0], pts[j])))
        .unwrap_or(1);
    let mut a = rdp(&pts[..=far], tol);
    let mut closing: Vec<(f64, f64)> = pts[far..].to_vec();
    closing.push(pts[0]);
    let b = rdp(&closing, tol);
    a.pop();
    a.extend_from_slice(&b[..b.len() - 1]);
    if a.len() < 3 {
        return pts.to_vec();
    }
    a
}

fn rdp(pts: &[(f64, f64)], tol: f64) -> Vec<(f64, f64)> {
    if pts.len() < 3 {
        return pts.to_vec();
    }
    let (a, b) = (pts[0], pts[pts.len() - 1]);
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len = (dx * dx + dy * dy).sqrt();
    let dist = |p: (f64, f64)| {
        if len == 0.0 {
            ((p.0 - a.0).powi(2) + (p.1 - a.1).powi(2)).sqrt()
        } else {
            ((p.0 - a.0) * dy - (p.1 - a.1) * dx).abs() / len
        }
    };
    let (idx, dmax) = pts[1..pts.len() - 1]
        .iter()
        .enumerate()
        .map(|(i, &p)| (i + 1, dist(p)))
        .fold((0, -1.0), |m, x| if x.1 > m.1 { x } else { m });
    if dmax > tol {
        let mut left = rdp(&pts[..=idx], tol);
        let right = rdp(&pts[idx..], tol);
        left.pop();
        left.extend(right);
        left
    } else {
        vec![a, b]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polygon_of_a_rectangle_is_its_corners() {
        // 6x4 crop with a 3x2 block at (1..4, 1..3).
        let mut m = vec![0u8; 6 * 4];
        for y in 1..3 {
            for x in 1..4 {
                m[y * 6 + x] = 1;
            }
        }
        let rle = Rle::encode_row_major(&m, 4, 6);
        let p = polygons(&rle, [10, 20], 0.5);
        assert_eq!(p.len(), 1);
        let mut xs: Vec<(i64, i64)> = p[0].chunks(2).map(|c| (c[0] as i64, c[1] as i64)).collect();
        xs.sort();
        assert_eq!(xs, vec![(11, 21), (11, 22), (13, 21), (13, 22)]);
    }

    #[test]
    fn two_blobs_two_polygons_and_single_pixels() {
        let mut m = vec![0u8; 8 * 3];
        m[0] = 1; // (0,0)
        m[8 + 5] = 1; // (5,1)
        m[8 + 6] = 1;
        m[16 + 5] = 1;
        let rle = Rle::encode_row_major(&m, 3, 8);
        let p = polygons(&rle, [0, 0], 1.0);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0], vec![0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0]);
        assert!(p[1].len() >= 6);
    }
}
