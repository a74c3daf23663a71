//! The FPN as ONNX (mirrors `model/fpn.rs`): lateral 1x1 and output 3x3 convs, sum fusion,
//! nearest x2 top-down (`Resize` nearest/asymmetric/floor, exact for the multiple-of-32 sizes).

use super::backbone::{conv, ConvExport, TrunkValues};
use super::graph::{Attr, Graph};
use super::{ExportError, Weights};
use crate::model::nn::ConvSpec;
use crate::model::ModelConfig;

/// P2..P5 value names, each (1, C, Hp/s, Wp/s).
pub struct PyramidValues {
    pub levels: [String; 4],
}

pub fn export(
    g: &mut Graph,
    cfg: &ModelConfig,
    w: &Weights,
    c: &TrunkValues,
) -> Result<PyramidValues, ExportError> {
    g.push_scope("fpn");
    let ch = cfg.fpn_channels;
    let inputs = [&c.c2, &c.c3, &c.c4, &c.c5];
    let cins = cfg.backbone_channels();
    let lateral = |g: &mut Graph, i: usize| -> Result<String, ExportError> {
        let prefix = format!("backbone.fpn_lateral{}", i + 2);
        conv(
            g,
            w,
            inputs[i],
            &ConvExport {
                prefix: &prefix,
                norm: None,
                spec: ConvSpec::same(cins[i], ch, 1, 1).with_bias(),
            },
        )
    };
    let output = |g: &mut Graph, x: &str, i: usize| -> Result<String, ExportError> {
        let prefix = format!("backbone.fpn_output{}", i + 2);
        conv(
            g,
            w,
            x,
            &ConvExport {
                prefix: &prefix,
                norm: None,
                spec: ConvSpec::same(ch, ch, 3, 1).with_bias(),
            },
        )
    };
    let mut prev = lateral(g, 3)?;
    let mut outs = vec![output(g, &prev, 3)?];
    let scales = g.const_f32("up2", &[4], &[1.0, 1.0, 2.0, 2.0]);
    for i in (0..3).rev() {
        let up = g.op(
            "Resize",
            &[&prev, "", &scales],
            vec![
                ("mode", Attr::Str("nearest".into())),
                (
                    "coordinate_transformation_mode",
                    Attr::Str("asymmetric".into()),
                ),
                ("nearest_mode", Attr::Str("floor".into())),
            ],
        );
        let lat = lateral(g, i)?;
        prev = g.add(&lat, &up);
        outs.insert(0, output(g, &prev, i)?);
    }
    g.pop_scope();
    let [p2, p3, p4, p5]: [String; 4] = outs
        .try_into()
        .map_err(|_| crate::model::ModelError::Input("FPN must yield four levels".into()))?;
    Ok(PyramidValues {
        levels: [p2, p3, p4, p5],
    })
}
