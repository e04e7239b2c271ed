import KernelKit

/// Every kernel family lowbit knows: one registry drives the CLI, tests, benchmarks and tuning.
public enum KernelRegistry {
    public static let families: [any KernelFamily] = [GemmW8A8(), GemmW4A4(), GemmW4A4KV(), PeakCompute(), PeakBandwidth(), KVAppend(), AttentionDecode(), AtomQuantize(.rmsnormReorderQuantize), AtomQuantize(.reorderQuantize), AtomQuantize(.siluMulQuantize), GemmF16()]

    /// Families that exist for tests (fault injection); found by name, never listed.
    public static let testFamilies: [any KernelFamily] = [FaultInjection()]

    /// Small workloads per family for `lowbit verify`, the bring-up check: tails and odd sizes that meet
    /// the family's shape rules. The first of each takes the parameter variations, the others run the
    /// default configuration. Every listed family has an entry (a test holds this).
    public static let verificationShapes: [String: [[String: Int]]] = [
        "gemm-w8a8": [["m": 5, "n": 72, "k": 259]],
        "gemm-w4a4": [
            ["m": 5, "n": 72, "k": 512, "outliers": 128], ["m": 3, "n": 40, "k": 384, "outliers": 0],
            ["m": 7, "n": 40, "k": 640, "outliers": 128, "ybits": 16],
        ],
        "gemm-w4a4-kv": [["m": 3, "hkv": 2, "d": 64, "k": 512, "outliers": 128, "ctx": 40]],
        "gemm-f16": [["m": 3, "n": 72, "k": 260]],
        "peak-compute": [["iterations": 100_000]],
        "peak-bandwidth": [["bytes": 1 << 20]],
        "kv-append": [["b": 3, "hkv": 2, "d": 64, "ctx": 40, "new": 5]],
        "attention-decode": [["b": 3, "hq": 8, "hkv": 2, "d": 128, "ctx": 200]],
        // 19 rows: two blocks of eight for gather=transpose, and three rows on their own.
        "rmsnorm-reorder-quantize": [["m": 19, "k": 1024, "outliers": 128]],
        "reorder-quantize": [["m": 19, "k": 1024, "outliers": 128]],
        "silu-mul-quantize": [["m": 19, "k": 1280, "outliers": 128]],
        // Named only on purpose: every fault but none and slow fails, which is what its tests check.
        "test-faults": [["n": 1000]],
    ]

    /// Parameters `lowbit verify` never varies: the target is its outer loop, and placement only moves threads.
    public static let verificationFixedParameters: Set<String> = ["isa", "placement"]

    /// The configurations `lowbit verify` checks for `f` on `isa` at `workload`: the default (two threads
    /// where the family has threads and the machine two PUs), then each named parameter's other values one at a
    /// time when `vary`; those the family's rules refuse (for the target or the workload) are left out.
    public static func verificationConfigurations(_ f: any KernelFamily, isa: ISATarget, workload: Workload, machine: MachineContext?, vary: Bool) -> [Configuration] {
        var base = f.defaultConfiguration(isa: isa, machine: machine)
        if f.parameter("threads") != nil { base["threads"] = .int(min(2, max(1, machine?.topology.pus.count ?? 2))) }
        let fixedByWorkload = f.workloadParameters(workload)
        for (name, value) in fixedByWorkload { base[name] = value }
        var configs = [base]
        if vary {
            for spec in f.parameters where !verificationFixedParameters.contains(spec.name) && fixedByWorkload[spec.name] == nil {
                guard case .names(let values) = spec.domain else { continue }
                for value in values where ParamValue.name(value) != base[spec.name] {
                    var c = base
                    c[spec.name] = .name(value)
                    configs.append(c)
                }
            }
        }
        return configs.filter { (try? f.check($0, machine: nil)) != nil }
    }

    public static func family(named name: String) throws -> any KernelFamily {
        guard let family = (families + testFamilies).first(where: { $0.name == name }) else {
            throw ConstraintViolation(
                "known-family", "unknown kernel family '\(name)'; valid families: \(families.map(\.name).joined(separator: ", "))")
        }
        return family
    }
}
