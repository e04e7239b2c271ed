import Foundation

/// The kind of an axis.
public enum AxisKind: Sendable, Equatable {
    case linear
    /// Powers of two: batch sizes (1, 2, 4, ... 256), working-set sizes in bytes.
    case log2
    /// Decades.
    case log10

    /// Whether `value` can be placed on this kind of axis.
    public func accepts(_ value: Double) -> Bool {
        self == .linear ? value.isFinite : value.isFinite && value > 0
    }

    /// A scale of this kind showing `domain` between two pixel positions.
    public func scale(domain: ClosedRange<Double>, from start: Double, to end: Double) -> any AxisScale {
        switch self {
        case .linear: return LinearScale(domain: domain, from: start, to: end)
        case .log2: return LogScale(domain: domain, base: .two, from: start, to: end)
        case .log10: return LogScale(domain: domain, base: .ten, from: start, to: end)
        }
    }

    /// A domain holding every acceptable value in `values`. On a linear axis: tick-aligned (with
    /// zero when `includeZero`), or when `tight` the data's own range (see
    /// `LinearScale.tightDomain`). On a log axis: padded a little beyond the data, base-2 ends
    /// first snapped to powers of two.
    public func automaticDomain(for values: [Double], includeZero: Bool = false, tight: Bool = false) -> ClosedRange<Double> {
        switch self {
        case .linear:
            if tight && !includeZero { return LinearScale.tightDomain(containing: values) }
            return LinearScale.niceDomain(containing: values, includeZero: includeZero)
        case .log10:
            return LogScale.paddedDomain(containing: values, base: .ten, padding: 0.05)
        case .log2:
            let positive = values.filter { $0.isFinite && $0 > 0 }
            guard let lo = positive.min(), let hi = positive.max() else { return 1...16 }
            let snapped = [pow(2, floor(Foundation.log2(lo) + 1e-9)), pow(2, ceil(Foundation.log2(hi) - 1e-9))]
            return LogScale.paddedDomain(containing: snapped, base: .two, padding: 0.04)
        }
    }
}

/// One axis of a chart: its kind, title and how its ticks are labelled.
public struct AxisSpec: Sendable {
    public var kind: AxisKind
    public var title: String
    public var format: TickFormat
    /// A fixed domain; `nil` chooses one from the data.
    public var domain: ClosedRange<Double>?

    public init(_ title: String, kind: AxisKind = .linear, format: TickFormat = .compact,
                domain: ClosedRange<Double>? = nil) {
        self.title = title
        self.kind = kind
        self.format = format
        self.domain = domain
    }
}

/// One entry of a chart legend.
struct LegendEntry: Sendable {
    var label: String
    var color: String
    var marker: MarkerShape?
    var showsLine: Bool
    var dash: [Double] = []
}

/// The plot area of a chart and its two scales, with the drawing of everything around the data:
/// background, grid, axes, ticks, titles and legend.
struct ChartFrame {
    let plot: Rect
    let x: any AxisScale
    let y: any AxisScale
    let xTicks: [Tick]
    let yTicks: [Tick]
    let theme: ChartTheme

    /// Lays out a chart of `size`: margins grow to fit the title, the y tick labels, the axis
    /// titles and a legend on the right.
    init(width: Double, height: Double, title: String?, xAxis: AxisSpec, xDomain: ClosedRange<Double>,
         yAxis: AxisSpec, yDomain: ClosedRange<Double>, legend: [LegendEntry], theme: ChartTheme) {
        self.theme = theme
        let probeY = yAxis.kind.scale(domain: yDomain, from: 1, to: 0)
        let yLabelWidth = probeY.ticks(format: yAxis.format)
            .map { TextMetrics.width($0.label, fontSize: theme.tickLabelSize) }.max() ?? 0
        let top = (title?.isEmpty == false ? theme.titleSize + 30 : 18)
        let left = 14 + (yAxis.title.isEmpty ? 0 : theme.axisTitleSize + 12) + yLabelWidth + 10
        let bottom = 14 + theme.tickLabelSize + 12 + (xAxis.title.isEmpty ? 0 : theme.axisTitleSize + 10)
        let right = legend.isEmpty ? 24 : Self.legendWidth(legend, theme: theme) + 36
        plot = Rect(x: left, y: top, width: max(width - left - right, 40), height: max(height - top - bottom, 40))
        x = xAxis.kind.scale(domain: xDomain, from: plot.minX, to: plot.maxX)
        y = yAxis.kind.scale(domain: yDomain, from: plot.maxY, to: plot.minY)
        xTicks = x.ticks(format: xAxis.format)
        yTicks = y.ticks(format: yAxis.format)
    }

