import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// What an XML document holds, for assertions: every element with its attributes, and all text.
struct ParsedXML {
    struct Element {
        var name: String
        var attributes: [String: String]
    }

    var elements: [Element] = []
    var text: [String] = []
    var error: String?

    var isWellFormed: Bool { error == nil && !elements.isEmpty }

    /// Elements whose `class` attribute contains `cssClass` as a word.
    func elements(withClass cssClass: String) -> [Element] {
        elements.filter { ($0.attributes["class"] ?? "").split(separator: " ").contains(Substring(cssClass)) }
    }

    func elements(named name: String) -> [Element] { elements.filter { $0.name == name } }

    /// All text content joined with newlines (labels, titles).
    var allText: String { text.joined(separator: "\n") }

    /// Parses `xml` with Foundation's XMLParser.
    static func parse(_ xml: String) -> ParsedXML {
        let collector = Collector()
        let parser = XMLParser(data: Data(xml.utf8))
        parser.delegate = collector
        let ok = parser.parse()
        var result = collector.result
        if !ok { result.error = parser.parserError.map { String(describing: $0) } ?? "parse failed" }
        return result
    }

    private final class Collector: NSObject, XMLParserDelegate {
        var result = ParsedXML()
        private var buffer = ""

        func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                    qualifiedName qName: String?, attributes attributeDict: [String: String] = [:]) {
            flush()
            result.elements.append(Element(name: elementName, attributes: attributeDict))
        }

        func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName qName: String?) {
            flush()
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) { buffer += string }

        func parser(_ parser: XMLParser, parseErrorOccurred parseError: Error) {
            result.error = String(describing: parseError)
        }

        private func flush() {
            let trimmed = buffer.trimmingCharacters(in: .whitespacesAndNewlines)
            if !trimmed.isEmpty { result.text.append(trimmed) }
            buffer = ""
        }
    }
}
