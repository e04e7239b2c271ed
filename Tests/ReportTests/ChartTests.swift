import Foundation
import Testing

@testable import Report

/// Parses a chart's SVG and checks what every chart must satisfy.
func checkedChart(_ chart: some Chart, sourceLocation: SourceLocation = #_sourceLocation) -> ParsedXML {
    let svg = chart.render()
    let parsed = ParsedXML.parse(svg)
    #expect(parsed.isWellFormed, "\(parsed.error ?? "no elements")", sourceLocation: sourceLocation)
    #expect(!svg.contains("nan") && !svg.contains("inf"), "no non-finite numbers", sourceLocation: sourceLocation)
    #expect(!svg.contains("<script") && !svg.contains("<image") && !svg.contains("url("), sourceLocation: sourceLocation)
    return parsed
}

@Suite("Line chart")
struct LineChartTests {
    func batchChart() -> LineChart {
        let batches: [Double] = [1, 2, 4, 8, 16, 32, 64, 128, 256]
        return LineChart(
            title: "Throughput against batch size", xAxis: AxisSpec("Batch size", kind: .log2),
            yAxis: AxisSpec("Throughput (GOP/s)"),
            series: [
                .init("gemm-w8a8", x: batches, y: batches.map { 1900 * $0 / ($0 + 12) }),
                .init("gemm-w4a4", x: batches, y: batches.map { 1400 * $0 / ($0 + 8) }),
                .init("fp32", x: batches, y: batches.map { 500 * $0 / ($0 + 6) }),
            ])
    }

    @Test func seriesLabelsAndTitlesArePresent() {
        let parsed = checkedChart(batchChart())
        let series = parsed.elements(withClass: "series")
        #expect(series.count == 3)
        #expect(series.compactMap { $0.attributes["data-name"] } == ["gemm-w8a8", "gemm-w4a4", "fp32"])
        #expect(parsed.elements(withClass: "point").count == 27)
        let text = parsed.allText
        for expected in ["Throughput against batch size", "Batch size", "Throughput (GOP/s)", "gemm-w4a4", "256", "1", "1.5k"] {
            #expect(text.contains(expected), "missing \(expected)")
        }
        #expect(parsed.elements(withClass: "legend").count == 1)
    }

    @Test func stepLinesAndReferenceMarkers() {
        let trials = (1...60).map(Double.init)
        var best = 0.0
        let values = trials.map { t -> Double in best = max(best, (t * 37).truncatingRemainder(dividingBy: 100)); return best }
        let chart = LineChart(
            title: "Convergence", xAxis: AxisSpec("Trial"), yAxis: AxisSpec("Best so far (GOP/s)"),
            series: [.init("random", x: trials, y: values)],
            referenceLines: [.vertical(at: 30, label: "budget"), .horizontal(at: 95, label: "peak")], step: true)
        let parsed = checkedChart(chart)
        #expect(parsed.elements(withClass: "series").count == 1)
        #expect(parsed.elements(withClass: "point").isEmpty, "more than 40 points: no markers by default")
        #expect(parsed.allText.contains("budget") && parsed.allText.contains("peak"))
        let polyline = parsed.elements(named: "polyline").first?.attributes["points"] ?? ""
        // A step line has two vertices per data point after the first.
        #expect(polyline.split(separator: " ").count == 2 * trials.count - 1)
    }

