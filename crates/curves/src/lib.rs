//! `loss.svg`: a run's training and validation loss per epoch, read from its `metrics.csv` and
//! drawn with plotters' SVG backend (text is left to the viewer, so no fonts are needed).

use std::path::{Path, PathBuf};

use plotters::prelude::*;

/// The chart's file name in a run directory.
pub const FILE: &str = "loss.svg";

/// One epoch's losses, as `metrics.csv` records them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochLoss {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss.
    pub loss: f64,
    /// Mean validation loss, when the run holds data out.
    pub val_loss: Option<f64>,
}

/// plotters' error from drawing on its SVG backend.
pub type DrawError = DrawingAreaErrorKind<std::io::Error>;

/// Why the chart could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CurvesError {
    /// `metrics.csv` could not be read or a row is malformed.
    #[error("{}: {source}", path.display())]
    Metrics {
        /// The file.
        path: PathBuf,
        /// The CSV error (it names the line).
        source: csv::Error,
    },
    /// `metrics.csv` holds no epoch yet.
    #[error("{}: no epoch has finished yet, so there is nothing to plot", .0.display())]
    Empty(PathBuf),
    /// Drawing failed.
    #[error("drawing {}: {error}", path.display())]
    Draw {
        /// The chart being drawn.
        path: PathBuf,
        /// plotters' error.
        error: DrawError,
    },
    /// The chart could not be written.
    #[error(transparent)]
    Write(#[from] data::DataError),
}

/// The rows of a `metrics.csv`.
pub fn read_metrics(path: &Path) -> Result<Vec<EpochLoss>, CurvesError> {
    #[derive(serde::Deserialize)]
    struct Row {
        epoch: usize,
        loss: f64,
        val_loss: Option<f64>,
    }
    let metrics_err = |source| CurvesError::Metrics {
        path: path.to_owned(),
        source,
    };
    let mut reader = csv::Reader::from_path(path).map_err(metrics_err)?;
    reader
        .deserialize::<Row>()
        .map(|row| {
            row.map(|r| EpochLoss {
                epoch: r.epoch,
                loss: r.loss,
                val_loss: r.val_loss,
            })
            .map_err(metrics_err)
        })
        .collect()
}

/// Reads `run_dir/metrics.csv` and writes `run_dir/loss.svg` (atomically); returns its path.
pub fn plot_run(run_dir: &Path) -> Result<PathBuf, CurvesError> {
    let metrics = run_dir.join("metrics.csv");
    let points = read_metrics(&metrics)?;
    if points.is_empty() {
        return Err(CurvesError::Empty(metrics));
    }
    let out = run_dir.join(FILE);
    let name = run_dir.file_name().map_or_else(
        || run_dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let svg = loss_svg(&points, &name).map_err(|error| CurvesError::Draw {
        path: out.clone(),
        error,
    })?;
    data::files::write_atomic(&out, svg.as_bytes())?;
    Ok(out)
}

/// The chart of `points` as SVG text, titled `title`.
pub fn loss_svg(points: &[EpochLoss], title: &str) -> Result<String, DrawError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let values = points
            .iter()
            .flat_map(|p| std::iter::once(p.loss).chain(p.val_loss));
        let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        let margin = ((high - low) * 0.1).max(0.05);
        let last = points.iter().map(|p| p.epoch).max().unwrap_or(1).max(2);
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{title}: loss per epoch"), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(1usize..last, (low - margin)..(high + margin))?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("loss (nats per token)")
            .draw()?;
        let blue = RGBColor(31, 119, 180);
        let orange = RGBColor(255, 127, 14);
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|p| (p.epoch, p.loss)),
                blue.stroke_width(2),
            ))?
            .label("training")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], blue.stroke_width(2)));
        let validation: Vec<(usize, f64)> = points
            .iter()
            .filter_map(|p| p.val_loss.map(|v| (p.epoch, v)))
            .collect();
        if !validation.is_empty() {
            chart
                .draw_series(LineSeries::new(validation, orange.stroke_width(2)))?
                .label("validation")
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], orange.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_become_a_chart_with_both_curves_and_labelled_axes() {
        let dir = std::env::temp_dir().join(format!("curves-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("metrics.csv"),
            "epoch,step,loss,perplexity,val_loss,val_perplexity,tokens_per_s,seconds\n\
             1,10,5.0,148.4,5.2,181.3,1000.0,1.00\n\
             2,20,4.0,54.6,4.6,99.5,1000.0,1.00\n\
             3,30,3.5,33.1,4.5,90.0,1000.0,1.00\n",
        )
        .unwrap();
        let points = read_metrics(&dir.join("metrics.csv")).unwrap();
        assert_eq!(
            points[1],
            EpochLoss {
                epoch: 2,
                loss: 4.0,
                val_loss: Some(4.6)
            }
        );
        let svg = std::fs::read_to_string(plot_run(&dir).unwrap()).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        // Each colour draws its curve and its legend mark.
        assert_eq!(
            svg.matches("stroke=\"#1F77B4\"").count(),
            2,
            "training curve"
        );
        assert_eq!(
            svg.matches("stroke=\"#FF7F0E\"").count(),
            2,
            "validation curve"
        );
        for text in ["epoch", "loss (nats per token)", "training", "validation"] {
            assert!(svg.contains(text), "{text} missing");
        }
        std::fs::write(
            dir.join("metrics.csv"),
            "epoch,step,loss,val_loss\nx,1,2.0,\n",
        )
        .unwrap();
        let e = plot_run(&dir).unwrap_err().to_string();
        assert!(e.contains("metrics.csv") && e.contains("line: 2"), "{e}");
    }
}
