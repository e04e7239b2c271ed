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

    @Test func runsReadTheSliceOnceInWholeRuns() throws {
        let family = PeakBandwidth()
        var config = family.defaultConfiguration(isa: .avx2, machine: nil)
        config["op"] = .name("runs")
        config["threads"] = .int(2)
        config["run"] = .int(8192)
        config["passes"] = .int(1)
        // 100 KiB over two threads: 50 KiB each, six whole runs of 8 KiB (the rest is not read).
        let w = Workload(family: family.name, shape: ["bytes": 100 << 10])
        #expect(PeakBandwidth.runsPerThread(w, config) == 6)
        #expect(family.usefulOps(w, config) == Double(2 * 6 * 8192))
        let source = try family.render(config)
        #expect(source.name == "peak_bandwidth_runs__avx2")
        #expect(source.code.contains("order[r + ahead]") && source.code.contains("__builtin_prefetch"))
        var other = config
        other["run"] = .int(256)
        other["ahead"] = .int(0)
        #expect(try family.render(other) == source, "the run length and the distance are arguments, not code")
    }

    @Test func runsNeedTwoRunsPerThread() throws {
        let family = PeakBandwidth()
        var config = family.defaultConfiguration(isa: .avx2, machine: nil)
        config["op"] = .name("runs")
        config["threads"] = .int(2)
        config["run"] = .int(65536)
        let w = Workload(family: family.name, shape: ["bytes": 192 << 10])
        do {
            try family.checkSlices(w, config)
            Issue.record("96 KiB per thread holds one run of 64 KiB; the rule should refuse it")
        } catch let violation as ConstraintViolation {
            #expect(violation.rule == "run-slice")
            #expect(violation.message.contains("smaller run"))
        }
        config["run"] = .int(16384)
        try family.checkSlices(w, config)
    }
}
