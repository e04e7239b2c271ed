import KernelKit

/// Plain Swift reference of gemm-w8a8: int32 sums, then `Float(sum) * (aScale[m] * wScale[n])`, the same
/// fp32 operations in the same order as every variant's epilogue, so results compare bit for bit.
public enum GemmW8A8Reference {
    public static func compute(a: UnsafePointer<Int8>, aScale: UnsafePointer<Float>, w: UnsafePointer<Int8>, wScale: UnsafePointer<Float>, m: Int, n: Int, k: Int) -> [Float] {
        var y = [Float](repeating: 0, count: m * n)
        for i in 0..<m {
            let row = a + i * k
            for j in 0..<n {
                let col = w + j * k
                var sum: Int32 = 0
                for t in 0..<k { sum &+= Int32(row[t]) &* Int32(col[t]) }
                y[i * n + j] = Float(sum) * (aScale[i] * wScale[j])
            }
        }
        return y
    }

    /// Random legal inputs: codes in [-127, 127] (never all zero), with the first row of A and the
    /// first row of W at +127 and the second at -127 so the largest pair sums are exercised; scales
    /// in [0.5, 2] / 127.
    public static func inputs(m: Int, n: Int, k: Int, seed: UInt64) -> (a: [Int8], aScale: [Float], w: [Int8], wScale: [Float]) {
        var rng = SeededGenerator(seed: seed)
        func codes(_ rows: Int) -> [Int8] {
            var v = (0..<rows * k).map { _ in Int8.random(in: -127...127, using: &rng) }
            if rows > 0 { for t in 0..<k { v[t] = 127 } }
            if rows > 1 { for t in 0..<k { v[k + t] = -127 } }
            return v
        }
        let a = codes(m), w = codes(n)
        let aScale = (0..<m).map { _ in Float.random(in: 0.5...2, using: &rng) / 127 }
        let wScale = (0..<n).map { _ in Float.random(in: 0.5...2, using: &rng) / 127 }
        return (a, aScale, w, wScale)
    }
}

/// gemm-w8a8 bound to one workload's inputs and a loaded variant.
final class GemmW8A8Instance: KernelInstance {
    typealias PackedBytes = @convention(c) (Int32, Int32) -> Int
    typealias WorkspaceBytes = @convention(c) () -> Int
    typealias Pack = @convention(c) (UnsafePointer<Int8>?, UnsafePointer<Float>?, Int32, Int32, UnsafeMutableRawPointer?) -> Void
    typealias Kernel = @convention(c) (
        UnsafePointer<Int8>?, UnsafePointer<Float>?, UnsafeRawPointer?, UnsafeMutablePointer<Float>?,
        Int32, Int32, Int32, Int32, Int32, Int32, UnsafeMutableRawPointer?
    ) -> Void

    let m: Int, n: Int, k: Int, seed: UInt64
    let a: AlignedBuffer, aScale: AlignedBuffer, w: AlignedBuffer, wScale: AlignedBuffer
    let packed: AlignedBuffer
    let pack: Pack
    let kernel: Kernel
    let workspaceBytesPerThread: Int
    let threadCount: Int
    /// Each thread's block of Y: rows and columns.
    let blocks: [(rows: Range<Int>, cols: Range<Int>)]
    private var output: UnsafeMutablePointer<Float>?
    private var workspaces: [UnsafeMutableRawPointer] = []

    var outputBytes: Int { m * n * MemoryLayout<Float>.size }
    var workingSetBytes: Int { a.byteCount + aScale.byteCount + packed.byteCount + outputBytes }

    init(workload: Workload, config: Configuration, symbols: SymbolTable, names: [String: String], seed: UInt64) throws {
        m = workload["m"]
        n = workload["n"]
        k = workload["k"]
        self.seed = seed
        let inputs = GemmW8A8Reference.inputs(m: m, n: n, k: k, seed: seed)
        a = AlignedBuffer(copying: inputs.a)
        aScale = AlignedBuffer(copying: inputs.aScale)
        w = AlignedBuffer(copying: inputs.w)
        wScale = AlignedBuffer(copying: inputs.wScale)
        let packedBytes = try symbols.function(names["packed_bytes"]!, as: PackedBytes.self)
        let workspaceBytes = try symbols.function(names["workspace_bytes"]!, as: WorkspaceBytes.self)
        pack = try symbols.function(names["pack"]!, as: Pack.self)
        kernel = try symbols.function(names["kernel"]!, as: Kernel.self)
        packed = AlignedBuffer(byteCount: packedBytes(Int32(n), Int32(k)))
        workspaceBytesPerThread = workspaceBytes()
        threadCount = config.int("threads")
        blocks = gemmThreadBlocks(m: m, n: n, config: config)
    }

    var dataRegions: [UnsafeRawBufferPointer] { [a, aScale, packed].map(\.region) }

    func prepare() throws {
        pack(w.pointer.assumingMemoryBound(to: Int8.self), wScale.pointer.assumingMemoryBound(to: Float.self), Int32(n), Int32(k), packed.pointer)
    }

    func bind(output: UnsafeMutableRawPointer, workspaces: [UnsafeMutableRawPointer]) {
        self.output = output.assumingMemoryBound(to: Float.self)
        self.workspaces = workspaces
    }

    func run(thread index: Int) {
        let block = blocks[index]
        guard !block.rows.isEmpty, !block.cols.isEmpty else { return }
        kernel(
            a.pointer.assumingMemoryBound(to: Int8.self), aScale.pointer.assumingMemoryBound(to: Float.self),
            UnsafeRawPointer(packed.pointer), output, Int32(n), Int32(k),
            Int32(block.rows.lowerBound), Int32(block.rows.upperBound),
            Int32(block.cols.lowerBound), Int32(block.cols.upperBound), workspaces[index])
    }

    func verify() -> Verification {
        // Every variant of one workload sees the same seeded inputs, so the worker computes the
        // reference once per workload.
        let expected = ReferenceCache.shared.value(for: "gemm-w8a8 \(m) \(n) \(k) \(seed)") {
            GemmW8A8Reference.compute(
                a: a.pointer.assumingMemoryBound(to: Int8.self), aScale: aScale.pointer.assumingMemoryBound(to: Float.self),
                w: w.pointer.assumingMemoryBound(to: Int8.self), wScale: wScale.pointer.assumingMemoryBound(to: Float.self),
                m: m, n: n, k: k)
        }
        guard let output else {
            return Verification(passed: false, checked: 0, mismatches: 0, maxAbsError: .nan, maxRelError: .nan, tolerance: "bit-exact", firstMismatch: "no output bound")
        }
        return compareBitExact(expected: expected, actual: UnsafeBufferPointer(start: output, count: m * n), columns: n)
    }
}
