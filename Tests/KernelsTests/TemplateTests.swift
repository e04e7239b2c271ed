import Foundation
import KernelKit
import Kernels
import Machine
import Testing
import Toolchain

@Suite("C source builder")
struct CSourceTests {
    @Test func rendersIndentedBlocks() {
        var c = CSource()
        c.comment("header")
        c.function("int f(int n)") { c in
            c.declare("int", "sum", "0")
            c.declare("const int *", "p", "0")
            c.forLoop("int i = 0", "i < n", "i++") { c in c.line("sum += i;") }
            c.ifBlock("sum > 3") { c in c.line("return 1;") } else: { c in c.line("return 0;") }
        }
        let expected = """
            /* header */
            int f(int n) {
                int sum = 0;
                const int *p = 0;
                for (int i = 0; i < n; i++) {
                    sum += i;
                }
                if (sum > 3) {
                    return 1;
                } else {
                    return 0;
                }
            }


            """
        #expect(c.description == expected)
    }

    @Test func multiLineCommentsSplitOnNewlines() {
        var c = CSource()
        c.comment(lines: ["a\nb", "", "c"])
        #expect(c.description == "/*\n * a\n * b\n *\n * c\n */\n")
    }
}

@Suite("aligned buffers")
struct AlignedBufferTests {
    @Test func largeBuffersStartOnAHugePageAndAreZeroed() {
        let big = AlignedBuffer(byteCount: 3 * AlignedBuffer.hugePageBytes + 100)
        #expect(Int(bitPattern: big.pointer) % AlignedBuffer.hugePageBytes == 0)
        #expect(big.byteCount == 3 * AlignedBuffer.hugePageBytes + 100)
        #expect(big.region.allSatisfy { $0 == 0 })
        let small = AlignedBuffer(byteCount: 1000, alignment: 128)
        #expect(Int(bitPattern: small.pointer) % 128 == 0)
        #expect(small.region.allSatisfy { $0 == 0 })
        let empty = AlignedBuffer(byteCount: 0)
        #expect(empty.region.isEmpty)
    }
}

@Suite("configurations stored before a parameter existed")
struct CompletingTests {
    @Test func missingParametersTakeTheirDefaultsAndTheOldCode() throws {
        let family = GemmF16()
        let stored = Configuration([
            "isa": .name("avx512-vnni"), "mr": .int(8), "nr": .int(32), "threads": .int(2), "tm": .int(1), "placement": .name("scatter"),
        ])
        #expect(throws: ConstraintViolation.self) { try family.check(stored, machine: nil) }
        let completed = family.completing(stored)
        #expect(completed.int("pf") == 0)
        #expect(completed.int("mr") == 8, "present parameters are kept")
        try family.check(completed, machine: nil)
        let code = try family.render(completed).code
        #expect(!code.contains("__builtin_prefetch"), "pf = 0 renders the version-1 loop")
        var prefetching = completed
        prefetching["pf"] = .int(4096)
        #expect(try family.render(prefetching).code.contains("__builtin_prefetch((const char *)w + 0 + PREFETCH_BYTES);"))
    }
}

@Suite("another shape's configuration fitted to a workload")
struct AdaptingTests {
    let family = GemmW4A4()
    let stored = Configuration([
        "isa": .name("avx512-vnni"), "mr": .int(8), "nr": .int(32), "kc": .int(2048), "mc": .int(8), "nc": .int(4096),
        "unpack": .name("lut"), "pf": .int(8192), "acc": .name("memory"), "gsum": .name("int16"), "layout": .name("split"), "out": .name("fp32"), "threads": .int(2), "tm": .int(1), "placement": .name("scatter"),
    ])

    func workload(m: Int) -> Workload { Workload(family: family.name, shape: ["m": m, "n": 11008, "k": 4096, "outliers": 128]) }

