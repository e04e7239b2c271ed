import KernelKit
import Kernels
import Machine
import Testing

@testable import Roofline

@Suite("Roofline models")
struct RooflineModelTests {
    @Test func ceilingsRoundTripThroughTheFlatMap() {
        let c = Ceilings(
            compute: [.init(op: "int8-dot", isa: "avx512-vnni", threads: 2, gops: 987.5)],
            sweep: [.init(op: "read", threads: 1, bytes: 4096, gbps: 150), .init(op: "read", threads: 1, bytes: 1 << 30, gbps: 9)],
            plateaus: [.init(op: "read", threads: 1, level: "L1", gbps: 150), .init(op: "read", threads: 1, level: "DRAM", gbps: 9)])
        let back = Ceilings(flat: c.flat)
        #expect(back.compute == c.compute)
        #expect(back.sweep == c.sweep)
        #expect(Set(back.plateaus) == Set(c.plateaus))
        #expect(c.flat["compute.int8-dot.avx512-vnni.t2"] == 987.5)
        #expect(c.flat["bandwidth.read.t1.DRAM"] == 9)
        var timed = Ceilings()
        timed.latency = [.init(threads: 1, bytes: 4 << 20, nanoseconds: 18.5), .init(threads: 1, bytes: 8 << 10, nanoseconds: 1.5)]
        #expect(timed.flat == ["latency.t1.4194304": 18.5, "latency.t1.8192": 1.5])
        #expect(Ceilings(flat: timed.flat).latency.map(\.bytes) == [8 << 10, 4 << 20], "read back in size order")
        #expect(Ceilings(flat: ["latency.t1.clock": 3]).isEmpty, "a latency name without a size is ignored")
        #expect(Ceilings(flat: ["nonsense": 1, "compute.x": 2]).isEmpty, "unknown names are ignored")
    }

    @Test func aComputeCeilingThatDoesNotScaleIsMeasuredAgainAndTheHighestKept() {
        // 2 threads: suspect under 0.75 * 2 * 100 = 150.
        #expect(ScalingCheck.isSuspect(149, threads: 2, oneThread: 100))
        #expect(!ScalingCheck.isSuspect(150, threads: 2, oneThread: 100))
        #expect(!ScalingCheck.isSuspect(10, threads: 1, oneThread: 100), "the 1-thread reading is the reference")

        // A scaling first reading: no more measurements.
        var calls = 0
        let fine = ScalingCheck.settle(first: 190, threads: 2, oneThread: 100) { calls += 1; return 500 }
        #expect(fine.kept == 190 && fine.readings == [190] && calls == 0)

        // Disturbed, then fine: one retry, the higher kept.
        var next = [196.0, 120]
        let retried = ScalingCheck.settle(first: 104, threads: 2, oneThread: 100) { next.removeFirst() }
        #expect(retried.readings == [104, 196] && retried.kept == 196)

        // Disturbed every time: at most `retries` more, the highest kept even though it stays low.
        var readings = [110.0, 130, 140, 400]
        let stuck = ScalingCheck.settle(first: 100, threads: 2, oneThread: 100, retries: 2) { readings.removeFirst() }
        #expect(stuck.readings == [100, 110, 130] && stuck.kept == 130)

        // A failed measurement ends the retries; without a 1-thread reading there is nothing to check against.
        let failed = ScalingCheck.settle(first: 100, threads: 2, oneThread: 100) { nil }
        #expect(failed.readings == [100] && failed.kept == 100)
        let unchecked = ScalingCheck.settle(first: 1, threads: 4, oneThread: nil) { 1000 }
        #expect(unchecked.readings == [1])
    }

