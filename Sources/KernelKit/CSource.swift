/// A small builder for C source text: blocks, loops, declarations and comments, indented as a person
/// would write them. Expressions are plain Swift-interpolated strings, so a missing value is a compile
/// error in Swift rather than empty text in C.
public struct CSource: CustomStringConvertible {
    private var lines: [String] = []
    private var depth = 0
    private let indentUnit = "    "

    public init() {}

    public var description: String { lines.joined(separator: "\n") + "\n" }

    /// One line of code at the current indentation (an empty string gives a blank line).
    public mutating func line(_ text: String = "") {
        lines.append(text.isEmpty ? "" : String(repeating: indentUnit, count: depth) + text)
    }

    /// Several lines, each at the current indentation.
    public mutating func lines(_ texts: [String]) { for t in texts { line(t) } }

    /// A `/* ... */` comment; each element of `text` is one line.
    public mutating func comment(_ text: String...) { comment(lines: text) }

    public mutating func comment(lines text: [String]) {
        if text.count == 1 {
            line("/* \(text[0]) */")
            return
        }
        line("/*")
        for t in text.flatMap({ $0.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) }) {
            line(t.isEmpty ? " *" : " * \(t)")
        }
        line(" */")
    }

    public mutating func include(_ header: String) {
        line(header.hasPrefix("\"") ? "#include \(header)" : "#include <\(header)>")
    }

    /// `header {` body `}` with the body indented one level; `trailer` follows the closing brace.
    public mutating func block(_ header: String, trailer: String = "", _ body: (inout CSource) -> Void) {
        line(header.isEmpty ? "{" : "\(header) {")
        depth += 1
        body(&self)
        depth -= 1
        line("}\(trailer)")
    }

    /// A function definition followed by a blank line.
    public mutating func function(_ signature: String, _ body: (inout CSource) -> Void) {
        block(signature, body)
        line()
    }

    public mutating func forLoop(_ initial: String, _ condition: String, _ step: String, _ body: (inout CSource) -> Void) {
        block("for (\(initial); \(condition); \(step))", body)
    }

    public mutating func ifBlock(_ condition: String, _ then: (inout CSource) -> Void, else otherwise: ((inout CSource) -> Void)? = nil) {
        line("if (\(condition)) {")
        depth += 1
        then(&self)
        depth -= 1
        if let otherwise {
            line("} else {")
            depth += 1
            otherwise(&self)
            depth -= 1
        }
        line("}")
    }

    /// `type name = value;` (or `type name;`).
    public mutating func declare(_ type: String, _ name: String, _ value: String? = nil) {
        let head = type.hasSuffix("*") ? "\(type)\(name)" : "\(type) \(name)"
        line(value.map { "\(head) = \($0);" } ?? "\(head);")
    }

    /// `#define NAME value`.
    public mutating func define(_ name: String, _ value: CustomStringConvertible) { line("#define \(name) \(value)") }

    /// `static inline int min_int(int a, int b)`, used by the blocked drivers.
    public mutating func minIntHelper() {
        function("static inline int min_int(int a, int b)") { c in c.line("return a < b ? a : b;") }
    }

    /// `load4`: four consecutive int8 values as one int32, for broadcasting (any alignment).
    public mutating func load4Helper() {
        comment("Four consecutive int8 values as one int32 (any alignment).")
        function("static inline int32_t load4(const int8_t *p)") { c in
            c.declare("int32_t", "v")
            c.line("memcpy(&v, p, sizeof v);")
            c.line("return v;")
        }
    }
}
