import Foundation
import KernelKit
import Kernels
import Machine
import Pipeline
import Testing
import Toolchain

@Suite("kv-append and attention-decode variants match the reference", .serialized)
struct AttentionRunTests {
    let family = AttentionDecode()

    /// GQA (hq / hkv = 4) at D = 128; no GQA at D = 64; and D = 36 / D = 10, whose halves are not whole
    /// vectors (and for D = 10 not whole int4 bytes), so the scalar tails run; and hkv = 3 (a partial
    /// chunk when units hold two KV heads). Without GQA (the fused path) D = 74 and D = 56 leave
    /// remainders after the loops that take several vectors at a time (half 37: two score vectors twice,
    /// one V group of four, 5 scalars; half 28: one score pair, one single vector, no V group, 4 scalars),
    /// with contexts whose last block is not a whole number of 8-token lane-sum batches.
    static let shapes: [[String: Int]] = [
        ["b": 3, "hq": 8, "hkv": 2, "d": 128, "ctx": 150],
        ["b": 2, "hq": 4, "hkv": 4, "d": 64, "ctx": 100],
        ["b": 3, "hq": 4, "hkv": 1, "d": 36, "ctx": 70],
        ["b": 2, "hq": 2, "hkv": 1, "d": 10, "ctx": 67],
        ["b": 2, "hq": 6, "hkv": 3, "d": 64, "ctx": 90],
        ["b": 2, "hq": 3, "hkv": 3, "d": 74, "ctx": 77],
        ["b": 2, "hq": 2, "hkv": 2, "d": 56, "ctx": 61],
    ]

    @Test(arguments: AttentionDecode().targets)
    func runnableVariantsVerify(isa: ISATarget) throws {
        guard isa.runs(on: Harness.machine.isa) else {
            print("skipping \(isa): \(isa.missingFeatures(on: Harness.machine.isa) ?? "")")
            return
        }
        let runner = try Harness.runner()
        for cache in KVCacheFormat.allCases {
            var base = family.defaultConfiguration(isa: isa, machine: nil)
            base["cache"] = .name(cache.rawValue)
            // A split across two threads (the last split merges), small blocks with a 4-token unroll and a
            // partial last block, large pages.
            var split = base
            split["split"] = .int(4)
            split["threads"] = .int(2)
            split["page"] = .int(32)
            var small = base
            small["tb"] = .int(8)
            small["unroll"] = .int(4)
            small["page"] = .int(64)
            small["split"] = .int(2)
            // Units of two KV heads (the last chunk of hkv = 3 is partial), split, on two threads, prefetching
            // the next head's rows.
            var chunked = base
            chunked["heads"] = .int(2)
            chunked["split"] = .int(2)
            chunked["threads"] = .int(2)
            chunked["prefetch"] = .int(2)
            for config in [base, split, small, chunked] {
                for shape in Self.shapes {
                    let workload = Workload(family: family.name, shape: shape)
                    let r = runner.run(family, workload, config, seed: UInt64(shape["ctx"]! * 7 + shape["d"]!), verifyOnly: true)
                    #expect(r.status == .ok, "\(workload) \(config): \(r.status.rawValue) at \(r.stage): \(r.message ?? "")")
                    #expect(r.verification?.passed == true)
                    #expect(r.verification?.checked == shape["b"]! * shape["hq"]! * shape["d"]!)
                }
            }
        }
    }

    /// dot=i8 (INT4, AVX2) against the reference that rounds q and the RoPE tables as it does: GQA and
    /// not, d = 64, 128 and 192 (one to three chunks of 32 pairs), odd contexts (partial blocks, a block
    /// of odd length, so the last token pairs with itself), splits on two threads, 64-token blocks (four
    /// groups of 16-bit V sums), units of two KV heads with a partial last chunk and next-head prefetch.
    @Test func integerDotVerifies() throws {
        guard ISATarget.avx2.runs(on: Harness.machine.isa) else {
            print("skipping dot=i8: \(ISATarget.avx2.missingFeatures(on: Harness.machine.isa) ?? "")")
            return
        }
        let runner = try Harness.runner()
        var base = family.defaultConfiguration(isa: .avx2, machine: nil)
        base["cache"] = .name("int4")
        base["dot"] = .name("i8")
        var split = base
        split["split"] = .int(4)
        split["threads"] = .int(2)
        split["page"] = .int(32)
        var long = base
        long["tb"] = .int(64)
        long["unroll"] = .int(1)
        long["page"] = .int(64)
        var chunked = base
        chunked["heads"] = .int(2)
        chunked["split"] = .int(2)
        chunked["threads"] = .int(2)
        chunked["tb"] = .int(8)
        chunked["prefetch"] = .int(2)
        let shapes: [[String: Int]] = [
            ["b": 3, "hq": 8, "hkv": 2, "d": 128, "ctx": 150],
            ["b": 2, "hq": 4, "hkv": 4, "d": 64, "ctx": 100],
            ["b": 2, "hq": 6, "hkv": 3, "d": 192, "ctx": 91],
            ["b": 2, "hq": 3, "hkv": 3, "d": 128, "ctx": 77],
        ]
        for config in [base, split, long, chunked] {
            for shape in shapes {
                let workload = Workload(family: family.name, shape: shape)
                let r = runner.run(family, workload, config, seed: UInt64(shape["ctx"]! * 7 + shape["d"]!), verifyOnly: true)
                #expect(r.status == .ok, "\(workload) \(config): \(r.status.rawValue) at \(r.stage): \(r.message ?? "")")
                #expect(r.verification?.passed == true)
                #expect(r.verification?.checked == shape["b"]! * shape["hq"]! * shape["d"]!)
                #expect((r.verification?.maxRelError ?? 1) <= AttentionDecode.integerTolerance)
            }
        }
        // d = 96 is not whole chunks: refused when the instance is made, naming the rule.
        let odd = runner.run(family, Workload(family: family.name, shape: ["b": 1, "hq": 2, "hkv": 2, "d": 96, "ctx": 40]), base, verifyOnly: true)
        #expect(odd.status != .ok)
        #expect(odd.message?.contains("dot-dim") == true, "\(odd.message ?? "")")
    }

