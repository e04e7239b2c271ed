import Foundation
import KernelKit

/// Element formats of the paged KV cache (KERNELS.md section 4).
///
/// - `int4`: asymmetric per (token, head): s = (max - min) / 15, z = rne(-min / s),
///   q = clamp(rne(x / s) + z, 0, 15), x' = (q - z) * s; two codes per byte: byte j (j < d/2) holds
///   element j in its low nibble and element j + d/2 in its high nibble, the two elements RoPE rotates
///   together, so one load gives a kernel both halves of a rotation.
/// - `int8`: the same asymmetric rule with 255 levels (unsigned codes in [0, 255]). Asymmetric rather than
///   symmetric so both quantized formats share one dequantization, and because K rows are rarely centred.
/// - `fp32`: the row as is (no parameters).
///
/// Edge cases (both quantized formats), so dequantization stays exact where it can be:
/// - max == min (a constant row c), or a range so small that (max - min) / levels underflows to 0:
///   the step becomes s = max(|max|, |min|). Then z = rne(-min / s) and q follow the usual formulas, and a
///   constant row dequantizes exactly: c > 0 gives z = -1, q = 0, x' = c; c < 0 gives z = 1, q = 0, x' = c.
/// - a row of zeros (s still 0): s = 0, z = 0, every code 0; x' = 0 exactly.
/// z is stored unclamped as fp32 (an integer value): a row entirely above or below 0 has z outside the code range.
public enum KVCacheFormat: String, CaseIterable, Sendable {
    case int4, int8, fp32

    /// The largest code (the number of quantization steps); 0 for fp32.
    public var maxCode: Int {
        switch self {
        case .int4: 15
        case .int8: 255
        case .fp32: 0
        }
    }

    public var isQuantized: Bool { self != .fp32 }

    /// Bits per cached element: a workload's `kvbits`.
    public var bits: Int {
        switch self {
        case .int4: 4
        case .int8: 8
        case .fp32: 32
        }
    }

    public init?(bits: Int) {
        guard let f = Self.allCases.first(where: { $0.bits == bits }) else { return nil }
        self = f
    }

    /// Bytes of one stored row of `d` elements.
    public func rowBytes(headDim d: Int) -> Int {
        switch self {
        case .int4: d / 2
        case .int8: d
        case .fp32: 4 * d
        }
    }

    /// Bytes of one row's parameters (scale, zero as fp32).
    public var paramBytes: Int { isQuantized ? 8 : 0 }
}

/// Where things live in the paged cache of one layer (the same arithmetic is rendered into every C variant).
///
/// The pool is an array of physical pages of `pageBytes` each. A page holds `pageTokens` (P) consecutive
/// tokens of one sequence for every KV head: for head h, a K block at `2h * blockBytes` and a V block at
/// `(2h + 1) * blockBytes`. A block is `codes [P][rowBytes]`, then (from `paramsOffset`, a multiple of 16)
/// `params [P][2]` fp32 (scale, zero) for the quantized formats, padded to 64 bytes. The page table maps
/// (sequence, logical page = position / P) to a physical page; position % P is the slot in the page.
public struct KVPageLayout: Sendable, Hashable {
    public var format: KVCacheFormat
    public var pageTokens: Int
    public var kvHeads: Int
    public var headDim: Int

    public init(format: KVCacheFormat, pageTokens: Int, kvHeads: Int, headDim: Int) {
        self.format = format
        self.pageTokens = pageTokens
        self.kvHeads = kvHeads
        self.headDim = headDim
    }

    public var rowBytes: Int { format.rowBytes(headDim: headDim) }
    public var paramsOffset: Int { (pageTokens * rowBytes + 15) / 16 * 16 }
    public var blockBytes: Int { (paramsOffset + pageTokens * format.paramBytes + 63) / 64 * 64 }
    public var pageBytes: Int { 2 * kvHeads * blockBytes }

    /// Byte offset of the K (or V) block of `head` in physical page `page`.
    public func blockOffset(page: Int, head: Int, value: Bool) -> Int {
        page * pageBytes + (2 * head + (value ? 1 : 0)) * blockBytes
    }

