import KernelKit
import Kernels
import Machine
import Testing
import Toolchain

@Suite("peak-bandwidth templates")
struct PeakBandwidthTemplateTests {
    @Test func everyOperationCompilesOnEveryTarget() throws {
        let family = PeakBandwidth()
        let compiler = try CompilerDiscovery.discover()
        for isa in family.targets {
            let cross: CrossTarget? = isa.compilesNatively(on: CPUArchitecture.current) ? nil : .aarch64Linux
            for op in PeakBandwidth.Operation.allCases {
                var config = family.defaultConfiguration(isa: isa, machine: nil)
                config["op"] = .name(op.rawValue)
                let source = try family.render(config)
                do {
                    try checkCompiles(CompileJob(name: source.name, source: source.code, flags: isa.compilerFlags, compiler: compiler), target: cross)
                } catch ToolchainError.crossTargetUnavailable(let why) {
                    print("skipping \(source.name): \(why)")
                }
            }
        }
    }

    @Test func bytesMovedCountEveryArrayAndPass() {
        var config = PeakBandwidth().defaultConfiguration(isa: .avx2, machine: nil)
        config["op"] = .name("triad")
        config["threads"] = .int(2)
        // 3 arrays of 1 MiB / 3 rounded down to 256-byte steps per thread.
        let w = Workload(family: "peak-bandwidth", shape: ["bytes": 3 << 20])
        let perThread = (3 << 20) / 3 / 2 / 256 * 256
        #expect(PeakBandwidth().usefulOps(w, config) == Double(perThread * 2 * 3) * Double(max(1, (64 << 20) / (3 << 20))))
    }
}
