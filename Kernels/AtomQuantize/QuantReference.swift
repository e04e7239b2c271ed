import KernelKit

/// Plain Swift reference of the Atom quantize families: the same fp32 operations, in the same order,
/// as every generated variant, then `AtomQuantization.quantize` (the definition of the format). Codes,
/// scales, group sums and outlier codes therefore compare bit for bit.
public enum AtomQuantizeReference {
    /// Interleaved partial sums of the RMSNorm sum of squares: p[j % 32] += x[j] * x[j] in index order,
    /// then halved until one is left (p[i] = p[i] + p[i + h], h = 16, 8, 4, 2, 1). 32 keeps four AVX2,
    /// two AVX-512 or eight NEON accumulators independent; every variant folds them the same way.
    public static let partials = 32

    /// The family's exp (silu needs one; libm's expf cannot be matched by SIMD code, so this one is
    /// defined here and implemented identically in the scalar C, every SIMD dialect and Swift):
    /// x clamped to [-87, 88], n = rne(x * log2e), r = fma(-n, ln2Lo, fma(-n, ln2Hi, x)) (Cody-Waite; n * ln2Hi
    /// is exact), p = Horner(polynomial) in r by fused multiply-adds, exp = (fma(p, r^2, r) + 1) * 2^n
    /// with 2^n built from the exponent bits (n is in [-126, 127], so 2^n and the result are normal
    /// numbers). Fused multiply-adds halve the dependent steps of the SIMD code (each one rounding instead
    /// of two) and every target has them: FMA on x86, fmla on Arm, C99's fmaf in the scalar code.
    /// Constants: Cephes' expf. Error against glibc's expf over [-87, 88]: 1.0 ulp at most on a grid of
    /// 2.9 million points (step 2^-14), measured by the tests, which assert `maxUlpError` = 2; below -87
    /// it returns exp(-87), above 88 exp(88).
    public enum ExpConstants {
        public static let minimum: Float = -87.0
        public static let maximum: Float = 88.0
        public static let log2e: Float = 1.44269504088896341
        public static let ln2Hi: Float = 0.693359375
        public static let ln2Lo: Float = -2.12194440e-4
        public static let polynomial: [Float] = [
            1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1,
        ]
        /// Bound on |exp(x) - expf(x)| in ulps of expf(x) for x in [minimum, maximum].
        public static let maxUlpError = 2
    }

    /// Sum of x^2 in the family's order.
    public static func sumOfSquares(_ x: UnsafeBufferPointer<Float>) -> Float {
        var p = [Float](repeating: 0, count: partials)
        for j in 0..<x.count { p[j % partials] += x[j] * x[j] }
        var half = partials / 2
        while half >= 1 {
            for i in 0..<half { p[i] = p[i] + p[i + half] }
            half /= 2
        }
        return p[0]
    }

    /// r = 1 / sqrt(mean(x^2) + eps), mean = sumOfSquares / K in fp32.
    public static func rmsScale(_ row: UnsafeBufferPointer<Float>, eps: Float) -> Float {
        let mean = sumOfSquares(row) / Float(row.count)
        return 1 / (mean + eps).squareRoot()
    }

    /// The family's exp (see `ExpConstants`).
    public static func exp(_ value: Float) -> Float {
        let e = ExpConstants.self
        let x = min(max(value, e.minimum), e.maximum)
        let n = (x * e.log2e).rounded(.toNearestOrEven)
        var r = x.addingProduct(n, -e.ln2Hi)
        r = r.addingProduct(n, -e.ln2Lo)
        let z = r * r
        var p = e.polynomial[0]
        for c in e.polynomial.dropFirst() { p = c.addingProduct(p, r) }
        let y = r.addingProduct(p, z) + 1
        return y * Float(bitPattern: UInt32(Int32(n) + 127) << 23)
    }

    /// silu(g) * u = g / (1 + exp(-g)) * u, in that order.
    public static func siluMul(_ g: Float, _ u: Float) -> Float {
        let e = exp(-g)
        return g / (1 + e) * u
    }

