import Foundation

extension RooflineChart {
    /// Bandwidth diagonals with labels along them, then compute ceilings with labels above them.
    /// The roof itself (the fastest bandwidth and the highest compute ceiling) is solid and
    /// heavier; the lower ceilings are dashed.
    func drawCeilings(_ canvas: inout SVGCanvas, _ frame: ChartFrame, _ placer: inout LabelPlacer) {
        let plot = frame.plot
        let theme = self.theme
        let peak = computeCeilings.map(\.gigaOpsPerSecond).filter { $0.isFinite && $0 > 0 }.max()
        let bandwidths = bandwidthCeilings.filter { $0.gigabytesPerSecond.isFinite && $0.gigabytesPerSecond > 0 }
            .sorted { $0.gigabytesPerSecond > $1.gigabytesPerSecond }
        let computes = computeCeilings.filter { $0.gigaOpsPerSecond.isFinite && $0.gigaOpsPerSecond > 0 }
            .sorted { $0.gigaOpsPerSecond > $1.gigaOpsPerSecond }
        let labelStyle = TextStyle(size: theme.annotationSize, color: theme.reference, halo: theme.plotBackground)
        let xLeft = frame.x.domain.lowerBound, xRight = frame.x.domain.upperBound

        canvas.group(cssClass: "ceilings bandwidth-ceilings") { g in
            for (rank, ceiling) in bandwidths.enumerated() {
                let bw = ceiling.gigabytesPerSecond
                let ridge = peak.map { $0 / bw } ?? xRight
                guard let a = frame.point(xLeft, bw * xLeft), let b = frame.point(ridge, bw * ridge),
                      let (start, end) = Clip.segment(a, b, to: plot) else { continue }
                let stroke = rank == 0 ? Stroke(theme.reference, width: 2.2)
                    : Stroke(theme.reference, width: 1.3, dash: [6, 4])
                g.group(cssClass: "ceiling", data: ["name": ceiling.name, "kind": "bandwidth"]) { c in
                    c.line(from: start, to: end, stroke: stroke)
                    let text = ceiling.name + ": " + NumberFormat.significantDigits(bw, 3) + " GB/s"
                    if let (at, angle, anchor) = alongLine(text, from: start, to: end, &placer) {
                        var style = labelStyle
                        style.rotation = angle
                        style.anchor = anchor
                        c.text(text, at: at, style: style)
                    }
                }
            }
        }
        let topBandwidth = bandwidths.first?.gigabytesPerSecond
        canvas.group(cssClass: "ceilings compute-ceilings") { g in
            for (rank, ceiling) in computes.enumerated() {
                let ops = ceiling.gigaOpsPerSecond
                let ridge = topBandwidth.map { ops / $0 } ?? xLeft
                guard let a = frame.point(ridge, ops), let b = frame.point(xRight, ops),
                      let (start, end) = Clip.segment(a, b, to: plot) else { continue }
                let stroke = rank == 0 ? Stroke(theme.reference, width: 2.2)
                    : Stroke(theme.reference, width: 1.3, dash: [6, 4])
                g.group(cssClass: "ceiling", data: ["name": ceiling.name, "kind": "compute"]) { c in
                    c.line(from: start, to: end, stroke: stroke)
                    let text = ceiling.name + ": " + NumberFormat.significantDigits(ops, 3) + " GOP/s"
                    // Above the line at the right end; else below it, else at the left end.
                    let size = theme.annotationSize
                    let candidates: [(Point, TextAnchor)] = [
                        (Point(end.x - 6, end.y - 5), .end), (Point(end.x - 6, end.y + size + 3), .end),
                        (Point(start.x + 6, start.y - 5), .start), (Point(start.x + 6, start.y + size + 3), .start),
                    ]
                    let scored = candidates.map { position, anchor in
                        let box = TextMetrics.box(text, at: position, fontSize: size, anchor: anchor)
                        let overlap = placer.occupied.reduce(0) { $0 + box.overlapArea($1) }
                        return (position, anchor, box, overlap + (plot.contains(box) ? 0 : box.width * box.height))
                    }
                    let chosen = scored.first { $0.3 == 0 } ?? scored.min { $0.3 < $1.3 } ?? scored[0]
                    placer.reserve(chosen.2)
                    var style = labelStyle
                    style.anchor = chosen.1
                    c.text(text, at: chosen.0, style: style)
                }
            }
        }
    }

