import Foundation
import KernelKit
import Kernels
import Machine
import Pipeline
import Testing
import Toolchain

@Suite("gemm-w4a4-kv writes the cache bit for bit", .serialized)
struct GemmW4A4KVRunTests {
    let family = GemmW4A4KV()

    /// M = 1, 3, 17 with and without outliers; D = 128 (whole panels), 64 and 10 (heads that are not
    /// whole panels: lcm(nr, d) units, a head split across two panels).
    static let shapes: [[String: Int]] = [
        ["m": 1, "hkv": 2, "d": 128, "k": 256, "outliers": 128, "ctx": 80],
        ["m": 3, "hkv": 3, "d": 64, "k": 384, "outliers": 0, "ctx": 70],
        ["m": 17, "hkv": 2, "d": 128, "k": 512, "outliers": 128, "ctx": 100],
        ["m": 17, "hkv": 3, "d": 10, "k": 260, "outliers": 4, "ctx": 90],
    ]

    @Test(arguments: GemmW4A4KV().targets)
    func runnableVariantsAreBitExact(isa: ISATarget) throws {
        guard isa.runs(on: Harness.machine.isa) else {
            print("skipping \(isa): \(isa.missingFeatures(on: Harness.machine.isa) ?? "")")
            return
        }
        let runner = try Harness.runner()
        let base = family.defaultConfiguration(isa: isa, machine: nil)
        var blocked = base  // several K blocks, an N block smaller than a head, 32-token pages
        blocked["kc"] = .int(128)
        blocked["nc"] = .int(64)
        blocked["unpack"] = .name("lut")
        blocked["page"] = .int(32)
        blocked["layout"] = .name("interleaved")
        var threaded = base  // threads along M
        threaded["threads"] = .int(2)
        threaded["tm"] = .int(2)
        threaded["page"] = .int(64)
        var threadedN = blocked  // threads along N: whole heads each
        threadedN["threads"] = .int(2)
        var points = [base, blocked, threaded, threadedN].map { ($0, KVCacheFormat.int4) }
        for format in [KVCacheFormat.int8, .fp32] { points.append((threadedN, format)) }
        for (point, format) in points {
            var config = point
            config["cache"] = .name(format.rawValue)
            for shape in Self.shapes {
                let workload = Workload(family: family.name, shape: shape)
                let r = runner.run(family, workload, config, seed: UInt64(shape["m"]! * 31 + shape["k"]!), verifyOnly: true)
                #expect(r.status == .ok, "\(workload) \(config): \(r.status.rawValue) at \(r.stage): \(r.message ?? "")")
                #expect(r.verification?.passed == true, "\(r.verification?.firstMismatch ?? "")")
            }
        }
    }

    /// A variant run in this process: the instance, its pool, and what must outlive them.
    struct InProcessRun {
        let instance: KernelInstance
        let out: AlignedBuffer
        let keep: (LoadedLibrary, [AlignedBuffer])
        var bytes: [UInt8] { Array(UnsafeRawBufferPointer(start: out.pointer, count: instance.outputBytes)) }
    }

    /// Runs a variant in this process, threads one after another, on a pool filled with the cache's NaN pattern.
    func run(_ config: Configuration, _ workload: Workload, seed: UInt64) throws -> InProcessRun {
        let source = try family.render(config)
        let compiler = try CompilerDiscovery.discover()
        let job = CompileJob(name: source.name, source: source.code, flags: source.isa.compilerFlags, compiler: compiler)
        let library = try LoadedLibrary(path: Harness.scratchCache().artifact(for: job).path)
        let instance = try family.makeInstance(workload: workload, config: config, symbols: library, seed: seed)
        try instance.prepare()
        let out = AlignedBuffer(byteCount: instance.outputBytes)
        out.pointer.initializeMemory(as: Float.self, repeating: PagedKVCache.fill, count: instance.outputBytes / 4)
        let workspaces = (0..<instance.threadCount).map { _ in AlignedBuffer(byteCount: instance.workspaceBytesPerThread) }
        instance.bind(output: out.pointer, workspaces: workspaces.map(\.pointer))
        for t in 0..<instance.threadCount { instance.run(thread: t) }
        return InProcessRun(instance: instance, out: out, keep: (library, workspaces))
    }