    /// y = x[perm] * r * w[perm] per row ([rows][k] in and out).
    public static func rmsnormReorder(x: [Float], weight: [Float], perm: [Int32], eps: Float, rows: Int, k: Int) -> [Float] {
        var y = [Float](repeating: 0, count: rows * k)
        x.withUnsafeBufferPointer { xs in
            for i in 0..<rows {
                let row = UnsafeBufferPointer(rebasing: xs[i * k..<(i + 1) * k])
                let r = rmsScale(row, eps: eps)
                for j in 0..<k {
                    let src = Int(perm[j])
                    y[i * k + j] = row[src] * r * weight[src]
                }
            }
        }
        return y
    }

    /// y = x[perm] per row.
    public static func reorder(x: [Float], perm: [Int32], rows: Int, k: Int) -> [Float] {
        var y = [Float](repeating: 0, count: rows * k)
        for i in 0..<rows {
            for j in 0..<k { y[i * k + j] = x[i * k + Int(perm[j])] }
        }
        return y
    }

    /// y = silu(gate) * up, element-wise.
    public static func siluMul(gate: [Float], up: [Float]) -> [Float] {
        zip(gate, up).map { siluMul($0, $1) }
    }

    public static func rmsnormReorderQuantize(
        x: [Float], weight: [Float], perm: [Int32], eps: Float, rows: Int, k: Int, outliers: Int
    ) -> AtomQuantization.Quantized {
        AtomQuantization.quantize(
            rmsnormReorder(x: x, weight: weight, perm: perm, eps: eps, rows: rows, k: k), rows: rows, k: k,
            outliers: outliers, clip: AtomQuantization.activationClip)
    }

    public static func reorderQuantize(x: [Float], perm: [Int32], rows: Int, k: Int, outliers: Int) -> AtomQuantization.Quantized {
        AtomQuantization.quantize(
            reorder(x: x, perm: perm, rows: rows, k: k), rows: rows, k: k, outliers: outliers, clip: AtomQuantization.activationClip)
    }

    public static func siluMulQuantize(gate: [Float], up: [Float], rows: Int, k: Int, outliers: Int) -> AtomQuantization.Quantized {
        AtomQuantization.quantize(
            siluMul(gate: gate, up: up), rows: rows, k: k, outliers: outliers, clip: AtomQuantization.activationClip)
    }
}

/// The inputs of one run of an Atom quantize family, and the seeded generator of test inputs.
public struct AtomQuantizeInputs: Sendable {
    public var op: AtomQuantize.Op
    public var m: Int
    public var k: Int
    public var outliers: Int
    /// [M][K]: rmsnorm-reorder-quantize and reorder-quantize.
    public var x: [Float] = []
    /// [K] RMSNorm weight.
    public var weight: [Float] = []
    /// [K] source channel of each position.
    public var perm: [Int32] = []
    /// [M][K]: silu-mul-quantize.
    public var gate: [Float] = []
    public var up: [Float] = []
    public var eps: Float = 1e-5

    public init(op: AtomQuantize.Op, m: Int, k: Int, outliers: Int) {
        self.op = op
        self.m = m
        self.k = k
        self.outliers = outliers
    }

    /// The rows the kernel quantizes ([M][K]).
    public func y() -> [Float] {
        switch op {
        case .rmsnormReorderQuantize: AtomQuantizeReference.rmsnormReorder(x: x, weight: weight, perm: perm, eps: eps, rows: m, k: k)
        case .reorderQuantize: AtomQuantizeReference.reorder(x: x, perm: perm, rows: m, k: k)
        case .siluMulQuantize: AtomQuantizeReference.siluMul(gate: gate, up: up)
        }
    }

    /// What every variant must emit.
    public func reference() -> AtomQuantization.Quantized {
        AtomQuantization.quantize(y(), rows: m, k: k, outliers: outliers, clip: AtomQuantization.activationClip)
    }

    /// Row `i` of y.
    func yRow(_ i: Int) -> [Float] {
        switch op {
        case .rmsnormReorderQuantize:
            let r = rms(i)
            return (0..<k).map { j in let s = Int(perm[j]); return x[i * k + s] * r * weight[s] }
        case .reorderQuantize:
            return (0..<k).map { x[i * k + Int(perm[$0])] }
        case .siluMulQuantize:
            return (0..<k).map { AtomQuantizeReference.siluMul(gate[i * k + $0], up[i * k + $0]) }
        }
    }

    private func rms(_ i: Int) -> Float {
        x.withUnsafeBufferPointer { AtomQuantizeReference.rmsScale(UnsafeBufferPointer(rebasing: $0[i * k..<(i + 1) * k]), eps: eps) }
    }