    /// The stored bytes one token needs for one head's K or V row: codes plus parameters.
    public var bytesPerRow: Int { rowBytes + format.paramBytes }

    /// Renders the layout helpers every cache kernel shares: `row_bytes`, `params_offset`, `block_bytes`,
    /// `page_bytes`, with `PAGE` defined by the caller.
    static func renderHelpers(_ c: inout CSource, format: KVCacheFormat) {
        let row: String =
            switch format {
            case .int4: "(size_t)d / 2"
            case .int8: "(size_t)d"
            case .fp32: "(size_t)d * sizeof(float)"
            }
        c.comment(lines: [
            "Cache layout (one layer): physical pages of PAGE tokens. For KV head h a page holds a K block at",
            "2h * block_bytes(d) and a V block at (2h + 1) * block_bytes(d). A block is codes [PAGE][row_bytes(d)],",
            format.isQuantized
                ? "then at params_offset(d) the fp32 pairs (scale, zero) [PAGE][2], padded to 64 bytes."
                : "padded to 64 bytes (fp32 rows need no parameters).",
        ])
        c.function("static inline size_t row_bytes(int d)") { c in c.line("return \(row);") }
        c.function("static inline size_t params_offset(int d)") { c in c.line("return (PAGE * row_bytes(d) + 15) / 16 * 16;") }
        c.function("static inline size_t block_bytes(int d)") { c in
            c.line("return (params_offset(d) + PAGE * \(format.paramBytes) + 63) / 64 * 64;")
        }
        c.function("static inline size_t page_bytes(int hkv, int d)") { c in c.line("return 2 * (size_t)hkv * block_bytes(d);") }
    }

    /// Declares where token row `row` of an append goes: `pos`, the physical `page` of (row_seq[row],
    /// pos / PAGE) from `page_table`, the `slot` in it, and `base`, the page's first byte in `pool`
    /// (pages of `page_size` bytes).
    static func renderSlotLookup(_ c: inout CSource, row: String) {
        c.declare("const int", "pos", "row_pos[\(row)]")
        c.declare("const int32_t", "page", "page_table[(size_t)row_seq[\(row)] * max_pages + pos / PAGE]")
        c.declare("const int", "slot", "pos % PAGE")
        c.declare("unsigned char *", "base", "(unsigned char *)pool + (size_t)page * page_size")
    }
}

/// The quantization of one cache row, as plain Swift: the definition the append kernels match bit for bit
/// (same fp32 operations in the same order: true division, round half to even, clamp).
public enum KVQuantization {
    /// Quantizes `x[0..<d]` into `codes` (rowBytes bytes) and returns (scale, zero); fp32 copies the row
    /// and returns (0, 0). See `KVCacheFormat` for the edge cases.
    public static func quantize(_ x: UnsafePointer<Float>, count d: Int, format: KVCacheFormat, codes: UnsafeMutableRawPointer) -> (scale: Float, zero: Float) {
        guard format.isQuantized else {
            codes.copyMemory(from: x, byteCount: d * MemoryLayout<Float>.size)
            return (0, 0)
        }
        let levels = Float(format.maxCode)
        var lo = x[0], hi = x[0]
        for i in 1..<d {
            if x[i] < lo { lo = x[i] }
            if x[i] > hi { hi = x[i] }
        }
        var s = (hi - lo) / levels
        if s == 0 { s = abs(hi) > abs(lo) ? abs(hi) : abs(lo) }
        let bytes = codes.assumingMemoryBound(to: UInt8.self)
        guard s != 0 else {
            for i in 0..<format.rowBytes(headDim: d) { bytes[i] = 0 }
            return (0, 0)
        }
        let z = (-lo / s).rounded(.toNearestOrEven)
        func code(_ v: Float) -> UInt8 {
            let c = (v / s).rounded(.toNearestOrEven) + z
            return UInt8(c < 0 ? 0 : (c > levels ? levels : c))
        }
        if format == .int4 {
            let half = d / 2
            for j in 0..<half { bytes[j] = code(x[j]) | (code(x[half + j]) << 4) }
        } else {
            for i in 0..<d { bytes[i] = code(x[i]) }
        }
        return (s, z)
    }

