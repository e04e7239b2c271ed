/// Something that draws itself as an SVG document.
public protocol Chart: Sendable {
    /// The chart title (also the SVG's accessible name).
    var title: String { get }
    /// The chart as an SVG canvas, for inlining or further drawing.
    func canvas() -> SVGCanvas
}

extension Chart {
    /// The chart as a standalone SVG document (with the SVG namespace), ready for a `.svg` file.
    public func render() -> String { canvas().render(standalone: true) }
}

/// An x/y pair of data.
public struct DataPoint: Sendable, Equatable {
    public var x: Double
    public var y: Double

    public init(_ x: Double, _ y: Double) {
        self.x = x
        self.y = y
    }
}

/// A dashed reference line across the plot with a short label: cache sizes on a bandwidth
/// chart ("L1", "L2", "L3" at their sizes), a peak on a throughput chart.
public struct ReferenceLine: Sendable {
    public enum Orientation: Sendable { case vertical, horizontal }

    public var orientation: Orientation
    /// Data value on the x axis (vertical lines) or y axis (horizontal lines).
    public var value: Double
    public var label: String

    /// A vertical line at x = `value`.
    public static func vertical(at value: Double, label: String) -> ReferenceLine {
        ReferenceLine(orientation: .vertical, value: value, label: label)
    }

    /// A horizontal line at y = `value`.
    public static func horizontal(at value: Double, label: String) -> ReferenceLine {
        ReferenceLine(orientation: .horizontal, value: value, label: label)
    }
}

/// A multi-series line chart with markers, on linear, base-2 or base-10 axes.
///
/// Typical uses: best-so-far GOP/s against trial number per tuning strategy (`step: true`);
/// throughput against batch size per kernel family (`x: .log2`); bandwidth against working-set
/// size (`x: .log2` with `.bytes` labels) with vertical reference lines at the cache sizes.
/// Points that the axes cannot show (NaN, infinite, or not positive on a log axis) are skipped
/// and break the line there.
public struct LineChart: Chart {
    /// One line.
    public struct Series: Sendable {
        /// Legend text, and the `data-name` of the series group in the SVG.
        public var name: String
        /// The data, drawn in this order (not sorted).
        public var points: [DataPoint]
        /// Draw as a step function (hold each value until the next x); `nil` uses the chart's setting.
        public var step: Bool?
        /// Markers on each point; `nil` shows them when the series has at most 40 points.
        public var showsMarkers: Bool?
        /// Dash pattern of the line, empty for solid.
        public var dash: [Double]

        public init(_ name: String, points: [DataPoint], step: Bool? = nil, showsMarkers: Bool? = nil,
                    dash: [Double] = []) {
            self.name = name
            self.points = points
            self.step = step
            self.showsMarkers = showsMarkers
            self.dash = dash
        }

        /// A series from parallel x and y arrays (extra elements of the longer one are ignored).
        public init(_ name: String, x: [Double], y: [Double], step: Bool? = nil, showsMarkers: Bool? = nil) {
            self.init(name, points: zip(x, y).map { DataPoint($0, $1) }, step: step, showsMarkers: showsMarkers)
        }
    }

    /// Shown above the plot, and the SVG's accessible name.
    public var title: String
    /// The horizontal axis: kind, title, label format, optional fixed domain.
    public var xAxis: AxisSpec
    /// The vertical axis.
    public var yAxis: AxisSpec
    /// The lines, in legend order; colours and markers follow the theme's order.
    public var series: [Series]
    /// Dashed vertical or horizontal lines with labels; their values are kept inside the axes.
    public var referenceLines: [ReferenceLine]
    /// Default for series that do not say: draw lines as steps.
    public var step: Bool
    /// On a linear y axis, start the automatic range at zero (throughputs, bandwidths).
    public var yIncludesZero: Bool
    /// Size of the SVG in user units (it scales to the page in the HTML report).
    public var width: Double
    public var height: Double
    /// Colours, font sizes and marker shapes.
    public var theme: ChartTheme

    public init(title: String, xAxis: AxisSpec, yAxis: AxisSpec, series: [Series] = [],
                referenceLines: [ReferenceLine] = [], step: Bool = false, yIncludesZero: Bool = true,
                width: Double = 820, height: Double = 460, theme: ChartTheme = ChartTheme()) {
        self.title = title
        self.xAxis = xAxis
        self.yAxis = yAxis
        self.series = series
        self.referenceLines = referenceLines
        self.step = step
        self.yIncludesZero = yIncludesZero
        self.width = width
        self.height = height
        self.theme = theme
    }

    public func canvas() -> SVGCanvas {
        let usable = series.flatMap(\.points).filter { xAxis.kind.accepts($0.x) && yAxis.kind.accepts($0.y) }
        let xRefs = referenceLines.filter { $0.orientation == .vertical }.map(\.value)
        let yRefs = referenceLines.filter { $0.orientation == .horizontal }.map(\.value)
        let xDomain = xAxis.domain ?? xAxis.kind.automaticDomain(for: usable.map(\.x) + xRefs, tight: true)
        let yDomain = yAxis.domain
            ?? yAxis.kind.automaticDomain(for: usable.map(\.y) + yRefs, includeZero: yIncludesZero)
        let legend = series.enumerated().map { index, s in
            LegendEntry(label: s.name, color: theme.color(index), marker: shows(s) ? theme.marker(index) : nil,
                        showsLine: true, dash: s.dash)
        }
        let frame = ChartFrame(width: width, height: height, title: title, xAxis: xAxis, xDomain: xDomain,
                               yAxis: yAxis, yDomain: yDomain, legend: legend, theme: theme)
        var canvas = SVGCanvas(width: width, height: height, title: title)
        frame.drawBackground(&canvas)
        drawReferenceLines(&canvas, frame)
        for (index, s) in series.enumerated() { drawSeries(s, index: index, &canvas, frame) }
        drawReferenceLabels(&canvas, frame)
        frame.drawAxes(&canvas, title: title, xTitle: xAxis.title, yTitle: yAxis.title)
        frame.drawLegend(&canvas, legend)
        return canvas
    }