    @Test func aTileTallerThanTheRowsShrinksToThem() throws {
        try family.check(stored, machine: nil)
        let four = family.adapting(stored, to: workload(m: 4), machine: nil)
        #expect(four.int("mr") == 4 && four.int("mc") == 8)
        #expect(stored.changes(to: four) == "mr=8->4")
        // 3 rows: mr = 3, and mc moves to the next multiple of 3 in its domain
        let three = family.adapting(stored, to: workload(m: 3), machine: nil)
        #expect(three.int("mr") == 3 && three.int("mc") == 24)
        try family.check(three, machine: nil)
        // 7 rows: the largest mr of the domain not above 7
        #expect(family.adapting(stored, to: workload(m: 7), machine: nil).int("mr") == 6)
        var rest = three
        rest["mr"] = stored["mr"]
        rest["mc"] = stored["mc"]
        #expect(rest == stored, "nothing but mr and mc changes")
    }

    @Test func otherConfigurationsAreLeftAlone() {
        #expect(family.adapting(stored, to: workload(m: 8), machine: nil) == stored)
        #expect(family.adapting(stored, to: workload(m: 64), machine: nil) == stored)
        #expect(stored.changes(to: stored) == "none")
        // no rows dimension, or no register tile: unchanged
        let attention = AttentionDecode()
        let config = attention.defaultConfiguration(isa: .avx512vnni, machine: nil)
        let w = Workload(family: attention.name, shape: ["b": 1, "hq": 32, "hkv": 32, "d": 128, "ctx": 64])
        #expect(attention.adapting(config, to: w, machine: nil) == config)
    }

    /// The analytical configuration (the runtime's last fallback, `lookup`'s answer without a record)
    /// carries the workload's own parameters too.
    @Test func analyticalConfigurationsTakeTheWorkloadsOwnParameters() {
        let machine = MachineContext(isa: ISAFeatures(architecture: .x86_64, usable: [.sse42, .avx, .avx2, .fma, .f16c]), topology: Fixtures.zen3)
        let attention = AttentionDecode()
        for (bits, cache) in [(4, "int4"), (8, "int8"), (32, "fp32")] {
            let w = Workload(family: attention.name, shape: ["b": 2, "hq": 32, "hkv": 32, "d": 128, "ctx": 1024, "kvbits": bits])
            #expect(attention.analyticalConfiguration(for: w, machine: machine).name("cache") == cache)
        }
        for (bits, out) in [(16, "fp16"), (32, "fp32")] {
            let w = Workload(family: family.name, shape: ["m": 8, "n": 4096, "k": 4096, "outliers": 128, "ybits": bits])
            let c = family.analyticalConfiguration(for: w, machine: machine)
            #expect(c.name("out") == out)
            #expect(throws: Never.self) { try family.check(c, machine: machine) }
        }
    }

    /// A workload's own parameters win over the stored shape's: an INT8-cache record serving an
    /// FP32-cache workload (kvbits = 32) runs with cache=fp32, the rest of the record kept.
    @Test func theWorkloadsOwnParametersReplaceTheRecords() throws {
        let attention = AttentionDecode()
        var int8 = attention.defaultConfiguration(isa: .avx512vnni, machine: nil)
        int8["cache"] = .name("int8")
        int8["tb"] = .int(32)
        let fp32 = Workload(family: attention.name, shape: ["b": 2, "hq": 32, "hkv": 32, "d": 128, "ctx": 1024, "kvbits": 32])
        let fitted = attention.adapting(int8, to: fp32, machine: nil)
        #expect(fitted.name("cache") == "fp32" && fitted.int("tb") == 32)
        #expect(int8.changes(to: fitted) == "cache=int8->fp32")
        try attention.check(fitted, machine: nil)
    }
}

@Suite("gemm-w8a8 parameters and rules")
struct GemmW8A8RuleTests {
    let family = GemmW8A8()
    let machine = MachineContext(isa: ISAFeatures(architecture: .x86_64, usable: [.sse42, .avx, .avx2, .fma]), topology: Fixtures.zen3)