    /// Makes y[i][j] exactly `v` if the inputs allow it (RMSNorm: through the weight of the source
    /// channel, which moves that position in every row; SiLU: gate 32, whose silu is exactly 32).
    mutating func setY(_ i: Int, _ j: Int, _ v: Float) -> Bool {
        switch op {
        case .reorderQuantize:
            x[i * k + Int(perm[j])] = v
            return true
        case .siluMulQuantize:
            gate[i * k + j] = 32
            up[i * k + j] = v / 32
            return AtomQuantizeReference.siluMul(32, v / 32) == v
        case .rmsnormReorderQuantize:
            let src = Int(perm[j])
            let t = x[i * k + src] * rms(i)
            guard t != 0, t.isFinite else { return false }
            let w0 = v / t
            // The weight is shared by every row: keep it near the others (0.5...1.5), or a small x here
            // would make it huge and push other rows' y towards overflow.
            guard abs(w0) >= 1.0 / 16, abs(w0) <= 16 else { return false }
            for w in [w0, w0.nextUp, w0.nextDown, w0.nextUp.nextUp, w0.nextDown.nextDown] where t * w == v {
                weight[src] = w
                return true
            }
            return false
        }
    }

    /// Makes y[i][j] zero through the activation itself (no shared weight changes).
    mutating func zeroY(_ i: Int, _ j: Int) {
        switch op {
        case .rmsnormReorderQuantize, .reorderQuantize: x[i * k + Int(perm[j])] = 0
        case .siluMulQuantize: gate[i * k + j] = 0
        }
    }

    /// Multiplies y[j] of row i by `factor` (through x, or through up for SiLU).
    mutating func scaleY(_ i: Int, _ j: Int, by factor: Float) {
        switch op {
        case .rmsnormReorderQuantize, .reorderQuantize: x[i * k + Int(perm[j])] *= factor
        case .siluMulQuantize: up[i * k + j] *= factor
        }
    }

    /// Plants exact ties (y = (c + 0.5) * s) in positions `range` of row i: first the block's largest
    /// element is nudged until its scale has 8 trailing zero bits, so (2c + 1) * s is exact for every
    /// code c. Returns the number of ties planted.
    @discardableResult
    mutating func plantTies(row i: Int, range: Range<Int>, int8: Bool, codes: [Int]) -> Int {
        guard range.count > codes.count else { return 0 }
        func scale(_ absmax: Float) -> Float {
            int8 ? AtomQuantization.int8Scale(absmax: absmax) : AtomQuantization.int4Scale(absmax: absmax, clip: AtomQuantization.activationClip)
        }
        var y = yRow(i)
        guard let a = range.max(by: { abs(y[$0]) < abs(y[$1]) }), y[a] != 0 else { return 0 }
        var value = y[a]
        var found = false
        for _ in 0..<100_000 {
            value = value > 0 ? value.nextUp : value.nextDown
            if scale(abs(value)).significandBitPattern.trailingZeroBitCount >= 8, setY(i, a, value) {
                found = true
                break
            }
        }
        guard found else { return 0 }
        y = yRow(i)
        let s = scale(range.map { abs(y[$0]) }.max()!)
        var planted = 0
        for (t, c) in codes.enumerated() {
            let position = range.lowerBound + (a - range.lowerBound + 1 + 5 * t) % range.count
            guard position != a else { continue }
            let tie = (Float(c) + 0.5) * s
            guard Double(tie) == (Double(c) + 0.5) * Double(s) else { continue }
            if setY(i, position, tie) { planted += 1 }
        }
        return planted
    }

