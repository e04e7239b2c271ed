import Foundation
import Testing

@testable import Report

@Suite("HTML report")
struct HTMLReportTests {
    func report() -> HTMLReport {
        var report = HTMLReport(title: "Report <&> \"x\"", subtitle: "machine & co",
                                generatedAt: Date(timeIntervalSince1970: 0))
        var first = HTMLReport.Section("Ceilings & roofline")
        first.paragraph("Values < 1 & > 0")
        first.definitions(["fingerprint": "x86_64-<abc>", "compiler": "clang 17"])
        first.figure(RooflineChart(title: "Roofline", bandwidthCeilings: [.init("DRAM", gigabytesPerSecond: 20)],
                                   computeCeilings: [.init("int8", gigaOpsPerSecond: 500)],
                                   points: [.init("k", series: "s", intensity: 2, gigaOpsPerSecond: 30)]),
                     caption: "The roofline & its <ceilings>")
        var second = HTMLReport.Section("Tuning")
        second.table(HTMLReport.Table(caption: "Best <configs>", header: ["rank", "target", "GOP/s", "share"],
                                      rows: [["1", "avx512", "1910.4", "78%"], ["2", "avx2 & co", "952.7", "41%"], ["3", "short"]],
                                      highlightedRows: [0]))
        second.preformatted("lowbit tune <args> && echo done")
        second.figure(LineChart(title: "Convergence", xAxis: AxisSpec("Trial"), yAxis: AxisSpec("GOP/s"),
                                series: [.init("random", x: [1, 2, 3], y: [1, 4, 9])]))
        second.note("Made-up test data.")
        report.sections = [first, second, HTMLReport.Section("Ceilings & roofline")]
        return report
    }

    @Test func selfContainedAndComplete() {
        let html = report().render()
        #expect(html.hasPrefix("<!DOCTYPE html>"))
        for forbidden in ["http://", "https://", "src=", "<script", "@import", "url(", "<link", "<img"] {
            #expect(!html.contains(forbidden), "contains \(forbidden)")
        }
        #expect(html.components(separatedBy: "<svg").count - 1 == 2)
        #expect(html.contains("<table>") && html.contains("<caption>") && html.contains("<th class=\"num\">GOP/s</th>"))
        #expect(html.contains("<tr class=\"highlight\">"))
        #expect(html.contains("<td class=\"num\">1910.4</td>") && html.contains("<td>avx2 &amp; co</td>"))
        #expect(html.contains("<pre>lowbit tune &lt;args&gt; &amp;&amp; echo done</pre>"))
        #expect(html.contains("Generated 1970-01-01 00:00 UTC"))
        #expect(html.contains("<title>Report &lt;&amp;&gt; &quot;x&quot;</title>"))
        #expect(html.contains("Figure 1.") && html.contains("Table 1."))
        #expect(!html.contains("Figure 2."), "only captioned figures are numbered")
        #expect(html.contains("<dt>fingerprint</dt><dd>x86_64-&lt;abc&gt;</dd>"))
        #expect(html.contains("id=\"s-ceilings-roofline\"") && html.contains("id=\"s-ceilings-roofline-2\""))
        #expect(html.contains("href=\"#s-tuning\""), "three sections get a table of contents")
    }

    @Test func bodyIsWellFormedMarkup() {
        // The page is XHTML-compatible apart from the doctype, so an XML parser can check nesting and escaping.
        let html = report().render().replacingOccurrences(of: "<!DOCTYPE html>", with: "")
            .replacingOccurrences(of: "<meta charset=\"utf-8\">", with: "<meta charset=\"utf-8\"/>")
            .replacingOccurrences(of: "initial-scale=1\">", with: "initial-scale=1\"/>")
            .replacingOccurrences(of: "(sample)\">", with: "(sample)\"/>")
            .replacingOccurrences(of: "content=\"lowbit\">", with: "content=\"lowbit\"/>")
        let parsed = ParsedXML.parse(html)
        #expect(parsed.isWellFormed, "\(parsed.error ?? "")")
        #expect(parsed.elements(named: "section").count == 3)
    }

    @Test func numericColumnsAreDetected() {
        let table = HTMLReport.Table(header: ["name", "value", "unit", "mixed", "size"],
                                     rows: [["a", "1.5", "GB/s", "12", "32 KiB"], ["b", "-3", "GB/s", "n/a", "1.5 MiB"],
                                            ["c", "", "GB/s", "4", "-"]])
        #expect(table.rightAlignedColumns == [1, 3, 4], "placeholders such as n/a do not decide")
        let words = HTMLReport.Table(header: ["fingerprint", "shape"], rows: [["x86_64-intel", "6x32"], ["x86_64-amd", "4x48"]])
        #expect(words.rightAlignedColumns == [1])
        let forced = HTMLReport.Table(header: ["a"], rows: [["x"]], numericColumns: [0])
        #expect(forced.rightAlignedColumns == [0])
    }

    @Test func writesToDisk() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("lowbit-report-\(UUID().uuidString).html")
        defer { try? FileManager.default.removeItem(at: url) }
        let report = report()
        try report.write(to: url)
        #expect(try String(contentsOf: url, encoding: .utf8) == report.render())
    }
}
