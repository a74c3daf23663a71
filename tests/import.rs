//! `inspro import` on PyTorch checkpoints that this test writes itself in PyTorch's zip format
//! (pickle protocol 2 with persistent storages, as `torch.save` writes them; no torch needed).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use inspro::model::cost::param_shapes;
use inspro::model::ModelConfig;

/// A value of a checkpoint: f32 or i64 (e.g. `num_batches_tracked`).
enum Values {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

#[derive(Default)]
struct Pickle(Vec<u8>);

impl Pickle {
    fn op(&mut self, b: u8) -> &mut Self {
        self.0.push(b);
        self
    }
    fn unicode(&mut self, s: &str) -> &mut Self {
        self.0.push(b'X');
        self.0.extend((s.len() as u32).to_le_bytes());
        self.0.extend(s.as_bytes());
        self
    }
    fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.0.push(b'c');
        self.0.extend(format!("{module}\n{name}\n").as_bytes());
        self
    }
    fn int(&mut self, v: usize) -> &mut Self {
        self.0.push(b'J');
        self.0.extend((v as i32).to_le_bytes());
        self
    }
    fn ordered_dict(&mut self) -> &mut Self {
        self.global("collections", "OrderedDict").op(b')').op(b'R')
    }
    fn ints(&mut self, v: &[usize]) -> &mut Self {
        self.op(b'(');
        for x in v {
            self.int(*x);
        }
        self.op(b't')
    }
    /// `torch._utils._rebuild_tensor_v2(storage key, 0, shape, contiguous stride, False, {})`.
    fn tensor(&mut self, storage: &str, kind: &str, shape: &[usize]) -> &mut Self {
        let numel: usize = shape.iter().product();
        let mut stride = vec![1usize; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            stride[i] = stride[i + 1] * shape[i + 1];
        }
        self.global("torch._utils", "_rebuild_tensor_v2").op(b'(');
        self.op(b'(')
            .unicode("storage")
            .global("torch", kind)
            .unicode(storage)
            .unicode("cpu")
            .int(numel)
            .op(b't')
            .op(b'Q');
        self.int(0)
            .ints(shape)
            .ints(&stride)
            .op(0x89)
            .ordered_dict();
        self.op(b't').op(b'R')
    }
}

/// `torch.save(state_dict)`, or `torch.save({"model": state_dict})` with `wrap`.
fn write_pth(path: &Path, entries: &[(String, Vec<usize>, Values)], wrap: bool) {
    let mut p = Pickle::default();
    p.op(0x80).op(2);
    if wrap {
        p.op(b'}').op(b'(').unicode("model");
    }
    p.ordered_dict().op(b'(');
    for (i, (name, shape, values)) in entries.iter().enumerate() {
        let kind = match values {
            Values::F32(_) => "FloatStorage",
            Values::I64(_) => "LongStorage",
        };
        p.unicode(name).tensor(&i.to_string(), kind, shape);
    }
    p.op(b'u');
    if wrap {
        p.op(b'u');
    }
    p.op(b'.');
    let file = std::fs::File::create(path).expect("create .pth");
    let mut zip = zip::ZipWriter::new(file);
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", opts).unwrap();
    zip.write_all(&p.0).unwrap();
    for (i, (_, _, values)) in entries.iter().enumerate() {
        zip.start_file(format!("archive/data/{i}"), opts).unwrap();
        let bytes: Vec<u8> = match values {
            Values::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Values::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        };
        zip.write_all(&bytes).unwrap();
    }
    zip.start_file("archive/version", opts).unwrap();
    zip.write_all(b"3\n").unwrap();
    zip.finish().unwrap();
}

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7 + seed * 13) % 101) as f32 / 50.0 - 1.0)
        .collect()
}

/// Our backbone key → torchvision's (the inverse of the import's mapping).
fn torchvision_name(key: &str) -> String {
    let k = key.trim_start_matches("backbone.bottom_up.");
    if let Some(p) = k.strip_prefix("stem.conv1.norm.") {
        return format!("bn1.{p}");
    }
    if k == "stem.conv1.weight" {
        return "conv1.weight".into();
    }
    let mut parts = k.splitn(3, '.');
    let (res, block, rest) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let layer = res.trim_start_matches("res").parse::<usize>().unwrap() - 1;
    let rest = if let Some(p) = rest.strip_prefix("shortcut.norm.") {
        format!("downsample.1.{p}")
    } else if rest == "shortcut.weight" {
        "downsample.0.weight".into()
    } else if let Some((conv, p)) = rest.split_once(".norm.") {
        format!("bn{}.{p}", conv.trim_start_matches("conv"))
    } else {
        rest.to_string()
    };
    format!("layer{layer}.{block}.{rest}")
}

