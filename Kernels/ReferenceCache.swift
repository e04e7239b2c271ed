import Foundation

/// Keeps the most recent reference output, keyed by family, shape and seed: tuning one workload runs
/// many variants on the same inputs, and the plain Swift reference of a large GEMM takes seconds.
final class ReferenceCache: @unchecked Sendable {
    static let shared = ReferenceCache()

    private let lock = NSLock()
    private var key: String?
    private var value: [Float] = []

    func value(for key: String, compute: () -> [Float]) -> [Float] {
        lock.lock()
        if self.key == key {
            defer { lock.unlock() }
            return value
        }
        lock.unlock()
        let fresh = compute()
        lock.lock()
        self.key = key
        value = fresh
        lock.unlock()
        return fresh
    }
}