    @Test func unknownParameterListsValidOnes() {
        #expect {
            _ = try family.configuration(overrides: ["tile": "4"], machine: nil)
        } throws: { error in
            let text = "\(error)"
            return text.contains("unknown parameter 'tile'") && text.contains("mr") && text.contains("kc")
        }
    }

    @Test func outOfDomainValueListsTheDomain() {
        #expect {
            _ = try family.configuration(overrides: ["mr": "7"], machine: nil)
        } throws: { error in "\(error)".contains("mr=7") && "\(error)".contains("1|2|3|4|5|6|8") }
        #expect {
            _ = try family.configuration(overrides: ["isa": "sse9"], machine: nil)
        } throws: { error in "\(error)".contains("avx2") && "\(error)".contains("portable") }
    }

    @Test func constraintsNameTheRule() {
        func rule(_ overrides: [String: String], machine: MachineContext? = nil) -> String? {
            do {
                _ = try family.configuration(overrides: overrides, machine: machine)
                return nil
            } catch let v as ConstraintViolation {
                return v.rule
            } catch {
                return "\(error)"
            }
        }
        #expect(rule(["isa": "avx512-vnni", "nr": "8"]) == "vector-width")
        #expect(rule(["isa": "avx2", "mr": "8", "nr": "32"]) == "registers")
        #expect(rule(["isa": "avx2", "mr": "3", "mc": "64"]) == "mc-tiles")
        #expect(rule(["isa": "avx2", "nr": "24", "mr": "1", "mc": "64", "nc": "512"]) == "nc-panels")
        #expect(rule(["isa": "portable", "ku": "2"]) == "portable-unroll")
        #expect(rule(["threads": "3", "tm": "2"]) == "thread-layout")
        #expect(rule(["isa": "avx512-vnni"], machine: machine) == "isa-runs")
        #expect(rule(["isa": "avx2", "threads": "8"], machine: machine) == "threads-pus")
        // A K block of 64 KiB leaves the 32 KiB L1 but takes an eighth of L2: valid; 96 KiB on a 128 KiB L2 is not.
        #expect(rule(["isa": "avx2", "kc": "4096", "nr": "16"], machine: machine) == nil)
        let smallL2 = MachineContext(isa: machine.isa, topology: Fixtures.zen3.withL2(128 << 10))
        #expect(rule(["isa": "avx2", "kc": "4096", "nr": "24", "mr": "2", "mc": "16", "nc": "96"], machine: smallL2) == "l2-panel")
        #expect(rule(["isa": "avx2"], machine: machine) == nil)
    }

    @Test func defaultsAreValidForEveryTarget() throws {
        for isa in family.targets {
            let config = family.defaultConfiguration(isa: isa, machine: machine)
            try family.check(config, machine: nil)
            if isa.runs(on: machine.isa) { try family.check(config, machine: machine) }
        }
    }

    @Test func shapeRulesRejectWithTheRule() {
        #expect(throws: ConstraintViolation.self) { try family.checkShape(Workload(family: "gemm-w8a8", shape: ["m": 0, "n": 8, "k": 8])) }
        #expect {
            try family.checkShape(Workload(family: "gemm-w8a8", shape: ["m": 70000, "n": 70000, "k": 8]))
        } throws: { ($0 as? ConstraintViolation)?.rule == "size" }
    }

    @Test func unknownFamilyListsValidOnes() {
        #expect {
            _ = try KernelRegistry.family(named: "gemm-w9a9")
        } throws: { "\($0)".contains("gemm-w8a8") }
    }

    @Test func variantNamesSayWhatThenHow() throws {
        let config = try family.configuration(overrides: ["isa": "avx2", "mr": "4", "nr": "16"], machine: nil)
        let source = try family.render(config)
        #expect(source.name.hasPrefix("gemm_w8a8__avx2_mr4_nr16_"))
        #expect(source.code.hasPrefix("/*\n * gemm-w8a8, template version \(family.templateVersion)"))
        #expect(source.code.contains("isa=avx2"))
        // Threads are applied by the caller: they do not change the code.
        let twoThreads = try family.configuration(overrides: ["isa": "avx2", "mr": "4", "nr": "16", "threads": "2"], machine: nil)
        #expect(try family.render(twoThreads) == source)
    }
}

