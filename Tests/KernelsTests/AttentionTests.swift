import Foundation
import KernelKit
import Kernels
import Machine
import Testing
import Toolchain

@Suite("KV cache quantization reference")
struct AttentionKVQuantizationTests {
    func randomRow(_ d: Int, _ rng: inout SeededGenerator, gain: Float = 1, offset: Float = 0) -> [Float] {
        (0..<d).map { _ in Float.random(in: -1...1, using: &rng) * gain + offset }
    }

    @Test(arguments: [KVCacheFormat.int4, .int8])
    func roundTripErrorIsAtMostHalfAStep(format: KVCacheFormat) {
        var rng = SeededGenerator(seed: 7)
        for trial in 0..<200 {
            let d = [2, 8, 64, 128][trial % 4]
            var x = randomRow(d, &rng, gain: Float.random(in: 0.01...100, using: &rng), offset: Float.random(in: -3...3, using: &rng))
            if trial % 5 == 0 { x[trial % d] *= 60 }  // an outlier channel
            let q = KVQuantization.quantize(x, format: format)
            let y = KVQuantization.dequantize(q, count: d, format: format)
            let lo = x.min()!, hi = x.max()!
            #expect(q.scale == (hi - lo) / Float(format.maxCode))
            #expect(q.zero == (-lo / q.scale).rounded(.toNearestOrEven))
            for i in 0..<d {
                let code = q.codes.withUnsafeBytes { KVQuantization.code($0.baseAddress!, i, count: d, format: format) }
                #expect(code >= 0 && code <= format.maxCode)
                // Half a step, plus fp32 rounding of x / s and of the dequantization.
                #expect(abs(y[i] - x[i]) <= 0.5 * q.scale * (1 + 1e-5) + 1e-6 * abs(x[i]), "\(format) d=\(d) i=\(i): \(x[i]) -> \(y[i]), s=\(q.scale)")
            }
            // The row's extremes map to the ends of the code range.
            let codes = (0..<d).map { i in q.codes.withUnsafeBytes { KVQuantization.code($0.baseAddress!, i, count: d, format: format) } }
            #expect(codes[x.firstIndex(of: lo)!] == 0)
            #expect(codes[x.firstIndex(of: hi)!] == format.maxCode)
        }
    }

    @Test(arguments: [KVCacheFormat.int4, .int8])
    func constantRowsDequantizeExactly(format: KVCacheFormat) {
        for c: Float in [0.75, -2.5, 1e-30, -1e-30, 3e38, -7, 1, .leastNonzeroMagnitude] {
            let x = [Float](repeating: c, count: 16)
            let q = KVQuantization.quantize(x, format: format)
            #expect(q.scale == abs(c))
            #expect(q.zero == (c > 0 ? -1 : 1))
            #expect(KVQuantization.dequantize(q, count: 16, format: format) == x, "\(format) constant \(c)")
        }
        let zeros = KVQuantization.quantize([Float](repeating: 0, count: 16), format: format)
        #expect(zeros.scale == 0 && zeros.zero == 0 && zeros.codes.allSatisfy { $0 == 0 })
        #expect(KVQuantization.dequantize(zeros, count: 16, format: format) == [Float](repeating: 0, count: 16))
        // A range too small for (max - min) / levels: the step becomes the magnitude, still exact.
        let tiny: [Float] = [0, .leastNonzeroMagnitude, 0, .leastNonzeroMagnitude]
        let q = KVQuantization.quantize(tiny, format: format)
        #expect(q.scale == .leastNonzeroMagnitude)
        #expect(KVQuantization.dequantize(q, count: 4, format: format) == tiny)
    }

    @Test func int4PairsElementJWithItsRoPEPartner() {
        // Codes 0..15 ascending: x = i exactly, s = 1, z = 0. Byte j holds elements j and j + 8.
        let x = (0..<16).map(Float.init)
        let q = KVQuantization.quantize(x, format: .int4)
        #expect(q.scale == 1 && q.zero == 0)
        let expected: [UInt8] = (0..<8).map { (j: Int) -> UInt8 in UInt8(j) | (UInt8(j + 8) << 4) }
        #expect(q.codes == expected)
        // An odd half (d = 6): byte j holds elements j and j + 3.
        let y: [Float] = [0, 1, 2, 13, 14, 15]
        #expect(KVQuantization.quantize(y, format: .int4).codes == [0xD0, 0xE1, 0xF2])
    }