    @Test func plateausAreLabelledByTheLevelHoldingTheWorkingSet() {
        // L1 32 KiB, L2 1 MiB, L3 16 MiB; bandwidth steps down at each.
        let levels: [(name: String, bytes: Double)] = [("L1", 32 * 1024), ("L2", 1_048_576), ("L3", 16 * 1_048_576)]
        let detector = PlateauDetector(levels: levels)
        func gbps(_ bytes: Int) -> Double { bytes <= 32 << 10 ? 200 : bytes <= 1 << 20 ? 100 : bytes <= 16 << 20 ? 40 : 10 }
        let points = detector.sizes().map { Ceilings.SweepPoint(op: "read", threads: 1, bytes: $0, gbps: gbps($0)) }
        let plateaus = detector.plateaus(of: points)
        let names: [String] = plateaus.map { $0.level }
        let values: [Double] = plateaus.map { $0.gbps }
        #expect(names == ["L1", "L2", "L3", "DRAM"])
        #expect(values == [200, 100, 40, 10])
        #expect(detector.level(holding: 16 * 1024) == "L1")
        #expect(detector.level(holding: 8 * 1_048_576) == "L3")
        #expect(detector.level(holding: 1_073_741_824) == "DRAM")
        #expect(detector.sizes().first == 4096 && Double(detector.sizes().last!) >= 64 * 1_048_576)
    }

    @Test func privateCachesAddUpOverTheThreads() {
        let two = Topology.sample(pus: 2)
        let one = PlateauDetector(topology: two, threads: 1), both = PlateauDetector(topology: two, threads: 2)
        #expect(one.levels.map { $0.name } == ["L1", "L2", "L3"])
        let oneBytes: [Double] = one.levels.map { $0.bytes }
        let bothBytes: [Double] = both.levels.map { $0.bytes }
        #expect(bothBytes[0] == 2 * oneBytes[0], "L1 is per core")
        #expect(bothBytes[2] == oneBytes[2], "L3 is shared")
    }

    @Test func intensityModelsMatchHandCountedBytes() throws {
        // gemm-w8a8 M=64 N=K=4096: A 64*(4096+4), W 4096*(4096+4), Y 64*4096*4.
        let w8 = Workload(family: "gemm-w8a8", shape: ["m": 64, "n": 4096, "k": 4096])
        let w8Bytes: Double = 64 * 4100 + 4096 * 4100 + 64 * 4096 * 4
        #expect(IntensityModel.bytes(family: "gemm-w8a8", workload: w8, config: Configuration([:])) == w8Bytes)
        // gemm-w4a4 M=1 N=K=4096, 128 outliers: K' = 3968 = 31 groups.
        let w4 = Workload(family: "gemm-w4a4", shape: ["m": 1, "n": 4096, "k": 4096, "outliers": 128])
        let a: Double = 1984 + 248 + 128 + 4
        let weights: Double = 4096 * (1984 + 124 + 128 + 4)
        #expect(IntensityModel.bytes(family: "gemm-w4a4", workload: w4, config: Configuration([:])) == a + weights + 4096 * 4)
        // gemm-w4a4-kv, the same GEMM as K/V projections (hkv = 16, d = 128: N = 4096) into an int4 cache:
        // Y is never written; the 2 * 16 cache rows of 64 code bytes and 8 parameter bytes are.
        let kvw = Workload(family: "gemm-w4a4-kv", shape: ["m": 1, "hkv": 16, "d": 128, "k": 4096, "outliers": 128, "ctx": 64])
        let rows: Double = 2 * 16 * (64 + 8)
        #expect(IntensityModel.bytes(family: "gemm-w4a4-kv", workload: kvw, config: Configuration(["cache": .name("int4")])) == a + weights + rows)
        #expect(IntensityModel.computeOp(family: "gemm-w4a4-kv", isa: "avx2") == "int8-i16")
        // reorder-quantize M=16 K=4096 O=128: x and perm in; codes, scales, sums, outliers, scale out.
        let q = Workload(family: "reorder-quantize", shape: ["m": 16, "k": 4096, "outliers": 128])
        let qOut: Double = 16 * (1984 + 248 + 128 + 4)
        let qBytes: Double = 16 * 4096 * 4 + 4096 * 4 + qOut
        #expect(IntensityModel.bytes(family: "reorder-quantize", workload: q, config: Configuration([:])) == qBytes)
        // attention-decode, int4, b=1 hq=hkv=2 d=8 ctx=16: K and V rows of 4 code bytes + 8 parameter bytes.
        let att = Workload(family: "attention-decode", shape: ["b": 1, "hq": 2, "hkv": 2, "d": 8, "ctx": 16])
        let cfg = Configuration(["cache": .name("int4")])
        let kv: Double = 16 * 2 * 2 * (4 + 8)
        let qo: Double = 2 * 2 * 8 * 4
        #expect(IntensityModel.bytes(family: "attention-decode", workload: att, config: cfg) == kv + qo)
        #expect(IntensityModel.bytes(family: "peak-compute", workload: att, config: cfg) == nil)
    }