    /// Where a label goes along the segment `start`-`end` (pixels): just above the line, rotated to
    /// its angle, preferably ending a little before the segment's upper end (near the ridge), else
    /// further down the line where it covers no marker or earlier label. Reserves small boxes
    /// along the text so point labels keep clear of it.
    private func alongLine(_ text: String, from start: Point, to end: Point,
                           _ placer: inout LabelPlacer) -> (Point, Double, TextAnchor)? {
        let dx = end.x - start.x, dy = end.y - start.y
        let length = (dx * dx + dy * dy).squareRoot()
        guard length > 20 else { return nil }
        let ux = dx / length, uy = dy / length
        // Normal pointing to the upper-left side of an up-right line.
        let nx = uy, ny = -ux
        let size = theme.annotationSize
        let textWidth = TextMetrics.width(text, fontSize: size)
        let offset = 4.0
        let latest = length - min(28, length * 0.1) - textWidth
        var starts: [Double] = []
        var t = latest
        while t >= 6 {
            starts.append(t)
            t -= max(length * 0.12, 12)
        }
        if starts.isEmpty { starts = [min(6, length)] }
        // Square boxes of the font size along the text, standing in for its rotated outline.
        func boxes(from textStart: Double) -> [Rect] {
            stride(from: textStart, to: textStart + textWidth, by: size).map { along in
                let cx = start.x + ux * (along + size / 2) + nx * (offset + size / 2)
                let cy = start.y + uy * (along + size / 2) + ny * (offset + size / 2)
                return Rect(x: cx - size / 2, y: cy - size / 2, width: size, height: size)
            }
        }
        let scored = starts.map { textStart in
            (textStart, boxes(from: textStart).reduce(0.0) { sum, box in
                sum + placer.occupied.reduce(0) { $0 + box.overlapArea($1) }
            })
        }
        let chosen = scored.first { $0.1 == 0 }?.0 ?? scored.min { $0.1 < $1.1 }?.0 ?? starts[0]
        for box in boxes(from: chosen) { placer.reserve(box) }
        let at = Point(start.x + ux * chosen + nx * offset, start.y + uy * chosen + ny * offset)
        return (at, atan2(dy, dx) * 180 / Double.pi, .start)
    }

    /// Reserves the area of every kernel marker, so ceiling and point labels keep clear of them.
    func reserveMarkers(_ frame: ChartFrame, _ placer: inout LabelPlacer) {
        let radius = theme.markerRadius + 0.5
        for p in points {
            guard let pixel = frame.point(p.intensity, p.gigaOpsPerSecond) else { continue }
            placer.reserve(Rect(x: pixel.x - radius - 1, y: pixel.y - radius - 1, width: 2 * radius + 2, height: 2 * radius + 2))
        }
    }

    /// Kernel markers (one group per series), then their labels placed around them.
    func drawPoints(_ canvas: inout SVGCanvas, _ frame: ChartFrame, _ placer: inout LabelPlacer, names: [String]) {
        let theme = self.theme
        let radius = theme.markerRadius + 0.5
        var labelled: [(text: String, at: Point)] = []
        for (index, name) in names.enumerated() {
            let members = points.filter { $0.series == name }
            canvas.group(cssClass: "series", data: ["name": name, "index": String(index)], title: name) { g in
                for p in members {
                    guard p.intensity.isFinite, p.intensity > 0, p.gigaOpsPerSecond.isFinite, p.gigaOpsPerSecond > 0,
                          let pixel = frame.point(p.intensity, p.gigaOpsPerSecond) else { continue }
                    g.group(cssClass: "point", title: tooltip(p)) { m in
                        m.marker(theme.marker(index), at: pixel, radius: radius, color: theme.color(index))
                    }
                    labelled.append((pointLabel(p), pixel))
                }
            }
        }
        guard labelsPoints, !labelled.isEmpty else { return }
        canvas.group(cssClass: "point-labels") { g in
            for item in labelled where !item.text.isEmpty {
                guard let (at, anchor) = placer.place(item.text, near: item.at, radius: radius) else { continue }
                g.text(item.text, at: at, style: TextStyle(size: theme.annotationSize, color: theme.text, anchor: anchor,
                                                                halo: theme.plotBackground))
            }
        }
    }

    private func pointLabel(_ p: KernelPoint) -> String {
        guard let attainment = p.attainment, attainment.isFinite else { return p.label }
        return p.label + " (" + TickFormat.percent.label(attainment) + ")"
    }

    private func tooltip(_ p: KernelPoint) -> String {
        var text = p.label + " [" + p.series + "]: " + NumberFormat.significantDigits(p.intensity, 3) + " ops/byte, "
            + NumberFormat.significantDigits(p.gigaOpsPerSecond, 3) + " GOP/s"
        if let attainment = p.attainment, attainment.isFinite {
            text += ", " + TickFormat.percent.label(attainment) + " of the roof"
        }
        return text
    }
}