    @Test func roundingIsHalfToEven() {
        // min = 0, max = 15: s = 1, z = 0; 2.5 -> 2, 3.5 -> 4. Byte j holds elements j and j + 2.
        let x: [Float] = [0, 15, 2.5, 3.5]
        let q = KVQuantization.quantize(x, format: .int4)
        #expect(q.codes == [0x20, 0x4F])
    }

    @Test func fp32RowsAreStoredAsIs() {
        let x: [Float] = [1.5, -0.25, 3e-8, 7]
        let q = KVQuantization.quantize(x, format: .fp32)
        #expect(KVQuantization.dequantize(q, count: 4, format: .fp32) == x)
    }
}

@Suite("Paged KV cache")
struct AttentionPagedCacheTests {
    @Test(arguments: [KVCacheFormat.int4, .int8, .fp32])
    func appendsAcrossPagesWithVariableLengths(format: KVCacheFormat) {
        let d = 8, hkv = 2, lengths = [40, 7, 33, 16]
        let layout = KVPageLayout(format: format, pageTokens: 16, kvHeads: hkv, headDim: d)
        var cache = PagedKVCache(layout: layout, allocated: lengths, capacity: 48, seed: 3)
        #expect(cache.maxPages == 3)
        #expect(cache.physicalPages == 3 + 1 + 3 + 1 + 2)
        let used = cache.pageTable.filter { $0 >= 0 }
        #expect(Set(used).count == used.count, "every logical page has its own physical page")
        #expect(used != used.sorted(), "physical order is shuffled")
        #expect(cache.pageTable[1 * 3 + 1] == -1, "a 7-token sequence has one page")
        var rng = SeededGenerator(seed: 11)
        var rows: [[Int]: ([Float], [Float])] = [:]
        // Interleave the sequences, one token at a time, as decode does.
        for t in 0..<lengths.max()! {
            for b in lengths.indices where t < lengths[b] {
                let k = (0..<hkv * d).map { _ in Float.random(in: -2...2, using: &rng) }
                let v = (0..<hkv * d).map { _ in Float.random(in: -2...2, using: &rng) }
                rows[[b, t]] = (k, v)
                cache.append(sequence: b, position: t, k: k, v: v)
            }
        }
        for (key, (k, v)) in rows {
            for h in 0..<hkv {
                let kq = KVQuantization.dequantize(KVQuantization.quantize(Array(k[h * d..<(h + 1) * d]), format: format), count: d, format: format)
                let vq = KVQuantization.dequantize(KVQuantization.quantize(Array(v[h * d..<(h + 1) * d]), format: format), count: d, format: format)
                #expect(cache.row(sequence: key[0], position: key[1], head: h, value: false) == kq)
                #expect(cache.row(sequence: key[0], position: key[1], head: h, value: true) == vq)
            }
        }
        // Spare pages and the slots past each sequence's end keep the NaN fill.
        for page in cache.sparePages {
            let floats = cache.pool[page * layout.pageBytes..<(page + 1) * layout.pageBytes].withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            #expect(floats.allSatisfy { $0.bitPattern == PagedKVCache.fill.bitPattern })
        }
        if format.isQuantized {
            let (block, slot) = cache.location(sequence: 1, position: 7, head: 0, value: false)
            let scale = cache.pool.withUnsafeBytes { $0.load(fromByteOffset: block + layout.paramsOffset + 8 * slot, as: Float.self) }
            #expect(scale.isNaN)
        }
    }

    @Test func layoutOffsets() {
        let l = KVPageLayout(format: .int4, pageTokens: 16, kvHeads: 4, headDim: 128)
        #expect(l.rowBytes == 64 && l.paramsOffset == 1024 && l.blockBytes == 1024 + 128 && l.pageBytes == 8 * 1152)
        #expect(l.blockOffset(page: 2, head: 1, value: true) == 2 * l.pageBytes + 3 * l.blockBytes)
        let f = KVPageLayout(format: .fp32, pageTokens: 16, kvHeads: 1, headDim: 6)
        #expect(f.blockBytes == 384 && f.pageBytes == 768)
        let odd = KVPageLayout(format: .int4, pageTokens: 16, kvHeads: 1, headDim: 2)
        #expect(odd.paramsOffset % 16 == 0 && odd.blockBytes % 64 == 0)
    }

