//! `--plot FILE.svg`: the latency percentile plot (produce-ack and end-to-end, log latency
//! over "nines") above the throughput-over-time plot, from the same run. plotters' SVG backend
//! only: text is left to the SVG viewer, so no font or C library is needed.

use std::path::Path;

use plotters::prelude::*;

use crate::report::Report;
use crate::stats::PercentilePoint;

const WIDTH_PX: u32 = 1000;
const HEIGHT_PX: u32 = 900;
/// The percentile axis ends at 99.999 % (five nines).
const NINES_MAX: f64 = 5.0;

/// Nines of a percentile: 90 % → 1, 99 % → 2, 99.9 % → 3.
pub fn nines(percentile: f64) -> f64 {
    let tail = (1.0 - percentile / 100.0).max(1e-9);
    (-tail.log10()).clamp(0.0, NINES_MAX)
}

fn percentile_label(nines: &f64) -> String {
    let percentile = 100.0 * (1.0 - 10f64.powf(-nines));
    match nines.round() as i32 {
        0 => "0%".to_owned(),
        1 => "90%".to_owned(),
        2 => "99%".to_owned(),
        n => format!("{percentile:.prec$}%", prec = (n - 2).max(0) as usize),
    }
}

pub fn write_svg(report: &Report, path: &Path) -> Result<(), String> {
    draw(report, path).map_err(|error| format!("cannot draw {}: {error}", path.display()))
}

fn draw(report: &Report, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(HEIGHT_PX / 2);
    let series: [(&str, &Vec<PercentilePoint>, RGBColor); 2] = [
        ("produce-ack", &report.distributions.produce_ack, BLUE),
        ("end-to-end", &report.distributions.end_to_end, RED),
    ];
    let all = series.iter().flat_map(|(_, points, _)| points.iter());
    let low = all.clone().map(|p| p.latency_us).fold(f64::INFINITY, f64::min).max(1.0);
    let high = all.map(|p| p.latency_us).fold(0.0, f64::max).max(low * 10.0);
    let mut latency = ChartBuilder::on(&top)
        .caption("latency by percentile (µs, log)", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..NINES_MAX, (low / 1.5..high * 1.5).log_scale())?;
    latency
        .configure_mesh()
        .x_labels(6)
        .x_label_formatter(&percentile_label)
        .y_desc("µs")
        .x_desc("percentile")
        .draw()?;
    for (name, points, colour) in series {
        if points.is_empty() {
            continue;
        }
        latency
            .draw_series(LineSeries::new(points.iter().map(|p| (nines(p.percentile), p.latency_us.max(low))), colour))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour));
    }
    latency.configure_series_labels().border_style(BLACK).background_style(WHITE).draw()?;

    let timeline = &report.timeline;
    let t_max = timeline.iter().map(|p| p.t_s).fold(1.0, f64::max);
    let rate_max = timeline.iter().map(|p| p.produced_msgs_per_s.max(p.consumed_msgs_per_s)).fold(1.0, f64::max) * 1.1;
    let mut throughput = ChartBuilder::on(&bottom)
        .caption("throughput over time (msgs/s)", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..t_max, 0.0..rate_max)?;
    throughput.configure_mesh().x_desc("seconds").y_desc("msgs/s").draw()?;
    let produced: Vec<(f64, f64)> = timeline.iter().map(|p| (p.t_s, p.produced_msgs_per_s)).collect();
    let consumed: Vec<(f64, f64)> = timeline.iter().map(|p| (p.t_s, p.consumed_msgs_per_s)).collect();
    if report.parameters.producers > 0 {
        throughput
            .draw_series(LineSeries::new(produced, BLUE))?
            .label("produced (acked)")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE));
    }
    if report.parameters.consumers > 0 {
        throughput
            .draw_series(LineSeries::new(consumed, RED))?
            .label("consumed")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED));
    }
    throughput.configure_series_labels().border_style(BLACK).background_style(WHITE).draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_axis() {
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-6);
        assert_eq!(nines(100.0), NINES_MAX);
        assert_eq!(nines(0.0), 0.0);
        assert_eq!(percentile_label(&2.0), "99%");
        assert_eq!(percentile_label(&3.0), "99.9%");
        assert_eq!(percentile_label(&4.0), "99.99%");
    }
}