    public static func quantize(_ x: [Float], format: KVCacheFormat) -> (codes: [UInt8], scale: Float, zero: Float) {
        var codes = [UInt8](repeating: 0, count: format.rowBytes(headDim: x.count))
        let (s, z) = x.withUnsafeBufferPointer { xs in
            codes.withUnsafeMutableBytes { quantize(xs.baseAddress!, count: x.count, format: format, codes: $0.baseAddress!) }
        }
        return (codes, s, z)
    }

    /// The code of element `i` of a stored row of `d` elements.
    @inline(__always)
    public static func code(_ codes: UnsafeRawPointer, _ i: Int, count d: Int, format: KVCacheFormat) -> Int {
        let bytes = codes.assumingMemoryBound(to: UInt8.self)
        guard format == .int4 else { return Int(bytes[i]) }
        let half = d / 2
        return i < half ? Int(bytes[i] & 0x0F) : Int(bytes[i - half] >> 4)
    }

    /// x' = (q - z) * s in fp32, as every kernel computes it; fp32 rows are read as stored.
    public static func dequantize(_ codes: UnsafeRawPointer, scale s: Float, zero z: Float, count d: Int, format: KVCacheFormat) -> [Float] {
        guard format.isQuantized else {
            return Array(UnsafeBufferPointer(start: codes.assumingMemoryBound(to: Float.self), count: d))
        }
        return (0..<d).map { (Float(code(codes, $0, count: d, format: format)) - z) * s }
    }

    public static func dequantize(_ q: (codes: [UInt8], scale: Float, zero: Float), count d: Int, format: KVCacheFormat) -> [Float] {
        q.codes.withUnsafeBytes { dequantize($0.baseAddress!, scale: q.scale, zero: q.zero, count: d, format: format) }
    }
}