    @Test func appendPlanCrossesPageBoundaries() {
        let w = Workload(family: "kv-append", shape: ["b": 5, "hkv": 2, "d": 64, "ctx": 200, "new": 9])
        let plan = KVAppend.appendPlan(w)
        #expect(plan.count == 5)
        #expect(plan[0].start == 63 && plan[0].count == 9, "crosses the 64-token boundary, so every page size")
        #expect(plan[1].start == 0)
        #expect(plan.allSatisfy { $0.count >= 1 && $0.count <= 9 && $0.start + $0.count <= 200 })
        #expect(KVAppend.appendPlan(w).map(\.start) == plan.map(\.start), "the plan depends on the workload only")
    }
}

@Suite("RoPE and softmax")
struct AttentionRoPESoftmaxTests {
    @Test func tableMatchesTheDefinition() {
        let (c, s) = RoPE.table(positions: 50, headDim: 16)
        for t in [0, 1, 17, 49] {
            for i in 0..<8 {
                let angle = Double(t) / pow(10000, Double(2 * i) / 16)
                #expect(abs(Double(c[t * 8 + i]) - cos(angle)) < 1e-7)
                #expect(abs(Double(s[t * 8 + i]) - sin(angle)) < 1e-7)
            }
        }
        #expect(c[0..<8].allSatisfy { $0 == 1 } && s[0..<8].allSatisfy { $0 == 0 }, "position 0 is the identity")
    }

    @Test func rotationKeepsNormsAndDependsOnRelativePosition() {
        let d = 64
        let (c, s) = RoPE.table(positions: 200, headDim: d)
        var rng = SeededGenerator(seed: 5)
        let q = (0..<d).map { _ in Double.random(in: -1...1, using: &rng) }
        let k = (0..<d).map { _ in Double.random(in: -1...1, using: &rng) }
        func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }
        let rk = RoPE.apply(k, position: 37, cos: c, sin: s)
        #expect(abs(dot(rk, rk) - dot(k, k)) < 1e-5 * dot(k, k))
        #expect(RoPE.apply(k, position: 0, cos: c, sin: s) == k)
        // <rope(q, m), rope(k, n)> depends on m - n only.
        let a = dot(RoPE.apply(q, position: 15, cos: c, sin: s), RoPE.apply(k, position: 5, cos: c, sin: s))
        let b = dot(RoPE.apply(q, position: 110, cos: c, sin: s), RoPE.apply(k, position: 100, cos: c, sin: s))
        #expect(abs(a - b) < 1e-4)
        // Rotate-half pairs element i with element i + d/2.
        var e = [Double](repeating: 0, count: d)
        e[3] = 1
        let r = RoPE.apply(e, position: 1, cos: c, sin: s)
        #expect(abs(r[3] - Double(c[32 + 3])) < 1e-12 && abs(r[35] - Double(s[32 + 3])) < 1e-12)
        #expect(r.enumerated().allSatisfy { $0.offset == 3 || $0.offset == 35 || $0.element == 0 })
    }

    /// The kernels' algorithm in fp32: blocks with a running max and sum, splits merged by log-sum-exp
    /// (empty splits included), against the plain two-pass softmax in Double.
    func onlineAttention(scores: [Float], values: [[Float]], block: Int, splits: Int) -> [Float] {
        let n = scores.count, d = values[0].count
        let blocks = (n + block - 1) / block
        var parts: [(m: Float, l: Float, acc: [Float])] = []
        for s in 0..<splits {
            let t0 = min(blocks * s / splits * block, n), t1 = min(blocks * (s + 1) / splits * block, n)
            var m = -Float.infinity, l: Float = 0, acc = [Float](repeating: 0, count: d)
            var t = t0
            while t < t1 {
                let range = t..<min(t + block, t1)
                let mb = max(m, range.map { scores[$0] }.max()!)
                let alpha = expf(m - mb)
                let p = range.map { expf(scores[$0] - mb) }
                l = l * alpha + p.reduce(0, +)
                for i in 0..<d { acc[i] = acc[i] * alpha + zip(range, p).reduce(Float(0)) { $0 + $1.1 * values[$1.0][i] } }
                m = mb
                t += block
            }
            parts.append((m, l, acc))
        }
        let m = parts.map(\.m).max()!
        let w = parts.map { expf($0.m - m) }
        let l = zip(w, parts).reduce(Float(0)) { $0 + $1.0 * $1.1.l }
        return (0..<d).map { i in zip(w, parts).reduce(Float(0)) { $0 + $1.0 * $1.1.acc[i] } / l }
    }

    @Test func onlineSoftmaxMatchesPlainSoftmax() {
        var rng = SeededGenerator(seed: 9)
        for n in [1, 5, 37, 300] {
            let scores = (0..<n).map { _ in Float.random(in: -8...8, using: &rng) }
            let values = (0..<n).map { _ in (0..<6).map { _ in Float.random(in: -1...1, using: &rng) } }
            let m = Double(scores.max()!)
            let w = scores.map { exp(Double($0) - m) }
            let plain = (0..<6).map { i in zip(w, values).reduce(0.0) { $0 + $1.0 * Double($1.1[i]) } / w.reduce(0, +) }
            for (block, splits) in [(4, 1), (16, 3), (8, 16), (64, 2)] {
                let online = onlineAttention(scores: scores, values: values, block: block, splits: splits)
                for i in 0..<6 { #expect(abs(Double(online[i]) - plain[i]) < 1e-5, "n=\(n) block=\(block) splits=\(splits)") }
            }
        }
    }

    /// The integer path's roundings (q as int8 per 64 elements, cos and sin in Q14) move the output by
    /// much less than the INT4 cache itself does (against the same K and V in fp32), and not by nothing.
    @Test func integerDotRoundingIsSmallNextToTheCacheError() {
        let w = Workload(family: "attention-decode", shape: ["b": 2, "hq": 4, "hkv": 4, "d": 128, "ctx": 200])
        let exact = AttentionReference.compute(AttentionInputs(workload: w, format: .fp32, page: 16, seed: 3))
        let inputs = AttentionInputs(workload: w, format: .int4, page: 16, seed: 3)
        let int4 = AttentionReference.compute(inputs)
        let integer = AttentionReference.compute(inputs, integerDot: true)
        func error(_ a: [Float], _ e: [Float]) -> Double {
            let diff = zip(a, e).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }
            return (diff / e.reduce(0.0) { $0 + Double($1) * Double($1) }).squareRoot()
        }
        let cacheError = error(int4, exact), rounding = error(integer, int4)
        print("attention: INT4 cache error \(cacheError), integer-path rounding \(rounding)")
        #expect(rounding > 1e-6)
        #expect(rounding < 0.1 * cacheError)
    }
}