    /// Seeded inputs with outlier channels (a few channels 20-100x larger than the rest, KERNELS.md
    /// section 6), a calibrated permutation that moves them last, exact ties in every row but the last,
    /// in the last row (when M > 1) a group and the outlier block of zeros, and in the row before it
    /// (when M > 2) two groups of tiny values (scales below and above 2^-100). SiLU inputs also hit
    /// both ends of exp's clamp.
    public static func random(op: AtomQuantize.Op, m: Int, k: Int, outliers: Int, seed: UInt64) -> AtomQuantizeInputs {
        var rng = SeededGenerator(seed: seed)
        var inputs = AtomQuantizeInputs(op: op, m: m, k: k, outliers: outliers)
        let largeCount = max(1, min(8, k / 64))
        var magnitude = [Float](repeating: 1, count: k)
        let largeChannels = op.reorders ? Array((0..<k).shuffled(using: &rng).prefix(largeCount)) : Array(k - largeCount..<k)
        for c in largeChannels { magnitude[c] = Float.random(in: 20...100, using: &rng) }
        func row() -> [Float] { (0..<k).map { magnitude[$0] * Float.random(in: -1...1, using: &rng) } }
        switch op {
        case .rmsnormReorderQuantize, .reorderQuantize:
            var calibration = AtomCalibration(channels: k)
            for _ in 0..<16 { calibration.add(row: row()) }
            inputs.perm = calibration.permutation()
            inputs.x = (0..<m).flatMap { _ in row() }
            if op == .rmsnormReorderQuantize {
                inputs.weight = (0..<k).map { _ in Float.random(in: 0.5...1.5, using: &rng) }
            }
        case .siluMulQuantize:
            inputs.gate = (0..<m * k).map { _ in Float.random(in: -8...8, using: &rng) }
            inputs.up = (0..<m).flatMap { _ in row() }
            // Both ends of exp's clamp and the region where 1 + exp(-g) rounds to 1.
            for (t, g) in ([-100, -88.5, -87.25, 17, 30, 90.5] as [Float]).enumerated() { inputs.gate[(7 + 19 * t) % k] = g }
        }
        let normal = k - outliers, groups = normal / AtomQuantization.groupSize
        let zeroRow = m > 1 ? m - 1 : nil
        if let z = zeroRow {
            for j in 0..<AtomQuantization.groupSize { inputs.zeroY(z, j) }
            for j in normal..<k { inputs.zeroY(z, j) }
        }
        // Tiny groups in the row before the zero row: scales below 2^-100 (the kernels divide) and just
        // above it (they multiply by the reciprocal and correct).
        if m > 2, groups >= 2 {
            for j in 0..<AtomQuantization.groupSize { inputs.scaleY(m - 2, j, by: 1e-34) }
            for j in AtomQuantization.groupSize..<2 * AtomQuantization.groupSize { inputs.scaleY(m - 2, j, by: 1e-27) }
        }
        for i in 0..<m where i != zeroRow {
            let g = i % groups
            inputs.plantTies(
                row: i, range: g * AtomQuantization.groupSize..<(g + 1) * AtomQuantization.groupSize, int8: false,
                codes: [-8, -4, -1, 0, 1, 6])
            if outliers >= 8 { inputs.plantTies(row: i, range: normal..<k, int8: true, codes: [-127, -3, -1, 0, 4, 126]) }
        }
        return inputs
    }
}

/// An Atom quantize variant bound to one workload's inputs.
final class AtomQuantizeInstance: KernelInstance {
    typealias Outputs = (
        UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<Int8>?,
        UnsafeMutablePointer<Float>?
    )
    typealias RMSNormKernel = @convention(c) (
        UnsafePointer<Float>?, UnsafePointer<Float>?, UnsafePointer<Int32>?, Float, Int32, Int32, Int32, Int32, Int32,
        UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<Int8>?,
        UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?
    ) -> Void
    typealias ReorderKernel = @convention(c) (
        UnsafePointer<Float>?, UnsafePointer<Int32>?, Int32, Int32, Int32, Int32, Int32,
        UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<Int8>?,
        UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?
    ) -> Void
    typealias SiluKernel = @convention(c) (
        UnsafePointer<Float>?, UnsafePointer<Float>?, Int32, Int32, Int32, Int32, Int32,
        UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<Int8>?,
        UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?
    ) -> Void

    let inputs: AtomQuantizeInputs
    let layout: AtomQuantize.OutputLayout
    let kernel: UnsafeMutableRawPointer
    /// Input buffers in the kernel's argument order (x or gate; weight or up; perm).
    let first: AlignedBuffer
    let second: AlignedBuffer?
    let perm: AlignedBuffer?
    let threadCount: Int
    /// Units per row and each thread's units (`AtomQuantize.shares`).
    let parts: Int
    let units: [Range<Int>]
    let workingSetBytes: Int
    private var output: UnsafeMutableRawPointer?
    private var workspaces: [UnsafeMutableRawPointer] = []

