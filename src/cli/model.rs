//! `inspro info`: parameters and GFLOPs of a model config, by part.

use std::path::PathBuf;

use inspro::model::cost::{macs, param_shapes, Part};
use inspro::model::preprocess::FrameGeometry;
use inspro::model::ModelConfig;

/// `WxH`, e.g. `640x360`.
pub fn parse_size(s: &str) -> Result<[usize; 2], String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("`{s}` is not WIDTHxHEIGHT"))?;
    let w: usize = w
        .trim()
        .parse()
        .map_err(|_| format!("bad width in `{s}`"))?;
    let h: usize = h
        .trim()
        .parse()
        .map_err(|_| format!("bad height in `{s}`"))?;
    if w == 0 || h == 0 {
        return Err(format!("`{s}` is empty"));
    }
    Ok([w, h])
}

#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// Model config (TOML), e.g. configs/models/inspro-r50.toml.
    #[arg(long)]
    pub model: PathBuf,
    /// Frame size for the FLOP count.
    #[arg(long, default_value = "640x360", value_parser = parse_size)]
    pub size: [usize; 2],
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn is_buffer(key: &str) -> bool {
    // detectron2 FrozenBatchNorm2d holds buffers only; BatchNorm running statistics are buffers.
    key.ends_with(".running_mean")
        || key.ends_with(".running_var")
        || (key.starts_with("backbone.bottom_up.") && key.contains(".norm."))
}

pub fn info(args: InfoArgs) -> anyhow::Result<()> {
    let cfg = ModelConfig::from_file(&args.model)?;
    let shapes = param_shapes(&cfg)?;
    let mut params = [0usize; 4];
    let mut buffers = 0usize;
    for (key, shape) in &shapes {
        let n: usize = shape.iter().product();
        if is_buffer(key) {
            buffers += n;
        } else {
            params[Part::of_key(key) as usize] += n;
        }
    }
    let g = FrameGeometry::new(&cfg, args.size[0], args.size[1]);
    let (pw, ph) = (g.padded_width, g.padded_height);
    let key = macs(&cfg, pw, ph, cfg.num_stages);
    let non_key = macs(&cfg, pw, ph, 1);
    let total_params: usize = params.iter().sum();
    let key_total: u64 = key.values().sum();
    let non_key_total: u64 = non_key.values().sum();
    let k = cfg.key_frame_interval;
    let avg = if k == 0 {
        key_total as f64
    } else {
        (key_total as f64 + (k - 1) as f64 * non_key_total as f64) / k as f64
    };
    if args.json {
        let parts: serde_json::Map<String, serde_json::Value> = Part::ALL
            .iter()
            .map(|p| {
                (
                    p.name().to_string(),
                    serde_json::json!({
                        "params": params[*p as usize],
                        "gflops_key_frame": key[p] as f64 / 1e9,
                        "gflops_non_key_frame": non_key[p] as f64 / 1e9,
                    }),
                )
            })
            .collect();
        let out = serde_json::json!({
            "model": cfg.name,
            "input": [pw, ph],
            "params": total_params,
            "buffers": buffers,
            "gflops_key_frame": key_total as f64 / 1e9,
            "gflops_non_key_frame": non_key_total as f64 / 1e9,
            "gflops_average": avg / 1e9,
            "parts": parts,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{}: {} backbone, {} queries, {} stages, T = {}, K = {}",
        cfg.name,
        format!("{:?}", cfg.backbone).to_lowercase(),
        cfg.num_queries,
        cfg.num_stages,
        cfg.bank_size,
        k
    );
    println!(
        "frame {}x{} -> network input {}x{} (padded to 32)",
        args.size[0], args.size[1], pw, ph
    );
    println!("GFLOPs are multiply-accumulates (the detectron2/fvcore convention of the paper).");
    println!(
        "{:<10} {:>14} {:>16} {:>16}",
        "part", "params", "GFLOPs key", "GFLOPs non-key"
    );
    for p in Part::ALL {
        println!(
            "{:<10} {:>14} {:>16.2} {:>16.2}",
            p.name(),
            group(params[p as usize]),
            key[&p] as f64 / 1e9,
            non_key[&p] as f64 / 1e9
        );
    }
    println!(
        "{:<10} {:>14} {:>16.2} {:>16.2}",
        "total",
        group(total_params),
        key_total as f64 / 1e9,
        non_key_total as f64 / 1e9
    );
    let unpadded: u64 = macs(&cfg, g.resized_width, g.resized_height, cfg.num_stages)
        .values()
        .sum();
    println!(
        "({} buffers of frozen/running BatchNorm not counted; average GFLOPs per frame {:.2}; key frame at the unpadded {}x{}: {:.2})",
        group(buffers),
        avg / 1e9,
        g.resized_width,
        g.resized_height,
        unpadded as f64 / 1e9
    );
    Ok(())
}

fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}
