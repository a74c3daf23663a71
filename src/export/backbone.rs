//! The backbone trunk as ONNX (mirrors `model/backbone.rs`): detectron2 ResNet with FrozenBN
//! folded into the convs exactly as candle folds it, or the `tiny` trunk.

use super::graph::{Attr, Graph};
use super::{ExportError, Weights};
use crate::model::backbone::{resnet_blocks, tiny_convs, BlockConv};
use crate::model::nn::ConvSpec;
use crate::model::{BackboneKind, ModelConfig};

/// C2..C5 value names.
pub struct TrunkValues {
    pub c2: String,
    pub c3: String,
    pub c4: String,
    pub c5: String,
}

/// How one conv is made.
pub struct ConvExport<'a> {
    /// Key prefix of `weight` (and `bias`).
    pub prefix: &'a str,
    /// Key prefix of the BatchNorm after it (`weight`, `bias`, `running_mean`, `running_var`).
    pub norm: Option<&'a str>,
    /// The same shape and options as the candle layer.
    pub spec: ConvSpec,
}

/// A conv with its bias and norm folded (`nn::Conv2d::fold`: scale = γ / √(var + ε),
/// W' = W·scale, b' = b·scale + β − mean·scale), then ReLU if asked.
pub fn conv(
    g: &mut Graph,
    w: &Weights,
    x: &str,
    conv_export: &ConvExport<'_>,
) -> Result<String, ExportError> {
    let (prefix, spec) = (conv_export.prefix, &conv_export.spec);
    let (cin, cout, k) = (spec.in_channels, spec.out_channels, spec.kernel);
    let mut weight = w.get(&format!("{}.weight", prefix), &[cout, cin, k, k])?;
    let mut bias = if spec.bias {
        w.get(&format!("{}.bias", prefix), &[cout])?
    } else {
        vec![0f32; cout]
    };
    if let Some(norm) = conv_export.norm {
        let get = |name: &str| w.get(&format!("{norm}.{name}"), &[cout]);
        let (gamma, beta, mean, var) = (
            get("weight")?,
            get("bias")?,
            get("running_mean")?,
            get("running_var")?,
        );
        let per_out = cin * k * k;
        for o in 0..cout {
            let scale = gamma[o] / (var[o] + 1e-5f32).sqrt();
            for v in &mut weight[o * per_out..(o + 1) * per_out] {
                *v *= scale;
            }
            bias[o] = bias[o] * scale + (beta[o] - mean[o] * scale);
        }
    }
    let wn = g.init_f32(&format!("{}.weight", prefix), &[cout, cin, k, k], &weight);
    let bn = g.init_f32(&format!("{}.bias", prefix), &[cout], &bias);
    let (p, s) = (spec.padding as i64, spec.stride as i64);
    let y = g.op(
        "Conv",
        &[x, &wn, &bn],
        vec![
            ("kernel_shape", Attr::Ints(vec![k as i64, k as i64])),
            ("pads", Attr::Ints(vec![p, p, p, p])),
            ("strides", Attr::Ints(vec![s, s])),
        ],
    );
    Ok(if spec.relu { g.relu(&y) } else { y })
}

fn conv_bn(
    g: &mut Graph,
    w: &Weights,
    x: &str,
    prefix: &str,
    (cin, cout, k, stride): (usize, usize, usize, usize),
    relu: bool,
) -> Result<String, ExportError> {
    let norm = format!("{prefix}.norm");
    conv(
        g,
        w,
        x,
        &ConvExport {
            prefix,
            norm: Some(&norm),
            spec: ConvSpec::same(cin, cout, k, stride).with_relu(relu),
        },
    )
}

fn resnet(
    g: &mut Graph,
    kind: BackboneKind,
    w: &Weights,
    image: &str,
) -> Result<Vec<String>, ExportError> {
    let root = "backbone.bottom_up";
    let x = conv_bn(
        g,
        w,
        image,
        &format!("{root}.stem.conv1"),
        (3, 64, 7, 2),
        true,
    )?;
    // 3x3/2 max-pool, padding 1: the input is post-ReLU, so -inf padding equals candle's zeros.
    let mut x = g.op(
        "MaxPool",
        &[&x],
        vec![
            ("kernel_shape", Attr::Ints(vec![3, 3])),
            ("pads", Attr::Ints(vec![1, 1, 1, 1])),
            ("strides", Attr::Ints(vec![2, 2])),
        ],
    );
    let mut outs = Vec::with_capacity(4);
    let blocks = resnet_blocks(kind);
    for (i, layout) in blocks.iter().enumerate() {
        let p = format!("{root}.{}", layout.key());
        // A conv + norm of this block, as its layout lists it.
        let block = |g: &mut Graph, x: &str, (key, dims, relu): BlockConv| {
            conv_bn(g, w, x, &format!("{p}.{key}"), dims, relu)
        };
        let mut y = x.clone();
        for conv in layout.convs() {
            y = block(g, &y, conv)?;
        }
        let identity = match layout.shortcut() {
            Some(conv) => block(g, &x, conv)?,
            None => x.clone(),
        };
        let sum = g.add(&y, &identity);
        x = g.relu(&sum);
        // The stage's output: after its last block.
        if blocks
            .get(i + 1)
            .is_none_or(|next| next.stage != layout.stage)
        {
            outs.push(x.clone());
        }
    }
    Ok(outs)
}

fn tiny(
    g: &mut Graph,
    channels: [usize; 4],
    w: &Weights,
    image: &str,
) -> Result<Vec<String>, ExportError> {
    let root = "backbone.bottom_up";
    let mut x = image.to_string();
    let mut outs = Vec::with_capacity(4);
    for c in tiny_convs(channels) {
        let spec = ConvSpec::same(c.cin, c.cout, 3, c.stride)
            .with_bias()
            .with_relu(true);
        let prefix = format!("{root}.{}", c.key);
        x = conv(
            g,
            w,
            &x,
            &ConvExport {
                prefix: &prefix,
                norm: None,
                spec,
            },
        )?;
        if c.ends_stage {
            outs.push(x.clone());
        }
    }
    Ok(outs)
}

/// image (1, 3, Hp, Wp) → C2..C5.
pub fn export(
    g: &mut Graph,
    cfg: &ModelConfig,
    w: &Weights,
    image: &str,
) -> Result<TrunkValues, ExportError> {
    g.push_scope("backbone");
    let outs = match cfg.backbone {
        BackboneKind::Resnet50 | BackboneKind::Resnet18 => resnet(g, cfg.backbone, w, image)?,
        BackboneKind::Tiny => tiny(g, cfg.tiny_channels, w, image)?,
    };
    g.pop_scope();
    let mut it = outs.into_iter();
    let mut next = || it.next().unwrap_or_default();
    Ok(TrunkValues {
        c2: next(),
        c3: next(),
        c4: next(),
        c5: next(),
    })
}