    private func drawSeries(_ s: Series, index: Int, _ canvas: inout SVGCanvas, _ frame: ChartFrame) {
        let color = theme.color(index)
        let shape = theme.marker(index)
        let stepped = s.step ?? step
        let showsMarkers = shows(s)
        // Runs of drawable points; an undrawable point ends a run.
        var runs: [[(DataPoint, Point)]] = [[]]
        for p in s.points {
            if xAxis.kind.accepts(p.x), yAxis.kind.accepts(p.y), let pixel = frame.point(p.x, p.y) {
                runs[runs.count - 1].append((p, pixel))
            } else if runs[runs.count - 1].count > 0 {
                runs.append([])
            }
        }
        canvas.group(cssClass: "series", data: ["name": s.name, "index": String(index)], title: s.name) { g in
            for run in runs where run.count >= 2 {
                var path: [Point] = []
                for (offset, (_, pixel)) in run.enumerated() {
                    if stepped, offset > 0, let previous = path.last { path.append(Point(pixel.x, previous.y)) }
                    path.append(pixel)
                }
                for piece in Clip.polyline(path, to: frame.plot.insetBy(-1)) {
                    g.polyline(piece, stroke: Stroke(color, width: theme.lineWidth, dash: s.dash))
                }
            }
            guard showsMarkers else { return }
            for (data, pixel) in runs.joined() where frame.plot.contains(pixel, tolerance: 0.5) {
                g.group(cssClass: "point", title: s.name + ": " + xAxis.format.label(data.x) + ", " + yAxis.format.label(data.y)) { m in
                    m.marker(shape, at: pixel, radius: theme.markerRadius, color: color)
                }
            }
        }
    }

    /// Whether the series gets markers: as it says, or when it has at most 40 points.
    private func shows(_ s: Series) -> Bool { s.showsMarkers ?? (s.points.count <= 40) }

    /// The dashed reference lines, drawn under the data.
    private func drawReferenceLines(_ canvas: inout SVGCanvas, _ frame: ChartFrame) {
        guard !referenceLines.isEmpty else { return }
        let plot = frame.plot
        let style = Stroke(theme.reference, width: 1.2, dash: [5, 4])
        canvas.group(cssClass: "reference-lines") { g in
            for line in referenceLines {
                switch line.orientation {
                case .vertical:
                    guard let px = frame.x.pixel(line.value), px >= plot.minX - 0.5, px <= plot.maxX + 0.5 else { continue }
                    g.line(from: Point(px, plot.minY), to: Point(px, plot.maxY), stroke: style)
                case .horizontal:
                    guard let py = frame.y.pixel(line.value), py >= plot.minY - 0.5, py <= plot.maxY + 0.5 else { continue }
                    g.line(from: Point(plot.minX, py), to: Point(plot.maxX, py), stroke: style)
                }
            }
        }
    }

    /// The reference lines' labels, drawn over the data with a halo: vertical lines are labelled
    /// at the top, right of the line (left of it near the right edge), dropping a row when labels
    /// would collide; horizontal lines above the line at the right end.
    private func drawReferenceLabels(_ canvas: inout SVGCanvas, _ frame: ChartFrame) {
        guard !referenceLines.isEmpty else { return }
        let plot = frame.plot
        let size = theme.annotationSize
        let style = TextStyle(size: size, color: theme.reference, bold: true, halo: theme.plotBackground)
        canvas.group(cssClass: "reference-labels") { g in
            var boxes: [Rect] = []
            for line in referenceLines.sorted(by: { $0.value < $1.value }) where !line.label.isEmpty {
                var at: Point
                var anchor = TextAnchor.start
                switch line.orientation {
                case .vertical:
                    guard let px = frame.x.pixel(line.value), px >= plot.minX - 0.5, px <= plot.maxX + 0.5 else { continue }
                    at = Point(px + 4, plot.minY + size + 4)
                    if TextMetrics.box(line.label, at: at, fontSize: size, anchor: .start).maxX > plot.maxX - 2 {
                        at.x = px - 4
                        anchor = .end
                    }
                case .horizontal:
                    guard let py = frame.y.pixel(line.value), py >= plot.minY - 0.5, py <= plot.maxY + 0.5 else { continue }
                    at = Point(plot.maxX - 6, py - 5)
                    anchor = .end
                }
                var box = TextMetrics.box(line.label, at: at, fontSize: size, anchor: anchor)
                while boxes.contains(where: { $0.intersects(box) }) && box.maxY < plot.maxY {
                    at.y += size + 4
                    box.y += size + 4
                }
                boxes.append(box)
                var placed = style
                placed.anchor = anchor
                g.text(line.label, at: at, style: placed)
            }
        }
    }
}
