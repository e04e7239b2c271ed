/// Escapes text for XML/HTML content and attribute values: `&`, `<`, `>`, `"` and `'`. Control
/// characters XML 1.0 does not allow (all below U+0020 except tab, newline and carriage return)
/// are dropped, so any string makes well-formed markup.
public func escapeXML(_ text: String) -> String {
    var out = ""
    out.reserveCapacity(text.utf8.count)
    for scalar in text.unicodeScalars {
        switch scalar {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&#39;"
        case "\t", "\n", "\r": out.unicodeScalars.append(scalar)
        default:
            if scalar.value < 0x20 || scalar.value == 0xFFFE || scalar.value == 0xFFFF { continue }
            out.unicodeScalars.append(scalar)
        }
    }
    return out
}

/// How a line or outline is stroked.
public struct Stroke: Sendable, Equatable {
    public var color: String
    public var width: Double
    /// Dash pattern in user units (`[6, 4]`: 6 on, 4 off); empty for a solid line.
    public var dash: [Double]
    public var opacity: Double

    public init(_ color: String, width: Double = 1, dash: [Double] = [], opacity: Double = 1) {
        self.color = color
        self.width = width
        self.dash = dash
        self.opacity = opacity
    }

    var attributes: [(String, String)] {
        var list = [("stroke", color), ("stroke-width", NumberFormat.fixed(width))]
        if !dash.isEmpty { list.append(("stroke-dasharray", dash.map { NumberFormat.fixed($0) }.joined(separator: " "))) }
        if opacity < 1 { list.append(("stroke-opacity", NumberFormat.fixed(opacity))) }
        return list
    }
}

/// Horizontal alignment of text relative to its position (SVG `text-anchor`).
public enum TextAnchor: String, Sendable {
    case start, middle, end
}

/// How a piece of text is drawn.
public struct TextStyle: Sendable, Equatable {
    public var size: Double
    public var color: String
    public var anchor: TextAnchor
    public var bold: Bool
    /// Rotation in degrees about the text's position (negative: counter-clockwise).
    public var rotation: Double
    /// Shift of the baseline in ems: 0.35 centres digits and capitals vertically on the position.
    public var baselineShift: Double
    /// A background-coloured outline behind the glyphs, so that text stays readable where it
    /// crosses lines (the colour of the halo; `nil` for none).
    public var halo: String?

    public init(size: Double = 12, color: String = "#222222", anchor: TextAnchor = .start,
                bold: Bool = false, rotation: Double = 0, baselineShift: Double = 0, halo: String? = nil) {
        self.size = size
        self.color = color
        self.anchor = anchor
        self.bold = bold
        self.rotation = rotation
        self.baselineShift = baselineShift
        self.halo = halo
    }
}

/// A small SVG document builder: shapes and text go in as values, well-formed and escaped SVG
/// comes out. Coordinates are user units (pixels) with the origin at the top left; all numbers are
/// written with at most two decimals.
///
/// ```swift
/// var canvas = SVGCanvas(width: 200, height: 100, title: "Example")
/// canvas.line(from: Point(10, 90), to: Point(190, 10), stroke: Stroke("#0072B2", width: 2))
/// canvas.text("a < b", at: Point(100, 50), style: TextStyle(anchor: .middle))
/// let svg = canvas.render()
/// ```
public struct SVGCanvas: Sendable {
    public let width: Double
    public let height: Double
    /// The document's accessible name (an SVG `<title>`), if any.
    public var title: String?
    /// Generic font stack: no web fonts, nothing fetched.
    public var fontFamily = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
    private var elements: [String] = []

    public init(width: Double, height: Double, title: String? = nil) {
        self.width = width
        self.height = height
        self.title = title
    }

    /// A straight line.
    public mutating func line(from a: Point, to b: Point, stroke: Stroke) {
        append("line", [("x1", n(a.x)), ("y1", n(a.y)), ("x2", n(b.x)), ("y2", n(b.y))] + stroke.attributes)
    }

    /// An open polyline through `points` (nothing is drawn for fewer than two points).
    public mutating func polyline(_ points: [Point], stroke: Stroke) {
        guard points.count >= 2 else { return }
        let list = points.map { n($0.x) + "," + n($0.y) }.joined(separator: " ")
        append("polyline", [("points", list), ("fill", "none"), ("stroke-linejoin", "round")] + stroke.attributes)
    }

