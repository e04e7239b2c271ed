import KernelKit

/// Every kernel family lowbit knows: one registry drives the CLI, tests, benchmarks and tuning.
public enum KernelRegistry {
    public static let families: [any KernelFamily] = [GemmW8A8(), GemmW4A4(), GemmW4A4KV(), PeakCompute(), PeakBandwidth(), KVAppend(), AttentionDecode(), AtomQuantize(.rmsnormReorderQuantize), AtomQuantize(.reorderQuantize), AtomQuantize(.siluMulQuantize), GemmF16()]

    /// Families that exist for tests (fault injection); found by name, never listed.
    public static let testFamilies: [any KernelFamily] = [FaultInjection()]

    public static func family(named name: String) throws -> any KernelFamily {
        guard let family = (families + testFamilies).first(where: { $0.name == name }) else {
            throw ConstraintViolation(
                "known-family", "unknown kernel family '\(name)'; valid families: \(families.map(\.name).joined(separator: ", "))")
        }
        return family
    }
}