@Suite("gemm-w8a8 reference")
struct GemmW8A8ReferenceTests {
    @Test func smallCaseByHand() {
        let a: [Int8] = [1, -2, 3, 127, -127, 5]  // 2 x 3
        let w: [Int8] = [4, 5, -6, -127, 127, 0]  // 2 x 3
        let sa: [Float] = [0.5, 0.25], sw: [Float] = [2, 1]
        let y = GemmW8A8Reference.compute(a: a, aScale: sa, w: w, wScale: sw, m: 2, n: 2, k: 3)
        // Row 0: (4 - 10 - 18) = -24, (-127 - 254 + 0) = -381. Row 1: (508 - 635 - 30) = -157, (-16129 - 16129) = -32258.
        let expected: [Float] = [-24 * 1, -381 * 0.5, -157 * 0.5, -32258 * 0.25]
        #expect(y == expected)
    }

    @Test func inputsAreLegalAndNotConstant() {
        let x = GemmW8A8Reference.inputs(m: 5, n: 7, k: 33, seed: 9)
        #expect(x.a.allSatisfy { $0 >= -127 })
        #expect(Set(x.a).count > 10)
        #expect(x.a[0] == 127 && x.a[33] == -127)
        #expect(x.aScale.allSatisfy { $0 > 0 })
        let again = GemmW8A8Reference.inputs(m: 5, n: 7, k: 33, seed: 9)
        #expect(again.a == x.a && again.wScale == x.wScale)
    }
}

@Suite("Templates compile on every ISA", .serialized)
struct TemplateCompileTests {
    let family = GemmW8A8()

    /// A deterministic sample of valid points for a target: the default plus random ones.
    func sample(_ isa: ISATarget, count: Int) -> [Configuration] {
        var rng = SeededGenerator(seed: 42)
        var points = [family.defaultConfiguration(isa: isa, machine: nil)]
        var tries = 0
        while points.count < count + 1, tries < 10_000 {
            tries += 1
            var c = Configuration()
            for p in family.parameters { c[p.name] = p.domain.values.randomElement(using: &rng)! }
            c["isa"] = .name(isa.rawValue)
            if (try? family.check(c, machine: nil)) != nil { points.append(c) }
        }
        return points
    }

    @Test(arguments: GemmW8A8().targets)
    func sampledPointsCompileWithWarningsAsErrors(isa: ISATarget) throws {
        let compiler = try CompilerDiscovery.discover()
        let cross: CrossTarget? = isa.compilesNatively(on: CPUArchitecture.current) ? nil : .aarch64Linux
        for config in sample(isa, count: 4) {
            let source = try family.render(config)
            let job = CompileJob(name: source.name, source: source.code, flags: isa.compilerFlags, compiler: compiler)
            do {
                try checkCompiles(job, target: cross)
            } catch let error as ToolchainError {
                if case .crossTargetUnavailable = error {
                    print("skipping \(isa): \(error)")
                    return
                }
                throw error
            }
        }
    }
}

enum Fixtures {
    /// The reference machine of the design notes: 2 Zen 3 cores, L1d 32 KiB, L2 512 KiB, L3 32 MiB.
    static let zen3: Topology = {
        func cache(_ level: Int, _ kind: Topology.CacheKind, _ size: UInt64, _ index: Int, _ pus: [Int]) -> Topology.Cache {
            Topology.Cache(level: level, kind: kind, index: index, sizeBytes: size, lineSize: 64, associativity: 8, pus: pus)
        }
        return Topology(
            packages: [.init(index: 0, vendor: "AuthenticAMD", model: "AMD EPYC", pus: [0, 1])],
            numaNodes: [.init(index: 0, memoryBytes: 24 << 30, pus: [0, 1])],
            cores: [.init(index: 0, pus: [0]), .init(index: 1, pus: [1])], pus: [0, 1],
            caches: [
                cache(1, .data, 32 << 10, 0, [0]), cache(1, .data, 32 << 10, 1, [1]),
                cache(2, .unified, 512 << 10, 0, [0]), cache(2, .unified, 512 << 10, 1, [1]),
                cache(3, .unified, 32 << 20, 0, [0, 1]),
            ],
            hwlocAPIVersion: "2.8.0")
    }()
}

extension Topology {
    /// The same machine with every L2 of `bytes`.
    func withL2(_ bytes: UInt64) -> Topology {
        var t = self
        t.caches = caches.map { c in
            var c = c
            if c.level == 2 { c.sizeBytes = bytes }
            return c
        }
        return t
    }
}
