/// How one synthesized tensor is made; values are produced in chunks of rows so that a 7B-sized
/// tensor never needs more than a few MB at once.
struct SynthRecipe: Sendable {
    enum Kind: Sendable {
        /// N(0, std^2) (approximately), times the row and column scales.
        case gaussian(std: Float)
        /// N(0, 1) except the given columns, which hold `value * (1 + 0.1 * N(0, 1))`.
        case embedding([Int: Float])
        /// Fixed values (a norm's gains).
        case vector([Float])
    }

    let name: String
    let rows: Int
    let cols: Int
    let kind: Kind
    var rowScale: [Float]?
    var colScale: [Float]?
    /// Values that replace the random ones (before scaling): row -> (column, value).
    var overrides: [Int: [(col: Int, value: Float)]] = [:]
    /// A 1-D tensor ([cols]) rather than a matrix.
    var vector = false

    init(name: String, rows: Int, cols: Int, kind: Kind, rowScale: [Float]? = nil, colScale: [Float]? = nil, vector: Bool = false) {
        self.name = name
        self.rows = rows
        self.cols = cols
        self.kind = kind
        self.rowScale = rowScale
        self.colScale = colScale
        self.vector = vector
    }

    var shape: [Int] { vector ? [cols] : [rows, cols] }

    /// Calls `body` with consecutive chunks of whole rows until the tensor is done.
    func generate(seed: UInt64, _ body: (UnsafeBufferPointer<Float>) throws -> Void) throws {
        if case .vector(let values) = kind {
            try values.withUnsafeBufferPointer { try body($0) }
            return
        }
        var rng = SynthRandom(seed: seed, stream: name)
        let rowsPerChunk = max(1, (1 << 20) / max(cols, 1))
        var buffer = [Float](repeating: 0, count: rowsPerChunk * cols)
        var row = 0
        while row < rows {
            let n = min(rowsPerChunk, rows - row)
            try buffer.withUnsafeMutableBufferPointer { b in
                fill(b, firstRow: row, rows: n, &rng)
                try body(UnsafeBufferPointer(rebasing: b[0..<(n * cols)]))
            }
            row += n
        }
    }

    private func fill(_ b: UnsafeMutableBufferPointer<Float>, firstRow: Int, rows n: Int, _ rng: inout SynthRandom) {
        let count = n * cols
        switch kind {
        case .gaussian(let std):
            for i in 0..<count { b[i] = rng.normal() * std }
        case .embedding(let outliers):
            for i in 0..<count { b[i] = rng.normal() }
            for r in 0..<n {
                for (c, value) in outliers { b[r * cols + c] = value * (1 + 0.1 * b[r * cols + c]) }
            }
        case .vector:
            break
        }
        for r in 0..<n {
            for (c, value) in overrides[firstRow + r] ?? [] { b[r * cols + c] = value }
        }
        if let colScale {
            colScale.withUnsafeBufferPointer { s in
                for r in 0..<n {
                    let base = r * cols
                    for c in 0..<cols { b[base + c] *= s[c] }
                }
            }
        }
        if let rowScale {
            for r in 0..<n where rowScale[firstRow + r] != 1 {
                let s = rowScale[firstRow + r]
                for c in 0..<cols { b[r * cols + c] *= s }
            }
        }
    }
}