extension KVQuantization {
    /// Renders `store_row(x, d, row, params)`, the C twin of `quantize` that every cache writer shares (the
    /// same fp32 operations in the same order). The quantized formats need `MAX_CODE` defined, and all need
    /// the `KVPageLayout.renderHelpers` functions before it.
    static func renderStoreRow(_ c: inout CSource, format: KVCacheFormat) {
        guard format.isQuantized else {
            c.comment("fp32 cache: the row is copied as is.")
            c.function("static void store_row(const float *x, int d, unsigned char *row, float *params)") { c in
                c.line("(void)params;")
                c.line("memcpy(row, x, (size_t)d * sizeof(float));")
            }
            return
        }
        c.comment(lines: [
            "x rounded to the nearest integer, ties to even (nearbyintf in the default rounding mode), in plain",
            "arithmetic the compiler vectorizes: below 2^23 in magnitude, adding and subtracting 2^23 with x's sign",
            "leaves the rounded value (the sum's unit is 1); from 2^23 up x is an integer already. A zero may come",
            "back with the other sign, which no code below can see.",
        ])
        c.function("static inline float rne(float x)") { c in
            c.declare("const float", "big", "copysignf(8388608.0f, x)")
            c.line("return fabsf(x) < 8388608.0f ? (x + big) - big : x;")
        }
        c.comment("The code of x: clamp(rne(x / s) + z, 0, MAX_CODE), true division, round half to even.")
        c.function("static inline unsigned char code_of(float x, float s, float z)") { c in
            c.declare("float", "q", "rne(x / s) + z")
            c.line("q = q < 0.0f ? 0.0f : (q > MAX_CODE ? MAX_CODE : q);")
            c.line("return (unsigned char)q;")
        }
        c.comment(lines: [
            "The minimum and maximum of a row exactly as `lo = x[i] < lo ? x[i] : lo` (and hi) finds them in order:",
            "eight lanes that each start from x[0] and take every eighth element, merged in lane order (the",
            "compiler vectorizes the lanes). Equal values have equal bits, so both ways agree, except for a zero",
            "extreme, whose sign depends on which zero came first: such a row is scanned again in order.",
        ])
        c.function("static void row_range(const float *x, int d, float *lo_out, float *hi_out)") { c in
            c.declare("float", "lo8[8]")
            c.declare("float", "hi8[8]")
            c.forLoop("int l = 0", "l < 8", "l++") { c in
                c.line("lo8[l] = x[0];")
                c.line("hi8[l] = x[0];")
            }
            c.declare("int", "i", "0")
            c.forLoop("", "i + 8 <= d", "i += 8") { c in
                c.forLoop("int l = 0", "l < 8", "l++") { c in
                    c.line("lo8[l] = x[i + l] < lo8[l] ? x[i + l] : lo8[l];")
                    c.line("hi8[l] = x[i + l] > hi8[l] ? x[i + l] : hi8[l];")
                }
            }
            c.declare("float", "lo", "lo8[0]")
            c.declare("float", "hi", "hi8[0]")
            c.forLoop("int l = 1", "l < 8", "l++") { c in
                c.line("lo = lo8[l] < lo ? lo8[l] : lo;")
                c.line("hi = hi8[l] > hi ? hi8[l] : hi;")
            }
            c.forLoop("", "i < d", "i++") { c in
                c.line("lo = x[i] < lo ? x[i] : lo;")
                c.line("hi = x[i] > hi ? x[i] : hi;")
            }
            c.ifBlock("lo == 0.0f || hi == 0.0f") { c in
                c.line("lo = x[0];")
                c.line("hi = x[0];")
                c.forLoop("i = 1", "i < d", "i++") { c in
                    c.line("lo = x[i] < lo ? x[i] : lo;")
                    c.line("hi = x[i] > hi ? x[i] : hi;")
                }
            }
            c.line("*lo_out = lo;")
            c.line("*hi_out = hi;")
        }
        c.comment(lines: ["Quantizes one row of d values into row_bytes(d) codes and (scale, zero)."])
        c.function("static void store_row(const float *x, int d, unsigned char *row, float *params)") { c in
            c.declare("float", "lo")
            c.declare("float", "hi")
            c.line("row_range(x, d, &lo, &hi);")
            c.declare("float", "s", "(hi - lo) / MAX_CODE")
            c.ifBlock("s == 0.0f") { c in
                c.comment("constant row (or an underflowing range): the step is its magnitude, so it dequantizes exactly")
                c.line("s = fabsf(hi) > fabsf(lo) ? fabsf(hi) : fabsf(lo);")
            }
            c.ifBlock("s == 0.0f") { c in
                c.comment("a row of zeros: every code 0, s = z = 0")
                c.line("memset(row, 0, row_bytes(d));")
                c.line("params[0] = 0.0f;")
                c.line("params[1] = 0.0f;")
                c.line("return;")
            }
            c.declare("const float", "z", "nearbyintf(-lo / s)")
            if format == .int4 {
                c.comment("byte j: element j in the low nibble, element j + d/2 (its RoPE partner) in the high nibble")
                c.declare("const int", "half", "d / 2")
                c.forLoop("int j = 0", "j < half", "j++") { c in
                    c.line("row[j] = (unsigned char)(code_of(x[j], s, z) | (code_of(x[half + j], s, z) << 4));")
                }
            } else {
                c.forLoop("int i = 0", "i < d", "i++") { c in c.line("row[i] = code_of(x[i], s, z);") }
            }
            c.line("params[0] = s;")
            c.line("params[1] = z;")
        }
    }
}

/// Where the rows of one append go: row r is token `positions[r]` of sequence `sequences[r]`. Rows are
/// in plan order (sequence by sequence, positions ascending), and sequence b has `allocated[b]` =
/// start + count tokens once the append is done (the pages a cache must hold for it).
public struct KVAppendPlan: Sendable, Equatable {
    public let runs: [KVAppendRun]
    public let sequences: [Int32]
    public let positions: [Int32]

