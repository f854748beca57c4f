//! Charts of `sfu` load-test results, as SVG.
//!
//! Reads the files written by `sfu --json PATH` (each a result object, or an
//! array of them), makes one series per server and media kind ("Roost video",
//! "Janus video", ...) and writes two charts against the room size (listeners)
//! into `--out-dir`:
//!
//! - `cpu-per-packet.svg`: server CPU µs per forwarded packet, with the target
//!   (`--target-us`, default 3 µs) as a dashed line;
//! - `memory-per-participant.svg`: server KiB per participant.
//!
//! A result without `"server"` counts as Roost's. Run it as
//!
//! ```text
//! cargo run --release -p roost-bench --bin plot -- --out-dir plots results/*.json
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::Value;

#[derive(Parser, Debug)]
#[command(about = "SVG charts of sfu load-test results")]
struct Args {
    /// Directory the charts are written to (created if missing).
    #[arg(long)]
    out_dir: PathBuf,
    /// Target server CPU per forwarded video packet, in µs.
    #[arg(long, default_value_t = 3.0)]
    target_us: f64,
    /// Result files written by `sfu --json`.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// One result: the room size and what the server spent on it.
#[derive(Debug)]
struct Point {
    listeners: f64,
    cpu_us_per_packet: f64,
    kib_per_participant: f64,
}

/// Series colours (Tableau 10), reused in order when there are more series.
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Points by series name ("Roost video"), each sorted by listeners.
type Series = BTreeMap<String, Vec<Point>>;

fn main() -> Result<()> {
    let args = Args::parse();
    let mut results = Vec::new();
    for path in &args.files {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let value: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        match value {
            Value::Array(items) => results.extend(items.into_iter().map(|v| (path.clone(), v))),
            one => results.push((path.clone(), one)),
        }
    }
    let series = group(&results)?;
    if series.is_empty() {
        bail!("no results in the given files");
    }

    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("creating {}", args.out_dir.display()))?;
    let cpu = args.out_dir.join("cpu-per-packet.svg");
    chart(
        &cpu,
        "Server CPU per forwarded packet",
        "Server CPU per forwarded packet (µs)",
        &series,
        |p| p.cpu_us_per_packet,
        Some((args.target_us, "target (video)")),
    )?;
    let memory = args.out_dir.join("memory-per-participant.svg");
    chart(
        &memory,
        "Server memory per participant",
        "Server memory per participant (KiB)",
        &series,
        |p| p.kib_per_participant,
        None,
    )?;
    println!("wrote {} and {}", cpu.display(), memory.display());
    Ok(())
}

/// Groups results, each tagged with the file it came from, into one series per
/// (server, kind), sorted by listeners.
fn group(results: &[(PathBuf, Value)]) -> Result<Series> {
    let mut series = Series::new();
    for (path, value) in results {
        let (name, point) =
            parse(value).with_context(|| format!("bad result in {}", path.display()))?;
        series.entry(name).or_default().push(point);
    }
    for points in series.values_mut() {
        points.sort_by(|a, b| a.listeners.total_cmp(&b.listeners));
    }
    Ok(series)
}

/// The series name and the point of one result object.
fn parse(value: &Value) -> Result<(String, Point)> {
    value.as_object().context("not a JSON object")?;
    let text = |key: &str| {
        value[key]
            .as_str()
            .with_context(|| format!("\"{key}\" is missing or not a string"))
    };
    let number = |key: &str| {
        value[key]
            .as_f64()
            .with_context(|| format!("\"{key}\" is missing or not a number"))
    };
    let server = if value.get("server").is_some() {
        text("server")?
    } else {
        "roost"
    };
    let mut chars = server.chars();
    let server: String = chars
        .next()
        .into_iter()
        .flat_map(char::to_uppercase)
        .chain(chars)
        .collect();
    let point = Point {
        listeners: number("listeners")?,
        cpu_us_per_packet: number("server_cpu_us_per_packet_out")?,
        kib_per_participant: number("server_kib_per_participant")?,
    };
    Ok((format!("{server} {}", text("kind")?), point))
}