    @Test func attainmentTakesTheLowerRoofAndNamesIt() throws {
        let topology = Topology.sample(pus: 2)
        let ceilings = Ceilings(
            compute: [.init(op: "int8-dot", isa: "avx512-vnni", threads: 2, gops: 1000)],
            plateaus: ["L1", "L2", "L3", "DRAM"].enumerated().map { .init(op: "read", threads: 2, level: $1, gbps: [400, 200, 60, 10][$0]) })
        let config = Configuration(["isa": .name("avx512-vnni"), "threads": .int(2)])
        // M=256: high intensity, compute-bound.
        let big = Workload(family: "gemm-w8a8", shape: ["m": 256, "n": 4096, "k": 4096])
        let ops = 2.0 * 256 * 4096 * 4096
        let a = try #require(Attainment.of(family: "gemm-w8a8", workload: big, config: config, achieved: 500, usefulOps: ops, ceilings: ceilings, topology: topology))
        #expect(a.binding == "compute: int8-dot avx512-vnni")
        #expect(a.bound == 1000 && a.fraction == 0.5)
        // M=1 cold: intensity about 2 ops per weight byte, bandwidth-bound on DRAM.
        let small = Workload(family: "gemm-w8a8", shape: ["m": 1, "n": 4096, "k": 4096])
        let smallOps = 2.0 * 4096 * 4096
        let b = try #require(Attainment.of(family: "gemm-w8a8", workload: small, config: config, achieved: 10, usefulOps: smallOps, ceilings: ceilings, topology: topology, cold: true))
        #expect(b.binding == "bandwidth: DRAM read")
        let bytes = try #require(IntensityModel.bytes(family: "gemm-w8a8", workload: small, config: config))
        #expect(abs(b.bound - 10 * smallOps / bytes) < 1e-9)
        // Quantize kernels have no compute roof: bandwidth (copy) alone.
        #expect(IntensityModel.computeOp(family: "reorder-quantize", isa: "avx512-vnni") == nil)
        #expect(IntensityModel.computeOp(family: "gemm-w8a8", isa: "portable") == nil)
    }
}

extension Topology {
    /// Two cores, 32 KiB L1d and 1 MiB L2 each, a shared 16 MiB L3.
    static func sample(pus: Int) -> Topology {
        let caches: [Cache] =
            (0..<pus).flatMap { pu in
                [
                    Cache(level: 1, kind: .data, index: pu, sizeBytes: 32 << 10, lineSize: 64, associativity: 8, pus: [pu]),
                    Cache(level: 2, kind: .unified, index: pu, sizeBytes: 1 << 20, lineSize: 64, associativity: 16, pus: [pu]),
                ]
            } + [Cache(level: 3, kind: .unified, index: 0, sizeBytes: 16 << 20, lineSize: 64, associativity: 16, pus: Array(0..<pus))]
        return Topology(packages: [], numaNodes: [], cores: [], pus: Array(0..<pus), caches: caches, hwlocAPIVersion: "test")
    }
}
