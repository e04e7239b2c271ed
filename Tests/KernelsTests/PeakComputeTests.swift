import KernelKit
import Kernels
import Machine
import Testing
import Toolchain

@Suite("peak-compute templates")
struct PeakComputeTemplateTests {
    @Test func everyOperationCompilesOnItsTarget() throws {
        let family = PeakCompute()
        let compiler = try CompilerDiscovery.discover()
        #expect(PeakCompute.operations.count >= 9)
        for (isa, op) in PeakCompute.operations {
            var config = family.defaultConfiguration(isa: isa, machine: nil)
            config["op"] = .name(op.rawValue)
            let source = try family.render(config)
            #expect(source.code.contains("__asm__ volatile"), "\(source.name) must keep its operands opaque")
            let cross: CrossTarget? = isa.compilesNatively(on: CPUArchitecture.current) ? nil : .aarch64Linux
            do {
                try checkCompiles(CompileJob(name: source.name, source: source.code, flags: isa.compilerFlags, compiler: compiler), target: cross)
            } catch ToolchainError.crossTargetUnavailable(let why) {
                print("skipping \(source.name): \(why)")
            }
        }
    }

    @Test func missingPairsAreRejectedWithTheRule() {
        var config = PeakCompute().defaultConfiguration(isa: .avx2, machine: nil)
        config["op"] = .name("int8-dot")
        #expect(throws: ConstraintViolation.self) { try PeakCompute().check(config, machine: nil) }
    }

    @Test func opsCountEveryAccumulatorAndThread() throws {
        var config = PeakCompute().defaultConfiguration(isa: .avx2, machine: nil)
        config["threads"] = .int(2)
        // fp32 FMA on AVX2: 12 accumulators x 8 lanes x 2 flops x 2 threads per iteration.
        #expect(PeakCompute().usefulOps(Workload(family: "peak-compute", shape: ["iterations": 10]), config) == 10 * 12 * 16 * 2)
    }
}
