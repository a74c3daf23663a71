//! The training picture: loss parts and the feature probe over iterations, validation AP and
//! class accuracy over training hours (iterations where the lines lack them), drawn from `metrics.jsonl` into one PNG (`inspro train` writes it next to the
//! metrics at every evaluation and at the end).

use std::path::Path;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use serde_json::Value;

use super::TrainError;

/// One evaluation: (iteration, AP, AP50, class, covered right, ... and confident), percent.
pub type EvalRow = (f64, f64, f64, f64, f64, f64);

/// Series read from `metrics.jsonl`.
#[derive(Debug, Default)]
pub struct Curves {
    /// (iteration, loss part name, value) of the log lines.
    pub losses: Vec<(f64, Vec<(String, f64)>)>,
    /// (iteration, AP, AP50, best-track class accuracy, objects covered with the right top
    /// class, and also scoring >= 0.5), percent.
    pub evals: Vec<EvalRow>,
    /// Training hours at each of `evals` (resumed parts included), where the line says.
    pub eval_hours: Vec<Option<f64>>,
    /// (iteration, probe test accuracy, majority baseline), percent.
    pub probes: Vec<(f64, f64, f64)>,
}

impl Curves {
    /// The evaluations' x values: training hours when every evaluation line has them (a
    /// campaign's learning curve reads against its hours), else iterations; and the axis name.
    pub fn eval_x(&self) -> (Vec<f64>, &'static str) {
        let hours: Option<Vec<f64>> = self.eval_hours.iter().copied().collect();
        match hours {
            Some(h) if !h.is_empty() => (h, "training hours"),
            _ => (self.evals.iter().map(|e| e.0).collect(), "iteration"),
        }
    }
}

const PARTS: [&str; 9] = [
    "total",
    "class",
    "giou",
    "dice",
    "mask_focal",
    "semantic",
    "roi_class",
    "dn_class",
    "l1",
];

/// Reads the lines `inspro train` writes; lines it does not know are skipped.
pub fn read_metrics(path: &Path) -> Result<Curves, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let mut c = Curves::default();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(it) = v.get("iteration").and_then(Value::as_f64) else {
            continue;
        };
        if let Some(loss) = v.get("loss").and_then(Value::as_object) {
            let parts = PARTS
                .iter()
                .filter_map(|p| Some((p.to_string(), loss.get(*p)?.as_f64()?)))
                .collect();
            c.losses.push((it, parts));
        }
        if let Some(e) = v.get("eval") {
            let get = |k: &str| e.get(k).and_then(Value::as_f64).unwrap_or(0.0) * 100.0;
            // A figure the line lacks (older trainers did not write every one) is NaN, and
            // left out of the picture rather than drawn at 0.
            let track = |k: &str| {
                v.pointer(&format!("/tracks/{k}"))
                    .and_then(Value::as_f64)
                    .map_or(f64::NAN, |x| x * 100.0)
            };
            c.eval_hours
                .push(v.get("train_hours").and_then(Value::as_f64));
            c.evals.push((
                it,
                get("ap"),
                get("ap50"),
                track("best_track_class_accuracy"),
                track("covered_right_top_class"),
                track("covered_right_confident"),
            ));
        }
        if let Some(p) = v.get("probe") {
            let get = |k: &str| p.get(k).and_then(Value::as_f64).unwrap_or(0.0) * 100.0;
            c.probes
                .push((it, get("test_accuracy"), get("majority_accuracy")));
        }
    }
    Ok(c)
}

/// Registers the first TrueType font found among the usual system paths; false when none.
pub fn register_system_font() -> bool {
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DONE.get_or_init(|| {
        let candidates = [
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/TTF/DejaVuSans.ttf",
            "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
            "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
        ];
        for p in candidates {
            if let Ok(bytes) = std::fs::read(p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// A named line of (iteration, value) points.
type Series<'a> = (&'a str, Vec<(f64, f64)>);

/// A moving average over `k` points (the batch-1 losses are noisy).
fn smooth(points: &[(f64, f64)], k: usize) -> Vec<(f64, f64)> {
    let k = k.max(1);
    (0..points.len())
        .map(|i| {
            let lo = i.saturating_sub(k - 1);
            let w = &points[lo..=i];
            (
                points[i].0,
                w.iter().map(|p| p.1).sum::<f64>() / w.len() as f64,
            )
        })
        .collect()
}

fn draw_err<E: std::fmt::Debug>(out: &Path) -> impl Fn(E) -> TrainError + '_ {
    move |e| TrainError::data(out.display(), format!("drawing the training plot: {e:?}"))
}

/// Series `i`'s colour: black, then the product's one palette.
fn series_colour(i: usize) -> RGBColor {
    let [r, g, b] = crate::render::series_colour(i, [0, 0, 0]);
    RGBColor(r, g, b)
}

/// One chart of the picture: series over iterations.
struct Panel<'a> {
    title: &'a str,
    caption_size: u32,
    y_label_area: u32,
    /// A dot at every point too (sparse series: evaluations).
    dots: bool,
    /// The first series' colour ([`series_colour`]).
    first_colour: usize,
    legend: SeriesLabelPosition,
    y_label: &'a dyn Fn(&f64) -> String,
    /// Titles, ticks and legend (only when a font was found).
    text: bool,
}

impl Panel<'_> {
    /// Draws `series` on `area` over x in 0..`max_x` (named `x_desc`) and the y axis `y` (errors
    /// name `out`).
    #[allow(clippy::too_many_arguments)]
    fn draw<Y>(
        &self,
        area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
        max_x: f64,
        x_desc: &str,
        y: Y,
        series: &[Series<'_>],
        out: &Path,
    ) -> Result<(), TrainError>
    where
        Y: AsRangedCoord<Value = f64>,
        Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        let err = draw_err(out);
        let mut b = ChartBuilder::on(area);
        b.margin(10);
        if self.text {
            b.caption(self.title, ("sans-serif", self.caption_size))
                .x_label_area_size(30)
                .y_label_area_size(self.y_label_area);
        }
        let mut chart = b.build_cartesian_2d(0f64..max_x, y).map_err(&err)?;
        let x_label = |x: &f64| {
            if max_x < 20.0 {
                format!("{x:.1}")
            } else {
                format!("{x:.0}")
            }
        };
        if self.text {
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .x_label_formatter(&x_label)
                .y_label_formatter(self.y_label)
                .draw()
                .map_err(&err)?;
        }
        for (i, (name, pts)) in series.iter().enumerate() {
            let colour = series_colour(i + self.first_colour);
            if self.dots {
                chart
                    .draw_series(pts.iter().map(|p| Circle::new(*p, 3, colour.filled())))
                    .map_err(&err)?;
            }
            let s = chart
                .draw_series(LineSeries::new(pts.iter().copied(), colour))
                .map_err(&err)?;
            if self.text {
                s.label(*name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour));
            }
        }
        if self.text {
            chart
                .configure_series_labels()
                .position(self.legend.clone())
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(&err)?;
        }
        Ok(())
    }
}

