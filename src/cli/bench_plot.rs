//! `inspro plot --bench out/bench.jsonl`: ms per key frame by part for every configuration the
//! benchmark measured (one horizontal stacked bar each: preprocess, backbone, FPN, mask branch,
//! heads and mask head, host-side state), into one PNG for docs/perf.md.

use std::path::Path;

use anyhow::{bail, Context};
use plotters::prelude::*;
use serde_json::Value;

const PARTS: [(&str, &str); 6] = [
    ("preprocess_ms", "preprocess"),
    ("backbone_ms", "backbone"),
    ("fpn_ms", "FPN"),
    ("mask_branch_ms", "mask branch"),
    ("heads_and_mask_head_ms", "heads + mask head"),
    ("host_state_ms", "host-side state"),
];

/// One bar: its label and its parts' ms.
fn bars(text: &str) -> Vec<(String, [f64; 6])> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("backbone_ms").is_some())
        .map(|v| {
            let engine = v["engine"].as_str().unwrap_or("?");
            let engine = if engine.starts_with("onnxruntime") {
                "ORT"
            } else {
                "candle"
            };
            let int8 = if v["int8"].as_bool() == Some(true) {
                " int8"
            } else {
                ""
            };
            let threads = match &v["threads"] {
                Value::String(s) => s.clone(),
                t => t.to_string(),
            };
            let size = v["size"]
                .as_array()
                .map(|s| format!(" {}x{}", s[0], s.get(1).unwrap_or(&Value::Null)))
                .unwrap_or_default();
            let label = format!(
                "{engine} {}{int8}{size} {threads}t",
                v["model"]
                    .as_str()
                    .unwrap_or("?")
                    .trim_start_matches("inspro-")
            );
            let parts = PARTS.map(|(k, _)| {
                v[k].as_f64()
                    .filter(|x| x.is_finite())
                    .unwrap_or(0.0)
                    .max(0.0)
            });
            (label, parts)
        })
        .collect()
}

pub fn plot_bench(input: &Path, out: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    let rows = bars(&text);
    if rows.is_empty() {
        bail!(
            "{}: no `inspro bench --json` lines with parts",
            input.display()
        );
    }
    if !inspro::train::plot::register_system_font() {
        tracing::warn!("no TrueType font found: the plot has no text");
    }
    let err = |e: &dyn std::fmt::Debug| anyhow::anyhow!("drawing {}: {e:?}", out.display());
    let height = 120 + 28 * rows.len() as u32;
    let root = BitMapBackend::new(out, (1100, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let max = rows
        .iter()
        .map(|(_, p)| p.iter().sum::<f64>())
        .fold(1.0, f64::max);
    let n = rows.len() as u32;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "ms per key frame by part (lower is better)",
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(230)
        .build_cartesian_2d(0f64..max * 1.45, (0u32..n).into_segmented())
        .map_err(|e| err(&e))?;
    // Row i from the top is segment n - 1 - i.
    let row = |i: usize| n - 1 - i as u32;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n as usize)
        .y_label_formatter(&|y| match y {
            SegmentValue::CenterOf(k) if *k < n => rows[(n - 1 - k) as usize].0.clone(),
            _ => String::new(),
        })
        .x_desc("ms")
        .draw()
        .map_err(|e| err(&e))?;
    // Grey for the first part (host-side work), then the product's one palette.
    let colour = |k: usize| {
        let [r, g, b] = inspro::render::series_colour(k, [120, 120, 120]);
        RGBColor(r, g, b)
    };
    for (k, (_, name)) in PARTS.iter().enumerate() {
        let c = colour(k);
        let rects: Vec<_> = rows
            .iter()
            .enumerate()
            .map(|(i, (_, p))| {
                let x0: f64 = p[..k].iter().sum();
                let mut r = Rectangle::new(
                    [
                        (x0, SegmentValue::Exact(row(i))),
                        (x0 + p[k], SegmentValue::Exact(row(i) + 1)),
                    ],
                    c.filled(),
                );
                r.set_margin(4, 4, 0, 0);
                r
            })
            .collect();
        chart
            .draw_series(rects)
            .map_err(|e| err(&e))?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
    }
    chart
        .draw_series(rows.iter().enumerate().map(|(i, (_, p))| {
            let total: f64 = p.iter().sum();
            Text::new(
                format!("{total:.1}"),
                (total + max * 0.01, SegmentValue::CenterOf(row(i))),
                ("sans-serif", 13),
            )
        }))
        .map_err(|e| err(&e))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
