//! `trm plot`: PNG curves from a run's `metrics.jsonl` (loss, accuracies, mean steps).
//! Text needs a TrueType font; DejaVu Sans (or `$TRM_PLOT_FONT`) is used when found,
//! otherwise the curves are drawn without labels.

use std::path::Path;

use plotters::prelude::*;
use serde_json::Value;

use crate::error::TrainError;

/// Curves read from a metrics log.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Curves {
    /// (step, training loss), smoothed.
    pub loss: Vec<(f64, f64)>,
    /// (step, training exact accuracy over halted samples), smoothed.
    pub train_exact: Vec<(f64, f64)>,
    /// (step, mean steps of halted training samples), smoothed.
    pub train_steps: Vec<(f64, f64)>,
    /// (step, eval exact accuracy at N_sup).
    pub eval_exact: Vec<(f64, f64)>,
    /// (step, eval token accuracy).
    pub eval_token: Vec<(f64, f64)>,
    /// (step, adaptive exact accuracy).
    pub eval_adaptive_exact: Vec<(f64, f64)>,
    /// (step, adaptive mean steps).
    pub eval_adaptive_steps: Vec<(f64, f64)>,
}

fn smooth(points: &mut [(f64, f64)], alpha: f64) {
    let mut acc = None;
    for p in points.iter_mut() {
        let v = match acc {
            None => p.1,
            Some(a) => alpha * a + (1.0 - alpha) * p.1,
        };
        acc = Some(v);
        p.1 = v;
    }
}

/// Parses a metrics log (lines that do not parse are skipped).
pub fn read_curves(text: &str) -> Curves {
    let mut c = Curves::default();
    for v in text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
        let Some(step) = v["step"].as_f64() else { continue };
        let get = |k: &str| v[k].as_f64();
        match v["kind"].as_str() {
            Some("train") => {
                if let Some(l) = get("loss") {
                    c.loss.push((step, l));
                }
                if get("count").unwrap_or(0.0) > 0.0 {
                    c.train_exact.push((step, get("exact_accuracy").unwrap_or(0.0)));
                    c.train_steps.push((step, get("steps").unwrap_or(0.0)));
                }
            }
            Some("eval") => {
                c.eval_exact.push((step, get("exact_accuracy").unwrap_or(0.0)));
                c.eval_token.push((step, get("accuracy").unwrap_or(0.0)));
                c.eval_adaptive_exact.push((step, get("adaptive_exact_accuracy").unwrap_or(0.0)));
                c.eval_adaptive_steps.push((step, get("adaptive_steps").unwrap_or(0.0)));
            }
            _ => {}
        }
    }
    let alpha = 0.95;
    smooth(&mut c.loss, alpha);
    smooth(&mut c.train_exact, alpha);
    smooth(&mut c.train_steps, alpha);
    c
}

fn load_font() -> bool {
    let candidates = [
        std::env::var("TRM_PLOT_FONT").unwrap_or_default(),
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf".into(),
        "/usr/share/fonts/TTF/DejaVuSans.ttf".into(),
        "/Library/Fonts/Arial.ttf".into(),
        "C:\\Windows\\Fonts\\arial.ttf".into(),
    ];
    for path in candidates.iter().filter(|p| !p.is_empty()) {
        if let Ok(bytes) = std::fs::read(path) {
            let leaked: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, leaked).is_ok() {
                return true;
            }
        }
    }
    false
}