@Suite("attention-decode and kv-append rules")
struct AttentionRuleTests {
    let family = AttentionDecode()
    let machine = MachineContext(isa: ISAFeatures(architecture: .x86_64, usable: [.sse42, .avx, .avx2, .fma]), topology: Fixtures.zen3)

    func shapeRule(_ f: any KernelFamily, _ shape: [String: Int]) -> String? {
        do {
            try f.checkShape(Workload(family: f.name, shape: shape))
            return nil
        } catch let v as ConstraintViolation {
            return v.rule
        } catch {
            return "\(error)"
        }
    }

    func configRule(_ f: any KernelFamily, _ overrides: [String: String], machine: MachineContext? = nil) -> String? {
        do {
            _ = try f.configuration(overrides: overrides, machine: machine)
            return nil
        } catch let v as ConstraintViolation {
            return v.rule
        } catch {
            return "\(error)"
        }
    }

    @Test func shapeRulesNameTheRule() {
        let ok = ["b": 4, "hq": 32, "hkv": 8, "d": 128, "ctx": 300]
        #expect(shapeRule(family, ok) == nil)
        #expect(shapeRule(family, ok.merging(["hq": 12]) { $1 }) == "gqa")
        #expect(shapeRule(family, ok.merging(["d": 127]) { $1 }) == "even-dim")
        #expect(shapeRule(family, ok.merging(["b": 0]) { $1 }) == "positive")
        #expect(shapeRule(family, ok.merging(["b": 4000, "ctx": 100_000]) { $1 }) == "size")
        // The pool is counted in the format kvbits fixes: b = 64, ctx 1024 of Llama-7B's heads fits as
        // INT4 or INT8 (0.3 / 0.6 GB) but not as fp32 or with the format left open (2.2 GB).
        let engine = ["b": 64, "hq": 32, "hkv": 32, "d": 128, "ctx": 1024]
        #expect(shapeRule(family, engine.merging(["kvbits": 4]) { $1 }) == nil)
        #expect(shapeRule(family, engine.merging(["kvbits": 8]) { $1 }) == nil)
        #expect(shapeRule(family, engine.merging(["kvbits": 32]) { $1 }) == "size")
        #expect(shapeRule(family, engine) == "size")
        #expect(shapeRule(KVAppend(), ["b": 64, "hkv": 32, "d": 128, "ctx": 1024, "new": 1, "kvbits": 4]) == nil)
        #expect(shapeRule(KVAppend(), ["b": 64, "hkv": 32, "d": 128, "ctx": 1024, "new": 1]) == "size")
        let append = KVAppend()
        let a = ["b": 4, "hkv": 8, "d": 128, "ctx": 300, "new": 4]
        #expect(shapeRule(append, a) == nil)
        #expect(shapeRule(append, a.merging(["new": 301]) { $1 }) == "fits")
        #expect(shapeRule(append, a.merging(["d": 7]) { $1 }) == "even-dim")
        #expect(shapeRule(append, a.merging(["hkv": 0]) { $1 }) == "positive")
        #expect(shapeRule(append, a.merging(["kvbits": 8]) { $1 }) == nil)
        #expect(shapeRule(append, a.merging(["kvbits": 5]) { $1 }) == "kvbits")
        #expect(shapeRule(family, ok.merging(["kvbits": 2]) { $1 }) == "kvbits")
    }