    @Test func kvAppendIsBitExact() throws {
        let runner = try Harness.runner()
        let append = KVAppend()
        let shapes: [[String: Int]] = [
            ["b": 5, "hkv": 2, "d": 128, "ctx": 200, "new": 9],  // crosses page boundaries
            ["b": 3, "hkv": 1, "d": 10, "ctx": 40, "new": 1],  // decode: one token each
            ["b": 1, "hkv": 3, "d": 64, "ctx": 130, "new": 130],  // a whole prefill
        ]
        for isa in append.targets where isa.runs(on: Harness.machine.isa) {
            for cache in KVCacheFormat.allCases {
                for (page, threads) in [(16, 1), (64, 2), (32, 2)] {
                    let config = try append.configuration(
                        overrides: ["isa": isa.rawValue, "cache": cache.rawValue, "page": "\(page)", "threads": "\(threads)"], machine: nil)
                    for shape in shapes {
                        let workload = Workload(family: append.name, shape: shape)
                        let r = runner.run(append, workload, config, seed: UInt64(shape["ctx"]!), verifyOnly: true)
                        #expect(r.status == .ok, "\(workload) \(config): \(r.status.rawValue) at \(r.stage): \(r.message ?? "")")
                        #expect(r.verification?.passed == true)
                    }
                }
            }
        }
    }

    @Test func splitTokensIsCheckedWhenTheInstanceIsMade() throws {
        let runner = try Harness.runner()
        var config = family.defaultConfiguration(isa: .portable, machine: nil)
        config["split"] = .int(16)
        config["tb"] = .int(64)
        let r = runner.run(family, Workload(family: family.name, shape: ["b": 1, "hq": 1, "hkv": 1, "d": 8, "ctx": 100]), config, verifyOnly: true)
        #expect(r.status != .ok)
        #expect(r.message?.contains("split-tokens") == true, "\(r.message ?? "")")
    }

    /// Runs a variant in this process on the instance's inputs, threads one after another (the split
    /// merge needs no concurrency), and returns its output.
    func output(_ config: Configuration, _ workload: Workload, cache: ArtifactCache, compiler: CompilerInfo) throws -> [Float] {
        let source = try family.render(config)
        let job = CompileJob(name: source.name, source: source.code, flags: source.isa.compilerFlags, compiler: compiler)
        let library = try LoadedLibrary(path: cache.artifact(for: job).path)
        let instance = try family.makeInstance(workload: workload, config: config, symbols: library, seed: 5)
        try instance.prepare()
        let out = AlignedBuffer(byteCount: instance.outputBytes)
        let workspaces = (0..<instance.threadCount).map { _ in AlignedBuffer(byteCount: instance.workspaceBytesPerThread) }
        instance.bind(output: out.pointer, workspaces: workspaces.map(\.pointer))
        for run in 0..<2 {  // twice: the arrival counters must be back at zero after a run
            for t in 0..<instance.threadCount { instance.run(thread: t) }
            #expect(instance.verify().passed, "\(source.name) run \(run)")
        }
        return withExtendedLifetime((workspaces, library)) {
            Array(UnsafeBufferPointer(start: out.pointer.assumingMemoryBound(to: Float.self), count: instance.outputBytes / 4))
        }
    }

    @Test func splitAndUnsplitAgree() throws {
        let cache = Harness.scratchCache()
        let compiler = try CompilerDiscovery.discover()
        let isa = family.bestTarget(on: MachineContext(Harness.machine))
        let workload = Workload(family: family.name, shape: ["b": 3, "hq": 8, "hkv": 2, "d": 128, "ctx": 300])
        for format in KVCacheFormat.allCases {
            var unsplit = family.defaultConfiguration(isa: isa, machine: nil)
            unsplit["cache"] = .name(format.rawValue)
            let reference = try output(unsplit, workload, cache: cache, compiler: compiler)
            for (split, threads) in [(2, 1), (4, 2), (16, 3)] {
                var config = unsplit
                config["split"] = .int(split)
                config["threads"] = .int(threads)
                let splitOut = try output(config, workload, cache: cache, compiler: compiler)
                for row in 0..<reference.count / 128 {
                    let e = reference[row * 128..<(row + 1) * 128], a = splitOut[row * 128..<(row + 1) * 128]
                    let diff = zip(e, a).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }.squareRoot()
                    let norm = e.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
                    #expect(diff <= AttentionDecode.tolerance * norm, "\(format) split=\(split) row \(row): \(diff / norm)")
                }
            }
        }
    }
}