    /// A path through `points`: `closed` joins the last point to the first; `fill` colours the
    /// inside (`nil`: no fill).
    public mutating func path(_ points: [Point], closed: Bool = false, fill: String? = nil, stroke: Stroke? = nil) {
        guard let first = points.first else { return }
        var d = "M" + n(first.x) + " " + n(first.y)
        for p in points.dropFirst() { d += "L" + n(p.x) + " " + n(p.y) }
        if closed { d += "Z" }
        append("path", [("d", d), ("fill", fill ?? "none"), ("stroke-linejoin", "round")] + (stroke?.attributes ?? []))
    }

    /// A circle.
    public mutating func circle(center: Point, radius: Double, fill: String, stroke: Stroke? = nil) {
        append("circle", [("cx", n(center.x)), ("cy", n(center.y)), ("r", n(radius)), ("fill", fill)]
            + (stroke?.attributes ?? []))
    }

    /// A rectangle, optionally with rounded corners.
    public mutating func rect(_ r: Rect, fill: String, stroke: Stroke? = nil, cornerRadius: Double = 0) {
        var attributes = [("x", n(r.x)), ("y", n(r.y)), ("width", n(max(r.width, 0))),
                          ("height", n(max(r.height, 0))), ("fill", fill)]
        if cornerRadius > 0 { attributes.append(("rx", n(cornerRadius))) }
        append("rect", attributes + (stroke?.attributes ?? []))
    }

    /// A single line of text at `point` (its baseline, unless `style.baselineShift` moves it).
    public mutating func text(_ content: String, at point: Point, style: TextStyle = TextStyle()) {
        var attributes = [("x", n(point.x)), ("y", n(point.y)), ("font-size", n(style.size)), ("fill", style.color)]
        if style.anchor != .start { attributes.append(("text-anchor", style.anchor.rawValue)) }
        if style.bold { attributes.append(("font-weight", "600")) }
        if let halo = style.halo {
            attributes += [("stroke", halo), ("stroke-width", "3"), ("stroke-linejoin", "round"), ("paint-order", "stroke")]
        }
        if style.baselineShift != 0 { attributes.append(("dy", n(style.baselineShift) + "em")) }
        if style.rotation != 0 {
            attributes.append(("transform", "rotate(" + n(style.rotation) + " " + n(point.x) + " " + n(point.y) + ")"))
        }
        append("text", attributes, content: content)
    }

    /// A `<g>` group holding whatever `body` draws. `cssClass` and `data` (written as `data-KEY`
    /// attributes, keys sorted) identify it to tests and stylesheets; `title` becomes a tooltip.
    public mutating func group(cssClass: String? = nil, data: [String: String] = [:], title: String? = nil,
                               _ body: (inout SVGCanvas) -> Void) {
        var inner = SVGCanvas(width: width, height: height)
        body(&inner)
        var attributes: [(String, String)] = []
        if let cssClass { attributes.append(("class", cssClass)) }
        for key in data.keys.sorted() {
            let safeKey = String(key.lowercased().unicodeScalars.filter { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" })
            if !safeKey.isEmpty, let value = data[key] { attributes.append(("data-" + safeKey, value)) }
        }
        var lines = ["<g" + Self.attributeText(attributes) + ">"]
        if let title { lines.append("<title>" + escapeXML(title) + "</title>") }
        lines += inner.elements.map { "  " + $0 }
        lines.append("</g>")
        elements.append(lines.joined(separator: "\n"))
    }

    /// The SVG document. `standalone` adds the XML namespace that a separate `.svg` file needs;
    /// leave it out for SVG inlined in HTML5 (which needs no namespace and so names no URL).
    public func render(standalone: Bool = true) -> String {
        var attributes: [(String, String)] = []
        if standalone { attributes.append(("xmlns", "http://www.w3.org/2000/svg")) }
        attributes += [("viewBox", "0 0 " + n(width) + " " + n(height)), ("width", n(width)), ("height", n(height)),
                       ("font-family", fontFamily), ("role", "img")]
        var lines = ["<svg" + Self.attributeText(attributes) + ">"]
        if let title { lines.append("<title>" + escapeXML(title) + "</title>") }
        lines += elements
        lines.append("</svg>")
        return lines.joined(separator: "\n") + "\n"
    }

    private mutating func append(_ name: String, _ attributes: [(String, String)], content: String? = nil) {
        let open = "<" + name + Self.attributeText(attributes)
        if let content {
            elements.append(open + ">" + escapeXML(content) + "</" + name + ">")
        } else {
            elements.append(open + "/>")
        }
    }

    private static func attributeText(_ attributes: [(String, String)]) -> String {
        attributes.map { " " + $0.0 + "=\"" + escapeXML($0.1) + "\"" }.joined()
    }

    private func n(_ value: Double) -> String { NumberFormat.fixed(value, decimals: 2) }
}
