import Foundation

/// A self-contained HTML5 report: one file with inline CSS and inline SVG figures, no scripts and
/// nothing loaded from elsewhere, readable on screen and in print.
///
/// ```swift
/// var report = HTMLReport(title: "lowbit report: x86_64-genuineintel-8c-...")
/// var section = HTMLReport.Section("Roofline")
/// section.paragraph("Ceilings measured in this run.")
/// section.figure(roofline, caption: "Figure 1. Roofline of this machine.")
/// section.table(HTMLReport.Table(header: ["kernel", "GOP/s"], rows: [["gemm-w8a8", "812.4"]]))
/// report.sections.append(section)
/// try report.write(to: URL(fileURLWithPath: "Plots/report.html"))
/// ```
public struct HTMLReport: Sendable {
    /// A table: header cells, rows of cells, optional caption and highlighted rows. Columns whose
    /// cells all read as numbers (`12.5`, `-3`, `62%`, `1.5k`, `19.2 GB/s`) are right-aligned.
    public struct Table: Sendable {
        /// Shown above the table as "Table N. caption" (uncaptioned tables are not numbered).
        public var caption: String?
        public var header: [String]
        /// Rows shorter than the header are padded with empty cells.
        public var rows: [[String]]
        /// Indices into `rows` to emphasise (the best configuration, say).
        public var highlightedRows: Set<Int>
        /// Forces right alignment of these columns; `nil` detects numeric columns from the cells.
        public var numericColumns: Set<Int>?

        public init(caption: String? = nil, header: [String], rows: [[String]], highlightedRows: Set<Int> = [],
                    numericColumns: Set<Int>? = nil) {
            self.caption = caption
            self.header = header
            self.rows = rows
            self.highlightedRows = highlightedRows
            self.numericColumns = numericColumns
        }

        /// The columns that are right-aligned.
        public var rightAlignedColumns: Set<Int> {
            if let numericColumns { return numericColumns }
            let width = max(header.count, rows.map(\.count).max() ?? 0)
            return Set((0..<width).filter { column in
                let cells = rows.compactMap { column < $0.count ? $0[column] : nil }
                    .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !Self.placeholders.contains($0) }
                return !cells.isEmpty && cells.allSatisfy(Self.looksNumeric)
            })
        }

        /// Cells that say "no value" and do not decide whether a column is numeric.
        static let placeholders: Set<String> = ["", "-", "\u{2014}", "\u{2013}", "n/a", "N/A", "NaN", "nan", "?"]

        /// Whether a cell starts with a number (optionally signed), e.g. `-1.5`, `62%`, `19.2 GB/s`.
        static func looksNumeric(_ cell: String) -> Bool {
            var scalars = Substring(cell).unicodeScalars.drop { $0 == "+" || $0 == "-" || $0 == "\u{2212}" || $0 == "~" }
            if scalars.first == "." { scalars = scalars.dropFirst() }
            guard let first = scalars.first, ("0"..."9").contains(first) else { return false }
            // A number followed by at most a short unit: reject prose that merely starts with a digit.
            return scalars.filter { $0 == " " }.count <= 1 && cell.count <= 24
        }
    }

    /// An SVG figure with a caption.
    public struct Figure: Sendable {
        /// The drawing, inlined without the SVG namespace (HTML5 needs none).
        public var svg: SVGCanvas
        /// Shown under the figure as "Figure N. caption" (uncaptioned figures are not numbered).
        public var caption: String?

        public init(_ svg: SVGCanvas, caption: String? = nil) {
            self.svg = svg
            self.caption = caption
        }

        public init(_ chart: some Chart, caption: String? = nil) {
            self.init(chart.canvas(), caption: caption)
        }
    }

    /// One term and its description in a definition list.
    public struct Definition: Sendable {
        public var term: String
        public var description: String

        public init(_ term: String, _ description: String) {
            self.term = term
            self.description = description
        }
    }

    /// A piece of section content.
    public enum Block: Sendable {
        case paragraph(String)
        case definitions([Definition])
        case table(Table)
        case preformatted(String)
        case figure(Figure)
        /// A muted, smaller paragraph (provenance, methods).
        case note(String)
    }

    /// A section under an `<h2>` heading.
    public struct Section: Sendable {
        public var heading: String
        public var blocks: [Block]

        public init(_ heading: String, blocks: [Block] = []) {
            self.heading = heading
            self.blocks = blocks
        }

        public mutating func paragraph(_ text: String) { blocks.append(.paragraph(text)) }
        public mutating func note(_ text: String) { blocks.append(.note(text)) }
        public mutating func definitions(_ items: [Definition]) { blocks.append(.definitions(items)) }
        /// A definition list from ordered pairs.
        public mutating func definitions(_ pairs: KeyValuePairs<String, String>) {
            blocks.append(.definitions(pairs.map { Definition($0.key, $0.value) }))
        }
        public mutating func table(_ table: Table) { blocks.append(.table(table)) }
        public mutating func preformatted(_ text: String) { blocks.append(.preformatted(text)) }
        public mutating func figure(_ chart: some Chart, caption: String? = nil) {
            blocks.append(.figure(Figure(chart, caption: caption)))
        }
        public mutating func figure(_ svg: SVGCanvas, caption: String? = nil) {
            blocks.append(.figure(Figure(svg, caption: caption)))
        }
    }

    /// The `<h1>` and the page's `<title>`.
    public var title: String
    /// A line under the title (machine, fingerprint, ...).
    public var subtitle: String?
    /// Shown in UTC in the generated-at line.
    public var generatedAt: Date
    /// Who or what wrote the report, shown in the generated-at line ("lowbit 0.6").
    public var generator: String
    /// The body, in order; each becomes a `<section>` with an id made from its heading.
    public var sections: [Section]
    /// Show a table of contents when there are at least this many sections.
    public var contentsThreshold = 3

    public init(title: String, subtitle: String? = nil, generatedAt: Date = Date(), generator: String = "lowbit",
                sections: [Section] = []) {
        self.title = title
        self.subtitle = subtitle
        self.generatedAt = generatedAt
        self.generator = generator
        self.sections = sections
    }

    /// Writes `render()` to `url` as UTF-8, atomically.
    public func write(to url: URL) throws {
        try Data(render().utf8).write(to: url, options: .atomic)
    }
}