    /// The pixel position of a data point, `nil` when either axis cannot show it.
    func point(_ dx: Double, _ dy: Double) -> Point? {
        guard let px = x.pixel(dx), let py = y.pixel(dy) else { return nil }
        return Point(px, py)
    }

    /// Page and plot background, minor and major gridlines.
    func drawBackground(_ canvas: inout SVGCanvas) {
        canvas.rect(Rect(x: 0, y: 0, width: canvas.width, height: canvas.height), fill: theme.background)
        canvas.rect(plot, fill: theme.plotBackground)
        canvas.group(cssClass: "grid") { g in
            for v in x.minorTicks() { if let px = x.pixel(v) { g.line(from: Point(px, plot.minY), to: Point(px, plot.maxY), stroke: Stroke(theme.minorGrid)) } }
            for v in y.minorTicks() { if let py = y.pixel(v) { g.line(from: Point(plot.minX, py), to: Point(plot.maxX, py), stroke: Stroke(theme.minorGrid)) } }
            for t in xTicks { if let px = x.pixel(t.value) { g.line(from: Point(px, plot.minY), to: Point(px, plot.maxY), stroke: Stroke(theme.grid)) } }
            for t in yTicks { if let py = y.pixel(t.value) { g.line(from: Point(plot.minX, py), to: Point(plot.maxX, py), stroke: Stroke(theme.grid)) } }
        }
    }

    /// Axis lines, tick marks, tick labels (x labels thinned when they would collide), axis
    /// titles and the chart title.
    func drawAxes(_ canvas: inout SVGCanvas, title: String?, xTitle: String, yTitle: String) {
        let plot = self.plot
        let theme = self.theme
        canvas.group(cssClass: "axis x-axis") { g in
            g.line(from: Point(plot.minX, plot.maxY), to: Point(plot.maxX, plot.maxY), stroke: Stroke(theme.axis))
            let style = TextStyle(size: theme.tickLabelSize, color: theme.mutedText, anchor: .middle)
            let placed = xTicks.compactMap { t in x.pixel(t.value).map { (t, $0) } }
            let every = Self.thinning(placed.map { ($0.0.label, $0.1) }, fontSize: theme.tickLabelSize)
            for (index, (tick, px)) in placed.enumerated() {
                g.line(from: Point(px, plot.maxY), to: Point(px, plot.maxY + 5), stroke: Stroke(theme.axis))
                if index % every == 0 { g.text(tick.label, at: Point(px, plot.maxY + 8 + theme.tickLabelSize), style: style) }
            }
            if !xTitle.isEmpty {
                g.text(xTitle, at: Point(plot.midX, plot.maxY + 18 + theme.tickLabelSize + theme.axisTitleSize),
                       style: TextStyle(size: theme.axisTitleSize, color: theme.text, anchor: .middle))
            }
        }
        canvas.group(cssClass: "axis y-axis") { g in
            g.line(from: Point(plot.minX, plot.minY), to: Point(plot.minX, plot.maxY), stroke: Stroke(theme.axis))
            let style = TextStyle(size: theme.tickLabelSize, color: theme.mutedText, anchor: .end, baselineShift: 0.35)
            var widest = 0.0
            let placed = yTicks.compactMap { t in y.pixel(t.value).map { (t, $0) } }
            // Label every k-th tick when labels would be closer than a line of text.
            let gaps = zip(placed, placed.dropFirst()).map { abs($1.1 - $0.1) }
            let every = max(1, Int(((theme.tickLabelSize + 4) / max(gaps.min() ?? .infinity, 1)).rounded(.up)))
            for (index, (tick, py)) in placed.enumerated() {
                g.line(from: Point(plot.minX - 5, py), to: Point(plot.minX, py), stroke: Stroke(theme.axis))
                guard index % every == 0 else { continue }
                g.text(tick.label, at: Point(plot.minX - 8, py), style: style)
                widest = max(widest, TextMetrics.width(tick.label, fontSize: theme.tickLabelSize))
            }
            if !yTitle.isEmpty {
                let at = Point(plot.minX - 8 - widest - 12, plot.midY)
                g.text(yTitle, at: at, style: TextStyle(size: theme.axisTitleSize, color: theme.text, anchor: .middle, rotation: -90))
            }
        }
        if let title, !title.isEmpty {
            // Long titles shrink a little, then are cut; the SVG's <title> keeps the full text.
            let room = canvas.width - plot.minX - 12
            var size = theme.titleSize
            while size > 12 && TextMetrics.width(title, fontSize: size, bold: true) > room { size -= 0.5 }
            let fitted = TextMetrics.truncate(title, toWidth: room, fontSize: size, bold: true)
            canvas.text(fitted, at: Point(plot.minX, theme.titleSize + 8),
                        style: TextStyle(size: size, color: theme.text, bold: true))
        }
    }