    /// kv-append's cache format is the runtime's, as attention's is: `kvbits` fixes it in every search
    /// and in the analytical configuration, and a configuration with another format is refused.
    @Test func appendBitsFixTheCacheFormat() throws {
        let append = KVAppend()
        let w = Workload(family: append.name, shape: ["b": 2, "hkv": 2, "d": 16, "ctx": 64, "new": 3, "kvbits": 8])
        #expect(append.workloadParameters(w) == ["cache": .name("int8")])
        #expect(append.optionalDimensions == ["kvbits"])
        #expect(append.analyticalConfiguration(for: w, machine: machine)["cache"] == .name("int8"))
        let free = Workload(family: append.name, shape: ["b": 2, "hkv": 2, "d": 16, "ctx": 64, "new": 3])
        #expect(append.workloadParameters(free).isEmpty)
    }

    /// A runtime waives the pool-size rule (it bounds the harness's 32-bit pool, not the kernel) and
    /// nothing else: an INT4 cache for b = 64, ctx = 8192 takes 2.4 GB.
    @Test func runtimesWaiveOnlyHarnessRules() throws {
        let big = ["b": 64, "hq": 32, "hkv": 32, "d": 128, "ctx": 8192, "kvbits": 4]
        #expect(shapeRule(family, big) == "size")
        let waived = try family.checkShapeForRuntime(Workload(family: family.name, shape: big))
        #expect(waived?.rule == "size")
        #expect(try family.checkShapeForRuntime(Workload(family: family.name, shape: big.merging(["ctx": 300]) { $1 })) == nil)
        #expect(throws: ConstraintViolation.self) {
            _ = try family.checkShapeForRuntime(Workload(family: family.name, shape: big.merging(["hq": 12]) { $1 }))
        }
        for f: any KernelFamily in [family, KVAppend(), GemmW4A4KV()] { #expect(f.harnessShapeRules == ["size"]) }
        #expect(GemmW4A4().harnessShapeRules.isEmpty)
    }

