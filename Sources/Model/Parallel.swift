import Foundation

/// Work split across the cores with no coordination beyond the split: every part writes only its own
/// results, so what comes out does not depend on the number of parts (the reference model's large
/// products, decoding tensors, quantizing a model's weights).
public enum Parallel {
    /// Parts for `work` units of work: one below `threshold` (not worth a thread hand-off), else a few
    /// per core so that uneven parts even out.
    public static func parts(work: Int, threshold: Int = 1 << 22) -> Int {
        work >= threshold ? 4 * ProcessInfo.processInfo.activeProcessorCount : 1
    }

    /// Runs `body(i)` for every i in 0..<count, on several threads when count > 1; returns when all
    /// have run.
    public static func forEach(_ count: Int, _ body: @Sendable (Int) -> Void) {
        if count == 1 {
            body(0)
        } else if count > 1 {
            DispatchQueue.concurrentPerform(iterations: count, execute: body)
        }
    }

    /// `transform(i)` for every i in 0..<count, computed concurrently, in index order; the first error
    /// (by index) is rethrown once all have run.
    public static func map<T: Sendable>(_ count: Int, _ transform: @Sendable (Int) throws -> T) throws -> [T] {
        let slots = UnsafeMutableBufferPointer<Result<T, Error>?>.allocate(capacity: max(count, 1))
        slots.initialize(repeating: nil)
        defer {
            slots.deinitialize()
            slots.deallocate()
        }
        let shared = SharedPointer(slots.baseAddress!)
        forEach(count) { i in shared.pointer[i] = Result { try transform(i) } }
        return try (0..<count).map { try slots[$0]!.get() }
    }
}

/// A pointer the parts of one `Parallel` run share, each touching only its own elements while the
/// memory's owner keeps it alive.
public struct SharedPointer<Pointer>: @unchecked Sendable {
    public let pointer: Pointer
    public init(_ pointer: Pointer) { self.pointer = pointer }
}
