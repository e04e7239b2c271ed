import Foundation

extension HTMLReport {
    /// The whole page as HTML5 text.
    public func render() -> String {
        var html: [String] = [
            "<!DOCTYPE html>",
            "<html lang=\"en\">",
            "<head>",
            "<meta charset=\"utf-8\">",
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
            "<meta name=\"generator\" content=\"" + escapeXML(generator) + "\">",
            "<title>" + escapeXML(title) + "</title>",
            "<style>", Self.stylesheet, "</style>",
            "</head>",
            "<body>",
            "<main>",
            "<header>",
            "<h1>" + escapeXML(title) + "</h1>",
        ]
        if let subtitle, !subtitle.isEmpty { html.append("<p class=\"subtitle\">" + escapeXML(subtitle) + "</p>") }
        html.append("<p class=\"generated\">Generated " + escapeXML(Self.timestamp(generatedAt)) + " by "
            + escapeXML(generator) + "</p>")
        html.append("</header>")
        let anchors = sectionAnchors()
        if sections.count >= contentsThreshold {
            html.append("<nav aria-label=\"Contents\"><h2>Contents</h2><ol>")
            for (section, anchor) in zip(sections, anchors) {
                html.append("<li><a href=\"#" + anchor + "\">" + escapeXML(section.heading) + "</a></li>")
            }
            html.append("</ol></nav>")
        }
        var figureNumber = 0, tableNumber = 0
        for (section, anchor) in zip(sections, anchors) {
            html.append("<section id=\"" + anchor + "\">")
            html.append("<h2>" + escapeXML(section.heading) + "</h2>")
            for block in section.blocks {
                html.append(Self.render(block, figureNumber: &figureNumber, tableNumber: &tableNumber))
            }
            html.append("</section>")
        }
        html += ["</main>", "</body>", "</html>"]
        return html.joined(separator: "\n") + "\n"
    }

    /// `generatedAt` as `2025-01-31 14:05 UTC`.
    static func timestamp(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? calendar.timeZone
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute], from: date)
        func two(_ v: Int?) -> String { let s = String(v ?? 0); return s.count < 2 ? "0" + s : s }
        return String(c.year ?? 0) + "-" + two(c.month) + "-" + two(c.day) + " " + two(c.hour) + ":" + two(c.minute) + " UTC"
    }

    /// Unique ids for the sections, from their headings (`s-roofline`, `s-roofline-2`, ...).
    func sectionAnchors() -> [String] {
        var used: [String: Int] = [:]
        return sections.map { section in
            var slug = ""
            for scalar in section.heading.lowercased().unicodeScalars {
                if ("a"..."z").contains(scalar) || ("0"..."9").contains(scalar) {
                    slug.unicodeScalars.append(scalar)
                } else if !slug.hasSuffix("-") && !slug.isEmpty {
                    slug += "-"
                }
            }
            while slug.hasSuffix("-") { slug.removeLast() }
            let base = "s-" + (slug.isEmpty ? "section" : String(slug.prefix(48)))
            let count = (used[base] ?? 0) + 1
            used[base] = count
            return count == 1 ? base : base + "-" + String(count)
        }
    }

    static func render(_ block: Block, figureNumber: inout Int, tableNumber: inout Int) -> String {
        switch block {
        case .paragraph(let text):
            return "<p>" + escapeXML(text) + "</p>"
        case .note(let text):
            return "<p class=\"note\">" + escapeXML(text) + "</p>"
        case .preformatted(let text):
            return "<pre>" + escapeXML(text) + "</pre>"
        case .definitions(let items):
            let body = items.map { "<dt>" + escapeXML($0.term) + "</dt><dd>" + escapeXML($0.description) + "</dd>" }
            return (["<dl>"] + body + ["</dl>"]).joined(separator: "\n")
        case .figure(let figure):
            // Only captioned figures and tables are numbered, so that numbers have no gaps.
            var lines = ["<figure>", figure.svg.render(standalone: false)]
            if let caption = figure.caption, !caption.isEmpty {
                figureNumber += 1
                lines.append("<figcaption><span class=\"label\">Figure " + String(figureNumber) + ".</span> "
                    + escapeXML(caption) + "</figcaption>")
            }
            lines.append("</figure>")
            return lines.joined(separator: "\n")
        case .table(let table):
            if table.caption?.isEmpty == false { tableNumber += 1 }
            return render(table, number: tableNumber)
        }
    }

    static func render(_ table: Table, number: Int) -> String {
        let numeric = table.rightAlignedColumns
        func cell(_ tag: String, _ text: String, _ column: Int) -> String {
            "<" + tag + (numeric.contains(column) ? " class=\"num\"" : "") + ">" + escapeXML(text) + "</" + tag + ">"
        }
        var lines = ["<div class=\"table-wrap\">", "<table>"]
        if let caption = table.caption, !caption.isEmpty {
            lines.append("<caption><span class=\"label\">Table " + String(number) + ".</span> " + escapeXML(caption) + "</caption>")
        }
        if !table.header.isEmpty {
            lines.append("<thead><tr>" + table.header.enumerated().map { cell("th", $0.element, $0.offset) }.joined() + "</tr></thead>")
        }
        lines.append("<tbody>")
        let width = table.header.count
        for (index, row) in table.rows.enumerated() {
            // Short rows are padded so every row has the header's columns.
            let cells = row + Array(repeating: "", count: max(0, width - row.count))
            let attributes = table.highlightedRows.contains(index) ? " class=\"highlight\"" : ""
            lines.append("<tr" + attributes + ">" + cells.enumerated().map { cell("td", $0.element, $0.offset) }.joined() + "</tr>")
        }
        lines += ["</tbody>", "</table>", "</div>"]
        return lines.joined(separator: "\n")
    }
}