    var outputBytes: Int { layout.bytes }
    var workspaceBytesPerThread: Int { stageBytes }
    let stageBytes: Int

    init(family: AtomQuantize, workload: Workload, config: Configuration, kernel: UnsafeMutableRawPointer, seed: UInt64) {
        let m = workload["m"], k = workload["k"], outliers = workload["outliers"]
        let inputs = AtomQuantizeInputs.random(op: family.op, m: m, k: k, outliers: outliers, seed: seed)
        self.inputs = inputs
        layout = AtomQuantize.OutputLayout(m: m, k: k, outliers: outliers)
        self.kernel = kernel
        switch family.op {
        case .rmsnormReorderQuantize:
            first = AlignedBuffer(copying: inputs.x)
            // The kernel takes the norm weight in reordered order, as the inference path stores it.
            second = AlignedBuffer(copying: inputs.perm.map { inputs.weight[Int($0)] })
            perm = AlignedBuffer(copying: inputs.perm)
        case .reorderQuantize:
            first = AlignedBuffer(copying: inputs.x)
            second = nil
            perm = AlignedBuffer(copying: inputs.perm)
        case .siluMulQuantize:
            first = AlignedBuffer(copying: inputs.gate)
            second = AlignedBuffer(copying: inputs.up)
            perm = nil
        }
        threadCount = config.int("threads")
        let gather = family.gather(config)
        (parts, units) = AtomQuantize.shares(m: m, k: k, outliers: outliers, threads: threadCount, rowBlock: gather?.rowBlock ?? 1)
        stageBytes = AtomQuantize.stageBytes(k: k, outliers: outliers, gather: gather)
        workingSetBytes = Int(family.bytesMoved(workload, config))
    }

    func prepare() throws {}

    var dataRegions: [UnsafeRawBufferPointer] { [first.region] + [second, perm].compactMap { $0?.region } }

    func bind(output: UnsafeMutableRawPointer, workspaces: [UnsafeMutableRawPointer]) {
        self.output = output
        self.workspaces = workspaces
    }

    private var outputs: Outputs {
        let base = output!
        return (
            (base + layout.codes).assumingMemoryBound(to: UInt8.self), (base + layout.scales).assumingMemoryBound(to: Float.self),
            (base + layout.groupSums).assumingMemoryBound(to: Int32.self), (base + layout.outlierCodes).assumingMemoryBound(to: Int8.self),
            (base + layout.outlierScales).assumingMemoryBound(to: Float.self)
        )
    }

    func run(thread index: Int) {
        let range = units[index]
        guard !range.isEmpty else { return }
        let o = outputs
        let stage = workspaces[index].assumingMemoryBound(to: Float.self)
        let k = Int32(inputs.k), outliers = Int32(inputs.outliers)
        let parts = Int32(parts), u0 = Int32(range.lowerBound), u1 = Int32(range.upperBound)
        let a = first.pointer.assumingMemoryBound(to: Float.self)
        let b = second.map { UnsafePointer($0.pointer.assumingMemoryBound(to: Float.self)) }
        let p = perm.map { UnsafePointer($0.pointer.assumingMemoryBound(to: Int32.self)) }
        switch inputs.op {
        case .rmsnormReorderQuantize:
            unsafeBitCast(kernel, to: RMSNormKernel.self)(a, b, p, inputs.eps, k, outliers, parts, u0, u1, o.0, o.1, o.2, o.3, o.4, stage)
        case .reorderQuantize:
            unsafeBitCast(kernel, to: ReorderKernel.self)(a, p, k, outliers, parts, u0, u1, o.0, o.1, o.2, o.3, o.4, stage)
        case .siluMulQuantize:
            unsafeBitCast(kernel, to: SiluKernel.self)(a, b, k, outliers, parts, u0, u1, o.0, o.1, o.2, o.3, o.4, stage)
        }
    }

    func verify() -> Verification {
        guard output != nil else {
            return Verification(passed: false, checked: 0, mismatches: 0, maxAbsError: .nan, maxRelError: .nan, tolerance: "bit-exact", firstMismatch: "no output bound")
        }
        return AtomQuantize.compare(expected: inputs.reference(), output: UnsafeRawPointer(output!), layout: layout)
    }
}