/// Draws `metrics` into `out` (PNG, 1000x1000): loss parts (log scale, smoothed), validation AP,
/// AP50 and class accuracy, and probe accuracy against its majority baseline.
pub fn write_plot(metrics: &Path, out: &Path) -> Result<(), TrainError> {
    let c = read_metrics(metrics)?;
    let text = register_system_font();
    let err = draw_err(out);
    let root = BitMapBackend::new(out, (1000, 1000)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let panels = root.split_evenly((2, 1));
    let (top, bottom) = (&panels[0], &panels[1]);
    let lower = bottom.split_evenly((1, 2));
    let max_it = c
        .losses
        .iter()
        .map(|l| l.0)
        .chain(c.evals.iter().map(|e| e.0))
        .fold(1.0f64, f64::max);

    // Loss parts.
    let series: Vec<Series> = PARTS
        .iter()
        .map(|p| {
            let pts: Vec<(f64, f64)> = c
                .losses
                .iter()
                .filter_map(|(it, parts)| {
                    parts.iter().find(|(n, _)| n == p).map(|(_, v)| (*it, *v))
                })
                .filter(|(_, v)| *v > 0.0 && v.is_finite())
                .collect();
            (*p, smooth(&pts, 10))
        })
        .filter(|(_, pts)| !pts.is_empty())
        .collect();
    let (lo, hi) = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo < hi {
        (lo * 0.8, hi * 1.2)
    } else {
        (0.01, 100.0)
    };
    let losses = Panel {
        title: "training loss parts (moving average of 10 logs)",
        caption_size: 20,
        y_label_area: 50,
        dots: false,
        first_colour: 0,
        legend: SeriesLabelPosition::MiddleRight,
        y_label: &|y| short_number(*y),
        text,
    };
    losses.draw(top, max_it, "iteration", (lo..hi).log_scale(), &series, out)?;

    // Validation (against training hours where the lines carry them) and probe, in percent.
    let (eval_x, eval_desc) = c.eval_x();
    let eval_series = |f: fn(&EvalRow) -> f64| -> Vec<(f64, f64)> {
        eval_x
            .iter()
            .zip(&c.evals)
            .map(|(x, e)| (*x, f(e)))
            .filter(|(_, y)| y.is_finite())
            .collect()
    };
    let max_eval_x = if eval_desc == "iteration" {
        max_it
    } else {
        eval_x.iter().copied().fold(0.1f64, f64::max) * 1.05
    };
    let panels: [(&str, &str, f64, Vec<Series>); 2] = [
        (
            if c.evals.is_empty() {
                "validation: none yet (or the trunk trained alone)"
            } else {
                "validation (held-out videos), %"
            },
            eval_desc,
            max_eval_x,
            vec![
                ("video AP", eval_series(|e| e.1)),
                ("AP50", eval_series(|e| e.2)),
                ("best track's class right", eval_series(|e| e.3)),
                ("covered, right top class", eval_series(|e| e.4)),
                ("... and scoring >= 0.5", eval_series(|e| e.5)),
            ],
        ),
        (
            "linear probe of RoI features, %",
            "iteration",
            max_it,
            vec![
                (
                    "held-out accuracy",
                    c.probes.iter().map(|p| (p.0, p.1)).collect(),
                ),
                (
                    "majority class",
                    c.probes.iter().map(|p| (p.0, p.2)).collect(),
                ),
            ],
        ),
    ];
    for (area, (title, x_desc, max_x, lines)) in lower.iter().zip(panels) {
        let percent = Panel {
            title,
            caption_size: 18,
            y_label_area: 40,
            dots: true,
            first_colour: 1,
            legend: SeriesLabelPosition::UpperLeft,
            y_label: &|y| format!("{y:.0}"),
            text,
        };
        percent.draw(area, max_x, x_desc, 0f64..100f64, &lines, out)?;
    }
    root.present().map_err(&err)?;
    Ok(())
}

/// A tick label of a log axis: at most three significant digits, no float noise
/// (0.6000000001 is "0.6").
fn short_number(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let digits = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::short_number;

    #[test]
    fn log_axis_labels_are_short() {
        assert_eq!(short_number(0.6000000001), "0.6");
        assert_eq!(short_number(0.30000000004), "0.3");
        assert_eq!(short_number(2.0), "2");
        assert_eq!(short_number(0.125), "0.125");
        assert_eq!(short_number(1234.6), "1235");
    }
}
