import Foundation

/// A machine's measured roofline: compute ceilings per (operation, ISA, threads), the bandwidth
/// sweep per (operation, threads) over working-set sizes, and the plateaus found in it.
///
/// Stored in the tuning database's `machines.ceilings` column (and exports) as one flat
/// `{name: value}` map, names as documented in `TuningDB/README.md`:
/// `compute.<op>.<isa>.t<threads>` (GOP/s), `sweep.<op>.t<threads>.<bytes>` (GB/s),
/// `bandwidth.<op>.t<threads>.<level>` (GB/s, the plateau of that cache level or DRAM) and
/// `latency.t<threads>.<bytes>` (ns per dependent load, a pointer chase through that working set).
public struct Ceilings: Sendable, Equatable {
    public struct Compute: Sendable, Equatable, Hashable {
        public var op: String
        public var isa: String
        public var threads: Int
        public var gops: Double
        public init(op: String, isa: String, threads: Int, gops: Double) {
            self.op = op
            self.isa = isa
            self.threads = threads
            self.gops = gops
        }
    }

    public struct SweepPoint: Sendable, Equatable, Hashable {
        public var op: String
        public var threads: Int
        public var bytes: Int
        public var gbps: Double
        public init(op: String, threads: Int, bytes: Int, gbps: Double) {
            self.op = op
            self.threads = threads
            self.bytes = bytes
            self.gbps = gbps
        }
    }

    public struct Plateau: Sendable, Equatable, Hashable {
        public var op: String
        public var threads: Int
        /// "L1", "L2", "L3" or "DRAM".
        public var level: String
        public var gbps: Double
        public init(op: String, threads: Int, level: String, gbps: Double) {
            self.op = op
            self.threads = threads
            self.level = level
            self.gbps = gbps
        }
    }

    /// One point of the load-latency curve (`LatencyCurve`): what the caches a thread really gets hold.
    public struct LatencyPoint: Sendable, Equatable, Hashable {
        public var threads: Int
        public var bytes: Int
        public var nanoseconds: Double
        public init(threads: Int, bytes: Int, nanoseconds: Double) {
            self.threads = threads
            self.bytes = bytes
            self.nanoseconds = nanoseconds
        }
    }

    public var compute: [Compute]
    public var sweep: [SweepPoint]
    public var plateaus: [Plateau]
    public var latency: [LatencyPoint] = []

    public init(compute: [Compute] = [], sweep: [SweepPoint] = [], plateaus: [Plateau] = []) {
        self.compute = compute
        self.sweep = sweep
        self.plateaus = plateaus
    }

    public var isEmpty: Bool { compute.isEmpty && sweep.isEmpty && plateaus.isEmpty && latency.isEmpty }

    /// The flat map stored in the database.
    public var flat: [String: Double] {
        var map: [String: Double] = [:]
        for c in compute { map["compute.\(c.op).\(c.isa).t\(c.threads)"] = c.gops }
        for p in sweep { map["sweep.\(p.op).t\(p.threads).\(p.bytes)"] = p.gbps }
        for p in plateaus { map["bandwidth.\(p.op).t\(p.threads).\(p.level)"] = p.gbps }
        for p in latency { map["latency.t\(p.threads).\(p.bytes)"] = p.nanoseconds }
        return map
    }

    /// Reads the flat map back; names it does not know are ignored.
    public init(flat: [String: Double]) {
        self.init()
        for (name, value) in flat.sorted(by: { $0.key < $1.key }) {
            let parts = name.split(separator: ".").map(String.init)
            func threads(_ s: String) -> Int? { s.hasPrefix("t") ? Int(s.dropFirst()) : nil }
            switch parts.first {
            case "compute" where parts.count == 4:
                if let t = threads(parts[3]) { compute.append(Compute(op: parts[1], isa: parts[2], threads: t, gops: value)) }
            case "sweep" where parts.count == 4:
                if let t = threads(parts[2]), let b = Int(parts[3]) { sweep.append(SweepPoint(op: parts[1], threads: t, bytes: b, gbps: value)) }
            case "bandwidth" where parts.count == 4:
                if let t = threads(parts[2]) { plateaus.append(Plateau(op: parts[1], threads: t, level: parts[3], gbps: value)) }
            case "latency" where parts.count == 3:
                if let t = threads(parts[1]), let b = Int(parts[2]) { latency.append(LatencyPoint(threads: t, bytes: b, nanoseconds: value)) }
            default: continue
            }
        }
        sweep.sort { ($0.op, $0.threads, $0.bytes) < ($1.op, $1.threads, $1.bytes) }
        latency.sort { ($0.threads, $0.bytes) < ($1.threads, $1.bytes) }
    }

    /// The compute ceiling for an operation on an ISA with a thread count (the nearest thread count
    /// measured, scaled linearly, when that exact one was not).
    public func compute(op: String, isa: String, threads: Int) -> Double? {
        let candidates = compute.filter { $0.op == op && $0.isa == isa }
        if let exact = candidates.first(where: { $0.threads == threads }) { return exact.gops }
        guard let nearest = candidates.min(by: { abs($0.threads - threads) < abs($1.threads - threads) }) else { return nil }
        return nearest.gops * Double(threads) / Double(nearest.threads)
    }

    /// The plateau of `level` for an operation at a thread count (nearest thread count otherwise).
    public func bandwidth(op: String, threads: Int, level: String) -> Double? {
        let candidates = plateaus.filter { $0.op == op && $0.level == level }
        if let exact = candidates.first(where: { $0.threads == threads }) { return exact.gbps }
        return candidates.min(by: { abs($0.threads - threads) < abs($1.threads - threads) })?.gbps
    }
}
