import Foundation
import KernelKit
import Kernels
import Machine
import Pipeline
import Testing

@Suite("peak-bandwidth runs and is exact", .serialized)
struct PeakBandwidthRunTests {
    @Test func everyRunnableOperationVerifies() throws {
        let runner = try Harness.runner()
        let family = PeakBandwidth()
        for isa in family.targets where isa.runs(on: Harness.machine.isa) {
            for op in PeakBandwidth.Operation.allCases {
                var config = family.defaultConfiguration(isa: isa, machine: nil)
                config["op"] = .name(op.rawValue)
                config["threads"] = .int(min(2, Harness.machine.topology.pus.count))
                let r = runner.run(family, Workload(family: family.name, shape: ["bytes": 3 * 16384]), config, verifyOnly: true)
                #expect(r.status == .ok, "\(isa) \(op): \(r.message ?? "")")
            }
        }
    }

    @Test func runsVerifyAtEveryDistanceAndLength() throws {
        let runner = try Harness.runner()
        let family = PeakBandwidth()
        let threads = min(2, Harness.machine.topology.pus.count)
        for isa in [ISATarget.portable, family.bestTarget(on: MachineContext(Harness.machine))] {
            for (run, ahead) in [(256, 0), (1024, 1), (4096, 4), (16384, 2)] {
                var config = family.defaultConfiguration(isa: isa, machine: nil)
                config["op"] = .name("runs")
                config["threads"] = .int(threads)
                config["run"] = .int(run)
                config["ahead"] = .int(ahead)
                // 3 runs of 16 KiB per thread at most: `ahead` = 4 points past the end, which the kernel skips.
                let r = runner.run(family, Workload(family: family.name, shape: ["bytes": threads * 3 * 16384]), config, verifyOnly: true)
                #expect(r.status == .ok, "\(isa) run=\(run) ahead=\(ahead): \(r.message ?? "")")
            }
        }
    }
}
