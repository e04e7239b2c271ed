import Kernels

/// How rows are quantized, general enough for every scheme of the accuracy study: symmetric INT4 or
/// INT8 on the first K - O ("normal") channels with one scale per group (or per row), and symmetric
/// INT8 per row on the last O (outlier) channels.
///
/// `bits: 4, groupSize: 128, clip: 0.9 or 0.85` with O outliers is the Atom format
/// (`AtomQuantization.quantize` gives the same codes and scales); `bits: 8, groupSize: nil, outliers: 0,
/// clip: 1` is W8A8's per-token / per-channel INT8 (KERNELS.md section 1).
public struct IntegerFormat: Sendable, Equatable {
    /// Bits of the normal channels' codes: 4 ([-8, 7]) or 8 ([-127, 127]).
    public var bits: Int
    /// Channels per scale among the normal ones; nil: one scale for all of a row's normal channels.
    public var groupSize: Int?
    /// Outlier channels at the end of K, in INT8 per row (no clip).
    public var outliers: Int
    /// s = absmax * clip / qmax for the normal channels.
    public var clip: Float

    public init(bits: Int, groupSize: Int?, outliers: Int, clip: Float) {
        precondition(bits == 4 || bits == 8, "integer formats have 4 or 8 bits, not \(bits)")
        self.bits = bits
        self.groupSize = groupSize
        self.outliers = outliers
        self.clip = clip
    }

    /// Group length for rows of `k` channels.
    func groupLength(k: Int) -> Int { groupSize ?? (k - outliers) }
}

/// Quantized rows with unpacked codes (one signed byte each), the form the simulation multiplies.
public struct IntegerRows: Sendable, Equatable {
    public let rows: Int
    public let k: Int
    public private(set) var format: IntegerFormat
    /// [rows][K - O] codes of the normal channels.
    public var codes: [Int8]
    /// [rows][groups] scales.
    public var scales: [Float]
    /// [rows][O] INT8 outlier codes.
    public var outlierCodes: [Int8]
    /// [rows] outlier scales.
    public var outlierScales: [Float]

    public var normal: Int { k - format.outliers }
    public var groupLength: Int { format.groupLength(k: k) }
    public var groups: Int { normal / groupLength }

    /// Quantizes `rows` rows of `k` values (row-major, already reordered). Uses `AtomQuantization`'s
    /// scale and code functions: INT4 s = absmax * clip / 7, INT8 s = absmax * clip / 127, round half to
    /// even, clamp; outliers s = absmax / 127.
    public init(quantizing x: UnsafeBufferPointer<Float>, rows: Int, k: Int, format: IntegerFormat) {
        precondition(x.count == rows * k, "\(x.count) values are not \(rows) rows of \(k)")
        let normal = k - format.outliers, length = format.groupLength(k: k)
        precondition(format.outliers >= 0 && normal > 0 && normal % length == 0,
                     "K - outliers = \(normal) must be a positive multiple of the group length \(length)")
        let groups = normal / length, o = format.outliers
        var codes = [Int8](repeating: 0, count: rows * normal)
        var scales = [Float](repeating: 0, count: rows * groups)
        var outlierCodes = [Int8](repeating: 0, count: rows * o)
        var outlierScales = [Float](repeating: 0, count: rows)
        for r in 0..<rows {
            let row = r * k
            for g in 0..<groups {
                let start = row + g * length
                var absmax: Float = 0
                for j in 0..<length { absmax = max(absmax, abs(x[start + j])) }
                let s = format.bits == 4
                    ? AtomQuantization.int4Scale(absmax: absmax, clip: format.clip)
                    : AtomQuantization.int8Scale(absmax: absmax * format.clip)
                scales[r * groups + g] = s
                let out = r * normal + g * length
                for j in 0..<length {
                    codes[out + j] = format.bits == 4
                        ? AtomQuantization.int4Code(x[start + j], scale: s) : AtomQuantization.int8Code(x[start + j], scale: s)
                }
            }
            guard o > 0 else { continue }
            var absmax: Float = 0
            for j in 0..<o { absmax = max(absmax, abs(x[row + normal + j])) }
            let s = AtomQuantization.int8Scale(absmax: absmax)
            outlierScales[r] = s
            for j in 0..<o { outlierCodes[r * o + j] = AtomQuantization.int8Code(x[row + normal + j], scale: s) }
        }
        self.rows = rows
        self.k = k
        self.format = format
        self.codes = codes
        self.scales = scales
        self.outlierCodes = outlierCodes
        self.outlierScales = outlierScales
    }

    /// Quantizes a row-major array of `rows` rows.
    public init(quantizing x: [Float], rows: Int, k: Int, format: IntegerFormat) {
        self = x.withUnsafeBufferPointer { IntegerRows(quantizing: $0, rows: rows, k: k, format: format) }
    }

    /// The Atom format unpacked (its clip is not recorded in `Quantized`; pass the one it was made with).
    public init(atom q: AtomQuantization.Quantized, clip: Float) {
        rows = q.rows
        k = q.k
        format = IntegerFormat(bits: 4, groupSize: AtomQuantization.groupSize, outliers: q.outliers, clip: clip)
        let normal = q.normal
        var codes = [Int8](repeating: 0, count: q.rows * normal)
        q.codes.withUnsafeBufferPointer { packed in
            guard let base = packed.baseAddress else { return }
            for r in 0..<q.rows {
                for j in 0..<normal { codes[r * normal + j] = AtomQuantization.unpack(base + r * normal / 2, j) }
            }
        }
        self.codes = codes
        scales = q.scales
        outlierCodes = q.outlierCodes
        outlierScales = q.outlierScales
    }

    /// Replaces group scales that are all equal within each row (a per-row scale stored per group, as
    /// `atomLayout()` stores it) by one scale per row.
    mutating func collapseToRowScales() {
        let groups = self.groups
        precondition((0..<rows).allSatisfy { r in Set(scales[(r * groups)..<((r + 1) * groups)]).count <= 1 },
                     "group scales differ within a row; they are not a per-row scale")
        scales = (0..<rows).map { groups == 0 ? 0 : scales[$0 * groups] }
        format.groupSize = nil
    }

    /// W8A8's per-row INT8 codes and scales.
    public init(int8 codes: [Int8], scales: [Float], rows: Int, k: Int) {
        precondition(codes.count == rows * k && scales.count == rows)
        self.rows = rows
        self.k = k
        format = IntegerFormat(bits: 8, groupSize: nil, outliers: 0, clip: 1)
        self.codes = codes
        self.scales = scales
        outlierCodes = []
        outlierScales = [Float](repeating: 0, count: rows)
    }

    /// The values the codes stand for, [rows][k] (code times scale in fp32).
    public func dequantized() -> [Float] {
        var out = [Float](repeating: 0, count: rows * k)
        let length = groupLength, o = format.outliers
        for r in 0..<rows {
            for j in 0..<normal { out[r * k + j] = Float(codes[r * normal + j]) * scales[r * groups + j / length] }
            for j in 0..<o { out[r * k + normal + j] = Float(outlierCodes[r * o + j]) * outlierScales[r] }
        }
        return out
    }
}
