import Foundation
import KernelKit
import Kernels
import Machine
import Pipeline
import Testing

@Suite("gemm-w4a4 variants match the reference", .serialized)
struct GemmW4A4RunTests {
    let family = GemmW4A4()

    @Test(arguments: GemmW4A4().targets)
    func runnableVariantsAreBitExact(isa: ISATarget) throws {
        guard isa.runs(on: Harness.machine.isa) else {
            print("skipping \(isa): \(isa.missingFeatures(on: Harness.machine.isa) ?? "")")
            return
        }
        let runner = try Harness.runner()
        let base = family.defaultConfiguration(isa: isa, machine: nil)
        var blocked = base  // several K blocks: fp32 partial sums between them
        blocked["kc"] = .int(128)
        blocked["unpack"] = .name("lut")
        blocked["pf"] = .int(1024)  // prefetching past the last panel reads nothing it uses
        var threaded = base
        threaded["threads"] = .int(2)
        threaded["tm"] = .int(2)
        var threadedN = blocked
        threadedN["threads"] = .int(2)
        // fp32 sums kept in the tile's partial buffer: the same sums, bit for bit
        var memory = base
        memory["layout"] = .name("interleaved")  // each group's scales after its codes
        if let lanes = ["avx2": 8, "avx-vnni": 8, "avx512-vnni": 16, "neon-dotprod": 4][isa.rawValue] {
            memory["acc"] = .name("memory")
            memory["nr"] = .int(2 * lanes)
            memory["kc"] = .int(256)
        }
        let shapes: [[String: Int]] = [
            ["m": 1, "n": 37, "k": 256, "outliers": 128],
            ["m": 3, "n": 50, "k": 384, "outliers": 0],
            ["m": 17, "n": 65, "k": 512, "outliers": 128],
            ["m": 5, "n": 9, "k": 388, "outliers": 4],
        ]
        var interleaved = blocked  // several K blocks over the interleaved panel
        interleaved["layout"] = .name("interleaved")
        var configs = [base, blocked, threaded, threadedN, memory, interleaved]
        if isa == .avx2 {
            var wide = blocked  // AVX2's int32 group-sum path
            wide["gsum"] = .name("int32")
            var wideMemory = memory
            wideMemory["gsum"] = .name("int32")
            configs += [wide, wideMemory]
        }
        for config in configs {
            for shape in shapes {
                let workload = Workload(family: family.name, shape: shape)
                let r = runner.run(family, workload, config, seed: UInt64(shape["m"]! * 31 + shape["k"]!), verifyOnly: true)
                #expect(r.status == .ok, "\(workload) \(config): \(r.status.rawValue) at \(r.stage): \(r.message ?? "")")
                #expect(r.verification?.passed == true)
            }
        }
        // binary16 Y (ybits = 16): the reference rounded to nearest even, bit for bit, through whole and
        // partial tiles, with the sums in registers and in memory.
        for config in [base, memory] {
            var half = config
            half["out"] = .name("fp16")
            for shape in shapes {
                let workload = Workload(family: family.name, shape: shape.merging(["ybits": 16]) { a, _ in a })
                let r = runner.run(family, workload, half, seed: UInt64(shape["m"]! * 37 + shape["k"]!), verifyOnly: true)
                #expect(r.status == .ok, "\(workload) \(half): \(r.status.rawValue) at \(r.stage): \(r.message ?? "")")
                #expect(r.verification?.passed == true && r.verification?.checked == shape["m"]! * shape["n"]!)
            }
        }
        // The workload decides Y's format: fp16 for a fp32 workload (or the reverse) is rejected.
        var half = base
        half["out"] = .name("fp16")
        let plain = Workload(family: family.name, shape: shapes[0])
        let rejected = runner.run(family, plain, half, seed: 1, verifyOnly: true)
        #expect(rejected.status == .rejected && rejected.message?.contains("fixes out=fp32") == true)
    }
}
