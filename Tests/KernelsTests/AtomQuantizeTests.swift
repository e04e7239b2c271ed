import Foundation
import KernelKit
import Kernels
import Machine
import Testing
import Toolchain

@Suite("AtomQuantize templates compile on every ISA", .serialized)
struct AtomQuantizeTemplateTests {
    /// Every point of every family (isa x gather; threads do not change the code).
    static func points(_ family: AtomQuantize) -> [Configuration] {
        family.enumerate(machine: nil, fixing: ["threads": .int(1), "placement": .name("scatter")])
    }

    @Test(arguments: AtomQuantize.Op.allCases)
    func everyVariantCompilesWithWarningsAsErrors(op: AtomQuantize.Op) throws {
        let family = AtomQuantize(op)
        let compiler = try CompilerDiscovery.discover()
        let points = Self.points(family)
        #expect(points.count == (op.reorders ? 10 : 4))  // reordering: portable scalar; avx2 x 4 gathers, avx512 x 3; neon scalar, insert
        for config in points {
            let isa = ISATarget(rawValue: config.name("isa"))!
            let source = try family.render(config)
            let cross: CrossTarget? = isa.compilesNatively(on: CPUArchitecture.current) ? nil : .aarch64Linux
            do {
                try checkCompiles(CompileJob(name: source.name, source: source.code, flags: isa.compilerFlags, compiler: compiler), target: cross)
            } catch ToolchainError.crossTargetUnavailable(let why) {
                print("skipping \(source.name): \(why)")
            }
        }
    }

    @Test func headerNamesFamilyVersionAndParameters() throws {
        let family = AtomQuantize(.rmsnormReorderQuantize)
        let config = try family.configuration(overrides: ["isa": "avx2", "gather": "vector"], machine: nil)
        let source = try family.render(config)
        #expect(source.name == "atom_rmsnorm_reorder_quantize__avx2_gathervector")
        #expect(source.code.hasPrefix("/*\n * rmsnorm-reorder-quantize, template version \(family.templateVersion)"))
        #expect(source.code.contains("Parameters: isa=avx2 gather=vector"))
        #expect(source.code.contains("_mm256_i32gather_ps"))
        // FMA only inside the exact quotient (Markstein's correction); y itself is multiplied and added
        // separately, as the reference does.
        let quotient = try #require(source.code.range(of: "static inline __m256 quotient("))
        let afterQuotient = source.code[quotient.upperBound...].drop { $0 != "}" }
        #expect(source.code.components(separatedBy: "_mm256_fmadd_ps").count == 2)
        #expect(!afterQuotient.contains("_mm256_fmadd_ps"), "no FMA outside the quotient")
        var two = config
        two["threads"] = .int(2)
        #expect(try family.render(two) == source, "threads do not change the code")
        let silu = try AtomQuantize(.siluMulQuantize).render(AtomQuantize(.siluMulQuantize).defaultConfiguration(isa: .portable, machine: nil))
        #expect(silu.name == "atom_silu_mul_quantize__portable")
        #expect(silu.code.contains("return g / (1.0f + e) * u;"))
        #expect(silu.code.contains("p = fmaf(p, r, EXP_P1);"), "Horner by fused multiply-adds")
    }
}

@Suite("AtomQuantize parameters and rules")
struct AtomQuantizeRuleTests {
    let machine = MachineContext(isa: ISAFeatures(architecture: .x86_64, usable: [.sse42, .avx, .avx2, .fma]), topology: Fixtures.zen3)

    func rule(_ family: AtomQuantize, _ overrides: [String: String], machine: MachineContext? = nil) -> String? {
        do {
            _ = try family.configuration(overrides: overrides, machine: machine)
            return nil
        } catch let v as ConstraintViolation {
            return v.rule
        } catch {
            return "\(error)"
        }
    }