fn run_import(from: &str, file: &Path, model: &str, out: &Path) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_inspro"))
        .args(["import", "--from", from])
        .arg(file)
        .args(["--model", model, "--json", "--out"])
        .arg(out)
        .output()
        .expect("run inspro import");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("json report")
}

#[test]
fn torchvision_resnet18_lands_on_the_backbone_and_every_key_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let model = "configs/models/inspro-lite-r18.toml";
    let cfg = ModelConfig::from_file(Path::new(model)).unwrap();
    let backbone: Vec<(String, Vec<usize>)> = param_shapes(&cfg)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k.starts_with("backbone.bottom_up."))
        .collect();
    assert!(backbone.len() > 50);
    let mut entries: Vec<(String, Vec<usize>, Values)> = backbone
        .iter()
        .enumerate()
        .map(|(i, (k, shape))| {
            let tv = torchvision_name(k);
            // One key of the wrong shape.
            let shape = if tv == "layer1.0.conv1.weight" {
                vec![64, 64, 1, 1]
            } else {
                shape.clone()
            };
            let n = shape.iter().product();
            (tv, shape, Values::F32(values(n, i)))
        })
        .collect();
    entries.push((
        "fc.weight".into(),
        vec![1000, 512],
        Values::F32(values(512_000, 1)),
    ));
    entries.push(("fc.bias".into(), vec![1000], Values::F32(values(1000, 2))));
    entries.push((
        "bn1.num_batches_tracked".into(),
        vec![],
        Values::I64(vec![7]),
    ));
    let pth = dir.path().join("resnet18.pth");
    write_pth(&pth, &entries, false);
    let out = dir.path().join("w.safetensors");
    let report = run_import("torchvision-resnet", &pth, model, &out);
    let len = |k: &str| report[k].as_array().unwrap().len();
    assert_eq!(len("mapped"), backbone.len() - 1);
    assert_eq!(len("wrong_shape"), 1);
    assert_eq!(
        report["wrong_shape"][0][0],
        "backbone.bottom_up.res2.0.conv1.weight"
    );
    assert_eq!(
        report["missing"],
        serde_json::json!(["backbone.bottom_up.res2.0.conv1.weight"])
    );
    let unused: Vec<&str> = report["unused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(unused, ["bn1.num_batches_tracked", "fc.bias", "fc.weight"]);
    // The values arrive where they belong.
    let w = candle_core::safetensors::load(&out, &candle_core::Device::Cpu).unwrap();
    let (i, (key, shape)) = backbone
        .iter()
        .enumerate()
        .find(|(_, (k, _))| k.ends_with("res3.0.shortcut.weight"))
        .unwrap();
    let got = w[key].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(got, values(shape.iter().product(), i));
}

#[test]
fn a_detectron2_checkpoint_fills_the_model_and_train_starts_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = "configs/models/inspro-tiny.toml";
    let cfg = ModelConfig::from_file(Path::new(model)).unwrap();
    let shapes = param_shapes(&cfg).unwrap();
    let dropped = shapes[3].0.clone();
    let mut entries: Vec<(String, Vec<usize>, Values)> = shapes
        .iter()
        .enumerate()
        .filter(|(_, (k, _))| *k != dropped)
        .map(|(i, (k, s))| {
            (
                k.clone(),
                s.clone(),
                Values::F32(values(s.iter().product(), i)),
            )
        })
        .collect();
    entries.push((
        "pixel_mean".into(),
        vec![3, 1, 1],
        Values::F32(vec![0.0; 3]),
    ));
    let pth = dir.path().join("model_final.pth");
    write_pth(&pth, &entries, true);
    let out = dir.path().join("w.safetensors");
    let report = run_import("detectron2", &pth, model, &out);
    assert_eq!(report["missing"], serde_json::json!([dropped]));
    assert_eq!(report["unused"], serde_json::json!(["pixel_mean"]));
    assert_eq!(report["mapped"].as_array().unwrap().len(), shapes.len() - 1);
    // What `inspro train --init-from` does with them.
    let device = candle_core::Device::Cpu;
    let (_, varmap) = inspro::model::InsPro::random(&cfg, 0, &device).unwrap();
    let taken =
        inspro::train::trainer::init_from(&varmap, &out, &Default::default(), &device).unwrap();
    let trainable = varmap.all_vars().len();
    assert!(taken > 0 && taken <= trainable, "{taken} of {trainable}");
    let vars: HashMap<String, candle_core::Var> = varmap.data().lock().unwrap().clone();
    let (i, (key, shape)) = shapes
        .iter()
        .enumerate()
        .find(|(_, (k, _))| *k != dropped && vars.contains_key(k))
        .unwrap();
    let got = vars[key].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(got, values(shape.iter().product(), i));
}
