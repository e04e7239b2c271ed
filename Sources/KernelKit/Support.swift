import Foundation

/// A deterministic random generator (SplitMix64), so a seed reproduces a workload's inputs.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Owned, aligned memory for kernel inputs (e.g. prepacked weights). The only place in KernelKit
/// that allocates raw memory.
///
/// A buffer of at least `hugePageBytes` starts on a huge-page boundary and asks Linux for transparent
/// huge pages (`madvise(MADV_HUGEPAGE)`, honoured when THP is `always` or `madvise`) before it is first
/// touched: streaming packed weights over 4 KiB pages costs a TLB walk per page, which a virtual machine
/// pays twice (about 10% of a decode GEMM here). Without THP the advice is ignored.
public final class AlignedBuffer: @unchecked Sendable {
    public let pointer: UnsafeMutableRawPointer
    public let byteCount: Int

    /// The size (and alignment) of an x86-64 or aarch64 (4 KiB granule) transparent huge page.
    public static let hugePageBytes = 2 << 20

    public init(byteCount: Int, alignment: Int = 64) {
        self.byteCount = byteCount
        let huge = byteCount >= Self.hugePageBytes
        let allocated = huge ? (byteCount + Self.hugePageBytes - 1) / Self.hugePageBytes * Self.hugePageBytes : max(byteCount, 1)
        pointer = UnsafeMutableRawPointer.allocate(byteCount: allocated, alignment: huge ? max(alignment, Self.hugePageBytes) : alignment)
        #if os(Linux)
            if huge { _ = madvise(pointer, allocated, MADV_HUGEPAGE) }
        #endif
        pointer.initializeMemory(as: UInt8.self, repeating: 0, count: max(byteCount, 1))
    }

    deinit { pointer.deallocate() }

    /// The buffer's bytes, e.g. for `KernelInstance.dataRegions`.
    public var region: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: pointer, count: byteCount) }
}

/// Each thread's block of a GEMM output: `tm` row ranges (multiples of `mr`) times threads / tm column
/// ranges (multiples of `nr`), in thread order.
public func gemmThreadBlocks(m: Int, n: Int, config: Configuration) -> [(rows: Range<Int>, cols: Range<Int>)] {
    let threads = config.int("threads"), tm = config.int("tm")
    let rowRanges = balancedRanges(count: m, parts: tm, unit: config.int("mr"))
    let colRanges = balancedRanges(count: n, parts: threads / tm, unit: config.int("nr"))
    return rowRanges.flatMap { r in colRanges.map { (r, $0) } }
}

/// Splits `count` items into `parts` contiguous ranges whose starts are multiples of `unit`.
public func balancedRanges(count: Int, parts: Int, unit: Int) -> [Range<Int>] {
    let units = (count + unit - 1) / unit
    return (0..<parts).map { p in
        let lo = units * p / parts, hi = units * (p + 1) / parts
        return min(lo * unit, count)..<min(hi * unit, count)
    }
}

extension AlignedBuffer {
    /// A buffer holding a copy of `values`.
    public convenience init<T: BitwiseCopyable>(copying values: [T]) {
        self.init(byteCount: values.count * MemoryLayout<T>.stride)
        values.withUnsafeBytes { pointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }
}

/// Compares fp32 results bit for bit (a NaN left by an unwritten poisoned element never matches).
public func compareBitExact(expected: [Float], actual: UnsafeBufferPointer<Float>, columns: Int) -> Verification {
    var mismatches = 0
    var first: String?
    var maxAbs = 0.0, maxRel = 0.0
    for i in 0..<expected.count {
        let e = expected[i], a = actual[i]
        if e.bitPattern != a.bitPattern {
            mismatches += 1
            if first == nil { first = "Y[\(i / columns)][\(i % columns)] = \(a), expected \(e)" }
            let diff = a.isNaN ? Double.infinity : Double(abs(a - e))
            maxAbs = max(maxAbs, diff)
            maxRel = max(maxRel, diff / max(Double(abs(e)), 1e-30))
        }
    }
    return Verification(
        passed: mismatches == 0, checked: expected.count, mismatches: mismatches, maxAbsError: maxAbs,
        maxRelError: maxRel, tolerance: "bit-exact", firstMismatch: first)
}
