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
        var configs = [base, narrow, threaded, threadedM]
        // AVX2 widens halves with integer operations or, with halves=f16c, with vcvtph2ps: both exact
        // (the inputs hold subnormal halves and signed zeros).
        if isa == .avx2, Harness.machine.isa.usable.contains(.f16c) {
            configs += [base, threadedM].map { var c = $0; c["halves"] = .name("f16c"); return c }
        }
        // Partial tiles in both directions, one column, one k.
        let shapes: [[String: Int]] = [["m": 1, "n": 77, "k": 129], ["m": 17, "n": 130, "k": 64], ["m": 3, "n": 1, "k": 1], ["m": 5, "n": 33, "k": 300]]
        for config in configs {
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
        var f16c = family.defaultConfiguration(isa: .avx2, machine: nil)
        f16c["halves"] = .name("f16c")
        for config in family.targets.map({ family.defaultConfiguration(isa: $0, machine: nil) }) + [f16c] {
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
        // F16C's widening is AVX2's option, and needs F16C on the machine.
        var f16c = family.defaultConfiguration(isa: .avx512vnni, machine: nil)
        f16c["halves"] = .name("f16c")
        #expect(throws: ConstraintViolation.self) { try family.check(f16c, machine: nil) }
        do { try family.check(f16c, machine: nil) } catch let v as ConstraintViolation { #expect(v.rule == "halves-f16c") }
        f16c["isa"] = .name("avx2")
        f16c["nr"] = .int(16)
        #expect(throws: Never.self) { try family.check(f16c, machine: nil) }
        let noF16C = MachineContext(isa: ISAFeatures(architecture: .x86_64, usable: [.sse42, .avx, .avx2, .fma]), topology: Harness.machine.topology)
        do {
            try family.check(f16c, machine: noF16C)
            Issue.record("halves=f16c on a machine without F16C")
        } catch let v as ConstraintViolation {
            #expect(v.rule == "halves-f16c" && v.message.contains("lacks"))
        }
        let w = Workload(family: family.name, shape: ["m": 16, "n": 32000, "k": 4096])
        #expect(family.analyticalConfiguration(for: w, machine: noF16C).name("halves") == "target")
        let withF16C = MachineContext(isa: ISAFeatures(architecture: .x86_64, usable: [.sse42, .avx, .avx2, .fma, .f16c]), topology: Harness.machine.topology)
        #expect(family.analyticalConfiguration(for: w, machine: withF16C).name("halves") == "f16c")
        #expect(family.completing(Configuration(["isa": .name("avx2"), "mr": .int(6), "nr": .int(16)])).name("halves") == "target", "a v2 record runs the integer widening")
    }
}
