//! INT8 engines: QuantizeLinear / DequantizeLinear (QDQ) pairs written into an exported graph
//! around every convolution and every matrix product with a constant weight, the explicit
//! quantization ONNX Runtime (QLinearConv, QLinearMatMul, QLinearAdd on the CPU) and TensorRT
//! build INT8 kernels from.
//!
//! - Weights: int8, symmetric, per output channel (Conv: axis 0 of (O, I, kh, kw); MatMul's
//!   (K, N): axis 1).
//! - Activations, per tensor, range = the minimum and maximum seen over the calibration frames
//!   (widened to hold 0). [`Scheme::Cpu`]: uint8 asymmetric, a Conv's bias int32 at
//!   `x_scale · w_scale[o]` (ONNX Runtime's QLinearConv). [`Scheme::Tensorrt`]: int8 symmetric
//!   (zero point 0), biases float (TensorRT's explicit quantization takes nothing else).
//! - Quantized tensors: the activation inputs of those operations, the outputs of the
//!   convolutions and of the matrix products that feed another quantized product (the rest
//!   write float: QGemm / MatMulIntegerToFloat), and the outputs of residual `Add`s whose two
//!   inputs are quantized. CPU: a `Relu` right after such
//!   an output is folded into its QuantizeLinear (the tensor is calibrated after the Relu, range
//!   from 0, so the uint8 clamp at the zero point is the Relu); TensorRT fuses Relus itself.
//! - Linear layers written as `Gemm` (2-D inputs) keep their bias inside, int32 on the CPU
//!   (ONNX Runtime's QGemm), float for TensorRT.
//! - A nearest-neighbour `Resize` of a quantized tensor (the FPN's top-down path) gets its
//!   input's scale and zero point, so ONNX Runtime runs it on uint8 and the FPN's sums are
//!   QLinearAdds.
//! - Matrix products of two runtime tensors (dynamic convolutions, attention) stay float.
//!
//! [`plan`] picks the tensors on the float graph; [`observe`] makes that graph output them for
//! calibration; [`quantize`] rewrites the graph with the calibrated ranges.

use std::collections::{HashMap, HashSet};

use super::graph::{Attr, Graph, Node};
use super::proto::DataType;
use super::ExportError;

/// Whose INT8 kernels the graph is written for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// ONNX Runtime's CPU kernels (u8 activations, s8 weights; VNNI where the CPU has it).
    #[default]
    Cpu,
    /// TensorRT's explicit quantization (symmetric int8 only).
    Tensorrt,
}

crate::enum_names!(Scheme {
    Cpu => "cpu",
    Tensorrt => "tensorrt" | "trt",
});

/// What [`quantize`] rewrites: the tensors to quantize (value names of the float graph) and
/// the Relus to fold (node index of the producer, node index of the Relu).
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub tensors: Vec<String>,
    folds: Vec<(usize, usize)>,
    /// (output, input) of nearest-neighbour Resizes of a quantized tensor: the output takes the
    /// input's scale and zero point (the same values), so the Resize runs on uint8.
    same_as: Vec<(String, String)>,
}

/// What was quantized, for the manifest.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QuantCounts {
    pub conv: usize,
    pub matmul: usize,
    pub add: usize,
    pub relu_folded: usize,
    pub tensors: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QOp {
    Conv,
    MatMul,
    /// `Gemm(x, W (K, N), bias)` without transposes: a linear layer with its bias.
    Gemm,
    Add,
}

/// The calibration output name of tensor `t`.
pub fn observed_name(t: &str) -> String {
    format!("calib:{t}")
}

fn consumers(g: &Graph) -> HashMap<&str, Vec<usize>> {
    let mut c: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in g.nodes.iter().enumerate() {
        for x in &n.inputs {
            c.entry(x.as_str()).or_default().push(i);
        }
    }
    c
}

fn constants(g: &Graph) -> HashMap<&str, usize> {
    g.initializers
        .iter()
        .enumerate()
        .map(|(i, x)| (x.name.as_str(), i))
        .collect()
}