    @Test func constraintsNameTheRule() throws {
        #expect(configRule(family, ["tb": "4", "unroll": "8"]) == "unroll-block")
        #expect(configRule(family, ["isa": "avx512-vnni"], machine: machine) == "isa-runs")
        #expect(configRule(family, ["isa": "avx2", "threads": "4"], machine: machine) == "threads-pus")
        #expect(configRule(family, ["isa": "avx2", "threads": "2", "split": "4"], machine: machine) == nil)
        #expect(configRule(family, ["cache": "int2"]) == "domain")
        #expect(configRule(KVAppend(), ["threads": "8"], machine: machine) == "threads-pus")
        let config = try family.configuration(overrides: ["tb": "16", "split": "8"], machine: nil)
        #expect(throws: ConstraintViolation("split-tokens", "split=8 exceeds the 7 blocks of 16 tokens in ctx = 100")) {
            try family.checkFit(Workload(family: family.name, shape: ["b": 1, "hq": 1, "hkv": 1, "d": 8, "ctx": 100]), config)
        }
        try family.checkFit(Workload(family: family.name, shape: ["b": 1, "hq": 1, "hkv": 1, "d": 8, "ctx": 113]), config)
    }

    /// dot=i8 reads 4-bit codes with AVX2 only; an INT8 or fp32 workload fixes dot=f32; the search seeds
    /// of an INT4 workload on an AVX2 machine hold both arithmetics.
    @Test func integerDotRules() throws {
        #expect(configRule(family, ["isa": "avx2", "cache": "int4", "dot": "i8"], machine: machine) == nil)
        #expect(configRule(family, ["isa": "avx2", "cache": "int8", "dot": "i8"]) == "dot-int4")
        #expect(configRule(family, ["isa": "portable", "cache": "int4", "dot": "i8"]) == "dot-int4")
        #expect(configRule(family, ["isa": "avx512-vnni", "cache": "int4", "dot": "i8"]) == "dot-int4")
        let config = try family.configuration(overrides: ["isa": "avx2", "cache": "int4", "dot": "i8"], machine: nil)
        #expect(throws: ConstraintViolation("dot-dim", "dot=i8 needs d to be a multiple of 64, and d = 96; use dot=f32")) {
            try family.checkFit(Workload(family: family.name, shape: ["b": 1, "hq": 1, "hkv": 1, "d": 96, "ctx": 100]), config)
        }
        let shape = ["b": 8, "hq": 32, "hkv": 32, "d": 128, "ctx": 1024]
        let int4 = Workload(family: family.name, shape: shape.merging(["kvbits": 4]) { $1 })
        let int8 = Workload(family: family.name, shape: shape.merging(["kvbits": 8]) { $1 })
        #expect(family.workloadParameters(int4) == ["cache": .name("int4")])
        #expect(family.workloadParameters(int8) == ["cache": .name("int8"), "dot": .name("f32")])
        // analytical, integer, then the stream layout (every KV head per unit, 64-token pages, next-head prefetch)
        let int4Seeds = family.searchSeeds(for: int4, machine: machine)
        #expect(int4Seeds.map { $0["dot"] } == [.name("f32"), .name("i8"), .name("i8")])
        #expect(int4Seeds[2]["heads"] == .int(32) && int4Seeds[2]["page"] == .int(64) && int4Seeds[2]["prefetch"] == .int(2))
        let int8Seeds = family.searchSeeds(for: int8, machine: machine)
        #expect(int8Seeds.map { $0["dot"] } == [.name("f32"), .name("f32")])
        #expect(int8Seeds[1]["heads"] == .int(32) && int8Seeds[1]["tb"] == .int(32))
        // d = 96 takes no integer seed; one sequence on two threads no stream seed
        let odd = Workload(family: family.name, shape: ["b": 1, "hq": 2, "hkv": 2, "d": 96, "ctx": 64, "kvbits": 4])
        #expect(family.searchSeeds(for: odd, machine: machine).count == 1)
    }

    @Test func defaultsAreValidForEveryTarget() throws {
        for isa in family.targets {
            let config = family.defaultConfiguration(isa: isa, machine: machine)
            try family.check(config, machine: nil)
            if isa.runs(on: machine.isa) { try family.check(config, machine: machine) }
        }
        try KVAppend().check(KVAppend().defaultConfiguration(isa: .portable, machine: machine), machine: machine)
    }

    @Test func sequenceLengthsCoverTheEdgeCases() {
        for (b, ctx) in [(1, 1), (2, 2), (5, 300), (8, 4096)] {
            let w = Workload(family: family.name, shape: ["b": b, "hq": 8, "hkv": 2, "d": 64, "ctx": ctx])
            let lengths = AttentionDecode.sequenceLengths(w)
            #expect(lengths.count == b)
            #expect(lengths[0] == ctx)
            if b > 1 { #expect(lengths[1] % 2 == 1, "an odd length is not a multiple of any page size") }
            #expect(lengths.allSatisfy { $0 >= max(1, ctx / 2) && $0 <= ctx })
            #expect(AttentionDecode.sequenceLengths(w) == lengths)
        }
    }

    @Test func workloadNoteStatesTheLengthsTimed() throws {
        let w = Workload(family: family.name, shape: ["b": 32, "hq": 32, "hkv": 32, "d": 128, "ctx": 1024])
        let lengths = AttentionDecode.sequenceLengths(w)
        let note = try #require(family.workloadNote(w))
        #expect(note.contains("32 sequences of \(lengths.min()!) to 1024 tokens"))
        #expect(note.contains("\(lengths.reduce(0, +)) tokens in all"))
        let mean = Double(lengths.reduce(0, +)) / 32
        #expect(mean < 0.8 * 1024, "the drawn lengths average well below ctx: the note is what keeps a comparison honest")
        #expect(note.contains(String(format: "mean %.0f", mean)))
        #expect(GemmW8A8().workloadNote(Workload(family: "gemm-w8a8", shape: ["m": 1, "n": 64, "k": 64])) == nil)
    }

    @Test func opsAndBytesFollowTheIntensityModel() throws {
        let w = Workload(family: family.name, shape: ["b": 3, "hq": 8, "hkv": 2, "d": 128, "ctx": 100])
        let tokens = Double(AttentionDecode.sequenceLengths(w).reduce(0, +))
        let int4 = try family.configuration(overrides: ["cache": "int4"], machine: nil)
        let int8 = try family.configuration(overrides: ["cache": "int8"], machine: nil)
        let fp32 = try family.configuration(overrides: ["cache": "fp32"], machine: nil)
        #expect(family.usefulOps(w, int4) == 4 * tokens * 8 * 128)
        #expect(AttentionDecode.kvBytes(w, int4) == tokens * 2 * 2 * (64 + 8))
        #expect(AttentionDecode.kvBytes(w, int8) == tokens * 2 * 2 * (128 + 8))
        #expect(AttentionDecode.kvBytes(w, fp32) == tokens * 2 * 2 * 512)
    }

    @Test func contiguousRunFollowsTheBlockOrder() throws {
        let w = Workload(family: family.name, shape: ["b": 1, "hq": 32, "hkv": 32, "d": 128, "ctx": 4096])
        func run(_ overrides: [String: String]) throws -> Int {
            AttentionDecode.contiguousRun(w, try family.configuration(overrides: overrides, machine: nil))
        }
        // A block shorter than a page: min(tb, page) rows of one head, d / 2 (int4), d (int8) or 4 d (fp32) bytes.
        #expect(try run(["cache": "int4", "page": "64", "tb": "32"]) == 32 * 64)
        #expect(try run(["cache": "int8", "page": "64", "tb": "32"]) == 32 * 128)
        #expect(try run(["cache": "fp32", "page": "64", "tb": "32"]) == 32 * 512)
        // A block of several pages reads one head page by page.
        #expect(try run(["cache": "int4", "page": "16", "tb": "64"]) == 16 * 64)
        // Rounded down to a length peak-bandwidth takes: 24 rows of 64 bytes are 1536, read as 1024.
        #expect(try run(["cache": "int4", "page": "32", "tb": "8"]) == 512)
        // A block of one page: the unit's heads' K and V blocks in a row. One int4 head: 2 * (64 * 64 + 64 * 8)
        // bytes = 9216, read as 8192; two heads 18432 -> 16384; eight heads past the longest run; an fp32 head of 16
        // tokens 2 * 8192.
        #expect(try run(["cache": "int4", "page": "64", "tb": "64", "heads": "1"]) == 8192)
        #expect(try run(["cache": "int4", "page": "64", "tb": "64", "heads": "2"]) == 16384)
        #expect(try run(["cache": "int4", "page": "64", "tb": "64", "heads": "8"]) == PeakBandwidth.runLengths.last)
        #expect(try run(["cache": "fp32", "page": "16", "tb": "16", "heads": "1"]) == 16384)
        // The unit never holds more heads than the cache has.
        let gqa = Workload(family: family.name, shape: ["b": 1, "hq": 8, "hkv": 1, "d": 128, "ctx": 4096])
        #expect(AttentionDecode.contiguousRun(gqa, try family.configuration(overrides: ["cache": "int4", "page": "64", "tb": "64", "heads": "32"], machine: nil)) == 8192)
        let small = Workload(family: family.name, shape: ["b": 1, "hq": 2, "hkv": 2, "d": 8, "ctx": 64])
        #expect(AttentionDecode.contiguousRun(small, try family.configuration(overrides: ["cache": "int4", "tb": "4"], machine: nil)) == 256,
                "shorter than any run length: the shortest")
    }

    @Test func variantNamesAndHeaders() throws {
        let config = try family.configuration(overrides: ["isa": "avx2", "cache": "int8", "split": "4"], machine: nil)
        let source = try family.render(config)
        #expect(source.name == "attention_decode__avx2_int8_p16_tb16_s4_u2_h8_pf")
        #expect(source.code.contains("__builtin_prefetch"))
        var plain = config
        plain["prefetch"] = .int(0)
        let noPrefetch = try family.render(plain)
        #expect(noPrefetch.name == "attention_decode__avx2_int8_p16_tb16_s4_u2_h8" && !noPrefetch.code.contains("__builtin_prefetch"))
        plain["prefetch"] = .int(2)
        let nextHead = try family.render(plain)
        #expect(nextHead.name == "attention_decode__avx2_int8_p16_tb16_s4_u2_h8_pfh" && nextHead.code.contains("k_offset + 2 * block"))
        #expect(source.code.hasPrefix("/*\n * attention-decode, template version \(family.templateVersion)"))
        #expect(source.code.contains("cache=int8") && source.code.contains("expf("))
        var threaded = config
        threaded["threads"] = .int(2)
        #expect(try family.render(threaded) == source, "threads are the caller's")
        var integer = config
        integer["cache"] = .name("int4")
        integer["dot"] = .name("i8")
        let integerSource = try family.render(integer)
        #expect(integerSource.name == "attention_decode__avx2_int4_p16_tb16_s4_u2_h8_pf_i8")
        #expect(integerSource.code.contains("_mm256_maddubs_epi16") && !integerSource.code.contains("score_fused"))
        let append = try KVAppend().render(KVAppend().configuration(overrides: ["cache": "int4", "page": "32"], machine: nil))
        #expect(append.name == "kv_append__portable_int4_p32")
        #expect(append.code.contains("rne(x / s) + z") && append.code.contains("nearbyintf(-lo / s)"))
        let wide = try KVAppend().render(KVAppend().configuration(overrides: ["isa": "avx512-vnni", "cache": "int8"], machine: nil))
        #expect(wide.name == "kv_append__avx512vnni_int8_p16" && wide.isa == .avx512vnni)
    }
}