    public init(runs: [KVAppendRun]) {
        self.runs = runs
        var seqs: [Int32] = [], pos: [Int32] = []
        for (b, run) in runs.enumerated() {
            for t in run.start..<run.start + run.count {
                seqs.append(Int32(b))
                pos.append(Int32(t))
            }
        }
        sequences = seqs
        positions = pos
    }

    public var rows: Int { sequences.count }
    public var allocated: [Int] { runs.map { $0.start + $0.count } }

    /// `b` sequences of capacity `ctx` appending `count(b, &rng)` tokens each. The first run starts at
    /// 63 (when ctx allows), so a run of 2 or more tokens crosses a page boundary for every page size; the
    /// second starts empty; the others start anywhere (drawn after their count).
    public init(sequences b: Int, ctx: Int, seed: UInt64, count: (_ sequence: Int, _ rng: inout SeededGenerator) -> Int) {
        var rng = SeededGenerator(seed: seed)
        self.init(
            runs: (0..<b).map { i in
                let n = count(i, &rng)
                switch i {
                case 0: return KVAppendRun(start: min(63, ctx - n), count: n)
                case 1: return KVAppendRun(start: 0, count: n)
                default: return KVAppendRun(start: Int.random(in: 0...(ctx - n), using: &rng), count: n)
                }
            })
    }

    /// `m` token rows the way a batch of a serving loop brings them: a prefill chunk of ceil(m / 2) tokens
    /// in sequence 0 (from position 63: it crosses a page boundary when m >= 3), half the rest in
    /// sequence 1 (a new sequence), and one decode token in each further sequence. Needs ctx >= ceil(m / 2).
    public static func batch(rows m: Int, ctx: Int, seed: UInt64) -> KVAppendPlan {
        let first = (m + 1) / 2, rest = m - first, second = (rest + 1) / 2
        let counts = [first] + (second > 0 ? [second] : []) + Array(repeating: 1, count: rest - second)
        return KVAppendPlan(sequences: counts.count, ctx: ctx, seed: seed) { i, _ in counts[i] }
    }
}

/// One sequence's part of an append: `count` tokens from position `start`.
public struct KVAppendRun: Sendable, Equatable {
    public var start: Int
    public var count: Int

    public init(start: Int, count: Int) {
        self.start = start
        self.count = count
    }
}

/// A paged cache in Swift memory: the page table and the pool, with the reference append and read.
public struct PagedKVCache {
    public let layout: KVPageLayout
    public let batch: Int
    /// Logical pages per sequence in the page table (ceil(capacity / P)).
    public let maxPages: Int
    /// [batch][maxPages] physical page of each logical page; -1 where no page is allocated.
    public var pageTable: [Int32]
    public let physicalPages: Int
    /// Physical pages no sequence uses (they keep the fill pattern).
    public let sparePages: [Int]
    /// The pool, `physicalPages * layout.pageBytes` bytes.
    public var pool: [UInt8]

    /// What the pool holds before anything is appended: a NaN pattern, so a kernel that reads a slot or a
    /// page it should not gets NaN parameters (or NaN fp32 values) and fails verification.
    public static let fill = Float(bitPattern: 0x7FC0_BEEF)

    /// Allocates ceil(allocated[b] / P) pages per sequence at shuffled physical positions (a non-identity
    /// order whenever there are two or more pages), plus `spares` unused pages among them.
    public init(layout: KVPageLayout, allocated: [Int], capacity: Int, spares: Int = 2, seed: UInt64) {
        self.layout = layout
        batch = allocated.count
        let p = layout.pageTokens
        maxPages = max(1, (capacity + p - 1) / p)
        let needed = allocated.map { ($0 + p - 1) / p }
        let used = needed.reduce(0, +)
        physicalPages = used + spares
        var rng = SeededGenerator(seed: seed ^ 0xA77E_17D0)
        var order = Array(0..<physicalPages)
        order.shuffle(using: &rng)
        if physicalPages > 1 && order == Array(0..<physicalPages) { order.swapAt(0, 1) }
        pageTable = [Int32](repeating: -1, count: batch * maxPages)
        var next = 0
        for b in 0..<batch {
            for l in 0..<needed[b] {
                pageTable[b * maxPages + l] = Int32(order[next])
                next += 1
            }
        }
        sparePages = Array(order[next...])
        pool = [UInt8](repeating: 0, count: physicalPages * layout.pageBytes)
        pool.withUnsafeMutableBytes { raw in
            let floats = raw.bindMemory(to: Float.self)
            for i in 0..<floats.count { floats[i] = Self.fill }
        }
    }

