import Foundation
import KernelKit
import Kernels
import Machine
import Pipeline
import Testing

@Suite("AtomQuantize variants match the reference", .serialized)
struct AtomQuantizeRunTests {
    /// Odd M; one group with 128 outliers; no outliers; K = 4096 + 128 with 128 outliers; an
    /// outlier block that is not a multiple of any vector width (tails); three groups (the pipelined
    /// vector kernels cycle three gather buffers), also in one row, which two threads cut in parts.
    /// For gather=transpose's blocks of eight rows: M = 17 (two blocks and a row left over), M = 16
    /// (the zero row and the tiny one in the second block), M = 9 with K = 300 (a transpose tail of
    /// four channels, 44 outliers, the zero row left over).
    static let shapes: [[String: Int]] = [
        ["m": 16, "k": 384, "outliers": 128],
        ["m": 9, "k": 300, "outliers": 44],
        ["m": 1, "k": 256, "outliers": 128],
        ["m": 3, "k": 256, "outliers": 0],
        ["m": 17, "k": 4224, "outliers": 128],
        ["m": 3, "k": 300, "outliers": 44],
        ["m": 2, "k": 400, "outliers": 16],
        ["m": 1, "k": 512, "outliers": 128],
    ]

    @Test(arguments: AtomQuantize.Op.allCases)
    func runnableVariantsAreBitExact(op: AtomQuantize.Op) throws {
        let family = AtomQuantize(op)
        let runner = try Harness.runner()
        var ran = 0
        for isa in family.targets {
            guard isa.runs(on: Harness.machine.isa) else {
                print("skipping \(family.name) on \(isa): \(isa.missingFeatures(on: Harness.machine.isa) ?? "")")
                continue
            }
            var configs: [Configuration] = []
            let gathers: [AtomQuantize.Gather] = op.reorders ? AtomQuantize.Gather.allCases : [.scalar]
            for gather in gathers {
                var config = family.defaultConfiguration(isa: isa, machine: nil)
                if op.reorders { config["gather"] = .name(gather.rawValue) }
                guard (try? family.check(config, machine: nil)) != nil else { continue }
                configs.append(config)
            }
            // Two threads splitting the rows (cutting rows into parts where M = 1), once per target; and
            // on the scalar gather four, so that M = 2 and 3 rows are cut too.
            var threaded = configs[0]
            threaded["threads"] = .int(2)
            configs.append(threaded)
            if let blocked = configs.first(where: { op.reorders && $0.name("gather") == AtomQuantize.Gather.transpose.rawValue }) {
                var two = blocked
                two["threads"] = .int(2)
                configs.append(two)
            }
            if Harness.machine.topology.pus.count >= 4 {
                threaded["threads"] = .int(4)
                configs.append(threaded)
            }
            for config in configs {
                for shape in Self.shapes {
                    let workload = Workload(family: family.name, shape: shape)
                    let r = runner.run(family, workload, config, seed: UInt64(shape["m"]! * 131 + shape["k"]!), verifyOnly: true)
                    #expect(r.status == .ok, "\(workload) \(config): \(r.status.rawValue) at \(r.stage): \(r.message ?? "")")
                    #expect(r.verification?.passed == true)
                    let m = shape["m"]!, k = shape["k"]!, o = shape["outliers"]!
                    let groups = (k - o) / 128
                    #expect(r.verification?.checked == m * ((k - o) / 2 + 2 * groups + o + 1))
                    ran += 1
                }
            }
        }
        #expect(ran >= 8)
    }

    @Test func aTimedTrialReportsElementsPerNanosecond() throws {
        let family = AtomQuantize(.siluMulQuantize)
        let runner = try Harness.runner()
        let config = try family.configuration(overrides: ["threads": "1"], machine: MachineContext(Harness.machine))
        let r = runner.run(family, Workload(family: family.name, shape: ["m": 4, "k": 4224, "outliers": 128]), config)
        #expect(r.status == .ok, "\(r.message ?? "")")
        #expect((r.gops ?? 0) > 0)
    }
}