@Suite("Attention templates compile on every ISA", .serialized)
struct AttentionCompileTests {
    static let targets = AttentionDecode().targets

    func compile(_ source: KernelSource, compiler: CompilerInfo) throws -> Bool {
        let cross: CrossTarget? = source.isa.compilesNatively(on: CPUArchitecture.current) ? nil : .aarch64Linux
        let job = CompileJob(name: source.name, source: source.code, flags: source.isa.compilerFlags, compiler: compiler)
        do {
            try checkCompiles(job, target: cross)
        } catch let error as ToolchainError {
            if case .crossTargetUnavailable = error {
                print("skipping \(source.isa): \(error)")
                return false
            }
            throw error
        }
        return true
    }

    @Test(arguments: targets)
    func everyCacheAndSplitFormCompilesWithWarningsAsErrors(isa: ISATarget) throws {
        let compiler = try CompilerDiscovery.discover()
        let family = AttentionDecode()
        for cache in KVCacheFormat.allCases {
            for (split, unroll, tb, page, prefetch) in [(1, 1, 16, 16, 1), (4, 4, 8, 64, 2), (2, 2, 32, 32, 0)] {
                var config = family.defaultConfiguration(isa: isa, machine: nil)
                config["prefetch"] = .int(prefetch)
                config["cache"] = .name(cache.rawValue)
                config["split"] = .int(split)
                config["unroll"] = .int(unroll)
                config["tb"] = .int(tb)
                config["page"] = .int(page)
                guard try compile(family.render(config), compiler: compiler) else { return }
                if isa == .avx2 && cache == .int4 {
                    config["dot"] = .name("i8")
                    guard try compile(family.render(config), compiler: compiler) else { return }
                }
            }
        }
    }

    @Test func kvAppendCompilesWithWarningsAsErrors() throws {
        let compiler = try CompilerDiscovery.discover()
        let family = KVAppend()
        for isa in family.targets {
            for cache in KVCacheFormat.allCases {
                for page in [16, 64] {
                    let config = try family.configuration(overrides: ["isa": isa.rawValue, "cache": cache.rawValue, "page": "\(page)"], machine: nil)
                    guard try compile(family.render(config), compiler: compiler) else { break }
                }
            }
        }
    }
}
