/// Where in a decoder layer activations are observed: the inputs of its linear layers (what Atom's
/// calibration reorders and quantizes) and the residual stream entering the layer.
public enum CapturePoint: String, CaseIterable, Sendable, Codable {
    /// The residual stream entering the layer, before input_layernorm [hidden].
    case residual
    /// Input of q_proj, k_proj and v_proj: input_layernorm's output [hidden].
    case qkv
    /// Input of o_proj: the attention output, heads concatenated [heads * head_dim].
    case o
    /// Input of gate_proj and up_proj: post_attention_layernorm's output [hidden].
    case gateUp = "gate_up"
    /// Input of down_proj: silu(gate) * up [intermediate].
    case down

    /// Number of channels at this point under `config`.
    public func width(_ config: LlamaConfig) -> Int {
        switch self {
        case .residual, .qkv, .gateUp: return config.hiddenSize
        case .o: return config.queryWidth
        case .down: return config.intermediateSize
        }
    }
}

/// Per-channel statistics of the rows (tokens) seen at one capture point.
public struct ChannelStatistics: Sendable, Equatable {
    public let channels: Int
    /// Sum of x^2 per channel over every token seen: the score Atom's calibration sorts by
    /// (`AtomCalibration.permutation(sumsOfSquares:)` takes it as is).
    public private(set) var sumsOfSquares: [Double]
    /// Largest |x| per channel.
    public private(set) var maxMagnitudes: [Float]
    /// Tokens seen.
    public private(set) var tokens = 0

    public init(channels: Int) {
        self.channels = channels
        sumsOfSquares = [Double](repeating: 0, count: channels)
        maxMagnitudes = [Float](repeating: 0, count: channels)
    }

    /// Adds one row of `channels` values.
    public mutating func add(_ row: [Float]) {
        precondition(row.count == channels, "a row of \(row.count) values for \(channels) channels")
        for c in 0..<channels {
            let v = row[c]
            sumsOfSquares[c] += Double(v) * Double(v)
            maxMagnitudes[c] = max(maxMagnitudes[c], abs(v))
        }
        tokens += 1
    }

    /// Root mean square per channel (0 before any token).
    public var rms: [Double] { sumsOfSquares.map { tokens > 0 ? ($0 / Double(tokens)).squareRoot() : 0 } }
}

/// Collects activations during a reference forward: per layer and per `CapturePoint`, channel
/// statistics over every token run, and optionally the rows themselves.
///
/// ```swift
/// var capture = ActivationCapture(config: model.config)
/// _ = try model.forward(tokens: calibrationTokens, capture: &capture)
/// let sums = capture.statistics(layer: 0, at: .down).sumsOfSquares   // Atom reorder score
/// ```
public struct ActivationCapture: Sendable {
    public let config: LlamaConfig
    /// Whether every row is kept (memory: tokens x width per layer and point).
    public let keepsRows: Bool
    private var stats: [[ChannelStatistics]]
    private var kept: [[[Float]]]

    /// A capture for every layer of `config`; `keepRows` also stores the raw rows.
    public init(config: LlamaConfig, keepRows: Bool = false) {
        self.config = config
        self.keepsRows = keepRows
        stats = (0..<config.numHiddenLayers).map { _ in CapturePoint.allCases.map { ChannelStatistics(channels: $0.width(config)) } }
        kept = (0..<config.numHiddenLayers).map { _ in CapturePoint.allCases.map { _ in [] } }
    }

    /// Statistics of `point` in `layer`.
    public func statistics(layer: Int, at point: CapturePoint) -> ChannelStatistics {
        stats[layer][Self.index(point)]
    }

    /// The rows seen at `point` in `layer`, [tokens, width] (empty unless `keepRows` was set).
    public func rows(layer: Int, at point: CapturePoint) -> Matrix {
        let values = kept[layer][Self.index(point)]
        let width = point.width(config)
        return Matrix(rows: values.count / max(width, 1), cols: width, values: values)
    }

    /// Records one token's row at `point` of `layer` (the reference forward calls this; another
    /// engine can too, to compare its activations with the reference's).
    public mutating func record(layer: Int, _ point: CapturePoint, _ row: [Float]) {
        let i = Self.index(point)
        stats[layer][i].add(row)
        if keepsRows { kept[layer][i].append(contentsOf: row) }
    }

    private static func index(_ point: CapturePoint) -> Int {
        CapturePoint.allCases.firstIndex(of: point) ?? 0
    }
}

/// The keys and values of one sequence, per layer, for incremental decoding. Keys are stored after
/// RoPE, rows of `num_key_value_heads * head_dim` per position.
public struct KVCache: Sendable {
    public let layers: Int
    public let rowWidth: Int
    /// Positions cached so far (the position of the next token).
    public private(set) var length = 0
    /// Per layer: the keys (after RoPE), `length` rows of `rowWidth`.
    public private(set) var keys: [[Float]]
    /// Per layer: the values, `length` rows of `rowWidth`.
    public private(set) var values: [[Float]]

    /// An empty cache for a model with `config`.
    public init(config: LlamaConfig) {
        layers = config.numHiddenLayers
        rowWidth = config.keyValueWidth
        keys = Array(repeating: [], count: layers)
        values = Array(repeating: [], count: layers)
    }

    mutating func append(layer: Int, key: [Float], value: [Float]) {
        keys[layer].append(contentsOf: key)
        values[layer].append(contentsOf: value)
    }

    mutating func advance() { length += 1 }
}
