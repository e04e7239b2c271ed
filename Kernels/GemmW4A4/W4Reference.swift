import KernelKit

/// Plain Swift reference of gemm-w4a4: exact int32 group sums, then, per output, the fp32 sum
/// `y = y + Float(sum_g) * (sa[m][g] * sw[n][g])` over groups in order, then the outlier term. Every
/// variant adds the same fp32 terms in the same order, so results compare bit for bit.
public enum GemmW4A4Reference {
    public static func compute(a: AtomQuantization.Quantized, w: AtomQuantization.Quantized) -> [Float] {
        let m = a.rows, n = w.rows, normal = a.normal, groups = a.groups, o = a.outliers, g = AtomQuantization.groupSize
        var y = [Float](repeating: 0, count: m * n)
        // Unpack once: one signed byte per code.
        func unpacked(_ q: AtomQuantization.Quantized) -> [Int8] {
            q.codes.withUnsafeBufferPointer { p in
                (0..<q.rows).flatMap { r in (0..<normal).map { AtomQuantization.unpack(p.baseAddress! + r * normal / 2, $0) } }
            }
        }
        let ua = unpacked(a), uw = unpacked(w)
        for i in 0..<m {
            for j in 0..<n {
                var acc: Float = 0
                for grp in 0..<groups {
                    var sum: Int32 = 0
                    let ai = i * normal + grp * g, wj = j * normal + grp * g
                    for t in 0..<g { sum &+= Int32(ua[ai + t]) &* Int32(uw[wj + t]) }
                    acc = acc + Float(sum) * (a.scales[i * groups + grp] * w.scales[j * groups + grp])
                }
                if o > 0 {
                    var sum: Int32 = 0
                    for t in 0..<o { sum &+= Int32(a.outlierCodes[i * o + t]) &* Int32(w.outlierCodes[j * o + t]) }
                    acc = acc + Float(sum) * (a.outlierScales[i] * w.outlierScales[j])
                }
                y[i * n + j] = acc
            }
        }
        return y
    }

    /// Random rows with a few outlier channels (20 to 100 times larger) at the end of K, as the
    /// reordering puts them, a whole-zero group, and (from 3 rows) two constant groups whose codes are
    /// all -8 and all 7.
    public static func rows(_ count: Int, k: Int, outliers: Int, rng: inout SeededGenerator) -> [Float] {
        var x = [Float](repeating: 0, count: count * k)
        for r in 0..<count {
            for c in 0..<k {
                var v = Float.random(in: -1...1, using: &rng)
                if c >= k - outliers { v *= Float.random(in: 20...100, using: &rng) }
                x[r * k + c] = v
            }
        }
        // One zero group (scale 0, codes 0) when there is room: an edge case worth covering.
        if count > 1, k - outliers >= 2 * AtomQuantization.groupSize {
            for c in AtomQuantization.groupSize..<(2 * AtomQuantization.groupSize) { x[k + c] = 0 }
        }
        // Constant groups, whose codes sit at the ends of the range (-8 for -1, 7 for +1 after clipping):
        // the largest group sums and code sums, in either sign, that the integer paths must hold.
        if count > 2 {
            for c in 0..<AtomQuantization.groupSize {
                x[(count - 1) * k + c] = -1
                x[(count - 2) * k + c] = 1
            }
        }
        return x
    }
}

/// The operands of a W4A4 GEMM in kernel memory: the quantized activations as the kernels read them and
/// the weights, packed by `prepare` with the variant's own packing function (gemm-w4a4 and gemm-w4a4-kv).
final class W4Operands {
    typealias PackedBytes = @convention(c) (Int32, Int32, Int32) -> Int
    typealias Pack = @convention(c) (
        UnsafePointer<UInt8>?, UnsafePointer<Float>?, UnsafePointer<Int8>?, UnsafePointer<Float>?, Int32, Int32, Int32,
        UnsafeMutableRawPointer?
    ) -> Void

    let a: AtomQuantization.Quantized, w: AtomQuantization.Quantized
    let k: Int, outliers: Int
    let codes: AlignedBuffer, scales: AlignedBuffer, sums: AlignedBuffer, outlierCodes: AlignedBuffer, outlierScales: AlignedBuffer
    let packed: AlignedBuffer
    let pack: Pack

    init(a: AtomQuantization.Quantized, w: AtomQuantization.Quantized, k: Int, outliers: Int, symbols: SymbolTable, names: [String: String]) throws {
        self.a = a
        self.w = w
        self.k = k
        self.outliers = outliers
        codes = AlignedBuffer(copying: a.codes)
        scales = AlignedBuffer(copying: a.scales)
        sums = AlignedBuffer(copying: a.groupSums)
        outlierCodes = AlignedBuffer(copying: a.outlierCodes + [0, 0, 0, 0])  // load4 may read a padded tail
        outlierScales = AlignedBuffer(copying: a.outlierScales)
        let packedBytes = try symbols.function(names["packed_bytes"]!, as: PackedBytes.self)
        pack = try symbols.function(names["pack"]!, as: Pack.self)
        packed = AlignedBuffer(byteCount: packedBytes(Int32(w.rows), Int32(k), Int32(outliers)))
    }

    /// Every buffer a kernel reads.
    var regions: [UnsafeRawBufferPointer] { [codes, scales, sums, outlierCodes, outlierScales, packed].map(\.region) }

