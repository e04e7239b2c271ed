import Foundation
import KernelKit
import Kernels
import Machine
import Testing
import Toolchain

@Suite("gemm-w4a4 templates and rules")
struct GemmW4A4TemplateTests {
    let family = GemmW4A4()

    @Test(arguments: GemmW4A4().targets)
    func everyTargetCompilesWithBothUnpackMethods(isa: ISATarget) throws {
        let compiler = try CompilerDiscovery.discover()
        let cross: CrossTarget? = isa.compilesNatively(on: CPUArchitecture.current) ? nil : .aarch64Linux
        for unpack in ["mask", "lut"] {
            var config = family.defaultConfiguration(isa: isa, machine: nil)
            config["unpack"] = .name(unpack)
            var small = config
            small["mr"] = .int(1)
            small["kc"] = .int(128)
            small["pf"] = .int(2048)
            small["layout"] = .name("interleaved")
            var memory = config
            if let lanes = ["avx2": 8, "avx-vnni": 8, "avx512-vnni": 16, "neon-dotprod": 4][isa.rawValue] {
                memory["acc"] = .name("memory")
                memory["mr"] = .int(4)
                memory["nr"] = .int(2 * lanes)
            }
            var half = memory
            half["out"] = .name("fp16")
            var variants = [config, small, memory, half]
            if isa == .avx2 {
                var wide = memory
                wide["gsum"] = .name("int32")
                variants.append(wide)
            }
            for c in variants {
                let source = try family.render(c)
                do {
                    try checkCompiles(CompileJob(name: source.name, source: source.code, flags: isa.compilerFlags, compiler: compiler), target: cross)
                } catch ToolchainError.crossTargetUnavailable(let why) {
                    print("skipping \(isa): \(why)")
                    return
                }
            }
        }
    }

