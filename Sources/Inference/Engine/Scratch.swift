import Glibc
import KernelKit

/// The engine's reusable working memory: one 64-byte-aligned buffer per slot, grown (never shrunk) to
/// the largest size asked for. Contents do not survive a regrowth; every user writes before it reads.
final class Scratch {
    /// What each buffer holds during a step.
    enum Slot: Int, CaseIterable {
        case hidden, normed, q, k, v, attention, projection, gate, up, activation
        case codes8, scales8, quantized, quantized2, workspace, stage
        case rowSequence, rowPosition, entryTable, entryLengths, partials, arrivals, logitsInput, logits
    }

    private var buffers: [AlignedBuffer?] = Array(repeating: nil, count: Slot.allCases.count)

    /// At least `bytes` bytes (plus 64 bytes of slack for kernels that read a padded tail) for `slot`.
    func raw(_ slot: Slot, bytes: Int) -> UnsafeMutableRawPointer {
        let needed = bytes + 64
        if let b = buffers[slot.rawValue], b.byteCount >= needed { return b.pointer }
        let grown = AlignedBuffer(byteCount: max(needed, (buffers[slot.rawValue]?.byteCount ?? 0) * 3 / 2))
        buffers[slot.rawValue] = grown
        return grown.pointer
    }

    /// `count` elements of `T` in `slot`.
    func buffer<T>(_ slot: Slot, _ count: Int, of: T.Type = T.self) -> UnsafeMutablePointer<T> {
        raw(slot, bytes: count * MemoryLayout<T>.stride).assumingMemoryBound(to: T.self)
    }

    /// Per-share workspaces of `bytes` each (rounded up to 64), from one buffer.
    func workspaces(_ slot: Slot, shares: Int, bytes: Int) -> (base: UnsafeMutableRawPointer, stride: Int) {
        let stride = max(64, (bytes + 63) / 64 * 64)
        return (raw(slot, bytes: stride * max(shares, 1)), stride)
    }
}

/// Seconds per part of a step, accumulated over the steps run (for serve-bench's breakdown).
public struct StepProfile: Sendable, Equatable, Codable {
    /// Parts of a step, in the order a layer runs them.
    public enum Part: String, CaseIterable, Sendable, Codable {
        /// RMSNorm and activation quantization (the fused Atom kernels, per-token INT8), SiLU * up.
        case prepare = "norm+quantize"
        case gemm
        case kvAppend = "kv-append"
        case attention
        /// RoPE on queries, residual adds, copies.
        case other = "rope+residual"
        /// Embedding, final norm and lm_head (outside the decoder layers).
        case head = "embed+lm_head"
    }

    public private(set) var seconds: [String: Double] = [:]
    /// Seconds per projection (q_proj ... down_proj over all layers, lm_head): the kernel calls alone, a
    /// finer cut of `gemm` (and, for lm_head, of `head`).
    public private(set) var projections: [String: Double] = [:]
    public private(set) var steps = 0

    public init() {}

    mutating func add(_ part: Part, _ s: Double) { seconds[part.rawValue, default: 0] += s }
    mutating func add(projection: String, _ s: Double) { projections[projection, default: 0] += s }
    mutating func finishStep() { steps += 1 }

    /// Seconds in `part` over all steps.
    public subscript(part: Part) -> Double { seconds[part.rawValue] ?? 0 }

    /// Seconds inside the decoder layers (everything but `head`).
    public var layerSeconds: Double { Part.allCases.filter { $0 != .head }.reduce(0) { $0 + self[$1] } }

    static func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }
}
