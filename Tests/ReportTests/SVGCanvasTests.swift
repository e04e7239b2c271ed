import Testing

@testable import Report

@Suite("SVG canvas")
struct SVGCanvasTests {
    @Test func escapesEverything() {
        #expect(escapeXML("a<b & \"c\" 'd'>") == "a&lt;b &amp; &quot;c&quot; &#39;d&#39;&gt;")
        #expect(escapeXML("bell\u{07}tab\t") == "belltab\t", "control characters XML forbids are dropped")
    }

    @Test func canvasIsWellFormedWithHostileText() {
        var canvas = SVGCanvas(width: 200, height: 100, title: "<title> & \"quotes\"")
        canvas.line(from: Point(0, 0), to: Point(10, 10), stroke: Stroke("#000", width: 1, dash: [4, 2]))
        canvas.polyline([Point(0, 0), Point(1.0000000002e-05, 3)], stroke: Stroke("#123456"))
        canvas.path([Point(0, 0), Point(5, 5), Point(0, 5)], closed: true, fill: "#ff0000")
        canvas.circle(center: Point(5, 5), radius: 2, fill: "#00ff00")
        canvas.rect(Rect(x: 1, y: 2, width: 3, height: 4), fill: "none", stroke: Stroke("#000"), cornerRadius: 2)
        canvas.text("<&>\"'", at: Point(3, 4), style: TextStyle(anchor: .middle, rotation: -45, halo: "#fff"))
        canvas.group(cssClass: "series", data: ["name": "a\"<b>", "Bad Key!": "x"], title: "t<>") { g in
            g.text("inner & more", at: Point(1, 1))
        }
        let svg = canvas.render()
        let parsed = ParsedXML.parse(svg)
        #expect(parsed.isWellFormed, "\(parsed.error ?? "")")
        #expect(parsed.allText.contains("<&>\"'"))
        #expect(parsed.elements(withClass: "series").first?.attributes["data-name"] == "a\"<b>")
        #expect(parsed.elements(withClass: "series").first?.attributes["data-badkey"] == "x")
        #expect(!svg.contains("e-05"), "numbers are written in fixed notation")
        #expect(svg.contains("text-anchor=\"middle\""))
        #expect(svg.contains("rotate(-45 3 4)"))
    }

    @Test func inlineRenderingHasNoNamespaceURL() {
        let canvas = SVGCanvas(width: 10, height: 10)
        #expect(canvas.render(standalone: true).contains("xmlns=\"http://www.w3.org/2000/svg\""))
        #expect(!canvas.render(standalone: false).contains("http"))
    }

    @Test func everyMarkerShapeDraws() {
        var canvas = SVGCanvas(width: 100, height: 20)
        for (index, shape) in MarkerShape.allCases.enumerated() {
            canvas.marker(shape, at: Point(Double(index) * 15 + 8, 10), radius: 4, color: "#0072B2")
        }
        let parsed = ParsedXML.parse(canvas.render())
        #expect(parsed.isWellFormed)
        #expect(parsed.elements.count == 1 + MarkerShape.allCases.count)
    }

    @Test func clippingKeepsTheInsideOnly() throws {
        let rect = Rect(x: 0, y: 0, width: 10, height: 10)
        let (a, b) = try #require(Clip.segment(Point(-10, 5), Point(20, 5), to: rect))
        #expect(a == Point(0, 5) && b == Point(10, 5))
        #expect(Clip.segment(Point(-10, -5), Point(-1, -5), to: rect) == nil)
        let runs = Clip.polyline([Point(1, 1), Point(5, 5), Point(5, 50), Point(6, 5), Point(9, 9)], to: rect)
        #expect(runs.count == 2)
    }
}
