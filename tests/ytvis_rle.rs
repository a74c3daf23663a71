//! COCO RLE against reference values from pycocotools 2.0 (`pycocotools.mask`, numpy 2.4).
//!
//! The vectors were printed by this script (pycocotools from PyPI):
//! ```python
//! import numpy as np
//! from pycocotools import mask as M
//! def runs(m):  # column-major runs, the definition of uncompressed counts
//!     flat = np.asarray(m, dtype=np.uint8).flatten(order='F'); out=[]; p=0; c=0
//!     for v in flat:
//!         if v != p: out.append(c); c = 0; p = v
//!         c += 1
//!     out.append(c); return out
//! def show(name, m):
//!     r = M.encode(np.asfortranarray(m.astype(np.uint8)))
//!     assert (M.decode(r) == m).all()
//!     print(name, r['size'], runs(m), r['counts'], M.area(r), M.toBbox(r).tolist())
//! show("small", np.array([[0,1,1,0],[0,1,0,0],[1,1,1,1]]))
//! show("empty", np.zeros((3,4))); show("full", np.ones((3,4))); show("first1", np.eye(3,4))
//! m = np.zeros((40000,2)); m[5:39000,0]=1; m[0:100,1]=1; m[32768:40000,1]=1; show("long", m)
//! flat=[]; v=0
//! for c in [100,50,20,10,5,3,2,1,1,1,1,1,1,1]: flat += [v]*c; v = 1-v
//! flat += [v]*(200-len(flat)); show("neg", np.array(flat).reshape(200,1))
//! rng = np.random.default_rng(7); m = (rng.random((7,9)) > 0.5); show("rand7x9", m)
//! def poly(name, polys, h, w):
//!     r = M.merge(M.frPyObjects(polys, h, w)); print(name, r['counts'], M.area(r), M.toBbox(r).tolist())
//! poly("tri", [[10.5,20.2, 30.7,22.1, 25.0,40.9]], 50, 60)
//! poly("quad", [[10.5,20.2, 30.7,22.1, 25.0,40.9, 12.0,35.0]], 50, 60)
//! poly("outside", [[-5.0,-3.0, 70.0,10.0, 30.0,55.0]], 50, 60)
//! poly("multi", [[1,1, 10,1, 10,10, 1,10], [5,5, 20,5, 20,20]], 32, 24)
//! poly("star", [[50,5, 61,38, 95,38, 68,58, 79,91, 50,71, 21,91, 32,58, 5,38, 39,38]], 100, 100)
//! r = M.frPyObjects(np.array([[5.0,5.0,10.0,8.0],[2.5,3.5,4.2,6.1]]), 30, 30)  # frBbox
//! a = M.frPyObjects([[1,1, 10,1, 10,10, 1,10]], 32, 24)[0]
//! b = M.frPyObjects([[5,5, 20,5, 20,20]], 32, 24)[0]
//! print(a['counts'], b['counts'], M.merge([a,b], False)['counts'], M.merge([a,b], True)['counts'])
//! print(M.iou([a],[b],[0]), M.iou([a],[b],[1]))
//! print(M.frPyObjects({'size':[3,4],'counts':[2,5,1,4]}, 3, 4)['counts'])
//! ```

use inspro::ytvis::Rle;

struct Vector {
    name: &'static str,
    h: u32,
    w: u32,
    runs: &'static [u32],
    compressed: &'static str,
    area: u64,
    bbox: [f64; 4],
}