fn qop(n: &Node, consts: &HashMap<&str, usize>, g: &Graph, s: &HashSet<String>) -> Option<QOp> {
    let weight_2d = |name: &str| {
        consts
            .get(name)
            .is_some_and(|&i| g.initializers[i].dims.len() == 2)
    };
    match n.op.as_str() {
        "Conv" if n.inputs.len() >= 2 && consts.contains_key(n.inputs[1].as_str()) => {
            Some(QOp::Conv)
        }
        "MatMul" if n.inputs.len() == 2 && weight_2d(&n.inputs[1]) => Some(QOp::MatMul),
        "Gemm"
            if n.attrs.is_empty()
                && weight_2d(&n.inputs[1])
                && n.inputs
                    .get(2)
                    .is_none_or(|b| consts.contains_key(b.as_str())) =>
        {
            Some(QOp::Gemm)
        }
        "Add"
            if n.inputs.len() == 2
                && n.inputs
                    .iter()
                    .all(|x| s.contains(x) && !consts.contains_key(x.as_str())) =>
        {
            Some(QOp::Add)
        }
        _ => None,
    }
}

/// Whether node `name` was made under `scope` or a scope below it (`head` holds
/// `head.head_series.0/...`).
fn in_scope(name: &str, scope: &str) -> bool {
    name.strip_prefix(scope)
        .is_some_and(|rest| rest.starts_with('/') || rest.starts_with('.'))
}

/// A nearest-neighbour `Resize` (the FPN's top-down path): its output holds only input values.
fn is_nearest_resize(n: &Node) -> bool {
    n.op == "Resize"
        && n.attrs
            .iter()
            .any(|(k, v)| k == "mode" && matches!(v, Attr::Str(m) if m == "nearest"))
}

/// Whether a quantized Conv, MatMul or Gemm takes tensor `t` as its activation input.
fn feeds_product(
    t: &str,
    users: &HashMap<&str, Vec<usize>>,
    consts: &HashMap<&str, usize>,
    g: &Graph,
    keep_float: &[String],
) -> bool {
    let none = HashSet::new();
    users.get(t).into_iter().flatten().any(|&c| {
        let n = &g.nodes[c];
        n.inputs[0] == t
            && qop(n, consts, g, &none).is_some_and(|k| k != QOp::Add)
            && !kept_float(n, keep_float)
    })
}

/// Whether any node of `g` was made under `scope` (a `--int8-keep-float` that names nothing is
/// a typo, not a request).
pub fn scope_has_nodes(g: &Graph, scope: &str) -> bool {
    g.nodes.iter().any(|n| in_scope(&n.name, scope))
}

fn kept_float(n: &Node, keep_float: &[String]) -> bool {
    keep_float.iter().any(|scope| in_scope(&n.name, scope))
}

/// The tensors to quantize and the Relus to fold, on the float graph. Nodes of the scopes in
/// `keep_float` (e.g. `mask_branch`) stay float: they read their quantized inputs dequantized.
pub fn plan(g: &Graph, scheme: Scheme, keep_float: &[String]) -> Plan {
    let users = consumers(g);
    let consts = constants(g);
    let mut s: HashSet<String> = HashSet::new();
    let mut plan = Plan::default();
    let add = |t: &str, s: &mut HashSet<String>, plan: &mut Plan| {
        if !consts.contains_key(t) && s.insert(t.to_string()) {
            plan.tensors.push(t.to_string());
        }
    };
    for (i, n) in g.nodes.iter().enumerate() {
        if is_nearest_resize(n) && s.contains(&n.inputs[0]) {
            s.insert(n.outputs[0].clone());
            plan.same_as
                .push((n.outputs[0].clone(), n.inputs[0].clone()));
            continue;
        }
        let Some(op) = qop(n, &consts, g, &s) else {
            continue;
        };
        if kept_float(n, keep_float) {
            continue;
        }
        if op != QOp::Add {
            add(&n.inputs[0], &mut s, &mut plan);
        }
        let out = n.outputs[0].as_str();
        let relu = match users.get(out).map(Vec::as_slice) {
            Some(&[r]) if g.nodes[r].op == "Relu" && scheme == Scheme::Cpu => Some(r),
            _ => None,
        };
        // A matrix product's output stays float unless another quantized product reads it:
        // ONNX Runtime's QGemm / MatMulIntegerToFloat write float directly, and a Q/DQ pair
        // before float work (the dynamic convolutions) would only cost two passes and precision.
        // A convolution always has a quantized output (QLinearConv has no float one).
        if op != QOp::Conv && op != QOp::Add {
            let last = relu.map_or(out, |r| g.nodes[r].outputs[0].as_str());
            if !feeds_product(last, &users, &consts, g, keep_float) {
                continue;
            }
        }
        match relu {
            Some(r) => {
                plan.folds.push((i, r));
                add(&g.nodes[r].outputs[0], &mut s, &mut plan);
            }
            None => add(out, &mut s, &mut plan),
        }
    }
    plan
}