/// Draws `y` of every series against listeners, plus an optional dashed
/// horizontal `target` line, into the SVG file `path`.
fn chart(
    path: &Path,
    title: &str,
    y_label: &str,
    series: &Series,
    y: fn(&Point) -> f64,
    target: Option<(f64, &str)>,
) -> Result<()> {
    let points = series.values().flatten();
    let x_max = points.clone().map(|p| p.listeners).fold(0.0, f64::max) * 1.05;
    let y_max = points.map(y).chain(target.map(|t| t.0)).fold(0.0, f64::max) * 1.1;
    // A range must not be empty, even when every value is 0.
    let (x_max, y_max) = (positive_or_one(x_max), positive_or_one(y_max));

    let root = SVGBackend::new(path, (WIDTH, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    // The legend goes right of the plot, where it can hide no data.
    let (plot_area, legend_area) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(title, ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("Listeners (subscribers per room)")
        .y_desc(y_label)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()?;

    // (name, style, dashed) of each legend row.
    let mut legend = Vec::new();
    for (i, (name, points)) in series.iter().enumerate() {
        let style = COLOURS[i % COLOURS.len()].filled().stroke_width(2);
        let line = points.iter().map(|p| (p.listeners, y(p)));
        chart.draw_series(LineSeries::new(line, style).point_size(4))?;
        legend.push((name.as_str(), style, false));
    }
    if let Some((value, label)) = target {
        let style = BLACK.stroke_width(2);
        chart.draw_series(DashedLineSeries::new(
            [(0.0, value), (x_max, value)],
            8,
            6,
            style,
        ))?;
        legend.push((label, style, true));
    }

    let top = chart.plotting_area().get_pixel_range().1.start;
    let font = ("sans-serif", 14)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (row, (name, style, dashed)) in legend.into_iter().enumerate() {
        let y = top + 10 + 24 * row as i32;
        let sample = [(0, y), (28, y)];
        if dashed {
            legend_area.draw(&DashedPathElement::new(sample, 6, 4, style))?;
        } else {
            legend_area.draw(&PathElement::new(sample, style))?;
            legend_area.draw(&Circle::new((14, y), 4, style))?;
        }
        legend_area.draw(&Text::new(name, (36, y), font.clone()))?;
    }
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Width of the SVG, and of its part right of the plot kept for the legend, in pixels.
const WIDTH: u32 = 960;
const LEGEND_WIDTH: u32 = 180;

fn positive_or_one(value: f64) -> f64 {
    if value > 0.0 {
        value
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result(server: Option<&str>, kind: &str, listeners: u32, cpu: f64) -> (PathBuf, Value) {
        let mut value = json!({
            "kind": kind,
            "listeners": listeners,
            "server_cpu_us_per_packet_out": cpu,
            "server_kib_per_participant": 400.0,
        });
        if let Some(server) = server {
            value["server"] = json!(server);
        }
        (PathBuf::from("r.json"), value)
    }

    #[test]
    fn groups_by_server_and_kind_sorted_by_listeners() {
        let series = group(&[
            result(Some("roost"), "video", 100, 2.0),
            result(Some("janus"), "video", 50, 9.0),
            result(None, "video", 10, 5.0),
            result(Some("roost"), "audio", 10, 1.0),
        ])
        .expect("valid results");
        let names: Vec<_> = series.keys().map(String::as_str).collect();
        assert_eq!(names, ["Janus video", "Roost audio", "Roost video"]);
        let roost_video: Vec<_> = series["Roost video"]
            .iter()
            .map(|p| (p.listeners, p.cpu_us_per_packet))
            .collect();
        assert_eq!(roost_video, [(10.0, 5.0), (100.0, 2.0)]);
    }

    #[test]
    fn names_the_file_of_a_bad_result() {
        let mut bad = result(None, "video", 10, 1.0);
        bad.1["listeners"] = json!("many");
        let error = format!("{:#}", group(&[bad]).unwrap_err());
        assert!(
            error.contains("r.json") && error.contains("listeners"),
            "{error}"
        );
    }
}