const VECTORS: &[Vector] = &[
    Vector {
        name: "small",
        h: 3,
        w: 4,
        runs: &[2, 5, 1, 1, 2, 1],
        compressed: "251L10",
        area: 7,
        bbox: [0.0, 0.0, 4.0, 3.0],
    },
    Vector {
        name: "empty",
        h: 3,
        w: 4,
        runs: &[12],
        compressed: "<",
        area: 0,
        bbox: [0.0, 0.0, 0.0, 0.0],
    },
    Vector {
        name: "full",
        h: 3,
        w: 4,
        runs: &[0, 12],
        compressed: "0<",
        area: 12,
        bbox: [0.0, 0.0, 4.0, 3.0],
    },
    Vector {
        name: "first run zero (eye)",
        h: 3,
        w: 4,
        runs: &[0, 1, 3, 1, 3, 1, 3],
        compressed: "0130000",
        area: 3,
        bbox: [0.0, 0.0, 3.0, 3.0],
    },
    Vector {
        name: "long runs over 2^15",
        h: 40000,
        w: 2,
        runs: &[5, 38995, 1000, 100, 32668, 7232],
        compressed: "5cRV1Xo0aPjNdmn0ln6",
        area: 46327,
        bbox: [0.0, 0.0, 2.0, 40000.0],
    },
    Vector {
        name: "negative deltas",
        h: 200,
        w: 1,
        runs: &[100, 50, 20, 10, 5, 3, 2, 1, 1, 1, 1, 1, 1, 1, 3],
        compressed: "T3b1d0hNAIMNO000002",
        area: 67,
        bbox: [0.0, 100.0, 1.0, 97.0],
    },
    Vector {
        name: "random 7x9",
        h: 7,
        w: 9,
        runs: &[
            0, 1, 1, 2, 1, 1, 1, 1, 1, 2, 3, 1, 2, 4, 5, 1, 3, 1, 2, 4, 2, 1, 1, 1, 1, 1, 2, 8, 1,
            3, 2, 1, 1, 1,
        ],
        compressed: "01110O00012OO33MN0O30MO00017OK1NO0",
        area: 34,
        bbox: [0.0, 0.0, 9.0, 7.0],
    },
];

const RAND_7X9_ROWS: [[u8; 9]; 7] = [
    [1, 1, 1, 0, 0, 1, 0, 1, 1],
    [0, 0, 0, 0, 0, 1, 1, 1, 1],
    [1, 1, 0, 0, 1, 0, 0, 1, 0],
    [1, 1, 1, 0, 0, 0, 0, 1, 0],
    [0, 0, 1, 0, 0, 1, 1, 1, 1],
    [1, 0, 1, 1, 1, 0, 1, 0, 0],
    [0, 0, 1, 0, 1, 1, 1, 1, 1],
];

#[test]
fn pycocotools_vectors_both_directions() {
    for v in VECTORS {
        let rle = Rle {
            h: v.h,
            w: v.w,
            counts: v.runs.to_vec(),
        };
        assert_eq!(rle.to_compressed(), v.compressed, "{}: to string", v.name);
        let back = Rle::from_compressed(v.compressed, v.h, v.w).unwrap();
        assert_eq!(back, rle, "{}: from string", v.name);
        assert_eq!(rle.area(), v.area, "{}: area", v.name);
        assert_eq!(rle.to_bbox(), v.bbox, "{}: bbox", v.name);
        let mask = rle.decode_column_major();
        assert_eq!(mask.len(), (v.h * v.w) as usize);
        assert_eq!(
            Rle::encode_column_major(&mask, v.h, v.w),
            rle,
            "{}: encode",
            v.name
        );
        let row_major = rle.decode_row_major();
        assert_eq!(
            Rle::encode_row_major(&row_major, v.h, v.w),
            rle,
            "{}",
            v.name
        );
    }
}

#[test]
fn encodes_image_layout_masks() {
    let small = [[0u8, 1, 1, 0], [0, 1, 0, 0], [1, 1, 1, 1]];
    let flat: Vec<u8> = small.iter().flatten().copied().collect();
    assert_eq!(Rle::encode_row_major(&flat, 3, 4).to_compressed(), "251L10");
    let flat: Vec<u8> = RAND_7X9_ROWS.iter().flatten().copied().collect();
    let rle = Rle::encode_row_major(&flat, 7, 9);
    assert_eq!(rle.to_compressed(), "01110O00012OO33MN0O30MO00017OK1NO0");
    assert_eq!(rle.decode_row_major(), flat);
}

#[test]
fn uncompressed_counts_compress_like_fr_py_objects() {
    let rle = Rle {
        h: 3,
        w: 4,
        counts: vec![2, 5, 1, 4],
    };
    assert_eq!(rle.to_compressed(), "251O");
}

