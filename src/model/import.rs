//! PyTorch checkpoints onto our keys: torchvision ResNet-18/50 ImageNet weights onto
//! `backbone.bottom_up.*` (detectron2's names), or a detectron2-format Sparse R-CNN / InsPro
//! checkpoint (`{"model": state_dict}`, the names our weights mirror) onto the whole model.
//! candle reads the `.pth` (PyTorch's zip format); every key is reported as mapped, missing,
//! unused or of the wrong shape.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Tensor};

use super::cost::param_shapes;
use super::{ModelConfig, ModelError};

/// Where a checkpoint comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `torchvision.models.resnet18/50(weights=...)`.state_dict().
    TorchvisionResnet,
    /// detectron2's checkpointer: `{"model": state_dict}` with our (Sparse R-CNN) names.
    Detectron2,
}

crate::enum_names!(Source {
    TorchvisionResnet => "torchvision-resnet",
    Detectron2 => "detectron2",
});

/// What happened to every key.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ImportReport {
    /// (checkpoint key, model key).
    pub mapped: Vec<(String, String)>,
    /// Model keys the import is meant to fill that got nothing (for torchvision: the backbone's).
    pub missing: Vec<String>,
    /// Checkpoint keys with no place in the model.
    pub unused: Vec<String>,
    /// (model key, checkpoint shape, model shape): not written.
    pub wrong_shape: Vec<(String, Vec<usize>, Vec<usize>)>,
}

/// torchvision's name of a ResNet parameter → detectron2's, below `backbone.bottom_up.`.
pub fn torchvision_to_detectron2(key: &str) -> Option<String> {
    const NORM: [&str; 4] = ["weight", "bias", "running_mean", "running_var"];
    if let Some(rest) = key.strip_prefix("conv1.") {
        return (rest == "weight").then(|| "stem.conv1.weight".to_string());
    }
    if let Some(rest) = key.strip_prefix("bn1.") {
        return NORM
            .contains(&rest)
            .then(|| format!("stem.conv1.norm.{rest}"));
    }
    let rest = key.strip_prefix("layer")?;
    let (stage, rest) = rest.split_once('.')?;
    let stage: usize = stage.parse().ok()?;
    let (block, rest) = rest.split_once('.')?;
    let block: usize = block.parse().ok()?;
    let res = format!("res{}.{block}", stage + 1);
    let (module, param) = rest.split_once('.')?;
    let out = match (module, param) {
        (m, "weight") if m.starts_with("conv") => format!("{res}.{m}.weight"),
        (m, p) if m.starts_with("bn") && NORM.contains(&p) => {
            format!("{res}.conv{}.norm.{p}", &m[2..])
        }
        ("downsample", p) => match p.split_once('.')? {
            ("0", "weight") => format!("{res}.shortcut.weight"),
            ("1", q) if NORM.contains(&q) => format!("{res}.shortcut.norm.{q}"),
            _ => return None,
        },
        _ => return None,
    };
    Some(out)
}

/// Read `pth` and map it onto `cfg`'s keys. Returns the mapped tensors (f32) and the report.
pub fn import(
    source: Source,
    pth: &Path,
    cfg: &ModelConfig,
) -> Result<(HashMap<String, Tensor>, ImportReport), ModelError> {
    let bad_file = |e: candle_core::Error| ModelError::WeightFile {
        file: pth.display().to_string(),
        reason: e.to_string(),
    };
    let tensors = match source {
        Source::TorchvisionResnet => candle_core::pickle::read_all(pth).map_err(bad_file)?,
        // A bare state_dict also works.
        Source::Detectron2 => candle_core::pickle::read_all_with_key(pth, Some("model"))
            .or_else(|_| candle_core::pickle::read_all(pth))
            .map_err(bad_file)?,
    };
    let shapes: BTreeMap<String, Vec<usize>> = param_shapes(cfg)?.into_iter().collect();
    let target = |k: &str| match source {
        Source::TorchvisionResnet => {
            torchvision_to_detectron2(k).map(|t| format!("backbone.bottom_up.{t}"))
        }
        Source::Detectron2 => Some(k.to_string()),
    };
    let mut report = ImportReport::default();
    let mut out = HashMap::new();
    let mut sorted = tensors;
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, t) in sorted {
        let Some(to) = target(&key).filter(|to| shapes.contains_key(to)) else {
            report.unused.push(key);
            continue;
        };
        let want = &shapes[&to];
        if t.dims() != want.as_slice() {
            report
                .wrong_shape
                .push((to, t.dims().to_vec(), want.clone()));
            continue;
        }
        out.insert(to.clone(), t.to_dtype(DType::F32)?);
        report.mapped.push((key, to));
    }
    let expected = |k: &str| match source {
        Source::TorchvisionResnet => k.starts_with("backbone.bottom_up."),
        Source::Detectron2 => true,
    };
    report.missing = shapes
        .keys()
        .filter(|k| expected(k) && !out.contains_key(*k))
        .cloned()
        .collect();
    Ok((out, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchvision_names_map_to_detectron2() {
        for (torchvision, ours) in [
            ("conv1.weight", Some("stem.conv1.weight")),
            ("bn1.running_var", Some("stem.conv1.norm.running_var")),
            ("layer1.0.conv2.weight", Some("res2.0.conv2.weight")),
            ("layer4.1.bn3.bias", Some("res5.1.conv3.norm.bias")),
            (
                "layer2.0.downsample.1.running_mean",
                Some("res3.0.shortcut.norm.running_mean"),
            ),
            (
                "layer3.0.downsample.0.weight",
                Some("res4.0.shortcut.weight"),
            ),
            ("bn1.num_batches_tracked", None),
            ("fc.weight", None),
        ] {
            assert_eq!(torchvision_to_detectron2(torchvision).as_deref(), ours);
        }
    }
}