    /// The planted rows: K head 0 is negative everywhere (Atom's min/max of |x| gets these wrong), V head 0
    /// is constant, K head 1 is zero. The cache holds them with the signed rule; every token, every format.
    @Test func negativeConstantAndZeroRowsFollowTheSignedRule() throws {
        let isa = family.bestTarget(on: MachineContext(Harness.machine))
        let shape = ["m": 17, "hkv": 2, "d": 64, "k": 384, "outliers": 128, "ctx": 100]
        let workload = Workload(family: family.name, shape: shape)
        for format in [KVCacheFormat.int4, .int8] {
            var config = family.defaultConfiguration(isa: isa, machine: nil)
            config["cache"] = .name(format.rawValue)
            config["threads"] = .int(2)
            let result = try run(config, workload, seed: 11)
            #expect(result.instance.verify().passed)
            let bytes = result.bytes
            let inputs = GemmW4A4KVInputs(workload: workload, format: format, page: 16, seed: 11)
            let y = inputs.referenceOutput()
            var cache = inputs.cache
            cache.pool = bytes
            let d = 64, n = 2 * 2 * d, levels = Float(format.maxCode)
            for r in 0..<17 {
                let seq = Int(inputs.plan.sequences[r]), pos = Int(inputs.plan.positions[r])
                let negative = Array(y[r * n..<r * n + d])
                #expect(negative.allSatisfy { $0 < 0 } && Set(negative).count > 1, "token \(r): K head 0 is negative and not constant")
                let (block, slot) = cache.location(sequence: seq, position: pos, head: 0, value: false)
                let params = bytes.withUnsafeBytes { $0.load(fromByteOffset: block + cache.layout.paramsOffset + 8 * slot, as: SIMD2<Float>.self) }
                let (lo, hi) = (negative.min()!, negative.max()!)
                #expect(params[0] == (hi - lo) / levels, "token \(r): the step spans the signed range")
                #expect(params[1] == (-lo / params[0]).rounded(.toNearestOrEven) && params[1] > levels, "token \(r): the zero point lies above every code")
                let stored = cache.row(sequence: seq, position: pos, head: 0, value: false)
                let error = zip(stored, negative).map { abs($0 - $1) }.max()!
                #expect(error <= params[0] * 0.5001, "token \(r): within half a step")
                // Atom's rule (min and max of |x|) on the same row is far off: it cannot represent the signs.
                let mags = negative.map(abs)
                let atomScale = (mags.max()! - mags.min()!) / levels, atomZero = (-mags.min()! / atomScale).rounded(.toNearestOrEven)
                let atom = negative.map { (min(max(($0 / atomScale).rounded(.toNearestOrEven) + atomZero, 0), levels) - atomZero) * atomScale }
                #expect(zip(atom, negative).map { abs($0 - $1) }.max()! > 10 * error, "token \(r): the |x| rule would lose the row")

                let constant = cache.row(sequence: seq, position: pos, head: 0, value: true)
                let v0 = Array(y[r * n + 2 * d..<r * n + 3 * d])
                #expect(Set(v0).count == 1 && v0[0] != 0, "token \(r): V head 0 is constant")
                #expect(constant == v0, "token \(r): a constant row dequantizes exactly")
                let zero = cache.location(sequence: seq, position: pos, head: 1, value: false)
                let zeroParams = bytes.withUnsafeBytes { $0.load(fromByteOffset: zero.block + cache.layout.paramsOffset + 8 * zero.slot, as: SIMD2<Float>.self) }
                #expect(zeroParams == SIMD2(0, 0) && cache.row(sequence: seq, position: pos, head: 1, value: false).allSatisfy { $0 == 0 })
            }
        }
    }

    /// The check can fail: a changed byte in an appended slot, or in a page no token uses, is caught,
    /// and the message says the GEMM itself was right.
    @Test func corruptedPoolsFailVerification() throws {
        let isa = family.bestTarget(on: MachineContext(Harness.machine))
        let workload = Workload(family: family.name, shape: ["m": 3, "hkv": 1, "d": 128, "k": 256, "outliers": 0, "ctx": 70])
        let config = family.defaultConfiguration(isa: isa, machine: nil)
        let result = try run(config, workload, seed: 4)
        let instance = result.instance, out = result.out
        #expect(instance.verify().passed)
        let inputs = GemmW4A4KVInputs(workload: workload, format: .int4, page: 16, seed: 4)
        let slot = inputs.cache.location(sequence: 0, position: 63, head: 0, value: true)
        let code = out.pointer.load(fromByteOffset: slot.block + slot.slot * 64 + 5, as: UInt8.self)
        out.pointer.storeBytes(of: code ^ 0x10, toByteOffset: slot.block + slot.slot * 64 + 5, as: UInt8.self)
        let wrongCode = instance.verify()
        #expect(!wrongCode.passed && wrongCode.mismatches == 1)
        #expect(wrongCode.firstMismatch?.contains("head 0 V") == true && wrongCode.firstMismatch?.contains("Y is bit-exact") == true, "\(wrongCode.firstMismatch ?? "")")
        #expect(instance.verify().passed, "the diagnostic rerun writes the same bytes again")
        let spare = inputs.cache.sparePages.last!
        out.pointer.storeBytes(of: 0, toByteOffset: spare * inputs.cache.layout.pageBytes + 100, as: UInt8.self)
        #expect(!instance.verify().passed, "a page no token uses changed")
    }
}
