import Foundation

/// A position in SVG user units (pixels); y grows downwards.
public struct Point: Sendable, Equatable {
    public var x: Double
    public var y: Double

    public init(_ x: Double, _ y: Double) {
        self.x = x
        self.y = y
    }
}

/// An axis-aligned rectangle in SVG user units.
public struct Rect: Sendable, Equatable {
    public var x: Double
    public var y: Double
    public var width: Double
    public var height: Double

    public init(x: Double, y: Double, width: Double, height: Double) {
        self.x = x
        self.y = y
        self.width = width
        self.height = height
    }

    public var minX: Double { x }
    public var minY: Double { y }
    public var maxX: Double { x + width }
    public var maxY: Double { y + height }
    public var midX: Double { x + width / 2 }
    public var midY: Double { y + height / 2 }

    /// Whether the two rectangles share some area (touching edges do not count).
    public func intersects(_ other: Rect) -> Bool {
        minX < other.maxX && other.minX < maxX && minY < other.maxY && other.minY < maxY
    }

    /// The area the two rectangles share, 0 when they do not overlap.
    public func overlapArea(_ other: Rect) -> Double {
        let w = min(maxX, other.maxX) - max(minX, other.minX)
        let h = min(maxY, other.maxY) - max(minY, other.minY)
        return w > 0 && h > 0 ? w * h : 0
    }

    /// Whether `other` lies entirely inside this rectangle.
    public func contains(_ other: Rect) -> Bool {
        other.minX >= minX && other.maxX <= maxX && other.minY >= minY && other.maxY <= maxY
    }

    /// Whether `point` lies inside or on the edge of this rectangle (with `tolerance` to spare).
    public func contains(_ point: Point, tolerance: Double = 0) -> Bool {
        point.x >= minX - tolerance && point.x <= maxX + tolerance
            && point.y >= minY - tolerance && point.y <= maxY + tolerance
    }

    /// This rectangle grown by `amount` on every side (shrunk when negative).
    public func insetBy(_ amount: Double) -> Rect {
        Rect(x: x + amount, y: y + amount, width: width - 2 * amount, height: height - 2 * amount)
    }
}

/// Rough text extents for layout, without font access: average glyph advances of common
/// sans-serif faces, per character class. Good to about 10%, which is what label placement needs.
public enum TextMetrics {
    /// Estimated advance width of `text` at `fontSize` (bold faces run about 10% wider).
    public static func width(_ text: String, fontSize: Double, bold: Bool = false) -> Double {
        var em = 0.0
        for character in text {
            switch character {
            case "i", "j", "l", "I", "!", "|", ".", ",", ":", ";", "'", "\u{00B7}": em += 0.28
            case "f", "t", "r", " ", "(", ")", "[", "]", "/", "-": em += 0.36
            case "m", "w", "M", "W", "%", "@": em += 0.86
            case "A"..."Z", "&": em += 0.68
            case "0"..."9", "a"..."z", "_", "+", "=", "<", ">", "~", "#", "$", "?", "\"": em += 0.56
            default: em += 0.6
            }
        }
        // Calibrated against DejaVu Sans, the widest common fallback for `sans-serif` on Linux.
        return em * fontSize * 1.08 * (bold ? 1.1 : 1)
    }

    /// `text` cut to fit `maxWidth` at `fontSize`, ending in an ellipsis when cut.
    public static func truncate(_ text: String, toWidth maxWidth: Double, fontSize: Double, bold: Bool = false) -> String {
        guard width(text, fontSize: fontSize, bold: bold) > maxWidth else { return text }
        var kept = text
        while !kept.isEmpty && width(kept + "\u{2026}", fontSize: fontSize, bold: bold) > maxWidth { kept.removeLast() }
        return kept.trimmingCharacters(in: .whitespaces) + "\u{2026}"
    }

    /// The box a single-line label occupies, given how it is anchored at `point` (alphabetic
    /// baseline, unrotated).
    public static func box(_ text: String, at point: Point, fontSize: Double, anchor: TextAnchor) -> Rect {
        let w = width(text, fontSize: fontSize)
        let left: Double
        switch anchor {
        case .start: left = point.x
        case .middle: left = point.x - w / 2
        case .end: left = point.x - w
        }
        return Rect(x: left, y: point.y - fontSize * 0.8, width: w, height: fontSize)
    }
}
