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
}
