//! Intra-query attention over the feature bank (InsPro Eq. 1) as ONNX (mirrors `model/bank.rs`):
//! ε scores of the bank entries and the current object features, empty entries pushed to −1e9,
//! softmax over time, weighted sum plus the current features.

use super::graph::{Attr, Graph};
use super::{linear, ExportError, Weights};
use crate::model::ModelConfig;

/// obj_features (N, C), bank (T, N, C), bank_valid (T) → next proposal features (N, C).
pub fn export(
    g: &mut Graph,
    cfg: &ModelConfig,
    w: &Weights,
    obj_features: &str,
    bank: &str,
    bank_valid: &str,
) -> Result<String, ExportError> {
    if cfg.bank_size <= 1 {
        // T = 1: "no intra-query attention", q = o_t. The ε weight is unused.
        return Ok(g.op("Identity", &[obj_features], vec![]));
    }
    g.push_scope("intra_query");
    let (t, n, c) = (
        cfg.bank_size as i64,
        cfg.num_queries as i64,
        cfg.fpn_channels,
    );
    let current = g.reshape(obj_features, &[1, n, c as i64]);
    let feats = g.concat(&[bank, &current], 0); // (T+1, N, C)
    let scores = linear(g, w, &feats, "intra_query.epsilon", (c, 1), false)?; // (T+1, N, 1)
    let one = g.const_f32("one", &[1], &[1.0]);
    let valid = g.concat(&[bank_valid, &one], 0); // (T+1)
    let minus_one = g.scalar(-1.0);
    let v = g.add(&valid, &minus_one);
    let big = g.scalar(1e9);
    let penalty = g.mul(&v, &big);
    let penalty = g.reshape(&penalty, &[t + 1, 1, 1]);
    let scores = g.add(&scores, &penalty);
    let weights = g.op("Softmax", &[&scores], vec![("axis", Attr::Int(0))]); // over time
    let weighted = g.mul(&feats, &weights);
    let axes = g.ints(&[0]);
    let pooled = g.op(
        "ReduceSum",
        &[&weighted, &axes],
        vec![("keepdims", Attr::Int(0))],
    ); // (N, C)
    let next = g.add(&pooled, obj_features);
    g.pop_scope();
    Ok(next)
}