    /// Byte offset of the K or V block holding (sequence, position, head), and the slot in it.
    public func location(sequence b: Int, position t: Int, head h: Int, value: Bool) -> (block: Int, slot: Int) {
        let page = Int(pageTable[b * maxPages + t / layout.pageTokens])
        precondition(page >= 0, "position \(t) of sequence \(b) has no page")
        return (layout.blockOffset(page: page, head: h, value: value), t % layout.pageTokens)
    }

    /// The reference append: quantizes one token's K rows and V rows (`[hkv][d]` each) into its slot.
    public mutating func append(sequence b: Int, position t: Int, k: UnsafePointer<Float>, v: UnsafePointer<Float>) {
        let d = layout.headDim
        for h in 0..<layout.kvHeads {
            for (value, rows) in [(false, k), (true, v)] {
                let (block, slot) = location(sequence: b, position: t, head: h, value: value)
                pool.withUnsafeMutableBytes { raw in
                    let base = raw.baseAddress! + block
                    let (s, z) = KVQuantization.quantize(
                        rows + h * d, count: d, format: layout.format, codes: base + slot * layout.rowBytes)
                    if layout.format.isQuantized {
                        let params = (base + layout.paramsOffset).assumingMemoryBound(to: Float.self)
                        params[2 * slot] = s
                        params[2 * slot + 1] = z
                    }
                }
            }
        }
    }

    /// The dequantized K (before RoPE) or V row of (sequence, position, head), read from the pool.
    public func row(sequence b: Int, position t: Int, head h: Int, value: Bool) -> [Float] {
        let (block, slot) = location(sequence: b, position: t, head: h, value: value)
        return pool.withUnsafeBytes { raw in
            let base = raw.baseAddress! + block
            var s: Float = 0, z: Float = 0
            if layout.format.isQuantized {
                let params = (base + layout.paramsOffset).assumingMemoryBound(to: Float.self)
                s = params[2 * slot]
                z = params[2 * slot + 1]
            }
            return KVQuantization.dequantize(base + slot * layout.rowBytes, scale: s, zero: z, count: layout.headDim, format: layout.format)
        }
    }
}

extension PagedKVCache {
    static let appendTolerance = "bit-exact (codes and parameters; the rest of the pool unchanged)"

    /// Checks a kernel's pool (`actual`, `pool.count` bytes, filled by the harness before the run) bit for
    /// bit against this cache after `append` (the reference appends): the appended slots exactly, every
    /// other byte still the harness's fill pattern (read from a spare page, which no kernel may touch).
    func verifyAppend(actual: UnsafeRawPointer, append: (inout PagedKVCache) -> Void) -> Verification {
        guard let spare = sparePages.first else {
            return Verification(
                passed: false, checked: 0, mismatches: 0, maxAbsError: 0, maxRelError: 0, tolerance: Self.appendTolerance,
                firstMismatch: "the cache has no spare page to read the fill pattern from")
        }
        var expected = self
        let fill = actual.load(fromByteOffset: spare * layout.pageBytes, as: UInt32.self)
        expected.pool.withUnsafeMutableBytes { raw in
            let words = raw.bindMemory(to: UInt32.self)
            for i in 0..<words.count { words[i] = fill }
        }
        append(&expected)
        let bytes = actual.assumingMemoryBound(to: UInt8.self)
        var mismatches = 0, largest = 0
        var first: String?
        for i in 0..<expected.pool.count where expected.pool[i] != bytes[i] {
            mismatches += 1
            largest = max(largest, abs(Int(bytes[i]) - Int(expected.pool[i])))
            if first == nil {
                let page = i / layout.pageBytes, inPage = i % layout.pageBytes
                let block = inPage / layout.blockBytes, offset = inPage % layout.blockBytes
                first = "page \(page) head \(block / 2) \(block % 2 == 0 ? "K" : "V") block byte \(offset): \(bytes[i]), expected \(expected.pool[i])"
            }
        }
        // The errors are the largest byte difference (finite: results travel from the worker as JSON).
        return Verification(
            passed: mismatches == 0, checked: expected.pool.count, mismatches: mismatches, maxAbsError: Double(largest),
            maxRelError: Double(largest) / 255, tolerance: Self.appendTolerance, firstMismatch: first)
    }
}