    /// The portable binary16 conversion (partial tiles, the portable target) rounds as Swift's Float16
    /// does: ties to even, subnormals, the overflow threshold, infinities and zeros of both signs, and
    /// a sweep of bit patterns.
    @Test func halfConversionMatchesFloat16() throws {
        typealias Convert = @convention(c) (Float) -> UInt16
        let source = GemmW4A4.halfFromFloatSource + "\nuint16_t lowbit_half(float x) { return half_from_float(x); }\n"
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lowbit-half-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let job = CompileJob(name: "half", source: source, flags: [], compiler: try CompilerDiscovery.discover())
        let library = try LoadedLibrary(path: try ArtifactCache(directory: dir).artifact(for: job).path)
        let convert = try library.symbol("lowbit_half", as: Convert.self)
        var values: [Float] = [0, -0, 1, -1, 65504, 65519.99, 65520, -65520, 1e6, .infinity, -.infinity, 0x1p-14, 0x1p-24, 0x1p-25,
                               0x1.8p-25, 0x1.000002p-25, 0x1.8p-24, 0x1.4p-24, 0x1.ffcp-15, 0x1.ffep-15, 1 + 0x1p-11, 1 + 0x1.8p-11, 1 + 0x1p-12,
                               .leastNonzeroMagnitude, .greatestFiniteMagnitude, 3.14159, -2.71828]
        var rng = SeededGenerator(seed: 5)
        for _ in 0..<200_000 { values.append(Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &rng))) }
        var mismatches: [String] = []
        for x in values where !x.isNaN {
            let expected = Float16(x).bitPattern, actual = convert(x)
            if expected != actual && mismatches.count < 5 { mismatches.append("\(x): 0x\(String(actual, radix: 16)), expected 0x\(String(expected, radix: 16))") }
        }
        #expect(mismatches.isEmpty, "\(mismatches)")
        #expect(Float16(bitPattern: convert(.nan)).isNaN)
    }

    /// Decode-sized M streams the weights once: one row panel covers M (a second would unpack every
    /// weight again); every M prefetches the panels (the first row panel streams them from memory).
    @Test func analyticalTileCoversDecodeRowsInOnePanel() throws {
        let machine = MachineContext(try MachineModel().description)
        for m in [1, 2, 3, 4, 8] {
            let w = Workload(family: family.name, shape: ["m": m, "n": 11008, "k": 4096, "outliers": 128])
            let c = family.analyticalConfiguration(for: w, machine: machine)
            #expect(c.int("mr") >= m, "M = \(m): \(c)")
            #expect(c.int("pf") > 0, "M = \(m): \(c)")
            #expect(throws: Never.self) { try family.check(c, machine: machine) }
        }
        let large = family.analyticalConfiguration(for: Workload(family: family.name, shape: ["m": 256, "n": 4096, "k": 4096, "outliers": 128]), machine: machine)
        #expect(large.int("pf") > 0 && large.int("mr") >= 4, "\(large)")
    }

    /// A search starts from the analytical configuration, then the best-ranked tiles for each thread split
    /// (sized for a thread's rows): every seed valid, no repeats, both splits once M gives each thread two
    /// rows.
    @Test func gemmSearchSeedsCoverTilesAndThreadSplits() throws {
        let machine = MachineContext(isa: ISAFeatures(architecture: .x86_64, usable: [.sse42, .avx, .avx2, .fma]), topology: Fixtures.zen3)
        let families: [(any KernelFamily, [String: Int])] = [
            (family, ["n": 4096, "k": 4096, "outliers": 128]), (GemmW8A8(), ["n": 4096, "k": 4096]),
            (GemmW4A4KV(), ["hkv": 32, "d": 128, "k": 4096, "outliers": 128, "ctx": 256, "kvbits": 4]),
        ]
        for (f, shape) in families {
            for m in [1, 8, 64] {
                let w = Workload(family: f.name, shape: shape.merging(["m": m]) { a, _ in a })
                let seeds = f.searchSeeds(for: w, machine: machine)
                let label = "\(f.name) M = \(m): \(seeds.map(\.description))"
                #expect(seeds.first == f.analyticalConfiguration(for: w, machine: machine), "\(label)")
                #expect(Set(seeds).count == seeds.count, "\(label)")
                for c in seeds { #expect(throws: Never.self) { try f.check(c, machine: machine) } }
                let tiles = Set(seeds.map { "\($0.int("mr"))x\($0.int("nr"))" })
                #expect(tiles.count >= 2 && seeds.count <= 5, "\(label)")
                let splits = Set(seeds.map { $0.int("tm") })
                #expect(splits == (m >= 4 ? [1, 2] : [1]), "\(label)")
                // Split along M, a thread's tile is sized for its own rows (M = 8: four rows, not eight).
                if m == 8 { #expect(seeds.contains { $0.int("tm") == 2 && $0.int("mr") <= 4 }, "\(label)") }
            }
        }
    }

    /// On AVX-512 VNNI, decode M = 8 takes 8 x 32 tiles with fp32 sums in L1: an 8 x 16 tile folds one
    /// activation broadcast into every dot product, which the front end splits in two again (measured:
    /// 1.56-1.63 ms against 1.88-2.01 ms cold at N = 11008, K = 4096). M = 1 takes one row in registers;
    /// with two masks per weight load (template version 7) the model prefers the 32-wide panel there
    /// (measured the same as 16 wide cold, 1.16-1.32 ms against 1.24-1.36: the weights' stream binds).
    @Test func decodeTileOnAVX512TakesTwoVectorsPerBroadcastAtMEight() throws {
        let machine = MachineContext(
            isa: ISAFeatures(architecture: .x86_64, usable: [.sse42, .avx, .avx2, .fma, .avx512f, .avx512bw, .avx512vl, .avx512vnni]),
            topology: Fixtures.zen3)
        func tile(_ m: Int) -> Configuration {
            family.analyticalConfiguration(for: Workload(family: family.name, shape: ["m": m, "n": 11008, "k": 4096, "outliers": 128]), machine: machine)
        }
        let eight = tile(8)
        #expect(eight.name("isa") == "avx512-vnni" && eight.int("mr") == 8 && eight.int("nr") == 32 && eight.name("acc") == "memory", "\(eight)")
        let one = tile(1)
        #expect(one.int("mr") == 1 && one.int("nr") == 32 && one.name("acc") == "registers", "\(one)")
        for c in [eight, one] { #expect(throws: Never.self) { try family.check(c, machine: machine) } }
    }

    /// The engine shares one packing of a layer's weights between configurations with the same packing
    /// key: the key must change with everything the pack function's output depends on.
    @Test func packingKeySeparatesLayoutsAndCodeForms() throws {
        func key(_ overrides: [String: ParamValue]) -> String {
            var c = family.defaultConfiguration(isa: .avx512vnni, machine: nil)
            c["nr"] = .int(32)
            for (name, value) in overrides { c[name] = value }
            return GemmW4A4.packingKey(c)
        }
        let base = key([:])
        #expect(key(["mr": .int(4), "kc": .int(1024), "mc": .int(128), "nc": .int(1024)]) == base)
        #expect(key(["nr": .int(16)]) != base)
        #expect(key(["layout": .name("interleaved")]) != base)
        #expect(key(["unpack": .name("lut")]) != base, "vpdpbusd with masks stores w + 8, the table lookup signed codes")
        #expect(key(["isa": .name("portable"), "acc": .name("registers"), "mr": .int(4)]) == key(["unpack": .name("lut")]))
        #expect(key(["isa": .name("avx2")]) == base, "AVX2 with masks also stores w + 8")
    }

    @Test func shapesThatBreakTheLayoutNameTheRule() {
        func rule(_ shape: [String: Int]) -> String? {
            do {
                try family.checkShape(Workload(family: family.name, shape: shape))
                return nil
            } catch let v as ConstraintViolation {
                return v.rule
            } catch {
                return "\(error)"
            }
        }
        #expect(rule(["m": 1, "n": 8, "k": 4096, "outliers": 128]) == nil)
        #expect(rule(["m": 1, "n": 8, "k": 4096, "outliers": 0]) == nil)
        #expect(rule(["m": 1, "n": 8, "k": 4000, "outliers": 128]) == "groups")
        #expect(rule(["m": 1, "n": 8, "k": 256, "outliers": 256]) == "outliers")
        #expect(rule(["m": 1, "n": 8, "k": 258, "outliers": 2]) == "outliers")
        #expect(rule(["m": 0, "n": 8, "k": 256, "outliers": 128]) == "positive")
    }

    @Test func int32GroupSumsAreAVX2Only() throws {
        var c = family.defaultConfiguration(isa: .avx2, machine: nil)
        c["gsum"] = .name("int32")
        try family.check(c, machine: nil)
        #expect(try family.render(c).code.contains("_mm256_add_epi32(c0_0, _mm256_madd_epi16(_mm256_maddubs_epi16("))
        #expect(try family.render(c).name.hasSuffix("_g32"))
        c["isa"] = .name("avx512-vnni")
        c["nr"] = .int(32)
        #expect { try family.check(c, machine: nil) } throws: { ($0 as? ConstraintViolation)?.rule == "gsum-target" }
    }

    @Test func registerRuleCountsBothAccumulatorSets() {
        var c = family.defaultConfiguration(isa: .avx2, machine: nil)
        c["mr"] = .int(6)
        #expect(throws: ConstraintViolation.self) { try family.check(c, machine: nil) }
        // fp32 sums in memory leave the registers to the integer sums: 6 + 2 + 4 fit AVX2's 16
        c["acc"] = .name("memory")
        c["mc"] = .int(48)
        #expect(throws: Never.self) { try family.check(c, machine: nil) }
        var portable = family.defaultConfiguration(isa: .portable, machine: nil)
        portable["acc"] = .name("memory")
        #expect(throws: ConstraintViolation.self) { try family.check(portable, machine: nil) }
    }
}

@Suite("Atom quantization and the W4A4 reference")
struct AtomQuantizationTests {
    @Test func int4CodesRoundHalfToEvenAndClamp() {
        let s: Float = 0.5
        #expect(AtomQuantization.int4Code(0.25, scale: s) == 0)   // 0.5 -> 0 (even)
        #expect(AtomQuantization.int4Code(0.75, scale: s) == 2)   // 1.5 -> 2
        #expect(AtomQuantization.int4Code(-0.75, scale: s) == -2)
        #expect(AtomQuantization.int4Code(100, scale: s) == 7)
        #expect(AtomQuantization.int4Code(-100, scale: s) == -8)
        #expect(AtomQuantization.int4Code(3, scale: 0) == 0)
        #expect(AtomQuantization.int8Code(-1000, scale: 1) == -127)
    }

    @Test func packingRoundTrips() {
        let codes: [Int8] = [-8, 7, 0, -1, 3, -5]
        let packed = AtomQuantization.pack(codes)
        #expect(packed.count == 3)
        #expect(packed[0] == 0x78)  // low nibble -8 (0x8), high nibble 7
        packed.withUnsafeBufferPointer { p in
            #expect((0..<codes.count).map { AtomQuantization.unpack(p.baseAddress!, $0) } == codes)
        }
    }

    @Test func quantizedRowsFollowTheLayout() {
        var rng = SeededGenerator(seed: 3)
        let x = GemmW4A4Reference.rows(3, k: 384, outliers: 128, rng: &rng)
        let q = AtomQuantization.quantize(x, rows: 3, k: 384, outliers: 128, clip: AtomQuantization.activationClip)
        #expect(q.codes.count == 3 * 128 && q.scales.count == 3 * 2 && q.outlierCodes.count == 3 * 128)
        // Group sums are the sums of the codes.
        for r in 0..<3 {
            for g in 0..<2 {
                let sum = (0..<128).reduce(Int32(0)) { $0 + Int32(q.code(r, g * 128 + $1)) }
                #expect(q.groupSums[r * 2 + g] == sum)
            }
        }
        // The planted zero group of row 1 has scale 0 and zero codes.
        #expect(q.scales[1 * 2 + 1] == 0)
        // The constant groups: row 2's group 0 all -8, row 1's all 7 (the extreme code sums).
        #expect((0..<128).allSatisfy { q.code(2, $0) == -8 } && q.groupSums[2 * 2] == -1024)
        #expect((0..<128).allSatisfy { q.code(1, $0) == 7 } && q.groupSums[1 * 2] == 896)
        // Outliers are 20-100x larger and land in the INT8 part with a larger scale.
        #expect(q.outlierScales[0] > q.scales[0] * 7 / AtomQuantization.activationClip / 127 * 10)
    }

    @Test func referenceMatchesADoubleComputationClosely() {
        var rng = SeededGenerator(seed: 8)
        let k = 256, o = 128
        let a = AtomQuantization.quantize(GemmW4A4Reference.rows(2, k: k, outliers: o, rng: &rng), rows: 2, k: k, outliers: o, clip: 0.9)
        let w = AtomQuantization.quantize(GemmW4A4Reference.rows(3, k: k, outliers: o, rng: &rng), rows: 3, k: k, outliers: o, clip: 0.85)
        let y = GemmW4A4Reference.compute(a: a, w: w)
        for i in 0..<2 {
            for j in 0..<3 {
                var exact = 0.0
                for c in 0..<(k - o) {
                    exact += Double(a.code(i, c)) * Double(a.scales[i]) * Double(w.code(j, c)) * Double(w.scales[j])
                }
                for c in 0..<o {
                    exact += Double(a.outlierCodes[i * o + c]) * Double(a.outlierScales[i]) * Double(w.outlierCodes[j * o + c]) * Double(w.outlierScales[j])
                }
                #expect(abs(Double(y[i * 3 + j]) - exact) <= 1e-4 * max(1, abs(exact)))
            }
        }
    }
}

@Suite("Accuracy ablation")
struct AtomAccuracyTests {
    @Test func methodsOrderAsAtomsAblation() {
        let rows = AtomAccuracy.table(m: 32, n: 64, k: 4096, outlierChannels: 8, seed: 2)
        #expect(rows.count == 5)
        let e = rows.map(\.relativeError)
        // RTN > + outliers > + groups > + clipping, and every error is a real, positive number.
        #expect(e.allSatisfy { $0 > 0 && $0.isFinite })
        #expect(e[0] > e[1] && e[1] > e[2] && e[2] > e[3], "\(rows.map { "\($0.scheme): \($0.relativeError)" })")
        // Keeping outliers in INT8 is the big step (Atom's main observation).
        #expect(e[1] < e[0] / 3)
        // W8A8 beats plain W4A4 round-to-nearest.
        #expect(e[4] < e[0])
    }
}