#[test]
fn round_trips_random_masks() {
    let mut state = 0x1234_5678_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..200 {
        let h = (next() % 40 + 1) as u32;
        let w = (next() % 40 + 1) as u32;
        let density = next() % 100;
        let run_bias = next() % 8;
        let mut mask = Vec::with_capacity((h * w) as usize);
        let mut v = 0u8;
        for _ in 0..h * w {
            if next() % 100 < density / (run_bias + 1) {
                v = 1 - v;
            }
            mask.push(v);
        }
        let rle = Rle::encode_row_major(&mask, h, w);
        assert_eq!(rle.total(), (h * w) as u64);
        let s = rle.to_compressed();
        assert_eq!(Rle::from_compressed(&s, h, w).unwrap(), rle);
        assert_eq!(rle.decode_row_major(), mask);
        assert_eq!(rle.area(), mask.iter().map(|&x| x as u64).sum::<u64>());
    }
}

#[test]
fn zero_by_zero_and_single_pixel() {
    let rle = Rle::encode_column_major(&[], 0, 0);
    assert_eq!(rle.counts, vec![0]);
    assert_eq!(rle.to_compressed(), "0");
    assert_eq!(rle.to_bbox(), [0.0; 4]);
    let one = Rle::encode_column_major(&[1], 1, 1);
    assert_eq!(one.counts, vec![0, 1]);
    assert_eq!(
        Rle::from_compressed(&one.to_compressed(), 1, 1).unwrap(),
        one
    );
}

#[test]
fn bad_compressed_strings_are_errors() {
    // '}' is outside '0'..'o'; "h" alone sets the continuation bit and then ends
    assert!(Rle::from_compressed("25}", 3, 4).is_err());
    assert!(Rle::from_compressed("2h", 3, 4).is_err());
    assert!(Rle::from_compressed("é", 3, 4).is_err());
    // a negative run: "0" then "O" (-1)
    assert!(Rle::from_compressed("O", 3, 4).is_err());
}

fn poly(xy: &[f64], h: u32, w: u32) -> String {
    Rle::from_polygons(&[xy.to_vec()], h, w)
        .unwrap()
        .to_compressed()
}

#[test]
fn polygons_match_fr_py_objects() {
    let tri = Rle::from_polygons(&[vec![10.5, 20.2, 30.7, 22.1, 25.0, 40.9]], 50, 60).unwrap();
    assert_eq!(
        tri.to_compressed(),
        "ja01a12N101N1O2N1O2N1O1O2N1O2O0OO1M3M3M3L4Mg\\1"
    );
    assert_eq!(tri.area(), 194);
    assert_eq!(tri.to_bbox(), [11.0, 20.0, 20.0, 20.0]);
    assert_eq!(
        poly(&[10.5, 20.2, 30.7, 22.1, 25.0, 40.9, 12.0, 35.0], 50, 60),
        "ja0:X15K10O01O00001O001O001O010ON2M3M3M3L4Mg\\1"
    );
    let outside = Rle::from_polygons(&[vec![-5.0, -3.0, 70.0, 10.0, 30.0, 55.0]], 50, 60).unwrap();
    assert_eq!(
        outside.to_compressed(),
        "06\\12N1O2N2N1O2N2N1O2N2N1O2N1O2O1N1O2N2N101N2N1O2N2N101N1O00000001O00000O1O1N3N1O1O1O1O1\
         O2N1N2O1O1O1O2N1O1O1N2O2N1O1O1O1OI"
    );
    assert_eq!(outside.area(), 1822);
    assert_eq!(outside.to_bbox(), [0.0, 0.0, 60.0, 50.0]);
    let star = [
        50.0, 5.0, 61.0, 38.0, 95.0, 38.0, 68.0, 58.0, 79.0, 91.0, 50.0, 71.0, 21.0, 91.0, 32.0,
        58.0, 5.0, 38.0, 39.0, 38.0,
    ];
    let star = Rle::from_polygons(&[star.to_vec()], 100, 100).unwrap();
    assert_eq!(
        star.to_compressed(),
        "nc01S31O1O001O1O001O1O1O001O1O1O001^NF8;DG=:_OHb08[OKe06WOLj05ROMo04mNNT12iN1W10eN2\\1O\
         `N3a1N[N5e1d01O100O1O100OO1N2N3M2N2N3M2N2N3M2N2103N2N2M3N2N2M3N2N2M3N1OO1O001O1O001OWOZN\
         5e1J_N3a1LcN2\\1MhN1W1OlNNT11POMo02UOLj03ZOKe05^OHb07BG=8GF89Z100O1O1O100O1O1O100O1O100O1\
         Oca0"
    );
    assert_eq!(star.area(), 2608);
    assert_eq!(star.to_bbox(), [6.0, 6.0, 88.0, 85.0]);
}

