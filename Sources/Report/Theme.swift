/// Marker shapes. Series differ in shape as well as colour, so charts stay readable in grey and
/// for readers with colour-vision deficiencies.
public enum MarkerShape: String, Sendable, CaseIterable {
    case circle, square, triangle, diamond, triangleDown, cross
}

/// Colours, sizes and the series palette shared by every chart.
public struct ChartTheme: Sendable {
    /// Series colours: the Okabe-Ito palette (distinguishable with the common colour-vision
    /// deficiencies), yellow left out for contrast on white, then grey.
    public var palette: [String] = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#888888"]
    public var markers: [MarkerShape] = MarkerShape.allCases
    public var background = "#ffffff"
    public var plotBackground = "#ffffff"
    public var text = "#1f2328"
    public var mutedText = "#57606a"
    public var axis = "#57606a"
    public var grid = "#e3e6ea"
    public var minorGrid = "#f1f3f5"
    /// Ceilings, reference lines and other non-data ink.
    public var reference = "#4b5563"
    public var titleSize = 16.0
    public var axisTitleSize = 13.0
    public var tickLabelSize = 11.5
    public var legendSize = 12.0
    public var annotationSize = 11.0
    public var lineWidth = 2.0
    public var markerRadius = 4.0

    public init() {}

    /// The colour of the series at `index` (cycling through the palette).
    public func color(_ index: Int) -> String { palette.isEmpty ? "#000000" : palette[index % palette.count] }

    /// The marker of the series at `index`: cycles through shapes once per pass of the palette,
    /// so that series with the same colour (after wrapping) still differ.
    public func marker(_ index: Int) -> MarkerShape {
        guard !markers.isEmpty else { return .circle }
        let pass = palette.isEmpty ? 0 : index / palette.count
        return markers[(index + pass) % markers.count]
    }
}

extension SVGCanvas {
    /// Draws a marker of `shape` centred on `center`, `radius` being the circle-equivalent size.
    /// Markers get a thin white outline so they stay visible where lines cross them.
    public mutating func marker(_ shape: MarkerShape, at center: Point, radius r: Double, color: String) {
        let outline = Stroke("#ffffff", width: 1)
        let x = center.x, y = center.y
        switch shape {
        case .circle:
            circle(center: center, radius: r, fill: color, stroke: outline)
        case .square:
            let s = r * 0.9
            rect(Rect(x: x - s, y: y - s, width: 2 * s, height: 2 * s), fill: color, stroke: outline)
        case .triangle:
            let s = r * 1.25
            path([Point(x, y - s), Point(x + s * 0.95, y + s * 0.7), Point(x - s * 0.95, y + s * 0.7)],
                 closed: true, fill: color, stroke: outline)
        case .triangleDown:
            let s = r * 1.25
            path([Point(x, y + s), Point(x + s * 0.95, y - s * 0.7), Point(x - s * 0.95, y - s * 0.7)],
                 closed: true, fill: color, stroke: outline)
        case .diamond:
            let s = r * 1.3
            path([Point(x, y - s), Point(x + s, y), Point(x, y + s), Point(x - s, y)], closed: true, fill: color,
                 stroke: outline)
        case .cross:
            let s = r * 1.05
            let w = r * 0.42
            path([Point(x - w, y - s), Point(x + w, y - s), Point(x + w, y - w), Point(x + s, y - w), Point(x + s, y + w),
                  Point(x + w, y + w), Point(x + w, y + s), Point(x - w, y + s), Point(x - w, y + w), Point(x - s, y + w),
                  Point(x - s, y - w), Point(x - w, y - w)], closed: true, fill: color, stroke: outline)
        }
    }
}