extension Verification {
    /// A verification of an instance that was never bound to an output.
    static let unbound = Verification(
        passed: false, checked: 0, mismatches: 0, maxAbsError: 0, maxRelError: 0, tolerance: "-", firstMismatch: "no output bound")
}

/// Random K and V rows the way the inputs of the cache kernels are made: uniform in [-1, 1], with a few
/// large channels per KV head (KERNELS.md section 6: 20-100x) in K and a per-channel offset, so rows are
/// neither centred nor constant.
struct KVRowGenerator {
    let kvHeads: Int
    let headDim: Int
    /// [hkv][d] multiplier per channel of K (1 or 20...100).
    let kGain: [Float]
    /// [hkv][d] offset per channel of K.
    let kOffset: [Float]
    var rng: SeededGenerator

    init(kvHeads: Int, headDim: Int, seed: UInt64) {
        self.kvHeads = kvHeads
        self.headDim = headDim
        var rng = SeededGenerator(seed: seed)
        var gain = [Float](repeating: 1, count: kvHeads * headDim)
        for h in 0..<kvHeads {
            for _ in 0..<min(3, headDim) { gain[h * headDim + Int.random(in: 0..<headDim, using: &rng)] = Float.random(in: 20...100, using: &rng) }
        }
        kGain = gain
        kOffset = (0..<kvHeads * headDim).map { _ in Float.random(in: -0.5...0.5, using: &rng) }
        self.rng = rng
    }

    /// One token's K rows `[hkv][d]`.
    mutating func keys() -> [Float] {
        (0..<kvHeads * headDim).map { (Float.random(in: -1...1, using: &rng) + kOffset[$0]) * kGain[$0] }
    }

    /// One token's V rows `[hkv][d]`.
    mutating func values() -> [Float] {
        (0..<kvHeads * headDim).map { _ in Float.random(in: -1...1, using: &rng) }
    }
}

/// Llama's rotate-half RoPE: for i < D/2 and angle = t * theta^(-2i / D),
/// x'[i] = x[i] cos - x[i + D/2] sin and x'[i + D/2] = x[i + D/2] cos + x[i] sin.
public enum RoPE {
    public static let theta = 10000.0

    /// cos and sin tables `[positions][d / 2]`, computed in Double and rounded to fp32 (the kernel input).
    public static func table(positions: Int, headDim d: Int, theta: Double = theta) -> (cos: [Float], sin: [Float]) {
        let half = d / 2
        var c = [Float](repeating: 0, count: positions * half), s = c
        for t in 0..<positions {
            for i in 0..<half {
                let angle = Double(t) * Foundation.pow(theta, -Double(2 * i) / Double(d))
                c[t * half + i] = Float(Foundation.cos(angle))
                s[t * half + i] = Float(Foundation.sin(angle))
            }
        }
        return (c, s)
    }

    /// Rotates `x` (length d) for position `t` with the table, in Double.
    public static func apply(_ x: [Double], position t: Int, cos: [Float], sin: [Float]) -> [Double] {
        let half = x.count / 2
        var y = x
        for i in 0..<half {
            let c = Double(cos[t * half + i]), s = Double(sin[t * half + i])
            y[i] = x[i] * c - x[i + half] * s
            y[i + half] = x[i + half] * c + x[i] * s
        }
        return y
    }
}