#[test]
fn several_polygons_merge_like_ann_to_rle() {
    let square = vec![1.0, 1.0, 10.0, 1.0, 10.0, 10.0, 1.0, 10.0];
    let tri = vec![5.0, 5.0, 20.0, 5.0, 20.0, 20.0];
    let merged = Rle::from_polygons(&[square.clone(), tri.clone()], 32, 24).unwrap();
    assert_eq!(
        merged.to_compressed(),
        "Q19g00000000000000004L01O1O1O1O1O1O1O1O1j3"
    );
    assert_eq!(merged.area(), 176);
    assert_eq!(merged.to_bbox(), [1.0, 1.0, 19.0, 18.0]);
    // pycocotools raises on a first polygon of 4 numbers (read as a box) or fewer
    assert!(Rle::from_polygons(&[vec![5.0, 5.0, 10.0, 8.0]], 30, 30).is_err());
    assert!(Rle::from_polygons(&[], 30, 30).is_err());
    // coordinates that would overflow maskApi.c's ints are refused, not looped over
    let huge = vec![0.0, 0.0, 1e12, 0.0, 5.0, 5.0];
    assert!(Rle::from_polygons(&[huge], 30, 30).is_err());
    assert!(Rle::from_polygons(&[vec![0.0, 0.0, f64::NAN, 0.0, 5.0, 5.0]], 30, 30).is_err());
}

#[test]
fn boxes_match_fr_bbox() {
    assert_eq!(
        Rle::from_bbox([5.0, 5.0, 10.0, 8.0], 30, 30).to_compressed(),
        "k48f000000000000000000m="
    );
    assert_eq!(
        Rle::from_bbox([2.5, 3.5, 4.2, 6.1], 30, 30).to_compressed(),
        "n26h000000^e0"
    );
}

#[test]
fn merge_and_iou_match_pycocotools() {
    let a = Rle::from_compressed("Q19g0000000000000000o=", 32, 24).unwrap();
    let b = Rle::from_compressed("U61o01O1O1O1O1O1O1O1O1O1O1O1O1j3", 32, 24).unwrap();
    assert_eq!(
        poly(&[1.0, 1.0, 10.0, 1.0, 10.0, 10.0, 1.0, 10.0], 32, 24),
        "Q19g0000000000000000o="
    );
    assert_eq!(
        poly(&[5.0, 5.0, 20.0, 5.0, 20.0, 20.0], 32, 24),
        "U61o01O1O1O1O1O1O1O1O1O1O1O1O1j3"
    );
    let union = Rle::merge(&[a.clone(), b.clone()], false);
    let inter = Rle::merge(&[a.clone(), b.clone()], true);
    assert_eq!(
        union.to_compressed(),
        "Q19g00000000000000004L01O1O1O1O1O1O1O1O1j3"
    );
    assert_eq!(inter.to_compressed(), "U61o01O1O1j=");
    assert_eq!(
        Rle::intersection_union(&a, &b),
        Some((inter.area(), union.area()))
    );
    let iou = Rle::iou(std::slice::from_ref(&a), std::slice::from_ref(&b), &[false]);
    assert_eq!(iou, vec![vec![0.056818181818181816]]);
    let crowd = Rle::iou(std::slice::from_ref(&a), std::slice::from_ref(&b), &[true]);
    assert_eq!(crowd, vec![vec![0.12345679012345678]]);
    // different sizes: merge gives an empty 0x0 RLE, as in maskApi.c
    let other = Rle::zeros(5, 5);
    assert_eq!(Rle::merge(&[a.clone(), other.clone()], false).area(), 0);
    assert_eq!(Rle::intersection_union(&a, &other), None);
}
