/// Geometry helpers for drawing data inside a plot area without SVG clip paths (which would need
/// `url(#id)` references).
enum Clip {
    /// The parts of the polyline through `points` that lie inside `rect`, as separate runs.
    static func polyline(_ points: [Point], to rect: Rect) -> [[Point]] {
        var runs: [[Point]] = []
        var current: [Point] = []
        for (a, b) in zip(points, points.dropFirst()) {
            guard let (p, q) = segment(a, b, to: rect) else {
                if current.count >= 2 { runs.append(current) }
                current = []
                continue
            }
            if let last = current.last, abs(last.x - p.x) < 1e-6, abs(last.y - p.y) < 1e-6 {
                current.append(q)
            } else {
                if current.count >= 2 { runs.append(current) }
                current = [p, q]
            }
        }
        if current.count >= 2 { runs.append(current) }
        return runs
    }

    /// The part of segment a-b inside `rect` (Liang-Barsky), `nil` when none.
    static func segment(_ a: Point, _ b: Point, to rect: Rect) -> (Point, Point)? {
        let dx = b.x - a.x, dy = b.y - a.y
        var t0 = 0.0, t1 = 1.0
        let checks = [(-dx, a.x - rect.minX), (dx, rect.maxX - a.x), (-dy, a.y - rect.minY), (dy, rect.maxY - a.y)]
        for (p, q) in checks {
            if p == 0 {
                if q < -1e-9 { return nil }
                continue
            }
            let r = q / p
            if p < 0 { t0 = max(t0, r) } else { t1 = min(t1, r) }
            if t0 > t1 + 1e-12 { return nil }
        }
        return (Point(a.x + t0 * dx, a.y + t0 * dy), Point(a.x + t1 * dx, a.y + t1 * dy))
    }
}

/// Greedy placement of point labels: each label tries positions around its point and takes the
/// first that overlaps nothing already placed (markers, other labels, reserved areas) and stays
/// inside the bounds; when every position collides it takes the least-overlapping one.
struct LabelPlacer {
    let bounds: Rect
    let fontSize: Double
    private(set) var occupied: [Rect] = []

    init(bounds: Rect, fontSize: Double) {
        self.bounds = bounds
        self.fontSize = fontSize
    }

    /// Marks an area (a marker, a line label) that labels must avoid.
    mutating func reserve(_ rect: Rect) { occupied.append(rect) }

    /// Chooses where `text` goes next to `point` (a marker of `radius`), reserves that area and
    /// returns the text position and anchor. `nil` when the best position overlaps so much that
    /// the label would be unreadable.
    mutating func place(_ text: String, near point: Point, radius: Double) -> (Point, TextAnchor)? {
        let gap = radius + 3
        let shift = fontSize * 0.35
        let candidates: [(Point, TextAnchor)] = [
            (Point(point.x + gap, point.y + shift), .start),
            (Point(point.x + gap, point.y - gap * 0.6 - 1), .start),
            (Point(point.x + gap, point.y + gap * 0.6 + fontSize * 0.8), .start),
            (Point(point.x - gap, point.y + shift), .end),
            (Point(point.x, point.y - gap - 1), .middle),
            (Point(point.x, point.y + gap + fontSize * 0.8), .middle),
            (Point(point.x - gap, point.y - gap * 0.6 - 1), .end),
            (Point(point.x - gap, point.y + gap * 0.6 + fontSize * 0.8), .end),
            (Point(point.x + gap, point.y - fontSize - gap), .start),
            (Point(point.x + gap, point.y + fontSize + gap + shift), .start),
            (Point(point.x - gap, point.y - fontSize - gap), .end),
            (Point(point.x - gap, point.y + fontSize + gap + shift), .end),
        ]
        var best: (score: Double, position: Point, anchor: TextAnchor, box: Rect)?
        for (position, anchor) in candidates {
            let box = TextMetrics.box(text, at: position, fontSize: fontSize, anchor: anchor).insetBy(-1)
            var score = occupied.reduce(0) { $0 + box.overlapArea($1) }
            if !bounds.contains(box) { score += box.width * box.height }
            if score == 0 {
                occupied.append(box)
                return (position, anchor)
            }
            if best == nil || score < best?.score ?? .infinity { best = (score, position, anchor, box) }
        }
        guard let chosen = best, chosen.score < chosen.box.width * chosen.box.height * 0.08 else { return nil }
        occupied.append(chosen.box)
        return (chosen.position, chosen.anchor)
    }
}
