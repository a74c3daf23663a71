//! Exact linear assignment (the Hungarian method with potentials, O(n²m)), what Sparse R-CNN gets
//! from scipy's `linear_sum_assignment`. Costs are f32; NaN and ±inf are replaced by finite
//! values first so that the solver always terminates.

/// Cost used in place of NaN / +inf; −inf becomes its negative.
const BIG: f64 = 1e9;

/// Minimum-cost assignment of every row to a distinct column of a `rows x cols` cost matrix
/// (row-major). If `rows > cols` only `cols` rows are assigned (the cheapest set), as scipy does.
/// Returns `(row, col)` pairs sorted by row.
pub fn linear_sum_assignment(cost: &[f32], rows: usize, cols: usize) -> Vec<(usize, usize)> {
    assert_eq!(cost.len(), rows * cols, "cost matrix is not rows x cols");
    if rows == 0 || cols == 0 {
        return Vec::new();
    }
    let clean = |c: f32| -> f64 {
        if c.is_nan() {
            BIG
        } else if c.is_infinite() {
            if c > 0.0 {
                BIG
            } else {
                -BIG
            }
        } else {
            f64::from(c)
        }
    };
    if rows > cols {
        // Transpose: assign every column to a distinct row.
        let t: Vec<f32> = (0..cols * rows)
            .map(|k| cost[(k % rows) * cols + k / rows])
            .collect();
        let mut pairs: Vec<(usize, usize)> = solve(&t, cols, rows, clean)
            .into_iter()
            .map(|(c, r)| (r, c))
            .collect();
        pairs.sort_unstable();
        return pairs;
    }
    solve(cost, rows, cols, clean)
}

/// rows <= cols. e-maxx's Hungarian algorithm with 1-based potentials.
fn solve(cost: &[f32], n: usize, m: usize, clean: impl Fn(f32) -> f64) -> Vec<(usize, usize)> {
    let a = |i: usize, j: usize| clean(cost[(i - 1) * m + (j - 1)]);
    let mut u = vec![0f64; n + 1];
    let mut v = vec![0f64; m + 1];
    let mut p = vec![0usize; m + 1]; // p[j]: row matched to column j (0 = none)
    let mut way = vec![0usize; m + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0usize;
        let mut minv = vec![f64::INFINITY; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0usize;
            for j in 1..=m {
                if !used[j] {
                    let cur = a(i0, j) - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut pairs: Vec<(usize, usize)> = (1..=m)
        .filter(|&j| p[j] != 0)
        .map(|j| (p[j] - 1, j - 1))
        .collect();
    pairs.sort_unstable();
    pairs
}