    @Test func constraintsNameTheRule() {
        let family = AtomQuantize(.reorderQuantize)
        #expect(rule(family, ["isa": "portable", "gather": "vector"]) == "gather-isa")
        #expect(rule(family, ["isa": "neon-dotprod", "gather": "vector"]) == "gather-isa")
        #expect(rule(family, ["isa": "avx2", "gather": "vector"]) == nil)
        #expect(rule(family, ["isa": "portable", "gather": "insert"]) == "gather-isa")
        #expect(rule(family, ["isa": "neon-dotprod", "gather": "insert"]) == nil)
        #expect(rule(family, ["isa": "avx2", "gather": "insert"]) == nil)
        #expect(rule(family, ["isa": "avx2", "gather": "transpose"]) == nil)
        for isa in ["portable", "avx512-vnni", "neon-dotprod"] { #expect(rule(family, ["isa": isa, "gather": "transpose"]) == "gather-isa") }
        #expect(rule(family, ["isa": "avx512-vnni"], machine: machine) == "isa-runs")
        #expect(rule(family, ["isa": "avx2", "threads": "4"], machine: machine) == "threads-pus")
        #expect(rule(family, ["isa": "avx2", "threads": "2"], machine: machine) == nil)
        #expect(rule(family, ["isa": "avx-vnni"]) == "domain")
        // silu-mul-quantize reads in order: it has no gather parameter.
        #expect(rule(AtomQuantize(.siluMulQuantize), ["gather": "scalar"]) == "known-parameter")
    }

    @Test func defaultsAreValidForEveryTarget() throws {
        for family in AtomQuantize.families {
            for isa in family.targets {
                let config = family.defaultConfiguration(isa: isa, machine: machine)
                try family.check(config, machine: nil)
                if isa.runs(on: machine.isa) { try family.check(config, machine: machine) }
            }
            let analytical = family.analyticalConfiguration(for: Workload(family: family.name, shape: ["m": 1, "k": 4096, "outliers": 128]), machine: machine)
            #expect(analytical.int("threads") == family.defaultConfiguration(isa: .avx2, machine: machine).int("threads"), "one row, cut into parts: one thread per core")
            #expect(analytical.name("isa") == "avx2")
        }
    }

    /// Rows are shared whole while there are enough; fewer rows than threads are cut into group ranges
    /// (never more parts than groups), and every unit goes to exactly one thread.
    @Test func fewerRowsThanThreadsAreCutIntoParts() {
        func check(m: Int, k: Int, outliers: Int, threads: Int, parts expected: Int) {
            let (parts, units) = AtomQuantize.shares(m: m, k: k, outliers: outliers, threads: threads)
            #expect(parts == expected, "m=\(m) k=\(k) threads=\(threads)")
            #expect(units.count == threads)
            #expect(units.flatMap { Array($0) } == Array(0..<(m * parts)), "each unit once, in order")
            #expect(units.allSatisfy { !$0.isEmpty } || m * parts < threads)
        }
        check(m: 8, k: 4096, outliers: 128, threads: 2, parts: 1)
        check(m: 2, k: 4096, outliers: 128, threads: 2, parts: 1)
        check(m: 1, k: 4096, outliers: 128, threads: 2, parts: 2)
        check(m: 1, k: 11008, outliers: 128, threads: 8, parts: 8)
        check(m: 3, k: 4096, outliers: 128, threads: 8, parts: 3)
        check(m: 1, k: 256, outliers: 128, threads: 4, parts: 1)  // one group: nothing to cut
        check(m: 1, k: 384, outliers: 128, threads: 4, parts: 2)
    }

    /// gather=transpose hands out whole blocks of eight rows while every thread can have one; the
    /// last thread takes the rows past the last whole block. Fewer rows share as without blocks.
    @Test func blockedRowsAreSharedInWholeBlocks() {
        func units(_ m: Int, threads: Int) -> [Range<Int>] {
            let (parts, units) = AtomQuantize.shares(m: m, k: 4096, outliers: 128, threads: threads, rowBlock: 8)
            #expect(parts == (m >= threads ? 1 : 2))
            return units
        }
        #expect(units(16, threads: 2) == [0..<8, 8..<16])
        #expect(units(17, threads: 2) == [0..<8, 8..<17])
        #expect(units(64, threads: 2) == [0..<32, 32..<64])
        #expect(units(40, threads: 4) == [0..<8, 8..<16, 16..<24, 24..<40])
        #expect(units(12, threads: 2) == [0..<6, 6..<12], "fewer than a block per thread: shared row by row")
        #expect(units(1, threads: 2) == [0..<1, 1..<2])
        #expect(AtomQuantize.Gather.transpose.rowBlock == 8 && AtomQuantize.Gather.insert.rowBlock == 1)
        // the stage: K * 8 + O * 8 floats for the blocks, O floats otherwise
        #expect(AtomQuantize.stageBytes(k: 4096, outliers: 128, gather: .transpose) == (4096 + 128) * 8 * 4)
        #expect(AtomQuantize.stageBytes(k: 4096, outliers: 128, gather: .insert) == 512)
        #expect(AtomQuantize.stageBytes(k: 256, outliers: 0, gather: nil) == 64)
    }

    @Test func shapeRulesRejectWithTheRule() {
        let family = AtomQuantize(.rmsnormReorderQuantize)
        func rule(_ m: Int, _ k: Int, _ o: Int) -> String? {
            do {
                try family.checkShape(Workload(family: family.name, shape: ["m": m, "k": k, "outliers": o]))
                return nil
            } catch let v as ConstraintViolation {
                return v.rule
            } catch {
                return "\(error)"
            }
        }
        #expect(rule(1, 4096, 128) == nil)
        #expect(rule(3, 4224, 128) == nil)
        #expect(rule(3, 4096, 0) == nil)
        #expect(rule(3, 300, 44) == nil)
        #expect(rule(0, 4096, 128) == "positive")
        #expect(rule(1, 4096, 100) == "groups")
        #expect(rule(1, 4096, -1) == "outliers")
        #expect(rule(1, 128, 128) == "outliers")
        #expect(rule(1 << 20, 4096, 0) == "size")
    }

    @Test func registryListsTheThreeFamilies() throws {
        for op in AtomQuantize.Op.allCases {
            #expect(try KernelRegistry.family(named: op.rawValue).name == op.rawValue)
        }
    }

    @Test func opsAreElementsAndBytesAreTheFewestMoved() {
        let w = Workload(family: "reorder-quantize", shape: ["m": 2, "k": 384, "outliers": 128])
        let family = AtomQuantize(.reorderQuantize)
        let config = family.defaultConfiguration(isa: .portable, machine: nil)
        #expect(family.usefulOps(w, config) == 768)
        // x: 2 * 384 * 4, perm: 384 * 4; out per row: 128 code bytes, 2 scales + 2 sums, 128 outlier codes, 1 scale.
        #expect(family.bytesMoved(w, config) == 3072 + 1536 + 2 * (128 + 16 + 128 + 4))
        #expect(AtomQuantize.bytesMoved(op: .siluMulQuantize, m: 2, k: 384, outliers: 128) == 6144 + 2 * 276)
        #expect(AtomQuantize.bytesMoved(op: .rmsnormReorderQuantize, m: 2, k: 384, outliers: 128) == 3072 + 3072 + 2 * 276)
    }

    @Test func outputLayoutIsAlignedAndBackToBack() {
        let l = AtomQuantize.OutputLayout(m: 3, k: 300, outliers: 44)
        #expect(l.codes == 0)
        #expect(l.scales == 384)  // 3 * 128 code bytes
        #expect(l.groupSums == 384 + 64)  // 24 bytes of scales, padded to 64
        #expect(l.outlierCodes == 448 + 64)
        #expect(l.outlierScales == 512 + 192)  // 132 outlier code bytes, padded
        #expect(l.bytes == 704 + 12)
        for offset in [l.scales, l.groupSums, l.outlierCodes, l.outlierScales] { #expect(offset % 64 == 0) }
    }
}

@Suite("AtomQuantize reference")
struct AtomQuantizeReferenceTests {
    /// One row of 256 channels (one group + 128 outliers) with exact ties planted by hand.
    @Test func tiesRoundHalfToEven() {
        let k = 256, outliers = 128
        // absmax 7 * 2^-3 / 0.9 gives a scale; find one whose significand ends in zeros.
        var absmax: Float = 1
        while AtomQuantization.int4Scale(absmax: absmax, clip: AtomQuantization.activationClip).significandBitPattern.trailingZeroBitCount < 8 {
            absmax = absmax.nextUp
        }
        let s = AtomQuantization.int4Scale(absmax: absmax, clip: AtomQuantization.activationClip)
        var x = [Float](repeating: 0, count: k)
        x[0] = absmax
        let ties: [(Float, Int8)] = [(0.5, 0), (1.5, 2), (2.5, 2), (-0.5, 0), (-1.5, -2), (-2.5, -2), (6.5, 6), (-7.5, -8), (3.5, 4)]
        for (i, (t, _)) in ties.enumerated() { x[1 + i] = t * s }
        var outlierMax: Float = 50
        while AtomQuantization.int8Scale(absmax: outlierMax).significandBitPattern.trailingZeroBitCount < 8 { outlierMax = outlierMax.nextUp }
        let s8 = AtomQuantization.int8Scale(absmax: outlierMax)
        x[128] = -outlierMax
        let ties8: [(Float, Int8)] = [(126.5, 126), (-126.5, -126), (0.5, 0), (1.5, 2), (-3.5, -4)]
        for (i, (t, _)) in ties8.enumerated() { x[129 + i] = t * s8 }
        let perm = (0..<Int32(k)).map { $0 }
        let q = AtomQuantizeReference.reorderQuantize(x: x, perm: perm, rows: 1, k: k, outliers: outliers)
        #expect(q.scales[0] == s)
        #expect(q.code(0, 0) == 7)
        for (i, (_, code)) in ties.enumerated() { #expect(q.code(0, 1 + i) == code, "tie \(ties[i].0)") }
        #expect(q.groupSums[0] == Int32(ties.map(\.1).map(Int.init).reduce(7, +)))
        #expect(q.outlierScales[0] == s8)
        #expect(q.outlierCodes[0] == -127)
        for (i, (_, code)) in ties8.enumerated() { #expect(q.outlierCodes[1 + i] == code, "outlier tie \(ties8[i].0)") }
    }

    @Test func zerosGiveScaleZeroAndCodesZero() {
        let k = 384, outliers = 128
        var x = [Float](repeating: 0, count: k)
        for j in 128..<256 { x[j] = Float(j % 7) - 3 }
        let q = AtomQuantizeReference.reorderQuantize(x: x, perm: (0..<Int32(k)).map { $0 }, rows: 1, k: k, outliers: outliers)
        #expect(q.scales[0] == 0 && q.groupSums[0] == 0)
        #expect(q.codes[0..<64].allSatisfy { $0 == 0 })
        #expect(q.scales[1] > 0)
        #expect(q.outlierScales[0] == 0 && q.outlierCodes.allSatisfy { $0 == 0 })
    }

    @Test func permutationReordersBeforeQuantizing() {
        let k = 256, rows = 2
        var rng = SeededGenerator(seed: 3)
        let x = (0..<rows * k).map { _ in Float.random(in: -1...1, using: &rng) }
        let perm = (0..<Int32(k)).reversed().map { $0 }
        let reversed = (0..<rows).flatMap { i in (0..<k).map { x[i * k + k - 1 - $0] } }
        let q = AtomQuantizeReference.reorderQuantize(x: x, perm: perm, rows: rows, k: k, outliers: 128)
        #expect(q == AtomQuantization.quantize(reversed, rows: rows, k: k, outliers: 128, clip: AtomQuantization.activationClip))
    }

    @Test func sumOfSquaresUsesThirtyTwoPartialsAndTheHalvingFold() {
        let x: [Float] = (0..<77).map { Float($0 % 13) * 0.1 + 1e-3 * Float($0) }
        var p = [Float](repeating: 0, count: 32)
        for j in x.indices { p[j % 32] = p[j % 32] + x[j] * x[j] }
        for half in [16, 8, 4, 2, 1] { for i in 0..<half { p[i] = p[i] + p[i + half] } }
        let ss = x.withUnsafeBufferPointer { AtomQuantizeReference.sumOfSquares($0) }
        #expect(ss.bitPattern == p[0].bitPattern)
        let exact = x.reduce(0.0) { $0 + Double($1) * Double($1) }
        #expect(abs(Double(ss) - exact) / exact < 1e-6)
        let r = x.withUnsafeBufferPointer { AtomQuantizeReference.rmsScale($0, eps: 1e-5) }
        #expect(abs(Double(r) - 1 / (exact / 77 + 1e-5).squareRoot()) < 1e-6)
    }

    @Test func rmsnormMatchesItsDefinition() {
        let inputs = AtomQuantizeInputs.random(op: .rmsnormReorderQuantize, m: 3, k: 384, outliers: 128, seed: 5)
        let y = inputs.y()
        for i in 0..<3 {
            let row = Array(inputs.x[i * 384..<(i + 1) * 384])
            let ms = row.reduce(0.0) { $0 + Double($1) * Double($1) } / 384
            let r = 1 / (ms + Double(inputs.eps)).squareRoot()
            for j in [0, 17, 200, 383] {
                let src = Int(inputs.perm[j])
                let expected = Double(row[src]) * r * Double(inputs.weight[src])
                #expect(abs(Double(y[i * 384 + j]) - expected) <= 1e-5 * max(1, abs(expected)))
            }
        }
    }

    /// The family's exp against glibc's expf on a dense grid of [-87, 88] (about 2.8 million points).
    @Test func expIsWithinTwoUlpOfLibm() {
        var worst = 0.0, worstAt: Float = 0
        var x = AtomQuantizeReference.ExpConstants.minimum
        while x <= AtomQuantizeReference.ExpConstants.maximum {
            let ours = AtomQuantizeReference.exp(x), libm = Foundation.exp(x)
            let ulps = Double(abs(ours - libm)) / Double(libm.ulp)
            if ulps > worst { (worst, worstAt) = (ulps, x) }
            x += 1.0 / 16384
        }
        print("family exp: max error \(worst) ulp at x = \(worstAt)")
        #expect(worst <= Double(AtomQuantizeReference.ExpConstants.maxUlpError), "max \(worst) ulp at \(worstAt)")
        #expect(AtomQuantizeReference.exp(0) == 1)
        #expect(AtomQuantizeReference.exp(-100) == AtomQuantizeReference.exp(-87))
        #expect(AtomQuantizeReference.exp(100) == AtomQuantizeReference.exp(88))
        #expect(AtomQuantizeReference.exp(-100).isNormal && AtomQuantizeReference.exp(100).isFinite)
        #expect(AtomQuantizeReference.siluMul(32, 0.75) == 24, "1 + exp(-32) rounds to 1")
        #expect(AtomQuantizeReference.siluMul(0, 5) == 0)
        #expect(abs(AtomQuantizeReference.siluMul(-100, 1)) < 1e-30)
    }

    /// Test inputs: outlier channels moved last, exact ties present, zero blocks in the last row.
    @Test(arguments: AtomQuantize.Op.allCases)
    func randomInputsHaveOutliersTiesAndZeros(op: AtomQuantize.Op) {
        let m = 5, k = 512, outliers = 128
        let inputs = AtomQuantizeInputs.random(op: op, m: m, k: k, outliers: outliers, seed: 11)
        let again = AtomQuantizeInputs.random(op: op, m: m, k: k, outliers: outliers, seed: 11)
        #expect(inputs.x == again.x && inputs.gate == again.gate && inputs.up == again.up && inputs.perm == again.perm)
        let y = inputs.y()
        let q = inputs.reference()
        let normal = k - outliers, groups = normal / 128
        // Ties: y / s is exactly c + 0.5.
        var ties = 0, ties8 = 0
        for i in 0..<m {
            for j in 0..<normal {
                let s = q.scales[i * groups + j / 128]
                if s > 0 { let t = y[i * k + j] / s; if t.rounded(.down) + 0.5 == t { ties += 1 } }
            }
            let s8 = q.outlierScales[i]
            for j in normal..<k where s8 > 0 {
                let t = y[i * k + j] / s8
                if t.rounded(.down) + 0.5 == t { ties8 += 1 }
            }
        }
        #expect(ties >= (op == .rmsnormReorderQuantize ? 4 : 12), "\(op): \(ties) INT4 ties")
        #expect(ties8 >= (op == .rmsnormReorderQuantize ? 2 : 8), "\(op): \(ties8) INT8 ties")
        // Zeros: the last row's first group and its outliers.
        #expect(q.scales[(m - 1) * groups] == 0 && q.outlierScales[m - 1] == 0)
        // Outliers: the large channels are in the INT8 block (mean |y| there far above the rest).
        let row0 = Array(y[0..<k])
        let meanNormal = row0[0..<normal].map(abs).reduce(0, +) / Float(normal)
        let largest = row0[normal...].map(abs).max()!
        #expect(largest > 15 * meanNormal, "\(op): the outlier block holds the large channels")
        if op.reorders {
            #expect(Set(inputs.perm).count == k)
        }
    }

    /// Planting ties through RMSNorm's shared weight must not blow up other rows: at M = 255 and 256
    /// (where an unguarded plant once made weights huge and y infinite) every y is finite and every
    /// weight stays within 16x of the others.
    @Test func largeInputsStayFinite() {
        for m in [255, 256] {
            let inputs = AtomQuantizeInputs.random(op: .rmsnormReorderQuantize, m: m, k: 4096, outliers: 128, seed: 1)
            let y = inputs.y()
            #expect(y.allSatisfy { $0.isFinite }, "m = \(m)")
            #expect(inputs.weight.allSatisfy { abs($0) <= 16 && abs($0) >= 1.0 / 16 }, "m = \(m)")
        }
    }
}

@Suite("AtomCalibration")
struct AtomCalibrationTests {
    @Test func sortsAscendingAndKeepsTiesInIndexOrder() {
        let perm = AtomCalibration.permutation(sumsOfSquares: [5, 1, 3, 1, 9, 3, 0])
        #expect(perm == [6, 1, 3, 2, 5, 0, 4])
    }

    @Test func incrementalEqualsBatchAndLargestEndLast() {
        let t = 24, k = 300
        var rng = SeededGenerator(seed: 8)
        let large: Set<Int> = [5, 77, 150, 299]
        let rows = (0..<t * k).map { i in Float.random(in: -1...1, using: &rng) * (large.contains(i % k) ? 50 : 1) }
        var incremental = AtomCalibration(channels: k)
        for r in 0..<t { incremental.add(row: rows[r * k..<(r + 1) * k]) }
        #expect(incremental.tokens == t)
        let batch = AtomCalibration.permutation(rows: rows, channels: k)
        #expect(incremental.permutation() == batch)
        #expect(Set(batch.suffix(4).map(Int.init)) == large)
        #expect(Set(batch).count == k)
        let ss = incremental.sumsOfSquares
        for (a, b) in zip(batch, batch.dropFirst()) { #expect(ss[Int(a)] <= ss[Int(b)]) }
        var halves = AtomCalibration(channels: k)
        halves.add(rows: Array(rows[0..<12 * k]))
        halves.add(rows: Array(rows[(12 * k)...]))
        #expect(halves.permutation() == batch)
    }
}
