import Foundation

/// A roofline chart: operational intensity (operations per byte) against performance (GOP/s) on
/// log-log axes, with the machine's bandwidth and compute ceilings and the measured kernels.
///
/// Each bandwidth ceiling is the diagonal `GOP/s = GB/s x ops/byte`, drawn up to where it meets
/// the highest compute ceiling; each compute ceiling is a horizontal line from its ridge point
/// with the highest bandwidth to the right edge. Kernels are markers coloured and shaped per
/// series, labelled next to the marker where there is room (the label is always in the marker's
/// tooltip). The axis ranges cover every ridge point and every kernel, with some padding.
public struct RooflineChart: Chart {
    /// A memory-bandwidth ceiling, e.g. "L1 read" at 180 GB/s or "DRAM triad" at 19 GB/s.
    public struct BandwidthCeiling: Sendable {
        public var name: String
        public var gigabytesPerSecond: Double

        public init(_ name: String, gigabytesPerSecond: Double) {
            self.name = name
            self.gigabytesPerSecond = gigabytesPerSecond
        }
    }

    /// A compute ceiling, e.g. "int8 avx512-vnni" at 2,400 GOP/s.
    public struct ComputeCeiling: Sendable {
        public var name: String
        public var gigaOpsPerSecond: Double

        public init(_ name: String, gigaOpsPerSecond: Double) {
            self.name = name
            self.gigaOpsPerSecond = gigaOpsPerSecond
        }
    }

    /// One measured kernel.
    public struct KernelPoint: Sendable {
        public var label: String
        /// The series (kernel family or variant) that sets the marker's colour and shape.
        public var series: String
        /// Operations per byte moved.
        public var intensity: Double
        /// Achieved GOP/s.
        public var gigaOpsPerSecond: Double
        /// Achieved fraction of the attainable roof at this intensity, shown after the label.
        public var attainment: Double?

        public init(_ label: String, series: String, intensity: Double, gigaOpsPerSecond: Double,
                    attainment: Double? = nil) {
            self.label = label
            self.series = series
            self.intensity = intensity
            self.gigaOpsPerSecond = gigaOpsPerSecond
            self.attainment = attainment
        }
    }

    /// Shown above the plot, and the SVG's accessible name.
    public var title: String
    /// Diagonal ceilings; the fastest is drawn solid as part of the roof, the others dashed.
    public var bandwidthCeilings: [BandwidthCeiling]
    /// Horizontal ceilings; the highest is drawn solid as part of the roof, the others dashed.
    public var computeCeilings: [ComputeCeiling]
    /// The measured kernels; series appear in the legend in order of first appearance.
    public var points: [KernelPoint]
    /// Axis titles.
    public var xTitle = "Operational intensity (ops/byte)"
    public var yTitle = "Performance (GOP/s)"
    /// Write each kernel's label next to its marker (the tooltip has it regardless).
    public var labelsPoints = true
    /// Size of the SVG in user units (it scales to the page in the HTML report).
    public var width: Double
    public var height: Double
    /// Colours, font sizes and marker shapes.
    public var theme: ChartTheme

    public init(title: String, bandwidthCeilings: [BandwidthCeiling], computeCeilings: [ComputeCeiling],
                points: [KernelPoint] = [], width: Double = 900, height: Double = 560, theme: ChartTheme = ChartTheme()) {
        self.title = title
        self.bandwidthCeilings = bandwidthCeilings
        self.computeCeilings = computeCeilings
        self.points = points
        self.width = width
        self.height = height
        self.theme = theme
    }

    /// Series names in order of first appearance.
    public var seriesNames: [String] {
        var seen = Set<String>()
        return points.map(\.series).filter { seen.insert($0).inserted }
    }

    private var bandwidths: [BandwidthCeiling] { bandwidthCeilings.filter { valid($0.gigabytesPerSecond) } }
    private var computes: [ComputeCeiling] { computeCeilings.filter { valid($0.gigaOpsPerSecond) } }
    private var kernels: [KernelPoint] { points.filter { valid($0.intensity) && valid($0.gigaOpsPerSecond) } }
    private func valid(_ v: Double) -> Bool { v.isFinite && v > 0 }

    /// The attainable performance at `intensity`: the lowest of the highest compute ceiling and
    /// the highest bandwidth times intensity (`nil` without ceilings of both kinds).
    public func attainable(atIntensity intensity: Double) -> Double? {
        guard let peak = computes.map(\.gigaOpsPerSecond).max(),
              let bandwidth = bandwidths.map(\.gigabytesPerSecond).max() else { return nil }
        return min(peak, bandwidth * intensity)
    }

    /// The data ranges: every ridge point, every kernel, every compute ceiling, and the lowest
    /// bandwidth ceiling at the left edge, padded by a tenth of the span in log space.
    func domains() -> (x: ClosedRange<Double>, y: ClosedRange<Double>) {
        let peak = computes.map(\.gigaOpsPerSecond).max()
        let topBandwidth = bandwidths.map(\.gigabytesPerSecond).max()
        var xs = kernels.map(\.intensity)
        var ys = kernels.map(\.gigaOpsPerSecond) + computes.map(\.gigaOpsPerSecond)
        if let peak { xs += bandwidths.map { peak / $0.gigabytesPerSecond } }
        if let topBandwidth { xs += computes.map { $0.gigaOpsPerSecond / topBandwidth } }
        if xs.isEmpty { xs = [0.1, 100] }
        if xs.count == 1, let only = xs.first { xs = [only / 10, only * 10] }
        let x = LogScale.paddedDomain(containing: xs, base: .ten, padding: 0.1)
        // Let the slowest diagonal enter the plot at the left edge, so every ceiling is visible.
        if let slowest = bandwidths.map(\.gigabytesPerSecond).min() { ys.append(slowest * x.lowerBound) }
        if ys.isEmpty { ys = [1, 1000] }
        let y = LogScale.paddedDomain(containing: ys, base: .ten, padding: 0.1)
        return (x, y)
    }

    public func canvas() -> SVGCanvas {
        let (xDomain, yDomain) = domains()
        let names = seriesNames
        let legend = names.enumerated().map {
            LegendEntry(label: $0.element, color: theme.color($0.offset), marker: theme.marker($0.offset), showsLine: false)
        }
        let frame = ChartFrame(width: width, height: height, title: title,
                               xAxis: AxisSpec(xTitle, kind: .log10), xDomain: xDomain,
                               yAxis: AxisSpec(yTitle, kind: .log10), yDomain: yDomain, legend: legend, theme: theme)
        var canvas = SVGCanvas(width: width, height: height, title: title)
        frame.drawBackground(&canvas)
        var placer = LabelPlacer(bounds: frame.plot.insetBy(2), fontSize: theme.annotationSize)
        reserveMarkers(frame, &placer)
        drawCeilings(&canvas, frame, &placer)
        drawPoints(&canvas, frame, &placer, names: names)
        frame.drawAxes(&canvas, title: title, xTitle: xTitle, yTitle: yTitle)
        frame.drawLegend(&canvas, legend)
        return canvas
    }
}
