import Foundation
import Report
import Testing

/// Writes the sample report (made-up data, see `SampleData`) and its charts as separate SVG files
/// into `$LOWBIT_REPORT_SAMPLE_DIR` when that variable is set, for looking at them:
///
///     LOWBIT_REPORT_SAMPLE_DIR=/tmp/sample swift test --filter ReportTests
///     scripts/screenshot-report.sh /tmp/sample/report.html /tmp/sample/report.png
@Suite("Sample report")
struct SampleReportTests {
    @Test func writesTheSampleWhenAsked() throws {
        guard let path = ProcessInfo.processInfo.environment["LOWBIT_REPORT_SAMPLE_DIR"], !path.isEmpty else { return }
        let directory = URL(fileURLWithPath: path, isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let report = SampleData.report()
        try report.write(to: directory.appendingPathComponent("report.html"))
        let charts: [(String, any Chart)] = [
            ("roofline", SampleData.roofline()), ("convergence", SampleData.convergence()),
            ("throughput-by-batch", SampleData.throughputByBatch()), ("bandwidth-by-size", SampleData.bandwidthBySize()),
        ]
        for (name, chart) in charts {
            try Data(chart.render().utf8).write(to: directory.appendingPathComponent(name + ".svg"))
        }
        let written = try String(contentsOf: directory.appendingPathComponent("report.html"), encoding: .utf8)
        #expect(written == report.render())
    }

    @Test func sampleReportIsSelfContained() {
        let html = SampleData.report().render()
        #expect(html.hasPrefix("<!DOCTYPE html>"))
        #expect(html.components(separatedBy: "<svg").count - 1 == 4)
        #expect(html.contains("made up"))
    }
}
