import KernelKit
import Machine

/// One result held against the roofline: bound = min(compute ceiling, bandwidth ceiling x
/// intensity), attainment = achieved / bound, and the ceiling that binds.
public struct Attainment: Sendable, Equatable {
    /// Useful operations per byte of the fewest bytes moved.
    public var intensity: Double
    public var computeCeiling: Double?
    public var computeName: String?
    /// The bandwidth plateau used (GB/s) and its level.
    public var bandwidth: Double?
    public var level: String?
    /// The roofline bound in GOP/s.
    public var bound: Double
    public var achieved: Double
    public var fraction: Double { bound > 0 ? achieved / bound : 0 }
    /// "compute: int8-dot avx512-vnni" or "bandwidth: L2 read".
    public var binding: String

    /// Holds `achieved` GOP/s of one run of `family` against the ceilings. `cold` puts the data in
    /// DRAM whatever the working set; otherwise the working set (the fewest bytes) picks the level
    /// that holds it for the run's thread count. Nil when the family has no model or nothing applies.
    public static func of(
        family: String, workload: Workload, config: Configuration, achieved: Double, usefulOps: Double,
        ceilings: Ceilings, topology: Topology, cold: Bool = false
    ) -> Attainment? {
        guard let bytes = IntensityModel.bytes(family: family, workload: workload, config: config), bytes > 0 else { return nil }
        let threads = config["threads"].flatMap { if case .int(let t) = $0 { t } else { nil } } ?? 1
        let isa = config["isa"]?.description ?? ISATarget.portable.rawValue
        let intensity = usefulOps / bytes
        let op = IntensityModel.bandwidthOp(family: family)
        let level = cold ? "DRAM" : PlateauDetector(topology: topology, threads: threads).level(holding: bytes)
        let bandwidth = ceilings.bandwidth(op: op, threads: threads, level: level)
        let computeOp = IntensityModel.computeOp(family: family, isa: isa)
        let compute = computeOp.flatMap { ceilings.compute(op: $0, isa: isa, threads: threads) }
        let memoryBound = bandwidth.map { $0 * intensity }
        let bound: Double
        let binding: String
        switch (compute, memoryBound) {
        case let (c?, b?): (bound, binding) = c <= b ? (c, "compute: \(computeOp!) \(isa)") : (b, "bandwidth: \(level) \(op)")
        case let (c?, nil): (bound, binding) = (c, "compute: \(computeOp!) \(isa)")
        case let (nil, b?): (bound, binding) = (b, "bandwidth: \(level) \(op)")
        case (nil, nil): return nil
        }
        return Attainment(
            intensity: intensity, computeCeiling: compute, computeName: computeOp, bandwidth: bandwidth, level: level,
            bound: bound, achieved: achieved, binding: binding)
    }
}