type Series<'a> = (&'a str, &'a [(f64, f64)], RGBColor);

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    series: &[Series<'_>],
    text: bool,
) -> Result<(), String> {
    let pts = series.iter().flat_map(|s| s.1.iter());
    let (mut x1, mut y0, mut y1) = (1.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in pts {
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if !y0.is_finite() {
        (y0, y1) = (0.0, 1.0);
    }
    if y1 - y0 < 1e-9 {
        y1 = y0 + 1.0;
    }
    let pad = 0.05 * (y1 - y0);
    let mut b = ChartBuilder::on(area);
    b.margin(12).x_label_area_size(if text { 30 } else { 5 }).y_label_area_size(if text { 50 } else { 5 });
    if text {
        b.caption(title, ("sans-serif", 20));
    }
    let mut chart = b.build_cartesian_2d(0.0..x1, (y0 - pad)..(y1 + pad)).map_err(|e| e.to_string())?;
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc("step");
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(|e| e.to_string())?;
    for (name, data, color) in series {
        let s = chart
            .draw_series(LineSeries::new(data.iter().copied(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?;
        if text {
            s.label(*name).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        }
    }
    if text {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Writes a 2x2 PNG of the curves in `metrics` to `out`.
pub fn plot_run(metrics: &Path, out: &Path) -> Result<(), TrainError> {
    let text = std::fs::read_to_string(metrics).map_err(|e| TrainError::io(metrics, e))?;
    let c = read_curves(&text);
    if c.loss.is_empty() && c.eval_exact.is_empty() {
        // An empty, truncated-to-nothing or foreign file would give a blank figure.
        return Err(TrainError::checkpoint(
            metrics,
            format!(
                "no training or evaluation lines to plot ({} lines, none a metrics record of `trm train`)",
                text.lines().count()
            ),
        ));
    }
    let has_font = load_font();
    let err = |e: String| TrainError::checkpoint(out, format!("plotting failed: {e}"));
    let root = BitMapBackend::new(out, (1400, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let areas = root.split_evenly((2, 2));
    let green = RGBColor(0, 150, 60);
    panel(&areas[0], "training loss (smoothed)", &[("loss", &c.loss, BLUE)], has_font).map_err(err)?;
    panel(
        &areas[1],
        "exact accuracy",
        &[
            ("train (halted, smoothed)", &c.train_exact, BLUE),
            ("eval @ N_sup", &c.eval_exact, RED),
            ("eval adaptive", &c.eval_adaptive_exact, green),
        ],
        has_font,
    )
    .map_err(err)?;
    panel(&areas[2], "eval token accuracy", &[("token", &c.eval_token, RED)], has_font).map_err(err)?;
    panel(
        &areas[3],
        "mean supervision steps",
        &[("train halted (smoothed)", &c.train_steps, BLUE), ("eval adaptive", &c.eval_adaptive_steps, green)],
        has_font,
    )
    .map_err(err)?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_split_train_and_eval_lines() {
        let log = r#"{"kind":"train","time_s":0.1,"step":1,"loss":2.0,"count":0,"exact_accuracy":0.0,"steps":0}
{"kind":"train","time_s":0.2,"step":2,"loss":1.0,"count":3,"exact_accuracy":0.5,"steps":2.0}
not json
{"kind":"eval","time_s":0.3,"step":2,"exact_accuracy":0.25,"accuracy":0.75,"adaptive_exact_accuracy":0.2,"adaptive_steps":3.5}"#;
        let c = read_curves(log);
        // Smoothed with alpha 0.95: 0.95 * 2 + 0.05 * 1.
        assert_eq!(c.loss.len(), 2);
        assert!((c.loss[1].1 - 1.95).abs() < 1e-12);
        assert_eq!(c.train_exact, vec![(2.0, 0.5)]);
        assert_eq!(c.eval_exact, vec![(2.0, 0.25)]);
        assert_eq!(c.eval_adaptive_steps, vec![(2.0, 3.5)]);
    }

    #[test]
    fn a_log_with_nothing_to_plot_is_an_error_not_a_blank_figure() {
        let dir = std::env::temp_dir().join(format!("trm-plot-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (log, png) = (dir.join("metrics.jsonl"), dir.join("curves.png"));
        for text in ["", "not json\n{\"kind\":\"other\"}\n", "{\"kind\":\"train\",\"st"] {
            std::fs::write(&log, text).unwrap();
            let err = plot_run(&log, &png).unwrap_err().to_string();
            assert!(err.contains("no training or evaluation lines"), "{text:?}: {err}");
            assert!(!png.exists());
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