    /// Draws the legend to the right of the plot, top-aligned (series groups keep their full names
    /// in their tooltips when a legend label is cut).
    func drawLegend(_ canvas: inout SVGCanvas, _ entries: [LegendEntry]) {
        guard !entries.isEmpty else { return }
        let theme = self.theme
        let rowHeight = theme.legendSize + 8
        // More entries than rows beside the plot: the last row says how many are left out.
        let capacity = max(1, Int((plot.height - 10) / rowHeight))
        var entries = entries
        if entries.count > capacity {
            let hidden = entries.count - capacity + 1
            entries = Array(entries.prefix(capacity - 1))
                + [LegendEntry(label: "+ " + String(hidden) + " more", color: theme.mutedText, marker: nil, showsLine: false)]
        }
        let box = Rect(x: plot.maxX + 18, y: plot.minY, width: Self.legendWidth(entries, theme: theme),
                       height: Double(entries.count) * rowHeight + 10)
        canvas.group(cssClass: "legend") { g in
            g.rect(box, fill: "#ffffff", stroke: Stroke(theme.grid), cornerRadius: 4)
            for (index, entry) in entries.enumerated() {
                let cy = box.minY + 5 + rowHeight * (Double(index) + 0.5)
                let swatch = Point(box.minX + 19, cy)
                if entry.showsLine {
                    g.line(from: Point(swatch.x - 12, cy), to: Point(swatch.x + 12, cy),
                           stroke: Stroke(entry.color, width: theme.lineWidth, dash: entry.dash))
                }
                if let shape = entry.marker { g.marker(shape, at: swatch, radius: theme.markerRadius, color: entry.color) }
                g.text(Self.legendText(entry.label, theme: theme), at: Point(box.minX + 38, cy),
                       style: TextStyle(size: theme.legendSize, color: theme.text, baselineShift: 0.35))
            }
        }
    }

    static func legendWidth(_ entries: [LegendEntry], theme: ChartTheme) -> Double {
        (entries.map { TextMetrics.width(legendText($0.label, theme: theme), fontSize: theme.legendSize) }.max() ?? 0) + 48
    }

    /// Legend labels are cut at 200 pixels so that the plot keeps most of the width.
    static func legendText(_ label: String, theme: ChartTheme) -> String {
        TextMetrics.truncate(label, toWidth: 200, fontSize: theme.legendSize)
    }

    /// The smallest k such that labelling every k-th tick leaves at least a small gap between labels.
    static func thinning(_ labels: [(String, Double)], fontSize: Double) -> Int {
        guard labels.count > 1 else { return 1 }
        for every in 1..<labels.count {
            let kept = labels.enumerated().filter { $0.offset % every == 0 }.map(\.element)
            let clear = zip(kept, kept.dropFirst()).allSatisfy { a, b in
                abs(b.1 - a.1) >= (TextMetrics.width(a.0, fontSize: fontSize) + TextMetrics.width(b.0, fontSize: fontSize)) / 2 + 8
            }
            if clear { return every }
        }
        return labels.count
    }
}
