import Foundation
import KernelKit
import Kernels
import Machine
import Pipeline
import Testing
import Toolchain

@Suite("gemm-f16 (the FP16 lm_head)", .serialized)
struct GemmF16RunTests {
    let family = GemmF16()

    @Test(arguments: GemmF16().targets)
    func runnableVariantsAreBitExact(isa: ISATarget) throws {
        guard isa.runs(on: Harness.machine.isa) else {
            print("skipping \(isa): \(isa.missingFeatures(on: Harness.machine.isa) ?? "")")
            return
        }
        let runner = try Harness.runner()
        let base = family.defaultConfiguration(isa: isa, machine: nil)
        var narrow = base
        narrow["mr"] = .int(3)
        narrow["nr"] = .int(isa == .portable ? 4 : (isa == .avx512vnni ? 16 : 8))
        var threaded = base
        threaded["threads"] = .int(2)
        var threadedM = narrow
        threadedM["threads"] = .int(2)
        threadedM["tm"] = .int(2)
        // Partial tiles in both directions, one column, one k.
        let shapes: [[String: Int]] = [["m": 1, "n": 77, "k": 129], ["m": 17, "n": 130, "k": 64], ["m": 3, "n": 1, "k": 1], ["m": 5, "n": 33, "k": 300]]
        for config in [base, narrow, threaded, threadedM] {
            for shape in shapes {
                let workload = Workload(family: family.name, shape: shape)
                let r = runner.run(family, workload, config, seed: UInt64(shape["n"]! * 13 + shape["k"]!), verifyOnly: true)
                #expect(r.status == .ok, "\(workload) \(config): \(r.status.rawValue) at \(r.stage): \(r.message ?? "")")
                #expect(r.verification?.passed == true)
            }
        }
    }

    @Test func everyTargetCompilesWithWarningsAsErrors() throws {
        let compiler = try CompilerDiscovery.discover()
        for isa in family.targets {
            let source = try family.render(family.defaultConfiguration(isa: isa, machine: nil))
            let cross: CrossTarget? = isa.compilesNatively(on: CPUArchitecture.current) ? nil : .aarch64Linux
            do {
                try checkCompiles(CompileJob(name: source.name, source: source.code, flags: isa.compilerFlags, compiler: compiler), target: cross)
            } catch ToolchainError.crossTargetUnavailable(let why) {
                print("skipping \(source.name): \(why)")
            }
        }
    }

    @Test func referenceWidensHalvesExactly() {
        // 1 (0x3C00), -2 (0xC000), the smallest subnormal 2^-24 (0x0001), -0 (0x8000; 0 + 1 * -0 is +0), 65504 (0x7BFF).
        let w: [UInt16] = [0x3C00, 0xC000, 0x0001, 0x8000, 0x7BFF]
        let x: [Float] = [1, 1, 1, 1, 1]
        let y = x.withUnsafeBufferPointer { xs in
            w.withUnsafeBufferPointer { ws in GemmF16Reference.compute(x: xs.baseAddress!, w: ws.baseAddress!, m: 1, n: 5, k: 1) }
        }
        #expect(y == [1, -2, 0x1p-24, 0, 65504])
        #expect(throws: ConstraintViolation.self) { try [UInt16(0x7C00)].withUnsafeBufferPointer { try GemmF16Reference.checkFinite($0) } }
    }

    @Test func rulesNameTheirConstraint() throws {
        #expect(throws: ConstraintViolation("positive", "k = 0 for gemm-f16; m, n and k must be at least 1")) {
            try family.checkShape(Workload(family: family.name, shape: ["m": 1, "n": 4, "k": 0]))
        }
        var c = family.defaultConfiguration(isa: .avx512vnni, machine: nil)
        c["nr"] = .int(8)
        #expect(throws: ConstraintViolation.self) { try family.check(c, machine: nil) }
        do {
            try family.check(c, machine: nil)
        } catch let v as ConstraintViolation {
            #expect(v.rule == "vector-width")
        }
        c["nr"] = .int(64)
        c["mr"] = .int(8)
        do {
            try family.check(c, machine: nil)
            Issue.record("mr=8 nr=64 on avx512 needs 8 * 4 + 4 + 2 registers")
        } catch let v as ConstraintViolation {
            #expect(v.rule == "registers")
        }
    }
}