    /// Bytes of the activations and packed weights.
    var byteCount: Int { codes.byteCount + scales.byteCount + sums.byteCount + outlierCodes.byteCount + packed.byteCount }

    func prepare() {
        let w = self.w
        w.codes.withUnsafeBufferPointer { codes in
            w.scales.withUnsafeBufferPointer { scales in
                w.outlierCodes.withUnsafeBufferPointer { oc in
                    w.outlierScales.withUnsafeBufferPointer { os in
                        pack(codes.baseAddress, scales.baseAddress, oc.baseAddress, os.baseAddress, Int32(w.rows), Int32(k), Int32(outliers), packed.pointer)
                    }
                }
            }
        }
    }
}

/// gemm-w4a4 bound to one workload's quantized inputs and a loaded variant.
final class GemmW4A4Instance: KernelInstance {
    typealias WorkspaceBytes = @convention(c) () -> Int
    typealias Kernel = @convention(c) (
        UnsafePointer<UInt8>?, UnsafePointer<Float>?, UnsafePointer<Int32>?, UnsafePointer<Int8>?, UnsafePointer<Float>?,
        UnsafeRawPointer?, UnsafeMutableRawPointer?, Int32, Int32, Int32, Int32, Int32, Int32, Int32, UnsafeMutableRawPointer?
    ) -> Void

    let m: Int, n: Int, k: Int, outliers: Int, seed: UInt64
    /// Y is binary16 (`out=fp16`) rather than fp32.
    let half: Bool
    let operands: W4Operands
    let kernel: Kernel
    let workspaceBytesPerThread: Int
    let threadCount: Int
    let blocks: [(rows: Range<Int>, cols: Range<Int>)]
    private var output: UnsafeMutableRawPointer?
    private var workspaces: [UnsafeMutableRawPointer] = []

    var outputBytes: Int { m * n * (half ? MemoryLayout<UInt16>.size : MemoryLayout<Float>.size) }
    var workingSetBytes: Int { operands.byteCount + outputBytes }

    init(workload: Workload, config: Configuration, symbols: SymbolTable, names: [String: String], seed: UInt64) throws {
        m = workload["m"]
        n = workload["n"]
        k = workload["k"]
        outliers = workload.shape["outliers"] ?? AtomQuantization.defaultOutliers
        half = config.name("out") == "fp16"
        self.seed = seed
        var rng = SeededGenerator(seed: seed)
        let a = AtomQuantization.quantize(
            GemmW4A4Reference.rows(m, k: k, outliers: outliers, rng: &rng), rows: m, k: k, outliers: outliers, clip: AtomQuantization.activationClip)
        let w = AtomQuantization.quantize(
            GemmW4A4Reference.rows(n, k: k, outliers: outliers, rng: &rng), rows: n, k: k, outliers: outliers, clip: AtomQuantization.weightClip)
        operands = try W4Operands(a: a, w: w, k: k, outliers: outliers, symbols: symbols, names: names)
        let workspaceBytes = try symbols.function(names["workspace_bytes"]!, as: WorkspaceBytes.self)
        kernel = try symbols.function(names["kernel"]!, as: Kernel.self)
        workspaceBytesPerThread = workspaceBytes()
        threadCount = config.int("threads")
        blocks = gemmThreadBlocks(m: m, n: n, config: config)
    }

    var dataRegions: [UnsafeRawBufferPointer] { operands.regions }

    func prepare() throws { operands.prepare() }

    func bind(output: UnsafeMutableRawPointer, workspaces: [UnsafeMutableRawPointer]) {
        self.output = output
        self.workspaces = workspaces
    }

    func run(thread index: Int) {
        let block = blocks[index]
        guard !block.rows.isEmpty, !block.cols.isEmpty else { return }
        let o = operands
        kernel(
            o.codes.pointer.assumingMemoryBound(to: UInt8.self), o.scales.pointer.assumingMemoryBound(to: Float.self),
            o.sums.pointer.assumingMemoryBound(to: Int32.self), o.outlierCodes.pointer.assumingMemoryBound(to: Int8.self),
            o.outlierScales.pointer.assumingMemoryBound(to: Float.self), UnsafeRawPointer(o.packed.pointer), output,
            Int32(n), Int32(k), Int32(outliers), Int32(block.rows.lowerBound), Int32(block.rows.upperBound),
            Int32(block.cols.lowerBound), Int32(block.cols.upperBound), workspaces[index])
    }

    func verify() -> Verification {
        let expected = ReferenceCache.shared.value(for: "gemm-w4a4 \(m) \(n) \(k) \(outliers) \(seed)") {
            GemmW4A4Reference.compute(a: operands.a, w: operands.w)
        }
        guard half else {
            return compareBitExact(expected: expected, actual: UnsafeBufferPointer(start: output!.assumingMemoryBound(to: Float.self), count: m * n), columns: n)
        }
        // binary16 Y: the reference's fp32 results rounded to nearest even, compared bit for bit (widened
        // back to fp32, which every binary16 value is exactly).
        let halves = UnsafeBufferPointer(start: output!.assumingMemoryBound(to: UInt16.self), count: m * n)
        let widened = halves.map { Float(Float16(bitPattern: $0)) }
        return widened.withUnsafeBufferPointer { actual in
            compareBitExact(expected: expected.map { Float(Float16($0)) }, actual: actual, columns: n)
        }
    }
}
