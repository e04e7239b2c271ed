import KernelKit

/// The Atom quantization formats (KERNELS.md sections 2 and 3) as plain Swift: the definition every
/// quantize kernel and every W4A4 GEMM variant is checked against.
///
/// Layout of K (after reordering): the first K' = K - O channels are "normal" and split into groups of
/// G = 128; the last O channels (128 by default, 0 allowed) are outliers kept in 8 bits.
public enum AtomQuantization {
    public static let groupSize = 128
    public static let defaultOutliers = 128
    /// Atom's simulation clips activations at 0.9 and weights at 0.85 of the group's absolute maximum.
    public static let activationClip: Float = 0.9
    public static let weightClip: Float = 0.85

    /// Symmetric INT4 of one group: s = absmax * clip / 7, q = clamp(rne(x / s), -8, 7), with round half
    /// to even (C's nearbyintf in the default mode). A group of zeros gets s = 0 and codes 0.
    @inline(__always)
    public static func int4Scale(absmax: Float, clip: Float) -> Float { absmax * clip / 7 }

    @inline(__always)
    public static func int4Code(_ x: Float, scale: Float) -> Int8 {
        guard scale > 0 else { return 0 }
        return Int8(max(-8, min(7, (x / scale).rounded(.toNearestOrEven))))
    }

    /// Symmetric INT8 (outliers): s = absmax / 127, q = clamp(rne(x / s), -127, 127); zeros give s = 0.
    @inline(__always)
    public static func int8Scale(absmax: Float) -> Float { absmax / 127 }

    @inline(__always)
    public static func int8Code(_ x: Float, scale: Float) -> Int8 {
        guard scale > 0 else { return 0 }
        return Int8(max(-127, min(127, (x / scale).rounded(.toNearestOrEven))))
    }

    /// Two signed 4-bit codes per byte: element 2i in the low nibble, 2i + 1 in the high nibble.
    public static func pack(_ codes: [Int8]) -> [UInt8] {
        stride(from: 0, to: codes.count, by: 2).map { i in
            let lo = UInt8(bitPattern: codes[i]) & 0x0F
            let hi = i + 1 < codes.count ? UInt8(bitPattern: codes[i + 1]) & 0x0F : 0
            return lo | (hi << 4)
        }
    }

    /// The signed code of element `i` of a packed row.
    @inline(__always)
    public static func unpack(_ bytes: UnsafePointer<UInt8>, _ i: Int) -> Int8 {
        let nibble = (bytes[i >> 1] >> (UInt8(i & 1) * 4)) & 0x0F
        return Int8(bitPattern: nibble << 4) >> 4
    }

    /// Rows quantized the Atom way: what the quantize kernels emit and the W4A4 GEMM consumes.
    /// `rows` is M for activations (per-token scales) and N for weights (per-output-channel scales).
    public struct Quantized: Sendable, Equatable {
        public var rows: Int
        public var k: Int
        public var outliers: Int
        /// [rows][K' / 2] packed signed INT4 codes.
        public var codes: [UInt8]
        /// [rows][K' / G] scales.
        public var scales: [Float]
        /// [rows][K' / G] sums of the INT4 codes of each group (for offset-correcting GEMM variants).
        public var groupSums: [Int32]
        /// [rows][O] INT8 outlier codes.
        public var outlierCodes: [Int8]
        /// [rows] outlier scales.
        public var outlierScales: [Float]

        public var normal: Int { k - outliers }
        public var groups: Int { normal / AtomQuantization.groupSize }

        public init(rows: Int, k: Int, outliers: Int) {
            self.rows = rows
            self.k = k
            self.outliers = outliers
            let normal = k - outliers, groups = normal / AtomQuantization.groupSize
            codes = [UInt8](repeating: 0, count: rows * normal / 2)
            scales = [Float](repeating: 0, count: rows * groups)
            groupSums = [Int32](repeating: 0, count: rows * groups)
            outlierCodes = [Int8](repeating: 0, count: rows * outliers)
            outlierScales = [Float](repeating: 0, count: rows)
        }

        /// The INT4 code of (row, channel) for a normal channel.
        public func code(_ row: Int, _ channel: Int) -> Int8 {
            codes.withUnsafeBufferPointer { AtomQuantization.unpack($0.baseAddress! + row * normal / 2, channel) }
        }
    }

    /// The shape rule of every W4A4 family: K' = K - O is a positive multiple of the group size.
    public static func checkLayout(k: Int, outliers: Int) throws {
        guard outliers >= 0, outliers < k else {
            throw ConstraintViolation("outliers", "outliers = \(outliers) must be in 0..<\(k) (K)")
        }
        guard (k - outliers) % groupSize == 0 else {
            throw ConstraintViolation("groups", "K - outliers = \(k - outliers) is not a multiple of the group size \(groupSize)")
        }
    }

    /// Quantizes already-reordered rows of `x` ([rows][k], row-major).
    public static func quantize(_ x: [Float], rows: Int, k: Int, outliers: Int, clip: Float) -> Quantized {
        var q = Quantized(rows: rows, k: k, outliers: outliers)
        let normal = k - outliers, groups = normal / groupSize
        var rowCodes = [Int8](repeating: 0, count: normal)
        for r in 0..<rows {
            let row = r * k
            for g in 0..<groups {
                var absmax: Float = 0
                for j in 0..<groupSize { absmax = max(absmax, abs(x[row + g * groupSize + j])) }
                let s = int4Scale(absmax: absmax, clip: clip)
                var sum: Int32 = 0
                for j in 0..<groupSize {
                    let c = int4Code(x[row + g * groupSize + j], scale: s)
                    rowCodes[g * groupSize + j] = c
                    sum += Int32(c)
                }
                q.scales[r * groups + g] = s
                q.groupSums[r * groups + g] = sum
            }
            let packed = pack(rowCodes)
            for i in 0..<packed.count { q.codes[r * normal / 2 + i] = packed[i] }
            var absmax: Float = 0
            for j in 0..<outliers { absmax = max(absmax, abs(x[row + normal + j])) }
            let s = int8Scale(absmax: absmax)
            q.outlierScales[r] = s
            for j in 0..<outliers { q.outlierCodes[r * outliers + j] = int8Code(x[row + normal + j], scale: s) }
        }
        return q
    }
}