    @Test func bandwidthChartWithCacheMarkers() {
        let sizes = (12...30).map { Double(1 << $0) }
        let chart = LineChart(
            title: "Bandwidth", xAxis: AxisSpec("Working set", kind: .log2, format: .bytes),
            yAxis: AxisSpec("GB/s"), series: [.init("read", x: sizes, y: sizes.map { 150 / (1 + $0 / 1e6) })],
            referenceLines: [.vertical(at: 48 * 1024, label: "L1"), .vertical(at: 2 * 1_048_576, label: "L2"),
                             .vertical(at: 32 * 1_048_576, label: "L3")])
        let parsed = checkedChart(chart)
        for label in ["L1", "L2", "L3", "1 MiB", "Working set"] { #expect(parsed.allText.contains(label)) }
        #expect(parsed.elements(withClass: "reference-lines").count == 1)
    }

    @Test func edgeCasesDoNotCrash() {
        let cases: [LineChart.Series] = [
            .init("empty", points: []),
            .init("single", points: [DataPoint(4, 10)]),
            .init("bad", points: [DataPoint(0, 5), DataPoint(-2, 3), DataPoint(.nan, 1), DataPoint(8, .nan),
                                  DataPoint(16, .infinity), DataPoint(32, 0), DataPoint(64, 20), DataPoint(128, 25)]),
        ]
        for (x, y) in [(AxisKind.log2, AxisKind.log10), (.linear, .linear), (.log10, .linear)] {
            let chart = LineChart(title: "Edge <cases> & \"quotes\"", xAxis: AxisSpec("x", kind: x), yAxis: AxisSpec("y", kind: y),
                                  series: cases)
            let parsed = checkedChart(chart)
            #expect(parsed.elements(withClass: "series").count == 3)
        }
        let nothing = LineChart(title: "", xAxis: AxisSpec(""), yAxis: AxisSpec("", kind: .log10))
        let parsed = checkedChart(nothing)
        #expect(parsed.elements(withClass: "series").isEmpty)
        #expect(parsed.elements(withClass: "legend").isEmpty)
    }

    @Test func manySeriesKeepTheLegendInsideTheChart() {
        let series = (0..<40).map { LineChart.Series("series \($0)", points: [DataPoint(1, Double($0)), DataPoint(2, Double($0) + 1)]) }
        let parsed = checkedChart(LineChart(title: "Many", xAxis: AxisSpec("x"), yAxis: AxisSpec("y"), series: series))
        #expect(parsed.elements(withClass: "series").count == 40)
        #expect(parsed.allText.contains(" more"))
        let legendRects = parsed.elements(named: "rect").compactMap { Double($0.attributes["height"] ?? "") }
        #expect(legendRects.allSatisfy { $0 <= 460 })
    }

    @Test func hostileLabelsStayWellFormed() {
        let chart = LineChart(title: "<b>&amp;</b>", xAxis: AxisSpec("x \"in\" <units>"), yAxis: AxisSpec("y & 'z'"),
                              series: [.init("a<&>\"'b", points: [DataPoint(1, 1), DataPoint(2, 3)])],
                              referenceLines: [.vertical(at: 1.5, label: "<L1>")])
        let parsed = checkedChart(chart)
        #expect(parsed.elements(withClass: "series").first?.attributes["data-name"] == "a<&>\"'b")
        for text in ["<b>&amp;</b>", "x \"in\" <units>", "y & 'z'", "<L1>"] { #expect(parsed.allText.contains(text)) }
    }
}

@Suite("Roofline chart")
struct RooflineChartTests {
    func chart(points: [RooflineChart.KernelPoint]) -> RooflineChart {
        RooflineChart(
            title: "Roofline",
            bandwidthCeilings: [.init("L1 read", gigabytesPerSecond: 1200), .init("DRAM triad", gigabytesPerSecond: 38)],
            computeCeilings: [.init("int8 avx512-vnni", gigaOpsPerSecond: 2400), .init("fp32 fma", gigaOpsPerSecond: 600)],
            points: points)
    }

    @Test func ceilingsPointsAndLabels() {
        let parsed = checkedChart(chart(points: [
            .init("M=1", series: "gemm-w8a8", intensity: 2, gigaOpsPerSecond: 60, attainment: 0.79),
            .init("M=64", series: "gemm-w8a8", intensity: 100, gigaOpsPerSecond: 1600),
            .init("INT4 KV", series: "attention-decode", intensity: 1, gigaOpsPerSecond: 29),
        ]))
        #expect(parsed.elements(withClass: "series").count == 2)
        #expect(parsed.elements(withClass: "point").count == 3)
        #expect(parsed.elements(withClass: "ceiling").count == 4)
        let text = parsed.allText
        for expected in ["Roofline", "Operational intensity (ops/byte)", "Performance (GOP/s)", "L1 read: 1200 GB/s",
                         "DRAM triad: 38 GB/s", "int8 avx512-vnni: 2400 GOP/s", "M=1 (79%)", "INT4 KV", "gemm-w8a8"] {
            #expect(text.contains(expected), "missing \(expected)")
        }
    }

    @Test func domainsCoverRidgesAndPoints() {
        let roofline = chart(points: [.init("tiny", series: "s", intensity: 0.01, gigaOpsPerSecond: 0.2),
                                      .init("huge", series: "s", intensity: 5000, gigaOpsPerSecond: 2000)])
        let (x, y) = roofline.domains()
        #expect(x.contains(0.01) && x.contains(5000))
        #expect(x.contains(2400.0 / 38) && x.contains(2400.0 / 1200) && x.contains(600.0 / 1200))
        #expect(y.contains(0.2) && y.contains(2400))
        #expect(roofline.attainable(atIntensity: 1) == 1200)
        #expect(roofline.attainable(atIntensity: 100) == 2400)
    }

    @Test func crowdedPointsKeepEveryMarkerAndTooltip() {
        var generator = SplitMix(seed: 3)
        let points = (0..<30).map { i -> RooflineChart.KernelPoint in
            let x = 20 * pow(3, generator.unit())
            return .init("cfg-\(i)", series: "family-\(i % 3)", intensity: x, gigaOpsPerSecond: min(x * 30, 800) * (0.3 + 0.6 * generator.unit()))
        }
        let parsed = checkedChart(chart(points: points))
        #expect(parsed.elements(withClass: "point").count == 30)
        #expect(parsed.elements(withClass: "series").count == 3)
        for i in 0..<30 { #expect(parsed.allText.contains("cfg-\(i) [family-\(i % 3)]"), "tooltip of cfg-\(i)") }
    }

    @Test func edgeCases() {
        // No points, no ceilings, invalid values: still a well-formed chart.
        let empty = RooflineChart(title: "empty", bandwidthCeilings: [], computeCeilings: [])
        #expect(checkedChart(empty).elements(withClass: "series").isEmpty)
        let bad = chart(points: [
            .init("zero", series: "s", intensity: 0, gigaOpsPerSecond: 10),
            .init("negative", series: "s", intensity: 2, gigaOpsPerSecond: -1),
            .init("nan", series: "s", intensity: .nan, gigaOpsPerSecond: 10),
            .init("ok", series: "t", intensity: 3, gigaOpsPerSecond: 50, attainment: .nan),
        ])
        let parsed = checkedChart(bad)
        #expect(parsed.elements(withClass: "point").count == 1)
        let onlyBandwidth = RooflineChart(title: "bw", bandwidthCeilings: [.init("DRAM", gigabytesPerSecond: 20)],
                                          computeCeilings: [.init("bad", gigaOpsPerSecond: .nan)],
                                          points: [.init("<p&>", series: "\"s\"", intensity: 1, gigaOpsPerSecond: 10)])
        let text = checkedChart(onlyBandwidth).allText
        #expect(text.contains("<p&>") && text.contains("DRAM: 20 GB/s"))
    }
}
