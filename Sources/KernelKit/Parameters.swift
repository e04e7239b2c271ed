/// One value of a kernel parameter: an integer (tile sizes, thread counts) or a name (ISA, layout).
public enum ParamValue: Codable, Sendable, Hashable, CustomStringConvertible, Comparable {
    case int(Int)
    case name(String)

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let i = try? c.decode(Int.self) { self = .int(i) } else { self = .name(try c.decode(String.self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .int(let i): try c.encode(i)
        case .name(let s): try c.encode(s)
        }
    }

    public var description: String {
        switch self {
        case .int(let i): return String(i)
        case .name(let s): return s
        }
    }

    public static func < (a: ParamValue, b: ParamValue) -> Bool {
        switch (a, b) {
        case let (.int(x), .int(y)): return x < y
        case let (.name(x), .name(y)): return x < y
        case (.int, .name): return true
        case (.name, .int): return false
        }
    }
}

/// The values a parameter may take.
public enum ParameterDomain: Codable, Sendable, Hashable, CustomStringConvertible {
    case ints([Int])
    case names([String])

    public var values: [ParamValue] {
        switch self {
        case .ints(let v): return v.map(ParamValue.int)
        case .names(let v): return v.map(ParamValue.name)
        }
    }

    public func contains(_ value: ParamValue) -> Bool { values.contains(value) }

    /// Parses command-line text into a value of this domain.
    public func parse(_ text: String) -> ParamValue? {
        switch self {
        case .ints: return Int(text).map(ParamValue.int)
        case .names: return .name(text)
        }
    }

    public var description: String { values.map(\.description).joined(separator: "|") }
}

/// A tunable parameter of a kernel family.
public struct ParameterSpec: Codable, Sendable, Hashable {
    public var name: String
    public var domain: ParameterDomain
    public var defaultValue: ParamValue
    public var summary: String

    public init(_ name: String, _ domain: ParameterDomain, default defaultValue: ParamValue, _ summary: String) {
        self.name = name
        self.domain = domain
        self.defaultValue = defaultValue
        self.summary = summary
    }
}

/// One point of a family's parameter space. Keys are parameter names; `description` is canonical
/// (sorted `name=value` pairs), so it can be used in cache and database keys.
public struct Configuration: Codable, Sendable, Hashable, CustomStringConvertible {
    public var values: [String: ParamValue]

    public init(_ values: [String: ParamValue] = [:]) { self.values = values }

    public subscript(name: String) -> ParamValue? {
        get { values[name] }
        set { values[name] = newValue }
    }

    /// The integer value of `name`; families call this only after `validate`.
    public func int(_ name: String) -> Int {
        guard case .int(let v)? = values[name] else { preconditionFailure("parameter \(name) is not an integer") }
        return v
    }

    public func name(_ name: String) -> String {
        guard case .name(let v)? = values[name] else { preconditionFailure("parameter \(name) is not a name") }
        return v
    }

    public var description: String {
        values.keys.sorted().map { "\($0)=\(values[$0]!)" }.joined(separator: " ")
    }

    /// The parameters whose values differ in `other`, as "name=old->new" (sorted; "none" for none).
    public func changes(to other: Configuration) -> String {
        let names = Set(values.keys).union(other.values.keys).sorted().filter { values[$0] != other.values[$0] }
        guard !names.isEmpty else { return "none" }
        return names.map { "\($0)=\(values[$0].map { "\($0)" } ?? "-")->\(other.values[$0].map { "\($0)" } ?? "-")" }.joined(separator: " ")
    }
}

/// A problem size for a family, e.g. `gemm-w8a8 m=64 n=4096 k=4096`.
public struct Workload: Codable, Sendable, Hashable, CustomStringConvertible {
    public var family: String
    public var shape: [String: Int]

    public init(family: String, shape: [String: Int]) {
        self.family = family
        self.shape = shape
    }

    public subscript(dim: String) -> Int { shape[dim] ?? 0 }

    public var description: String {
        "\(family) " + shape.keys.sorted().map { "\($0)=\(shape[$0]!)" }.joined(separator: " ")
    }
}

/// A rule a configuration or shape breaks, named so the user can look it up in `lowbit kernels`.
public struct ConstraintViolation: Error, CustomStringConvertible, Equatable {
    public var rule: String
    public var message: String

    public init(_ rule: String, _ message: String) {
        self.rule = rule
        self.message = message
    }

    public var description: String { "\(message) [rule: \(rule)]" }
}