/// Make the float graph output every planned tensor (as [`observed_name`]).
pub fn observe(g: &mut Graph, plan: &Plan) {
    for t in &plan.tensors {
        g.observe(t, &observed_name(t));
    }
}

/// uint8 scale and zero point for the range [lo, hi] (widened to hold 0).
pub fn activation_params(lo: f32, hi: f32) -> (f32, u8) {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let scale = ((hi - lo) / 255.0).max(1e-8);
    let zp = (-lo / scale).round().clamp(0.0, 255.0) as u8;
    (scale, zp)
}

/// int8 symmetric scale (zero point 0) for the range [lo, hi].
pub fn symmetric_scale(lo: f32, hi: f32) -> f32 {
    (lo.abs().max(hi.abs()) / 127.0).max(1e-8)
}

/// int8 symmetric per-channel quantization of `w` with `channels` channels along `axis`
/// (`inner` values per step of the axis); returns the values and the scales.
fn quantize_weight(w: &[f32], dims: &[usize], axis: usize) -> (Vec<i8>, Vec<f32>) {
    let channels = dims[axis];
    let inner: usize = dims[axis + 1..].iter().product();
    let channel_of = |i: usize| (i / inner) % channels;
    let mut max = vec![0f32; channels];
    for (i, v) in w.iter().enumerate() {
        let c = channel_of(i);
        max[c] = max[c].max(v.abs());
    }
    let scales: Vec<f32> = max.iter().map(|m| (m / 127.0).max(1e-12)).collect();
    let q = w
        .iter()
        .enumerate()
        .map(|(i, v)| (v / scales[channel_of(i)]).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (q, scales)
}

fn f32s(raw: &[u8]) -> Vec<f32> {
    raw.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn le_f32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Rewrite `g` (the float graph `plan` was made on) with QDQ pairs; `ranges` holds every
/// planned tensor's calibrated [min, max].
pub fn quantize(
    g: &mut Graph,
    plan: &Plan,
    ranges: &HashMap<String, (f32, f32)>,
    scheme: Scheme,
) -> Result<QuantCounts, ExportError> {
    let mut counts = QuantCounts {
        tensors: plan.tensors.len(),
        relu_folded: plan.folds.len(),
        ..QuantCounts::default()
    };
    let mut params: HashMap<String, (String, String, f32)> = HashMap::new();
    for t in &plan.tensors {
        let &(lo, hi) = ranges.get(t).ok_or_else(|| {
            ExportError::Quantize(format!("calibration saw no values of tensor `{t}`"))
        })?;
        if !lo.is_finite() || !hi.is_finite() {
            return Err(ExportError::Quantize(format!(
                "tensor `{t}` has a non-finite range [{lo}, {hi}] on the calibration frames"
            )));
        }
        let (scale, zp, zp_type) = match scheme {
            Scheme::Cpu => {
                let (s, z) = activation_params(lo, hi);
                (s, z, DataType::Uint8)
            }
            Scheme::Tensorrt => (symmetric_scale(lo, hi), 0, DataType::Int8),
        };
        let s = g.push_initializer(format!("{t}:scale"), DataType::Float, &[], le_f32(&[scale]));
        let z = g.push_initializer(format!("{t}:zero_point"), zp_type, &[], vec![zp]);
        params.insert(t.clone(), (s, z, scale));
    }
    for (out, input) in &plan.same_as {
        let p = params.get(input).cloned().ok_or_else(|| {
            ExportError::Quantize(format!("`{out}` resizes `{input}`, which is not quantized"))
        })?;
        params.insert(out.clone(), p);
    }
    // Fold the Relus: the producer writes the Relu's output, the Relu goes.
    let mut dropped = HashSet::new();
    for &(p, r) in &plan.folds {
        let out = g.nodes[r].outputs[0].clone();
        g.nodes[p].outputs[0] = out;
        dropped.insert(r);
    }
    let consts: HashMap<String, usize> = constants(g)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let dq_name = |t: &str| format!("{t}:dq");
    let qdq = |t: &str, (s, z, _): &(String, String, f32)| -> [Node; 2] {
        [
            Graph::node(
                "QuantizeLinear",
                format!("{t}:quantize"),
                vec![t.into(), s.clone(), z.clone()],
                vec![format!("{t}:q")],
                vec![],
            ),
            Graph::node(
                "DequantizeLinear",
                format!("{t}:dequantize"),
                vec![format!("{t}:q"), s.clone(), z.clone()],
                vec![dq_name(t)],
                vec![],
            ),
        ]
    };
    let old = std::mem::take(&mut g.nodes);
    let mut nodes = Vec::with_capacity(old.len() * 2);
    // Planned tensors that no node makes (graph inputs) are quantized first.
    let made: HashSet<&str> = old
        .iter()
        .flat_map(|n| n.outputs.iter().map(String::as_str))
        .collect();
    for t in &plan.tensors {
        if !made.contains(t.as_str()) {
            nodes.extend(qdq(t, &params[t]));
        }
    }
    // Which operations to rewrite, decided once per node against the initializers by name.
    let by_name: HashMap<&str, usize> = consts.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let no_tensors = HashSet::new();
    let mut unused_weights = Vec::new();
    let mut new_inits = Vec::new();
    for (i, mut n) in old.into_iter().enumerate() {
        if dropped.contains(&i) {
            continue;
        }
        let kind = qop(&n, &by_name, g, &no_tensors).filter(|k| *k != QOp::Add);
        let is_add = n.op == "Add"
            && n.inputs.len() == 2
            && n.inputs.iter().all(|x| params.contains_key(x))
            && n.outputs.iter().any(|o| params.contains_key(o));
        let x_scale = n.inputs.first().and_then(|x| params.get(x)).map(|p| p.2);
        for x in n.inputs.iter_mut() {
            if params.contains_key(x.as_str()) {
                *x = dq_name(x);
            }
        }
        if let (Some(kind), Some(x_scale)) = (kind, x_scale) {
            match kind {
                QOp::Conv => counts.conv += 1,
                _ => counts.matmul += 1,
            }
            // The weight's output-channel axis: Conv (O, I, kh, kw) 0, MatMul/Gemm (K, N) 1.
            let axis = if kind == QOp::Conv { 0 } else { 1 };
            let w_name = n.inputs[1].clone();
            let wi = &g.initializers[consts[&w_name]];
            let dims: Vec<usize> = wi.dims.iter().map(|d| *d as usize).collect();
            let (q, scales) = quantize_weight(&f32s(&wi.raw), &dims, axis);
            n.inputs[1] = weight_dq(
                &mut new_inits,
                &mut nodes,
                &w_name,
                &dims,
                q,
                &scales,
                axis as i64,
            );
            unused_weights.push(w_name);
            // Conv and Gemm biases go into the integer product on the CPU.
            let bias = n.inputs.get(2).cloned().filter(|_| scheme == Scheme::Cpu);
            if let Some((b_name, &bi)) = bias.and_then(|b| consts.get(&b).map(|i| (b, i))) {
                let b = f32s(&g.initializers[bi].raw);
                n.inputs[2] = bias_dq(&mut new_inits, &mut nodes, &b_name, &b, &scales, x_scale);
                unused_weights.push(b_name);
            }
        }
        if is_add {
            counts.add += 1;
        }
        let outs: Vec<String> = n
            .outputs
            .iter()
            .filter(|o| params.contains_key(o.as_str()))
            .cloned()
            .collect();
        nodes.push(n);
        for o in outs {
            nodes.extend(qdq(&o, &params[&o]));
        }
    }
    g.nodes = nodes;
    for (name, dtype, dims, raw) in new_inits {
        g.push_initializer(name, dtype, &dims, raw);
    }
    let still_used: HashSet<&str> = g
        .nodes
        .iter()
        .flat_map(|n| n.inputs.iter().map(String::as_str))
        .collect();
    let gone: HashSet<String> = unused_weights
        .into_iter()
        .filter(|w| !still_used.contains(w.as_str()))
        .collect();
    g.initializers.retain(|i| !gone.contains(&i.name));
    Ok(counts)
}

/// A bias as int32 at `x_scale · w_scale[o]` with its DequantizeLinear (axis 0); returns the
/// dequantized value's name.
fn bias_dq(
    inits: &mut Vec<(String, DataType, Vec<usize>, Vec<u8>)>,
    nodes: &mut Vec<Node>,
    b_name: &str,
    b: &[f32],
    w_scales: &[f32],
    x_scale: f32,
) -> String {
    let bs: Vec<f32> = w_scales.iter().map(|s| s * x_scale).collect();
    let raw = b
        .iter()
        .zip(&bs)
        .flat_map(|(v, s)| {
            ((v / s).round().clamp(i32::MIN as f32, i32::MAX as f32) as i32).to_le_bytes()
        })
        .collect();
    let o = b.len();
    inits.push((format!("{b_name}:int32"), DataType::Int32, vec![o], raw));
    inits.push((
        format!("{b_name}:scale"),
        DataType::Float,
        vec![o],
        le_f32(&bs),
    ));
    inits.push((
        format!("{b_name}:zero_point"),
        DataType::Int32,
        vec![o],
        vec![0; 4 * o],
    ));
    nodes.push(Graph::node(
        "DequantizeLinear",
        format!("{b_name}:dequantize"),
        vec![
            format!("{b_name}:int32"),
            format!("{b_name}:scale"),
            format!("{b_name}:zero_point"),
        ],
        vec![format!("{b_name}:dq")],
        vec![("axis".into(), Attr::Int(0))],
    ));
    format!("{b_name}:dq")
}

/// The int8 weight, its scales and zero points as initializers, and the DequantizeLinear that
/// gives the float weight back; returns the dequantized value's name.
fn weight_dq(
    inits: &mut Vec<(String, DataType, Vec<usize>, Vec<u8>)>,
    nodes: &mut Vec<Node>,
    w: &str,
    dims: &[usize],
    q: Vec<i8>,
    scales: &[f32],
    axis: i64,
) -> String {
    let c = scales.len();
    inits.push((
        format!("{w}:int8"),
        DataType::Int8,
        dims.to_vec(),
        q.into_iter().map(|v| v as u8).collect(),
    ));
    inits.push((
        format!("{w}:scale"),
        DataType::Float,
        vec![c],
        le_f32(scales),
    ));
    inits.push((
        format!("{w}:zero_point"),
        DataType::Int8,
        vec![c],
        vec![0; c],
    ));
    nodes.push(Graph::node(
        "DequantizeLinear",
        format!("{w}:dequantize"),
        vec![
            format!("{w}:int8"),
            format!("{w}:scale"),
            format!("{w}:zero_point"),
        ],
        vec![format!("{w}:dq")],
        vec![("axis".into(), Attr::Int(axis))],
    ));
    format!("{w}:dq")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_params_hold_zero_and_the_range() {
        let (s, z) = activation_params(0.0, 6.0);
        assert_eq!(z, 0);
        assert!((s - 6.0 / 255.0).abs() < 1e-7);
        let (s, z) = activation_params(-1.0, 3.0);
        assert!((s - 4.0 / 255.0).abs() < 1e-7);
        assert_eq!(z, 64);
        // Positive-only ranges are widened to 0.
        let (_, z) = activation_params(2.0, 3.0);
        assert_eq!(z, 0);
        assert!((symmetric_scale(-2.0, 1.0) - 2.0 / 127.0).abs() < 1e-7);
    }

    #[test]
    fn nodes_of_a_kept_scope_stay_float() {
        let mut g = Graph::new("t");
        let x = g.input("x", DataType::Float, &[4, 8]);
        let w1 = g.init_f32("w1", &[8, 8], &[0.1; 64]);
        let w2 = g.init_f32("w2", &[8, 8], &[0.2; 64]);
        g.push_scope("fpn");
        let h = g.op("Gemm", &[&x, &w1], vec![]);
        g.pop_scope();
        g.push_scope("mask_branch");
        let y = g.op("Gemm", &[&h, &w2], vec![]);
        let y = g.op("Gemm", &[&y, &w2], vec![]);
        g.pop_scope();
        g.output(&y, "y", DataType::Float, &[4, 8]);
        // All three products quantized: x, h and the first mask_branch output.
        assert_eq!(plan(&g, Scheme::Cpu, &[]).tensors.len(), 3);
        // mask_branch kept float: only the fpn product's input; h feeds float work now.
        let p = plan(&g, Scheme::Cpu, &["mask_branch".into()]);
        assert_eq!(p.tensors, vec![x.clone()]);
        // A scope and the scopes below it, never a longer name that merely starts alike.
        assert!(in_scope("head.head_series.0/Conv_3", "head"));
        assert!(in_scope("mask_branch/Conv_3", "mask_branch"));
        assert!(!in_scope("mask_head/Conv_3", "mask"));
        assert!(!in_scope("fpn/Conv_3", "mask_branch"));
        // A scope that names no node is caught before export (a typo such as `heads`).
        assert!(scope_has_nodes(&g, "mask_branch") && scope_has_nodes(&g, "fpn"));
        assert!(!scope_has_nodes(&g, "heads") && !scope_has_nodes(&g, "mask"));
    }

    #[test]
    fn products_feeding_float_work_write_float_and_nearest_resizes_share_their_input() {
        let mut g = Graph::new("t");
        let x = g.input("x", DataType::Float, &[4, 8]);
        let w1 = g.init_f32("w1", &[8, 8], &[0.1; 64]);
        let w2 = g.init_f32("w2", &[8, 8], &[0.2; 64]);
        // x → Gemm → Relu → Gemm → MatMul with a runtime tensor (float work).
        let h = g.op("Gemm", &[&x, &w1], vec![]);
        let h = g.relu(&h);
        let y = g.op("Gemm", &[&h, &w2], vec![]);
        let z = g.matmul(&y, &x);
        g.output(&z, "z", DataType::Float, &[4, 8]);
        let p = plan(&g, Scheme::Cpu, &[]);
        // The first product feeds the second: its (folded Relu) output is quantized; the second
        // feeds only float work: its output is not.
        assert!(
            p.tensors.contains(&x) && p.tensors.contains(&h),
            "{:?}",
            p.tensors
        );
        assert!(!p.tensors.contains(&y), "{:?}", p.tensors);
        assert_eq!(p.folds.len(), 1);

        let mut g = Graph::new("t");
        let x = g.input("x", DataType::Float, &[1, 2, 4, 4]);
        let w = g.init_f32("w", &[2, 2, 1, 1], &[0.5; 4]);
        let c = g.op("Conv", &[&x, &w], vec![]);
        let scales = g.const_f32("s", &[4], &[1.0, 1.0, 2.0, 2.0]);
        let up = g.op(
            "Resize",
            &[&c, "", &scales],
            vec![("mode", Attr::Str("nearest".into()))],
        );
        g.output(&up, "up", DataType::Float, &[1, 2, 8, 8]);
        let p = plan(&g, Scheme::Cpu, &[]);
        assert_eq!(p.same_as, vec![(up.clone(), c.clone())]);
        let ranges: HashMap<String, (f32, f32)> =
            p.tensors.iter().map(|t| (t.clone(), (-1.0, 3.0))).collect();
        quantize(&mut g, &p, &ranges, Scheme::Cpu).expect("quantize");
        let q = |t: &str| {
            g.nodes
                .iter()
                .find(|n| n.op == "QuantizeLinear" && n.inputs[0] == t)
                .map(|n| n.inputs[1..].to_vec())
        };
        // The Resize's output is quantized with its input's very scale and zero point.
        assert_eq!(q(&up), q(&c));
        assert!(q(&c).is_some());
    }

    #[test]
    fn weights_are_per_channel_and_round_trip() {
        // Two output channels of very different size: per-channel scales keep both.
        let w = [0.5, -1.0, 0.25, 100.0, -50.0, 25.0];
        let (q, s) = quantize_weight(&w, &[2, 3], 0);
        assert_eq!(q[1], -127);
        assert_eq!(q[3], 127);
        for (i, v) in w.iter().enumerate() {
            let back = q[i] as f32 * s[i / 3];
            assert!(
                (back - v).abs() <= s[i / 3] / 2.0 + 1e-6,
                "{i}: {back} vs {v}"
            );
        }
        // Axis 1 of (K, N): one scale per column.
        let (_, s) = quantize_weight(&[1.0, 10.0, -2.0, 5.0], &[2, 2], 1);
        assert!((s[0] - 2.0 / 127.0).abs() < 1e-7 && (s[1] - 10.0 / 127.0).abs() < 1e-7);
    }
}
